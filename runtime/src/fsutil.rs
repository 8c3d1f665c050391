//! Small file-system helpers shared by the store, the supervisor and the agent.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes a file so that a crash, even a power loss, leaves either the old
/// content or the whole new one (temp file, fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_rename(path, data, true)
}

/// Replaces a file so that a process crash leaves the old or the new content,
/// without fsync: for state that a reboot makes void anyway (container and
/// supervisor records: the containers die with the machine).
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_rename(path, data, false)
}

fn write_via_rename(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if let (true, Some(parent)) = (durable, path.parent()) {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
