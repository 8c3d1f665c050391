//! Container lifecycle hooks (postStart, preStop): one run of a handler, as
//! the kubelet's `pkg/kubelet/lifecycle/handlers.go` does it. The worker runs
//! postStart right after a container starts (a failure kills it:
//! `FailedPostStartHook`) and preStop before SIGTERM, within the grace period
//! (`FailedPreStopHook`).
//!
//! Exec and httpGet reuse the probes' machinery: the command runs in the
//! container through the supervisor, the request is made from inside the
//! pod's network namespace.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::LifecycleHandler;

use super::probe::{self, ExecEnd, HttpError, HttpGet, Target};

/// Runs `handler` for the target's container, for at most `timeout`. The
/// error is the kubelet's message (`Exec lifecycle hook ([...]) for Container
/// "web" failed - error: ...`), for the event.
pub async fn run(
    handler: &LifecycleHandler,
    target: &Target<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let container = &target.container.name;
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(exec_message(
                &command,
                container,
                "the exec hook has no command",
                "",
            ));
        }
        let end = probe::exec_in(
            target.runtime,
            target.container_id,
            command.clone(),
            timeout,
        )
        .await;
        return exec_result(&command, container, end, timeout);
    }
    if let Some(action) = &handler.http_get {
        let path = action.path.as_deref().unwrap_or("");
        let fail = |e: &str| {
            format!("HTTP lifecycle hook ({path}) for Container {container:?} failed - error: {e}")
        };
        let request = HttpGet::new(action, target, "lifecycle").map_err(|e| fail(&e))?;
        let deadline = Instant::now() + timeout;
        // Hooks only care that an answer came: its status does not matter.
        return match request.send(target.netns, deadline).await {
            Ok(_) => Ok(()),
            // An HTTPS hook that got an HTTP answer is retried in HTTP (the
            // kubelet's fallback from when hooks ignored the scheme).
            Err(HttpError::Request {
                plain_http_answer: true,
                ..
            }) => match request.without_tls().send(target.netns, deadline).await {
                Ok(_) => Ok(()),
                Err(e) => Err(fail(e.message())),
            },
            Err(e) => Err(fail(e.message())),
        };
    }
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        if wanted <= timeout {
            tokio::time::sleep(wanted).await;
            return Ok(());
        }
        tokio::time::sleep(timeout).await;
        return Err(format!(
            "Sleep lifecycle hook ({}) for Container {container:?} failed - error: did not finish within {}s",
            sleep.seconds,
            timeout.as_secs()
        ));
    }
    // tcpSocket is deprecated and was never run: the kubelet fails such a
    // hook, like one with no action at all.
    let what = if handler.tcp_socket.is_some() {
        "tcpSocket is not supported as a lifecycle handler"
    } else {
        "no action given: set exec, httpGet or sleep"
    };
    Err(format!("Cannot run handler: invalid handler: {what}"))
}

/// An exec hook's result: exit 0 is a success, anything else an error with
/// the command's output.
fn exec_result(
    command: &[String],
    container: &str,
    end: ExecEnd,
    timeout: Duration,
) -> Result<(), String> {
    match end {
        ExecEnd::Exited { code: 0, .. } => Ok(()),
        ExecEnd::Exited {
            code,
            stdout,
            stderr,
        } => {
            let error = format!(
                "command '{}' exited with {code}: {}",
                command.join(" "),
                String::from_utf8_lossy(&stderr)
            );
            Err(exec_message(
                command,
                container,
                &error,
                &ExecEnd::combined(&stdout, &stderr),
            ))
        }
        ExecEnd::TimedOut => {
            let error = format!(
                "command '{}' did not finish within {}s",
                command.join(" "),
                timeout.as_secs()
            );
            Err(exec_message(command, container, &error, ""))
        }
        ExecEnd::Failed(e) => Err(exec_message(command, container, &e, "")),
    }
}

fn exec_message(command: &[String], container: &str, error: &str, output: &str) -> String {
    format!(
        "Exec lifecycle hook ([{}]) for Container {container:?} failed - error: {error}, message: {output:?}",
        command.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use k8s_openapi::api::core::v1::Container;
    use outpost_runtime::container::Runtime;
    use serde_json::json;

    use super::super::probe::testing::{Server, TestNetns};
    use super::*;

    fn handler(value: serde_json::Value) -> LifecycleHandler {
        serde_json::from_value(value).expect("handler")
    }

    async fn hook(
        netns: Option<&Path>,
        spec: serde_json::Value,
        timeout: Duration,
    ) -> Result<(), String> {
        let rt = Runtime::new(
            Path::new("/nonexistent/state"),
            Path::new("/nonexistent/run"),
            Path::new("/bin/false"),
        );
        let c: Container = serde_json::from_value(json!({"name": "web"})).expect("container");
        let target = Target {
            runtime: &rt,
            container_id: "pod.test.web.0",
            netns,
            pod_ip: None,
            container: &c,
        };
        run(&handler(spec), &target, timeout).await
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn http_hooks_need_an_answer_not_a_good_status() {
        let netns = TestNetns::new().await;
        let server = Server::http(&netns);
        let ns = Some(netns.path.as_path());
        let get = |path: &str| json!({"httpGet": {"path": path, "port": server.port}});
        assert_eq!(hook(ns, get("/ok"), SECOND).await, Ok(()));
        assert_eq!(
            hook(ns, get("/fail"), SECOND).await,
            Ok(()),
            "the kubelet ignores the status"
        );
        let head = server.requests().pop().expect("request");
        assert!(head.starts_with("GET /fail HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("User-Agent: kube-lifecycle/1.34\r\n"),
            "{head}"
        );
        let closed = netns.closed_port();
        assert_eq!(
            hook(ns, json!({"httpGet": {"path": "/stop", "port": closed}}), SECOND).await,
            Err(format!(
                "HTTP lifecycle hook (/stop) for Container \"web\" failed - error: \
                 Get \"http://127.0.0.1:{closed}/stop\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
        let slow = hook(ns, get("/slow"), SECOND).await;
        assert!(
            matches!(&slow, Err(m) if m.ends_with("context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
            "{slow:?}"
        );
    }

    #[tokio::test]
    async fn https_hooks_fall_back_to_http() {
        let netns = TestNetns::new().await;
        let plain = Server::http(&netns);
        let tls = Server::https(&netns);
        let ns = Some(netns.path.as_path());
        let get = |port: u16| {
            json!({"httpGet": {"scheme": "HTTPS", "path": "/ok", "port": port, "httpHeaders": [
                {"name": "Authorization", "value": "Bearer secret"},
            ]}})
        };
        assert_eq!(hook(ns, get(tls.port), SECOND).await, Ok(()));
        assert!(tls.requests()[0].contains("Authorization: Bearer secret\r\n"));
        assert_eq!(hook(ns, get(plain.port), SECOND).await, Ok(()));
        let retried = plain.requests().pop().expect("the retry in HTTP");
        assert!(retried.starts_with("GET /ok HTTP/1.1\r\n"), "{retried}");
        assert!(
            !retried.contains("Authorization"),
            "credentials are not sent in the clear: {retried}"
        );
    }

    #[tokio::test]
    async fn sleep_hooks_are_bounded_by_the_timeout() {
        let started = Instant::now();
        assert_eq!(
            hook(None, json!({"sleep": {"seconds": 1}}), 5 * SECOND).await,
            Ok(())
        );
        assert!(started.elapsed() >= SECOND);
        assert_eq!(
            hook(None, json!({"sleep": {"seconds": 30}}), SECOND).await,
            Err("Sleep lifecycle hook (30) for Container \"web\" failed - error: did not finish within 1s".into())
        );
        assert_eq!(
            hook(None, json!({"sleep": {"seconds": 0}}), SECOND).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn tcp_socket_and_empty_handlers_fail_as_in_the_kubelet() {
        let tcp = hook(None, json!({"tcpSocket": {"port": 80}}), SECOND).await;
        assert_eq!(
            tcp,
            Err("Cannot run handler: invalid handler: tcpSocket is not supported as a lifecycle handler".into())
        );
        assert!(hook(None, json!({}), SECOND).await.is_err());
        assert!(hook(None, json!({"exec": {"command": []}}), SECOND)
            .await
            .is_err());
    }

    #[test]
    fn exec_results() {
        let command = vec!["sh".to_owned(), "-c".to_owned(), "drain".to_owned()];
        let exited = |code, stdout: &str, stderr: &str| ExecEnd::Exited {
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        let check = |end: ExecEnd, expect: Result<(), &str>| {
            assert_eq!(
                exec_result(&command, "web", end, 30 * SECOND),
                expect.map_err(str::to_owned)
            );
        };
        check(exited(0, "done\n", ""), Ok(()));
        check(
            exited(2, "draining\n", "refused\n"),
            Err("Exec lifecycle hook ([sh -c drain]) for Container \"web\" failed - error: \
                 command 'sh -c drain' exited with 2: refused\n, message: \"draining\\nrefused\\n\""),
        );
        check(
            ExecEnd::TimedOut,
            Err(
                "Exec lifecycle hook ([sh -c drain]) for Container \"web\" failed - error: \
                 command 'sh -c drain' did not finish within 30s, message: \"\"",
            ),
        );
        check(
            ExecEnd::Failed("container pod.x.web.0: not running".into()),
            Err(
                "Exec lifecycle hook ([sh -c drain]) for Container \"web\" failed - error: \
                 container pod.x.web.0: not running, message: \"\"",
            ),
        );
    }
}
