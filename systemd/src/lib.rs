//! systemd integration for outpost: `sd_notify` (READY/STATUS/WATCHDOG) without
//! libsystemd. Unit install/uninstall lands with the install issue.
#![forbid(unsafe_code)]

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// A state change to report to the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify<'a> {
    /// Start-up finished.
    Ready,
    /// Shutting down.
    Stopping,
    /// A free-form status line shown by `systemctl status`.
    Status(&'a str),
    /// Keep-alive for `WatchdogSec=`.
    Watchdog,
}

impl Notify<'_> {
    fn render(&self) -> String {
        match self {
            Notify::Ready => "READY=1".to_owned(),
            Notify::Stopping => "STOPPING=1".to_owned(),
            // A newline would start a new assignment: keep the status on one line.
            Notify::Status(s) => format!("STATUS={}", s.replace('\n', " ")),
            Notify::Watchdog => "WATCHDOG=1".to_owned(),
        }
    }
}

/// Sends `states` to `$NOTIFY_SOCKET`. Returns `Ok(false)` when not run by a
/// service manager (no socket set), which is not an error.
pub fn notify(states: &[Notify<'_>]) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None => SocketAddr::from_pathname(&path)?,
    };
    let message = states
        .iter()
        .map(Notify::render)
        .collect::<Vec<_>>()
        .join("\n");
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_assignment_per_state() {
        let check = |n: Notify<'_>, want: &str| assert_eq!(n.render(), want);
        check(Notify::Ready, "READY=1");
        check(Notify::Stopping, "STOPPING=1");
        check(Notify::Watchdog, "WATCHDOG=1");
        check(Notify::Status("pulling\nimages"), "STATUS=pulling images");
    }

    #[test]
    fn delivers_to_the_notify_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).expect("bind");
        // SAFETY-free env use: tests in this crate do not read NOTIFY_SOCKET concurrently.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(notify(&[Notify::Ready, Notify::Status("up")]).expect("notify"));
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
    }
}
