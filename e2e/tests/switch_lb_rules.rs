//! SwitchLBRules on the real box, written by the tenants themselves (their
//! own ServiceAccounts): the reference scenarios — a selector rule on 8091
//! and a fixed-endpoints rule on 8092 with ClientIP affinity — with
//! backends following scale, a VIP inside the client's own subnet (reserved
//! by a Vip), a backend reaching its own VIP, two VPCs sharing one VIP
//! value, refusals, and no row left behind.

use std::collections::BTreeSet;
use std::time::Duration;

use vpcnet_api::condition;
use vpcnet_e2e::cluster::{Cleanup, testapp_pod};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::tenant::{self, Tenant};
use vpcnet_e2e::{ovn_rows, web};

const READY: Duration = Duration::from_secs(180);
const CONVERGE: Duration = Duration::from_secs(30);
const VIP: &str = "172.31.0.10";

/// The `web` Deployment of `replicas` pods, applied by the tenant.
fn web(t: &Tenant, replicas: u32) {
    let out = t.kubectl().apply_yaml(&web::deployment(t.ns(), replicas));
    assert!(out.ok, "{}", out.stderr);
}

fn apply(t: &Tenant, yaml: &str) {
    let out = t.kubectl().apply_yaml(yaml);
    assert!(out.ok, "the tenant may apply it: {}\n{yaml}", out.stderr);
}

fn selector_rule(ns: &str, name: &str, vip: &str, port: u16) -> String {
    format!(
        "apiVersion: vpcnet.io/v1\nkind: SwitchLBRule\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  vip: {vip}\n  selector: ['app: web']\n  ports: [{{name: http, port: {port}, targetPort: 8080}}]\n"
    )
}

fn endpoints_rule(
    ns: &str,
    name: &str,
    vip: &str,
    port: u16,
    eps: &[String],
    affinity: bool,
) -> String {
    let aff = if affinity {
        "\n  sessionAffinity: ClientIP"
    } else {
        ""
    };
    format!(
        "apiVersion: vpcnet.io/v1\nkind: SwitchLBRule\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  vip: {vip}\n  endpoints: [{}]{aff}\n  ports: [{{name: http, port: {port}, targetPort: 8080}}]\n",
        eps.join(", ")
    )
}

fn cond(k: &Kubectl, ns: &str, name: &str, t: &str, f: &str) -> String {
    k.field(
        "slr",
        Some(ns),
        name,
        &format!("{{.status.conditions[?(@.type==\"{t}\")].{f}}}"),
    )
}

fn backends(k: &Kubectl, ns: &str, name: &str) -> usize {
    k.field("slr", Some(ns), name, "{.status.backends}")
        .matches(":8080")
        .count()
}

fn wait_backends(k: &Kubectl, ns: &str, name: &str, n: usize) {
    k.eventually(CONVERGE, &format!("rule {name} lists {n} backends"), || {
        backends(k, ns, name) == n
    });
    if n > 0 {
        assert_eq!(cond(k, ns, name, condition::READY, "status"), "True");
    }
}

fn refused(k: &Kubectl, ns: &str, name: &str, reason: &str) -> String {
    k.eventually(
        CONVERGE,
        &format!("rule {name} refused with {reason}"),
        || cond(k, ns, name, "Accepted", "reason") == reason,
    );
    assert_eq!(cond(k, ns, name, condition::READY, "status"), "False");
    cond(k, ns, name, "Accepted", "message")
}

/// The answer line of one connection from `pod` to `ip:port`.
fn answer(k: &Kubectl, ns: &str, pod: &str, ip: &str, port: u16) -> Option<String> {
    let url = format!("http://{ip}:{port}/");
    let out = k.exec(ns, pod, &["curl", "-s", "--max-time", "3", &url]);
    out.ok.then(|| out.stdout.trim().to_string())
}

fn server(line: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("server="))
        .map(str::to_string)
}

fn servers(k: &Kubectl, ns: &str, pod: &str, ip: &str, port: u16, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| answer(k, ns, pod, ip, port).as_deref().and_then(server))
        .collect()
}

#[test]
fn switch_lb_rules_balance_follow_scale_keep_affinity_and_stay_in_their_vpc() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let (x, y, z) = ("e2e-slrx", "e2e-slry", "e2e-slrz");
    let tx = Tenant::create(&k, x);
    let ty = Tenant::create(&k, y);
    tenant::platform(&k, &mut c, x, "10.0.1.0/24");
    tenant::platform(&k, &mut c, y, "10.0.1.0/24");
    tenant::platform(&k, &mut c, z, "10.0.3.0/24");
    web(&tx, 3);
    web(&ty, 2);
    apply(&tx, &testapp_pod(x, "client", None));
    apply(&ty, &testapp_pod(y, "client", None));
    k.wait_ready(x, &["client"], READY);
    k.wait_ready(y, &["client"], READY);
    web::wait_available(&k, x);
    web::wait_available(&k, y);

    // A selector rule on 8091: all three pods answer; the headless Service
    // is the rule's.
    apply(&tx, &selector_rule(x, "sel", VIP, 8091));
    wait_backends(&k, x, "sel", 3);
    assert_eq!(
        k.field("slr", Some(x), "sel", "{.status.service}"),
        "slr-sel"
    );
    assert_eq!(
        k.field("service", Some(x), "slr-sel", "{.spec.clusterIP}"),
        "None"
    );
    let names: BTreeSet<String> = web::pods(&k, x).into_iter().map(|(n, _)| n).collect();
    k.eventually(CONVERGE, "all 3 pods answer on the VIP", || {
        servers(&k, x, "client", VIP, 8091, 12) == names
    });

    // Backends follow scale 3 -> 2 -> 3.
    web::scale(&k, x, 2);
    wait_backends(&k, x, "sel", 2);
    web::scale(&k, x, 3);
    wait_backends(&k, x, "sel", 3);

    // Fixed endpoints on 8092 with ClientIP affinity: one client, one backend.
    let pods = web::pods(&k, x);
    let eps: Vec<String> = pods.iter().take(2).map(|(_, ip)| ip.clone()).collect();
    apply(&tx, &endpoints_rule(x, "fixed", VIP, 8092, &eps, true));
    wait_backends(&k, x, "fixed", 2);
    k.eventually(CONVERGE, "the fixed rule answers", || {
        answer(&k, x, "client", VIP, 8092).is_some()
    });
    let pinned = servers(&k, x, "client", VIP, 8092, 8);
    assert_eq!(
        pinned.len(),
        1,
        "ClientIP affinity keeps one backend: {pinned:?}"
    );

    // A VIP inside the client's own subnet, reserved by a Vip; and a backend
    // reaching its own VIP (hairpin) is seen from the hairpin address.
    apply(
        &tx,
        &format!(
            "apiVersion: vpcnet.io/v1\nkind: Vip\nmetadata: {{name: inner, namespace: {x}}}\nspec: {{subnet: {x}-net, v4ip: 10.0.1.200}}\n"
        ),
    );
    let (self_pod, self_ip) = pods[0].clone();
    apply(
        &tx,
        &endpoints_rule(
            x,
            "inner",
            "10.0.1.200",
            8093,
            std::slice::from_ref(&self_ip),
            false,
        ),
    );
    wait_backends(&k, x, "inner", 1);
    k.eventually(CONVERGE, "a VIP in the client's subnet answers", || {
        answer(&k, x, "client", "10.0.1.200", 8093)
            .is_some_and(|a| server(&a).as_deref() == Some(self_pod.as_str()))
    });
    let hairpin =
        answer(&k, x, &self_pod, "10.0.1.200", 8093).expect("a backend reaches its own VIP");
    assert!(
        hairpin.contains("client=169.254.169.5:"),
        "hairpinned from the fixed address: {hairpin}"
    );

    // Refusals: an unreserved VIP in a subnet, an endpoint of another
    // tenant's range, a younger rule on a served VIP:port.
    apply(&tx, &selector_rule(x, "bare", "10.0.1.201", 8094));
    let msg = refused(&k, x, "bare", "VipNotReserved");
    assert!(msg.contains("10.0.1.201"), "{msg}");
    apply(
        &tx,
        &endpoints_rule(x, "foreign", VIP, 8095, &["10.0.3.5".into()], false),
    );
    refused(&k, x, "foreign", "Forbidden");
    apply(&tx, &selector_rule(x, "twin", VIP, 8091));
    let msg = refused(&k, x, "twin", "Conflict");
    assert!(msg.contains("rule sel"), "{msg}");

    // Tenant y uses the same VIP value in its own VPC: each reaches its own.
    apply(&ty, &selector_rule(y, "sel", VIP, 8091));
    wait_backends(&k, y, "sel", 2);
    let y_names: BTreeSet<String> = web::pods(&k, y).into_iter().map(|(n, _)| n).collect();
    k.eventually(CONVERGE, "y's rule reaches y's pods", || {
        servers(&k, y, "client", VIP, 8091, 8) == y_names
    });
    let x_seen = servers(&k, x, "client", VIP, 8091, 8);
    assert!(
        x_seen.is_disjoint(&y_names),
        "x never reaches y's pods: {x_seen:?}"
    );
    // Deleting x's rule leaves y's load balancer intact.
    let y_rows: Vec<_> = ovn_rows::lb_rows()
        .into_iter()
        .filter(|r| r.owner == format!("SwitchLBRule/{y}/sel"))
        .collect();
    assert_eq!(y_rows.len(), 1);
    k.ok(&["delete", "slr", "-n", x, "sel", "--wait=true"]);
    k.eventually(CONVERGE, "x's rule rows are gone", || {
        !ovn_rows::owners().contains_key(&format!("SwitchLBRule/{x}/sel"))
    });
    let after: Vec<_> = ovn_rows::lb_rows()
        .into_iter()
        .filter(|r| r.owner == format!("SwitchLBRule/{y}/sel"))
        .collect();
    assert_eq!(after, y_rows, "y's row untouched");
    assert_eq!(servers(&k, y, "client", VIP, 8091, 6), y_names);
    // With sel gone, the twin takes the port.
    wait_backends(&k, x, "twin", 3);

    // Deleting everything leaves no row of these tenants.
    drop(tx);
    drop(ty);
    c.run_now();
    k.eventually(CONVERGE, "no load balancer of the deleted tenants", || {
        !ovn_rows::owners().keys().any(|o| o.contains("e2e-slr"))
    });
}
