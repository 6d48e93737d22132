//! `cargo bench -p vpcnet-dns`: a release `vpcnet-dns` and CoreDNS side by
//! side, each pinned to one core (`taskset -c 0`) on loopback with the same
//! records: 1,000 Services in 10 namespaces (CoreDNS: its `file` plugin on
//! the same A records, SOA and NS; `forward` + `cache` for the rest), asked
//! the same queries by the same clients (`clients.rs`: `dnsperf` when
//! installed, skipped with a note otherwise, and a built-in closed loop).
//! CoreDNS is built once by `build-coredns.sh`; when that fails its column
//! is left out with a note.
//!
//! Workloads: names of the zone (A), NXDOMAIN for another tenant's namespace
//! (what every search-path miss costs), the 50/50 mix of the two, and
//! forwarded names answered from the cache (the upstream is a third server,
//! a vpcnet-dns instance, shared by both). Then the resident memory of both
//! with 1,000 and with 10,000 Services. Printed: one table per measure,
//! vpcnet-dns | CoreDNS | ratio, and the targets.
//! `VPCNET_BENCH_SECS` sets the seconds per row and server (default 4).
//!
//! Run it niced (`nice -n 19 cargo bench -p vpcnet-dns`): the servers
//! measured are put back at niceness 0 where the bench may do so.

#[path = "../tests/common/mod.rs"]
mod common;

mod clients;
mod coredns;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clients::{Client, Sample, ask};
use common::{Dns, scratch, write_zone};
use coredns::CoreDns;
use serde_json::json;

/// Targets from the issue.
const QPS_RATIO_TARGET: f64 = 1.5;
const P99_TARGET_US: f64 = 1000.0;

/// One Service of the bench's zone (the same for both servers).
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub ip: String,
}

/// `services` Services spread over `namespaces` namespaces `ns<n>`.
fn services(services: usize, namespaces: usize) -> Vec<Service> {
    let per = services / namespaces;
    (0..services)
        .map(|i| Service {
            namespace: format!("ns{}", i / per),
            name: format!("svc{}", i % per),
            ip: format!("10.96.{}.{}", i / 250, i % 250 + 1),
        })
        .collect()
}

/// vpcnet-dns's zone document for `services` of `cluster.local`.
fn zone(services: &[Service], upstreams: &[String]) -> String {
    let mut namespaces: Vec<&str> = services.iter().map(|s| s.namespace.as_str()).collect();
    namespaces.dedup();
    let svcs: Vec<_> = services
        .iter()
        .map(|s| {
            json!({"namespace": s.namespace, "name": s.name, "clusterIps": [s.ip],
                   "ports": [{"name": "http", "port": 80}]})
        })
        .collect();
    json!({"version": 1, "domain": "cluster.local", "upstreams": upstreams,
           "namespaces": namespaces, "reverseZones": ["10.96.0.0/12"], "services": svcs})
    .to_string()
}

/// The upstream of forwarded names: 100 names under `example.test`.
fn upstream_zone() -> String {
    json!({"version": 1, "domain": "example.test", "namespaces": ["up"], "ttl": 3600,
        "services": (0..100).map(|i| json!({"namespace": "up", "name": format!("h{i}"),
            "clusterIps": [format!("192.0.2.{}", i + 1)]})).collect::<Vec<_>>()})
    .to_string()
}

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
fn mix() -> Vec<String> {
    hits()
        .into_iter()
        .zip(misses())
        .flat_map(|(a, b)| [a, b])
        .collect()
}
fn forwarded() -> Vec<String> {
    (0..100)
        .map(|i| format!("h{i}.up.svc.example.test"))
        .collect()
}

/// (workload, names, client) of each row, in order.
fn plan(dnsperf: bool) -> Vec<(&'static str, Vec<String>, Client)> {
    let workloads: [(&'static str, Vec<String>); 4] = [
        ("zone A (hit)", hits()),
        ("zone NXDOMAIN (other ns)", misses()),
        ("zone mix 50/50", mix()),
        ("forwarded, cached", forwarded()),
    ];
    let mut rows = Vec::new();
    for (w, names) in workloads {
        if dnsperf {
            rows.push((w, names.clone(), Client::Dnsperf));
        }
        rows.push((w, names, Client::Udp));
    }
    rows.push(("zone A (hit)", hits(), Client::Tcp));
    rows
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Field 19 (`nice`) of `/proc/<pid>/stat`.
fn niceness(pid: &str) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.split_whitespace().nth(16)?.parse().ok())
        .unwrap_or(0)
}

/// `bin` on core 0 (when `taskset` exists), at niceness 0 when the bench
/// runs niced (`nice` warns in the server's log and runs it anyway where it
/// may not).
fn pinned_command(bin: &Path) -> Command {
    let mut argv: Vec<String> = Vec::new();
    let nice = niceness("self");
    if nice > 0 {
        argv.extend(["nice".into(), "-n".into(), format!("-{nice}")]);
    }
    if have("taskset") {
        argv.extend(["taskset", "-c", "0"].map(String::from));
    }
    argv.push(bin.display().to_string());
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// vpcnet-dns, pinned, on `zone_json`.
fn pinned(zone_json: &str) -> Dns {
    let dir = scratch();
    let path = dir.join("zone.json");
    write_zone(&path, zone_json);
    let mut cmd = pinned_command(Path::new(env!("CARGO_BIN_EXE_vpcnet-dns")));
    cmd.arg("--zone-file")
        .arg(&path)
        .args(["--lameduck-ms", "0"]);
    let d = Dns::from_command(cmd, dir);
    d.wait_ready();
    d
}

/// CoreDNS, pinned, on `services`, or why not (printed).
fn pinned_coredns(
    bin: Option<&PathBuf>,
    services: &[Service],
    upstream: Option<SocketAddr>,
) -> Option<CoreDns> {
    match CoreDns::start(pinned_command(bin?), services, upstream) {
        Ok(c) => Some(c),
        Err(e) => {
            println!("NOTE: CoreDNS column left out: {e}");
            None
        }
    }
}

/// Both servers give the same answers to the workloads' names: one A
/// record for a forwarded name (asked first: that fills the cache, so the
/// rows measure it) and for a Service, NXDOMAIN for another namespace.
fn check(server: SocketAddr) {
    let t = Duration::from_secs(2);
    for n in forwarded().iter().chain(&hits()) {
        assert_eq!(ask(server, n, t), Some((0, 1)), "{n} at {server}");
    }
    for n in &misses() {
        assert_eq!(ask(server, n, t), Some((3, 0)), "{n} at {server}");
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// One row measured against both servers (CoreDNS: when it runs).
struct Line {
    workload: &'static str,
    client: Client,
    ours: Sample,
    theirs: Option<Sample>,
}

impl Line {
    fn label(&self) -> String {
        format!("{:<26} {:<16}", self.workload, self.client.label())
    }
}

/// Runs each row of `plan` against vpcnet-dns, then CoreDNS, back to back.
fn measure(
    plan: &[(&'static str, Vec<String>, Client)],
    ours: SocketAddr,
    theirs: Option<SocketAddr>,
    secs: f64,
) -> Vec<Line> {
    plan.iter()
        .map(|(workload, names, client)| Line {
            workload,
            client: *client,
            ours: client.run(ours, names, secs),
            theirs: theirs.map(|t| client.run(t, names, secs)),
        })
        .collect()
}

/// One table: `label | vpcnet-dns | CoreDNS | ratio` (vpcnet-dns / CoreDNS).
fn table(title: &str, rows: &[(String, Option<f64>, Option<f64>)], decimals: usize) {
    println!("\n{title}");
    println!(
        "{:<43} {:>12} {:>12} {:>8}",
        "", "vpcnet-dns", "CoreDNS", "ratio"
    );
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.decimals$}"));
    for (label, a, b) in rows {
        let ratio = match (a, b) {
            (Some(a), Some(b)) if *b > 0.0 => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        println!("{label:<43} {:>12} {:>12} {ratio:>8}", cell(*a), cell(*b));
    }
}

fn measure_table(title: &str, lines: &[Line], f: fn(&Sample) -> Option<f64>, decimals: usize) {
    let rows: Vec<_> = lines
        .iter()
        .map(|l| (l.label(), f(&l.ours), l.theirs.as_ref().and_then(f)))
        .collect();
    table(title, &rows, decimals);
}

fn print_tables(lines: &[Line]) {
    measure_table("QPS (higher is better)", lines, |s| Some(s.qps), 0);
    measure_table("p50 latency, µs (lower is better)", lines, |s| s.p50_us, 0);
    measure_table("p99 latency, µs (lower is better)", lines, |s| s.p99_us, 0);
    measure_table(
        "queries lost (no answer within the client's timeout)",
        lines,
        |s| Some(s.lost as f64),
        0,
    );
}

/// The QPS target, row by row, on the rows that saturate the server
/// (dnsperf's; the built-in UDP client's without it).
fn print_qps_target(lines: &[Line]) {
    let saturating = if lines.iter().any(|l| l.client == Client::Dnsperf) {
        Client::Dnsperf
    } else {
        Client::Udp
    };
    let rows: Vec<String> = lines
        .iter()
        .filter(|l| l.client == saturating)
        .filter_map(|l| {
            let r = l.ours.qps / l.theirs.as_ref()?.qps;
            let v = verdict(r >= QPS_RATIO_TARGET);
            Some(format!("{} {r:.2}x {v}", l.workload))
        })
        .collect();
    let what = format!("QPS per core >= {QPS_RATIO_TARGET}x CoreDNS's");
    if rows.is_empty() {
        println!("  {what}: not measured (no CoreDNS)");
    } else {
        println!("  {what} ({}): {}", saturating.label(), rows.join("; "));
    }
}

/// The latency target, row by row.
fn print_p99_target(lines: &[Line]) {
    println!("  vpcnet-dns p99 < {P99_TARGET_US:.0} µs:");
    for l in lines {
        if let Some(p) = l.ours.p99_us {
            let v = verdict(p < P99_TARGET_US);
            let (w, c) = (l.workload, l.client.label());
            println!("    {w}, {c}: {p:.0} µs {v}");
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Resident memory of both with 1,000 Services (`ours`, `theirs`, after the
/// run) and with 10,000 (fresh, idle).
fn print_memory(ours: Dns, theirs: Option<CoreDns>, coredns_bin: Option<&PathBuf>) {
    let rss_1k = (
        rss_mib(ours.pid()),
        theirs.as_ref().and_then(|c| rss_mib(c.pid())),
    );
    let rec_1k = ours.metric("vpcnet_dns_zone_records");
    drop((ours, theirs));
    let big = services(10_000, 10);
    let ours = pinned(&zone(&big, &[]));
    let theirs = pinned_coredns(coredns_bin, &big, None);
    let rss_10k = (
        rss_mib(ours.pid()),
        theirs.as_ref().and_then(|c| rss_mib(c.pid())),
    );
    let rec_10k = ours.metric("vpcnet_dns_zone_records");
    table(
        "resident memory (VmRSS), MiB (lower is better)",
        &[
            ("1,000 Services, after the run".into(), rss_1k.0, rss_1k.1),
            ("10,000 Services, idle".into(), rss_10k.0, rss_10k.1),
        ],
        1,
    );
    println!(
        "(vpcnet-dns holds {rec_1k:.0} / {rec_10k:.0} records: A, SRV and PTR; CoreDNS's zone file has the A records, SOA and NS)"
    );
}

/// What ran, and how.
fn print_header(
    ours: &Dns,
    theirs: Option<&CoreDns>,
    coredns_bin: Option<&Path>,
    dnsperf: bool,
    secs: f64,
) {
    let name = coredns_bin.map_or("CoreDNS (not built)".into(), coredns::version);
    let nice = |pid: u32| niceness(&pid.to_string()).to_string();
    println!(
        "\nvpcnet-dns vs {name} on one core each (taskset -c 0: {}; server niceness {} / {}), \
         1,000 Services / 10 namespaces, loopback, {secs} s per row and server",
        have("taskset"),
        nice(ours.pid()),
        theirs.map_or("-".into(), |c| nice(c.pid())),
    );
    if theirs.is_some() {
        println!("CoreDNS: file (cluster.local), forward + cache (.), no other plugin");
    }
    if !dnsperf {
        println!("(dnsperf not installed: `apt-get install dnsperf` adds its rows)");
    }
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter we ignore.
    let secs: f64 = std::env::var("VPCNET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let coredns_bin = coredns::build()
        .inspect_err(|e| println!("NOTE: CoreDNS column left out: {e}"))
        .ok();
    let up = Dns::ready(&upstream_zone(), &["--lameduck-ms", "0"]);
    let svcs = services(1000, 10);
    let ours = pinned(&zone(&svcs, &[up.dns.to_string()]));
    let theirs = pinned_coredns(coredns_bin.as_ref(), &svcs, Some(up.dns));
    check(ours.dns);
    theirs.iter().for_each(|c| check(c.dns));

    let dnsperf = have("dnsperf");
    let plan = plan(dnsperf);
    let lines = measure(&plan, ours.dns, theirs.as_ref().map(|c| c.dns), secs);
    let cache_hits = ours.metric("vpcnet_dns_cache_hits_total");

    print_header(
        &ours,
        theirs.as_ref(),
        coredns_bin.as_deref(),
        dnsperf,
        secs,
    );
    print_tables(&lines);
    println!("(vpcnet-dns cache hits during the run: {cache_hits:.0})");
    print_memory(ours, theirs, coredns_bin.as_ref());
    println!("\nTargets (from the issue)");
    print_qps_target(&lines);
    print_p99_target(&lines);
}
