//! The server against the cluster-in-a-box API server (the box's kubeconfig,
//! in `$VPCNET_BOX_DIR`; start it with `e2e/box/up.sh`), with nothing but the
//! privilege the interface gives it: get/list/watch of its one zone
//! ConfigMap. It loads the zone through that grant, follows changes, and its
//! credentials cannot list a Service, not even in its own namespace.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Dns, scratch};
use serde_json::json;
use vpcnet_api::contract::{dns::ZONE_KEY, dns_env};
use vpcnet_test_support::box_env::kubeconfig;

fn kubectl_with(
    cfg: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    let mut c = Command::new("kubectl")
        .env("KUBECONFIG", cfg)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = c.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        // `auth can-i` says "no" on stdout and fails.
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn k(args: &[&str], stdin: Option<&str>) -> String {
    kubectl_with(&kubeconfig(), args, stdin).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

/// Deletes the test namespace (and with it everything in it) and the
/// scratch directory.
struct Ns(String, std::path::PathBuf);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = kubectl_with(
            &kubeconfig(),
            &["delete", "ns", &self.0, "--wait=false"],
            None,
        );
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn zone(ns: &str, ip: &str) -> String {
    json!({"version": 1, "domain": "cluster.local", "namespaces": [ns],
           "services": [{"namespace": ns, "name": "web", "clusterIps": [ip]}]})
    .to_string()
}

fn configmap(ns: &str, doc: &str) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "zone", "namespace": ns},
           "data": {ZONE_KEY: doc}})
    .to_string()
}

#[test]
fn loads_and_follows_its_configmap_with_least_privilege() {
    assert!(
        kubeconfig().exists(),
        "{} missing: start the box with `bash e2e/box/up.sh`",
        kubeconfig().display()
    );
    let dir = scratch();
    let ns = Ns(format!("dns-test-{}", std::process::id()), dir.clone());
    let n = ns.0.as_str();
    k(&["create", "ns", n], None);
    // What the operator side grants: the one ConfigMap, by name.
    k(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: vpcnet-dns, namespace: {n}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: vpcnet-dns, namespace: {n}}}\n\
             rules: [{{apiGroups: [''], resources: [configmaps], resourceNames: [zone], verbs: [get, list, watch]}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: vpcnet-dns, namespace: {n}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: vpcnet-dns}}\n\
             subjects: [{{kind: ServiceAccount, name: vpcnet-dns, namespace: {n}}}]\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {n}}}\nspec: {{ports: [{{port: 80}}]}}\n"
        )),
    );
    k(
        &["apply", "-f", "-"],
        Some(&configmap(n, &zone(n, "10.96.7.1"))),
    );

    // A kubeconfig holding only the ServiceAccount's token.
    let token = k(
        &["-n", n, "create", "token", "vpcnet-dns", "--duration=10m"],
        None,
    );
    let server = k(
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        None,
    );
    let ca = k(
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ],
        None,
    );
    let sa_cfg = dir.join("sa.kubeconfig");
    std::fs::write(
        &sa_cfg,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: box, cluster: {{server: '{server}', certificate-authority-data: '{ca}'}}}}]\n\
             users: [{{name: dns, user: {{token: '{}'}}}}]\ncontexts: [{{name: dns, context: {{cluster: box, user: dns, namespace: {n}}}}}]\ncurrent-context: dns\n",
            token.trim()
        ),
    )
    .unwrap();
    let sa = |args: &[&str]| kubectl_with(&sa_cfg, args, None);
    sa(&["-n", n, "get", "configmap", "zone"]).expect("its own ConfigMap");
    for denied in [
        vec!["-n", n, "get", "services"],
        vec!["get", "services", "--all-namespaces"],
        vec!["-n", n, "get", "configmaps"],
        vec!["-n", n, "get", "endpointslices"],
        vec!["-n", "kube-system", "get", "configmap", "zone"],
    ] {
        let e = sa(&denied).expect_err(&format!("{denied:?} allowed"));
        assert!(
            e.contains("Forbidden") || e.contains("forbidden"),
            "{denied:?}: {e}"
        );
    }
    assert_eq!(
        sa(&["auth", "can-i", "list", "services", "--all-namespaces"])
            .unwrap_or_else(|e| e)
            .trim(),
        "no"
    );

    let cm = format!("{n}/zone");
    let d = Dns::spawn(
        dir,
        &["--lameduck-ms".into(), "0".into()],
        &[
            ("KUBECONFIG", sa_cfg.to_str().unwrap()),
            (dns_env::ZONE, &cm),
        ],
    );
    d.wait_ready();
    let name = format!("web.{n}.svc.cluster.local");
    assert_eq!(d.short(&[&name]), ["10.96.7.1"]);

    // A change is served within 2 s.
    let t = Instant::now();
    k(
        &["apply", "-f", "-"],
        Some(&configmap(n, &zone(n, "10.96.7.2"))),
    );
    while d.short(&[&name]) != ["10.96.7.2"] {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "not followed:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("change served after {:?}", t.elapsed());
    assert_eq!(d.metric("vpcnet_dns_zone_generation"), 2.0);

    // Deleted: the last zone stays in force.
    k(&["-n", n, "delete", "configmap", "zone"], None);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.short(&[&name]), ["10.96.7.2"]);
    assert_eq!(d.http_get("/readyz").0, 200);
}
