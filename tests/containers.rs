//! Containers through the real binary: exit codes, logs, OOM, graceful stop,
//! exec, and re-adoption after the agent is SIGKILLed.

use std::time::{Duration, Instant};

use crate::harness::Node;

/// Runs `outpost ctr run` and returns (exit code, stdout, stderr).
fn run(node: &Node, name: &str, extra: &[&str], command: &[&str]) -> (i32, String, String) {
    let mut args = vec!["ctr", "run", "--pull", "never", "--name", name];
    args.extend_from_slice(extra);
    args.push("busybox");
    args.push("--");
    args.extend_from_slice(command);
    let out = node.outpost(&args);
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ps_json(node: &Node) -> Vec<serde_json::Value> {
    serde_json::from_str(&node.ok(&["ctr", "ps", "-a", "-o", "json"])).expect("ps json")
}

fn container(node: &Node, name: &str) -> serde_json::Value {
    ps_json(node)
        .into_iter()
        .find(|c| c["id"] == name)
        .unwrap_or_else(|| panic!("no container {name} in ps"))
}

#[test]
fn exit_code_and_cri_log() {
    let node = Node::with_busybox("busybox:latest");
    let name = node.name("hi");
    let (code, stdout, stderr) = run(
        &node,
        &name,
        &[],
        &["sh", "-c", "echo hi; echo oops >&2; exit 3"],
    );
    assert_eq!(code, 3, "stdout {stdout:?} stderr {stderr:?}");
    assert_eq!(stdout, "hi\n");
    assert!(stderr.contains("oops"), "{stderr}");
    assert_eq!(node.ok(&["ctr", "logs", &name]), "hi\n");

    // The file is in the CRI format the kubelet writes: <RFC3339Nano> <stream> F <line>.
    let log = std::fs::read_to_string(node.state_dir().join("logs").join(format!("{name}.log")))
        .expect("log file");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    for (line, (stream, text)) in lines.iter().zip([("stdout", "hi"), ("stderr", "oops")]) {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert!(
            fields[0].parse::<jiff::Timestamp>().is_ok() && fields[0].ends_with('Z'),
            "{line}"
        );
        assert_eq!(&fields[1..], &[stream, "F", text], "{line}");
    }
    let c = container(&node, &name);
    assert_eq!(c["state"], "exited");
    assert_eq!(c["exit"]["code"], 3);
    assert_eq!(c["exit"]["oom_killed"], false);
}

#[test]
fn memory_limit_oom_kills_and_reports_oomkilled() {
    let node = Node::with_busybox("busybox:latest");
    let name = node.name("oom");
    // dd's 100 MiB buffer does not fit in 32 MiB.
    let (code, _, stderr) = run(
        &node,
        &name,
        &["--memory", "32Mi"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
    );
    assert_eq!(code, 137, "{stderr}");
    let c = container(&node, &name);
    assert_eq!(c["exit"]["oom_killed"], true, "{c}");
    let ps = node.ok(&["ctr", "ps", "-a"]);
    let row = ps.lines().find(|l| l.starts_with(&name)).expect("row");
    assert!(row.contains("OOMKilled"), "{ps}");

    // The same command with room to spare completes.
    let ok = node.name("fits");
    let (code, _, stderr) = run(
        &node,
        &ok,
        &["--memory", "256Mi"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(container(&node, &ok)["exit"]["oom_killed"], false);
}

#[test]
fn stop_kills_after_grace_unless_the_container_exits() {
    let node = Node::with_busybox("busybox:latest");
    // PID 1 of a pid namespace ignores SIGTERM unless it handles it: `sleep` never exits on it.
    let stubborn = node.name("stubborn");
    node.ok(&[
        "ctr", "run", "-d", "--pull", "never", "--name", &stubborn, "busybox", "--", "sleep",
        "1000",
    ]);
    let polite = node.name("polite");
    node.ok(&[
        "ctr",
        "run",
        "-d",
        "--pull",
        "never",
        "--name",
        &polite,
        "busybox",
        "--",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);

    let t0 = Instant::now();
    let out = node.ok(&["ctr", "stop", "-t", "2", &stubborn]);
    let took = t0.elapsed();
    assert_eq!(out.trim(), "137 Error");
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL came before the grace period ended ({took:?})"
    );

    // Handled SIGTERM: exits on its own (code 0, not SIGKILL's 137) within the grace period.
    let out = node.ok(&["ctr", "stop", "-t", "30", &polite]);
    assert_eq!(out.trim(), "0 Completed");
    assert_eq!(node.ok(&["ctr", "logs", &polite]), "bye\n");
}

#[test]
fn exec_returns_output_and_exit_code() {
    let node = Node::with_busybox("busybox:latest");
    let name = node.name("exec");
    node.ok(&[
        "ctr",
        "run",
        "-d",
        "--pull",
        "never",
        "--name",
        &name,
        "-e",
        "GREETING=hello",
        "busybox",
        "--",
        "sleep",
        "1000",
    ]);
    let out = node.outpost(&[
        "ctr",
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "echo $GREETING from $(hostname); echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello from {name}\n")
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // Exec joins the container's namespaces: it sees the container's processes, PID 1 is `sleep`.
    let ps = node.ok(&["ctr", "exec", &name, "--", "cat", "/proc/1/cmdline"]);
    assert_eq!(ps, "sleep\x001000\x00");
    // Exec into something not running is refused with a reason.
    let stopped = node.name("stopped");
    run(&node, &stopped, &[], &["true"]);
    let err = node.fails(&["ctr", "exec", &stopped, "--", "true"]);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn agent_sigkill_keeps_containers_and_exit_codes() {
    let node = Node::with_busybox("busybox:latest");
    let agent = node.spawn_agent(&[]);
    let runner = node.name("runner");
    node.ok(&[
        "ctr", "run", "-d", "--pull", "never", "--name", &runner, "busybox", "--", "sleep", "1000",
    ]);
    let seven = node.name("seven");
    node.ok(&[
        "ctr", "run", "-d", "--pull", "never", "--name", &seven, "busybox", "--", "sh", "-c",
        "exit 7",
    ]);
    assert_eq!(node.ok(&["ctr", "wait", &seven]).trim(), "7");
    let before = container(&node, &runner);
    let pid = before["pid"].as_i64().expect("pid");
    let supervisor = node.supervisor_pid().expect("supervisor runs");

    agent.sigkill();
    let agent = node.spawn_agent(&[]);
    assert_eq!(
        node.supervisor_pid(),
        Some(supervisor),
        "the supervisor outlived the agent"
    );
    let log = agent.stderr();
    assert!(
        log.contains("re-adopted containers")
            && log.contains("total=2")
            && log.contains("running=1"),
        "{log}"
    );
    assert!(log.contains(&seven) && log.contains("code=7"), "{log}");

    let after = container(&node, &runner);
    assert_eq!(after["state"], "running");
    assert_eq!(
        after["pid"], before["pid"],
        "the running container was not restarted"
    );
    assert_eq!(after["started_at"], before["started_at"]);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(container(&node, &seven)["exit"]["code"], 7);
    // And it is still fully controllable.
    assert_eq!(
        node.ok(&["ctr", "exec", &runner, "--", "echo", "alive"]),
        "alive\n"
    );
    agent.stop();
}

#[test]
fn security_defaults_hold_inside_the_container() {
    let node = Node::with_busybox("busybox:latest");
    let check = |extra: &[&str], script: &str, want: &str| {
        let name = node.name("sec");
        let (code, stdout, stderr) = run(&node, &name, extra, &["sh", "-c", script]);
        assert_eq!((code, stdout.as_str()), (0, want), "{script}: {stderr}");
        node.ok(&["ctr", "rm", &name]);
    };
    // containerd's default capability set for Kubernetes, no more.
    check(
        &[],
        "grep CapBnd /proc/self/status",
        "CapBnd:\t00000000a80425fb\n",
    );
    check(&[], "grep NoNewPrivs /proc/self/status", "NoNewPrivs:\t0\n");
    check(
        &["--no-new-privileges"],
        "grep NoNewPrivs /proc/self/status",
        "NoNewPrivs:\t1\n",
    );
    // Masked and read-only kernel paths.
    check(
        &[],
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo ro",
        "0\n0\nro\n",
    );
    // Open files: never above the agent's own hard limit.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    check(&[], "ulimit -n", &format!("{}\n", hard.min(1_048_576)));
    check(
        &["--user", "65534:65534"],
        "id -u; id -g; touch /root/x 2>/dev/null || echo denied",
        "65534\n65534\ndenied\n",
    );
    check(
        &["--read-only"],
        "touch /x 2>/dev/null || echo read-only",
        "read-only\n",
    );
    // A pids limit stops a fork bomb's growth at the limit.
    // The forks run in a subshell: ash exits when a fork fails.
    check(
        &["--pids", "8"],
        "(for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done) 2>/dev/null; echo forks failed: $?; read max < /sys/fs/cgroup/pids/pids.max; echo $max",
        "forks failed: 2\n8\n",
    );
}

#[test]
fn removal_leaves_nothing_behind() {
    let node = Node::with_busybox("busybox:latest");
    let name = node.name("gone");
    node.ok(&[
        "ctr", "run", "-d", "--pull", "never", "--name", &name, "--memory", "64Mi", "busybox",
        "--", "sleep", "1000",
    ]);
    let rootfs = node.run_dir().join("bundles").join(&name).join("rootfs");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        mounts.contains(rootfs.to_str().expect("utf-8")),
        "rootfs is an overlay mount while running"
    );
    let err = node.fails(&["ctr", "rm", &name]);
    assert!(err.contains("stop it first"), "{err}");
    node.ok(&["ctr", "rm", "-f", &name]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(rootfs.to_str().expect("utf-8")));
    for dir in [
        node.run_dir().join("bundles").join(&name),
        node.state_dir().join("containers").join(&name),
        node.run_dir().join("youki").join(&name),
    ] {
        assert!(!dir.exists(), "{} survived rm", dir.display());
    }
    for controller in ["memory", "pids", "cpu", "freezer"] {
        let cg = std::path::Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("outpost")
            .join(&name);
        assert!(!cg.exists(), "{} survived rm", cg.display());
    }
    assert!(!node
        .state_dir()
        .join("logs")
        .join(format!("{name}.log"))
        .exists());
}
