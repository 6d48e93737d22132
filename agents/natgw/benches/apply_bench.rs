//! `cargo bench -p vpcnet-natgw`: applying N DNAT rules in a fresh network
//! namespace, from cold and after adding one rule, against one
//! `iptables -t nat -A` process per rule. Needs root.
//! `VPCNET_BENCH_NAT_N=10000` runs one size only.

use std::process::Command;
use std::time::{Duration, Instant};

use vpcnet_api::dnat::L4Protocol;
use vpcnet_api::seal::SealKey;
use vpcnet_api::*;
use vpcnet_natgw::apply::{ApplyConfig, Worker};
use vpcnet_natgw::desired::{Inputs, desired, seal_as_operator};

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect(args[0]);
    assert!(st.success(), "{args:?}");
}

struct Ns(String);
impl Ns {
    fn new(tag: &str) -> Ns {
        let n = format!("natbench-{}-{tag}", std::process::id());
        sh(&["ip", "netns", "add", &n]);
        sh(&[
            "ip", "-n", &n, "link", "add", "eth0", "type", "veth", "peer", "name", "net1",
        ]);
        sh(&[
            "ip",
            "-n",
            &n,
            "addr",
            "add",
            "10.0.1.254/24",
            "dev",
            "eth0",
        ]);
        sh(&[
            "ip",
            "-n",
            &n,
            "addr",
            "add",
            "172.16.3.101/24",
            "dev",
            "net1",
        ]);
        sh(&["ip", "-n", &n, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &n, "link", "set", "net1", "up"]);
        Ns(n)
    }
}
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn accepted() -> IptablesDnatRuleStatus {
    IptablesDnatRuleStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: vpcnet_api::contract::conditions::ACCEPTED.into(),
            status: "True".into(),
            reason: "Ok".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ),
        }],
        ..Default::default()
    }
}

fn rule(i: usize) -> IptablesDnatRule {
    let mut r = IptablesDnatRule::new(
        &format!("d{i}"),
        IptablesDnatRuleSpec {
            eip: format!("e{}", i % 10),
            external_port: format!("{}", 1000 + i / 10),
            protocol: L4Protocol::Tcp,
            internal_ip: format!("10.0.{}.{}", 1 + (i / 250) % 200, 1 + i % 250),
            internal_port: Some("80".into()),
            shared: false,
        },
    );
    r.metadata.namespace = Some("t".into());
    r.status = Some(accepted());
    r
}

fn inputs(n: usize) -> Inputs {
    Inputs {
        eips: (0..10)
            .map(|i| {
                let mut e = IptablesEIP::new(
                    &format!("e{i}"),
                    IptablesEIPSpec {
                        nat_gw_dp: "gw".into(),
                        ..Default::default()
                    },
                );
                e.metadata.namespace = Some("t".into());
                e.status = Some(IptablesEIPStatus {
                    ip: Some(format!("172.16.3.{}", 10 + i)),
                    ..Default::default()
                });
                e
            })
            .collect(),
        dnats: (0..n).map(rule).collect(),
        ..Default::default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "| backend | N rules | (a) cold: compute + apply | (b) +1 rule: compute -> line live, median of 5 | (b): of which compute | (b): of which iptables-restore | (b): apply returned (with bookkeeping) | baseline: one `iptables -A` per rule |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for backend in ["iptables-nft", "iptables-legacy"] {
        let mut per_rule_1k: Option<Duration> = None;
        let sizes: Vec<usize> = std::env::var("VPCNET_BENCH_NAT_N")
            .unwrap_or_else(|_| "100,1000,10000".into())
            .split(',')
            .map(|s| s.trim().parse().expect("VPCNET_BENCH_NAT_N: numbers"))
            .collect();
        for &n in &sizes {
            let ns = Ns::new(&format!("{backend}-{n}"));
            let cfg = ApplyConfig {
                iptables: backend.into(),
                ..Default::default()
            };
            let w = Worker::spawn(Some(ns.0.clone()), cfg).unwrap();
            let facts = w.call_blocking(|a| a.facts("gw")).unwrap();
            // Sealed as the operator would (outside the timings); checking
            // the seals is part of what `desired` costs.
            let key = SealKey::new(b"bench-seal-key-0123456789abcdef").unwrap();
            let mut inp = inputs(n);
            inp.vpc_namespaces = vec!["t".into()];
            seal_as_operator(&mut inp, &key);
            let t0 = Instant::now();
            let st = desired(Some(facts.clone()), "gw", &inp, &key);
            let rep = w.call_blocking(move |a| a.apply(&st, false));
            let cold = t0.elapsed();
            assert!(rep.error.is_none(), "{:?}", rep.error);
            assert_eq!(
                rep.results.iter().filter(|(_, r)| r.is_ok()).count(),
                n + 10
            );
            let mut adds = Vec::new();
            for k in 0..5 {
                inp.dnats.push(rule(n + k));
                seal_as_operator(&mut inp, &key);
                let t0 = Instant::now();
                let st = desired(Some(facts.clone()), "gw", &inp, &key);
                let computed = t0.elapsed();
                let rep = w.call_blocking(move |a| a.apply(&st, false));
                adds.push((
                    computed + rep.rules_live_after,
                    t0.elapsed(),
                    computed,
                    rep.restore_time,
                ));
                assert!(rep.restored && rep.error.is_none());
            }
            adds.sort();
            drop(w);
            drop(ns);

            // Baseline: one process per rule into a user chain.
            let base = if n <= 1_000 {
                let ns = Ns::new(&format!("{backend}-base-{n}"));
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &ns.0,
                    backend,
                    "-t",
                    "nat",
                    "-N",
                    "VPCNAT-PREROUTING",
                ]);
                let t0 = Instant::now();
                for i in 0..n {
                    let r = rule(i);
                    let eip = format!("172.16.3.{}/32", 10 + i % 10);
                    let to = format!("{}:80", r.spec.internal_ip);
                    let comment = format!("vpcnet:dnat/t/d{i}");
                    sh(&[
                        "ip",
                        "netns",
                        "exec",
                        &ns.0,
                        backend,
                        "-w",
                        "-t",
                        "nat",
                        "-A",
                        "VPCNAT-PREROUTING",
                        "-d",
                        &eip,
                        "-p",
                        "tcp",
                        "-m",
                        "tcp",
                        "--dport",
                        &r.spec.external_port,
                        "-m",
                        "comment",
                        "--comment",
                        &comment,
                        "-j",
                        "DNAT",
                        "--to-destination",
                        &to,
                    ]);
                }
                let d = t0.elapsed();
                per_rule_1k = Some(d / n as u32);
                ms(d)
            } else {
                match per_rule_1k {
                    Some(per) => format!("~{} (extrapolated from 1,000)", ms(per * n as u32)),
                    None => "not run".into(),
                }
            };
            let (b, b_returned, b_desired, b_restore) = adds[2];
            println!(
                "| {backend} | {n} | {} | {} | {} | {} | {} | {base} |",
                ms(cold),
                ms(b),
                ms(b_desired),
                ms(b_restore),
                ms(b_returned)
            );
        }
    }
}
