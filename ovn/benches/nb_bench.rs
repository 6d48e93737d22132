//! Creates and deletes Logical_Switch_Ports against one private ovsdb-server:
//! (a) this crate, batched transactions; (b) `ovn-nbctl`, one process per
//! port; (c) `ovn-nbctl`, all ports chained with `--` in one invocation.
//! Prints wall times, ratios, and the client memory of a 10,000-port cache.
//!
//! Env: OVN_BENCH_PORTS (10000), OVN_BENCH_SWITCHES (100),
//! OVN_BENCH_BATCH (ports per transaction for (a), 1000),
//! OVN_BENCH_NBCTL_PORTS (ports for (b), default all; fewer = extrapolated).

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use ovn::nb::{self, *};
use ovn::owner::{self, Desired, Owner};
use ovn::{Client, Cond, MonitorRequest, Mutation, Txn, Uuid, datum};

/// Counts live heap bytes, to report what the monitor cache costs.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn port_name(i: usize) -> String {
    format!("lsp{i}")
}
fn switch_name(s: usize) -> String {
    format!("ls{s}")
}
fn mac(i: usize) -> String {
    format!(
        "0a:00:00:{:02x}:{:02x}:{:02x} 10.{}.{}.{}",
        i >> 16 & 255,
        i >> 8 & 255,
        i & 255,
        i >> 16 & 255,
        i >> 8 & 255,
        i & 255
    )
}

async fn count_ports(c: &Client) -> usize {
    let mut t = Txn::nb();
    let i = t.select(logical_switch_port::TABLE, &[], Some(&["_uuid"]));
    c.transact(t).await.unwrap().raw_rows(i).len()
}

fn nbctl(srv: &common::Server, args: &[String]) {
    let mut c = Command::new(common::tool("ovn-nbctl"));
    c.arg(format!("--db={}", srv.target())).args(args);
    let out = c.output().expect("run ovn-nbctl");
    assert!(
        out.status.success(),
        "ovn-nbctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Row {
    /// `create` or `delete`.
    op: &'static str,
    variant: &'static str,
    ports: usize,
    wall: Duration,
    /// Time extrapolated to the full port count (differs from `wall` only for a shrunk (b)).
    full: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let n = env("OVN_BENCH_PORTS", 10_000);
    let switches = env("OVN_BENCH_SWITCHES", 100);
    let batch = env("OVN_BENCH_BATCH", 1000);
    let nb_ports = env("OVN_BENCH_NBCTL_PORTS", n).min(n);

    let srv = common::Server::start();
    let c = Client::connect(&srv.target()).await.unwrap();
    c.check_schema(nb::schema()).await.unwrap();

    // The switches, shared by all variants.
    let mut t = Txn::nb();
    for s in 0..switches {
        t.insert_row(&LogicalSwitch {
            name: switch_name(s),
            ..Default::default()
        });
    }
    let r = c.transact(t).await.unwrap();
    let sw: Vec<Uuid> = r.results.iter().map(|x| x.uuid().unwrap()).collect();
    let mut rows = Vec::new();

    // (a) create: per batch, one insert per port plus one mutate per switch;
    // batches are pipelined on the one connection (the server applies them in order).
    let t0 = Instant::now();
    let mut pending = Vec::new();
    for start in (0..n).step_by(batch) {
        let mut t = Txn::nb();
        let mut per_switch: BTreeMap<usize, Vec<serde_json::Value>> = BTreeMap::new();
        let mut named = Vec::new();
        for i in start..(start + batch).min(n) {
            let p = t.insert_row(&LogicalSwitchPort {
                name: port_name(i),
                addresses: [mac(i)].into(),
                ..Default::default()
            });
            per_switch
                .entry(i % switches)
                .or_default()
                .push(p.to_json());
            named.push((i % switches, p));
        }
        for (s, ports) in per_switch {
            t.mutate(
                logical_switch::TABLE,
                &[Cond::uuid(&sw[s])],
                &[Mutation::insert(
                    logical_switch::PORTS,
                    datum::set_of(ports),
                )],
            );
        }
        let c = c.clone();
        pending.push(async move {
            let r = c.transact(t).await.unwrap();
            named
                .into_iter()
                .map(|(s, p)| (s, r.uuid(&p).unwrap()))
                .collect::<Vec<_>>()
        });
    }
    let port_uuids: Vec<(usize, Uuid)> = futures::future::join_all(pending)
        .await
        .into_iter()
        .flatten()
        .collect();
    let wall = t0.elapsed();
    assert_eq!(count_ports(&c).await, n);
    rows.push(Row {
        op: "create",
        variant: "(a) ovn crate, pipelined txns",
        ports: n,
        wall,
        full: wall,
    });

    // Client memory of a monitor cache holding every port (and switch).
    let before = LIVE.load(Ordering::Relaxed);
    let m = c
        .monitor(
            nb::SCHEMA_NAME,
            vec![
                MonitorRequest::of::<LogicalSwitch>(),
                MonitorRequest::of::<LogicalSwitchPort>(),
            ],
        )
        .await
        .unwrap();
    let cache_bytes = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(m.len(logical_switch_port::TABLE), n);
    let typed_before = LIVE.load(Ordering::Relaxed);
    let typed: Vec<LogicalSwitchPort> = m.get().unwrap();
    let typed_bytes = LIVE.load(Ordering::Relaxed) - typed_before;
    assert_eq!(typed.len(), n);
    drop(typed);
    m.cancel().await.unwrap();

    // (a) delete: detach from the switches (OVSDB deletes unreferenced ports).
    let t0 = Instant::now();
    let mut pending = Vec::new();
    for chunk in port_uuids.chunks(batch) {
        let mut t = Txn::nb();
        let mut per_switch: BTreeMap<usize, Vec<serde_json::Value>> = BTreeMap::new();
        for (s, u) in chunk {
            per_switch.entry(*s).or_default().push(u.to_json());
        }
        for (s, ports) in per_switch {
            t.mutate(
                logical_switch::TABLE,
                &[Cond::uuid(&sw[s])],
                &[Mutation::delete(
                    logical_switch::PORTS,
                    datum::set_of(ports),
                )],
            );
        }
        let c = c.clone();
        pending.push(async move { c.transact(t).await.unwrap() });
    }
    futures::future::join_all(pending).await;
    let wall = t0.elapsed();
    assert_eq!(count_ports(&c).await, 0);
    rows.push(Row {
        op: "delete",
        variant: "(a) ovn crate, pipelined txns",
        ports: n,
        wall,
        full: wall,
    });

    // (a') what a reconciler does: one ensure_owned per switch owner (its
    // ports, attached to the existing switch), sequentially; then delete_owned.
    let owners: Vec<Owner> = (0..switches)
        .map(|s| Owner::cluster("Subnet", &switch_name(s)))
        .collect();
    let t0 = Instant::now();
    for (s, owner) in owners.iter().enumerate() {
        let desired: Vec<Desired> = (s..n)
            .step_by(switches)
            .map(|i| {
                Desired::new(&LogicalSwitchPort {
                    name: port_name(i),
                    addresses: [mac(i)].into(),
                    ..Default::default()
                })
                .child_of(
                    logical_switch::TABLE,
                    logical_switch::PORTS,
                    sw[s].clone(),
                )
            })
            .collect();
        owner::ensure_owned(&c, owner, desired).await.unwrap();
    }
    let wall = t0.elapsed();
    assert_eq!(count_ports(&c).await, n);
    rows.push(Row {
        op: "create",
        variant: "(a') ensure_owned, 1 per switch",
        ports: n,
        wall,
        full: wall,
    });
    let t0 = Instant::now();
    for owner in &owners {
        owner::delete_owned(&c, owner).await.unwrap();
    }
    let wall = t0.elapsed();
    assert_eq!(count_ports(&c).await, 0);
    rows.push(Row {
        op: "delete",
        variant: "(a') delete_owned, 1 per switch",
        ports: n,
        wall,
        full: wall,
    });

    // (b) one ovn-nbctl process per port.
    let scale = n as f64 / nb_ports as f64;
    let t0 = Instant::now();
    for i in 0..nb_ports {
        nbctl(
            &srv,
            &[
                "lsp-add".into(),
                switch_name(i % switches),
                port_name(i),
                "--".into(),
                "lsp-set-addresses".into(),
                port_name(i),
                mac(i),
            ],
        );
    }
    let wall = t0.elapsed();
    assert_eq!(count_ports(&c).await, nb_ports);
    rows.push(Row {
        op: "create",
        variant: "(b) ovn-nbctl, 1 process/port",
        ports: nb_ports,
        wall,
        full: wall.mul_f64(scale),
    });
    let t0 = Instant::now();
    for i in 0..nb_ports {
        nbctl(&srv, &["lsp-del".into(), port_name(i)]);
    }
    let wall = t0.elapsed();
    assert_eq!(count_ports(&c).await, 0);
    rows.push(Row {
        op: "delete",
        variant: "(b) ovn-nbctl, 1 process/port",
        ports: nb_ports,
        wall,
        full: wall.mul_f64(scale),
    });

    // (c) one ovn-nbctl invocation, commands chained with `--`.
    let mut args: Vec<String> = Vec::new();
    for i in 0..n {
        for a in [
            "--".to_string(),
            "lsp-add".into(),
            switch_name(i % switches),
            port_name(i),
            "--".into(),
            "lsp-set-addresses".into(),
            port_name(i),
            mac(i),
        ] {
            args.push(a);
        }
    }
    let t0 = Instant::now();
    nbctl(&srv, &args[1..]);
    let wall = t0.elapsed();
    assert_eq!(count_ports(&c).await, n);
    rows.push(Row {
        op: "create",
        variant: "(c) ovn-nbctl, one invocation",
        ports: n,
        wall,
        full: wall,
    });
    let mut args: Vec<String> = Vec::new();
    for i in 0..n {
        args.extend(["--".to_string(), "lsp-del".into(), port_name(i)]);
    }
    let t0 = Instant::now();
    nbctl(&srv, &args[1..]);
    let wall = t0.elapsed();
    assert_eq!(count_ports(&c).await, 0);
    rows.push(Row {
        op: "delete",
        variant: "(c) ovn-nbctl, one invocation",
        ports: n,
        wall,
        full: wall,
    });
    // Creates first, each group in run order; (a) is the baseline.
    rows.sort_by_key(|r| r.op != "create");

    println!();
    println!(
        "ovsdb-server {} (standalone, unix socket), OVN_Northbound {}",
        ovs_version(),
        nb::SCHEMA_VERSION
    );
    println!(
        "{:<28} | {:<31} | {:>6} | {:>10} | {:>11} | {:>10} | {:>9}",
        "operation", "variant", "ports", "wall", "per port", "full N", "vs (a)"
    );
    println!("{}", "-".repeat(124));
    for op in ["create", "delete"] {
        let group: Vec<&Row> = rows.iter().filter(|r| r.op == op).collect();
        let a = group[0].full;
        let label = if op == "create" {
            format!("create {n} LSPs on {switches} LS")
        } else {
            format!("delete {n} LSPs")
        };
        for r in group {
            let extrapolated = r.ports != n;
            println!(
                "{:<28} | {:<31} | {:>6} | {:>8.3} s | {:>8.1} µs | {:>8.3} s{} | {:>8.1}×",
                label,
                r.variant,
                r.ports,
                r.wall.as_secs_f64(),
                r.wall.as_secs_f64() * 1e6 / r.ports as f64,
                r.full.as_secs_f64(),
                if extrapolated { "*" } else { " " },
                r.full.as_secs_f64() / a.as_secs_f64()
            );
        }
    }
    if nb_ports != n {
        println!(
            "* (b) ran {nb_ports} processes (OVN_BENCH_NBCTL_PORTS); \"full N\" extrapolates per port to {n}.\n  Each ovn-nbctl first loads the tables it needs, so its cost grows with the database:\n  extrapolating from the first {nb_ports} ports understates (b)."
        );
    }
    println!(
        "(a) uses {batch} ports per transaction; \"vs (a)\" is wall(variant) / wall(a) at full N."
    );
    println!(
        "client memory, monitor cache of {n} ports + {switches} switches: {:.1} MiB live heap ({:.0} B/port); decoded typed Vec<LogicalSwitchPort>: {:.1} MiB",
        cache_bytes as f64 / 1048576.0,
        cache_bytes as f64 / n as f64,
        typed_bytes as f64 / 1048576.0
    );
}

fn ovs_version() -> String {
    let out = Command::new(common::tool("ovsdb-server"))
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .to_string()
}
