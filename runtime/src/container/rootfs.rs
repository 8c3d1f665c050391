//! A container's root filesystem: the image's unpacked layers as overlayfs
//! lowerdirs, with the container's own upper and work dirs.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{mount as sys_mount, unmount as umount, MountFlags, UnmountFlags};

use crate::error::{Error, Result};

/// The kernel refuses mount data longer than a page.
const MAX_MOUNT_DATA: usize = 4095;

/// Mounts the overlay at `target`. `layers` lists the lowerdirs bottom first.
pub fn mount(layers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let data = overlay_options(layers, upper, work).map_err(|message| Error::Rootfs {
        path: target.to_path_buf(),
        message,
    })?;
    let cdata = std::ffi::CString::new(data.clone()).map_err(|_| Error::Rootfs {
        path: target.to_path_buf(),
        message: "NUL in overlay options".into(),
    })?;
    sys_mount(
        "overlay",
        target,
        "overlay",
        MountFlags::NOATIME,
        Some(cdata.as_c_str()),
    )
    .map_err(|e| Error::Rootfs {
        path: target.to_path_buf(),
        message: format!("mount overlay ({data}): {e}"),
    })
}

/// Renders the overlay mount options; pure, so it is unit-tested.
fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> Result<String, String> {
    if layers.is_empty() {
        return Err("the image has no layers".into());
    }
    let mut paths: Vec<&Path> = layers.iter().map(PathBuf::as_path).collect();
    paths.extend([upper, work]);
    for p in &paths {
        let s = p.to_string_lossy();
        if s.contains([',', ':', '\\']) || !p.is_absolute() {
            return Err(format!(
                "path {s:?} cannot be an overlay directory (relative, or holds ',' ':' or '\\')"
            ));
        }
    }
    // overlayfs lists lowerdirs top first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(format!("{} layers give overlay options longer than the kernel accepts; use a shorter --state-dir", layers.len()));
    }
    Ok(data)
}

/// Unmounts `target` if something is mounted there.
pub fn unmount(target: &Path) -> Result<()> {
    match umount(target, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(()),
        // Not mounted, or already gone.
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        // Still busy (a process holds it): detach so the dir can go now.
        Err(rustix::io::Errno::BUSY) => {
            umount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
                .map_err(|e| Error::io("unmount", target)(io::Error::from(e)))
        }
        Err(e) => Err(Error::io("unmount", target)(io::Error::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdirs_are_listed_top_first() {
        let layers = vec![PathBuf::from("/s/l/base"), PathBuf::from("/s/l/top")];
        let got =
            overlay_options(&layers, Path::new("/s/c/u"), Path::new("/s/c/w")).expect("options");
        assert_eq!(
            got,
            "lowerdir=/s/l/top:/s/l/base,upperdir=/s/c/u,workdir=/s/c/w"
        );
    }

    #[test]
    fn refuses_what_overlay_cannot_parse() {
        let check = |layers: Vec<&str>, want: &str| {
            let layers: Vec<PathBuf> = layers.into_iter().map(PathBuf::from).collect();
            let err = overlay_options(&layers, Path::new("/u"), Path::new("/w"))
                .expect_err("must refuse");
            assert!(err.contains(want), "{err}");
        };
        check(vec![], "no layers");
        check(vec!["/a:b"], "cannot be an overlay directory");
        check(vec!["rel"], "cannot be an overlay directory");
        let long = format!("/{}", "x".repeat(200));
        check(vec![long.as_str(); 30], "longer than the kernel accepts");
    }
}
