//! `outpost killall`: stops every container of the node and removes every pod's
//! sandbox and volumes (what `k3s-killall.sh` is to k3s). Images, the desired
//! state and logs stay; the next `outpost agent` starts the pods afresh.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::NodeDirs;
use crate::pods::worker;

pub async fn run(dirs: NodeDirs) -> anyhow::Result<ExitCode> {
    let socket = crate::paths::api_socket(&dirs.run_dir);
    if tokio::net::UnixStream::connect(&socket).await.is_ok() {
        anyhow::bail!(
            "the agent is running ({} answers): stop it first (`systemctl stop outpost`), or it restarts what this stops",
            socket.display()
        );
    }
    let runtime = dirs.runtime()?;
    let (containers, pods) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, usize)> {
            let mut containers = 0;
            for c in runtime.list()? {
                runtime
                    .delete(&c.id, true)
                    .with_context(|| format!("remove container {}", c.id))?;
                containers += 1;
            }
            let mut uids: Vec<String> = Vec::new();
            for dir in [
                dirs.run_dir.join("pods"),
                dirs.state_dir.join("pod-volumes"),
            ] {
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    uids.extend(
                        entries
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned()),
                    );
                }
            }
            uids.sort();
            uids.dedup();
            for uid in &uids {
                worker::cleanup_pod(&runtime, &dirs.run_dir, &dirs.state_dir, uid, None)
                    .map_err(|e| anyhow::anyhow!("clean up pod {uid}: {e}"))?;
            }
            runtime.clean_orphans(Duration::ZERO)?;
            Ok((containers, uids.len()))
        })
        .await
        .context("killall task")??;
    println!("removed {containers} containers and {pods} pod sandboxes");
    Ok(ExitCode::SUCCESS)
}
