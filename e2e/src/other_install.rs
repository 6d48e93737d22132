//! Installing vpcnet another way than the box does (from the OLM bundle):
//! the box's own install (`config/box`, namespace `vpcnet-system`) is set
//! aside first and put back when the test ends, also on failure; and the
//! seed walk-through that proves the other install works.

use std::time::{Duration, Instant};

use vpcnet_api::condition;

use crate::cluster::{Cleanup, OPERATOR_NS, testapp_pod};
use crate::external::{self, from_outside};
use crate::kubectl::Kubectl;

const READY: Duration = Duration::from_secs(180);
const CURL: Duration = Duration::from_secs(3);

/// How the box's install was set aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aside {
    /// Its operator scaled to zero and its CNI DaemonSet deleted; CRDs,
    /// RBAC and objects stay (an install that shares them, applied with
    /// server-side apply, merges into them).
    Stopped,
    /// Removed whole, CRDs (and every vpcnet object) included: for an
    /// installer that refuses objects it did not create (OLM v1's Helm
    /// releases).
    Removed,
}

/// The box's install, set aside; put back when dropped.
pub struct BoxInstallAside {
    k: Kubectl,
    aside: Aside,
    /// The namespace of the other install, deleted before the box's comes
    /// back.
    other_namespace: String,
    /// Cluster-scoped objects the other install added, deleted with it.
    cluster_scoped: Vec<(String, String)>,
}

impl BoxInstallAside {
    /// Stops the box's operator and deletes its CNI DaemonSet (one operator
    /// leads per namespace, and the node's CNI configuration names one
    /// namespace whose pods get host egress). `cluster_scoped` are what the
    /// other install will add (removed with it).
    pub fn stop(k: &Kubectl, other_namespace: &str, cluster_scoped: Vec<(String, String)>) -> Self {
        let aside = Self {
            k: k.clone(),
            aside: Aside::Stopped,
            other_namespace: other_namespace.into(),
            cluster_scoped,
        };
        k.ok(&[
            "-n",
            OPERATOR_NS,
            "scale",
            "deployment/vpcnet-operator",
            "--replicas=0",
        ]);
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
        aside
    }

    /// Removes the box's install whole: its CRDs first, while its operator
    /// still runs to take its finalizers off the objects going with them,
    /// then everything `config/box` applied.
    pub fn remove(k: &Kubectl, other_namespace: &str) -> Self {
        let aside = Self {
            k: k.clone(),
            aside: Aside::Removed,
            other_namespace: other_namespace.into(),
            cluster_scoped: Vec::new(),
        };
        let root = crate::repo_root();
        let crds = root.join("crds");
        k.ok(&[
            "delete",
            "-f",
            &crds.to_string_lossy(),
            "--wait=true",
            "--timeout=180s",
        ]);
        let config = root.join("config/box");
        k.ok(&[
            "delete",
            "-k",
            &config.to_string_lossy(),
            "--ignore-not-found",
            "--wait=true",
            "--timeout=180s",
        ]);
        aside
    }
}

impl Drop for BoxInstallAside {
    fn drop(&mut self) {
        let k = &self.k;
        let _ = k.run(&[
            "delete",
            "namespace",
            &self.other_namespace,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=180s",
        ]);
        for (kind, name) in &self.cluster_scoped {
            let _ = k.run(&["delete", kind, name, "--ignore-not-found"]);
        }
        let root = crate::repo_root();
        if self.aside == Aside::Removed {
            release_terminating_crds(k);
            // As the box applied them (e2e/box/up.sh, config.sh and, for the
            // external NAD that went with the namespace, external.sh).
            let apply = |how: &str, what: &str| {
                let path = root.join(what);
                let _ = k.run(&[
                    "apply",
                    "--server-side",
                    "--field-manager=vpcnet-box",
                    how,
                    &path.to_string_lossy(),
                ]);
            };
            apply("-f", "crds");
            let _ = k.run(&[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ]);
            apply("-k", "config/box");
            apply("-f", "config/box/external-nad.yaml");
        } else {
            let _ = k.run(&[
                "-n",
                OPERATOR_NS,
                "scale",
                "deployment/vpcnet-operator",
                "--replicas=1",
            ]);
        }
        if let Err(e) = operator_and_cni_ready(
            k,
            OPERATOR_NS,
            Duration::from_secs(120),
            Duration::from_secs(120),
        ) {
            eprintln!("restoring the box's install failed: {e}");
        }
    }
}

/// Waits for the operator's Deployment in `ns` to roll out (within
/// `operator`), for the CNI DaemonSet it creates there (within 90 s) and for
/// that to roll out (within `cni`); says which did not.
pub fn operator_and_cni_ready(
    k: &Kubectl,
    ns: &str,
    operator: Duration,
    cni: Duration,
) -> Result<(), String> {
    let rollout = |what: &str, within: Duration| {
        let out = k.run(&[
            "-n",
            ns,
            "rollout",
            "status",
            what,
            &format!("--timeout={}s", within.as_secs()),
        ]);
        if out.ok {
            Ok(())
        } else {
            Err(format!("{what} in {ns} did not roll out: {}", out.stderr))
        }
    };
    rollout("deployment/vpcnet-operator", operator)?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !k.run(&["-n", ns, "get", "daemonset", "vpcnet-cni"]).ok {
        if Instant::now() > deadline {
            return Err(format!(
                "the operator created no CNI DaemonSet in {ns} within 90 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    rollout("daemonset/vpcnet-cni", cni)
}

/// The names of vpcnet's CRDs (`crds/<name>.yaml`).
fn vpcnet_crds() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crate::repo_root().join("crds"))
        .expect("crds/")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Waits until no vpcnet CRD is left from the other install. An installer
/// that removes the operator and the CRDs together (OLM v1 uninstalling a
/// ClusterExtension) leaves the objects that still existed (the default
/// network's) with the operator's finalizer, which nobody removes any more,
/// and their CRDs terminating; the finalizers are taken off here, as the
/// README's uninstall section tells users to.
fn release_terminating_crds(k: &Kubectl) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: Vec<String> = vpcnet_crds()
            .into_iter()
            .filter(|crd| k.run(&["get", "crd", crd]).ok)
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("vpcnet CRDs still there: {left:?}");
            return;
        }
        for crd in &left {
            let plural = crd.split('.').next().unwrap_or_default();
            let objects = k.run(&[
                "get",
                plural,
                "-A",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
            ]);
            for line in objects.stdout.lines() {
                let (ns, name) = line.split_once('/').unwrap_or(("", line));
                let mut args = vec![
                    "patch",
                    plural,
                    name,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ];
                if !ns.is_empty() {
                    args.extend(["-n", ns]);
                }
                let _ = k.run(&args);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The seed walk-through (SNAT, DNAT and a floating IP through a NAT
/// gateway) in tenant namespace `t`, against the install in namespace
/// `install_ns` (where the gateway's pod must run); its objects are deleted
/// again before it returns.
pub fn seed_walkthrough(k: &Kubectl, install_ns: &str, t: &str) {
    let mut c = Cleanup::new(k);
    let root = crate::repo_root();
    // The external network's NAD (config/box/external-nad.yaml) lives in
    // the box install's namespace; with that install removed, the gateway
    // gets one in its own namespace, and the external Subnet names it (and
    // goes again afterwards).
    let nad = "ovn-vpc-external-network";
    let ext = std::fs::read_to_string(root.join("config/samples/03-external-subnet.yaml"))
        .expect("the external subnet sample");
    if k.run(&[
        "-n",
        OPERATOR_NS,
        "get",
        "network-attachment-definitions",
        nad,
    ])
    .ok
    {
        k.must_apply(&ext);
    } else {
        let yaml = std::fs::read_to_string(root.join("config/box/external-nad.yaml"))
            .expect("the box's external NAD");
        k.must_apply(&yaml.replace(
            &format!("namespace: {OPERATOR_NS}"),
            &format!("namespace: {install_ns}"),
        ));
        k.must_apply(&ext.replace(
            &format!("provider: {nad}.{OPERATOR_NS}"),
            &format!("provider: {nad}.{install_ns}"),
        ));
        c.add("subnet", None, nad);
    }
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
        install_ns,
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
}
