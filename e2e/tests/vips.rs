//! Vips on the real box, created by a tenant through its own ServiceAccount
//! with the broad role an admin would write (`*` on vpcnet.io, status
//! included): fixed and dynamic addresses, conflicts refused, the Subnet's
//! usage follows, deletion frees; another tenant's subnet is refused, and a
//! forged status reserves nothing across an operator restart.

use std::time::Duration;

use vpcnet_api::condition;
use vpcnet_e2e::cluster::{Cleanup, operator_selector};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::tenant::{self, Tenant};

const READY: Duration = Duration::from_secs(60);

fn broad_role(k: &Kubectl, t: &Tenant) {
    let ns = t.ns();
    k.must_apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: all-of-vpcnet, namespace: {ns}}}\n\
         rules: [{{apiGroups: [vpcnet.io], resources: ['*'], verbs: ['*']}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: all-of-vpcnet, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: all-of-vpcnet}}\n\
         subjects: [{{kind: ServiceAccount, name: tenant-admin, namespace: {ns}}}]\n"
    ));
    k.eventually(Duration::from_secs(30), "the broad role to apply", || {
        t.kubectl()
            .run(&["auth", "can-i", "patch", "vips.vpcnet.io/status", "-n", ns])
            .stdout
            .trim()
            == "yes"
    });
}

fn vip(t: &Tenant, name: &str, subnet: &str, v4ip: Option<&str>) {
    let ip = v4ip.map(|i| format!(", v4ip: {i}")).unwrap_or_default();
    let out = t.kubectl().apply_yaml(&format!(
        "apiVersion: vpcnet.io/v1\nkind: Vip\nmetadata: {{name: {name}, namespace: {}}}\nspec: {{subnet: {subnet}{ip}}}\n",
        t.ns()
    ));
    assert!(out.ok, "the tenant may create Vips: {}", out.stderr);
}

fn ready(k: &Kubectl, ns: &str, name: &str, f: &str) -> String {
    k.field(
        "vip",
        Some(ns),
        name,
        &format!(
            "{{.status.conditions[?(@.type==\"{}\")].{f}}}",
            condition::READY
        ),
    )
}

/// Waits for Ready with `status` and `reason`; returns the message.
fn wait_for(k: &Kubectl, ns: &str, name: &str, status: &str, reason: &str) -> String {
    k.eventually(
        READY,
        &format!("vip {name}: Ready={status} {reason}"),
        || ready(k, ns, name, "status") == status && ready(k, ns, name, "reason") == reason,
    );
    ready(k, ns, name, "message")
}

fn using(k: &Kubectl, subnet: &str) -> i64 {
    k.field("subnet", None, subnet, "{.status.v4usingIPs}")
        .parse()
        .unwrap_or(-1)
}

fn restart_operator(k: &Kubectl) {
    let sel = operator_selector();
    k.ok(&[
        "delete",
        "pod",
        "-n",
        vpcnet_e2e::cluster::OPERATOR_NS,
        "-l",
        &sel,
        "--wait=true",
    ]);
    k.ok(&[
        "wait",
        "-n",
        vpcnet_e2e::cluster::OPERATOR_NS,
        "--for=condition=Ready",
        "pod",
        "-l",
        &sel,
        "--timeout=120s",
    ]);
}

#[test]
fn vips_reserve_fixed_and_dynamic_addresses_refuse_conflicts_and_free_on_delete() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let (a, b) = ("e2e-vipa", "e2e-vipb");
    let ta = Tenant::create(&k, a);
    let tb = Tenant::create(&k, b);
    tenant::platform(&k, &mut c, a, "10.0.9.0/24");
    tenant::platform(&k, &mut c, b, "10.0.9.0/24");
    broad_role(&k, &ta);
    let subnet = format!("{a}-net");
    k.eventually(READY, "tenant a's subnet counts its addresses", || {
        using(&k, &subnet) >= 0
    });
    let base = using(&k, &subnet);

    vip(&ta, "fixed", &subnet, Some("10.0.9.50"));
    vip(&ta, "dyn", &subnet, None);
    wait_for(&k, a, "fixed", "True", "Allocated");
    wait_for(&k, a, "dyn", "True", "Allocated");
    assert_eq!(
        k.field("vip", Some(a), "fixed", "{.status.v4ip}"),
        "10.0.9.50"
    );
    let dyn_ip = k.field("vip", Some(a), "dyn", "{.status.v4ip}");
    assert!(
        dyn_ip.starts_with("10.0.9.") && dyn_ip != "10.0.9.50",
        "{dyn_ip}"
    );
    assert_eq!(
        k.field("vip", Some(a), "fixed", "{.status.mac}"),
        "0a:58:0a:00:09:32",
        "the MAC derived from the address, as for pods"
    );
    k.eventually(READY, "the Subnet counts both Vips", || {
        using(&k, &subnet) == base + 2
    });

    // The same address again: the younger is refused, with an Event.
    vip(&ta, "twin", &subnet, Some("10.0.9.50"));
    let msg = wait_for(&k, a, "twin", "False", "IPConflict");
    assert!(msg.contains("10.0.9.50"), "{msg}");
    let events = k.ok(&[
        "get",
        "events",
        "-n",
        a,
        "--field-selector=involvedObject.name=twin",
    ]);
    assert!(
        events.contains("IPConflict"),
        "an Event tells the tenant: {events}"
    );

    // Tenant b's subnet: refused as Forbidden, nothing reserved there.
    let b_base = using(&k, &format!("{b}-net"));
    vip(&ta, "foreign", &format!("{b}-net"), None);
    let msg = wait_for(&k, a, "foreign", "False", "Forbidden");
    assert!(
        !msg.contains(b) || msg.contains(&format!("{b}-net")),
        "names only what the tenant named: {msg}"
    );
    assert_eq!(using(&k, &format!("{b}-net")), b_base);
    drop(tb);

    // A forged status (tenant a may write it) reserves nothing: after a
    // restart the address it names is still free for a new Vip.
    vip(&ta, "forger", &subnet, Some("10.0.9.60"));
    wait_for(&k, a, "forger", "True", "Allocated");
    k.ok(&["delete", "vip", "-n", a, "forger", "--wait=true"]);
    vip(&ta, "forged", &subnet, Some("10.0.9.61"));
    wait_for(&k, a, "forged", "True", "Allocated");
    let patched = ta.kubectl().run(&[
        "-n",
        a,
        "patch",
        "vip",
        "forged",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"v4ip":"10.0.9.70"}}"#,
    ]);
    assert!(
        patched.ok,
        "the broad role may write status: {}",
        patched.stderr
    );
    restart_operator(&k);
    vip(&ta, "honest", &subnet, Some("10.0.9.70"));
    wait_for(&k, a, "honest", "True", "Allocated");
    // The forged Vip gets its own address back, with the operator's seal.
    k.eventually(READY, "the operator rewrites the forged status", || {
        k.field("vip", Some(a), "forged", "{.status.v4ip}") == "10.0.9.61"
    });

    // Deleting frees: the twin takes the address once fixed is gone.
    k.ok(&["delete", "vip", "-n", a, "fixed", "--wait=true"]);
    wait_for(&k, a, "twin", "True", "Allocated");
    for v in ["dyn", "twin", "foreign", "forged", "honest"] {
        k.ok(&["delete", "vip", "-n", a, v, "--wait=true"]);
    }
    k.eventually(READY, "every Vip address is freed", || {
        using(&k, &subnet) == base
    });
}
