//! A pod's shared IPC and UTS namespaces, pinned by bind mounts like network
//! namespaces are: no pause process, no image. The pod's containers join them
//! by path. Made by a throw-away thread that `unshare`s, so the caller's
//! threads never change namespace.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Error, Result};

/// Paths of a sandbox's pinned namespaces.
#[derive(Debug, Clone)]
pub struct SandboxPaths {
    pub ipc: PathBuf,
    pub uts: PathBuf,
}

impl SandboxPaths {
    /// The namespace files inside `dir`.
    pub fn in_dir(dir: &Path) -> SandboxPaths {
        SandboxPaths {
            ipc: dir.join("ipc"),
            uts: dir.join("uts"),
        }
    }
}

/// Creates new IPC and UTS namespaces pinned in `dir` (created if needed), the
/// UTS one with `hostname`. Existing pins are kept (idempotent after a restart).
pub fn create(dir: &Path, hostname: &str) -> Result<SandboxPaths> {
    let paths = SandboxPaths::in_dir(dir);
    if is_pinned(&paths.ipc) && is_pinned(&paths.uts) {
        return Ok(paths);
    }
    remove(dir)?;
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let (p, name) = (paths.clone(), hostname.to_owned());
    let result = std::thread::spawn(move || -> Result<()> {
        let sys = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |e: nix::errno::Errno| Error::io(what, path)(e.into())
        };
        unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
            .map_err(sys("unshare ipc+uts for", &p.ipc))?;
        nix::unistd::sethostname(&name).map_err(sys("set hostname for", &p.uts))?;
        for (path, ns) in [(&p.ipc, "ipc"), (&p.uts, "uts")] {
            File::create_new(path).map_err(Error::io("create", path))?;
            mount(
                Some(format!("/proc/thread-self/ns/{ns}").as_str()),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("bind mount", path))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| Error::io("create sandbox in", dir)(std::io::Error::other("thread panicked")))?;
    if let Err(e) = result {
        let _ = remove(dir);
        return Err(e);
    }
    Ok(paths)
}

/// Unpins the namespaces and removes `dir`. Missing is fine.
pub fn remove(dir: &Path) -> Result<()> {
    let paths = SandboxPaths::in_dir(dir);
    for path in [&paths.ipc, &paths.uts] {
        match umount2(path.as_path(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(Error::io("unmount", path)(e.into())),
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", dir)(e)),
    }
}

/// Whether `path` is a pinned namespace (an nsfs bind mount), of any kind.
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // f_type's integer type differs between architectures.
    #[allow(clippy::useless_conversion)]
    let pinned = rustix::fs::statfs(path).is_ok_and(|s| i64::from(s.f_type) == NSFS_MAGIC);
    pinned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_ipc_and_uts_with_the_hostname() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates namespaces: run it as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = dir.path().join("sb");
        let paths = create(&sandbox, "web-0").expect("create");
        assert!(is_pinned(&paths.ipc) && is_pinned(&paths.uts));
        let out = std::process::Command::new("nsenter")
            .arg(format!("--uts={}", paths.uts.display()))
            .arg("hostname")
            .output()
            .expect("nsenter hostname");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "web-0\n");
        let host = nix::unistd::gethostname().expect("hostname");
        assert_ne!(
            host.to_string_lossy(),
            "web-0",
            "our own hostname is untouched"
        );
        create(&sandbox, "web-0").expect("idempotent");
        remove(&sandbox).expect("remove");
        assert!(!sandbox.exists());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounts.contains(sandbox.to_str().expect("utf-8")));
    }
}
