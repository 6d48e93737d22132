//! One noisy tenant against the platform and its neighbours on the
//! cluster-in-a-box. Tenants A and B each have a namespace (a ServiceAccount
//! as namespace admin), a VPC, a subnet, a NAT gateway and one EIP. While A
//! creates N DNAT rules on its EIP as fast as it can (default 500 with 50 in
//! flight, `VPCNET_BENCH_BURST`, `VPCNET_BENCH_BURST_CONCURRENCY`; distinct
//! external ports, so each is accepted and programmed by A's gateway), how
//! long do the operator's reads and writes (impersonated as its
//! ServiceAccount) and tenant B's own single creations take to be served
//! (each probe runs back to back during the burst)? And how long does a DNAT
//! rule tenant B creates on its own EIP take from its create request to
//! `Ready=True` (accepted by the operator, programmed by B's gateway, seen
//! by a watch), while A's burst runs (`VPCNET_BENCH_LIVE_PROBES` per round,
//! default 2, one after another until A's rules are all Ready) and when
//! nothing else runs (as many per round)? Measured in one run, in
//! alternating rounds (`VPCNET_BENCH_ROUNDS`, default 3, each mode): with
//! vpcnet's FlowSchemas (config/base/flowcontrol.yaml) and with them
//! deleted, so the operator shares the built-in `service-accounts` schema
//! with the tenants; the FlowSchemas are put back as they were. Every
//! round's rules are deleted before the next; at the end the namespaces
//! (and with them the EIPs), then the gateways, subnets and VPCs.
//! Needs a running box: `cargo xtask box up`, then
//! `cargo bench -p vpcnet-e2e --bench tenant_burst`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::client::Body;
use kube::core::Request;
use vpcnet_api::condition::READY;
use vpcnet_api::contract::conditions::ACCEPTED;
use vpcnet_e2e::cluster::Cleanup;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::tenant::Tenant;

const NS_A: &str = "bench-burst-a";
const NS_B: &str = "bench-burst-b";
/// The operator Deployment's `serviceAccountName` (config/base/operator.yaml).
const OPERATOR_SA: &str = "system:serviceaccount:vpcnet-system:vpcnet-operator";
const FLOWCONTROL: &str = "config/base/flowcontrol.yaml";
const SCHEMAS: [&str; 2] = ["vpcnet-operator", "vpcnet-system-service-accounts"];
const LEVEL: &str = "vpcnet-control";
/// The EIP in tenant B's namespace the platform probes read and patch (on
/// no gateway: refused, it touches none).
const PROBE_EIP: &str = "probe";
/// Tenant A's EIP on its gateway, which its burst's DNAT rules use.
const EIP_A: (&str, &str) = ("burst", "172.16.3.241");
/// Tenant B's EIP on its gateway, which its live probes' DNAT rules use.
const EIP_B: (&str, &str) = ("live", "172.16.3.240");
/// An EIP name no namespace has: tenant B's create probes name it, so the
/// operator refuses those rules without any gateway work.
const NO_EIP: &str = "none";
/// Both tenants' subnet (separate VPCs), their gateways' LAN address and
/// the address their DNAT rules forward to.
const CIDR: &str = "10.0.1.0/24";
const LAN_IP: &str = "10.0.1.254";
const INTERNAL_IP: &str = "10.0.1.2";
const EXT: &str = "ovn-vpc-external-network";
const EXT_SAMPLE: &str = "config/samples/03-external-subnet.yaml";
/// Gateways and EIPs must be Ready within this.
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);
/// One live probe gives up (counted as not live) after this.
const LIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// What the product promises for a rule going live during another
/// tenant's burst.
const LIVE_TARGET_MS: f64 = 2000.0;
/// The first live probe of a burst starts this long after it, so that it
/// lands in it.
const LIVE_DELAY: Duration = Duration::from_millis(300);
/// The burst's window for live probes closes when all of A's rules are
/// Ready, or after this.
const ALL_LIVE_TIMEOUT: Duration = Duration::from_secs(180);
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

/// A DNAT rule on EIP `eip` forwarding external port `port` (TCP) to
/// port 80 of `INTERNAL_IP`.
fn dnat(name: &str, eip: &str, port: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "vpcnet.io/v1",
        "kind": "IptablesDnatRule",
        "metadata": {"name": name},
        "spec": {
            "eip": eip,
            "externalPort": port.to_string(),
            "internalIp": INTERNAL_IP,
            "internalPort": "80",
            "protocol": "tcp"
        }
    })
}

fn dnat_bytes(name: &str, eip: &str, port: usize) -> Vec<u8> {
    serde_json::to_vec(&dnat(name, eip, port)).expect("json")
}

/// The DNAT rules of `ns` through `client`.
fn rules_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("vpcnet.io", "v1", "IptablesDnatRule"),
        "iptablesdnatrules",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// The status (`True`, `False`, ...) of condition `t` of `o`.
fn condition<'a>(o: &'a DynamicObject, t: &str) -> Option<&'a str> {
    o.data
        .get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(|v| v.as_str()) == Some(t))?
        .get("status")?
        .as_str()
}

struct Clients {
    /// The box's admin impersonating the operator's ServiceAccount.
    platform: kube::Client,
    /// Tenant A's namespace admin (the burst).
    a: kube::Client,
    /// Tenant B's namespace admin.
    b: kube::Client,
    /// The box's admin (exempt from API Priority and Fairness): watches
    /// rules go live, so that what is timed is the rule, not its observer.
    observer: kube::Client,
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
                    dnat_bytes(&format!("b-{tag}-{i:03}"), NO_EIP, 20000 + i)
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

/// Follows `api` (restricted to `fields`) from resourceVersion `rv`, hands
/// every object it reports to `f` (and `None` after 200 ms without any)
/// until `f` returns true, or false once `deadline` passes. A watch that
/// ends is resumed; one that expired (410) starts over from a list.
async fn watch_until(
    api: &Api<DynamicObject>,
    fields: Option<&str>,
    mut rv: String,
    deadline: Instant,
    mut f: impl FnMut(Option<&DynamicObject>) -> bool,
) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut wp = WatchParams::default().timeout(left.as_secs().clamp(1, 290) as u32);
        if let Some(fs) = fields {
            wp = wp.fields(fs);
        }
        let stream = match api.watch(&wp, &rv).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("watch failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            if Instant::now() >= deadline {
                return false;
            }
            match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                Err(_) => {
                    if f(None) {
                        return true;
                    }
                }
                Ok(None) => break,
                Ok(Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)))) => {
                    if let Some(v) = &o.metadata.resource_version {
                        rv.clone_from(v);
                    }
                    if f(Some(&o)) {
                        return true;
                    }
                }
                Ok(Some(Ok(WatchEvent::Deleted(o)))) => {
                    if let Some(v) = o.metadata.resource_version {
                        rv = v;
                    }
                }
                Ok(Some(Ok(WatchEvent::Bookmark(b)))) => rv = b.metadata.resource_version,
                Ok(Some(Ok(WatchEvent::Error(e)))) => {
                    eprintln!("watch: {} {}", e.code, e.message);
                    let mut lp = ListParams::default();
                    if let Some(fs) = fields {
                        lp = lp.fields(fs);
                    }
                    match api.list(&lp).await {
                        Ok(list) => {
                            rv = list.metadata.resource_version.unwrap_or_default();
                            for o in &list.items {
                                if f(Some(o)) {
                                    return true;
                                }
                            }
                        }
                        Err(e) => eprintln!("list failed: {e}"),
                    }
                    break;
                }
                Ok(Some(Err(e))) => {
                    eprintln!("watch failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            }
        }
    }
}

/// One live probe: milliseconds from tenant B's create request until its
/// rule was seen `Accepted=True` and `Ready=True` (`None`: not within
/// `LIVE_TIMEOUT`, or the create was refused).
#[derive(Default, Clone, Copy)]
struct Live {
    accepted: Option<f64>,
    ready: Option<f64>,
}

/// Tenant B creates DNAT rule `name` on its EIP (external port `port`); the
/// observer watches it from the version the create returned.
async fn live_probe(c: &Clients, name: &str, port: usize) -> Live {
    let rule: DynamicObject =
        serde_json::from_value(dnat(name, EIP_B.0, port)).expect("a DNAT rule");
    let start = Instant::now();
    let created = match rules_api(&c.b, NS_B)
        .create(&PostParams::default(), &rule)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tenant B creating {name}: {e}");
            return Live::default();
        }
    };
    let mut live = Live::default();
    let fields = format!("metadata.name={name}");
    let rv = created.metadata.resource_version.unwrap_or_default();
    let api = rules_api(&c.observer, NS_B);
    watch_until(&api, Some(&fields), rv, start + LIVE_TIMEOUT, |o| {
        let Some(o) = o else { return false };
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if live.accepted.is_none() && condition(o, ACCEPTED) == Some("True") {
            live.accepted = Some(ms);
        }
        if condition(o, READY) == Some("True") {
            live.ready = Some(ms);
            return true;
        }
        false
    })
    .await;
    if live.ready.is_none() {
        eprintln!("tenant B's rule {name} not Ready within {LIVE_TIMEOUT:?}");
    }
    live
}

/// Live probes one after another (the first `LIVE_DELAY` in), at most
/// `max`, none started once `window` is closed (but at least one).
/// Each probe's start into the burst and its times go to stderr.
async fn live_loop(c: &Clients, tag: &str, max: usize, window: &AtomicBool) -> Vec<Live> {
    let mut out = Vec::new();
    let start = Instant::now();
    tokio::time::sleep(LIVE_DELAY).await;
    for k in 0..max {
        if k > 0 && window.load(Ordering::SeqCst) {
            break;
        }
        let at = start.elapsed().as_secs_f64();
        let name = format!("live-{tag}-busy-{k}");
        let live = live_probe(c, &name, 30100 + k).await;
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
        eprintln!(
            "{name}: created {at:.1} s into the burst, Accepted after {}, Ready after {}",
            ms(live.accepted),
            ms(live.ready)
        );
        out.push(live);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// Seconds from `start` until the last of tenant A's rules is seen Ready,
/// once every rule its burst created is (`created`: usize::MAX until the
/// burst ends); `None` if not within `ALL_LIVE_TIMEOUT`.
async fn all_live(
    api: &Api<DynamicObject>,
    rv: String,
    created: &AtomicUsize,
    start: Instant,
) -> Option<f64> {
    let mut ready = HashSet::new();
    let mut last = start;
    let ok = watch_until(api, None, rv, start + ALL_LIVE_TIMEOUT, |o| {
        if let Some(o) = o
            && condition(o, READY) == Some("True")
            && ready.insert(o.metadata.name.clone().unwrap_or_default())
        {
            last = Instant::now();
        }
        ready.len() >= created.load(Ordering::SeqCst)
    })
    .await;
    if !ok {
        eprintln!(
            "tenant A: {} of its rules Ready after {ALL_LIVE_TIMEOUT:?}",
            ready.len()
        );
    }
    ok.then(|| last.duration_since(start).as_secs_f64())
}

/// Measurements of one mode, summed over its rounds.
#[derive(Default)]
struct Phase {
    idle: Samples,
    busy: Samples,
    /// Tenant B's rules going live with nothing else running, and during
    /// tenant A's bursts.
    live_idle: Vec<Live>,
    live_busy: Vec<Live>,
    /// Tenant A's own create latencies.
    burst: Vec<f64>,
    /// Tenant A's creations refused with 429 (API Priority and Fairness).
    burst_429: usize,
    burst_other: usize,
    wall: Duration,
    /// Per burst: seconds from its start until all its rules were Ready.
    all_live: Vec<f64>,
    /// Bursts whose rules were not all Ready within `ALL_LIVE_TIMEOUT`.
    all_live_missed: usize,
}

/// One round: idle probes and `live` idle live probes, then probes while
/// tenant A's burst runs (the API probes until its creations end, the live
/// probes until its rules are all Ready); then the round's DNAT rules are
/// deleted.
async fn phase(
    admin: &Kubectl,
    c: &Clients,
    into: &mut Phase,
    tag: &str,
    n: usize,
    in_flight: usize,
    live: usize,
) {
    let levels = level_names(admin);
    let never = AtomicBool::new(false);
    into.idle
        .add(probe_all(c, &format!("{tag}-idle"), IDLE_PROBES, &never, &levels).await);
    for k in 0..live {
        let probe = live_probe(c, &format!("live-{tag}-idle-{k}"), 30000 + k).await;
        into.live_idle.push(probe);
    }
    let rules_a = rules_api(&c.observer, NS_A);
    let rv = rules_a
        .list(&ListParams::default().limit(1))
        .await
        .expect("listing tenant A's rules")
        .metadata
        .resource_version
        .unwrap_or_default();
    let done = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(usize::MAX));
    let window = AtomicBool::new(false);
    let (a, burst_tag) = (c.a.clone(), tag.to_string());
    let (burst_done, burst_created) = (done.clone(), created.clone());
    let start = Instant::now();
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
                            dnat_bytes(&format!("a-{tag}-{i:04}"), EIP_A.0, 10000 + i)
                        )
                    )
                }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await;
        let ok = sent
            .iter()
            .filter(|s| (200..300).contains(&s.status))
            .count();
        burst_created.store(ok, Ordering::SeqCst);
        burst_done.store(true, Ordering::Relaxed);
        (start.elapsed(), sent)
    });
    let busy_tag = format!("{tag}-busy");
    let (busy, live_busy, all) = futures::join!(
        probe_all(c, &busy_tag, MAX_PROBES, &done, &levels),
        live_loop(c, tag, live, &window),
        async {
            let all = all_live(&rules_a, rv, &created, start).await;
            window.store(true, Ordering::SeqCst);
            all
        },
    );
    into.busy.add(busy);
    into.live_busy.extend(live_busy);
    match all {
        Some(s) => into.all_live.push(s),
        None => into.all_live_missed += 1,
    }
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

/// Condition `t` of a cluster-scoped or namespaced object, as kubectl
/// reports it ("" while it has none or the object is not there).
fn cond_of(admin: &Kubectl, kind: &str, ns: Option<&str>, name: &str, t: &str) -> String {
    let jp = format!("jsonpath={{.status.conditions[?(@.type==\"{t}\")].status}}");
    let mut args = vec!["get", kind, name, "-o", jp.as_str()];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    admin.run(&args).stdout.trim().to_string()
}

/// The platform side of tenant `ns` (as cluster admin): VPC `ns`, subnet
/// `ns-net` and gateway `ns`, remembered in `cleanup` so that the gateway
/// goes first, the VPC last.
fn platform(admin: &Kubectl, cleanup: &mut Cleanup, ns: &str) {
    admin.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {ns}}}\nspec: {{namespaces: [{ns}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {ns}-net}}\nspec: {{vpc: {ns}, cidrBlock: {CIDR}, namespaces: [{ns}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {ns}}}\nspec: {{vpc: {ns}, subnet: {ns}-net, lanIp: {LAN_IP}, externalSubnets: [{EXT}]}}\n"
    ));
    cleanup.add("vpc", None, ns);
    cleanup.add("subnet", None, &format!("{ns}-net"));
    cleanup.add("vpc-nat-gw", None, ns);
}

/// Tenant `t` creates its EIP `(name, address)` on its gateway.
fn eip(t: &Tenant, (name, ip): (&str, &str)) {
    let ns = t.ns();
    t.kubectl().must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{natGwDp: {ns}, v4ip: {ip}}}\n"
    ));
}

fn wait_ready(admin: &Kubectl, kind: &str, ns: Option<&str>, name: &str) {
    admin.eventually(SETUP_TIMEOUT, &format!("{kind} {name} to be Ready"), || {
        cond_of(admin, kind, ns, name, READY) == "True"
    });
}

#[tokio::main]
async fn main() {
    let n = env_usize("VPCNET_BENCH_BURST", 500);
    let in_flight = env_usize("VPCNET_BENCH_BURST_CONCURRENCY", 50).max(1);
    let rounds = env_usize("VPCNET_BENCH_ROUNDS", 3).max(1);
    let live = env_usize("VPCNET_BENCH_LIVE_PROBES", 2).max(1);
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
    let ext = admin.apply(&vpcnet_e2e::repo_root().join(EXT_SAMPLE));
    assert!(ext.ok, "applying {EXT_SAMPLE}: {}", ext.stderr);
    // Dropped after the tenants (their namespaces, and with them their
    // EIPs, are gone by then): gateways, subnets, VPCs.
    let mut platforms = Cleanup::new(&admin);
    let a = Tenant::create(&admin, NS_A);
    let b = Tenant::create(&admin, NS_B);
    platform(&admin, &mut platforms, NS_A);
    platform(&admin, &mut platforms, NS_B);
    b.kubectl().must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: {PROBE_EIP}, namespace: {NS_B}}}\nspec: {{natGwDp: bench-burst}}\n"
    ));
    for ns in [NS_A, NS_B] {
        wait_ready(&admin, "vpc-nat-gw", None, ns);
    }
    eip(&a, EIP_A);
    eip(&b, EIP_B);
    wait_ready(&admin, "eip", Some(NS_A), EIP_A.0);
    wait_ready(&admin, "eip", Some(NS_B), EIP_B.0);
    let c = Clients {
        platform: client(admin.kubeconfig(), Some(OPERATOR_SA)).await,
        a: client(a.kubectl().kubeconfig(), None).await,
        b: client(b.kubectl().kubeconfig(), None).await,
        observer: client(admin.kubeconfig(), None).await,
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
        1,
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
        phase(&admin, &c, &mut with, &format!("w{r}"), n, in_flight, live).await;
        assert!(set_schemas(&admin, false), "deleting the FlowSchemas");
        wait_classified(&admin, &c, false).await;
        phase(
            &admin,
            &c,
            &mut baseline,
            &format!("b{r}"),
            n,
            in_flight,
            live,
        )
        .await;
    }

    println!(
        "\ntenant A creates {n} DNAT rules on its EIP, {in_flight} in flight, as its namespace \
         admin ({rounds} rounds per mode); meanwhile the operator (its ServiceAccount) and \
         tenant B each probe the API server back to back, and tenant B creates DNAT rules on \
         its own EIP one after another ({live} per round, idle and during the burst) and \
         waits for each to be Ready\n"
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
    let got =
        |v: &[Live], f: fn(&Live) -> Option<f64>| -> Vec<f64> { v.iter().filter_map(f).collect() };
    let live_row = |name: &str, f: fn(&Live) -> Option<f64>| {
        println!(
            "{name:<44} | {:^w$} | {:^w$}",
            cell(&got(&with.live_idle, f), &got(&with.live_busy, f)),
            cell(&got(&baseline.live_idle, f), &got(&baseline.live_busy, f)),
        );
    };
    live_row("tenant B: its DNAT rule, create -> Accepted", |l| {
        l.accepted
    });
    live_row("tenant B: its DNAT rule, create -> Ready", |l| l.ready);
    let target = |p: &Phase| {
        let within = |v: &[Live]| {
            v.iter()
                .filter(|l| l.ready.is_some_and(|ms| ms < LIVE_TARGET_MS))
                .count()
        };
        let missed = p
            .live_idle
            .iter()
            .chain(&p.live_busy)
            .filter(|l| l.ready.is_none())
            .count();
        format!(
            "busy {}/{}, idle {}/{}, not live: {missed}",
            within(&p.live_busy),
            p.live_busy.len(),
            within(&p.live_idle),
            p.live_idle.len()
        )
    };
    println!(
        "{:<44} | {:^w$} | {:^w$}",
        format!(
            "tenant B: rules Ready within {:.0} s",
            LIVE_TARGET_MS / 1000.0
        ),
        target(&with),
        target(&baseline)
    );
    println!(
        "{:<44} | {:^w$} | {:^w$}",
        "tenant A: its own creates (the burst)",
        cell(&[], &with.burst),
        cell(&[], &baseline.burst)
    );
    let all = |p: &Phase| {
        let missed = if p.all_live_missed > 0 {
            format!(", {} bursts not in {ALL_LIVE_TIMEOUT:?}", p.all_live_missed)
        } else {
            String::new()
        };
        format!(
            "p50 {:.1} s, max {:.1} s{missed}",
            pct(&p.all_live, 50.0),
            pct(&p.all_live, 100.0)
        )
    };
    println!(
        "{:<44} | {:^w$} | {:^w$}",
        "tenant A: all its rules Ready (from start)",
        all(&with),
        all(&baseline)
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
    // The namespaces first (their EIPs release the gateways), waiting
    // until they are gone; then `platforms` deletes gateways, subnets, VPCs.
    let gone = admin.run(&[
        "delete",
        "namespace",
        NS_A,
        NS_B,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=300s",
    ]);
    if !gone.ok {
        eprintln!("deleting the tenants' namespaces: {}", gone.stderr);
    }
    drop(a);
    drop(b);
    drop(platforms);
}
