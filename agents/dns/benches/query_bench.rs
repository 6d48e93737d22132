//! `cargo bench -p vpcnet-dns`: a release `vpcnet-dns` pinned to one core
//! (`taskset -c 0`) on loopback, 1,000 Services in 10 namespaces, asked over
//! UDP (and TCP) by two clients side by side:
//! - `dnsperf` (Debian package; skipped with a note when absent): 4 clients,
//!   up to 64 queries outstanding: throughput; latencies from its `-v` lines;
//! - a built-in closed-loop client: 4 threads, one query in flight each.
//!
//! Workloads: names of the zone (A), NXDOMAIN for another tenant's namespace
//! (what every search-path miss costs), the 50/50 mix of the two, and
//! forwarded names answered from the cache (the upstream is a second
//! instance). Then the resident memory with 1,000 and with 10,000 Services.
//! `VPCNET_BENCH_SECS` sets the seconds per row (default 4).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Dns, scratch, write_zone};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;

fn zone(services: usize, namespaces: usize, upstreams: &[String]) -> String {
    let per = services / namespaces;
    let svcs: Vec<_> = (0..services)
        .map(|i| {
            json!({"namespace": format!("ns{}", i / per), "name": format!("svc{}", i % per),
                   "clusterIps": [format!("10.96.{}.{}", i / 250, i % 250 + 1)],
                   "ports": [{"name": "http", "port": 80}]})
        })
        .collect();
    json!({"version": 1, "domain": "cluster.local", "upstreams": upstreams,
           "namespaces": (0..namespaces).map(|n| format!("ns{n}")).collect::<Vec<_>>(),
           "reverseZones": ["10.96.0.0/12"], "services": svcs})
    .to_string()
}

/// (name, type) lists of each workload.
fn hits() -> Vec<String> {
    (0..1000)
        .map(|i| format!("svc{}.ns{}.svc.cluster.local", i % 100, i / 100))
        .collect()
}
fn misses() -> Vec<String> {
    (0..1000)
        .map(|i| format!("svc{}.other{}.svc.cluster.local", i % 100, i / 100))
        .collect()
}
fn forwarded() -> Vec<String> {
    (0..100)
        .map(|i| format!("h{i}.up.svc.example.test"))
        .collect()
}

fn wire(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

struct Row {
    workload: &'static str,
    client: &'static str,
    qps: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    lost: u64,
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// Closed loop: `threads` clients, one query in flight each.
fn builtin(
    server: SocketAddr,
    names: &[String],
    secs: f64,
    tcp: bool,
    workload: &'static str,
) -> Row {
    let threads = 4;
    let queries: Vec<Vec<u8>> = names.iter().map(|n| wire(n)).collect();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let results: Vec<(Vec<f64>, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let queries = &queries;
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut lost = 0;
                    let mut buf = vec![0u8; 65535];
                    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                    udp.connect(server).unwrap();
                    udp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let mut tcp_s = tcp.then(|| {
                        let s = TcpStream::connect(server).unwrap();
                        s.set_nodelay(true).unwrap();
                        s
                    });
                    let mut i = t * 7919;
                    while Instant::now() < deadline {
                        let mut q = queries[i % queries.len()].clone();
                        let id = (i as u16).to_be_bytes();
                        q[0] = id[0];
                        q[1] = id[1];
                        i += 1;
                        let start = Instant::now();
                        let ok = match &mut tcp_s {
                            Some(s) => {
                                let mut f = (q.len() as u16).to_be_bytes().to_vec();
                                f.extend_from_slice(&q);
                                s.write_all(&f).unwrap();
                                let mut l = [0u8; 2];
                                s.read_exact(&mut l).unwrap();
                                let n = u16::from_be_bytes(l) as usize;
                                s.read_exact(&mut buf[..n]).unwrap();
                                buf[..2] == id
                            }
                            None => {
                                udp.send(&q).unwrap();
                                loop {
                                    match udp.recv(&mut buf) {
                                        Ok(n) if n >= 2 && buf[..2] == id => break true,
                                        Ok(_) => continue,
                                        Err(_) => break false,
                                    }
                                }
                            }
                        };
                        if ok {
                            lat.push(start.elapsed().as_secs_f64() * 1e6);
                        } else {
                            lost += 1;
                        }
                    }
                    (lat, lost)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let lost = results.iter().map(|r| r.1).sum();
    let mut all: Vec<f64> = results.into_iter().flat_map(|r| r.0).collect();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Row {
        workload,
        client: if tcp {
            "built-in TCP x4"
        } else {
            "built-in UDP x4"
        },
        qps: all.len() as f64 / elapsed,
        p50_us: pct(&all, 0.5),
        p99_us: pct(&all, 0.99),
        lost,
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn dnsperf(server: SocketAddr, names: &[String], secs: f64, workload: &'static str) -> Row {
    let dir = scratch();
    let f = dir.join("queries");
    std::fs::write(
        &f,
        names.iter().map(|n| format!("{n} A\n")).collect::<String>(),
    )
    .unwrap();
    let out = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &server.port().to_string()])
        .args([
            "-d",
            f.to_str().unwrap(),
            "-l",
            &format!("{secs}"),
            "-c",
            "4",
            "-q",
            "64",
            "-v",
        ])
        .output()
        .expect("dnsperf");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lat: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|s| s * 1e6)
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let field = |k: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0)
    };
    Row {
        workload,
        client: "dnsperf c4 q64",
        qps: field("Queries per second:"),
        p50_us: pct(&lat, 0.5),
        p99_us: pct(&lat, 0.99),
        lost: field("Queries lost:") as u64,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A server pinned to core 0 (when `taskset` exists) on `zone_json`.
fn pinned(zone_json: &str, extra: &[&str]) -> Dns {
    let dir = scratch();
    let path = dir.join("zone.json");
    write_zone(&path, zone_json);
    let bin = env!("CARGO_BIN_EXE_vpcnet-dns");
    let mut cmd = if have("taskset") {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.arg("--zone-file").arg(&path).args(extra);
    let d = Dns::from_command(cmd, dir);
    d.wait_ready();
    d
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter we ignore.
    let secs: f64 = std::env::var("VPCNET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let up_zone = json!({"version": 1, "domain": "example.test", "namespaces": ["up"], "ttl": 3600,
        "services": (0..100).map(|i| json!({"namespace": "up", "name": format!("h{i}"),
            "clusterIps": [format!("192.0.2.{}", i + 1)]})).collect::<Vec<_>>()});
    let up = Dns::start(&up_zone.to_string(), &["--lameduck-ms", "0"]);
    up.wait_ready();
    let d = pinned(
        &zone(1000, 10, &[up.dns.to_string()]),
        &["--lameduck-ms", "0"],
    );
    // Warm the cache.
    for n in forwarded() {
        assert_eq!(d.status(&[&n]), "NOERROR", "{n}");
    }
    let mix: Vec<String> = hits()
        .into_iter()
        .zip(misses())
        .flat_map(|(a, b)| [a, b])
        .collect();
    let workloads: Vec<(&'static str, Vec<String>)> = vec![
        ("zone A (hit)", hits()),
        ("zone NXDOMAIN (other ns)", misses()),
        ("zone mix 50/50", mix),
        ("forwarded, cached", forwarded()),
    ];
    let mut rows = Vec::new();
    let dnsperf_ok = have("dnsperf");
    for (w, names) in &workloads {
        if dnsperf_ok {
            rows.push(dnsperf(d.dns, names, secs, w));
        }
        rows.push(builtin(d.dns, names, secs, false, w));
    }
    rows.push(builtin(d.dns, &hits(), secs, true, "zone A (hit)"));
    let hits_cache = d.metric("vpcnet_dns_cache_hits_total");

    println!();
    println!(
        "vpcnet-dns on one core (taskset -c 0: {}), 1,000 Services / 10 namespaces, {secs} s per row",
        have("taskset")
    );
    println!(
        "{:<26} {:<16} {:>10} {:>10} {:>10} {:>8}",
        "workload", "client", "QPS", "p50 µs", "p99 µs", "lost"
    );
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    for r in &rows {
        println!(
            "{:<26} {:<16} {:>10.0} {:>10} {:>10} {:>8}",
            r.workload,
            r.client,
            r.qps,
            us(r.p50_us),
            us(r.p99_us),
            r.lost
        );
    }
    if !dnsperf_ok {
        println!("(dnsperf not installed: `apt-get install dnsperf` adds its rows)");
    }
    println!("cache hits during the run: {hits_cache:.0}");

    // Memory.
    let rss_1k = rss_kib(d.pid());
    let rec_1k = d.metric("vpcnet_dns_zone_records");
    drop(d);
    let big = pinned(&zone(10_000, 10, &[]), &["--lameduck-ms", "0"]);
    let rss_10k = rss_kib(big.pid());
    let rec_10k = big.metric("vpcnet_dns_zone_records");
    println!(
        "RSS: {:.1} MiB with 1,000 Services ({rec_1k:.0} records, after the run), {:.1} MiB with 10,000 Services ({rec_10k:.0} records, idle)",
        rss_1k as f64 / 1024.0,
        rss_10k as f64 / 1024.0
    );
}
