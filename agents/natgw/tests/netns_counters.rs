//! Per-rule traffic accounting in real network namespaces, with real
//! traffic through the DNAT, SNAT and hairpin paths, on both iptables
//! backends: bytes counted against the external host's own interface
//! counters, counters kept across re-applies and drift repair, series of
//! deleted rules gone, and the series on the agent's `/metrics`.

mod common;

use std::process::{Command, Stdio};

use common::*;
use vpcnet_natgw::acct::{Dir, Tally};
use vpcnet_natgw::apply::{ApplyConfig, Worker};
use vpcnet_natgw::desired::Inputs;
use vpcnet_natgw::drift;
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

fn apply(w: &Worker, facts: &GatewayFacts, inp: &Inputs, force: bool) {
    let st = desired_sealed(Some(facts.clone()), GW, inp);
    let rep = w.call_blocking(move |a| a.apply(&st, force));
    assert!(rep.error.is_none(), "{:?}", rep.error);
    assert!(
        !rep.warnings.iter().any(|w| w.starts_with("accounting")),
        "{:?}",
        rep.warnings
    );
    for (k, r) in &rep.results {
        assert!(r.is_ok(), "{k}: {r:?}");
    }
}

fn tally(w: &Worker) -> Tally {
    w.call_blocking(|a| a.counters()).expect("counters")
}

/// (packets, bytes) of a rule in a direction, `None` without a series.
fn rule(t: &Tally, kind: Kind, name: &str, dir: Dir) -> Option<(u64, u64)> {
    let key = ObjKey::new(kind, "t", name);
    t.rules
        .iter()
        .find(|r| r.key == key && r.dir == dir)
        .map(|r| (r.packets, r.bytes))
}

fn rule_bytes(t: &Tally, kind: Kind, name: &str, dir: Dir) -> u64 {
    rule(t, kind, name, dir)
        .unwrap_or_else(|| panic!("no series for {kind:?} {name} {dir:?}: {t:?}"))
        .1
}

fn eip_bytes(t: &Tally, name: &str, dir: Dir) -> Option<u64> {
    t.eips
        .iter()
        .find(|e| e.key.name == name && e.dir == dir)
        .map(|e| e.bytes)
}

/// IP bytes the external host's interface sent and received: its link
/// counters less 14 bytes of Ethernet header per frame.
fn ext_ip_bytes(t: &Topo) -> (u64, u64) {
    let j: serde_json::Value = serde_json::from_str(&nsx(
        &t.ext,
        &["ip", "-s", "-j", "link", "show", "dev", "eth0"],
    ))
    .unwrap();
    let s = &j[0]["stats64"];
    let ip = |d: &str| s[d]["bytes"].as_u64().unwrap() - 14 * s[d]["packets"].as_u64().unwrap();
    (ip("tx"), ip("rx"))
}

/// One TCP transfer: a server in `srv_ns` on `addr:port` reads `up` bytes,
/// answers `down` bytes and closes; the client in `cli_ns` connects to
/// `to:to_port` (from `src`), sends `up` bytes and reads to the end.
#[allow(clippy::too_many_arguments)]
fn transfer(
    srv_ns: &str,
    addr: &str,
    port: u16,
    cli_ns: &str,
    to: &str,
    to_port: u16,
    src: Option<&str>,
    up: usize,
    down: usize,
) {
    let server = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',{port}))\ns.listen(1)\nprint('ready',flush=True)\nc,_=s.accept()\nn=0\nwhile n<{up}:\n  d=c.recv(65536)\n  if not d: break\n  n+=len(d)\nc.sendall(b'x'*{down})\nc.close()\nprint(n,flush=True)\n"
    );
    let mut srv = Command::new("ip")
        .args(["netns", "exec", srv_ns, "python3", "-c", &server])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(srv.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let bind = src
        .map(|s| format!("c.bind(('{s}',0))\n"))
        .unwrap_or_default();
    let client = format!(
        "import socket\nc=socket.socket()\nc.settimeout(10)\n{bind}c.connect(('{to}',{to_port}))\nc.sendall(b'y'*{up})\nm=0\nwhile True:\n  d=c.recv(65536)\n  if not d: break\n  m+=len(d)\nprint(m)\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", cli_ns, "python3", "-c", &client])
        .output()
        .unwrap();
    let got = srv.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        down.to_string()
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout)
            .lines()
            .last()
            .unwrap_or_default(),
        up.to_string()
    );
}

/// `counted` is within 1 % (and a few frames of noise) of `truth`, and at
/// least the payload.
fn close(what: &str, counted: u64, truth: u64, payload: usize) {
    let diff = counted.abs_diff(truth);
    eprintln!("{what}: counted {counted} bytes, interface {truth}, payload {payload}");
    assert!(
        diff <= truth / 100 + 1500,
        "{what}: counted {counted} bytes, the interface saw {truth}"
    );
    assert!(
        counted >= payload as u64,
        "{what}: counted {counted} < payload {payload}"
    );
}

const UP: usize = 3_000_000;
const DOWN: usize = 1_000_000;

fn counted_and_kept(backend: &str) {
    let t = Topo::new();
    // No IPv6 chatter on the external host's interface, the ground truth.
    nsx(
        &t.ext,
        &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
    );
    let (w, facts) = worker(&t, backend);
    let mut inp = inputs();
    apply(&w, &facts, &inp, false);
    let t0 = tally(&w);
    for (kind, name) in [
        (Kind::Snat, "s1"),
        (Kind::Dnat, "web"),
        (Kind::Dnat, "other"),
    ] {
        for dir in [Dir::In, Dir::Out] {
            assert_eq!(rule(&t0, kind, name, dir), Some((0, 0)), "{name}");
        }
    }
    assert_eq!(t0.eips.len(), 4);

    // DNAT: the external host uploads UP bytes to EIP:8888, the pod answers DOWN.
    let (tx0, rx0) = ext_ip_bytes(&t);
    transfer(
        &t.pod,
        "10.0.1.2",
        80,
        &t.ext,
        "172.16.3.11",
        8888,
        None,
        UP,
        DOWN,
    );
    // The pod's port 80 is reached through the DNAT only.
    let (tx1, rx1) = ext_ip_bytes(&t);
    let t1 = tally(&w);
    let web_in = rule_bytes(&t1, Kind::Dnat, "web", Dir::In);
    let web_out = rule_bytes(&t1, Kind::Dnat, "web", Dir::Out);
    close("dnat in", web_in, tx1 - tx0, UP);
    close("dnat out", web_out, rx1 - rx0, DOWN);
    assert_eq!(rule(&t1, Kind::Snat, "s1", Dir::Out), Some((0, 0)));
    assert_eq!(rule(&t1, Kind::Dnat, "other", Dir::In), Some((0, 0)));
    assert_eq!(eip_bytes(&t1, "e2", Dir::In), Some(web_in));
    assert_eq!(eip_bytes(&t1, "e2", Dir::Out), Some(web_out));
    assert_eq!(eip_bytes(&t1, "e1", Dir::In), Some(0));

    // SNAT: the pod uploads UP bytes to the external host, which answers DOWN.
    transfer(
        &t.ext,
        "172.16.3.2",
        9000,
        &t.pod,
        "172.16.3.2",
        9000,
        Some("10.0.1.2"),
        UP,
        DOWN,
    );
    let (tx2, rx2) = ext_ip_bytes(&t);
    let t2 = tally(&w);
    let s1_out = rule_bytes(&t2, Kind::Snat, "s1", Dir::Out);
    let s1_in = rule_bytes(&t2, Kind::Snat, "s1", Dir::In);
    close("snat out", s1_out, rx2 - rx1, UP);
    close("snat in", s1_in, tx2 - tx1, DOWN);
    assert_eq!(rule_bytes(&t2, Kind::Dnat, "web", Dir::In), web_in);
    assert_eq!(eip_bytes(&t2, "e1", Dir::Out), Some(s1_out));

    // Hairpin: pod to pod through EIP:9999 counts for that DNAT only (it is
    // SNAT'ed to the gateway's LAN address too, but not by s1).
    transfer(
        &t.pod,
        "10.0.1.3",
        81,
        &t.pod,
        "172.16.3.11",
        9999,
        Some("10.0.1.2"),
        200_000,
        100_000,
    );
    let t3 = tally(&w);
    assert!(rule_bytes(&t3, Kind::Dnat, "other", Dir::In) >= 200_000);
    assert!(rule_bytes(&t3, Kind::Dnat, "other", Dir::Out) >= 100_000);
    assert_eq!(
        rule(&t3, Kind::Snat, "s1", Dir::Out),
        rule(&t2, Kind::Snat, "s1", Dir::Out)
    );
    assert_eq!(
        rule(&t3, Kind::Snat, "s1", Dir::In),
        rule(&t2, Kind::Snat, "s1", Dir::In)
    );

    // Re-applies keep every counter: a forced full rewrite, then a change
    // that rewrites VPCNAT-ACCT (a new SNAT) and web's block (a new DNAT
    // next to it), then drift repair after the jump into them was deleted.
    let same = |after: &Tally, when: &str| {
        for (kind, name) in [
            (Kind::Snat, "s1"),
            (Kind::Dnat, "web"),
            (Kind::Dnat, "other"),
        ] {
            for dir in [Dir::In, Dir::Out] {
                assert_eq!(
                    rule(after, kind, name, dir),
                    rule(&t3, kind, name, dir),
                    "{when}: {name} {dir:?}"
                );
            }
        }
        for e in &t3.eips {
            assert_eq!(
                eip_bytes(after, &e.key.name, e.dir),
                Some(e.bytes),
                "{when}"
            );
        }
    };
    apply(&w, &facts, &inp, true);
    same(&tally(&w), "forced re-apply");
    inp.snats.push(snat("t", "s2", "e2", "10.0.1.3/32", true));
    inp.dnats.push(dnat(
        "t",
        "web2",
        "e2",
        "8889",
        "10.0.1.2",
        Some("80"),
        false,
        false,
    ));
    apply(&w, &facts, &inp, false);
    let t4 = tally(&w);
    same(&t4, "incremental re-apply");
    assert_eq!(rule(&t4, Kind::Snat, "s2", Dir::Out), Some((0, 0)));
    assert_eq!(rule(&t4, Kind::Dnat, "web2", Dir::In), Some((0, 0)));
    nsx(
        &t.gw,
        &[
            backend,
            "-t",
            "filter",
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "vpcnet:jump",
            "-j",
            "VPCNAT-ACCT",
        ],
    );
    let d = w.call_blocking(drift::check).unwrap();
    assert!(d.repaired_rules);
    same(&tally(&w), "drift repair");
    let d = w.call_blocking(drift::check).unwrap();
    assert!(
        !d.repaired_rules,
        "the accounting chains read back as rendered"
    );
    let save = nsx(&t.gw, &[&format!("{backend}-save"), "-t", "filter"]);
    assert_eq!(save.matches("-j VPCNAT-ACCT").count(), 1, "{save}");
    // A restarted agent (same namespace) takes the counters over.
    drop(w);
    let (w, _) = worker(&t, backend);
    apply(&w, &facts, &inp, false);
    same(&tally(&w), "agent restart");

    // The proof that carrying is needed: a plain `--noflush` restore of a
    // declared chain, as the NAT chains are written, zeroes its counters.
    let acct = nsx(&t.gw, &[&format!("{backend}-save"), "-t", "filter"]);
    let mut plain = String::from("*filter\n:VPCNAT-ACCT - [0:0]\n");
    for l in acct.lines().filter(|l| l.starts_with("-A VPCNAT-ACCT ")) {
        plain.push_str(l);
        plain.push('\n');
    }
    plain.push_str("COMMIT\n");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.gw,
            &format!("{backend}-restore"),
            "--noflush",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plain.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let zeroed = tally(&w);
    assert_eq!(rule(&zeroed, Kind::Snat, "s1", Dir::Out), Some((0, 0)));
    // (web's block chain was not declared: its counters stay.)
    assert_eq!(
        rule(&zeroed, Kind::Dnat, "web", Dir::In),
        rule(&t3, Kind::Dnat, "web", Dir::In)
    );

    // A deleted rule's series goes; its EIP's totals keep what it counted.
    let e2_in = eip_bytes(&zeroed, "e2", Dir::In).unwrap();
    inp.dnats
        .retain(|d| d.metadata.name.as_deref() != Some("web"));
    apply(&w, &facts, &inp, false);
    let t5 = tally(&w);
    assert_eq!(rule(&t5, Kind::Dnat, "web", Dir::In), None);
    assert_eq!(rule(&t5, Kind::Dnat, "web", Dir::Out), None);
    assert!(rule(&t5, Kind::Dnat, "other", Dir::In).is_some());
    assert_eq!(eip_bytes(&t5, "e2", Dir::In), Some(e2_in));
    // An EIP deleted with its rules: all their series go.
    inp.eips
        .retain(|e| e.metadata.name.as_deref() != Some("e2"));
    apply(&w, &facts, &inp, false);
    let t6 = tally(&w);
    assert_eq!(eip_bytes(&t6, "e2", Dir::In), None);
    assert!(
        t6.rules.iter().all(|r| r.eip.to_string() != "172.16.3.11"),
        "{t6:?}"
    );
    assert!(rule(&t6, Kind::Snat, "s1", Dir::Out).is_some());
}

#[test]
fn counted_and_kept_nft() {
    counted_and_kept("iptables-nft");
}

#[test]
fn counted_and_kept_legacy() {
    counted_and_kept("iptables-legacy");
}

/// The agent binary's `/metrics` carries the traffic series, read when
/// scraped.
#[test]
fn metrics_endpoint_reads_counters_on_scrape() {
    use std::time::{Duration, Instant};

    let t = Topo::new();
    let dir = std::env::temp_dir().join(format!("natgw-count-{}", t.gw));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("desired.json");
    std::fs::write(&path, serde_json::to_vec(&sealed(&inputs())).unwrap()).unwrap();
    struct Cleanup(std::path::PathBuf, Option<std::process::Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(c) = &mut self.1 {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let port = vpcnet_test_support::free_port();
    let agent = Command::new(env!("CARGO_BIN_EXE_vpcnet-natgw"))
        .env(vpcnet_api::seal::AGENT_ENV, KEY_TEXT)
        .args([
            "--gateway",
            GW,
            "--iptables",
            "iptables-legacy",
            "--netns",
            &t.gw,
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--state-file"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Cleanup(dir, Some(agent));
    let ready = || {
        vpcnet_test_support::http_get(port, "/readyz").is_ok_and(|o| o.starts_with("HTTP/1.1 200"))
    };
    let end = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < end, "agent never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let series = "vpcnet_natgw_rule_bytes_total{kind=\"dnat\",namespace=\"t\",name=\"web\",eip=\"172.16.3.11\",direction=\"in\"}";
    let value = |m: &str, s: &str| -> Option<u64> {
        m.lines()
            .find_map(|l| l.strip_prefix(s))
            .map(|v| v.trim().parse().unwrap())
    };
    let m = vpcnet_test_support::http_get(port, "/metrics").unwrap();
    assert_eq!(value(&m, series), Some(0), "{m}");
    transfer(
        &t.pod,
        "10.0.1.2",
        80,
        &t.ext,
        "172.16.3.11",
        8888,
        None,
        500_000,
        1000,
    );
    let m = vpcnet_test_support::http_get(port, "/metrics").unwrap();
    assert!(value(&m, series).unwrap() >= 500_000, "{m}");
    let eip = "vpcnet_natgw_eip_bytes_total{namespace=\"t\",name=\"e2\",eip=\"172.16.3.11\",direction=\"in\"}";
    assert_eq!(value(&m, eip), value(&m, series), "{m}");
    for name in [
        "# TYPE vpcnet_natgw_rule_packets counter",
        "# TYPE vpcnet_natgw_eip_packets counter",
        "vpcnet_natgw_rule_packets_total{kind=\"snat\",namespace=\"t\",name=\"s1\",eip=\"172.16.3.10\",direction=\"out\"}",
    ] {
        assert!(m.contains(name), "{name} missing: {m}");
    }
}
