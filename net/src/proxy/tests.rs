//! Unit tests of the pure parts: rendering, planning, the driver over the
//! recording fake. The kernel is exercised in `net/tests/proxy.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::model::{Chain, Rule, Ruleset, Set, Stmt};
use super::plan::{self, Batch, Op};
use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn config() -> ProxyConfig {
    ProxyConfig {
        table: "outpost".to_string(),
        service_cidr: (ip("10.43.0.0"), 16),
        pod_cidr: (ip("10.42.0.0"), 16),
        bridge: "outpost0".to_string(),
        node_ips: Vec::new(),
    }
}

fn port(name: &str, protocol: Protocol, port: u16, endpoints: &[(&str, u16)]) -> ServicePort {
    ServicePort {
        name: name.to_string(),
        protocol,
        port,
        node_port: None,
        load_balancer: false,
        endpoints: endpoints.iter().map(|(a, p)| (ip(a), *p)).collect(),
    }
}

fn service(ns: &str, name: &str, cluster_ip: Option<&str>, ports: Vec<ServicePort>) -> Service {
    Service {
        namespace: ns.to_string(),
        name: name.to_string(),
        cluster_ip: cluster_ip.map(ip),
        ports,
        affinity: None,
        external_local: false,
    }
}

/// A small but complete input: load balancing, NodePort, no endpoints,
/// headless, session affinity and a hostPort.
fn sample() -> (ProxyConfig, Vec<Service>, Vec<HostPort>) {
    let mut cfg = config();
    cfg.node_ips = vec![ip("192.168.1.10")];
    let mut web = service(
        "default",
        "web",
        Some("10.43.0.5"),
        vec![port(
            "http",
            Protocol::Tcp,
            80,
            &[("10.42.0.8", 8080), ("10.42.0.7", 8080)],
        )],
    );
    web.ports[0].node_port = Some(30080);
    let mut empty = service(
        "default",
        "empty",
        Some("10.43.0.6"),
        vec![port("", Protocol::Udp, 53, &[])],
    );
    empty.ports[0].node_port = Some(30053);
    let headless = service(
        "default",
        "db",
        None,
        vec![port("", Protocol::Tcp, 5432, &[("10.42.0.9", 5432)])],
    );
    let mut sticky = service(
        "kube-system",
        "sticky",
        Some("10.43.0.7"),
        vec![port("", Protocol::Tcp, 443, &[("10.42.0.10", 8443)])],
    );
    sticky.affinity = Some(Duration::from_secs(10800));
    let host_ports = vec![HostPort {
        protocol: Protocol::Tcp,
        host_ip: None,
        host_port: 8081,
        pod_ip: ip("10.42.0.11"),
        container_port: 80,
    }];
    (cfg, vec![web, empty, headless, sticky], host_ports)
}

const SAMPLE: &str = r#"table ip outpost {
	chain cluster-ips-check {
		ip daddr 10.43.0.0/16 goto reject-chain
	}
	chain endpoint-C355NBI5-default/web/tcp/http__10.42.0.8/8080 {
		ip saddr 10.42.0.8 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.42.0.8:8080
	}
	chain endpoint-K4JL2AZH-default/web/tcp/http__10.42.0.7/8080 {
		ip saddr 10.42.0.7 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.42.0.7:8080
	}
	chain endpoint-KWTYHHC6-kube-system/sticky/tcp/__10.42.0.10/8443 {
		ip saddr 10.42.0.10 jump mark-for-masquerade
		update @affinity-KWTYHHC6-kube-system/sticky/tcp/__10.42.0.10/8443 { ip saddr }
		meta l4proto tcp dnat to 10.42.0.10:8443
	}
	chain endpoints-check {
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
		ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
	}
	chain external-7UCITOBJ-default/web/tcp/http {
		ip saddr != 10.42.0.0/16 jump mark-for-masquerade
		goto service-7UCITOBJ-default/web/tcp/http
	}
	chain filter-forward {
		type filter hook forward priority -110; policy accept;
		ct state new jump endpoints-check
		ct state new jump cluster-ips-check
	}
	chain filter-input {
		type filter hook input priority -110; policy accept;
		ct state new jump endpoints-check
	}
	chain filter-output {
		type filter hook output priority -110; policy accept;
		ct state new jump endpoints-check
	}
	chain filter-output-post-dnat {
		type filter hook output priority -90; policy accept;
		ct state new jump cluster-ips-check
	}
	chain hostports {
		fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto tcp th dport 8081 ip saddr 10.42.0.11 jump mark-for-masquerade
		fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto tcp th dport 8081 dnat to 10.42.0.11:80
	}
	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}
	chain masquerading {
		meta mark & 0x00004000 == 0x00004000 meta mark set meta mark & 0xffffbfff masquerade
		ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 oifname != "outpost0" masquerade
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
		jump hostports
	}
	chain nat-postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump masquerading
	}
	chain nat-prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump services
		jump hostports
	}
	chain reject-chain {
		meta l4proto tcp reject with tcp reset
		reject with icmp port-unreachable
	}
	chain service-7UCITOBJ-default/web/tcp/http {
		numgen random mod 2 == 0 goto endpoint-K4JL2AZH-default/web/tcp/http__10.42.0.7/8080
		goto endpoint-C355NBI5-default/web/tcp/http__10.42.0.8/8080
	}
	chain service-YYPVMRP5-kube-system/sticky/tcp/ {
		ip saddr @affinity-KWTYHHC6-kube-system/sticky/tcp/__10.42.0.10/8443 goto endpoint-KWTYHHC6-kube-system/sticky/tcp/__10.42.0.10/8443
		goto endpoint-KWTYHHC6-kube-system/sticky/tcp/__10.42.0.10/8443
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
		ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
	}
	set affinity-KWTYHHC6-kube-system/sticky/tcp/__10.42.0.10/8443 {
		type ipv4_addr
		flags dynamic,timeout
		timeout 10800s
	}
	map no-endpoint-nodeports {
		type inet_proto . inet_service : verdict
		elements = { udp . 30053 : goto reject-chain }
	}
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.43.0.6 . udp . 53 : goto reject-chain }
	}
	set nodeport-ips {
		type ipv4_addr
		elements = { 192.168.1.10 }
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.43.0.5 . tcp . 80 : goto service-7UCITOBJ-default/web/tcp/http,
			     10.43.0.7 . tcp . 443 : goto service-YYPVMRP5-kube-system/sticky/tcp/ }
	}
	map service-nodeports {
		type inet_proto . inet_service : verdict
		elements = { tcp . 30080 : goto external-7UCITOBJ-default/web/tcp/http }
	}
}
"#;

#[test]
fn renders_the_sample_table() {
    let (cfg, services, host_ports) = sample();
    let rendered = render(&cfg, &services, &host_ports);
    assert!(rendered.conflicts.is_empty(), "{:?}", rendered.conflicts);
    let text = rendered.ruleset.to_string();
    if text != SAMPLE {
        panic!("rendered table differs; got:\n{text}");
    }
}

// ---------------------------------------------------------------------------
// Table-driven checks of the renderer.

/// Renders `services` (default config, no host ports) and runs `expect` on it.
fn check(services: &[Service], expect: impl FnOnce(&Rendered)) {
    let rendered = render(&config(), services, &[]);
    expect(&rendered);
}

fn chains_named<'a>(r: &'a Ruleset, prefix: &str) -> Vec<&'a String> {
    r.chains.keys().filter(|n| n.starts_with(prefix)).collect()
}

fn elements(r: &Ruleset, set: &str) -> Vec<String> {
    r.sets[set]
        .elements
        .iter()
        .map(|(k, v)| match v {
            Some(c) => format!("{k} : goto {c}"),
            None => k.to_string(),
        })
        .collect()
}

#[test]
fn headless_services_are_not_proxied() {
    let empty = render(&config(), &[], &[]).ruleset;
    check(
        &[service(
            "ns",
            "db",
            None,
            vec![port("", Protocol::Tcp, 5432, &[("10.42.0.9", 5432)])],
        )],
        |r| assert_eq!(r.ruleset, empty),
    );
}

#[test]
fn a_port_without_endpoints_is_rejected_not_routed() {
    let mut s = service(
        "ns",
        "a",
        Some("10.43.0.9"),
        vec![port("p", Protocol::Tcp, 80, &[])],
    );
    s.ports[0].node_port = Some(30001);
    check(&[s], |r| {
        assert!(chains_named(&r.ruleset, "service-").is_empty());
        assert_eq!(
            elements(&r.ruleset, "no-endpoint-services"),
            ["10.43.0.9 . tcp . 80 : goto reject-chain"]
        );
        assert_eq!(
            elements(&r.ruleset, "no-endpoint-nodeports"),
            ["tcp . 30001 : goto reject-chain"]
        );
        assert!(elements(&r.ruleset, "service-ips").is_empty());
    });
}

#[test]
fn one_endpoint_needs_no_load_balancing() {
    check(
        &[service(
            "ns",
            "a",
            Some("10.43.0.9"),
            vec![port("p", Protocol::Udp, 53, &[("10.42.0.3", 5353)])],
        )],
        |r| {
            let chain = chains_named(&r.ruleset, "service-")[0];
            let rules = &r.ruleset.chains[chain].rules;
            assert_eq!(rules.len(), 1);
            assert!(matches!(&rules[0].0[..], [Stmt::Goto(ep)] if ep.starts_with("endpoint-")));
            let ep = chains_named(&r.ruleset, "endpoint-")[0];
            assert_eq!(
                r.ruleset.chains[ep]
                    .rules
                    .last()
                    .map(Rule::to_string)
                    .as_deref(),
                Some("meta l4proto udp dnat to 10.42.0.3:5353")
            );
        },
    );
}

#[test]
fn endpoint_and_service_order_do_not_matter() {
    let a = service(
        "ns",
        "a",
        Some("10.43.0.9"),
        vec![port(
            "p",
            Protocol::Tcp,
            80,
            &[("10.42.0.3", 80), ("10.42.0.1", 80), ("10.42.0.3", 80)],
        )],
    );
    let b = service(
        "ns",
        "b",
        Some("10.43.0.10"),
        vec![port("p", Protocol::Tcp, 80, &[("10.42.0.2", 80)])],
    );
    let mut a2 = a.clone();
    a2.ports[0].endpoints.reverse();
    let one = render(&config(), &[a, b.clone()], &[]);
    let two = render(&config(), &[b, a2], &[]);
    assert_eq!(one, two);
    let a = one
        .ruleset
        .chains
        .iter()
        .find(|(n, _)| n.starts_with("service-") && n.ends_with("ns/a/tcp/p"))
        .map(|(_, c)| c.rules.len());
    assert_eq!(a, Some(2), "duplicates collapse");
}

#[test]
fn a_claimed_cluster_port_keeps_its_first_owner() {
    let a = service(
        "ns",
        "a",
        Some("10.43.0.9"),
        vec![port("p", Protocol::Tcp, 80, &[("10.42.0.1", 80)])],
    );
    let b = service(
        "ns",
        "b",
        Some("10.43.0.9"),
        vec![port("q", Protocol::Tcp, 80, &[("10.42.0.2", 80)])],
    );
    // Same port over UDP is another port.
    let c = service(
        "ns",
        "c",
        Some("10.43.0.9"),
        vec![port("r", Protocol::Udp, 80, &[("10.42.0.3", 80)])],
    );
    check(&[b, c, a], |r| {
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(
            r.conflicts[0].to_string(),
            "ns/b:q: 10.43.0.9:80/tcp is already used by ns/a:p, left out"
        );
        assert_eq!(elements(&r.ruleset, "service-ips").len(), 2);
    });
}

#[test]
fn a_claimed_node_port_leaves_the_cluster_ip_working() {
    let mut a = service(
        "ns",
        "a",
        Some("10.43.0.9"),
        vec![port("p", Protocol::Tcp, 80, &[("10.42.0.1", 80)])],
    );
    a.ports[0].node_port = Some(30000);
    let mut b = service(
        "ns",
        "b",
        Some("10.43.0.10"),
        vec![port("p", Protocol::Tcp, 80, &[("10.42.0.2", 80)])],
    );
    b.ports[0].node_port = Some(30000);
    check(&[a, b], |r| {
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(r.conflicts[0].what, "nodePort 30000/tcp");
        assert_eq!(elements(&r.ruleset, "service-ips").len(), 2);
        assert_eq!(elements(&r.ruleset, "service-nodeports").len(), 1);
        assert_eq!(chains_named(&r.ruleset, "external-").len(), 1);
    });
}

#[test]
fn node_ports_answer_on_every_local_address_unless_listed() {
    check(&[], |r| {
        let rules: Vec<String> = r.ruleset.chains["services"]
            .rules
            .iter()
            .map(Rule::to_string)
            .collect();
        assert_eq!(
            rules[1],
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
        );
        assert!(!r.ruleset.sets.contains_key("nodeport-ips"));
    });
}

#[test]
fn loopback_is_never_a_node_port_address() {
    let mut cfg = config();
    cfg.node_ips = vec![ip("127.0.0.1")];
    assert_eq!(render(&cfg, &[], &[]), render(&config(), &[], &[]));
    cfg.node_ips.push(ip("192.168.1.10"));
    let r = render(&cfg, &[], &[]).ruleset;
    assert_eq!(elements(&r, "nodeport-ips"), ["192.168.1.10"]);
}

#[test]
fn host_ports_conflict_on_wildcards() {
    let hp = |host_ip: Option<&str>, pod: &str| HostPort {
        protocol: Protocol::Tcp,
        host_ip: host_ip.map(ip),
        host_port: 8080,
        pod_ip: ip(pod),
        container_port: 80,
    };
    let cases: &[(&[HostPort], usize)] = &[
        (
            &[
                hp(Some("192.168.1.10"), "10.42.0.1"),
                hp(Some("192.168.1.11"), "10.42.0.2"),
            ],
            0,
        ),
        (
            &[hp(None, "10.42.0.1"), hp(Some("192.168.1.11"), "10.42.0.2")],
            1,
        ),
        (
            &[hp(Some("192.168.1.11"), "10.42.0.2"), hp(None, "10.42.0.1")],
            1,
        ),
        (&[hp(None, "10.42.0.1"), hp(None, "10.42.0.2")], 1),
    ];
    for (ports, conflicts) in cases {
        let r = render(&config(), &[], ports);
        assert_eq!(r.conflicts.len(), *conflicts, "{ports:?}");
        // Two rules (hairpin mark, DNAT) per host port kept.
        assert_eq!(
            r.ruleset.chains["hostports"].rules.len(),
            2 * (ports.len() - conflicts)
        );
    }
}

#[test]
fn names_stay_short_and_distinct() {
    let long = "x".repeat(63);
    let s = |ns: &str| {
        service(
            ns,
            &long,
            Some("10.43.0.9"),
            vec![port(
                &"p".repeat(15),
                Protocol::Tcp,
                80,
                &[("10.42.0.1", 65535)],
            )],
        )
    };
    let mut a = s(&format!("{long}-a"));
    let b = s(&format!("{long}-b"));
    a.cluster_ip = Some(ip("10.43.0.10"));
    let r = render(&config(), &[a, b], &[]);
    let names: BTreeSet<&String> = r
        .ruleset
        .chains
        .keys()
        .chain(r.ruleset.sets.keys())
        .collect();
    assert!(names.iter().all(|n| n.len() <= 240), "{names:?}");
    assert_eq!(chains_named(&r.ruleset, "endpoint-").len(), 2);
}

#[test]
fn a_zero_affinity_timeout_is_no_affinity() {
    let mut a = service(
        "ns",
        "a",
        Some("10.43.0.9"),
        vec![port("p", Protocol::Tcp, 80, &[("10.42.0.1", 80)])],
    );
    let plain = render(&config(), &[a.clone()], &[]);
    a.affinity = Some(Duration::ZERO);
    assert_eq!(render(&config(), &[a], &[]), plain);
}

#[test]
fn config_is_checked() {
    type Change = fn(&mut ProxyConfig);
    let cases: Vec<(Change, &str)> = vec![
        (|c| c.table = String::new(), "table"),
        (|c| c.table = "out post".into(), "table"),
        (|c| c.bridge = "a-very-long-bridge".into(), "bridge"),
        (|c| c.bridge = String::new(), "bridge"),
        (|c| c.service_cidr.1 = 33, "service_cidr"),
        (|c| c.pod_cidr.1 = 40, "pod_cidr"),
        (|c| c.pod_cidr = (ip("10.43.128.0"), 17), "service_cidr"),
    ];
    assert!(config().validate().is_ok());
    for (change, field) in cases {
        let mut c = config();
        change(&mut c);
        match c.validate() {
            Err(ProxyError::Config { field: f, .. }) => assert_eq!(f, field, "{c:?}"),
            other => panic!("{c:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Planning, checked against a model of the kernel's rules: nothing may be
// used before it exists, deleted while used, or added twice.

#[derive(Debug, Clone, Default, PartialEq)]
struct Sim {
    table: Option<(BTreeMap<String, Chain>, BTreeMap<String, Set>)>,
}

impl Sim {
    /// Applies a batch all or nothing, as the kernel does.
    fn apply(&mut self, batch: &Batch) -> Result<(), String> {
        let mut next = self.table.clone();
        for op in &batch.ops {
            step(&mut next, op).map_err(|e| format!("{op}: {e}"))?;
        }
        self.table = next;
        Ok(())
    }

    fn ruleset(&self, name: &str) -> Option<Ruleset> {
        self.table.as_ref().map(|(chains, sets)| Ruleset {
            table: name.to_string(),
            chains: chains.clone(),
            sets: sets.clone(),
        })
    }
}

type SimTable = Option<(BTreeMap<String, Chain>, BTreeMap<String, Set>)>;

fn step(table: &mut SimTable, op: &Op) -> Result<(), String> {
    if let Op::EnsureTable = op {
        table.get_or_insert_with(Default::default);
        return Ok(());
    }
    if let Op::AddTable = op {
        return match table {
            Some(_) => Err("table exists".into()),
            None => {
                *table = Some(Default::default());
                Ok(())
            }
        };
    }
    let Some((chains, sets)) = table.as_mut() else {
        return Err("no table".into());
    };
    let chain_used =
        |chains: &BTreeMap<String, Chain>, sets: &BTreeMap<String, Set>, name: &str| {
            chains
                .values()
                .flat_map(|c| &c.rules)
                .flat_map(|r| &r.0)
                .any(|s| s.chain_ref() == Some(name))
                || sets
                    .values()
                    .flat_map(|s| s.elements.values())
                    .any(|v| v.as_deref() == Some(name))
        };
    match op {
        Op::EnsureTable | Op::AddTable => unreachable!("handled above"),
        Op::DeleteTable => *table = None,
        Op::AddChain { name, base } => {
            if chains
                .insert(
                    name.clone(),
                    Chain {
                        base: *base,
                        rules: Vec::new(),
                    },
                )
                .is_some()
            {
                return Err("chain exists".into());
            }
        }
        Op::FlushChain(name) => chains.get_mut(name).ok_or("no such chain")?.rules.clear(),
        Op::DeleteChain(name) => {
            if !chains.get(name).ok_or("no such chain")?.rules.is_empty() {
                return Err("chain not empty".into());
            }
            if chain_used(chains, sets, name) {
                return Err("chain in use".into());
            }
            chains.remove(name);
        }
        Op::AddRule { chain, rule } => {
            for s in &rule.0 {
                if let Some(c) = s.chain_ref() {
                    if !chains.contains_key(c) {
                        return Err(format!("no chain {c}"));
                    }
                }
                if let Some(set) = s.set_ref() {
                    if !sets.contains_key(set) {
                        return Err(format!("no set {set}"));
                    }
                }
            }
            chains
                .get_mut(chain)
                .ok_or("no such chain")?
                .rules
                .push(rule.clone());
        }
        Op::AddSet { name, spec } => {
            if sets
                .insert(
                    name.clone(),
                    Set {
                        spec: *spec,
                        elements: BTreeMap::new(),
                    },
                )
                .is_some()
            {
                return Err("set exists".into());
            }
        }
        Op::DeleteSet(name) => {
            let used = chains
                .values()
                .flat_map(|c| &c.rules)
                .flat_map(|r| &r.0)
                .any(|s| s.set_ref() == Some(name));
            if used {
                return Err("set in use".into());
            }
            sets.remove(name).ok_or("no such set")?;
        }
        Op::AddElements {
            set,
            spec,
            elements,
        } => {
            for (_, goto) in elements {
                if let Some(c) = goto {
                    if !chains.contains_key(c) {
                        return Err(format!("no chain {c}"));
                    }
                }
            }
            let s = sets.get_mut(set).ok_or("no such set")?;
            if s.spec != *spec {
                return Err("spec differs".into());
            }
            for (k, v) in elements {
                if s.elements.insert(*k, v.clone()).is_some() {
                    return Err(format!("element {k} exists"));
                }
            }
        }
        Op::DeleteElements { set, elements, .. } => {
            let s = sets.get_mut(set).ok_or("no such set")?;
            for (k, v) in elements {
                if s.elements.remove(k).as_ref() != Some(v) {
                    return Err(format!("element {k} missing"));
                }
            }
        }
    }
    Ok(())
}

/// A sequence of desired states touching every kind of change.
fn states() -> Vec<(Vec<Service>, Vec<HostPort>)> {
    let (_, base, hosts) = sample();
    let mut s = vec![(base.clone(), hosts.clone())];
    // An endpoint replaced.
    let mut v = base.clone();
    v[0].ports[0].endpoints[1] = (ip("10.42.0.20"), 8080);
    s.push((v.clone(), hosts.clone()));
    // Endpoints gone: the service now rejects.
    v[0].ports[0].endpoints.clear();
    s.push((v.clone(), hosts.clone()));
    // Endpoints back; the affinity timeout changes.
    v[0].ports[0].endpoints = vec![
        (ip("10.42.0.1"), 80),
        (ip("10.42.0.2"), 80),
        (ip("10.42.0.3"), 80),
    ];
    v[3].affinity = Some(Duration::from_secs(60));
    s.push((v.clone(), hosts.clone()));
    // Affinity off, a service gone, a new one with a NodePort, host ports gone.
    v[3].affinity = None;
    v.remove(1);
    let mut n = service(
        "other",
        "new",
        Some("10.43.1.1"),
        vec![port(
            "x",
            Protocol::Udp,
            9000,
            &[("10.42.1.1", 9000), ("10.42.1.2", 9000)],
        )],
    );
    n.ports[0].node_port = Some(31000);
    v.push(n);
    s.push((v.clone(), Vec::new()));
    // The NodePort moves to the other service, which loses its endpoints.
    v[0].ports[0].node_port = None;
    v[3].ports[0].endpoints.clear();
    v[3].ports[0].node_port = Some(30080);
    s.push((v, Vec::new()));
    // Nothing at all, then everything again.
    s.push((Vec::new(), Vec::new()));
    s.push((base, hosts));
    s
}

#[test]
fn changes_only_batches_apply_cleanly_and_reach_the_new_table() {
    let (cfg, _, _) = sample();
    let states = states();
    for (i, from) in states.iter().enumerate() {
        for (j, to) in states.iter().enumerate() {
            let old = render(&cfg, &from.0, &from.1).ruleset;
            let new = render(&cfg, &to.0, &to.1).ruleset;
            let mut sim = Sim::default();
            sim.apply(&plan::full(&old)).expect("full batch applies");
            assert_eq!(sim.ruleset("outpost").as_ref(), Some(&old));
            let batch = plan::update(&old, &new);
            assert!(!batch.replaces_table(), "{i}->{j}");
            sim.apply(&batch)
                .unwrap_or_else(|e| panic!("state {i} -> {j}: {e}\n{batch}"));
            assert_eq!(
                sim.ruleset("outpost").as_ref(),
                Some(&new),
                "state {i} -> {j}"
            );
            if i == j {
                assert!(batch.is_empty(), "no change, nothing sent: {batch}");
            }
        }
    }
}

#[test]
fn a_full_batch_replaces_whatever_is_there() {
    let (cfg, services, hosts) = sample();
    let new = render(&cfg, &services, &hosts).ruleset;
    let mut sim = Sim::default();
    sim.apply(&plan::full(&new)).expect("onto nothing");
    sim.apply(&plan::full(&new)).expect("onto itself");
    sim.apply(&plan::remove("outpost")).expect("remove");
    assert_eq!(sim.table, None);
    sim.apply(&plan::remove("outpost")).expect("remove again");
}

#[test]
fn an_endpoint_change_sends_only_that() {
    let (cfg, services, hosts) = sample();
    let old = render(&cfg, &services, &hosts).ruleset;
    let mut changed = services.clone();
    changed[0].ports[0].endpoints[0] = (ip("10.42.0.20"), 8080);
    let new = render(&cfg, &changed, &hosts).ruleset;
    let batch = plan::update(&old, &new);
    let expected = "\
add chain endpoint-OPOILIZE-default/web/tcp/http__10.42.0.20/8080
flush chain service-7UCITOBJ-default/web/tcp/http
flush chain endpoint-C355NBI5-default/web/tcp/http__10.42.0.8/8080
add rule endpoint-OPOILIZE-default/web/tcp/http__10.42.0.20/8080 ip saddr 10.42.0.20 jump mark-for-masquerade
add rule endpoint-OPOILIZE-default/web/tcp/http__10.42.0.20/8080 meta l4proto tcp dnat to 10.42.0.20:8080
add rule service-7UCITOBJ-default/web/tcp/http numgen random mod 2 == 0 goto endpoint-K4JL2AZH-default/web/tcp/http__10.42.0.7/8080
add rule service-7UCITOBJ-default/web/tcp/http goto endpoint-OPOILIZE-default/web/tcp/http__10.42.0.20/8080
delete chain endpoint-C355NBI5-default/web/tcp/http__10.42.0.8/8080
";
    assert_eq!(batch.to_string(), expected);
}

// ---------------------------------------------------------------------------
// The driver over the recording fake.

fn proxy() -> Proxy<RecordingTables> {
    Proxy::with_tables(config(), RecordingTables::default()).expect("valid config")
}

#[test]
fn the_first_sync_replaces_the_table_then_only_changes_go() {
    let (_, services, hosts) = sample();
    let mut p = proxy();
    let first = p.sync(&services, &hosts).expect("sync");
    assert!(first.full && !first.recovered);
    assert_eq!(p.tables().committed.len(), 1);
    assert_eq!(
        &p.tables().committed[0].ops[..3],
        &[Op::EnsureTable, Op::DeleteTable, Op::AddTable]
    );
    let again = p.sync(&services, &hosts).expect("sync");
    assert_eq!(again.operations, 0);
    assert_eq!(
        p.tables().committed.len(),
        1,
        "nothing sent when nothing changed"
    );
    let mut changed = services.clone();
    changed[1].ports[0].endpoints.push((ip("10.42.0.30"), 53));
    let third = p.sync(&changed, &hosts).expect("sync");
    assert!(!third.full);
    assert!(third.operations < 15, "{}", p.tables().committed[1]);
}

#[test]
fn a_refused_change_is_retried_as_a_whole_table() {
    let (_, services, hosts) = sample();
    let mut p = proxy();
    p.sync(&services, &hosts).expect("sync");
    p.tables_mut().refuse_next = 1;
    let mut changed = services.clone();
    changed[0].ports[0].endpoints.pop();
    let stats = p.sync(&changed, &hosts).expect("recovered");
    assert!(stats.full && stats.recovered);
    assert!(p.tables().committed[1].replaces_table());
    assert!(!p.tables().refused[0].replaces_table());
}

#[test]
fn a_refused_whole_table_is_reported_and_tried_again_next_time() {
    let (_, services, hosts) = sample();
    let mut p = proxy();
    p.tables_mut().refuse_next = 1;
    let err = p.sync(&services, &hosts).expect_err("refused");
    assert!(
        err.to_string()
            .starts_with("nftables transaction on table ip outpost refused ("),
        "{err}"
    );
    assert!(p.ruleset().is_none());
    let stats = p.sync(&services, &hosts).expect("sync");
    assert!(stats.full);
}

#[test]
fn remove_deletes_the_table_and_the_next_sync_rebuilds_it() {
    let (_, services, hosts) = sample();
    let mut p = proxy();
    p.sync(&services, &hosts).expect("sync");
    p.remove().expect("remove");
    assert_eq!(
        p.tables().committed[1].ops,
        [Op::EnsureTable, Op::DeleteTable]
    );
    assert!(p.sync(&services, &hosts).expect("sync").full);
}

/// 1,000 services × 3 endpoints: one endpoint change is a handful of
/// operations, whatever the table's size.
#[test]
fn a_change_in_a_large_table_stays_small() {
    let services = many_services(1000, 3);
    let mut p = proxy();
    let first = p.sync(&services, &[]).expect("sync");
    assert!(first.operations > 10_000, "{}", first.operations);
    let mut changed = services.clone();
    changed[500].ports[0].endpoints[1] = (ip("10.42.250.250"), 8080);
    let stats = p.sync(&changed, &[]).expect("sync");
    assert!(!stats.full);
    assert!(stats.operations <= 10, "{}", p.tables().committed[1]);
}

/// `n` services of one TCP port each, with `endpoints` endpoints.
pub(crate) fn many_services(n: u32, endpoints: u32) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let [_, _, hi, lo] = (i + 1).to_be_bytes();
            let eps: Vec<(Ipv4Addr, u16)> = (0..endpoints)
                .map(|e| {
                    let [_, a, b, c] = (i * endpoints + e + 1).to_be_bytes();
                    (Ipv4Addr::new(10, 42 + a, b, c), 8080)
                })
                .collect();
            Service {
                namespace: "bench".to_string(),
                name: format!("svc-{i}"),
                cluster_ip: Some(Ipv4Addr::new(10, 43, hi, lo)),
                ports: vec![ServicePort {
                    name: "http".to_string(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: None,
                    load_balancer: false,
                    endpoints: eps,
                }],
                affinity: None,
                external_local: false,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Stale UDP flows.

fn sock(s: &str) -> std::net::SocketAddrV4 {
    s.parse().expect("test socket address")
}

fn flow(orig_dst: &str, reply_src: &str) -> Flow {
    Flow {
        orig_src: sock("10.42.0.2:40000"),
        orig_dst: sock(orig_dst),
        reply_src: sock(reply_src),
        dst_nat: orig_dst != reply_src,
    }
}

/// A DNS-like UDP service (ClusterIP and NodePort) and a UDP hostPort.
fn udp_sample(endpoints: &[(&str, u16)]) -> (Vec<Service>, Vec<HostPort>) {
    let mut dns = service(
        "kube-system",
        "dns",
        Some("10.43.0.10"),
        vec![
            port("dns", Protocol::Udp, 53, endpoints),
            port("dns-tcp", Protocol::Tcp, 53, endpoints),
        ],
    );
    dns.ports[0].node_port = Some(30053);
    let syslog = HostPort {
        protocol: Protocol::Udp,
        host_ip: None,
        host_port: 514,
        pod_ip: ip("10.42.0.20"),
        container_port: 5514,
    };
    (vec![dns], vec![syslog])
}

#[test]
fn udp_flows_to_gone_endpoints_are_stale_and_no_others() {
    let (services, hosts) = udp_sample(&[("10.42.0.5", 53), ("10.42.0.6", 53)]);
    let frontends = UdpFrontends::of(&config(), &services, &hosts);
    let stale = |f: Flow| frontends.is_stale(&f);
    // ClusterIP: to a live endpoint, to a gone one, never translated.
    assert!(!stale(flow("10.43.0.10:53", "10.42.0.5:53")));
    assert!(stale(flow("10.43.0.10:53", "10.42.0.7:53")));
    assert!(stale(flow("10.43.0.10:53", "10.43.0.10:53")));
    // The right address on the wrong port is another endpoint.
    assert!(stale(flow("10.43.0.10:53", "10.42.0.5:5353")));
    // No Service there (deleted, or from before a restart).
    assert!(stale(flow("10.43.9.9:53", "10.42.0.5:53")));
    // NodePort and hostPort, on whatever node address.
    assert!(!stale(flow("192.168.1.10:30053", "10.42.0.6:53")));
    assert!(stale(flow("192.168.1.10:30053", "10.42.0.9:53")));
    assert!(!stale(flow("192.168.1.10:514", "10.42.0.20:5514")));
    assert!(stale(flow("192.168.1.10:514", "10.42.0.21:5514")));
    // Translated to a pod through a port nothing serves now (a NodePort
    // deleted while the agent was down).
    assert!(stale(flow("192.168.1.10:30099", "10.42.0.6:53")));
    // Not the proxy's: an untranslated flow to port 514 elsewhere, a pod's
    // flow to the outside world, another tool's translation off the pod range.
    assert!(!stale(flow("203.0.113.1:514", "203.0.113.1:514")));
    assert!(!stale(flow("192.0.2.53:53", "192.0.2.53:53")));
    assert!(!stale(flow("192.168.1.10:5353", "172.17.0.2:53")));
    // Two Services on one NodePort: the rules serve the first by name, so
    // the flows to its endpoints stay and the other's are stale.
    let (mut first, _) = udp_sample(&[("10.42.0.5", 53)]);
    let (mut second, _) = udp_sample(&[("10.42.0.9", 53)]);
    first[0].name = "a".into();
    second[0].name = "b".into();
    second[0].cluster_ip = Some(ip("10.43.0.11"));
    let both = [first.remove(0), second.remove(0)];
    let frontends = UdpFrontends::of(&config(), &both, &[]);
    assert!(!frontends.is_stale(&flow("192.168.1.10:30053", "10.42.0.5:53")));
    assert!(frontends.is_stale(&flow("192.168.1.10:30053", "10.42.0.9:53")));
    // A UDP LoadBalancer's own port on the node is a frontend too.
    let (mut lb, _) = udp_sample(&[("10.42.0.5", 53)]);
    lb[0].ports[0].load_balancer = true;
    let frontends = UdpFrontends::of(&config(), &lb, &[]);
    assert!(!frontends.is_stale(&flow("192.168.1.10:53", "10.42.0.5:53")));
    assert!(frontends.is_stale(&flow("192.168.1.10:53", "10.42.0.6:53")));
}

#[test]
fn syncs_clear_stale_udp_flows_when_udp_services_change() {
    let mut p = proxy();
    let (services, hosts) = udp_sample(&[("10.42.0.5", 53), ("10.42.0.6", 53)]);
    let to_5 = flow("10.43.0.10:53", "10.42.0.5:53");
    let to_6 = flow("10.43.0.10:53", "10.42.0.6:53");
    let from_before = flow("10.43.7.7:53", "10.42.0.99:53");
    let syslog = flow("192.168.1.10:514", "10.42.0.20:5514");
    p.tables_mut().flows = vec![to_5, to_6, from_before, syslog];

    // The first sync cleans what an earlier run left.
    assert_eq!(p.sync(&services, &hosts).expect("sync").stale_flows, 1);
    assert_eq!(p.tables().flows, [to_5, to_6, syslog]);
    // Nothing UDP changed: no conntrack dump at all.
    p.sync(&services, &hosts).expect("sync");
    assert_eq!(p.tables().cleanups, 1);
    // An endpoint leaves: its flows go, the other's stay.
    let (fewer, _) = udp_sample(&[("10.42.0.5", 53)]);
    assert_eq!(p.sync(&fewer, &hosts).expect("sync").stale_flows, 1);
    assert_eq!(p.tables().flows, [to_5, syslog]);
    // The hostPort pod and the Service go: so do their flows.
    assert_eq!(p.sync(&[], &[]).expect("sync").stale_flows, 2);
    assert!(p.tables().flows.is_empty());
    // A TCP-only change never dumps conntrack.
    let cleanups = p.tables().cleanups;
    p.sync(&many_services(3, 2), &[]).expect("sync");
    p.sync(&many_services(3, 3), &[]).expect("sync");
    assert_eq!(p.tables().cleanups, cleanups);
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address() {
    let (_, mut services, _) = sample();
    let external = |r: &Rendered| -> Vec<String> {
        let name = chains_named(&r.ruleset, "external-")
            .into_iter()
            .find(|n| n.contains("default/web/"))
            .expect("web's external chain")
            .clone();
        r.ruleset.chains[&name]
            .rules
            .iter()
            .map(|rule| rule.to_string())
            .collect()
    };
    let cluster = render(&config(), &services, &[]);
    assert_eq!(external(&cluster).len(), 2);
    assert!(
        external(&cluster)[0].ends_with("jump mark-for-masquerade"),
        "{:?}",
        external(&cluster)
    );
    services[0].external_local = true;
    let local = render(&config(), &services, &[]);
    let rules = external(&local);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].starts_with("goto service-"), "{rules:?}");
    // Hairpin still masquerades: a pod reaching itself through its NodePort.
    let endpoint = chains_named(&local.ruleset, "endpoint-")[0].clone();
    assert!(local.ruleset.chains[&endpoint].rules[0]
        .to_string()
        .ends_with("jump mark-for-masquerade"));
}

#[test]
fn load_balancer_ports_answer_on_the_node_and_the_first_claim_wins() {
    let lb = |name: &str, cluster_ip: &str, node_port: u16, endpoints: &[(&str, u16)]| {
        let mut s = service(
            "ns",
            name,
            Some(cluster_ip),
            vec![port("http", Protocol::Tcp, 80, endpoints)],
        );
        s.ports[0].node_port = Some(node_port);
        s.ports[0].load_balancer = true;
        s
    };
    let a = lb("a", "10.43.0.9", 30001, &[("10.42.0.2", 8080)]);
    let b = lb("b", "10.43.0.10", 30002, &[("10.42.0.3", 8080)]);
    let empty = lb("c", "10.43.0.11", 30003, &[]);
    let host_port = HostPort {
        protocol: Protocol::Tcp,
        host_ip: None,
        host_port: 80,
        pod_ip: ip("10.42.0.4"),
        container_port: 80,
    };
    let services = [b, empty, a];
    let r = render(&config(), &services, std::slice::from_ref(&host_port));
    assert_eq!(
        conflicts(&services, &[host_port]),
        r.conflicts,
        "the claims alone say what render leaves out"
    );
    // a (first by name) holds port 80 on the node; its NodePort goes to the
    // same external chain.
    let external = chains_named(&r.ruleset, "external-")
        .into_iter()
        .find(|n| n.contains("ns/a/"))
        .expect("a's external chain")
        .clone();
    assert_eq!(
        elements(&r.ruleset, "service-nodeports"),
        [
            format!("tcp . 80 : goto {external}"),
            format!("tcp . 30001 : goto {external}"),
            format!(
                "tcp . 30002 : goto {}",
                chains_named(&r.ruleset, "external-")
                    .into_iter()
                    .find(|n| n.contains("ns/b/"))
                    .expect("b's external chain")
            ),
        ]
    );
    assert_eq!(
        elements(&r.ruleset, "no-endpoint-nodeports"),
        ["tcp . 30003 : goto reject-chain"]
    );
    // b and c lose port 80 (Pending, as with ServiceLB); the hostPort too.
    let lost: Vec<(Option<(String, String)>, bool)> = r
        .conflicts
        .iter()
        .map(|c| (c.dropped_service.clone(), c.load_balancer))
        .collect();
    assert_eq!(
        lost,
        [
            (Some(("ns".to_string(), "b".to_string())), true),
            (Some(("ns".to_string(), "c".to_string())), true),
            (None, false),
        ],
        "{:?}",
        r.conflicts
    );
    assert_eq!(r.conflicts[2].kept, "ns/a:http");
    assert!(r.ruleset.chains["hostports"].rules.is_empty());
}
