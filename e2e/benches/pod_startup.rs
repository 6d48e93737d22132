//! Pod create -> Ready on the cluster-in-a-box for N pods (default 200,
//! `VPCNET_BENCH_PODS`), split into scheduling, address allocation, CNI ADD
//! (with its own split from the plugin's log) and the rest; plus the
//! operator's memory. Needs a running box: `cargo xtask box up`, then
//! `cargo bench -p vpcnet-e2e --bench pod_startup`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use vpcnet_api::contract::annotations;
use vpcnet_e2e::cluster::{Cleanup, TESTAPP_IMAGE};
use vpcnet_e2e::kubectl::Kubectl;

const NS: &str = "e2e-bench";

#[derive(Default, Clone)]
struct Marks {
    created: Option<Instant>,
    scheduled: Option<Instant>,
    allocated: Option<Instant>,
    ready: Option<Instant>,
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i]
}

fn rss_mb_of(comm: &str) -> Option<f64> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
        let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if c.trim() != comm {
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
        Some(kb / 1024.0)
    })
}

/// `pod -> [annotation, veth, ovs, ovn_installed, total]` ms from the CNI log.
fn cni_timings(log: &str) -> HashMap<String, [f64; 5]> {
    let mut out = HashMap::new();
    for line in log
        .lines()
        .filter(|l| l.contains("ADD timings") && l.contains(NS))
    {
        let field = |k: &str| -> Option<f64> {
            let i = line.find(&format!("{k}="))? + k.len() + 1;
            line[i..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let pod = line
            .split("pod=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("")
            .trim_matches('"')
            .to_string();
        if let (Some(a), Some(v), Some(o), Some(i), Some(t)) = (
            field("annotation_ms"),
            field("veth_ms"),
            field("ovs_ms"),
            field("ovn_installed_ms"),
            field("total_ms"),
        ) {
            out.insert(pod, [a, v, o, i, t]);
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("VPCNET_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let k = Kubectl::for_box();
    let mut cleanup = Cleanup::new(&k);
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {NS}}}\nspec: {{namespaces: [{NS}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {NS}}}\nspec: {{vpc: {NS}, cidrBlock: 10.8.0.0/22, namespaces: [{NS}]}}\n"
    ));
    cleanup.add("vpc", None, NS);
    cleanup.add("subnet", None, NS);
    cleanup.add("namespace", None, NS);
    std::thread::sleep(Duration::from_secs(2));

    let kubeconfig = kube::config::Kubeconfig::read_from(k.kubeconfig()).expect("box kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("box kubeconfig");
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let marks: std::sync::Arc<std::sync::Mutex<HashMap<String, Marks>>> = Default::default();
    let watch_marks = marks.clone();
    let watch = tokio::spawn({
        let pods = pods.clone();
        async move {
            let mut s = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(ev)) = s.next().await {
                let (watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
                    continue;
                };
                let now = Instant::now();
                let name = p.metadata.name.clone().unwrap_or_default();
                let mut m = watch_marks.lock().unwrap();
                let e = m.entry(name).or_default();
                if e.scheduled.is_none()
                    && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                {
                    e.scheduled = Some(now);
                }
                if e.allocated.is_none()
                    && p.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.get(annotations::ALLOCATED).is_some_and(|v| v == "true"))
                {
                    e.allocated = Some(now);
                }
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if e.ready.is_none() && ready {
                    e.ready = Some(now);
                }
            }
        }
    });

    let started = Instant::now();
    for i in 0..n {
        let name = format!("b{i:03}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": TESTAPP_IMAGE, "imagePullPolicy": "Never"}]}
        }))
        .unwrap();
        marks
            .lock()
            .unwrap()
            .entry(name.clone())
            .or_default()
            .created = Some(Instant::now());
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = marks
            .lock()
            .unwrap()
            .values()
            .filter(|m| m.ready.is_some())
            .count();
        if done >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = started.elapsed();
    watch.abort();
    let op_rss = rss_mb_of("vpcnet-operator");
    let m = marks.lock().unwrap().clone();
    let since = |a: Option<Instant>, b: Option<Instant>| -> Option<f64> {
        Some(b?.checked_duration_since(a?)?.as_secs_f64() * 1000.0)
    };
    let col =
        |f: &dyn Fn(&Marks) -> Option<f64>| -> Vec<f64> { m.values().filter_map(f).collect() };
    let total = col(&|x| since(x.created, x.ready));
    let sched = col(&|x| since(x.created, x.scheduled));
    let alloc = col(&|x| since(x.created, x.allocated));
    let after_alloc = col(&|x| since(x.allocated.max(x.scheduled), x.ready));
    // The plugin logs inside each node's mount namespace; /proc/<pid>/root
    // of the namespace's holder process shows that view from the host.
    let cni_log = match std::env::var("VPCNET_CNI_LOG_FILE") {
        Ok(f) => std::fs::read_to_string(f).unwrap_or_default(),
        Err(_) => vpcnet_e2e::node::all()
            .iter()
            .filter_map(|n| vpcnet_e2e::node::holder_pid_of(n))
            .map(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/root/var/log/vpcnet-cni.log"))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(""),
    };
    let cni = cni_timings(&cni_log);
    let cni_col = |i: usize| -> Vec<f64> { cni.values().map(|v| v[i]).collect() };

    println!(
        "\npod create -> Ready, {n} pods on the cluster-in-a-box ({} ready, wall {:.1} s)\n",
        total.len(),
        wall.as_secs_f64()
    );
    println!("{:<44} {:>9} {:>9}", "phase (ms)", "p50", "p99");
    let row = |name: &str, v: Vec<f64>| {
        println!(
            "{:<44} {:>9.0} {:>9.0}",
            name,
            pct(v.clone(), 50.0),
            pct(v, 99.0)
        )
    };
    row("create -> scheduled (scheduler)", sched);
    row("create -> address allocated (operator)", alloc);
    row("CNI ADD: wait for allocation", cni_col(0));
    row("CNI ADD: veth + addresses", cni_col(1));
    row("CNI ADD: OVS port", cni_col(2));
    row("CNI ADD: OVN port up (ovn-installed)", cni_col(3));
    row("CNI ADD total", cni_col(4));
    row(
        "allocated+scheduled -> Ready (sandbox, CNI, start)",
        after_alloc,
    );
    row("create -> Ready (total)", total);
    match op_rss {
        Some(mb) => println!("\noperator RSS after {n} pods: {mb:.1} MB"),
        None => println!("\noperator RSS: process not found"),
    }
    if cni.is_empty() {
        println!("(no CNI timings found; set VPCNET_CNI_LOG_FILE to the plugin's logFile)");
    }
    let _ = pods
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await;
    cleanup.run_now();
}
