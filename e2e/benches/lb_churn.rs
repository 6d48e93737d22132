//! EndpointSlice churn through the lb service on the cluster-in-a-box.
//!
//! Setup: `VPCNET_BENCH_LB_VPCS` VPCs (default 10; each a Namespace, Vpc
//! and Subnet `bench-lb-<i>`, `10.<i+1>.0.0/16`) and `VPCNET_BENCH_LB_SERVICES`
//! selector-less ClusterIP Services in total (default 1000, spread over
//! them), each with one EndpointSlice of the bench's own holding 10 ready
//! endpoints in its VPC; until NB holds one Load_Balancer row per Service
//! with its 10 backends, a member of its VPC's group.
//!
//! Then `VPCNET_BENCH_LB_CHANGES` changes (default 200, after 5 warm-up
//! ones), one at a time, each flipping `conditions.ready` of one endpoint
//! of a random Service (`VPCNET_BENCH_SEED`), timed from the PATCH request
//! to the moment a monitor of our own (an `ovn::Monitor` of Load_Balancer)
//! shows the row's new backends. Alternating with them, the same change
//! made the plain way: one `ovn-nbctl set load_balancer ... vips:...` process
//! per change on a scratch row of the bench's own (in no group).
//!
//! NB transactions per change: a second, raw OVSDB `monitor` session on
//! Load_Balancer and Load_Balancer_Group (all columns, no initial rows)
//! counts the `update` notifications, one per committed transaction that
//! touches those tables, which touch a bench row (a Service row of a
//! `bench-lb-` namespace, or a `vpcnet-lbg-bench-lb-` group) or the scratch
//! row; each change's window runs from its request to the start of the next
//! change of the same kind (a 250 ms quiet gap follows every change, so
//! late second writes land in their window).
//!
//! Also the operator's RSS after setup and after the changes, its restarts
//! and its WARN/ERROR log lines during the run. Everything the bench
//! creates is deleted at the end, also on a panic or Ctrl-C.
//!
//! Needs a running box: `cargo xtask box up`, then
//! `cargo bench -p vpcnet-e2e --bench lb_churn`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ovn::nb::{LoadBalancer, LoadBalancerGroup, load_balancer, load_balancer_group};
use ovn::{MonitorRequest, Table};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vpcnet_api::contract::naming;
use vpcnet_e2e::cluster::{Cleanup, OPERATOR_NS, operator_selector};
use vpcnet_e2e::kubectl::Kubectl;

const PREFIX: &str = "bench-lb-";
/// Every object the bench creates carries this label.
const RUN_LABEL: (&str, &str) = ("bench.vpcnet.io/run", "lb-churn");
const SCRATCH: &str = "bench-lb-scratch";
/// A documentation address (TEST-NET-1): nothing routes to it.
const SCRATCH_VIP: &str = "192.0.2.1:80";
const ENDPOINTS: usize = 10;
const TARGET_PORT: u16 = 8080;
const WARMUP: usize = 5;
/// The quiet gap after every change.
const GAP: Duration = Duration::from_millis(250);
/// A change not seen in NB within this counts as missed.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
const SETUP_TIMEOUT: Duration = Duration::from_secs(900);
const TARGET_P99_MS: f64 = 100.0;
const TARGET_RSS_MB: f64 = 100.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// xorshift64*: reproducible choices without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// `(pid, VmRSS MB)` of every process called `vpcnet-operator`.
fn operator_rss() -> Vec<(u32, f64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            if comm.trim() != "vpcnet-operator" {
                return None;
            }
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let kb: f64 = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, kb / 1024.0))
        })
        .collect()
}

fn rss_text(v: &[(u32, f64)]) -> String {
    match v {
        [] => "not found".into(),
        [(_, mb)] => format!("{mb:.1}"),
        more => more
            .iter()
            .map(|(p, mb)| format!("{mb:.1} (pid {p})"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The operator pod's `name restarts` (one line per pod).
fn operator_pods(k: &Kubectl) -> String {
    k.run(&[
        "get",
        "pods",
        "-n",
        OPERATOR_NS,
        "-l",
        &operator_selector(),
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} restarts={.status.containerStatuses[0].restartCount}{\"\\n\"}{end}",
    ])
    .stdout
    .trim()
    .to_string()
}

fn nbctl(args: &[&str]) -> vpcnet_e2e::kubectl::Output {
    let db = format!("--db={}", vpcnet_e2e::ovn_rows::nb_target());
    match Command::new("ovn-nbctl").arg(db).args(args).output() {
        Ok(o) => vpcnet_e2e::kubectl::Output {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        },
        Err(e) => vpcnet_e2e::kubectl::Output {
            ok: false,
            stdout: String::new(),
            stderr: e.to_string(),
        },
    }
}

fn scratch_uuid() -> Option<String> {
    let out = nbctl(&[
        "--bare",
        "--columns=_uuid",
        "find",
        "load_balancer",
        &format!("name={SCRATCH}"),
    ]);
    let u = out.stdout.trim();
    (out.ok && !u.is_empty()).then(|| u.to_string())
}

/// Deletes what the bench created when dropped (also on panic), outside
/// any async runtime: the scratch row, the Services and EndpointSlices
/// (waiting until the operator removed their rows), then through
/// `objects` the namespaces, subnets and VPCs.
struct Guard {
    k: Kubectl,
    namespaces: Vec<String>,
    scratch: bool,
    objects: Cleanup,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.scratch {
            let out = nbctl(&["--if-exists", "lb-del", SCRATCH]);
            if !out.ok {
                eprintln!("deleting the scratch load balancer: {}", out.stderr);
            }
        }
        if !self.namespaces.is_empty() {
            let t0 = Instant::now();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    if let Err(e) = rt.block_on(delete_labelled(&self.k, &self.namespaces)) {
                        eprintln!("cleanup: deleting the Services and slices: {e}");
                    }
                }
                Err(e) => eprintln!("cleanup: no runtime: {e}"),
            }
            let deleted = t0.elapsed();
            // Owners of the rows of the bench's Services still in NB.
            let owners = || -> Vec<String> {
                let out = nbctl(&["--bare", "--columns=external_ids", "list", "load_balancer"]);
                let key = format!("{}=Service/{PREFIX}", ovn::owner::OWNER_KEY);
                out.stdout
                    .split_whitespace()
                    .filter(|w| w.starts_with(&key))
                    .map(|w| w[ovn::owner::OWNER_KEY.len() + 1..].to_string())
                    .collect()
            };
            let mut left = owners();
            let mut reported = false;
            while !left.is_empty() && t0.elapsed() < deleted + Duration::from_secs(120) {
                if !reported && t0.elapsed() > deleted + Duration::from_secs(5) {
                    eprintln!(
                        "cleanup: 5 s after the Services were deleted, {} of their rows are \
                         still in NB: {:?}",
                        left.len(),
                        &left[..left.len().min(10)]
                    );
                    reported = true;
                }
                std::thread::sleep(Duration::from_millis(250));
                left = owners();
            }
            eprintln!(
                "cleanup: Services and slices deleted in {:.1} s; {}",
                deleted.as_secs_f64(),
                if left.is_empty() {
                    format!(
                        "their rows gone {:.1} s after that",
                        (t0.elapsed() - deleted).as_secs_f64()
                    )
                } else {
                    format!(
                        "{} of their rows still in NB after 120 s: {left:?}",
                        left.len()
                    )
                }
            );
        }
        self.objects.run_now();
        let out = nbctl(&["--bare", "--columns=name", "list", "load_balancer_group"]);
        let stale: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with(&naming::lb_group(PREFIX)))
            .collect();
        if !stale.is_empty() {
            eprintln!("cleanup: groups still in NB: {stale:?}");
        }
    }
}

/// Update notifications counted by the raw monitor session.
#[derive(Default)]
struct Counts {
    /// Touching a bench Service's row or a bench VPC's group.
    ours: AtomicU64,
    /// Touching the scratch row.
    scratch: AtomicU64,
    /// Touching neither (other users of the box).
    foreign: AtomicU64,
}

fn ids_of(row: &Value) -> BTreeMap<String, String> {
    row.get("external_ids")
        .and_then(|v| ovn::datum::map_from_json(v).ok())
        .unwrap_or_default()
}

/// Which of ours one `table-updates` (RFC 7047 `update`) touches:
/// `(ours, scratch)`.
fn classify(updates: &Value) -> (bool, bool) {
    let (mut ours, mut scratch) = (false, false);
    let group_prefix = naming::lb_group(PREFIX);
    let owner_prefix = format!("Service/{PREFIX}");
    for (table, rows) in updates.as_object().into_iter().flatten() {
        for change in rows.as_object().into_iter().flat_map(|r| r.values()) {
            for row in ["new", "old"].iter().filter_map(|k| change.get(k)) {
                let name = row.get("name").and_then(Value::as_str).unwrap_or("");
                if table == LoadBalancer::TABLE {
                    scratch |= name == SCRATCH;
                    ours |= ids_of(row)
                        .get(ovn::owner::OWNER_KEY)
                        .is_some_and(|o| o.starts_with(&owner_prefix));
                } else if table == LoadBalancerGroup::TABLE {
                    ours |= name.starts_with(&group_prefix);
                }
            }
        }
    }
    (ours, scratch)
}

/// A raw OVSDB session on the NB socket that monitors Load_Balancer and
/// Load_Balancer_Group and counts every `update` notification (ovsdb-server
/// sends one per committed transaction touching them). Returns once the
/// monitor is in place.
async fn count_updates(counts: Arc<Counts>) -> tokio::task::JoinHandle<()> {
    let target = vpcnet_e2e::ovn_rows::nb_target();
    let path = target
        .strip_prefix("unix:")
        .expect("the NB DB on a unix socket")
        .to_string();
    let sock = tokio::net::UnixStream::connect(&path)
        .await
        .expect("the NB socket answers");
    let (mut rd, mut wr) = sock.into_split();
    let all = json!({"initial": false, "insert": true, "delete": true, "modify": true});
    let req = json!({
        "id": "bench-monitor",
        "method": "monitor",
        "params": [ovn::nb::SCHEMA_NAME, "bench-lb-churn", {
            LoadBalancer::TABLE: {"select": all},
            LoadBalancerGroup::TABLE: {"select": all},
        }],
    });
    wr.write_all(req.to_string().as_bytes())
        .await
        .expect("sending monitor");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    eprintln!("the counting NB session closed");
                    return;
                }
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            while let Some(Ok(msg)) = it.next() {
                used = it.byte_offset();
                match msg.get("method").and_then(Value::as_str) {
                    Some("update") => {
                        let (ours, scratch) = classify(&msg["params"][1]);
                        if ours {
                            counts.ours.fetch_add(1, Ordering::SeqCst);
                        }
                        if scratch {
                            counts.scratch.fetch_add(1, Ordering::SeqCst);
                        }
                        if !ours && !scratch {
                            counts.foreign.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Some("echo") => {
                        let reply =
                            json!({"id": msg["id"], "result": msg["params"], "error": null});
                        let _ = wr.write_all(reply.to_string().as_bytes()).await;
                    }
                    _ if msg.get("id") == Some(&json!("bench-monitor")) => {
                        if !msg["error"].is_null() {
                            panic!("monitor refused: {msg}");
                        }
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
            }
            buf.drain(..used);
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("the monitor is in place within 10 s")
        .expect("the counting task runs");
    task
}

/// The backends of one vip of a cached Load_Balancer row, as a set.
fn vip_backends(row: &ovn::Row, vip: &str) -> Option<BTreeSet<String>> {
    let vips: BTreeMap<String, String> = row
        .get(load_balancer::VIPS)
        .and_then(|v| ovn::datum::map_from_json(v).ok())
        .unwrap_or_default();
    vips.get(vip).map(|b| {
        b.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// One bench Service and the state of its endpoints.
struct Svc {
    ns: String,
    name: String,
    /// `clusterIP:80`.
    vip: String,
    ips: Vec<String>,
    ready: Vec<bool>,
    /// Its Load_Balancer row, once seen.
    uuid: Option<String>,
}

impl Svc {
    fn owner(&self) -> String {
        format!("Service/{}/{}", self.ns, self.name)
    }

    fn slice_name(&self) -> String {
        format!("{}-bench", self.name)
    }

    fn expected(&self) -> BTreeSet<String> {
        self.ips
            .iter()
            .zip(&self.ready)
            .filter(|(_, r)| **r)
            .map(|(ip, _)| format!("{ip}:{TARGET_PORT}"))
            .collect()
    }

    fn endpoints(&self) -> Value {
        Value::Array(
            self.ips
                .iter()
                .zip(&self.ready)
                .map(|(ip, r)| json!({"addresses": [ip], "conditions": {"ready": r}}))
                .collect(),
        )
    }

    fn slice(&self) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "name": self.slice_name(),
                "namespace": self.ns,
                "labels": {
                    "kubernetes.io/service-name": self.name,
                    "endpointslice.kubernetes.io/managed-by": "bench",
                    RUN_LABEL.0: RUN_LABEL.1,
                },
            },
            "addressType": "IPv4",
            "ports": [{"port": TARGET_PORT, "protocol": "TCP"}],
            "endpoints": self.endpoints(),
        }))
        .expect("an EndpointSlice")
    }
}

fn service_object(ns: &str, name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {RUN_LABEL.0: RUN_LABEL.1}},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": TARGET_PORT, "protocol": "TCP"}]},
    }))
    .expect("a Service")
}

/// One change's outcome.
#[derive(Default)]
struct Samples {
    /// Request -> NB row shows it (ms); missed changes left out.
    latency: Vec<f64>,
    /// Request -> acknowledged (API server response / process exit), ms.
    ack: Vec<f64>,
    /// Update notifications in each change's window.
    txns: Vec<u64>,
    missed: usize,
}

impl Samples {
    fn txn_text(&self) -> String {
        let one = self.txns.iter().filter(|n| **n == 1).count();
        format!("{one}/{}", self.txns.len())
    }

    fn txn_spread(&self) -> String {
        if self.txns.is_empty() {
            return "-".into();
        }
        let sum: u64 = self.txns.iter().sum();
        format!(
            "{} / {:.2} / {}",
            self.txns.iter().min().unwrap(),
            sum as f64 / self.txns.len() as f64,
            self.txns.iter().max().unwrap()
        )
    }
}

async fn try_kube_client(k: &Kubectl) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(k.kubeconfig()).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

async fn kube_client(k: &Kubectl) -> kube::Client {
    try_kube_client(k).await.expect("a client of the box")
}

/// Deletes the bench's Services, then its EndpointSlices (one
/// deletecollection per namespace and kind; only the bench's objects carry
/// its label) and waits until they are gone.
async fn delete_labelled(k: &Kubectl, namespaces: &[String]) -> Result<(), String> {
    let client = try_kube_client(k).await?;
    let lp = ListParams::default().labels(&format!("{}={}", RUN_LABEL.0, RUN_LABEL.1));
    let dp = DeleteParams::default();
    for ns in namespaces {
        Api::<Service>::namespaced(client.clone(), ns)
            .delete_collection(&dp, &lp)
            .await
            .map_err(|e| format!("Services of {ns}: {e}"))?;
    }
    for ns in namespaces {
        Api::<EndpointSlice>::namespaced(client.clone(), ns)
            .delete_collection(&dp, &lp)
            .await
            .map_err(|e| format!("EndpointSlices of {ns}: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    for ns in namespaces {
        loop {
            let svcs = Api::<Service>::namespaced(client.clone(), ns)
                .list_metadata(&lp)
                .await
                .map_err(|e| e.to_string())?;
            let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
                .list_metadata(&lp)
                .await
                .map_err(|e| e.to_string())?;
            if svcs.items.is_empty() && slices.items.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} Services and {} slices of {ns} still there after 300 s",
                    svcs.items.len(),
                    slices.items.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

async fn run(k: &Kubectl, guard: &mut Guard) {
    let n_vpc = env_usize("VPCNET_BENCH_LB_VPCS", 10).clamp(1, 250);
    let n_svc = env_usize("VPCNET_BENCH_LB_SERVICES", 1000).max(1);
    let n_changes = env_usize("VPCNET_BENCH_LB_CHANGES", 200).max(1);
    let mut rng = Rng(env_usize("VPCNET_BENCH_SEED", 42) as u64 | 1);
    let started = Instant::now();

    let namespaces: Vec<String> = (0..n_vpc).map(|i| format!("{PREFIX}{i}")).collect();
    let present = k.run(&["get", "namespaces", "-o", "name"]).stdout;
    let stale: Vec<&String> = namespaces
        .iter()
        .filter(|ns| present.lines().any(|l| l == format!("namespace/{ns}")))
        .collect();
    assert!(
        stale.is_empty(),
        "namespaces {stale:?} exist already (an earlier run's?); delete them first"
    );
    assert!(
        scratch_uuid().is_none(),
        "a load balancer named {SCRATCH} exists already; delete it first"
    );
    let operator_before = operator_pods(k);

    // The raw counter first, then our monitor: both see everything after.
    let counts = Arc::new(Counts::default());
    let counter = count_updates(counts.clone()).await;
    let nb = ovn::Client::connect(&vpcnet_e2e::ovn_rows::nb_target())
        .await
        .expect("the box's NB DB answers");
    let monitor = nb
        .monitor(
            ovn::nb::SCHEMA_NAME,
            vec![
                MonitorRequest::of::<LoadBalancer>().columns(&[
                    load_balancer::NAME,
                    load_balancer::VIPS,
                    load_balancer::EXTERNAL_IDS,
                ]),
                MonitorRequest::of::<LoadBalancerGroup>().columns(&[
                    load_balancer_group::NAME,
                    load_balancer_group::LOAD_BALANCER,
                ]),
            ],
        )
        .await
        .expect("monitoring Load_Balancer");

    // Tenants.
    let mut yaml = String::new();
    for (i, ns) in namespaces.iter().enumerate() {
        let label = format!("{}: {}", RUN_LABEL.0, RUN_LABEL.1);
        yaml += &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{{label}}}}}\n---\n\
             apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {ns}, labels: {{{label}}}}}\nspec: {{namespaces: [{ns}]}}\n---\n\
             apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {ns}-net, labels: {{{label}}}}}\nspec: {{vpc: {ns}, cidrBlock: 10.{}.0.0/16, namespaces: [{ns}]}}\n---\n",
            i + 1
        );
    }
    guard.namespaces = namespaces.clone();
    for ns in &namespaces {
        guard.objects.add("vpc", None, ns);
        guard.objects.add("subnet", None, &format!("{ns}-net"));
        guard.objects.add("namespace", None, ns);
    }
    k.must_apply(&yaml);
    let groups: Vec<String> = namespaces.iter().map(|ns| naming::lb_group(ns)).collect();
    monitor
        .wait_until(Duration::from_secs(180), |t| {
            let have: BTreeSet<&str> = t
                .get(LoadBalancerGroup::TABLE)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|r| r.get(load_balancer_group::NAME)?.as_str())
                .collect();
            groups.iter().all(|g| have.contains(g.as_str()))
        })
        .await
        .expect("every bench VPC's load-balancer group within 180 s");
    let tenants_ready = started.elapsed();

    // Services and their slices.
    let client = kube_client(k).await;
    let setup_start = Instant::now();
    let ours_before_setup = counts.ours.load(Ordering::SeqCst);
    let mut svcs: Vec<Svc> = (0..n_svc)
        .map(|j| {
            let vpc = j % n_vpc;
            let idx = j / n_vpc;
            let ips = (0..ENDPOINTS)
                .map(|e| {
                    let h = idx * ENDPOINTS + e;
                    format!("10.{}.{}.{}", vpc + 1, h / 250, h % 250 + 1)
                })
                .collect();
            Svc {
                ns: namespaces[vpc].clone(),
                name: format!("svc-{j:04}"),
                vip: String::new(),
                ips,
                ready: vec![true; ENDPOINTS],
                uuid: None,
            }
        })
        .collect();
    let created: Vec<(usize, String)> = futures::stream::iter(svcs.iter().enumerate())
        .map(|(j, s)| {
            let client = client.clone();
            async move {
                let services: Api<Service> = Api::namespaced(client.clone(), &s.ns);
                let slices: Api<EndpointSlice> = Api::namespaced(client, &s.ns);
                // The slice first, so a Service's first reconcile can
                // already write its backends.
                slices
                    .create(&PostParams::default(), &s.slice())
                    .await
                    .unwrap_or_else(|e| panic!("creating the slice of {}/{}: {e}", s.ns, s.name));
                let svc = services
                    .create(&PostParams::default(), &service_object(&s.ns, &s.name))
                    .await
                    .unwrap_or_else(|e| panic!("creating Service {}/{}: {e}", s.ns, s.name));
                let ip = svc
                    .spec
                    .and_then(|s| s.cluster_ip)
                    .expect("a cluster address");
                (j, format!("{ip}:80"))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (j, vip) in created {
        svcs[j].vip = vip;
    }
    let created_in = setup_start.elapsed();

    // Until NB holds every Service's row with its backends, in its group.
    let by_owner: BTreeMap<String, usize> = svcs
        .iter()
        .enumerate()
        .map(|(j, s)| (s.owner(), j))
        .collect();
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut last_report = Instant::now();
    loop {
        let (done, uuids) = monitor.with(|t| {
            let members: BTreeSet<&str> = t
                .get(LoadBalancerGroup::TABLE)
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|r| {
                    r.get(load_balancer_group::NAME)
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.starts_with(&naming::lb_group(PREFIX)))
                })
                .flat_map(|r| {
                    r.get(load_balancer_group::LOAD_BALANCER)
                        .map(ovn::datum::set_elements)
                        .unwrap_or_default()
                })
                .filter_map(|u| u.get(1)?.as_str())
                .collect();
            let mut uuids: BTreeMap<usize, Vec<String>> = BTreeMap::new();
            let mut done = 0;
            for (u, row) in t.get(LoadBalancer::TABLE).into_iter().flatten() {
                let Some(&j) = ids_of(&Value::Object(row.clone()))
                    .get(ovn::owner::OWNER_KEY)
                    .and_then(|o| by_owner.get(o))
                else {
                    continue;
                };
                uuids.entry(j).or_default().push(u.clone());
                if members.contains(u.as_str())
                    && vip_backends(row, &svcs[j].vip).as_ref() == Some(&svcs[j].expected())
                {
                    done += 1;
                }
            }
            (done, uuids)
        });
        let one_row_each = uuids.len() == n_svc && uuids.values().all(|v| v.len() == 1);
        if done == n_svc && one_row_each {
            for (j, mut u) in uuids {
                svcs[j].uuid = u.pop();
            }
            break;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "setup: {done}/{n_svc} rows complete, {} Services with a row, after {:.0} s",
                uuids.len(),
                setup_start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "setup: only {done}/{n_svc} Services have their row with {ENDPOINTS} backends \
             in their group after {SETUP_TIMEOUT:?} ({} have a row, {} more than one)",
            uuids.len(),
            uuids.values().filter(|v| v.len() > 1).count()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let setup_wall = setup_start.elapsed();
    // Let trailing writes of the setup land before counting them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let setup_txns = counts.ours.load(Ordering::SeqCst) - ours_before_setup;
    let rss_setup = operator_rss();

    // The scratch row for the baseline: the same shape as a Service's.
    let scratch_ips: Vec<String> = (0..ENDPOINTS)
        .map(|e| format!("192.0.2.{}", 10 + e))
        .collect();
    let mut scratch_ready = vec![true; ENDPOINTS];
    let backends_of = |ready: &[bool]| -> Vec<String> {
        scratch_ips
            .iter()
            .zip(ready)
            .filter(|(_, r)| **r)
            .map(|(ip, _)| format!("{ip}:{TARGET_PORT}"))
            .collect()
    };
    guard.scratch = true;
    let out = nbctl(&[
        "lb-add",
        SCRATCH,
        SCRATCH_VIP,
        &backends_of(&scratch_ready).join(","),
        "tcp",
    ]);
    assert!(out.ok, "ovn-nbctl lb-add: {}", out.stderr);
    let scratch = scratch_uuid().expect("the scratch row");

    let slices_api = |ns: &str| -> Api<EndpointSlice> { Api::namespaced(client.clone(), ns) };
    let (mut op, mut base) = (Samples::default(), Samples::default());
    for m in 0..WARMUP + n_changes {
        let counted = m >= WARMUP;

        // The operator: one endpoint of a random Service flips.
        let j = rng.below(n_svc);
        let e = rng.below(ENDPOINTS);
        svcs[j].ready[e] = !svcs[j].ready[e];
        let s = &svcs[j];
        let want = s.expected();
        let uuid = s.uuid.clone().expect("the Service's row");
        let patch = json!({"endpoints": s.endpoints()});
        let api = slices_api(&s.ns);
        let before = counts.ours.load(Ordering::SeqCst);
        let t0 = Instant::now();
        let mut seen = None;
        let (acked, shown) = tokio::join!(
            async {
                api.patch(
                    &s.slice_name(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .unwrap_or_else(|e| panic!("patching the slice of {}: {e}", s.owner()));
                t0.elapsed()
            },
            monitor.wait_until(CHANGE_TIMEOUT, |t| {
                let hit = t
                    .get(LoadBalancer::TABLE)
                    .and_then(|m| m.get(&uuid))
                    .and_then(|r| vip_backends(r, &s.vip))
                    .is_some_and(|b| b == want);
                if hit && seen.is_none() {
                    seen = Some(t0.elapsed());
                }
                hit
            })
        );
        tokio::time::sleep(GAP).await;
        // The window closes at the start of the next change (below, after
        // the baseline's change and gap); read it there.
        let op_window_start = before;

        // The baseline: one ovn-nbctl process flips one backend.
        let e = rng.below(ENDPOINTS);
        scratch_ready[e] = !scratch_ready[e];
        let want_b: BTreeSet<String> = backends_of(&scratch_ready).into_iter().collect();
        let vips_arg = format!(
            "vips:\"{SCRATCH_VIP}\"=\"{}\"",
            backends_of(&scratch_ready).join(",")
        );
        let before_b = counts.scratch.load(Ordering::SeqCst);
        let t0b = Instant::now();
        let mut seen_b = None;
        let db = format!("--db={}", vpcnet_e2e::ovn_rows::nb_target());
        let (exit_b, shown_b) = tokio::join!(
            async {
                let out = tokio::process::Command::new("ovn-nbctl")
                    .args([db.as_str(), "set", "load_balancer", &scratch, &vips_arg])
                    .output()
                    .await
                    .expect("ovn-nbctl runs");
                assert!(
                    out.status.success(),
                    "ovn-nbctl set: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                t0b.elapsed()
            },
            monitor.wait_until(CHANGE_TIMEOUT, |t| {
                let hit = t
                    .get(LoadBalancer::TABLE)
                    .and_then(|m| m.get(&scratch))
                    .and_then(|r| vip_backends(r, SCRATCH_VIP))
                    .is_some_and(|b| b == want_b);
                if hit && seen_b.is_none() {
                    seen_b = Some(t0b.elapsed());
                }
                hit
            })
        );
        tokio::time::sleep(GAP).await;
        let txns_b = counts.scratch.load(Ordering::SeqCst) - before_b;
        let txns_op = counts.ours.load(Ordering::SeqCst) - op_window_start;

        if !counted {
            continue;
        }
        op.ack.push(ms(acked));
        op.txns.push(txns_op);
        match (shown, seen) {
            (Ok(()), Some(d)) => op.latency.push(ms(d)),
            _ => {
                op.missed += 1;
                eprintln!(
                    "change {m}: {} not shown within {CHANGE_TIMEOUT:?}",
                    svcs[j].owner()
                );
            }
        }
        base.ack.push(ms(exit_b));
        base.txns.push(txns_b);
        match (shown_b, seen_b) {
            (Ok(()), Some(d)) => base.latency.push(ms(d)),
            _ => base.missed += 1,
        }
    }
    let rss_after = operator_rss();
    let operator_after = operator_pods(k);
    let foreign = counts.foreign.load(Ordering::SeqCst);
    counter.abort();
    drop(monitor);

    // Operator complaints during the run.
    let since = format!("--since={}s", started.elapsed().as_secs() + 5);
    let logs = k
        .run(&["logs", "-n", OPERATOR_NS, "deploy/vpcnet-operator", &since])
        .stdout;
    // "waiting for <dependency>" retries are the VPCs' groups waiting for
    // their router and switches while the tenants are being set up.
    let (waits, complaints): (Vec<&str>, Vec<&str>) = logs
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .partition(|l| l.contains("error=waiting for "));

    println!(
        "\nlb churn on the cluster-in-a-box: {n_svc} Services x {ENDPOINTS} endpoints in \
         {n_vpc} VPCs; {n_changes} changes one at a time (after {WARMUP} warm-up), each \
         flipping one endpoint's ready of a random Service, alternating with the same change \
         by one ovn-nbctl process on a scratch row\n"
    );
    println!(
        "setup: tenants' groups in NB after {:.1} s; {n_svc} Services + slices created in \
         {:.1} s; all rows complete {:.1} s after the first create; {setup_txns} NB \
         transactions touched the bench's rows and groups ({:.2} per Service)\n",
        tenants_ready.as_secs_f64(),
        created_in.as_secs_f64(),
        setup_wall.as_secs_f64(),
        setup_txns as f64 / n_svc as f64
    );
    let w = 22;
    println!(
        "{:<46} | {:>w$} | {:>w$} | target",
        "metric", "vpcnet operator", "ovn-nbctl per change"
    );
    println!("{}", "-".repeat(46 + 2 * w + 22));
    let row = |name: &str, a: String, b: String, t: &str| {
        println!("{name:<46} | {a:>w$} | {b:>w$} | {t}");
    };
    let f = |v: f64| format!("{v:.1}");
    row(
        "change -> NB row shows it, p50 (ms)",
        f(pct(&op.latency, 50.0)),
        f(pct(&base.latency, 50.0)),
        "",
    );
    row(
        "change -> NB row shows it, p99 (ms)",
        f(pct(&op.latency, 99.0)),
        f(pct(&base.latency, 99.0)),
        &format!("p99 < {TARGET_P99_MS:.0} ms"),
    );
    row(
        "change -> NB row shows it, max (ms)",
        f(pct(&op.latency, 100.0)),
        f(pct(&base.latency, 100.0)),
        "",
    );
    row(
        "request acked (PATCH reply / process exit), p50",
        f(pct(&op.ack, 50.0)),
        f(pct(&base.ack, 50.0)),
        "",
    );
    row(
        &format!("changes not shown within {}s", CHANGE_TIMEOUT.as_secs()),
        op.missed.to_string(),
        base.missed.to_string(),
        "0",
    );
    row(
        "changes with exactly 1 NB transaction",
        op.txn_text(),
        base.txn_text(),
        "all (exactly 1 per change)",
    );
    row(
        "NB transactions per change, min / mean / max",
        op.txn_spread(),
        base.txn_spread(),
        "1 / 1.00 / 1",
    );
    row(
        "operator RSS after setup (MB)",
        rss_text(&rss_setup),
        "-".into(),
        &format!("< {TARGET_RSS_MB:.0} MB"),
    );
    row(
        "operator RSS after the changes (MB)",
        rss_text(&rss_after),
        "-".into(),
        &format!("< {TARGET_RSS_MB:.0} MB"),
    );
    println!(
        "\nNB transactions counted as `update` notifications of a raw OVSDB monitor on \
         Load_Balancer + Load_Balancer_Group touching the bench's rows/groups (operator) or the \
         scratch row (ovn-nbctl), per change window; {foreign} notifications touched neither \
         (other users of the box)."
    );
    if operator_before != operator_after {
        println!(
            "operator pods changed during the run: before [{operator_before}], after [{operator_after}]"
        );
    }
    let pids = |v: &[(u32, f64)]| v.iter().map(|(p, _)| *p).collect::<Vec<_>>();
    if pids(&rss_setup) != pids(&rss_after) {
        println!(
            "operator process changed: pids {:?} after setup, {:?} after the changes",
            pids(&rss_setup),
            pids(&rss_after)
        );
    }
    println!(
        "operator WARN/ERROR log lines during the run: {} dependency retries (\"waiting for\"), \
         {} others",
        waits.len(),
        complaints.len()
    );
    for l in complaints.iter().take(10) {
        let l: String = l.chars().take(300).collect();
        println!("  {l}");
    }
}

fn main() {
    let k = Kubectl::for_box();
    // Declared before the runtime, so dropped after it: cleanup runs
    // outside any runtime, also when `run` panics.
    let mut guard = Guard {
        k: k.clone(),
        namespaces: Vec::new(),
        scratch: false,
        objects: Cleanup::new(&k),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        tokio::select! {
            _ = run(&k, &mut guard) => {}
            _ = tokio::signal::ctrl_c() => eprintln!("interrupted; cleaning up"),
        }
    });
    drop(rt);
    drop(guard);
}
