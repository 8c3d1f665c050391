//! [`Upstream`]: a real HTTP server (`python3 -m http.server`) inside a test host,
//! serving a directory: the pull-based upstream for HTTP source tests.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{require_root_and_tools, try_http_request, Node};

/// `python3 -m http.server` serving `dir` inside the node's test host.
pub struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    pub fn start(node: &Node, dir: &Path) -> Upstream {
        require_root_and_tools(&["python3"]);
        let port = node.host.free_port();
        let child = node
            .host
            .command("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server");
        let up = Upstream { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while try_http_request(&node.host, "GET", &up.addr(), "/", &[]).is_err() {
            assert!(Instant::now() < deadline, "http.server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}
