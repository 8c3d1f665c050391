//! The supervisor's wire protocol: one JSON object per line over a Unix stream
//! socket, with file descriptors (exec stdio) passed as `SCM_RIGHTS` alongside the
//! request line. Blocking on both sides: the supervisor is single-threaded and
//! the agent calls it from `spawn_blocking`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

/// Longest request or response line accepted (a `List` of many containers fits).
pub const MAX_LINE: usize = 16 << 20;

/// What the agent asks the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Health check; answered with [`Response::Pong`].
    Ping,
    /// OCI create from a prepared bundle (config.json + mounted rootfs).
    Create(CreateRequest),
    /// OCI start of a created container.
    Start { id: String },
    /// Send a signal to the init process (`all`: every process in the cgroup).
    Kill { id: String, signal: i32, all: bool },
    /// Remove a stopped container (with `force`, kill it first).
    Delete { id: String, force: bool },
    /// Every container the supervisor knows.
    List,
    /// Answer when the container has exited (at once if it already has).
    Wait { id: String },
    /// Stream every container exit from now on, one [`Response::Event`] each.
    Watch,
    /// Run a process inside a running container; stdin, stdout, stderr are passed
    /// as three descriptors with the request. Answered twice: `Started`, then `Exited`.
    Exec(ExecRequest),
}

/// Everything needed to create one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    /// Directory with `config.json`; it must outlive the container (exec reads it).
    pub bundle: PathBuf,
    /// `linux.cgroupsPath` of the spec, to read OOM kills and clean up.
    pub cgroups_path: String,
    /// CRI-format log file for stdout and stderr.
    pub log_path: PathBuf,
    pub log_max_size: u64,
    pub log_max_files: u32,
}

/// A process to run inside a running container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
}

/// The supervisor's answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Pong {
        pid: u32,
        version: String,
    },
    Error {
        message: String,
    },
    Containers {
        containers: Vec<ContainerInfo>,
    },
    Started {
        pid: i32,
    },
    Exited {
        exit: ExitInfo,
    },
    /// On a `Watch` connection: a container ended.
    Event {
        id: String,
        exit: ExitInfo,
    },
}

/// Lifecycle state as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// OCI-created: the init waits for `start`.
    Created,
    Running,
    Exited,
}

/// How a process ended, in the terms Kubernetes reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit code, or 128 + signal number when killed by a signal.
    pub code: i32,
    pub signal: Option<i32>,
    /// The memory cgroup recorded an OOM kill while this container ran.
    pub oom_killed: bool,
    /// The code is not known: the process ended while no supervisor was its parent.
    #[serde(default)]
    pub unknown: bool,
    /// RFC 3339 time the exit was observed.
    pub finished_at: String,
}

impl ExitInfo {
    /// Kubernetes' `reason` for a terminated container.
    pub fn reason(&self) -> &'static str {
        if self.oom_killed {
            "OOMKilled"
        } else if self.unknown {
            "ContainerStatusUnknown"
        } else if self.code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// One container as listed by the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub state: State,
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    pub log_path: PathBuf,
    pub cgroups_path: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub exit: Option<ExitInfo>,
}

/// Writes one message as a JSON line, passing `fds` with it.
pub fn send<T: Serialize>(stream: &UnixStream, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(io::Error::other)?;
    line.push(b'\n');
    // The descriptors travel with the first chunk; the rest of the line follows.
    // MSG_NOSIGNAL: a peer that hung up is an error here, never a SIGPIPE.
    let rights = [ControlMessage::ScmRights(fds)];
    let mut cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights[..] };
    let mut rest = &line[..];
    while !rest.is_empty() {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(rest)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(sent) => rest = &rest[sent..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        cmsgs = &[];
    }
    Ok(())
}

/// Reads one JSON line and the descriptors that came with it.
/// Returns `Ok(None)` at end of stream before any byte.
pub fn recv<T: for<'de> Deserialize<'de>>(
    stream: &UnixStream,
    buf: &mut Vec<u8>,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let msg = serde_json::from_slice(&buf[..end])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            buf.drain(..=end);
            return Ok(Some((msg, fds)));
        }
        if buf.len() > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too long",
            ));
        }
        let mut chunk = [0u8; 8192];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut chunk)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: the kernel just installed these descriptors in this
                // process for us; nothing else owns them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let n = msg.bytes;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-message",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn requests_round_trip_with_descriptors() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let (mut r, w) = UnixStream::pair().expect("socketpair");
        let req = Request::Exec(ExecRequest {
            id: "c1".into(),
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec![("A".into(), "b".into())],
            cwd: None,
        });
        send(&a, &req, &[w.as_raw_fd()]).expect("send");
        send(&a, &Request::List, &[]).expect("send");
        drop(a);
        let mut buf = Vec::new();
        let (got, fds): (Request, _) = recv(&b, &mut buf).expect("recv").expect("message");
        assert!(matches!(got, Request::Exec(e) if e.args[2] == "echo hi"));
        assert_eq!(fds.len(), 1);
        // The passed descriptor is the same socket: writing to it reaches `r`.
        let passed = UnixStream::from(fds.into_iter().next().expect("fd"));
        (&passed).write_all(b"x").expect("write");
        drop((passed, w));
        let mut out = String::new();
        r.read_to_string(&mut out).expect("read");
        assert_eq!(out, "x");
        let (got, fds): (Request, _) = recv(&b, &mut buf).expect("recv").expect("message");
        assert!(matches!(got, Request::List) && fds.is_empty());
        assert!(recv::<Request>(&b, &mut buf).expect("eof").is_none());
    }

    #[test]
    fn exit_reasons_follow_kubernetes() {
        let exit = |code, oom, unknown| ExitInfo {
            code,
            signal: None,
            oom_killed: oom,
            unknown,
            finished_at: String::new(),
        };
        assert_eq!(exit(0, false, false).reason(), "Completed");
        assert_eq!(exit(3, false, false).reason(), "Error");
        assert_eq!(exit(137, true, false).reason(), "OOMKilled");
        assert_eq!(exit(137, false, true).reason(), "ContainerStatusUnknown");
    }
}
