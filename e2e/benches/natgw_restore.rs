//! A NAT gateway on the cluster-in-a-box with N DNAT rules (default 100,
//! 1,000 and 10,000; `VPCNET_BENCH_NAT_RULES=100,1000`): how long the whole
//! pipeline (API -> operator -> agent -> iptables) takes to make N rules
//! live, and (c) how long until all of them are live again after the
//! gateway pod is deleted and recreated, also from the new agent's own
//! start. Needs a running box: `cargo xtask box up`, then
//! `cargo bench -p vpcnet-e2e --bench natgw_restore`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use vpcnet_api::contract::naming::natgw_pod;
use vpcnet_e2e::cluster::Cleanup;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::{GW_NS, nat_table};

const T: &str = "bench-nat";
const EIPS: usize = 10;

/// DNAT lines live in the gateway's nat table, or None when the pod cannot
/// be reached yet.
fn live_rules(k: &Kubectl) -> Option<usize> {
    let out = nat_table(k, T);
    out.ok.then(|| {
        out.stdout
            .lines()
            .filter(|l| l.contains("\"vpcnet:dnat/"))
            .count()
    })
}

fn pod_uid(k: &Kubectl) -> String {
    k.run(&[
        "get",
        "pod",
        "-n",
        GW_NS,
        &natgw_pod(T),
        "-o",
        "jsonpath={.metadata.uid}",
    ])
    .stdout
}

/// Waits until `n` DNAT lines are live; returns when that was seen.
fn wait_live(k: &Kubectl, n: usize, timeout: Duration) -> Instant {
    let end = Instant::now() + timeout;
    loop {
        if live_rules(k) == Some(n) {
            return Instant::now();
        }
        assert!(
            Instant::now() < end,
            "{n} rules not live after {timeout:?} (live: {:?})",
            live_rules(k)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The agent's log line that marks rules live again: "restored from
/// snapshot" (its last applied state, before the API lists are in) or
/// "first apply done" (the state from the API).
const RESTORED: &str = "restored from snapshot";
const FIRST_APPLY: &str = "first apply done";

/// `(since_start_ms, apply_ms)` from the agent's line containing `marker`.
fn agent_line(k: &Kubectl, marker: &str) -> Option<(u64, u64)> {
    let log = k.run(&["logs", "-n", GW_NS, &natgw_pod(T)]).stdout;
    let line = log.lines().find(|l| l.contains(marker))?;
    let field = |name: &str| -> Option<u64> {
        let i = line.find(&format!("{name}="))? + name.len() + 1;
        line[i..]
            .trim_start_matches("Some(")
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((field("since_start_ms")?, field("apply_ms")?))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("VPCNET_BENCH_NAT_RULES")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("VPCNET_BENCH_NAT_RULES: numbers"))
        .collect();
    let k = Kubectl::for_box();
    let mut cleanup = Cleanup::new(&k);
    assert!(
        k.apply(&vpcnet_e2e::repo_root().join("config/samples/03-external-subnet.yaml"))
            .ok
    );
    let mut eips = String::new();
    for i in 0..EIPS {
        eips.push_str(&format!(
            "---\napiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: e{i}, namespace: {T}}}\nspec: {{natGwDp: {T}}}\n"
        ));
    }
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {T}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {T}}}\nspec: {{namespaces: [{T}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {T}}}\nspec: {{vpc: {T}, cidrBlock: 10.0.0.0/16, namespaces: [{T}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {T}}}\nspec: {{vpc: {T}, subnet: {T}, lanIp: 10.0.255.254, externalSubnets: [ovn-vpc-external-network]}}\n{eips}"
    ));
    cleanup.add("vpc", None, T);
    cleanup.add("subnet", None, T);
    cleanup.add("vpc-nat-gw", None, T);
    cleanup.add("namespace", None, T);
    for i in 0..EIPS {
        cleanup.add("eip", Some(T), &format!("e{i}"));
    }
    cleanup.add("dnat", Some(T), "--all");
    let ok = k.run(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=180s",
        &format!("vpc-nat-gw/{T}"),
    ]);
    assert!(ok.ok, "gateway not Ready: {}", ok.stderr);

    let kubeconfig = kube::config::Kubeconfig::read_from(k.kubeconfig()).expect("box kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("box kubeconfig");
    let client = kube::Client::try_from(config).expect("client");
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "vpcnet.io",
        "v1",
        "IptablesDnatRule",
    ));
    let dnats: Api<DynamicObject> = Api::namespaced_with(client, T, &ar);

    println!(
        "| N DNAT rules | API: create the new rules | create -> all live (operator + agent) | (c) pod deleted -> all live again | (c) new agent started -> rules restored from snapshot | of which iptables apply | (c) new agent started -> first apply from the API |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut have = 0usize;
    for n in sizes {
        let t0 = Instant::now();
        let created: Vec<_> = futures::stream::iter(have..n)
            .map(|i| {
                let dnats = dnats.clone();
                async move {
                    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
                        "apiVersion": "vpcnet.io/v1",
                        "kind": "IptablesDnatRule",
                        "metadata": {"name": format!("d{i}")},
                        "spec": {
                            "eip": format!("e{}", i % EIPS),
                            "externalPort": format!("{}", 1000 + i / EIPS),
                            "protocol": "tcp",
                            "internalIp": format!("10.0.{}.{}", (i / 250) % 250, 1 + i % 250),
                            "internalPort": "80",
                        }
                    }))
                    .unwrap();
                    dnats.create(&PostParams::default(), &obj).await
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let failed: Vec<_> = created.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "{} creates failed: {:?}",
            failed.len(),
            failed.first()
        );
        let api = t0.elapsed();
        have = n;
        let live = wait_live(&k, n, Duration::from_secs(1800)).duration_since(t0);

        let old = pod_uid(&k);
        let t1 = Instant::now();
        k.ok(&["delete", "pod", "-n", GW_NS, &natgw_pod(T), "--wait=false"]);
        let end = Instant::now() + Duration::from_secs(300);
        while pod_uid(&k) == old || pod_uid(&k).is_empty() {
            assert!(Instant::now() < end, "gateway pod not recreated");
            std::thread::sleep(Duration::from_millis(100));
        }
        let back = wait_live(&k, n, Duration::from_secs(600)).duration_since(t1);
        // The first apply from the API is logged once its lists are in.
        let mut full = agent_line(&k, FIRST_APPLY);
        let end = Instant::now() + Duration::from_secs(30);
        while full.is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
            full = agent_line(&k, FIRST_APPLY);
        }
        let ms = |v: Option<(u64, u64)>| match v {
            Some((s, a)) => (format!("{:.2} s", s as f64 / 1e3), format!("{a} ms")),
            None => ("-".into(), "-".into()),
        };
        let (restored, apply) = ms(agent_line(&k, RESTORED));
        let (full, _) = ms(full);
        println!(
            "| {n} | {} | {} | {} | {restored} | {apply} | {full} |",
            secs(api),
            secs(live),
            secs(back)
        );
    }
    let out = k.run(&[
        "delete",
        "dnat",
        "--all",
        "-n",
        T,
        "--wait=true",
        "--timeout=900s",
    ]);
    if !out.ok {
        eprintln!("deleting the rules: {}", out.stderr);
    }
    cleanup.run_now();
}
