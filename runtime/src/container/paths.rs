//! Where the runtime keeps things under the run dir (tmpfs: gone at reboot, as
//! containers are) and the state dir (disk).

use std::path::{Path, PathBuf};

/// Paths under the run dir.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub root: PathBuf,
    pub supervisor_socket: PathBuf,
    pub supervisor_pid: PathBuf,
    pub supervisor_lock: PathBuf,
    pub supervisor_log: PathBuf,
    /// libcontainer's state root (`<id>/state.json`).
    pub youki: PathBuf,
    /// The supervisor's records, one dir per container.
    pub containers: PathBuf,
    /// OCI bundles (`config.json` + the mounted `rootfs`), one dir per container.
    pub bundles: PathBuf,
}

impl RunPaths {
    pub fn new(root: &Path) -> Self {
        RunPaths {
            root: root.to_path_buf(),
            supervisor_socket: root.join("supervisor.sock"),
            supervisor_pid: root.join("supervisor.pid"),
            supervisor_lock: root.join("supervisor.lock"),
            supervisor_log: root.join("supervisor.log"),
            youki: root.join("youki"),
            containers: root.join("containers"),
            bundles: root.join("bundles"),
        }
    }

    /// The supervisor's record dir for one container.
    pub fn record_dir(&self, id: &str) -> PathBuf {
        self.containers.join(id)
    }

    /// The bundle dir of one container.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.bundles.join(id)
    }
}
