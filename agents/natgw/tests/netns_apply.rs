//! The apply layer in real network namespaces, with real traffic, on both
//! iptables backends.

mod common;

use std::collections::BTreeMap;

use common::*;
use vpcnet_natgw::apply::{ApplyConfig, Worker};
use vpcnet_natgw::desired::Inputs;
use vpcnet_natgw::drift;
use vpcnet_natgw::iptables::{Iptables, Snapshot};
use vpcnet_natgw::model::{GatewayFacts, Kind, ObjKey};

fn worker(t: &Topo, backend: &str) -> (Worker, GatewayFacts) {
    let cfg = ApplyConfig {
        iptables: backend.into(),
        ..Default::default()
    };
    let w = Worker::spawn(Some(t.gw.clone()), cfg).expect("worker");
    let f = w.call_blocking(|a| a.facts(GW)).expect("facts");
    (w, f)
}

fn snapshot(w: &Worker) -> Snapshot {
    // iptables-save must run inside the gateway namespace: via the worker.
    w.call_blocking(|a| a.iptables().owned_snapshot().expect("iptables-save"))
}

fn filter_snapshot(w: &Worker) -> Snapshot {
    w.call_blocking(|a| a.iptables().owned_filter_snapshot().expect("iptables-save"))
}

fn inputs() -> Inputs {
    Inputs {
        vpc_namespaces: vec!["t".into()],
        eips: vec![
            eip("t", "e1", GW, Some("172.16.3.10")),
            eip("t", "e2", GW, Some("172.16.3.11")),
        ],
        snats: vec![snat("t", "s1", "e1", "10.0.1.0/24", true)],
        dnats: vec![
            dnat(
                "t",
                "web",
                "e2",
                "8888",
                "10.0.1.2",
                Some("80"),
                false,
                false,
            ),
            dnat(
                "t",
                "other",
                "e2",
                "9999",
                "10.0.1.3",
                Some("81"),
                false,
                false,
            ),
        ],
        fips: vec![],
    }
}

fn all_ok(results: &BTreeMap<ObjKey, Result<(), String>>) {
    for (k, r) in results {
        assert!(r.is_ok(), "{k}: {r:?}");
    }
}

fn traffic_ownership_drift(backend: &str) {
    let t = Topo::new();
    let (w, facts) = worker(&t, backend);
    assert_eq!(facts.lan_ip.to_string(), "10.0.1.254");
    assert_eq!(facts.vpc_cidrs[0].to_string(), "10.0.1.0/24");
    let mut inp = inputs();
    let st = desired_sealed(Some(facts.clone()), GW, &inp);
    let st2 = st.clone();
    let rep = w.call_blocking(move |a| a.apply(&st2, false));
    assert!(rep.error.is_none(), "{:?}", rep.error);
    assert!(rep.restored);
    assert_eq!(rep.results.len(), 5);
    all_ok(&rep.results);

    // Addresses: both EIPs as /24 (the primary's prefix), primary kept.
    let addrs = nsx(&t.gw, &["ip", "-4", "-o", "addr", "show", "dev", "net1"]);
    assert!(addrs.contains("172.16.3.101/24"), "{addrs}");
    assert!(
        addrs.contains("172.16.3.10/24") && addrs.contains("172.16.3.11/24"),
        "{addrs}"
    );
    assert!(addrs.contains("net1:eip"), "{addrs}");
    assert_eq!(
        nsx(&t.gw, &["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    // The gratuitous ARP taught the external host the EIPs (arp_accept=1).
    let neigh = nsx(&t.ext, &["ip", "neigh", "show", "172.16.3.10"]);
    assert!(
        neigh.contains("lladdr"),
        "no neighbour entry from gratuitous ARP: {neigh:?}"
    );

    // SNAT: the external host sees the EIP.
    let l = Listener::start(&t.ext, "172.16.3.2", 9000, 1);
    assert_eq!(
        connect(&t.pod, "172.16.3.2", 9000, Some("10.0.1.2")).unwrap(),
        "hi"
    );
    assert_eq!(l.peers(), vec!["172.16.3.10"]);
    // DNAT: EIP:8888 reaches the pod's :80 and the pod sees the real client.
    let l = Listener::start(&t.pod, "10.0.1.2", 80, 1);
    assert_eq!(connect(&t.ext, "172.16.3.11", 8888, None).unwrap(), "hi");
    assert_eq!(l.peers(), vec!["172.16.3.2"]);
    // Hairpin: a pod reaching another pod through the EIP gets answers via the gateway.
    let l = Listener::start(&t.pod, "10.0.1.3", 81, 1);
    assert_eq!(
        connect(&t.pod, "172.16.3.11", 9999, Some("10.0.1.2")).unwrap(),
        "hi"
    );
    assert_eq!(l.peers(), vec!["10.0.1.254"]);

    // Exact ownership: deleting one rule removes exactly its lines.
    let before = snapshot(&w);
    assert_eq!(before.lines_with_comment("vpcnet:dnat/t/other").len(), 1);
    assert_eq!(
        before.chains["PREROUTING"].len(),
        1,
        "one jump, not re-added"
    );
    inp.dnats
        .retain(|d| d.metadata.name.as_deref() != Some("other"));
    let st = desired_sealed(Some(facts.clone()), GW, &inp);
    let st2 = st.clone();
    let rep = w.call_blocking(move |a| a.apply(&st2, false));
    all_ok(&rep.results);
    let after = snapshot(&w);
    let mut expect = before.clone();
    for lines in expect.chains.values_mut() {
        lines.retain(|l| !l.contains("\"vpcnet:dnat/t/other\""));
    }
    // Its port block held nothing else: the block's chain and jump go too.
    let emptied: Vec<String> = expect
        .chains
        .iter()
        .filter(|(c, l)| c.starts_with("VPCNAT-D-") && l.is_empty())
        .map(|(c, _)| c.clone())
        .collect();
    assert_eq!(emptied.len(), 1, "{expect:?}");
    for c in &emptied {
        expect.chains.remove(c);
        for lines in expect.chains.values_mut() {
            lines.retain(|l| !l.ends_with(&format!("-j {c}")));
        }
    }
    assert_eq!(after, expect);

    // Unchanged state: no restore.
    let st2 = st.clone();
    let rep = w.call_blocking(move |a| a.apply(&st2, false));
    assert!(!rep.restored);

    // Drift: someone flushes the nat table -> repaired, identical again.
    nsx(&t.gw, &[backend, "-t", "nat", "-F"]);
    assert_ne!(snapshot(&w), after);
    let d = w.call_blocking(drift::check).unwrap();
    assert!(d.repaired_rules);
    assert_eq!(snapshot(&w), after);
    let d = w.call_blocking(drift::check).unwrap();
    assert!(!d.repaired_rules, "a clean table must not count as drift");
    // An EIP address removed by hand comes back.
    nsx(
        &t.gw,
        &["ip", "addr", "del", "172.16.3.10/24", "dev", "net1"],
    );
    let d = w.call_blocking(drift::check).unwrap();
    assert_eq!(
        d.readded_addrs,
        vec!["172.16.3.10".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    let l = Listener::start(&t.ext, "172.16.3.2", 9001, 1);
    assert_eq!(
        connect(&t.pod, "172.16.3.2", 9001, Some("10.0.1.2")).unwrap(),
        "hi"
    );
    assert_eq!(l.peers(), vec!["172.16.3.10"]);

    // EIP gone -> its address goes, the primary stays; its DNAT goes too.
    inp.eips
        .retain(|e| e.metadata.name.as_deref() != Some("e2"));
    let st = desired_sealed(Some(facts), GW, &inp);
    let rep = w.call_blocking(move |a| a.apply(&st, false));
    all_ok(&rep.results);
    let addrs = nsx(&t.gw, &["ip", "-4", "-o", "addr", "show", "dev", "net1"]);
    assert!(!addrs.contains("172.16.3.11/"), "{addrs}");
    assert!(
        addrs.contains("172.16.3.101/24") && addrs.contains("172.16.3.10/24"),
        "{addrs}"
    );
    assert!(
        snapshot(&w)
            .lines_with_comment("vpcnet:dnat/t/web")
            .is_empty()
    );
    assert!(connect(&t.ext, "172.16.3.11", 8888, None).is_err());
}

#[test]
fn traffic_ownership_drift_nft() {
    traffic_ownership_drift("iptables-nft");
}

#[test]
fn traffic_ownership_drift_legacy() {
    traffic_ownership_drift("iptables-legacy");
}

fn bad_rule_reported(backend: &str) {
    let t = Topo::new();
    let (w, mut facts) = worker(&t, backend);
    // An interface name iptables refuses: every SNAT line fails, DNAT is fine.
    facts.ext_iface = "an-interface-name-too-long".into();
    let st = desired_sealed(Some(facts), GW, &inputs());
    let rep = w.call_blocking(move |a| a.apply(&st, false));
    assert!(rep.error.is_none(), "{:?}", rep.error);
    let s1 = &rep.results[&ObjKey::new(Kind::Snat, "t", "s1")];
    let msg = s1.as_ref().expect_err("SNAT must fail");
    assert!(
        msg.contains("line"),
        "stderr of iptables-restore expected: {msg}"
    );
    assert!(rep.results[&ObjKey::new(Kind::Dnat, "t", "web")].is_ok());
    let snap = snapshot(&w);
    assert_eq!(snap.lines_with_comment("vpcnet:dnat/t/web").len(), 1);
    assert!(snap.lines_with_comment("vpcnet:snat/t/s1").is_empty());
}

#[test]
fn bad_rule_reported_nft() {
    bad_rule_reported("iptables-nft");
}

#[test]
fn bad_rule_reported_legacy() {
    bad_rule_reported("iptables-legacy");
}

#[test]
fn restore_is_atomic_and_exit_2() {
    let t = Topo::new();
    for backend in ["iptables-nft", "iptables-legacy"] {
        let ipt = Iptables::new(backend);
        let gw = t.gw.clone();
        let err = std::thread::spawn(move || {
            vpcnet_natgw::netns::enter(&gw).unwrap();
            ipt.restore("*nat\n:VPCNAT-X - [0:0]\n-A VPCNAT-X -j ACCEPT\n-A VPCNAT-X -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
                .unwrap_err()
        })
        .join()
        .unwrap();
        match err {
            vpcnet_natgw::iptables::IptError::Failed { code, line, .. } => {
                assert_eq!(code, Some(2));
                assert_eq!(line, Some(4));
            }
            e => panic!("{e}"),
        }
        let save = nsx(&t.gw, &[&format!("{backend}-save"), "-t", "nat"]);
        assert!(!save.contains("VPCNAT-X"), "{save}");
    }
}

/// `inputs()` as a `--state-file` for the agent binary, removed on drop.
struct StateFile {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl StateFile {
    fn new(t: &Topo) -> StateFile {
        let dir = std::env::temp_dir().join(format!("natgw-state-{}", t.gw));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("desired.json");
        std::fs::write(&path, serde_json::to_vec(&sealed(&inputs())).unwrap()).unwrap();
        StateFile { dir, path }
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn real_binary_once_with_state_file() {
    let t = Topo::new();
    let state = StateFile::new(&t);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpcnet-natgw"))
        .env(vpcnet_api::seal::AGENT_ENV, KEY_TEXT)
        .args([
            "--gateway",
            GW,
            "--iptables",
            "iptables-legacy",
            "--netns",
            &t.gw,
            "--once",
            "--state-file",
        ])
        .arg(&state.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dnat/t/web"]["programmed"], true, "{v}");
    assert_eq!(v["snat/t/s1"]["programmed"], true, "{v}");
    assert_eq!(v["eip/t/e1"]["programmed"], true, "{v}");
    let save = nsx(&t.gw, &["iptables-legacy-save", "-t", "nat"]);
    assert!(
        save.contains("-A PREROUTING -m comment --comment \"vpcnet:jump\" -j VPCNAT-PREROUTING"),
        "{save}"
    );
    assert!(
        save.contains("\"vpcnet:dnat/t/web\" -j DNAT --to-destination 10.0.1.2:80"),
        "{save}"
    );
    let l = Listener::start(&t.pod, "10.0.1.2", 80, 1);
    assert_eq!(connect(&t.ext, "172.16.3.11", 8888, None).unwrap(), "hi");
    assert_eq!(l.peers(), vec!["172.16.3.2"]);
}

type Step = Box<dyn Fn(&mut Inputs)>;

/// Applying only the changed port blocks leaves the table exactly as a
/// full rewrite would, through adds, deletes, a block emptied and a shared
/// group formed.
fn incremental_equals_full(backend: &str) {
    let t = Topo::new();
    let (w, facts) = worker(&t, backend);
    let mut inp = inputs();
    inp.dnats = (0..600)
        .map(|i| {
            dnat(
                "t",
                &format!("d{i}"),
                if i % 2 == 0 { "e1" } else { "e2" },
                &(2000 + i).to_string(),
                "10.0.1.2",
                Some("80"),
                false,
                false,
            )
        })
        .collect();
    let steps: Vec<Step> = vec![
        Box::new(|_| {}),
        Box::new(|i| {
            i.dnats.push(dnat(
                "t", "n1", "e1", "2001", "10.0.1.3", None, false, false,
            ))
        }),
        Box::new(|i| i.dnats.retain(|d| d.metadata.name.as_deref() != Some("d7"))),
        // Ports 2304..2559 of e1 (block 9): every rule there goes.
        Box::new(|i| {
            i.dnats.retain(|d| {
                let p: u16 = d.spec.external_port.parse().unwrap();
                !(d.spec.eip == "e1" && (2304..2560).contains(&p))
            })
        }),
        Box::new(|i| {
            i.dnats.push(dnat(
                "t", "s1", "e2", "40000", "10.0.1.4", None, false, true,
            ));
            i.dnats.push(dnat(
                "t", "s2", "e2", "40000", "10.0.1.5", None, false, true,
            ));
        }),
        // Another block changes: the shared group's block is not rewritten,
        // and the group's chain it jumps to must stay.
        Box::new(|i| {
            i.dnats.push(dnat(
                "t", "n2", "e1", "2049", "10.0.1.6", None, false, false,
            ))
        }),
        Box::new(|i| i.dnats.retain(|d| d.metadata.name.as_deref() != Some("s1"))),
    ];
    for (n, step) in steps.iter().enumerate() {
        step(&mut inp);
        let st = desired_sealed(Some(facts.clone()), GW, &inp);
        let st2 = st.clone();
        let rep = w.call_blocking(move |a| a.apply(&st2, false));
        all_ok(&rep.results);
        let incremental = snapshot(&w);
        let acct = filter_snapshot(&w);
        let rep = w.call_blocking(move |a| a.apply(&st, true));
        all_ok(&rep.results);
        assert_eq!(incremental, snapshot(&w), "step {n}");
        // The accounting chains too (one per port block, as in nat).
        assert_eq!(acct, filter_snapshot(&w), "step {n}");
        assert_eq!(
            acct.owned_chains().len(),
            incremental
                .owned_chains()
                .iter()
                .filter(|c| c.starts_with("VPCNAT-D-"))
                .count()
                + 1,
            "step {n}"
        );
        assert_eq!(
            incremental.rule_count(),
            // rules + block jumps + SNAT + hairpin + own-traffic return + 2
            // jumps from the base chains
            incremental
                .chains
                .values()
                .flatten()
                .filter(|l| l.contains("vpcnet:dnat/") || l.contains("vpcnet:dnat-"))
                .count()
                + 5,
            "step {n}"
        );
    }
    let s = snapshot(&w);
    assert!(
        !s.chains.contains_key("VPCNAT-D-AC10030A-T-09"),
        "{:?}",
        s.owned_chains()
    );
    assert!(s.chains.contains_key("VPCNAT-D-AC10030A-T-08"));
}

#[test]
fn incremental_equals_full_nft() {
    incremental_equals_full("iptables-nft");
}

#[test]
fn incremental_equals_full_legacy() {
    incremental_equals_full("iptables-legacy");
}

/// As PID 1 of its container the agent must act on SIGTERM itself, or a
/// replaced gateway pod waits out its whole grace period. It exits at once
/// and leaves the rules to the network namespace that goes with the pod.
#[test]
fn agent_exits_promptly_on_sigterm() {
    use std::time::{Duration, Instant};

    let t = Topo::new();
    let state = StateFile::new(&t);
    let port = vpcnet_test_support::free_port();
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_vpcnet-natgw"))
        .env(vpcnet_api::seal::AGENT_ENV, KEY_TEXT)
        .args([
            "--gateway",
            GW,
            "--iptables",
            "iptables-nft",
            "--netns",
            &t.gw,
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--state-file"])
        .arg(&state.path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = || {
        vpcnet_test_support::http_get(port, "/readyz").is_ok_and(|o| o.starts_with("HTTP/1.1 200"))
    };
    let end = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if Instant::now() > end {
            let _ = agent.kill();
            let _ = agent.wait();
            panic!("agent never ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = Instant::now();
    sh(&["kill", "-TERM", &agent.id().to_string()]);
    let status = loop {
        if let Some(st) = agent.try_wait().unwrap() {
            break st;
        }
        if sent.elapsed() > Duration::from_secs(3) {
            let _ = agent.kill();
            let _ = agent.wait();
            panic!("agent still running 3 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let save = nsx(&t.gw, &["iptables-nft-save", "-t", "nat"]);
    assert!(save.contains("\"vpcnet:dnat/t/web\""), "{save}");
}
