//! Installing from the OperatorHub bundle, as OLM does it: the box's usual
//! install (namespace `vpcnet-system`) is stopped, the bundle is converted
//! the way OLM v1 converts a registry+v1 bundle (`vpcnet_e2e::olm`) and
//! applied into a fresh namespace `operators`, and the seed walk-through
//! (SNAT, DNAT and a floating IP through a NAT gateway) runs against that
//! install, given the box's settings (`config/box/operator-box.yaml`) the
//! way a Subscription's `config.env` gives them. The box's install is restored afterwards, also on failure.

use std::time::Duration;

use vpcnet_api::condition;
use vpcnet_e2e::cluster::{Cleanup, OPERATOR_NS, testapp_pod};
use vpcnet_e2e::external::{self, from_outside};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::olm;

const NS: &str = "operators";
const READY: Duration = Duration::from_secs(180);
const CURL: Duration = Duration::from_secs(3);

/// Puts the box's own install back when dropped.
struct Restore {
    k: Kubectl,
    /// Cluster-scoped objects the install added (none that existed before).
    cluster_scoped: Vec<(String, String)>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let k = &self.k;
        let _ = k.run(&[
            "delete",
            "namespace",
            NS,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ]);
        for (kind, name) in &self.cluster_scoped {
            let _ = k.run(&["delete", kind, name, "--ignore-not-found"]);
        }
        let _ = k.run(&[
            "-n",
            OPERATOR_NS,
            "scale",
            "deployment/vpcnet-operator",
            "--replicas=1",
        ]);
        let ok = k
            .run(&[
                "-n",
                OPERATOR_NS,
                "rollout",
                "status",
                "deployment/vpcnet-operator",
                "--timeout=120s",
            ])
            .ok;
        // The operator recreates its CNI DaemonSet (and with it the node's
        // CNI configuration naming its namespace).
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !k
            .run(&["-n", OPERATOR_NS, "get", "daemonset", "vpcnet-cni"])
            .ok
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(500));
        }
        let ds = k
            .run(&[
                "-n",
                OPERATOR_NS,
                "rollout",
                "status",
                "daemonset/vpcnet-cni",
                "--timeout=120s",
            ])
            .ok;
        if !(ok && ds) {
            eprintln!("restoring the box's install failed: operator {ok}, DaemonSet {ds}");
        }
    }
}

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
    // Stop the box's install: one operator leads per namespace, and the CNI
    // configuration names one namespace whose pods get host egress.
    k.ok(&[
        "-n",
        OPERATOR_NS,
        "scale",
        "deployment/vpcnet-operator",
        "--replicas=0",
    ]);
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
    let restore = Restore {
        k: k.clone(),
        cluster_scoped: added,
    };
    k.ok(&[
        "-n",
        OPERATOR_NS,
        "wait",
        "--for=delete",
        "pod",
        "-l",
        "app.kubernetes.io/name=vpcnet-operator",
        "--timeout=60s",
    ]);
    k.ok(&[
        "-n",
        OPERATOR_NS,
        "delete",
        "daemonset",
        "vpcnet-cni",
        "--wait=true",
    ]);

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
    k.ok(&[
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/vpcnet-operator",
        "--timeout=180s",
    ]);
    k.eventually(
        Duration::from_secs(90),
        "the operator creates its CNI DaemonSet in operators",
        || k.run(&["-n", NS, "get", "daemonset", "vpcnet-cni"]).ok,
    );
    k.ok(&[
        "-n",
        NS,
        "rollout",
        "status",
        "daemonset/vpcnet-cni",
        "--timeout=120s",
    ]);
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
    let mut c = Cleanup::new(&k);
    let t = "e2e-olm";
    let ext = vpcnet_e2e::repo_root().join("config/samples/03-external-subnet.yaml");
    assert!(k.apply(&ext).ok);
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {t}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {t}}}\nspec: {{namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {t}}}\nspec: {{vpc: {t}, cidrBlock: 10.0.1.0/24, namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {t}}}\nspec: {{vpc: {t}, subnet: {t}, lanIp: 10.0.1.254, externalSubnets: [ovn-vpc-external-network]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: eips01, namespace: {t}}}\nspec: {{natGwDp: {t}, v4ip: 172.16.3.218}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: eipd01, namespace: {t}}}\nspec: {{natGwDp: {t}, v4ip: 172.16.3.213}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: eipf01, namespace: {t}}}\nspec: {{natGwDp: {t}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesSnatRule\nmetadata: {{name: snat01, namespace: {t}}}\nspec: {{eip: eips01, internalCIDR: 10.0.1.0/24}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: dnat01, namespace: {t}}}\nspec: {{eip: eipd01, externalPort: '8888', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesFIPRule\nmetadata: {{name: fip01, namespace: {t}}}\nspec: {{eip: eipf01, internalIp: 10.0.1.3}}\n"
    ));
    c.add("vpc", None, t);
    c.add("subnet", None, t);
    c.add("vpc-nat-gw", None, t);
    c.add("namespace", None, t);
    k.must_apply(&testapp_pod(t, "web", Some("10.0.1.2")));
    k.must_apply(&testapp_pod(t, "db", Some("10.0.1.3")));
    k.wait_ready(t, &["web", "db"], READY);
    k.wait_condition("vpc-nat-gw", None, &[t], condition::READY, READY);
    let gw_ns = k.ok(&[
        "get",
        "pods",
        "-A",
        "-l",
        &format!("vpcnet.io/nat-gateway={t}"),
        "-o",
        "jsonpath={.items[*].metadata.namespace}",
    ]);
    assert_eq!(
        gw_ns.trim(),
        NS,
        "the gateway runs in the operator's namespace"
    );
    for (kind, name) in [
        ("eip", "eips01"),
        ("eip", "eipd01"),
        ("eip", "eipf01"),
        ("snat", "snat01"),
        ("dnat", "dnat01"),
        ("fip", "fip01"),
    ] {
        k.wait_condition(kind, Some(t), &[name], condition::READY, READY);
    }
    let fip = k.field("eip", Some(t), "eipf01", "{.status.ip}");
    let out = k.exec(
        t,
        "web",
        &["curl", "-s", "--max-time", "3", &external::host_url()],
    );
    assert!(out.stdout.contains("client=172.16.3.218:"), "SNAT: {out:?}");
    let got = from_outside("http://172.16.3.213:8888/", CURL).expect("DNAT from outside");
    assert!(got.contains("server=web"), "DNAT: {got}");
    let got = from_outside(&format!("http://{fip}:8080/"), CURL).expect("FIP from outside");
    assert!(got.contains("server=db"), "FIP: {got}");
    c.run_now();
    drop(restore);
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
