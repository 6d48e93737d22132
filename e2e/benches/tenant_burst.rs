//! One noisy tenant against the platform's API traffic on the
//! cluster-in-a-box: while tenant A (its own ServiceAccount, namespace admin)
//! creates N DNAT rules as fast as it can (default 500 with 50 in flight,
//! `VPCNET_BENCH_BURST`, `VPCNET_BENCH_BURST_CONCURRENCY`), how long do the
//! operator's reads and writes (impersonated as its ServiceAccount) and
//! tenant B's own single creations take to be served (each probe runs back
//! to back during the burst)? Measured in one run, in alternating rounds
//! (`VPCNET_BENCH_ROUNDS`, default 3, each mode): with vpcnet's FlowSchemas
//! (config/base/flowcontrol.yaml) and with them deleted, so the operator
//! shares the built-in `service-accounts` schema with the tenants; the
//! FlowSchemas are put back as they were. Every round's rules are deleted
//! before the next, the namespaces at the end.
//! Needs a running box: `cargo xtask box up`, then
//! `cargo bench -p vpcnet-e2e --bench tenant_burst`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::client::Body;
use kube::core::Request;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::tenant::Tenant;

const NS_A: &str = "bench-burst-a";
const NS_B: &str = "bench-burst-b";
/// The operator Deployment's `serviceAccountName` (config/base/operator.yaml).
const OPERATOR_SA: &str = "system:serviceaccount:vpcnet-system:vpcnet-operator";
const FLOWCONTROL: &str = "config/base/flowcontrol.yaml";
const SCHEMAS: [&str; 2] = ["vpcnet-operator", "vpcnet-system-service-accounts"];
const LEVEL: &str = "vpcnet-control";
/// The EIP in tenant B's namespace the platform probes read and patch.
const PROBE_EIP: &str = "probe";
/// Requests of each probe per burst at most.
const MAX_PROBES: usize = 400;
const IDLE_PROBES: usize = 20;
/// A whole burst, and the deletion of its objects, must end within this.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A client for `kubeconfig`, optionally impersonating `user`; no retries,
/// so a 429 is seen and counted rather than hidden in the latency.
async fn client(kubeconfig: &Path, impersonate: Option<&str>) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    config.auth_info.impersonate = impersonate.map(str::to_string);
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

/// One request's outcome.
struct Sent {
    ms: f64,
    status: u16,
    /// The UID of the priority level the API server put the request in.
    level: Option<String>,
}

/// Sends a `kube::core::Request`-built request (a macro: the request type
/// lives in the `http` crate, which this crate does not name) and times it
/// until its body is read.
macro_rules! send {
    ($client:expr, $req:expr) => {{
        let req = $req.expect("request").map(Body::from);
        let start = Instant::now();
        match $client.send(req).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let level = res
                    .headers()
                    .get("x-kubernetes-pf-prioritylevel-uid")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let _ = res.into_body().collect_bytes().await;
                Sent {
                    ms: start.elapsed().as_secs_f64() * 1000.0,
                    status,
                    level,
                }
            }
            Err(e) => {
                eprintln!("request failed: {e}");
                Sent {
                    ms: start.elapsed().as_secs_f64() * 1000.0,
                    status: 0,
                    level: None,
                }
            }
        }
    }};
}

fn rules_path(ns: &str) -> String {
    format!("/apis/vpcnet.io/v1/namespaces/{ns}/iptablesdnatrules")
}

fn eips_path(ns: &str) -> String {
    format!("/apis/vpcnet.io/v1/namespaces/{ns}/iptableseips")
}

/// A DNAT rule on an EIP that does not exist: the API work is the same, the
/// operator refuses it (Ready=False) without touching any gateway.
fn dnat(name: &str, port: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "vpcnet.io/v1",
        "kind": "IptablesDnatRule",
        "metadata": {"name": name},
        "spec": {
            "eip": "burst",
            "externalPort": port.to_string(),
            "internalIp": "10.0.1.2",
            "internalPort": "80",
            "protocol": "tcp"
        }
    }))
    .expect("json")
}

struct Clients {
    /// The box's admin impersonating the operator's ServiceAccount.
    platform: kube::Client,
    /// Tenant A's namespace admin (the burst).
    a: kube::Client,
    /// Tenant B's namespace admin.
    b: kube::Client,
}

/// Latencies (ms) of served requests, and what was not served.
#[derive(Default)]
struct Samples {
    get: Vec<f64>,
    patch: Vec<f64>,
    create: Vec<f64>,
    failed: usize,
    /// Priority levels the operator's requests were served at, by name.
    levels: BTreeMap<String, usize>,
}

impl Samples {
    fn add(&mut self, o: Samples) {
        self.get.extend(o.get);
        self.patch.extend(o.patch);
        self.create.extend(o.create);
        self.failed += o.failed;
        for (l, n) in o.levels {
            *self.levels.entry(l).or_default() += n;
        }
    }
}

/// Priority level UID -> name.
fn level_names(admin: &Kubectl) -> BTreeMap<String, String> {
    admin
        .ok(&[
            "get",
            "prioritylevelconfigurations",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.uid} {.metadata.name}{"\n"}{end}"#,
        ])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(u, n)| (u.to_string(), n.to_string()))
        .collect()
}

/// The three probes: the operator reads and patches tenant B's EIP, tenant
/// B creates one DNAT rule.
#[derive(Clone, Copy)]
enum Probe {
    Get,
    Patch,
    Create,
}

/// Runs `probe` back to back until `done` is set, at most `max` times.
async fn probe_loop(
    c: &Clients,
    probe: Probe,
    tag: &str,
    max: usize,
    done: &AtomicBool,
    levels: &BTreeMap<String, String>,
) -> Samples {
    let mut s = Samples::default();
    let eips = Request::new(eips_path(NS_B));
    for i in 0..max {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let sent = match probe {
            Probe::Get => send!(c.platform, eips.get(PROBE_EIP, &Default::default())),
            Probe::Patch => {
                let body = serde_json::json!({
                    "metadata": {"annotations": {"bench.vpcnet.io/probe": format!("{tag}-{i}")}}
                });
                send!(
                    c.platform,
                    eips.patch(PROBE_EIP, &PatchParams::default(), &Patch::Merge(&body))
                )
            }
            Probe::Create => send!(
                c.b,
                Request::new(rules_path(NS_B)).create(
                    &PostParams::default(),
                    dnat(&format!("b-{tag}-{i:03}"), 20000 + i)
                )
            ),
        };
        if !matches!(probe, Probe::Create) {
            let name = sent
                .level
                .as_ref()
                .map(|uid| levels.get(uid).cloned().unwrap_or(uid.clone()))
                .unwrap_or_else(|| "(none)".into());
            *s.levels.entry(name).or_default() += 1;
        }
        if (200..300).contains(&sent.status) {
            match probe {
                Probe::Get => s.get.push(sent.ms),
                Probe::Patch => s.patch.push(sent.ms),
                Probe::Create => s.create.push(sent.ms),
            }
        } else {
            s.failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s
}

/// All three probes at once, each back to back.
async fn probe_all(
    c: &Clients,
    tag: &str,
    max: usize,
    done: &AtomicBool,
    levels: &BTreeMap<String, String>,
) -> Samples {
    let (g, p, cr) = futures::join!(
        probe_loop(c, Probe::Get, tag, max, done, levels),
        probe_loop(c, Probe::Patch, tag, max, done, levels),
        probe_loop(c, Probe::Create, tag, max, done, levels),
    );
    let mut s = g;
    s.add(p);
    s.add(cr);
    s
}

/// Measurements of one mode, summed over its rounds.
#[derive(Default)]
struct Phase {
    idle: Samples,
    busy: Samples,
    /// Tenant A's own create latencies.
    burst: Vec<f64>,
    /// Tenant A's creations refused with 429 (API Priority and Fairness).
    burst_429: usize,
    burst_other: usize,
    wall: Duration,
}

/// One round: idle probes, then probes while tenant A's burst runs; then
/// the round's DNAT rules are deleted.
async fn phase(
    admin: &Kubectl,
    c: &Clients,
    into: &mut Phase,
    tag: &str,
    n: usize,
    in_flight: usize,
) {
    let levels = level_names(admin);
    let never = AtomicBool::new(false);
    into.idle
        .add(probe_all(c, &format!("{tag}-idle"), IDLE_PROBES, &never, &levels).await);
    let done = Arc::new(AtomicBool::new(false));
    let (a, burst_tag, burst_done) = (c.a.clone(), tag.to_string(), done.clone());
    let burst = tokio::spawn(async move {
        let start = Instant::now();
        let sent: Vec<Sent> = futures::stream::iter(0..n)
            .map(|i| {
                let (a, tag) = (a.clone(), burst_tag.clone());
                async move {
                    send!(
                        a,
                        Request::new(rules_path(NS_A)).create(
                            &PostParams::default(),
                            dnat(&format!("a-{tag}-{i:04}"), 10000 + i)
                        )
                    )
                }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await;
        burst_done.store(true, Ordering::Relaxed);
        (start.elapsed(), sent)
    });
    into.busy
        .add(probe_all(c, &format!("{tag}-busy"), MAX_PROBES, &done, &levels).await);
    let (wall, sent) = tokio::time::timeout(PHASE_TIMEOUT, burst)
        .await
        .expect("the burst ends in time")
        .expect("the burst task");
    into.wall += wall;
    for s in sent {
        match s.status {
            200..=299 => into.burst.push(s.ms),
            429 => into.burst_429 += 1,
            _ => into.burst_other += 1,
        }
    }
    delete_rules(admin);
}

/// Deletes every DNAT rule of both namespaces and waits until they are gone
/// (the operator removes its finalizers).
fn delete_rules(admin: &Kubectl) {
    for ns in [NS_A, NS_B] {
        admin.ok(&["delete", "--raw", &rules_path(ns)]);
    }
    admin.eventually(PHASE_TIMEOUT, "the burst's DNAT rules to be gone", || {
        [NS_A, NS_B].iter().all(|ns| {
            let out = admin.run(&["get", "iptablesdnatrules", "-n", ns, "-o", "name"]);
            out.ok && out.stdout.trim().is_empty()
        })
    });
}

fn schemas_present(admin: &Kubectl) -> bool {
    let mut args = vec!["get", "flowschemas", "-o", "name"];
    args.extend(SCHEMAS);
    admin.run(&args).ok
}

fn set_schemas(admin: &Kubectl, on: bool) -> bool {
    let file = vpcnet_e2e::repo_root().join(FLOWCONTROL);
    let out = if on {
        admin.apply(&file)
    } else {
        let mut args = vec!["delete", "flowschemas", "--ignore-not-found"];
        args.extend(SCHEMAS);
        admin.run(&args)
    };
    if !out.ok {
        eprintln!("flowschemas on={on}: {}", out.stderr);
    }
    out.ok
}

/// Waits until the API server classifies the platform's requests as `on`
/// says (APF picks up FlowSchema changes within a second or so).
async fn wait_classified(admin: &Kubectl, c: &Clients, on: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let levels = level_names(admin);
        let sent = send!(
            c.platform,
            Request::new(eips_path(NS_B)).get(PROBE_EIP, &Default::default())
        );
        let level = sent.level.and_then(|u| levels.get(&u).cloned());
        if (level.as_deref() == Some(LEVEL)) == on {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the operator's requests are still at {level:?} (FlowSchemas on={on})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Puts the FlowSchemas back as they were before the run, also on panic.
struct Restore<'a> {
    admin: &'a Kubectl,
    had: bool,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if self.had {
            set_schemas(self.admin, true);
        } else {
            let file = vpcnet_e2e::repo_root().join(FLOWCONTROL);
            let file = file.to_string_lossy();
            let out = self
                .admin
                .run(&["delete", "-f", &file, "--ignore-not-found"]);
            if !out.ok {
                eprintln!("removing {FLOWCONTROL}: {}", out.stderr);
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let n = env_usize("VPCNET_BENCH_BURST", 500);
    let in_flight = env_usize("VPCNET_BENCH_BURST_CONCURRENCY", 50).max(1);
    let rounds = env_usize("VPCNET_BENCH_ROUNDS", 3).max(1);
    let admin = Kubectl::for_box();
    let (sa_ns, sa_name) = OPERATOR_SA
        .strip_prefix("system:serviceaccount:")
        .and_then(|s| s.split_once(':'))
        .expect("a ServiceAccount user name");
    admin.ok(&["get", "serviceaccount", sa_name, "-n", sa_ns]);
    let _restore = Restore {
        admin: &admin,
        had: schemas_present(&admin),
    };
    let a = Tenant::create(&admin, NS_A);
    let b = Tenant::create(&admin, NS_B);
    b.kubectl().must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: {PROBE_EIP}, namespace: {NS_B}}}\nspec: {{natGwDp: bench-burst}}\n"
    ));
    let c = Clients {
        platform: client(admin.kubeconfig(), Some(OPERATOR_SA)).await,
        a: client(a.kubectl().kubeconfig(), None).await,
        b: client(b.kubectl().kubeconfig(), None).await,
    };

    // Warm-up (caches, connections, the operator's first reconciles): not counted.
    assert!(set_schemas(&admin, true), "applying {FLOWCONTROL}");
    wait_classified(&admin, &c, true).await;
    phase(
        &admin,
        &c,
        &mut Phase::default(),
        "warm",
        n.min(50),
        in_flight,
    )
    .await;

    // Rounds alternate between the modes, so drift over the run (the
    // operator's backlog, etcd compaction) falls on both alike.
    let (mut with, mut baseline) = (Phase::default(), Phase::default());
    for r in 0..rounds {
        if r > 0 {
            assert!(set_schemas(&admin, true), "applying {FLOWCONTROL}");
            wait_classified(&admin, &c, true).await;
        }
        phase(&admin, &c, &mut with, &format!("w{r}"), n, in_flight).await;
        assert!(set_schemas(&admin, false), "deleting the FlowSchemas");
        wait_classified(&admin, &c, false).await;
        phase(&admin, &c, &mut baseline, &format!("b{r}"), n, in_flight).await;
    }

    println!(
        "\ntenant A creates {n} DNAT rules, {in_flight} in flight, as its namespace admin \
         ({rounds} rounds per mode); meanwhile the operator (its ServiceAccount) and \
         tenant B each probe the API server back to back\n"
    );
    let w = 34;
    println!(
        "{:<44} | {:^w$} | {:^w$}",
        "", "with vpcnet FlowSchemas", "baseline (FlowSchemas deleted)"
    );
    let sub = format!(
        "{:>6} {:>6} {:>6} {:>6} {:>5}",
        "idle", "p50", "p99", "max", "n"
    );
    println!(
        "{:<44} | {sub:^w$} | {sub:^w$}",
        "latency during the burst (ms)"
    );
    let cell = |idle: &[f64], v: &[f64]| {
        let idle = if idle.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", pct(idle, 50.0))
        };
        format!(
            "{idle:>6} {:>6.0} {:>6.0} {:>6.0} {:>5}",
            pct(v, 50.0),
            pct(v, 99.0),
            pct(v, 100.0),
            v.len()
        )
    };
    let row = |name: &str, f: fn(&Samples) -> &Vec<f64>| {
        println!(
            "{name:<44} | {:^w$} | {:^w$}",
            cell(f(&with.idle), f(&with.busy)),
            cell(f(&baseline.idle), f(&baseline.busy)),
        );
    };
    row("operator SA: GET an EIP (tenant B's ns)", |s| &s.get);
    row("operator SA: PATCH an EIP (tenant B's ns)", |s| &s.patch);
    row("tenant B: create one DNAT rule", |s| &s.create);
    println!(
        "{:<44} | {:^w$} | {:^w$}",
        "tenant A: its own creates (the burst)",
        cell(&[], &with.burst),
        cell(&[], &baseline.burst)
    );
    let text = |p: &Phase| {
        format!(
            "{:.1} s, {:.0}/s, 429: {}, other: {}",
            p.wall.as_secs_f64(),
            p.burst.len() as f64 / p.wall.as_secs_f64(),
            p.burst_429,
            p.burst_other
        )
    };
    println!(
        "{:<44} | {:^w$} | {:^w$}",
        "tenant A bursts: total wall, rate, refused",
        text(&with),
        text(&baseline)
    );
    let failed = |p: &Phase| format!("{}", p.idle.failed + p.busy.failed);
    println!(
        "{:<44} | {:^w$} | {:^w$}",
        "probe requests not served (non-2xx)",
        failed(&with),
        failed(&baseline)
    );
    let levels = |p: &Phase| {
        p.busy
            .levels
            .iter()
            .map(|(l, n)| format!("{l} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{:<44} | {:^w$} | {:^w$}",
        "operator's priority level (busy probes)",
        levels(&with),
        levels(&baseline)
    );
    drop(c);
    drop(a);
    drop(b);
}
