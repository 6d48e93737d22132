//! GitOps-clean: every sample of `config/samples/` applied as Argo CD applies
//! it (server-side apply under Argo's field manager, with Argo's tracking
//! label and annotation) stays in sync once the operator has done its work:
//! `kubectl diff --server-side` under the same manager shows nothing,
//! `metadata.generation` has not moved, the operator's field managers own
//! only `status` and its finalizer, and the children the operator creates
//! carry neither Argo's tracking label nor its annotation.
//!
//! The samples are renamed to this suite's own names (the box is shared);
//! the shared external network (`03-external-subnet.yaml`), which the NAT
//! suites apply and leave in place, is applied unchanged, without tracking
//! marks, and is not deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vpcnet_api::condition;
use vpcnet_api::contract::OPERATOR_MANAGER;
use vpcnet_e2e::cluster::{Cleanup, OPERATOR_NS, TESTAPP_IMAGE};
use vpcnet_e2e::kubectl::Kubectl;

/// The suite's tenant: namespace, VPC, subnet and NAT gateway names.
const T: &str = "e2e-gitops";
/// Argo CD's field manager for server-side apply.
const ARGO: &str = "argocd-controller";
/// Argo CD's label-based tracking (`application.instanceLabelKey`).
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Argo CD's annotation-based tracking.
const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// The shared sample that keeps its name and is not tracked or deleted.
const SHARED: &str = "03-external-subnet.yaml";
/// The operator's writers: its own manager, the NAT gateway agent's, and
/// kube-runtime's finalizer patch, which names no manager and so is
/// recorded as `unknown`.
const OPERATOR_MANAGERS: [&str; 3] = [OPERATOR_MANAGER, "vpcnet-natgw", "unknown"];
/// Kinds the operator of this tree reports `Ready` for; the others
/// (SecurityGroup) are applied and checked, not waited for.
const WITH_READY: [&str; 10] = [
    "Vpc",
    "Subnet",
    "VpcNatGateway",
    "IptablesEIP",
    "IptablesSnatRule",
    "IptablesDnatRule",
    "IptablesFIPRule",
    "Vip",
    "SwitchLBRule",
    "VpcDns",
];
const READY: Duration = Duration::from_secs(150);

/// One sample object as applied.
struct Applied {
    file: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    /// The JSON manifest handed to kubectl.
    path: PathBuf,
    generation: Option<i64>,
    uid: String,
}

impl Applied {
    fn what(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{} ({})", self.kind, self.name, self.file),
            None => format!("{} {} ({})", self.kind, self.name, self.file),
        }
    }

    fn get(&self, k: &Kubectl) -> Value {
        let mut args = vec![
            "get",
            &self.kind,
            &self.name,
            "-o",
            "json",
            "--show-managed-fields",
        ];
        if let Some(ns) = &self.namespace {
            args.extend(["-n", ns]);
        }
        serde_json::from_str(&k.ok(&args)).unwrap()
    }
}

/// The samples' own names, mapped to this suite's.
fn rename(text: &str) -> String {
    text.replace("mail263-dns", &format!("{T}-dns"))
        .replace("mail263", T)
        .replace("sukai263", T)
        .replace("vmservers", T)
        .replace("natgw", T)
        // The samples' fixed EIPs, moved to addresses no other suite uses.
        .replace("172.16.3.208", "172.16.3.248")
        .replace("172.16.3.203", "172.16.3.243")
}

/// Every object of every sample file, in file order: (file, object).
fn samples() -> Vec<(String, Value)> {
    let dir = vpcnet_e2e::repo_root().join("config/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if file == SHARED { text } else { rename(&text) };
        for doc in text.split("\n---\n") {
            let obj: Value = serde_saphyr::from_str(doc)
                .unwrap_or_else(|e| panic!("{file}: not one YAML object: {e}"));
            if obj.is_object() {
                out.push((file.clone(), obj));
            }
        }
    }
    out
}

/// Argo's tracking marks on `obj` (application `T`).
fn track(obj: &mut Value) {
    let kind = obj["kind"].as_str().unwrap().to_string();
    let group = obj["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let meta = obj["metadata"].as_object_mut().unwrap();
    meta.entry("labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .unwrap()
        .insert(INSTANCE_LABEL.into(), json!(T));
    meta.entry("annotations")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .unwrap()
        .insert(
            TRACKING_ANNOTATION.into(),
            json!(format!("{T}:{group}/{kind}:{ns}/{name}")),
        );
}

/// The kubectl resource of `obj`'s kind (`vpc.vpcnet.io`, `namespace`).
fn resource(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap().to_lowercase();
    match obj["apiVersion"].as_str().unwrap().rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}

/// `kubectl <verb> --server-side --field-manager=ARGO -f path`.
fn ssa(k: &Kubectl, verb: &str, path: &Path, extra: &[&str]) -> vpcnet_e2e::kubectl::Output {
    let p = path.to_string_lossy();
    let manager = format!("--field-manager={ARGO}");
    let mut args = vec![verb, "--server-side", manager.as_str(), "-f", &p];
    args.extend_from_slice(extra);
    k.run(&args)
}

/// The field paths of a `fieldsV1` tree (`f:spec.f:vpc`, ...).
fn paths(fields: &Value, prefix: &str, out: &mut Vec<String>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    if map.is_empty() && !prefix.is_empty() {
        out.push(prefix.to_string());
    }
    for (k, v) in map {
        if k == "." {
            continue;
        }
        let p = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        paths(v, &p, out);
    }
}

/// What a manager other than Argo's owns beyond `status` and finalizers.
fn foreign_fields(obj: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    for entry in obj["metadata"]["managedFields"].as_array().unwrap() {
        let manager = entry["manager"].as_str().unwrap_or("");
        if manager == ARGO {
            continue;
        }
        let mut owned = Vec::new();
        paths(&entry["fieldsV1"], "", &mut owned);
        let status = entry["subresource"] == "status";
        for p in owned {
            let fine = if status {
                p.starts_with("f:status")
            } else {
                p.starts_with("f:metadata.f:finalizers")
            };
            if !fine {
                bad.push(format!(
                    "{manager} ({}{}) owns {p}",
                    entry["operation"].as_str().unwrap_or(""),
                    if status { ", status" } else { "" }
                ));
            }
        }
    }
    bad
}

/// Objects (of `kinds`, in `ns` or cluster-wide) owned by one of `owners`,
/// and what those own in turn.
fn children(k: &Kubectl, owners: &BTreeSet<String>) -> Vec<Value> {
    let mut found: Vec<Value> = Vec::new();
    let mut uids = owners.clone();
    let mut lists: Vec<Value> = Vec::new();
    for ns in [T, OPERATOR_NS] {
        lists.push(
            serde_json::from_str(&k.ok(&[
                "get",
                "statefulsets,pods,serviceaccounts,configmaps,roles,rolebindings,services,endpointslices",
                "-n",
                ns,
                "-o",
                "json",
            ]))
            .unwrap(),
        );
    }
    lists.push(
        serde_json::from_str(&k.ok(&["get", "clusterrolebindings,clusterroles", "-o", "json"]))
            .unwrap(),
    );
    let items: Vec<Value> = lists
        .into_iter()
        .flat_map(|l| l["items"].as_array().cloned().unwrap_or_default())
        .collect();
    // Two rounds: the operator's children, then theirs (a gateway's pod,
    // a Service's EndpointSlices).
    for _ in 0..2 {
        for item in &items {
            let uid = item["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let owned = item["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| uids.contains(r["uid"].as_str().unwrap_or("")))
                });
            if owned && !uids.contains(&uid) {
                found.push(item.clone());
            }
        }
        for item in &found {
            uids.insert(item["metadata"]["uid"].as_str().unwrap_or("").to_string());
        }
    }
    found
}

fn wait_ready(k: &Kubectl, a: &Applied) {
    let what = format!("{}.{}/{}", a.kind.to_lowercase(), vpcnet_api::GROUP, a.name);
    let mut args = vec![
        "wait".to_string(),
        format!("--for=condition={}", condition::READY),
        format!("--timeout={}s", READY.as_secs()),
        what,
    ];
    if let Some(ns) = &a.namespace {
        args.extend(["-n".into(), ns.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = k.run(&args);
    if !out.ok {
        panic!(
            "{} not Ready: {}\n{}",
            a.what(),
            out.stderr,
            serde_json::to_string_pretty(&a.get(k)["status"]).unwrap()
        );
    }
}

#[test]
fn samples_applied_the_argo_cd_way_stay_in_sync() {
    let started = Instant::now();
    let k = Kubectl::for_box();
    let dir = std::env::temp_dir().join(format!("vpcnet-e2e-gitops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let objects = samples();
    // What a previous run left behind goes first; the same list is this
    // run's cleanup (in reverse: rules, EIPs, gateway, subnet, VPC, namespace).
    let register = |c: &mut Cleanup| {
        for (file, obj) in &objects {
            if file != SHARED {
                c.add(
                    &resource(obj),
                    obj["metadata"]["namespace"].as_str(),
                    obj["metadata"]["name"].as_str().unwrap(),
                );
            }
        }
    };
    let mut leftovers = Cleanup::new(&k);
    register(&mut leftovers);
    leftovers.add("pod", Some(T), "web");
    leftovers.run_now();
    let mut cleanup = Cleanup::new(&k);
    register(&mut cleanup);
    cleanup.add("pod", Some(T), "web");

    // Apply every sample as Argo CD does.
    let mut applied: Vec<Applied> = Vec::new();
    for (i, (file, mut obj)) in objects.into_iter().enumerate() {
        if file != SHARED {
            track(&mut obj);
        }
        let path = dir.join(format!("{i:02}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&obj).unwrap()).unwrap();
        let out = ssa(&k, "apply", &path, &["-o", "json"]);
        assert!(
            out.ok,
            "server-side apply of {file} as {ARGO}: {}",
            out.stderr
        );
        let live: Value = serde_json::from_str(&out.stdout).unwrap();
        let a = Applied {
            file,
            kind: live["kind"].as_str().unwrap().to_string(),
            namespace: live["metadata"]["namespace"].as_str().map(String::from),
            name: live["metadata"]["name"].as_str().unwrap().to_string(),
            path,
            generation: live["metadata"]["generation"].as_i64(),
            uid: live["metadata"]["uid"].as_str().unwrap().to_string(),
        };
        eprintln!("applied {} (generation {:?})", a.what(), a.generation);
        let subnet = a.kind == "Subnet";
        applied.push(a);
        if subnet {
            // A backend for the SwitchLBRule (selector app: web) at the
            // DNAT's internal address: a workload, not part of the
            // application. It takes its fixed address before the VpcDns's
            // servers take theirs from the same subnet.
            k.must_apply(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: {T}\n  labels: {{app: web}}\n  \
                 annotations: {{vpcnet.io/ip_address: 10.0.1.2}}\nspec:\n  terminationGracePeriodSeconds: 1\n  \
                 containers:\n  - name: app\n    image: {TESTAPP_IMAGE}\n    imagePullPolicy: Never\n"
            ));
            k.eventually(READY, "the backend pod has its address", || {
                k.field(
                    "pod",
                    Some(T),
                    "web",
                    "{.metadata.annotations.vpcnet\\.io/allocated}",
                ) == "true"
            });
        }
    }

    for a in applied
        .iter()
        .filter(|a| WITH_READY.contains(&a.kind.as_str()))
    {
        wait_ready(&k, a);
    }
    eprintln!("all Ready after {:.1?}", started.elapsed());
    // Status writes that follow Ready (a gateway's DefaultRoute, an EIP's
    // users) land before the checks.
    std::thread::sleep(Duration::from_secs(3));

    let mut problems = Vec::new();
    for a in &applied {
        let diff = ssa(&k, "diff", &a.path, &[]);
        if !diff.ok || !diff.stdout.trim().is_empty() {
            problems.push(format!(
                "{}: kubectl diff --server-side shows a difference (or failed: {}):\n{}",
                a.what(),
                diff.stderr.trim(),
                diff.stdout
            ));
        }
        let live = a.get(&k);
        let generation = live["metadata"]["generation"].as_i64();
        if generation != a.generation {
            problems.push(format!(
                "{}: metadata.generation moved from {:?} to {generation:?}",
                a.what(),
                a.generation
            ));
        }
        for f in foreign_fields(&live) {
            let manager = f.split(' ').next().unwrap_or("");
            // The shared sample is also applied by other suites' kubectl.
            if a.file == SHARED && !OPERATOR_MANAGERS.contains(&manager) {
                continue;
            }
            problems.push(format!("{}: {f}", a.what()));
        }
    }

    let ours: BTreeSet<String> = applied
        .iter()
        .filter(|a| a.file != SHARED)
        .map(|a| a.uid.clone())
        .collect();
    let kids = children(&k, &ours);
    let kinds: BTreeSet<String> = kids
        .iter()
        .map(|c| c["kind"].as_str().unwrap_or("").to_string())
        .collect();
    for want in ["StatefulSet", "Pod", "Service", "EndpointSlice"] {
        assert!(
            kinds.contains(want),
            "no {want} owned by the samples' objects among {kinds:?}: the children check would be vacuous"
        );
    }
    for c in &kids {
        let m = &c["metadata"];
        let what = format!(
            "child {} {}/{}",
            c["kind"].as_str().unwrap_or(""),
            m["namespace"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or("")
        );
        if !m["labels"][INSTANCE_LABEL].is_null() {
            problems.push(format!("{what} carries label {INSTANCE_LABEL}"));
        }
        if !m["annotations"][TRACKING_ANNOTATION].is_null() {
            problems.push(format!("{what} carries annotation {TRACKING_ANNOTATION}"));
        }
    }
    eprintln!(
        "checked {} objects and {} children ({kinds:?}) in {:.1?}",
        applied.len(),
        kids.len(),
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "not GitOps-clean:\n{}",
        problems.join("\n")
    );
    drop(cleanup);
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("done in {:.1?}", started.elapsed());
}

/// The managed-fields check itself, on entries as the box writes them: the
/// operator's status apply and kube-runtime's finalizer patch pass; a spec
/// field (even an empty `f:spec`) owned by anyone but Argo does not.
#[test]
fn foreign_fields_are_what_is_not_status_or_finalizer() {
    let obj = json!({"metadata": {"managedFields": [
        {"manager": ARGO, "operation": "Apply",
         "fieldsV1": {"f:spec": {"f:namespaces": {}}}},
        {"manager": OPERATOR_MANAGER, "operation": "Apply", "subresource": "status",
         "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}}}}}},
        {"manager": "unknown", "operation": "Update",
         "fieldsV1": {"f:metadata": {"f:finalizers": {".": {}, "v:\"vpcnet.io/cleanup\"": {}}}}},
        {"manager": OPERATOR_MANAGER, "operation": "Apply",
         "fieldsV1": {"f:spec": {"f:v4ip": {}}, "f:metadata": {"f:labels": {"f:x": {}}}}},
        {"manager": "unknown", "operation": "Update",
         "fieldsV1": {"f:metadata": {"f:finalizers": {}}, "f:spec": {}}},
    ]}});
    assert_eq!(
        foreign_fields(&obj),
        [
            "vpcnet-operator (Apply) owns f:metadata.f:labels.f:x",
            "vpcnet-operator (Apply) owns f:spec.f:v4ip",
            "unknown (Update) owns f:spec",
        ]
    );
}
