//! Where the agent keeps pod state, shared by the pod workers (which write) and
//! the API (which reads logs).

use std::path::{Path, PathBuf};

/// The kubelet's log layout under the state dir: `pods/<ns>_<name>_<uid>/<container>/<restart>.log`.
pub fn container_log(
    state_dir: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
    restart: u32,
) -> PathBuf {
    pod_log_dir(state_dir, namespace, pod, uid)
        .join(container)
        .join(format!("{restart}.log"))
}

/// A pod's log directory.
pub fn pod_log_dir(state_dir: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    state_dir
        .join("pods")
        .join(format!("{namespace}_{pod}_{uid}"))
}

/// A pod's volumes and other per-pod files (emptyDir, configMap and secret projections).
pub fn pod_dir(state_dir: &Path, uid: &str) -> PathBuf {
    state_dir.join("pod-volumes").join(uid)
}

/// The last-known-good desired state.
pub fn desired_state(state_dir: &Path) -> PathBuf {
    state_dir.join("desired.json")
}

/// The local API socket.
pub fn api_socket(run_dir: &Path) -> PathBuf {
    run_dir.join("outpost.sock")
}

/// The agent's sources (`{"local": dir, "sources": [urls]}`), for `outpost apply/delete`.
pub fn sources_file(run_dir: &Path) -> PathBuf {
    run_dir.join("sources.json")
}
