//! Named network namespaces: a file bind-mounted from `/proc/thread-self/ns/net`
//! keeps the namespace alive with no process in it (what `ip netns add` does).
//!
//! The namespace is made by a throw-away thread that `unshare`s: never a tokio
//! thread, whose later tasks would otherwise run in the wrong namespace. The
//! netlink socket that configures it is opened in that thread too (a socket
//! stays in the namespace it was opened in) and then driven from the runtime.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// What can go wrong with a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("create network namespace {path}: {step}")]
    Create {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("set loopback up in {path}")]
    Loopback {
        path: PathBuf,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("remove network namespace {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates a network namespace pinned at `path` (which must not exist), with
/// only loopback, up. Call from within a tokio runtime.
pub async fn create(path: &Path) -> Result<(), NetnsError> {
    let runtime = tokio::runtime::Handle::current();
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> Result<rtnetlink::Handle, NetnsError> {
        let fail = |step: &'static str| {
            let path = target.clone();
            move |source: std::io::Error| NetnsError::Create { path, step, source }
        };
        File::create_new(&target).map_err(fail("create the mount point"))?;
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| fail("unshare")(e.into()))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| fail("bind mount")(e.into()))?;
        // The socket is opened here, inside the new namespace, and stays there.
        let _guard = runtime.enter();
        let (connection, handle, _) = rtnetlink::new_connection().map_err(fail("open netlink"))?;
        tokio::spawn(connection);
        Ok(handle)
    })
    .join()
    .map_err(|_| NetnsError::Create {
        path: path.to_path_buf(),
        step: "namespace thread",
        source: std::io::Error::other("panicked"),
    })?;
    let handle = match made {
        Ok(h) => h,
        Err(e) => {
            let _ = remove(path);
            return Err(e);
        }
    };
    // Loopback is index 1 in a fresh namespace.
    let up = handle
        .link()
        .set(rtnetlink::LinkUnspec::new_with_index(1).up().build())
        .execute()
        .await;
    if let Err(source) = up {
        let _ = remove(path);
        return Err(NetnsError::Loopback {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Removes a namespace made by [`create`] (its last user gone, the kernel frees it).
/// Missing is fine.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    let fail = |source: std::io::Error| NetnsError::Remove {
        path: path.to_path_buf(),
        source,
    };
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(fail(e.into())),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: the namespace exists, differs from ours, has only `lo`, up; removal frees it.
    #[tokio::test]
    async fn creates_a_pinned_namespace_with_loopback_up() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces: run it as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("net");
        create(&path).await.expect("create");
        let ours = std::fs::metadata("/proc/self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("stat");
        let pinned = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("stat");
        assert_ne!(ours, pinned, "a new namespace");
        // Look inside as a user would.
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(["ip", "-o", "link", "show"])
            .output()
            .expect("nsenter ip link (util-linux, iproute2)");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "only loopback: {text}");
        assert!(
            lines[0].contains(": lo:") && lines[0].contains("LOOPBACK,UP"),
            "{text}"
        );
        assert!(create(&path).await.is_err(), "an existing path is refused");
        remove(&path).expect("remove");
        assert!(!path.exists());
        remove(&path).expect("removing twice is fine");
    }
}
