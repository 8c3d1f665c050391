//! `outpost exec` through the agent's API (WebSocket, v5.channel.k8s.io):
//! stdout and stderr apart, exit codes, stdin with its end, a terminal with
//! its size, and the refusals kubectl users know.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{file_source, Agent, Node};

/// The image the pod runs (imported, so no registry is needed).
const IMAGE: &str = "example.com/test/busybox:1";

/// How long one exec may take before the test kills it and fails.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// Pod `web` (each test node has its own node name, which the pod's uid,
/// and so its container ids, hash).
const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: example.com/test/busybox:1
    command: ["sleep", "1000"]
  - name: side
    image: example.com/test/busybox:1
    command: ["sleep", "1000"]
"#;

/// A node with the busybox image, an agent running pod `web` (containers
/// `web` and `side`), both containers running.
pub fn node_with_pod() -> (Node, Agent) {
    let node = Node::with_busybox(IMAGE);
    let manifests = node.manifests_dir();
    std::fs::write(manifests.join("web.yaml"), PODS).expect("write manifest");
    let agent = node.spawn_agent(&["--source", &file_source(&manifests)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // NotFound until the agent has published the pod.
        let out = node.outpost(&["get", "pod", "web", "-o", "json"]);
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let pod: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let running = pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|c| c["state"]["running"].is_object()));
        if running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod web is not running after 60 s:\n{out}\nagent stderr:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (node, agent)
}

/// `outpost exec ARGS...`: (exit code, stdout, stderr).
fn exec(node: &Node, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    let out = node.outpost(&all);
    result(&out)
}

fn result(out: &Output) -> (i32, String, String) {
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the processes in container `web` (but `ps`) are `commands`.
fn wait_for_commands(node: &Node, commands: &[&str]) {
    let pod: Value =
        serde_json::from_str(&node.ok(&["get", "pod", "web", "-o", "json"])).expect("pod json");
    let id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|s| s.strip_prefix("outpost://"))
        .expect("containerID")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = node.ok(&["ctr", "exec", &id, "--", "ps", "-o", "comm"]);
        let mut running: Vec<&str> = ps.lines().skip(1).filter(|l| *l != "ps").collect();
        running.sort_unstable();
        if running == commands {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {commands:?} in container web:\n{ps}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills `child` if it is still running after [`EXEC_TIMEOUT`].
fn watchdog(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || {
        std::thread::sleep(EXEC_TIMEOUT);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
}

/// `outpost exec ARGS...` with `input` on a pipe to its stdin, closed after.
fn exec_with_input(node: &Node, args: &[&str], input: Vec<u8>) -> (i32, String, String) {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    let mut child = node
        .command(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn outpost exec");
    watchdog(&child);
    let mut stdin = child.stdin.take().expect("stdin pipe");
    let writer = std::thread::spawn(move || {
        // The command may end before reading everything: that is its business.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for outpost exec");
    let _ = writer.join();
    result(&out)
}

#[test]
fn exec_runs_commands_in_a_pod_container() {
    let (node, agent) = node_with_pod();

    // stdout and stderr stay apart; the exit code is the command's.
    let (code, stdout, stderr) = exec(
        &node,
        &[
            "web",
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(code, 3, "stdout {stdout:?} stderr {stderr:?}");
    assert_eq!(stdout, "out\n");
    assert_eq!(stderr, "err\ncommand terminated with exit code 3\n");

    // Without -c, kubectl's default container and its note.
    let (code, stdout, stderr) = exec(&node, &["web", "--", "hostname"]);
    assert_eq!((code, stdout.as_str()), (0, "web\n"), "{stderr}");
    assert_eq!(
        stderr, "Defaulted container \"web\" out of: web, side\n",
        "{stdout}"
    );
    let (code, _, stderr) = exec(&node, &["-q", "pod/web", "--", "true"]);
    assert_eq!((code, stderr.as_str()), (0, ""));

    // The other container, with arguments that need quoting in the URL.
    let (code, stdout, stderr) = exec(
        &node,
        &[
            "web",
            "-c",
            "side",
            "--",
            "sh",
            "-c",
            "printf '%s|' \"$@\"; test -t 0 || echo notty",
            "-",
            "a b",
            "c&d=e",
            "é",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "a b|c&d=e|é|notty\n");

    // Killed by a signal: 128 + 9, as the kubelet reports it.
    let (code, _, stderr) = exec(&node, &["web", "-c", "web", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(code, 137, "{stderr}");

    // -i: stdin reaches the command and its end ends `cat`.
    let (code, stdout, stderr) = exec_with_input(
        &node,
        &["-i", "web", "-c", "web", "--", "cat"],
        b"hello\nworld\n".to_vec(),
    );
    assert_eq!((code, stdout.as_str()), (0, "hello\nworld\n"), "{stderr}");
    // More than any pipe holds, both ways.
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let (code, stdout, stderr) = exec_with_input(
        &node,
        &[
            "-i",
            "web",
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "cat | wc -c; head -c 1000000 /dev/zero | wc -c",
        ],
        big,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        ["3145728", "1000000"]
    );
    let (code, stdout, stderr) = exec_with_input(
        &node,
        &[
            "-i",
            "web",
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "head -c 2000000 /dev/zero",
        ],
        Vec::new(),
    );
    assert_eq!((code, stdout.len()), (0, 2_000_000), "{stderr}");
    // Without -i the command's stdin is empty.
    let (code, stdout, _) = exec_with_input(
        &node,
        &["web", "-c", "web", "--", "cat"],
        b"not sent\n".to_vec(),
    );
    assert_eq!((code, stdout.as_str()), (0, ""));
    // -t without a terminal here: kubectl's warning, and no terminal there.
    let (code, stdout, stderr) = exec_with_input(
        &node,
        &[
            "-it",
            "web",
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "test -t 0 || echo notty",
        ],
        Vec::new(),
    );
    assert_eq!((code, stdout.as_str()), (0, "notty\n"), "{stderr}");
    assert!(
        stderr.contains("Unable to use a TTY - input is not a terminal or the right kind of file"),
        "{stderr}"
    );

    // Refusals, in kubectl's words.
    let (code, _, stderr) = exec(&node, &["nope", "--", "true"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    let (code, _, stderr) = exec(&node, &["web", "-c", "nope", "--", "true"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "Error from server (BadRequest): container nope is not valid for pod web\n"
    );
    let (code, _, stderr) = exec(&node, &["-n", "other", "web", "-c", "web", "--", "true"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("pods \"web\" not found"), "{stderr}");
    let (code, _, stderr) = exec(&node, &["web", "-c", "web", "--", "/no/such/program"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error: Internal error occurred: error executing command in container:")
            && stderr.contains("/no/such/program"),
        "{stderr}"
    );
    let out = node.outpost(&["exec", "web"]);
    assert!(!out.status.success());

    // A client that goes away takes the command's stdin with it.
    let mut child = node
        .command(&["exec", "-i", "web", "-c", "web", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn outpost exec");
    wait_for_commands(&node, &["cat", "sleep"]);
    child.kill().expect("kill outpost exec");
    child.wait().expect("wait for outpost exec");

    // Every exec'd process goes: only the sleep is left.
    wait_for_commands(&node, &["sleep"]);

    agent.stop();
}

/// `outpost exec ARGS...` on a terminal (a pty whose slave is its stdin,
/// stdout and stderr), typed into and read as a user would.
struct Terminal {
    master: std::fs::File,
    child: Child,
    /// Everything the terminal showed so far.
    shown: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    /// Starts `outpost exec ARGS...` on a terminal of `rows` x `cols`.
    fn exec(node: &Node, args: &[&str], rows: u16, cols: u16) -> Terminal {
        use rustix::pty::OpenptFlags;
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .expect("openpt");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
        let slave: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_string_lossy().into_owned())
            .expect("open the pty slave")
            .into();
        let master = std::fs::File::from(master);
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        let child = node
            .command(&all)
            .stdin(slave.try_clone().expect("dup slave"))
            .stdout(slave.try_clone().expect("dup slave"))
            .stderr(slave)
            .spawn()
            .expect("spawn outpost exec");
        watchdog(&child);
        let shown = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let mut master = master.try_clone().expect("dup master");
            let shown = Arc::clone(&shown);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // EIO once the last holder of the slave (outpost exec) is gone.
                while let Ok(n) = master.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    shown
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            })
        };
        let terminal = Terminal {
            master,
            child,
            shown,
            reader: Some(reader),
        };
        terminal.resize(rows, cols);
        terminal
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn type_in(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("type into the terminal");
    }

    /// Waits until the terminal has shown `text`.
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + EXEC_TIMEOUT;
        while !self.shown().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {text:?}:\n{:?}",
                self.shown()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resizes the terminal and tells `outpost exec`, as the kernel would
    /// (SIGWINCH; the pty is not its controlling terminal here).
    fn resize(&self, rows: u16, cols: u16) {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&self.master, size).expect("set the window size");
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH);
    }

    /// Kills `outpost exec` (SIGKILL: nothing of it is left to clean up).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("terminal reader");
        }
    }

    /// Waits for `outpost exec` to end: its exit code and all the terminal showed.
    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().expect("wait for outpost exec");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("terminal reader");
        }
        (status.code().expect("exit code"), self.shown())
    }
}

#[test]
fn exec_with_a_terminal() {
    let (node, agent) = node_with_pod();

    // A terminal there, with the size of the one here and TERM set.
    let terminal = Terminal::exec(
        &node,
        &[
            "-it",
            "web",
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo tty; stty size; echo $TERM",
        ],
        33,
        111,
    );
    let (code, shown) = terminal.finish();
    assert_eq!(code, 0, "{shown}");
    // The remote terminal ends lines with \r\n; the local one is raw.
    assert!(shown.contains("tty\r\n33 111\r\nxterm\r\n"), "{shown:?}");

    // An interactive shell: what is typed runs, a resize reaches it, `exit`
    // ends it with its code.
    let mut terminal = Terminal::exec(&node, &["-it", "web", "-c", "web", "--", "sh"], 33, 111);
    terminal.type_in("echo $((6 * 7)); stty size\n");
    terminal.wait_for("42\r\n33 111\r\n");
    terminal.resize(40, 120);
    // The resize and what is typed next race: ask until the new size shows.
    let deadline = Instant::now() + EXEC_TIMEOUT;
    while !terminal.shown().contains("40 120\r\n") {
        assert!(
            Instant::now() < deadline,
            "no resize:\n{:?}",
            terminal.shown()
        );
        terminal.type_in("stty size\n");
        std::thread::sleep(Duration::from_millis(200));
    }
    terminal.type_in("exit 5\n");
    let (code, shown) = terminal.finish();
    assert_eq!(code, 5, "{shown}");
    assert!(
        shown.contains("command terminated with exit code 5"),
        "{shown:?}"
    );

    // A client that goes away hangs up the shell's terminal: the shell ends.
    let mut terminal = Terminal::exec(&node, &["-it", "web", "-c", "web", "--", "sh"], 24, 80);
    terminal.type_in("echo $((40 + 2))\n");
    terminal.wait_for("42\r\n");
    wait_for_commands(&node, &["sh", "sleep"]);
    terminal.kill();
    wait_for_commands(&node, &["sleep"]);

    agent.stop();
}
