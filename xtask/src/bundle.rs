//! `cargo xtask bundle`: the OLM (registry+v1) bundle in `bundle/`, generated
//! from what users apply without OLM, so the two cannot disagree:
//!
//! - `manifests/`: one ClusterServiceVersion, every CRD of `crds/` (copied
//!   byte for byte) and the ClusterRoles the operator binds or aggregates
//!   (`config/base/natgw-rbac.yaml`, `tenant-rbac.yaml`), one object a file;
//! - `metadata/annotations.yaml` and `bundle.Dockerfile` (the same keys as
//!   labels).
//!
//! The CSV is the catalog entry of `config/olm/csv-base.yaml` (with
//! `config/olm/icon.svg`) plus what is derived: its name and version from the
//! workspace version; the owned CRDs' names, versions and kinds from `crds/`
//! (and a conditions descriptor for each that has `status.conditions`);
//! `alm-examples` from the `vpcnet.io` objects of `config/samples/`; the
//! install strategy from the operator Deployment of `config/base/operator.yaml`
//! and, as `clusterPermissions` and `permissions`, the rules of the
//! ClusterRoles and Roles that `config/base/operator-rbac.yaml` binds to its
//! ServiceAccount.
//!
//! Operand images become `RELATED_IMAGE_<NAME>` env vars of the operator
//! container (and `spec.relatedImages`): the NAT gateway, DNS and CNI
//! images from the operator's `VPCNET_NATGW_IMAGE` / `VPCNET_DNS_IMAGE` /
//! `VPCNET_CNI_IMAGE`, which then read them back through Kubernetes' `$(VAR)`
//! expansion. The operator creates the CNI DaemonSet itself (a bundle cannot
//! carry one); its ServiceAccount's rules (`config/base/cni.yaml`) are a
//! second `clusterPermissions` entry. The operator container's `imagePullPolicy` becomes
//! `IfNotPresent` (config/base says `Never`: the box loads its images).
//!
//! [`render`] is pure (inputs to file contents); [`read_inputs`] and
//! [`write`] do the I/O.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};

/// The generated bundle, relative to the repository root.
pub const DIR: &str = "bundle";
/// The OLM package and its one channel (a name the validators' channel
/// convention accepts: `candidate`, `fast` or `stable` prefixes).
pub const PACKAGE: &str = "vpcnet";
pub const CHANNEL: &str = "candidate";
/// The checked-in inputs, relative to the repository root.
pub const CSV_BASE: &str = "config/olm/csv-base.yaml";
pub const ICON: &str = "config/olm/icon.svg";
pub const OPERATOR: &str = "config/base/operator.yaml";
pub const OPERATOR_RBAC: &str = "config/base/operator-rbac.yaml";
pub const CNI: &str = "config/base/cni.yaml";
/// The ServiceAccount of the CNI DaemonSet (`config/base/cni.yaml`).
pub const CNI_SERVICE_ACCOUNT: &str = "vpcnet-cni";
/// ClusterRoles shipped beside the CSV: the NAT gateways' role the operator
/// binds, the tenant roles aggregated into admin/edit/view.
pub const CLUSTER_ROLES: [&str; 2] = [
    "config/base/natgw-rbac.yaml",
    "config/base/tenant-rbac.yaml",
];
pub const CRDS: &str = "crds";
pub const SAMPLES: &str = "config/samples";
/// The CSV's file under `bundle/manifests/`.
pub const CSV_FILE: &str = "vpcnet.clusterserviceversion.yaml";

/// The operand images: `(RELATED_IMAGE_ suffix, operator env var reading it)`
/// (the operator runs the CNI DaemonSet itself, from `VPCNET_CNI_IMAGE`).
const OPERAND_ENV: [(&str, &str); 3] = [
    ("NATGW", "VPCNET_NATGW_IMAGE"),
    ("DNS", "VPCNET_DNS_IMAGE"),
    ("CNI", "VPCNET_CNI_IMAGE"),
];
const CONDITIONS_DESCRIPTOR: &str = "urn:alm:descriptor:io.kubernetes.conditions";

/// Everything the bundle is generated from, as file contents.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The workspace version (the CSV is `vpcnet.v<version>`).
    pub version: String,
    pub csv_base: String,
    pub icon_svg: String,
    pub operator: String,
    pub operator_rbac: String,
    pub cni: String,
    /// `(file name, contents)` of each [`CLUSTER_ROLES`] file.
    pub cluster_roles: Vec<(String, String)>,
    /// `(file name, contents)` of every `crds/*.yaml`, sorted by name.
    pub crds: Vec<(String, String)>,
    /// `(file name, contents)` of every `config/samples/*.yaml`, sorted.
    pub samples: Vec<(String, String)>,
}

/// `(path under bundle/, contents)` of every generated file, sorted.
pub type Files = Vec<(String, String)>;

/// Reads the inputs from the repository at `root`.
pub fn read_inputs(root: &Path) -> Result<Inputs, String> {
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel)).map_err(|e| format!("reading {rel}: {e}"))
    };
    let yaml_files = |rel: &str| -> Result<Vec<(String, String)>, String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join(rel))
            .map_err(|e| format!("reading {rel}: {e}"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| Ok((n.clone(), read(&format!("{rel}/{n}"))?)))
            .collect()
    };
    Ok(Inputs {
        version: env!("CARGO_PKG_VERSION").to_string(),
        csv_base: read(CSV_BASE)?,
        icon_svg: read(ICON)?,
        operator: read(OPERATOR)?,
        operator_rbac: read(OPERATOR_RBAC)?,
        cni: read(CNI)?,
        cluster_roles: CLUSTER_ROLES
            .iter()
            .map(|rel| Ok((file_name(rel), read(rel)?)))
            .collect::<Result<_, String>>()?,
        crds: yaml_files(CRDS)?,
        samples: yaml_files(SAMPLES)?,
    })
}

fn file_name(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).to_string()
}

/// Regenerates `bundle/` under `root`, removing files it no longer holds.
pub fn write(root: &Path) -> Result<(), String> {
    let files = render(&read_inputs(root)?)?;
    let dir = root.join(DIR);
    for existing in list(&dir)? {
        if !files.iter().any(|(p, _)| *p == existing) {
            std::fs::remove_file(dir.join(&existing))
                .map_err(|e| format!("removing {DIR}/{existing}: {e}"))?;
        }
    }
    for (rel, body) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, body).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    println!("wrote {} files to {}", files.len(), dir.display());
    Ok(())
}

/// Every file under `dir` (recursively), as `/`-separated relative paths,
/// sorted; empty if `dir` does not exist.
pub fn list(dir: &Path) -> Result<Vec<String>, String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), String> {
        for entry in std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else {
                let rel = path.strip_prefix(base).expect("under base");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// The bundle generated from `inputs`.
pub fn render(inputs: &Inputs) -> Result<Files, String> {
    let mut files: Files = Vec::new();
    files.push((format!("manifests/{CSV_FILE}"), csv_yaml(inputs)?));
    for (name, body) in &inputs.crds {
        files.push((format!("manifests/{name}"), body.clone()));
    }
    for (source, body) in &inputs.cluster_roles {
        for doc in documents(source, body)? {
            if doc["kind"] != "ClusterRole" {
                return Err(format!("{source}: {} is not a ClusterRole", describe(&doc)));
            }
            let name = doc["metadata"]["name"]
                .as_str()
                .ok_or_else(|| format!("{source}: a ClusterRole without a name"))?;
            files.push((
                format!("manifests/{name}_rbac.authorization.k8s.io_v1_clusterrole.yaml"),
                format!(
                    "# Generated by `cargo xtask bundle` from config/base/{source}. Do not edit.\n{}",
                    to_yaml(&doc)
                ),
            ));
        }
    }
    files.push(("metadata/annotations.yaml".into(), annotations_yaml()));
    files.push(("bundle.Dockerfile".into(), dockerfile()));
    files.sort();
    for pair in files.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(format!("two objects would be written to {}", pair[0].0));
        }
    }
    Ok(files)
}

/// The bundle's annotations: `(key, value)`, in the order written.
pub fn annotations() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "operators.operatorframework.io.bundle.mediatype.v1",
            "registry+v1",
        ),
        (
            "operators.operatorframework.io.bundle.manifests.v1",
            "manifests/",
        ),
        (
            "operators.operatorframework.io.bundle.metadata.v1",
            "metadata/",
        ),
        ("operators.operatorframework.io.bundle.package.v1", PACKAGE),
        ("operators.operatorframework.io.bundle.channels.v1", CHANNEL),
        (
            "operators.operatorframework.io.bundle.channel.default.v1",
            CHANNEL,
        ),
    ]
}

fn annotations_yaml() -> String {
    let mut out = String::from(
        "# Generated by `cargo xtask bundle`. Do not edit.\n\
         # Keep in step with the labels of bundle.Dockerfile (generated together).\n\
         annotations:\n",
    );
    for (k, v) in annotations() {
        out.push_str(&format!("  {k}: {v}\n"));
    }
    out
}

fn dockerfile() -> String {
    let mut out = String::from(
        "# Generated by `cargo xtask bundle`. Do not edit.\n\
         # The bundle image, from the repository root:\n\
         #   docker build -f bundle/bundle.Dockerfile -t <bundle image> bundle\n\
         FROM scratch\n\n",
    );
    for (k, v) in annotations() {
        out.push_str(&format!("LABEL {k}={v}\n"));
    }
    out.push_str("\nCOPY manifests /manifests/\nCOPY metadata /metadata/\n");
    out
}

/// The ClusterServiceVersion as a JSON value.
pub fn csv(inputs: &Inputs) -> Result<Value, String> {
    let base = parse_one(CSV_BASE, &inputs.csv_base)?;
    let deployment = operator_deployment(inputs)?;
    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .ok_or_else(|| format!("{OPERATOR}: the Deployment names no serviceAccountName"))?
        .to_string();
    let rbac = documents(OPERATOR_RBAC, &inputs.operator_rbac)?;
    let cluster_rules = bound_rules(&rbac, "ClusterRoleBinding", "ClusterRole", &sa)?;
    let rules = bound_rules(&rbac, "RoleBinding", "Role", &sa)?;
    // The CNI DaemonSet the operator creates runs as its own ServiceAccount,
    // which OLM creates with these rules.
    let cni_docs = documents(CNI, &inputs.cni)?;
    let cni_rules = bound_rules(
        &cni_docs,
        "ClusterRoleBinding",
        "ClusterRole",
        CNI_SERVICE_ACCOUNT,
    )?;
    let (spec, images) = install_spec(&deployment)?;
    let operator_image = images[0].1.clone();

    let mut annotations = base["metadata"]["annotations"]
        .as_object()
        .cloned()
        .ok_or_else(|| format!("{CSV_BASE}: no metadata.annotations"))?;
    annotations.insert("alm-examples".into(), Value::String(alm_examples(inputs)?));
    annotations.insert("containerImage".into(), Value::String(operator_image));

    let mut out = base["spec"]
        .as_object()
        .cloned()
        .ok_or_else(|| format!("{CSV_BASE}: no spec"))?;
    let owned = owned_crds(inputs, out.remove("owned").unwrap_or(Value::Null))?;
    out.insert("version".into(), Value::String(inputs.version.clone()));
    out.insert(
        "icon".into(),
        json!([{"base64data": base64(inputs.icon_svg.as_bytes()), "mediatype": "image/svg+xml"}]),
    );
    out.insert(
        "customresourcedefinitions".into(),
        json!({ "owned": owned }),
    );
    out.insert(
        "install".into(),
        json!({
            "strategy": "deployment",
            "spec": {
                "deployments": [{
                    "name": deployment["metadata"]["name"],
                    "label": deployment["metadata"]["labels"],
                    "spec": spec,
                }],
                "clusterPermissions": [
                    {"serviceAccountName": sa, "rules": cluster_rules},
                    {"serviceAccountName": CNI_SERVICE_ACCOUNT, "rules": cni_rules},
                ],
                "permissions": [{"serviceAccountName": sa, "rules": rules}],
            },
        }),
    );
    out.insert(
        "relatedImages".into(),
        Value::Array(
            images
                .iter()
                .map(|(name, image)| json!({"name": name, "image": image}))
                .collect(),
        ),
    );
    Ok(json!({
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {
            "name": format!("{PACKAGE}.v{}", inputs.version),
            "annotations": annotations,
        },
        "spec": out,
    }))
}

fn csv_yaml(inputs: &Inputs) -> Result<String, String> {
    Ok(format!(
        "# Generated by `cargo xtask bundle` from config/olm/, config/base/, config/samples/\n\
         # and crds/. Do not edit.\n{}",
        to_yaml(&csv(inputs)?)
    ))
}

/// The one Deployment of `config/base/operator.yaml`.
fn operator_deployment(inputs: &Inputs) -> Result<Value, String> {
    let docs = documents(OPERATOR, &inputs.operator)?;
    let mut deployments = docs.into_iter().filter(|d| d["kind"] == "Deployment");
    match (deployments.next(), deployments.next()) {
        (Some(d), None) => Ok(d),
        _ => Err(format!("{OPERATOR}: want exactly one Deployment")),
    }
}

/// The operator Deployment's spec as the CSV installs it, and the images
/// `(relatedImages name, image)`, the operator's first.
fn install_spec(deployment: &Value) -> Result<(Value, Vec<(String, String)>), String> {
    let mut spec = deployment["spec"].clone();
    let containers = spec["template"]["spec"]["containers"]
        .as_array_mut()
        .ok_or_else(|| format!("{OPERATOR}: no containers"))?;
    if containers.len() != 1 {
        return Err(format!(
            "{OPERATOR}: want one container, found {}",
            containers.len()
        ));
    }
    let container = containers[0]
        .as_object_mut()
        .ok_or_else(|| format!("{OPERATOR}: a container is not a mapping"))?;
    let operator_image = container
        .get("image")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{OPERATOR}: the operator container has no image"))?
        .to_string();
    // The box loads its images into containerd and never pulls; a cluster
    // installing from a catalog must.
    container.insert("imagePullPolicy".into(), json!("IfNotPresent"));
    let env = container
        .get_mut("env")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| format!("{OPERATOR}: the operator container has no env"))?;
    if env.iter().any(|e| {
        e["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("RELATED_IMAGE_"))
    }) {
        return Err(format!(
            "{OPERATOR}: RELATED_IMAGE_ variables are the generator's"
        ));
    }
    let mut images = vec![("operator".to_string(), operator_image)];
    let mut related = Vec::new();
    for (suffix, var) in OPERAND_ENV {
        let entry = env
            .iter_mut()
            .find(|e| e["name"] == var)
            .ok_or_else(|| format!("{OPERATOR}: the operator container has no {var}"))?;
        let image = entry["value"]
            .as_str()
            .ok_or_else(|| format!("{OPERATOR}: {var} has no literal value"))?
            .to_string();
        entry["value"] = json!(format!("$(RELATED_IMAGE_{suffix})"));
        related.push(json!({"name": format!("RELATED_IMAGE_{suffix}"), "value": image}));
        images.push((suffix.to_lowercase(), image));
    }
    // First in the list: `$(VAR)` expands only variables defined before it.
    env.splice(0..0, related);
    Ok((spec, images))
}

/// The rules of every `role_kind` that a `binding_kind` of `objects` binds
/// to ServiceAccount `sa`, in the order the bindings appear.
fn bound_rules(
    objects: &[Value],
    binding_kind: &str,
    role_kind: &str,
    sa: &str,
) -> Result<Value, String> {
    let mut rules = Vec::new();
    for binding in objects.iter().filter(|o| o["kind"] == binding_kind) {
        let binds_sa = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa);
        if !binds_sa || binding["roleRef"]["kind"] != role_kind {
            continue;
        }
        let name = &binding["roleRef"]["name"];
        let role = objects
            .iter()
            .find(|o| o["kind"] == role_kind && o["metadata"]["name"] == *name)
            .ok_or_else(|| format!("{OPERATOR_RBAC}: {binding_kind} binds {role_kind} {name}, which it does not define"))?;
        rules.extend(role["rules"].as_array().cloned().unwrap_or_default());
    }
    if rules.is_empty() {
        return Err(format!(
            "{OPERATOR_RBAC}: no {role_kind} rules are bound to ServiceAccount {sa}"
        ));
    }
    Ok(Value::Array(rules))
}

/// The CSV's owned CRDs, in the order of `crds/`: each CRD's name, storage
/// version and kind with the base's display name, description and
/// descriptors, and the conditions descriptor where the status has them.
fn owned_crds(inputs: &Inputs, base: Value) -> Result<Vec<Value>, String> {
    let mut base = match base {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => return Err(format!("{CSV_BASE}: spec.owned must map kinds")),
    };
    let mut owned = Vec::new();
    for (file, body) in &inputs.crds {
        let crd = parse_one(file, body)?;
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .ok_or_else(|| format!("crds/{file}: no spec.names.kind"))?
            .to_string();
        let version = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["storage"] == true)
            .ok_or_else(|| format!("crds/{file}: no storage version"))?;
        let mut entry = base
            .remove(&kind)
            .and_then(|v| v.as_object().cloned())
            .ok_or_else(|| format!("{CSV_BASE}: spec.owned has no entry for {kind}"))?;
        entry.insert("name".into(), crd["metadata"]["name"].clone());
        entry.insert("version".into(), version["name"].clone());
        entry.insert("kind".into(), Value::String(kind.clone()));
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"];
        if status["properties"]["conditions"].is_object() {
            let descriptors = entry
                .entry("statusDescriptors")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .ok_or_else(|| format!("{CSV_BASE}: {kind}.statusDescriptors is not a list"))?;
            descriptors.insert(
                0,
                json!({
                    "path": "conditions",
                    "displayName": "Conditions",
                    "description": format!("The state of this {kind}: Ready, with a reason and a message."),
                    "x-descriptors": [CONDITIONS_DESCRIPTOR],
                }),
            );
        }
        owned.push(Value::Object(entry));
    }
    if let Some(kind) = base.keys().next() {
        return Err(format!(
            "{CSV_BASE}: spec.owned names {kind}, which crds/ does not define"
        ));
    }
    Ok(owned)
}

/// The `alm-examples` annotation: a JSON list of every `vpcnet.io` object
/// of the samples, in file order; every owned kind must have one.
fn alm_examples(inputs: &Inputs) -> Result<String, String> {
    let group = format!("{}/", vpcnet_api::GROUP);
    let mut examples = Vec::new();
    for (file, body) in &inputs.samples {
        for doc in documents(file, body)? {
            if doc["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with(&group))
            {
                examples.push(doc);
            }
        }
    }
    for (file, body) in &inputs.crds {
        let crd = parse_one(file, body)?;
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or("?");
        if !examples.iter().any(|e| e["kind"] == kind) {
            return Err(format!("{SAMPLES}/ has no example of {kind}"));
        }
    }
    serde_json::to_string_pretty(&examples).map_err(|e| e.to_string())
}

/// Every non-empty YAML document of `body`.
pub fn documents(source: &str, body: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> =
        serde_saphyr::from_str_multiple(body).map_err(|e| format!("{source}: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn parse_one(source: &str, body: &str) -> Result<Value, String> {
    let mut docs = documents(source, body)?;
    if docs.len() != 1 {
        return Err(format!(
            "{source}: want one YAML document, found {}",
            docs.len()
        ));
    }
    Ok(docs.remove(0))
}

fn describe(doc: &Value) -> String {
    format!(
        "{} {}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).expect("a JSON value always serialises")
}

/// The file-based catalog (FBC) entries around the rendered bundle: the
/// package and its one channel holding `vpcnet.v<version>`.
pub fn catalog_index(version: &str) -> String {
    format!(
        "---\nschema: olm.package\nname: {PACKAGE}\ndefaultChannel: {CHANNEL}\n\
         ---\nschema: olm.channel\npackage: {PACKAGE}\nname: {CHANNEL}\nentries:\n  - name: {PACKAGE}.v{version}\n"
    )
}

/// Checks the checked-in `bundle/` with the real tools, both built by
/// `e2e/box/build-*.sh`: `olm-validate` (operator-framework/api's bundle,
/// CSV and CRD validators and the operatorframework optional suite), then
/// `opm render` of the bundle directory into a file-based catalog with
/// its package and channel, and `opm validate` of that catalog.
pub fn validate(root: &Path) -> Result<(), String> {
    let bundle = root.join(DIR);
    let olm_validate = built_tool(root, "build-olm-validate.sh")?;
    println!("$ olm-validate {DIR}");
    crate::shell::run(Command::new(&olm_validate).arg(&bundle))?;

    let opm = built_tool(root, "build-opm.sh")?;
    let catalog = crate::shell::target_dir().join("olm-catalog");
    let _ = std::fs::remove_dir_all(&catalog);
    let package_dir = catalog.join(PACKAGE);
    std::fs::create_dir_all(&package_dir)
        .map_err(|e| format!("creating {}: {e}", package_dir.display()))?;
    println!("$ opm render {DIR} -o yaml");
    let out = Command::new(&opm)
        .args(["render", "-o", "yaml"])
        .arg(&bundle)
        .output()
        .map_err(|e| format!("starting {}: {e}", opm.display()))?;
    if !out.status.success() {
        return Err(format!(
            "opm render {DIR} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rendered = String::from_utf8(out.stdout).map_err(|e| format!("opm render: {e}"))?;
    let docs = documents("opm render", &rendered)?;
    let names: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["schema"].as_str().unwrap_or("?"),
                d["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    println!("rendered: {}", names.join(", "));
    let version = documents(
        CSV_FILE,
        &std::fs::read_to_string(bundle.join("manifests").join(CSV_FILE))
            .map_err(|e| format!("reading the CSV: {e}"))?,
    )?
    .first()
    .and_then(|c| c["spec"]["version"].as_str().map(str::to_string))
    .ok_or_else(|| "the CSV has no spec.version".to_string())?;
    let file = package_dir.join("catalog.yaml");
    std::fs::write(&file, format!("{}{rendered}", catalog_index(&version)))
        .map_err(|e| format!("writing {}: {e}", file.display()))?;
    println!("$ opm validate {}", catalog.display());
    crate::shell::run(Command::new(&opm).arg("validate").arg(&catalog))?;
    println!("opm validate: the catalog of {PACKAGE}.v{version} is valid");
    Ok(())
}

/// The path of a Go tool a `e2e/box/<script>` has built, or an error naming
/// the script.
fn built_tool(root: &Path, script: &str) -> Result<PathBuf, String> {
    let path = root.join("e2e/box").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .arg("--check")
        .output()
        .map_err(|e| format!("running {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Standard base64 (RFC 4648, padded).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
