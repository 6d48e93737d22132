//! What OLM makes of our registry+v1 bundle (`bundle/`), done here the way
//! OLM v1's converter does it for an AllNamespaces install, so the box can
//! install the operator exactly as OLM would, without OLM:
//! - the CRDs as they are;
//! - one ServiceAccount per name the CSV's permissions use, in the install
//!   namespace;
//! - each `clusterPermissions` entry as a ClusterRole bound to its
//!   ServiceAccount; each `permissions` entry likewise (AllNamespaces
//!   promotes them), with `namespaces` get/list/watch added;
//! - each `install.spec.deployments` entry as a Deployment in the install
//!   namespace, with the CSV's annotations and `olm.targetNamespaces: ""` on
//!   its pod template and `revisionHistoryLimit: 1`;
//! - every other manifest as it is, namespaced ones moved into the install
//!   namespace;
//! - environment overrides for every container of the Deployments, as a
//!   Subscription's `config.env` (OLM v0) or a ClusterExtension's deployment
//!   configuration (OLM v1) sets them: how a cluster gives the operator its
//!   own settings.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

/// Kinds of the other manifests a bundle may carry that are namespaced.
const NAMESPACED: &[&str] = &[
    "Secret",
    "ConfigMap",
    "ServiceAccount",
    "Service",
    "Role",
    "RoleBinding",
    "PrometheusRule",
    "ServiceMonitor",
    "PodDisruptionBudget",
    "VerticalPodAutoscaler",
    "NetworkPolicy",
];

/// The manifests of `bundle/manifests` (each file one object).
pub fn read_bundle(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("manifests"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("manifest");
            serde_saphyr::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

fn rbac_name(csv: &str, sa: &str, n: usize) -> String {
    format!("{csv}-{sa}-{n}")
}

/// The plain `{name, value}` entries of the operator container's `env` in a
/// Deployment patch such as `config/box/operator-box.yaml`: the overrides a
/// cluster gives the installed operator.
pub fn env_overrides(patch: &str) -> Vec<(String, String)> {
    let doc: Value = serde_saphyr::from_str(patch).expect("a Deployment patch");
    doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The objects OLM would create for `manifests` installed in `namespace`
/// for all namespaces, with `env` set on every container of the operator's
/// Deployment (pure).
pub fn convert(manifests: &[Value], namespace: &str, env: &[(String, String)]) -> Vec<Value> {
    let csv = manifests
        .iter()
        .find(|m| m["kind"] == "ClusterServiceVersion")
        .expect("the bundle has a CSV");
    let csv_name = csv["metadata"]["name"].as_str().expect("CSV name");
    let strategy = &csv["spec"]["install"]["spec"];
    let mut out: Vec<Value> = manifests
        .iter()
        .filter(|m| m["kind"] == "CustomResourceDefinition")
        .cloned()
        .collect();

    let cluster = strategy["clusterPermissions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let namespaced = strategy["permissions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sas: BTreeSet<String> = cluster
        .iter()
        .chain(&namespaced)
        .filter_map(|p| p["serviceAccountName"].as_str().map(str::to_string))
        .collect();
    for sa in &sas {
        out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": sa, "namespace": namespace}}));
    }
    let promoted = namespaced.into_iter().map(|mut p| {
        let rules = p["rules"].as_array_mut().expect("rules");
        rules.push(json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}));
        p
    });
    for (n, p) in cluster.into_iter().chain(promoted).enumerate() {
        let sa = p["serviceAccountName"]
            .as_str()
            .expect("serviceAccountName");
        let name = rbac_name(csv_name, sa, n);
        out.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": name}, "rules": p["rules"]}),
        );
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": {"name": name},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]}));
    }
    for d in strategy["deployments"].as_array().into_iter().flatten() {
        let mut spec = d["spec"].clone();
        let mut annotations = csv["metadata"]["annotations"].clone();
        if let Some(own) = spec["template"]["metadata"]["annotations"].as_object() {
            for (k, v) in own {
                annotations[k] = v.clone();
            }
        }
        annotations["olm.targetNamespaces"] = json!("");
        spec["template"]["metadata"]["annotations"] = annotations;
        spec["revisionHistoryLimit"] = json!(1);
        set_env(&mut spec, env);
        out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": d["name"], "namespace": namespace, "labels": d["label"]},
                        "spec": spec}));
    }
    for m in manifests
        .iter()
        .filter(|m| m["kind"] != "ClusterServiceVersion" && m["kind"] != "CustomResourceDefinition")
    {
        let mut m = m.clone();
        if NAMESPACED.contains(&m["kind"].as_str().unwrap_or_default()) {
            m["metadata"]["namespace"] = json!(namespace);
        }
        out.push(m);
    }
    out
}

/// Sets `env` on every container of the Deployment `spec` (each name
/// replaced, else added).
fn set_env(spec: &mut Value, env: &[(String, String)]) {
    for c in spec["template"]["spec"]["containers"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let list = c["env"]
            .as_array_mut()
            .expect("the operator container has env");
        for (name, value) in env {
            list.retain(|e| e["name"] != name.as_str());
            list.push(json!({"name": name, "value": value}));
        }
    }
}

/// The CSV `csv` with `env` set on every container of its Deployments: a
/// cluster's own build of the bundle, for an installer that cannot give
/// the operator settings (OLM v1's ClusterExtension).
pub fn csv_with_env(csv: &mut Value, env: &[(String, String)]) {
    for d in csv["spec"]["install"]["spec"]["deployments"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        set_env(&mut d["spec"], env);
    }
}

/// `(kind, name)` of the cluster-scoped objects of `objects` that are not
/// CRDs: what uninstalling removes besides the namespace.
pub fn cluster_scoped(objects: &[Value]) -> Vec<(String, String)> {
    objects
        .iter()
        .filter(|o| o["metadata"]["namespace"].is_null() && o["kind"] != "CustomResourceDefinition")
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_bundle_converts_to_what_the_operator_needs() {
        let env = env_overrides(
            &std::fs::read_to_string(crate::repo_root().join("config/box/operator-box.yaml"))
                .unwrap(),
        );
        assert!(
            env.iter()
                .any(|(n, v)| n == "VPCNET_PROBE_CIDR" && v == "100.64.0.0/24"),
            "{env:?}"
        );
        let objs = convert(
            &read_bundle(&crate::repo_root().join("bundle")),
            "operators",
            &env,
        );
        let of =
            |kind: &str| -> Vec<&Value> { objs.iter().filter(|o| o["kind"] == kind).collect() };
        assert_eq!(of("CustomResourceDefinition").len(), 11);
        let deps = of("Deployment");
        assert_eq!(deps.len(), 1);
        let d = deps[0];
        assert_eq!(d["metadata"]["namespace"], "operators");
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"]["olm.targetNamespaces"],
            ""
        );
        assert!(d["spec"]["template"]["metadata"]["annotations"]["alm-examples"].is_string());
        let envs = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let probe: Vec<_> = envs
            .iter()
            .filter(|e| e["name"] == "VPCNET_PROBE_CIDR")
            .collect();
        assert_eq!(probe.len(), 1, "an override replaces the bundle's value");
        assert_eq!(probe[0]["value"], "100.64.0.0/24");
        let sas: Vec<&str> = of("ServiceAccount")
            .iter()
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        assert!(
            sas.contains(&"vpcnet-operator") && sas.contains(&"vpcnet-cni"),
            "{sas:?}"
        );
        // Every binding names a ServiceAccount of the install namespace.
        for b in of("ClusterRoleBinding") {
            assert_eq!(b["subjects"][0]["namespace"], "operators");
        }
        // The operator's namespaced rights became cluster-wide, plus namespaces.
        assert!(of("ClusterRole").iter().any(|r| {
            r["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["resources"][0] == "daemonsets")
                && r["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["resources"][0] == "namespaces")
        }));
        assert!(of("DaemonSet").is_empty() && of("Namespace").is_empty());
        // The bundle's own ClusterRoles (NAT agent, tenant roles) come as they are.
        assert!(
            cluster_scoped(&objs)
                .iter()
                .any(|(k, n)| k == "ClusterRole" && n == "vpcnet-natgw")
        );
    }
}
