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
    let ipam = dirs.run_dir.join("ipam.json");
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
    // The pod network and the service proxy: the pods' veths (their namespaces
    // are unmounted, but the kernel frees them, and so the veths, only later),
    // the bridge, the IPAM state, the nftables table.
    let host = outpost_net::host::Host::open(None).context("open netlink")?;
    outpost_net::pod::remove_host_veths(
        &host,
        outpost_net::bridge::DEFAULT_NAME,
        &Default::default(),
    )
    .await
    .context("remove the pods' veths")?;
    let bridge = outpost_net::bridge::remove(&host, outpost_net::bridge::DEFAULT_NAME)
        .await
        .context("remove the pod bridge")?;
    match std::fs::remove_file(&ipam) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::new(e).context("remove the IPAM state")),
    }
    let table = crate::agent::PROXY_TABLE;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use outpost_net::proxy::Tables;
        let mut tables = outpost_net::proxy::NetlinkTables::open(table, None)?;
        tables.commit(&outpost_net::proxy::plan::remove(table))?;
        Ok(())
    })
    .await
    .context("killall task")?
    .context("remove the service proxy's nftables table")?;
    println!(
        "removed {containers} containers and {pods} pod sandboxes{}, and the service proxy table",
        if bridge { ", the pod bridge" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
