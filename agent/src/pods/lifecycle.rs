//! The pure part of a pod's lifecycle: restart decisions with the kubelet's
//! CrashLoopBackOff, and the pod status built from what was observed. No I/O,
//! time passed in, so it is unit-tested table by table.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// Restart back-off: 10 s doubling to 5 min (the kubelet's), reset after a
/// container ran 10 minutes.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn of(pod: &Pod) -> RestartPolicy {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `code` runs again. Init containers
    /// restart on failure unless the policy is Never.
    pub fn restarts(self, code: i32, init: bool) -> bool {
        match (self, init) {
            (_, true) => code != 0 && self != RestartPolicy::Never,
            (RestartPolicy::Always, false) => true,
            (RestartPolicy::OnFailure, false) => code != 0,
            (RestartPolicy::Never, false) => false,
        }
    }
}

/// Back-off state of one container, as the kubelet keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// The delay the next restart waits; `None` before the first restart.
    pub current: Option<Duration>,
}

impl Backoff {
    /// The delay before restarting a container that ran for `ran`: none for the
    /// first restart, then 10 s doubling to 5 min; a long run resets it.
    pub fn next_delay(&mut self, ran: Duration) -> Duration {
        if ran >= BACKOFF_RESET {
            self.current = None;
        }
        let delay = self.current.unwrap_or(Duration::ZERO);
        self.current = Some(match self.current {
            None => BACKOFF_INITIAL,
            Some(d) => (d * 2).min(BACKOFF_MAX),
        });
        delay
    }
}

/// One container's state as reported in `containerStatuses`.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        started_at: Option<String>,
        finished_at: String,
    },
}

impl ContainerState {
    pub fn to_json(&self) -> Value {
        match self {
            ContainerState::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            ContainerState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            ContainerState::Terminated {
                exit_code,
                signal,
                reason,
                started_at,
                finished_at,
            } => {
                let mut t =
                    json!({"exitCode": exit_code, "reason": reason, "finishedAt": finished_at});
                if let Some(s) = signal {
                    t["signal"] = json!(s);
                }
                if let Some(s) = started_at {
                    t["startedAt"] = json!(s);
                }
                json!({"terminated": t})
            }
        }
    }
}

/// What the worker observed of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
    pub restart_count: u32,
    pub ready: bool,
    pub started: bool,
}

impl Observed {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map(ContainerState::to_json).unwrap_or_else(|| json!({})),
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(format!("outpost://{id}"));
        }
        v
    }

    fn terminated_ok(&self) -> Option<bool> {
        match &self.state {
            ContainerState::Terminated { exit_code, .. } => Some(*exit_code == 0),
            _ => None,
        }
    }
}

/// Everything the status is built from.
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    pub policy: RestartPolicy,
    pub init: &'a [Observed],
    pub containers: &'a [Observed],
    pub pod_ip: Option<&'a str>,
    pub host_ip: Option<&'a str>,
    pub start_time: &'a str,
    /// Set while the pod cannot start at all (sandbox, volumes, admission).
    pub blocked: Option<(&'a str, &'a str)>,
    /// Time stamp for condition transitions.
    pub now: &'a str,
    /// `qosClass` (see [`qos_class`]).
    pub qos: &'a str,
}

/// The pod's `status` as the kubelet reports it.
pub fn pod_status(input: &StatusInput<'_>) -> Value {
    let init_done = input.init.iter().all(|c| c.terminated_ok() == Some(true));
    let init_failed = input
        .init
        .iter()
        .any(|c| c.terminated_ok() == Some(false) && !input.policy.restarts(1, true));
    let all_ready = !input.containers.is_empty() && input.containers.iter().all(|c| c.ready);
    let any_running = input
        .containers
        .iter()
        .any(|c| matches!(c.state, ContainerState::Running { .. }));
    let all_terminated = !input.containers.is_empty()
        && input.containers.iter().all(|c| c.terminated_ok().is_some());
    let restarting = |c: &Observed| match &c.state {
        ContainerState::Terminated { exit_code, .. } => input.policy.restarts(*exit_code, false),
        _ => false,
    };
    let phase = if init_failed {
        "Failed"
    } else if !init_done || input.blocked.is_some() {
        "Pending"
    } else if all_terminated && !input.containers.iter().any(restarting) {
        if input
            .containers
            .iter()
            .all(|c| c.terminated_ok() == Some(true))
        {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if any_running
        || input
            .containers
            .iter()
            .any(|c| c.restart_count > 0 || restarting(c))
    {
        "Running"
    } else {
        "Pending"
    };
    let condition = |kind: &str, ok: bool, reason: Option<&str>| {
        let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": input.now});
        if let (false, Some(r)) = (ok, reason) {
            c["reason"] = json!(r);
        }
        c
    };
    let ready_reason = if phase == "Succeeded" || phase == "Failed" {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut status = json!({
        "phase": phase,
        "conditions": [
            condition("PodReadyToStartContainers", input.blocked.is_none(), None),
            condition("Initialized", init_done, Some("ContainersNotInitialized")),
            condition("Ready", all_ready && init_done, Some(ready_reason)),
            condition("ContainersReady", all_ready, Some(ready_reason)),
            condition("PodScheduled", true, None),
        ],
        "startTime": input.start_time,
        "containerStatuses": input.containers.iter().map(Observed::to_json).collect::<Vec<_>>(),
        "qosClass": input.qos,
    });
    if !input.init.is_empty() {
        status["initContainerStatuses"] =
            json!(input.init.iter().map(Observed::to_json).collect::<Vec<_>>());
    }
    if let Some(ip) = input.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(ip) = input.host_ip {
        status["hostIP"] = json!(ip);
        status["hostIPs"] = json!([{"ip": ip}]);
    }
    if let Some((reason, message)) = input.blocked {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    status
}

/// The pod's QoS class (Guaranteed, Burstable, BestEffort), as the API server computes it.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let limits = res.and_then(|r| r.limits.as_ref());
        any |= requests.is_some_and(|m| !m.is_empty()) || limits.is_some_and(|m| !m.is_empty());
        for resource in ["cpu", "memory"] {
            let limit = limits.and_then(|m| m.get(resource));
            let request = requests.and_then(|m| m.get(resource)).or(limit);
            if limit.is_none() || request.map(|q| &q.0) != limit.map(|q| &q.0) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy_table() {
        let check = |policy: RestartPolicy, code: i32, init: bool, want: bool| {
            assert_eq!(
                policy.restarts(code, init),
                want,
                "{policy:?} {code} init={init}"
            )
        };
        check(RestartPolicy::Always, 0, false, true);
        check(RestartPolicy::Always, 1, false, true);
        check(RestartPolicy::OnFailure, 0, false, false);
        check(RestartPolicy::OnFailure, 2, false, true);
        check(RestartPolicy::Never, 2, false, false);
        check(RestartPolicy::Always, 0, true, false);
        check(RestartPolicy::Always, 1, true, true);
        check(RestartPolicy::Never, 1, true, false);
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::default();
        let short = Duration::from_secs(1);
        let got: Vec<u64> = (0..8).map(|_| b.next_delay(short).as_secs()).collect();
        assert_eq!(got, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(
            b.next_delay(BACKOFF_RESET).as_secs(),
            0,
            "a 10 minute run resets"
        );
        assert_eq!(b.next_delay(short).as_secs(), 10);
    }

    fn observed(name: &str, state: ContainerState, restarts: u32, ready: bool) -> Observed {
        Observed {
            name: name.into(),
            image: "busybox".into(),
            image_id: String::new(),
            container_id: None,
            state,
            last_state: None,
            restart_count: restarts,
            ready,
            started: ready,
        }
    }

    fn running() -> ContainerState {
        ContainerState::Running {
            started_at: "t".into(),
        }
    }

    fn exited(code: i32) -> ContainerState {
        ContainerState::Terminated {
            exit_code: code,
            signal: None,
            reason: "x".into(),
            started_at: None,
            finished_at: "t".into(),
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState::Waiting {
            reason: reason.into(),
            message: None,
        }
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let check = |policy, init: Vec<Observed>, containers: Vec<Observed>, want: &str| {
            let input = StatusInput {
                policy,
                init: &init,
                containers: &containers,
                pod_ip: None,
                host_ip: None,
                start_time: "t",
                blocked: None,
                now: "t",
                qos: "BestEffort",
            };
            let status = pod_status(&input);
            assert_eq!(status["phase"], want, "{status:#}");
        };
        use RestartPolicy::*;
        check(
            Always,
            vec![],
            vec![observed("a", waiting("ContainerCreating"), 0, false)],
            "Pending",
        );
        check(
            Always,
            vec![],
            vec![observed("a", running(), 0, true)],
            "Running",
        );
        check(
            Always,
            vec![],
            vec![observed("a", waiting("CrashLoopBackOff"), 3, false)],
            "Running",
        );
        check(
            Always,
            vec![],
            vec![observed("a", exited(1), 1, false)],
            "Running",
        );
        check(
            Never,
            vec![],
            vec![observed("a", exited(0), 0, false)],
            "Succeeded",
        );
        check(
            Never,
            vec![],
            vec![
                observed("a", exited(3), 0, false),
                observed("b", exited(0), 0, false),
            ],
            "Failed",
        );
        check(
            OnFailure,
            vec![],
            vec![observed("a", exited(0), 0, false)],
            "Succeeded",
        );
        check(
            OnFailure,
            vec![],
            vec![observed("a", exited(2), 0, false)],
            "Running",
        );
        check(
            Always,
            vec![observed("i", running(), 0, false)],
            vec![observed("a", waiting("PodInitializing"), 0, false)],
            "Pending",
        );
        check(
            Never,
            vec![observed("i", exited(1), 0, false)],
            vec![observed("a", waiting("PodInitializing"), 0, false)],
            "Failed",
        );
        check(
            Always,
            vec![observed("i", exited(0), 0, false)],
            vec![observed("a", running(), 0, true)],
            "Running",
        );
    }

    #[test]
    fn ready_conditions() {
        let containers = vec![
            observed("a", running(), 0, true),
            observed("b", running(), 0, false),
        ];
        let input = StatusInput {
            policy: RestartPolicy::Always,
            init: &[],
            containers: &containers,
            pod_ip: Some("10.42.0.5"),
            host_ip: None,
            start_time: "t",
            blocked: None,
            now: "t",
            qos: "Burstable",
        };
        let s = pod_status(&input);
        let cond = |t: &str| {
            s["conditions"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["type"] == t))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(cond("Ready")["status"], "False");
        assert_eq!(cond("Ready")["reason"], "ContainersNotReady");
        assert_eq!(cond("Initialized")["status"], "True");
        assert_eq!(s["podIP"], "10.42.0.5");
        assert_eq!(s["containerStatuses"][1]["ready"], false);
    }
}
