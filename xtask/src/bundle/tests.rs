//! The OLM bundle: `bundle/` is what the generator makes of the checked-in
//! inputs, holds only what a registry+v1 bundle may hold, and the CSV says
//! what OLM and the catalogs' validators expect. (`olm-validate`, run by
//! `cargo xtask test`, checks it with the validators themselves.)

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::shell::repo_root;

fn inputs() -> Inputs {
    read_inputs(&repo_root()).unwrap()
}

fn real_csv() -> Value {
    csv(&inputs()).unwrap()
}

/// The kinds a registry+v1 bundle may carry besides the CSV and CRDs
/// (operator-registry's supported list; no Deployment, DaemonSet or
/// Namespace: those OLM refuses or installs only through the CSV).
const ALLOWED_EXTRA_KINDS: [&str; 16] = [
    "Secret",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "ServiceAccount",
    "Service",
    "Role",
    "RoleBinding",
    "PrometheusRule",
    "ServiceMonitor",
    "PodDisruptionBudget",
    "PriorityClass",
    "VerticalPodAutoscaler",
    "NetworkPolicy",
    "ConsoleYAMLSample",
    "ConsoleQuickStart",
];

#[test]
fn the_bundle_is_generated_from_its_inputs() {
    let root = repo_root();
    let files = render(&inputs()).unwrap();
    let mut stale = Vec::new();
    for (rel, body) in &files {
        match std::fs::read_to_string(root.join(DIR).join(rel)) {
            Ok(on_disk) if on_disk == *body => {}
            Ok(_) => stale.push(format!("{rel} differs")),
            Err(e) => stale.push(format!("{rel}: {e}")),
        }
    }
    let extra: Vec<String> = list(&root.join(DIR))
        .unwrap()
        .into_iter()
        .filter(|p| !files.iter().any(|(f, _)| f == p))
        .collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "{DIR}/ is out of date, run `cargo xtask bundle`: stale {stale:?}, not generated {extra:?}"
    );
}

#[test]
fn the_bundle_holds_only_kinds_olm_accepts() {
    let dir = repo_root().join(DIR).join("manifests");
    let mut kinds: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            entry.file_type().unwrap().is_file(),
            "manifests/ may not have subdirectories: {name}"
        );
        assert!(name.ends_with(".yaml"), "{name}");
        let body = std::fs::read_to_string(entry.path()).unwrap();
        let docs = documents(&name, &body).unwrap();
        assert_eq!(docs.len(), 1, "{name}: one object a file");
        let kind = docs[0]["kind"].as_str().unwrap().to_string();
        assert!(
            kind == "ClusterServiceVersion"
                || kind == "CustomResourceDefinition"
                || ALLOWED_EXTRA_KINDS.contains(&kind.as_str()),
            "{name}: a registry+v1 bundle may not carry a {kind}"
        );
        kinds.push((name, kind));
    }
    for refused in ["Deployment", "DaemonSet", "Namespace", "StatefulSet"] {
        assert!(!kinds.iter().any(|(_, k)| k == refused), "{kinds:?}");
    }
    let csvs: Vec<_> = kinds
        .iter()
        .filter(|(_, k)| k == "ClusterServiceVersion")
        .collect();
    assert_eq!(csvs.len(), 1, "exactly one CSV: {kinds:?}");
    let crds: BTreeSet<&str> = kinds
        .iter()
        .filter(|(_, k)| k == "CustomResourceDefinition")
        .map(|(n, _)| n.as_str())
        .collect();
    let want: BTreeSet<String> = vpcnet_api::crds::rendered()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        crds,
        want.iter().map(String::as_str).collect(),
        "every CRD of crds/"
    );
}

#[test]
fn the_crds_are_copied_unchanged() {
    let files = render(&inputs()).unwrap();
    for (name, body) in vpcnet_api::crds::rendered() {
        let (_, copied) = files
            .iter()
            .find(|(p, _)| *p == format!("manifests/{name}"))
            .unwrap();
        assert_eq!(*copied, body, "{name}");
    }
}

#[test]
fn the_csv_is_named_after_the_workspace_version() {
    let csv = real_csv();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(csv["metadata"]["name"], format!("vpcnet.v{version}"));
    assert_eq!(csv["spec"]["version"], version);
    assert_eq!(csv["kind"], "ClusterServiceVersion");
    assert_eq!(csv["apiVersion"], "operators.coreos.com/v1alpha1");
}

#[test]
fn the_csv_has_what_the_catalog_validators_require() {
    let csv = real_csv();
    let spec = &csv["spec"];
    let ann = &csv["metadata"]["annotations"];
    assert_eq!(ann["capabilities"], "Basic Install");
    assert_eq!(ann["categories"], "Networking");
    // Full semver: the validators refuse `1.34`.
    let min = spec["minKubeVersion"].as_str().unwrap();
    assert_eq!(min.split('.').count(), 3, "{min}");
    assert!(min.split('.').all(|p| p.parse::<u32>().is_ok()), "{min}");
    let modes: Vec<(String, bool)> = spec["installModes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_string(),
                m["supported"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            ("OwnNamespace".to_string(), false),
            ("SingleNamespace".to_string(), false),
            ("MultiNamespace".to_string(), false),
            ("AllNamespaces".to_string(), true),
        ]
    );
    let icon = &spec["icon"][0];
    assert_eq!(icon["mediatype"], "image/svg+xml");
    assert_eq!(
        icon["base64data"],
        base64(inputs().icon_svg.as_bytes()),
        "the icon is config/olm/icon.svg"
    );
    for m in spec["maintainers"].as_array().unwrap() {
        let email = m["email"].as_str().unwrap();
        assert!(email.contains('@') && m["name"].is_string(), "{m}");
    }
    for l in spec["links"].as_array().unwrap() {
        assert!(l["url"].as_str().unwrap().starts_with("https://"), "{l}");
    }
    assert!(spec["provider"]["name"].is_string());
    assert!(
        ann.get("createdAt").is_none(),
        "the bundle must be reproducible"
    );
}

#[test]
fn every_owned_crd_has_an_example_and_a_conditions_descriptor() {
    let csv = real_csv();
    let examples: Vec<Value> = serde_json::from_str(
        csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let owned = csv["spec"]["customresourcedefinitions"]["owned"]
        .as_array()
        .unwrap();
    assert_eq!(owned.len(), vpcnet_api::crds::all().len());
    for crd in vpcnet_api::crds::all() {
        let kind = crd.spec.names.kind.as_str();
        let entry = owned
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} is not owned"));
        assert_eq!(entry["name"], crd.metadata.name.clone().unwrap());
        assert_eq!(entry["version"], "v1");
        assert!(entry["displayName"].is_string() && entry["description"].is_string());
        let conditions = entry["statusDescriptors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == "conditions")
            .unwrap_or_else(|| panic!("{kind}: no conditions descriptor"));
        assert_eq!(
            conditions["x-descriptors"],
            serde_json::json!(["urn:alm:descriptor:io.kubernetes.conditions"])
        );
        assert!(
            examples
                .iter()
                .any(|e| e["kind"] == kind && e["apiVersion"] == "vpcnet.io/v1"),
            "{kind}: no alm-examples entry"
        );
    }
    // Only owned kinds: the samples' Namespace stays out.
    for e in &examples {
        assert!(owned.iter().any(|o| o["kind"] == e["kind"]), "{e}");
    }
}

/// Every descriptor names a field the CRD's schema has.
#[test]
fn descriptor_paths_exist_in_the_schemas() {
    let csv = real_csv();
    for entry in csv["spec"]["customresourcedefinitions"]["owned"]
        .as_array()
        .unwrap()
    {
        let crd = vpcnet_api::crds::all()
            .into_iter()
            .find(|c| c.spec.names.kind == entry["kind"])
            .unwrap();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let root = &schema["openAPIV3Schema"]["properties"];
        for (list, top) in [("specDescriptors", "spec"), ("statusDescriptors", "status")] {
            for d in entry[list].as_array().into_iter().flatten() {
                let path = d["path"].as_str().unwrap();
                let mut at = &root[top];
                for part in path.split('.') {
                    at = &at["properties"][part];
                }
                assert!(
                    at.is_object(),
                    "{}: {top}.{path} is not in the schema",
                    entry["kind"]
                );
            }
        }
    }
}

fn operator_container(csv: &Value) -> &Value {
    &csv["spec"]["install"]["spec"]["deployments"][0]["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn every_container_requests_resources() {
    let csv = real_csv();
    for d in csv["spec"]["install"]["spec"]["deployments"]
        .as_array()
        .unwrap()
    {
        let pod = &d["spec"]["template"]["spec"];
        for c in ["initContainers", "containers"]
            .iter()
            .flat_map(|k| pod[*k].as_array().into_iter().flatten())
        {
            let req = &c["resources"]["requests"];
            assert!(
                req["cpu"].is_string() && req["memory"].is_string(),
                "{}: no cpu and memory requests",
                c["name"]
            );
        }
    }
}

#[test]
fn operand_images_are_related_images_the_operator_reads() {
    let csv = real_csv();
    let c = operator_container(&csv);
    let env = c["env"].as_array().unwrap();
    let pos = |name: &str| env.iter().position(|e| e["name"] == name);
    let value = |name: &str| {
        env[pos(name).unwrap()]["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let related: Vec<(String, String)> = csv["spec"]["relatedImages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["image"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let image = |name: &str| {
        related
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no related image {name}: {related:?}"))
            .1
            .clone()
    };
    for (suffix, var) in [("NATGW", "VPCNET_NATGW_IMAGE"), ("DNS", "VPCNET_DNS_IMAGE")] {
        let rel = format!("RELATED_IMAGE_{suffix}");
        // `$(VAR)` expands only variables defined earlier in the list.
        assert!(pos(&rel).unwrap() < pos(var).unwrap(), "{rel} after {var}");
        assert_eq!(value(var), format!("$({rel})"));
        assert_eq!(value(&rel), image(&suffix.to_lowercase()));
    }
    assert_eq!(value("RELATED_IMAGE_CNI"), image("cni"));
    assert!(image("cni").contains("vpcnet-cni"));
    assert!(image("natgw").contains("vpcnet-natgw"));
    assert!(image("dns").contains("vpcnet-dns"));
    assert_eq!(c["image"].as_str().unwrap(), image("operator"));
    assert_eq!(
        csv["metadata"]["annotations"]["containerImage"], c["image"],
        "containerImage names the operator image"
    );
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
}

#[test]
fn permissions_are_the_rules_bound_to_the_operator_service_account() {
    let inputs = inputs();
    let csv = csv(&inputs).unwrap();
    let install = &csv["spec"]["install"]["spec"];
    let rbac = documents(OPERATOR_RBAC, &inputs.operator_rbac).unwrap();
    let rules_of = |kind: &str| {
        rbac.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == "vpcnet-operator")
            .unwrap()["rules"]
            .clone()
    };
    assert_eq!(
        install["clusterPermissions"][0]["serviceAccountName"],
        "vpcnet-operator"
    );
    assert_eq!(
        install["clusterPermissions"][0]["rules"],
        rules_of("ClusterRole")
    );
    assert_eq!(
        install["permissions"][0]["serviceAccountName"],
        "vpcnet-operator"
    );
    assert_eq!(install["permissions"][0]["rules"], rules_of("Role"));
    let pod = &install["deployments"][0]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "vpcnet-operator");
}

#[test]
fn roles_bound_to_someone_else_are_not_granted() {
    let mut inputs = inputs();
    inputs.operator_rbac.push_str(
        "---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata: {name: other}\n\
         rules: [{apiGroups: [\"\"], resources: [persistentvolumes], verbs: [delete]}]\n\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRoleBinding\n\
         metadata: {name: other}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: other}\n\
         subjects: [{kind: ServiceAccount, name: someone-else, namespace: vpcnet-system}]\n",
    );
    let csv = csv(&inputs).unwrap();
    let rules = csv["spec"]["install"]["spec"]["clusterPermissions"][0]["rules"].to_string();
    assert!(!rules.contains("persistentvolumes"), "{rules}");
}

#[test]
fn a_kind_missing_from_the_base_or_the_samples_is_an_error() {
    let mut no_entry = inputs();
    no_entry.csv_base = no_entry.csv_base.replace("    Vip:\n", "    NotAKind:\n");
    let err = render(&no_entry).unwrap_err();
    assert!(err.contains("no entry for Vip"), "{err}");

    let mut no_sample = inputs();
    no_sample.samples.retain(|(name, _)| name != "09-vip.yaml");
    let err = render(&no_sample).unwrap_err();
    assert!(err.contains("no example of Vip"), "{err}");
}

#[test]
fn the_extra_manifests_are_the_cluster_roles_of_config_base() {
    let files = render(&inputs()).unwrap();
    let roles: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| p.ends_with("_clusterrole.yaml"))
        .collect();
    assert_eq!(
        roles,
        [
            "manifests/vpcnet-natgw_rbac.authorization.k8s.io_v1_clusterrole.yaml",
            "manifests/vpcnet-tenant-edit_rbac.authorization.k8s.io_v1_clusterrole.yaml",
            "manifests/vpcnet-tenant-view_rbac.authorization.k8s.io_v1_clusterrole.yaml",
        ]
    );
}

#[test]
fn the_dockerfile_labels_are_the_annotations() {
    let files = render(&inputs()).unwrap();
    let get = |p: &str| files.iter().find(|(n, _)| n == p).unwrap().1.clone();
    let ann: Value = serde_saphyr::from_str(&get("metadata/annotations.yaml")).unwrap();
    let ann = ann["annotations"].as_object().unwrap();
    let dockerfile = get("bundle.Dockerfile");
    let labels: Vec<(String, String)> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("LABEL "))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(labels.len(), ann.len());
    for (k, v) in &labels {
        assert_eq!(ann[k.as_str()].as_str(), Some(v.as_str()), "{k}");
    }
    assert_eq!(
        ann["operators.operatorframework.io.bundle.mediatype.v1"],
        "registry+v1"
    );
    assert_eq!(
        ann["operators.operatorframework.io.bundle.package.v1"],
        "vpcnet"
    );
    let channel = ann["operators.operatorframework.io.bundle.channel.default.v1"]
        .as_str()
        .unwrap();
    assert!(
        ["candidate", "fast", "stable"]
            .iter()
            .any(|p| channel.starts_with(p)),
        "{channel}"
    );
    assert!(dockerfile.contains("\nFROM scratch\n"));
    assert!(dockerfile.contains("COPY manifests /manifests/\nCOPY metadata /metadata/\n"));
}

#[test]
fn base64_is_rfc4648() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
    }
    assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
}

#[test]
fn the_catalog_index_names_the_package_channel_and_bundle() {
    let docs = documents("index", &catalog_index("0.1.0")).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["schema"], "olm.package");
    assert_eq!(docs[0]["name"], PACKAGE);
    assert_eq!(docs[0]["defaultChannel"], CHANNEL);
    assert_eq!(docs[1]["schema"], "olm.channel");
    assert_eq!(docs[1]["package"], PACKAGE);
    assert_eq!(docs[1]["entries"][0]["name"], "vpcnet.v0.1.0");
}
