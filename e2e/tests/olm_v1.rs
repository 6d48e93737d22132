//! Installing with the real OLM v1 (`cargo xtask olm-e2e`; not in CI: it
//! needs catalogd and operator-controller built and running on the box,
//! `e2e/box/build-olmv1.sh` and `e2e/box/olmv1.sh up`):
//!
//! 1. the bundle (`bundle/`) becomes a bundle image in the box's loopback
//!    registry. OLM v1's ClusterExtension (v1.2.0) has no way to give the
//!    operator settings (OLM v0's Subscription `config.env`), so the image is
//!    a build of the bundle for this cluster: its CSV carries the box's
//!    settings (`config/box/operator-box.yaml`), as a cluster's own catalog
//!    would;
//! 2. `opm render` makes a file-based catalog of it (package `vpcnet`, its
//!    channel), `opm validate` checks it, and it becomes a catalog image;
//! 3. a ClusterCatalog serves it (catalogd) and a ClusterExtension installs
//!    the package into namespace `operators` (operator-controller), with an
//!    installer ServiceAccount bound to `cluster-admin`;
//! 4. the operator comes up, creates its CNI DaemonSet in `operators`, and
//!    the seed walk-through runs against it;
//! 5. deleting the ClusterExtension uninstalls it; the box's own install,
//!    removed whole before (OLM v1 refuses to adopt objects it did not
//!    create: the CRDs, the shared ClusterRoles), comes back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vpcnet_e2e::box_env;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::olm;
use vpcnet_e2e::other_install::{BoxInstallAside, operator_and_cni_ready, seed_walkthrough};
use vpcnet_test_support::run;

const NS: &str = "operators";
const CATALOG: &str = "vpcnet-box";
const EXTENSION: &str = "vpcnet";
const INSTALLER: &str = "vpcnet-installer";

/// The path a box build script prints with `--check` (it fails if the tool
/// is not built).
fn built(script: &str) -> PathBuf {
    let root = vpcnet_e2e::repo_root();
    PathBuf::from(
        run(Command::new("bash")
            .arg(root.join("e2e/box").join(script))
            .arg("--check"))
        .trim(),
    )
}

/// Pushes the files under `dir` (its subdirectories `subdirs`) as a
/// one-layer image `reference` with `labels`.
fn push_image(
    crane: &Path,
    dir: &Path,
    subdirs: &[&str],
    reference: &str,
    labels: &[(String, String)],
) {
    let layer = dir.join("layer.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(&layer)
        .args(subdirs));
    run(Command::new(crane)
        .args(["append", "--insecure", "-t", reference, "-f"])
        .arg(&layer));
    let mut mutate = Command::new(crane);
    mutate.args(["mutate", "--insecure", reference]);
    for (k, v) in labels {
        mutate.args(["--label", &format!("{k}={v}")]);
    }
    run(&mut mutate);
    let _ = std::fs::remove_file(&layer);
}

/// `bundle/` with the box's settings in its CSV, under `dir`.
fn box_bundle(dir: &Path) -> (String, Vec<(String, String)>) {
    let root = vpcnet_e2e::repo_root();
    let env = olm::env_overrides(
        &std::fs::read_to_string(root.join("config/box/operator-box.yaml"))
            .expect("operator-box.yaml"),
    );
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::create_dir_all(dir.join("metadata")).unwrap();
    let mut version = String::new();
    for entry in std::fs::read_dir(root.join("bundle/manifests")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut doc: Value = serde_saphyr::from_str(&text).unwrap();
        let out = dir.join("manifests").join(path.file_name().unwrap());
        if doc["kind"] == "ClusterServiceVersion" {
            olm::csv_with_env(&mut doc, &env);
            version = doc["spec"]["version"]
                .as_str()
                .expect("CSV version")
                .to_string();
            // JSON is YAML: OLM reads either.
            std::fs::write(out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        } else {
            std::fs::write(out, text).unwrap();
        }
    }
    let annotations =
        std::fs::read_to_string(root.join("bundle/metadata/annotations.yaml")).unwrap();
    std::fs::write(dir.join("metadata/annotations.yaml"), &annotations).unwrap();
    let doc: Value = serde_saphyr::from_str(&annotations).unwrap();
    let labels = doc["annotations"]
        .as_object()
        .expect("annotations")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    (version, labels)
}

/// Deletes the ClusterExtension (OLM uninstalls what it installed) and the
/// ClusterCatalog when dropped.
struct OlmObjects {
    k: Kubectl,
}

impl Drop for OlmObjects {
    fn drop(&mut self) {
        for (kind, name) in [("clusterextension", EXTENSION), ("clustercatalog", CATALOG)] {
            let _ = self.k.run(&[
                "delete",
                kind,
                name,
                "--ignore-not-found",
                "--wait=true",
                "--timeout=180s",
            ]);
        }
        let _ = self.k.run(&[
            "delete",
            "clusterrolebinding",
            INSTALLER,
            "--ignore-not-found",
        ]);
    }
}

fn wait_for(k: &Kubectl, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    k.eventually(timeout, what, &mut f);
    t.elapsed()
}

fn condition(k: &Kubectl, kind: &str, name: &str, type_: &str) -> String {
    k.run(&[
        "get",
        kind,
        name,
        "-o",
        &format!("jsonpath={{.status.conditions[?(@.type==\"{type_}\")].status}}"),
    ])
    .stdout
}

#[test]
#[ignore = "needs OLM v1 on the box: cargo xtask olm-e2e"]
fn olm_v1_installs_vpcnet_from_a_catalog_and_the_seed_walkthrough_runs() {
    let k = Kubectl::for_box();
    let olm_dir = built("build-olmv1.sh");
    let crane = olm_dir.join("bin/crane");
    let opm = built("build-opm.sh");
    let registry = format!("127.0.0.1:{}", box_env::get("OLMV1_REGISTRY_PORT"));
    let work = vpcnet_e2e::box_dir().join("olmv1/e2e");
    let _ = std::fs::remove_dir_all(&work);

    // 1. The bundle image.
    let (version, labels) = box_bundle(&work.join("bundle"));
    let bundle_ref = format!("{registry}/vpcnet-bundle:v{version}");
    push_image(
        &crane,
        &work.join("bundle"),
        &["manifests", "metadata"],
        &bundle_ref,
        &labels,
    );
    println!("pushed {bundle_ref}");

    // 2. The catalog image.
    let rendered =
        run(Command::new(&opm).args(["render", &bundle_ref, "--use-http", "-o", "yaml"]));
    let package = "vpcnet";
    let channel = labels
        .iter()
        .find(|(k, _)| k == "operators.operatorframework.io.bundle.channel.default.v1")
        .map(|(_, v)| v.clone())
        .expect("a default channel");
    let configs = work.join("catalog/configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(
        configs.join("catalog.yaml"),
        format!(
            "---\nschema: olm.package\nname: {package}\ndefaultChannel: {channel}\n---\n\
             schema: olm.channel\npackage: {package}\nname: {channel}\nentries:\n  - name: vpcnet.v{version}\n{rendered}"
        ),
    )
    .unwrap();
    run(Command::new(&opm).arg("validate").arg(&configs));
    let catalog_ref = format!("{registry}/vpcnet-catalog:latest");
    push_image(
        &crane,
        &work.join("catalog"),
        &["configs"],
        &catalog_ref,
        &[(
            "operators.operatorframework.io.index.configs.v1".into(),
            "/configs".into(),
        )],
    );
    println!("pushed {catalog_ref} (channel {channel}, vpcnet.v{version})");

    // 3. Install with OLM v1.
    let aside = BoxInstallAside::remove(&k, NS);
    let objects = OlmObjects { k: k.clone() };
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n  labels:\n    \
         pod-security.kubernetes.io/enforce: privileged\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {INSTALLER}, namespace: {NS}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {INSTALLER}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\n\
         subjects: [{{kind: ServiceAccount, name: {INSTALLER}, namespace: {NS}}}]\n---\n\
         apiVersion: olm.operatorframework.io/v1\nkind: ClusterCatalog\nmetadata:\n  name: {CATALOG}\n  labels: {{olm.operatorframework.io/metadata.name: {CATALOG}}}\n\
         spec:\n  source:\n    type: Image\n    image: {{ref: '{catalog_ref}'}}\n"
    ));
    let serving = wait_for(
        &k,
        "the ClusterCatalog serves",
        Duration::from_secs(120),
        || condition(&k, "clustercatalog", CATALOG, "Serving") == "True",
    );
    println!(
        "ClusterCatalog {CATALOG} Serving after {:.1} s",
        serving.as_secs_f64()
    );
    k.must_apply(&format!(
        "apiVersion: olm.operatorframework.io/v1\nkind: ClusterExtension\nmetadata: {{name: {EXTENSION}}}\n\
         spec:\n  namespace: {NS}\n  serviceAccount: {{name: {INSTALLER}}}\n  source:\n    sourceType: Catalog\n    \
         catalog:\n      packageName: {package}\n      selector: {{matchLabels: {{olm.operatorframework.io/metadata.name: {CATALOG}}}}}\n"
    ));
    let installed = wait_for(
        &k,
        "the ClusterExtension is installed",
        Duration::from_secs(300),
        || condition(&k, "clusterextension", EXTENSION, "Installed") == "True",
    );
    let bundle = k.ok(&[
        "get",
        "clusterextension",
        EXTENSION,
        "-o",
        "jsonpath={.status.install.bundle.name}",
    ]);
    assert_eq!(bundle, format!("vpcnet.v{version}"));
    println!(
        "ClusterExtension {EXTENSION} Installed ({bundle}) after {:.1} s",
        installed.as_secs_f64()
    );

    // 4. The operator, its CNI DaemonSet, and the walk-through.
    let t = Instant::now();
    operator_and_cni_ready(&k, NS, Duration::from_secs(180), Duration::from_secs(180))
        .expect("the operator and its CNI DaemonSet in operators");
    println!(
        "operator and CNI DaemonSet ready {:.1} s after Installed",
        t.elapsed().as_secs_f64()
    );
    let targets = k.ok(&[
        "-n",
        NS,
        "get",
        "deployment",
        "vpcnet-operator",
        "-o",
        "jsonpath={.spec.template.metadata.annotations}",
    ]);
    assert!(
        targets.contains("olm.targetNamespaces"),
        "installed by OLM: {targets}"
    );
    let t = Instant::now();
    seed_walkthrough(&k, NS, "e2e-olmv1");
    println!(
        "seed walk-through (SNAT, DNAT, FIP) passed in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 5. Uninstall; the box's own install comes back.
    let t = Instant::now();
    drop(objects);
    assert!(
        !k.run(&["-n", NS, "get", "deployment", "vpcnet-operator"])
            .ok,
        "uninstalling the ClusterExtension removes the operator"
    );
    println!("uninstalled in {:.1} s", t.elapsed().as_secs_f64());
    let terminating: Vec<String> = k
        .run(&[
            "get",
            "crd",
            "-o",
            "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name} {end}",
        ])
        .stdout
        .split_whitespace()
        .filter(|n| n.ends_with(".vpcnet.io"))
        .map(str::to_string)
        .collect();
    println!("CRDs left terminating (objects with the operator's finalizer): {terminating:?}");
    drop(aside);
    assert!(
        k.run(&["-n", "vpcnet-system", "get", "daemonset", "vpcnet-cni"])
            .ok
    );
}
