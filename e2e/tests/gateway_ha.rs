//! Two-replica NAT gateways on the multi-node box, with real traffic: the
//! active's agent killed (SIGKILL, 20 times, each failover timed), its node
//! killed (`node-ctl.sh`), 50 planned handovers back and forth. Long TCP
//! streams through DNAT (from the external host) and through SNAT (from a
//! tenant pod) keep flowing across the failovers, and no ARP request for
//! an EIP is ever answered by two gateways.

use std::process::Command;
use std::time::Duration;

use vpcnet_e2e::cluster::{Cleanup, on_node, testapp_pod};
use vpcnet_e2e::external;
use vpcnet_e2e::ha::*;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::{GW_NS, dnat_comment};
use vpcnet_e2e::node;

/// Right after a failover, a new connection through DNAT (from outside)
/// and one through SNAT (from the pod) are answered.
fn new_connections_work(k: &Kubectl) {
    let url = format!("http://{DNAT_EIP}:8888/");
    let got = external::from_outside(&url, Duration::from_secs(2));
    assert!(
        got.as_deref().is_ok_and(|a| a.contains("server=web")),
        "a new DNAT connection: {got:?}"
    );
    let out = k.exec(
        T,
        "web",
        &["curl", "-s", "--max-time", "2", &external::host_url()],
    );
    assert!(
        out.ok && out.stdout.contains(&format!("client={SNAT_EIP}:")),
        "a new SNAT connection: {} {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn two_replicas_fail_over_in_seconds_and_connections_survive() {
    let nodes = node::all();
    assert!(nodes.len() >= 2, "needs a box of 2+ nodes: {nodes:?}");
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    setup(&k, &mut c, 2);
    let _dump = DumpOnPanic(k.clone());
    let (active, standby) = settled(&k, READY);
    let (an, sn) = (
        node::of_pod(&k, GW_NS, &active),
        node::of_pod(&k, GW_NS, &standby),
    );
    assert_ne!(an, sn, "the replicas run on different nodes");
    assert!(holds_eip(&k, &active) && !holds_eip(&k, &standby));
    assert!(addresses(&k, &active).contains(&format!(" {LAN_IP}/")));
    assert!(!addresses(&k, &standby).contains(&format!(" {LAN_IP}/")));
    let st = k.field("vpc-nat-gw", None, T, "{.status.active.pod}");
    k.eventually(
        Duration::from_secs(30),
        "status names the active replica",
        || k.field("vpc-nat-gw", None, T, "{.status.active.pod}") == format!("{GW_NS}/{active}"),
    );
    eprintln!("active {active} on {an}, standby {standby} on {sn} (status: {st})");
    // Only the other replica may feed connection state into each one.
    for (me, peer) in [(&active, &standby), (&standby, &active)] {
        let peer_ip = k.field(
            "pod",
            Some(GW_NS),
            peer,
            &format!(
                "{{.metadata.annotations.{}}}",
                vpcnet_e2e::cluster::jsonpath_key(vpcnet_api::contract::annotations::IP_ADDRESS)
            ),
        );
        k.eventually(Duration::from_secs(20), "the sync port's guard", || {
            let g = k.exec(GW_NS, me, &["iptables", "-S", "NATGWSYNC"]);
            g.stdout.contains(&format!("-s {peer_ip}/32 -j RETURN")) && g.stdout.contains("-j DROP")
        });
    }

    // The tenant's pod on node-1, which survives: the external network
    // reaches the API server through node-1 (e2e/box/external.sh), so the
    // node that dies below is the other.
    let keep = nodes[0].clone();
    k.must_apply(&on_node(&testapp_pod(T, "web", Some(WEB_IP)), &keep));
    k.wait_ready(T, &["web"], READY);

    // Long streams: DNAT from outside, SNAT from the pod; UDP pings time
    // each failover; the ARP watch sees every answer for the EIP.
    let echo = Probe::outside(&["echo-server", external::host_ip(), &ECHO_PORT.to_string()]);
    k.eventually(Duration::from_secs(10), "the echo server", || {
        echo.lines().iter().any(|l| l == "ready")
    });
    let run_s = "900";
    let dnat_stream = Probe::outside(&["tcp-stream", DNAT_EIP, "8888", "100", run_s]);
    let mut snat_cmd = Command::new(k.binary());
    snat_cmd.arg("--kubeconfig").arg(k.kubeconfig()).args([
        "-n",
        T,
        "exec",
        "web",
        "--",
        "testapp",
        "tcp-ping",
        external::host_ip(),
        &ECHO_PORT.to_string(),
        "100",
        run_s,
    ]);
    let snat_stream = Probe::spawn(snat_cmd);
    let pings = Probe::outside(&["udp-ping", DNAT_EIP, "9999", "20", run_s]);
    let arp = Probe::outside(&[
        "arp-watch",
        vpcnet_e2e::box_env::get("EXT_HOST_IF"),
        DNAT_EIP,
        "50",
        run_s,
    ]);
    std::thread::sleep(Duration::from_secs(3));
    for (what, p) in [("DNAT stream", &dnat_stream), ("SNAT stream", &snat_stream)] {
        assert!(
            !ok_times(&p.lines()).is_empty(),
            "{what} flows before any failover: {:?}",
            p.lines()
        );
    }

    // Crashes of the active agent (SIGKILL), each failover timed from the
    // kill to the first answer through the other replica (the benchmark
    // `gateway_failover` does 20 and prints percentiles).
    for i in 0..3 {
        let f = fail_over(&k, &pings, |a| kill_agent(&k, a));
        eprintln!(
            "failover {i} (SIGKILL): first answer through the new active after {:.3} s, longest silence {:.3} s; neighbour {}",
            f.takeover_s,
            f.silence_s,
            neighbour(DNAT_EIP)
        );
        assert!(f.takeover_s < 2.0, "failover {i}: {f:?}");
        new_connections_work(&k);
    }

    // The active's node dies (frozen daemons, links cut). The pod is on
    // node-1: make the replica there the standby first, if needed.
    let (mut active, _) = settled(&k, Duration::from_secs(30));
    if node::of_pod(&k, GW_NS, &active) == keep {
        assert!(
            k.exec(GW_NS, &active, &["vpcnet-natgw", "probe", "/handover"])
                .ok
        );
        k.eventually(Duration::from_secs(10), "handed over", || {
            holder(&k) == other(&active)
        });
        active = other(&active);
    }
    let doomed = node::of_pod(&k, GW_NS, &active);
    assert_ne!(doomed, keep);
    let mut recover = Recover(None);
    let f = fail_over(&k, &pings, |_| {
        node_ctl(&["fail", &doomed]);
        recover.0 = Some(doomed.clone());
    });
    eprintln!(
        "node {doomed} died under the active replica: first answer through the other after {:.3} s, longest silence {:.3} s; neighbour {}",
        f.takeover_s,
        f.silence_s,
        neighbour(DNAT_EIP)
    );
    assert!(f.takeover_s < 2.0, "node failure: {f:?}");
    new_connections_work(&k);
    std::thread::sleep(Duration::from_secs(2));
    node_ctl(&["recover", &doomed]);
    recover.0 = None;
    settled(&k, Duration::from_secs(120));

    // 50 planned handovers back and forth.
    let flaps_from = unix_ms();
    for i in 0..50 {
        let (a, b) = settled(&k, Duration::from_secs(30));
        let out = k.exec(GW_NS, &a, &["vpcnet-natgw", "probe", "/handover"]);
        assert!(out.ok, "handover {i}: {}", out.stderr);
        k.eventually(
            Duration::from_secs(10),
            "the other replica took over",
            || holder(&k) == b,
        );
    }
    let (a, b) = settled(&k, Duration::from_secs(30));
    assert!(
        holds_eip(&k, &a) && !holds_eip(&k, &b),
        "one replica holds the EIPs"
    );
    for pod in [&a, &b] {
        let t = k.exec(GW_NS, pod, &["iptables-save", "-t", "nat"]);
        for rule in ["web", "ping"] {
            assert!(
                t.stdout.contains(&dnat_comment(T, rule)),
                "{pod} lost {rule}"
            );
        }
    }
    let flap_answers = ok_times(&pings.lines())
        .into_iter()
        .filter(|t| *t >= flaps_from)
        .count();
    eprintln!("50 handovers: {flap_answers} UDP answers meanwhile");

    // Every stream survived; no ARP request had two answers.
    let arp_lines = arp.lines();
    let doubles = double_answers(&arp_lines);
    eprintln!(
        "ARP watch: {} requests for {DNAT_EIP}, {} answered by two MACs, {} unanswered",
        arp_lines.len(),
        doubles.len(),
        arp_lines.iter().filter(|l| l.ends_with(" -")).count()
    );
    assert!(doubles.is_empty(), "two gateways answered: {doubles:?}");
    for (what, p) in [("DNAT stream", dnat_stream), ("SNAT stream", snat_stream)] {
        let lines = p.lines();
        assert!(
            !lines.iter().any(|l| l.ends_with("reset")),
            "{what} was reset: {:?}",
            &lines[lines.len().saturating_sub(20)..]
        );
        let oks = ok_times(&lines);
        let last = oks.last().copied().unwrap_or(0);
        assert!(
            unix_ms() - last < 5000,
            "{what} still flows at the end (last echo {} ms ago)",
            unix_ms() - last
        );
        eprintln!("{what}: {} echoes, no reset", oks.len());
    }
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={T},reason=Failover"),
        "-A",
    ]);
    assert!(events.contains("LeaseExpired"), "Failover Events: {events}");
    let lf = k.field("vpc-nat-gw", None, T, "{.status.lastFailover.cause}");
    assert!(!lf.is_empty(), "status.lastFailover");
    drop(echo);
    drop(pings);
    drop(arp);
}
