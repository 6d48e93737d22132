//! NAT gateway failover on the cluster-in-a-box, under UDP pings every
//! 20 ms through a DNAT EIP from the external host: one replica whose pod
//! is deleted (the baseline: a successor pod restores the rules), the
//! change to two replicas, 20 SIGKILLs of the active agent, 5 deletions of
//! the active pod, and the change back to one. Prints, per disruption, the
//! time from it to the first answer through the new active and the longest
//! silence of the pings. Needs a running box of 2+ nodes: `cargo xtask box
//! up`, then `cargo bench -p vpcnet-e2e --bench gateway_failover`
//! (`VPCNET_BENCH_FAILOVERS` sets the number of SIGKILLs, default 20).

use std::time::Duration;

use vpcnet_e2e::cluster::{Cleanup, on_node, testapp_pod};
use vpcnet_e2e::ha::*;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::GW_NS;

struct Row {
    what: String,
    takeover: Vec<f64>,
    silence: Vec<f64>,
}

fn pct(v: &[f64], p: f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    format!("{:.3}", s[((s.len() as f64 - 1.0) * p).round() as usize])
}

fn replicas(k: &Kubectl, n: u32) {
    k.ok(&[
        "patch",
        "vpc-nat-gw",
        T,
        "--type=merge",
        "-p",
        &format!("{{\"spec\":{{\"replicas\":{n}}}}}"),
    ]);
}

fn main() {
    let kills: usize = std::env::var("VPCNET_BENCH_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    setup(&k, &mut c, 1);
    let _dump = DumpOnPanic(k.clone());
    let nodes = vpcnet_e2e::node::all();
    k.must_apply(&on_node(&testapp_pod(T, "web", Some(WEB_IP)), &nodes[0]));
    k.wait_ready(T, &["web"], READY);
    let pings = Probe::outside(&["udp-ping", DNAT_EIP, "9999", "20", "3600"]);
    answered_again(&pings, unix_ms(), Duration::from_secs(2), READY);
    let mut rows = Vec::new();

    // Baseline: one replica, its pod deleted.
    let mut base = Row {
        what: "replicas 1: gateway pod deleted (successor restores)".into(),
        takeover: vec![],
        silence: vec![],
    };
    for _ in 0..3 {
        let at = unix_ms();
        k.ok(&["-n", GW_NS, "delete", "pod", &replica(0), "--wait=false"]);
        std::thread::sleep(Duration::from_secs(1));
        answered_again(&pings, at, Duration::from_secs(3), READY);
        let s = silence_s(&pings, at, unix_ms());
        base.takeover.push(s);
        base.silence.push(s);
    }
    rows.push(base);

    // One replica -> two.
    let at = unix_ms();
    replicas(&k, 2);
    settled(&k, READY);
    answered_again(&pings, at, Duration::from_secs(3), READY);
    rows.push(Row {
        what: "replicas 1 -> 2 (rolling update)".into(),
        takeover: vec![],
        silence: vec![silence_s(&pings, at, unix_ms())],
    });

    let mut kill = Row {
        what: format!("replicas 2: active agent SIGKILLed ({kills}x)"),
        takeover: vec![],
        silence: vec![],
    };
    for _ in 0..kills {
        let f = fail_over(&k, &pings, |a| kill_agent(&k, a));
        kill.takeover.push(f.takeover_s);
        kill.silence.push(f.silence_s);
    }
    rows.push(kill);

    let mut del = Row {
        what: "replicas 2: active pod deleted (5x)".into(),
        takeover: vec![],
        silence: vec![],
    };
    for _ in 0..5 {
        let f = fail_over(&k, &pings, |a| {
            k.ok(&["-n", GW_NS, "delete", "pod", a, "--wait=false"]);
        });
        del.takeover.push(f.takeover_s);
        del.silence.push(f.silence_s);
    }
    rows.push(del);

    // Two -> one.
    let at = unix_ms();
    replicas(&k, 1);
    k.eventually(READY, "one gateway pod", || {
        !k.run(&["-n", GW_NS, "get", "pod", &replica(1)]).ok
    });
    answered_again(&pings, at, Duration::from_secs(3), READY);
    rows.push(Row {
        what: "replicas 2 -> 1".into(),
        takeover: vec![],
        silence: vec![silence_s(&pings, at, unix_ms())],
    });

    println!(
        "| disruption | disruption -> first answer through the new active, s: p50 | p99 | longest silence of 20 ms pings, s: p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what,
            pct(&r.takeover, 0.5),
            pct(&r.takeover, 0.99),
            pct(&r.silence, 0.5),
            pct(&r.silence, 0.99),
            pct(&r.silence, 1.0)
        );
    }
    println!("target: two replicas fail over in < 2 s (p99) with the default 1500 ms Lease");
}
