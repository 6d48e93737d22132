//! Installing from the OperatorHub bundle, as OLM does it: the box's usual
//! install (namespace `vpcnet-system`) is stopped, the bundle is converted
//! the way OLM v1 converts a registry+v1 bundle (`vpcnet_e2e::olm`) and
//! applied into a fresh namespace `operators`, and the seed walk-through
//! (SNAT, DNAT and a floating IP through a NAT gateway) runs against that
//! install, given the box's settings (`config/box/operator-box.yaml`) the
//! way a Subscription's `config.env` gives them. The box's install is restored afterwards, also on failure.

use std::time::Duration;

use vpcnet_e2e::cluster::OPERATOR_NS;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::olm;
use vpcnet_e2e::other_install::{BoxInstallAside, operator_and_cni_ready, seed_walkthrough};

const NS: &str = "operators";

fn apply_list(k: &Kubectl, objects: &[serde_json::Value]) {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let path = std::env::temp_dir().join(format!("vpcnet-olm-{}.json", std::process::id()));
    std::fs::write(&path, list.to_string()).expect("write the manifests");
    let out = k.run(&[
        "apply",
        "--server-side",
        "--field-manager=olm",
        "-f",
        &path.to_string_lossy(),
    ]);
    let _ = std::fs::remove_file(&path);
    assert!(out.ok, "applying the converted bundle: {}", out.stderr);
}

#[test]
fn the_bundle_installs_into_operators_and_runs_the_seed_walkthrough() {
    let k = Kubectl::for_box();
    let root = vpcnet_e2e::repo_root();
    // The box's own settings (its probe range, kubelet cgroup, DNS), given
    // to the installed operator as a cluster gives them through OLM.
    let env = olm::env_overrides(
        &std::fs::read_to_string(root.join("config/box/operator-box.yaml"))
            .expect("operator-box.yaml"),
    );
    let objects = olm::convert(&olm::read_bundle(&root.join("bundle")), NS, &env);
    // Only what this install adds goes with it: the bundle's ClusterRoles
    // (the NAT agent's, the tenant roles) are the box install's too.
    let added: Vec<(String, String)> = olm::cluster_scoped(&objects)
        .into_iter()
        .filter(|(kind, name)| !k.run(&["get", kind, name]).ok)
        .collect();
    assert!(
        added
            .iter()
            .all(|(kind, _)| kind == "ClusterRole" || kind == "ClusterRoleBinding"),
        "{added:?}"
    );
    let aside = BoxInstallAside::stop(&k, NS, added);

    // OLM's own `operators` namespace is Pod Security `baseline`: the
    // operator (host network) is refused there, with the reason.
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n  labels:\n    \
         pod-security.kubernetes.io/enforce: baseline\n    pod-security.kubernetes.io/enforce-version: latest\n"
    ));
    apply_list(&k, &objects);
    k.eventually(
        Duration::from_secs(60),
        "the baseline namespace refuses the operator's pod",
        || {
            k.run(&[
                "-n",
                NS,
                "get",
                "events",
                "--field-selector",
                "reason=FailedCreate",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .stdout
            .contains("violates PodSecurity")
        },
    );
    // As the README says: the namespace must be privileged.
    k.ok(&[
        "label",
        "namespace",
        NS,
        "--overwrite",
        "pod-security.kubernetes.io/enforce=privileged",
    ]);
    k.ok(&[
        "-n",
        NS,
        "delete",
        "replicaset",
        "-l",
        "app.kubernetes.io/name=vpcnet-operator",
    ]);
    operator_and_cni_ready(&k, NS, Duration::from_secs(180), Duration::from_secs(120))
        .expect("the operator and its CNI DaemonSet in operators");
    let lease = k.ok(&[
        "-n",
        NS,
        "get",
        "lease",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert!(
        lease.contains("vpcnet-operator"),
        "the leader Lease lives in operators: {lease}"
    );

    // The seed walk-through against this install.
    seed_walkthrough(&k, NS, "e2e-olm");
    drop(aside);
    // The box's install is whole again: its operator, its DaemonSet, and
    // the ClusterRoles it shares with the bundle.
    for role in [
        "vpcnet-natgw",
        "vpcnet-tenant-edit",
        "vpcnet-tenant-view",
        "vpcnet-operator",
        "vpcnet-cni",
    ] {
        assert!(
            k.run(&["get", "clusterrole", role]).ok,
            "ClusterRole {role} is still there"
        );
    }
    assert!(
        k.run(&["-n", OPERATOR_NS, "get", "daemonset", "vpcnet-cni"])
            .ok
    );
}
