//! The agent binary against the cluster-in-a-box API server (the box's
//! kubeconfig, in `$VPCNET_BOX_DIR`; start it with `e2e/box/up.sh`), doing its
//! network work in a test gateway namespace via `--netns`.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vpcnet_api::contract::agent_env;
use vpcnet_api::contract::conditions::{ACCEPTED, PROGRAMMED};
use vpcnet_api::seal::{Decision, Purpose};

use vpcnet_test_support::box_env::kubeconfig;

fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut c = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig())
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
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn k(args: &[&str]) -> String {
    kubectl(args, None).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

struct Cleanup {
    ns: String,
    gw: String,
    vpc: String,
    agent: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(a) = &mut self.agent {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = kubectl(&["delete", "ns", &self.ns, "--wait=false"], None);
        let _ = kubectl(&["delete", "vpcnatgateway", &self.gw, "--wait=false"], None);
        let _ = kubectl(&["delete", "vpc", &self.vpc, "--wait=false"], None);
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

fn http_get(port: u16, path: &str) -> String {
    vpcnet_test_support::http_get(port, path)
        .unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"))
}

/// The object's uid and generation, as the API server set them.
fn identity(ns: &str, kind: &str, name: &str) -> (String, i64) {
    let out = k(&[
        "-n",
        ns,
        "get",
        kind,
        name,
        "-o",
        "jsonpath={.metadata.uid} {.metadata.generation}",
    ]);
    let (uid, generation) = out.split_once(' ').expect("uid and generation");
    (
        uid.to_string(),
        generation.trim().parse().expect("generation"),
    )
}

/// The status the operator writes when it accepts rule `name` (kind
/// `kind`, API kind `api_kind`) on gateway `gw` at `ip`: verdict and seal.
fn accepted_patch(ns: &str, kind: &str, api_kind: &str, name: &str, gw: &str, ip: &str) -> String {
    let (uid, generation) = identity(ns, kind, name);
    let seal = key().seal(&Decision {
        purpose: Purpose::Accepted,
        kind: api_kind.into(),
        namespace: ns.into(),
        name: name.into(),
        uid,
        generation: Some(generation),
        gateway: gw.into(),
        ip: ip.into(),
    });
    format!(
        r#"{{"status":{{"v4ip":"{ip}","natGwDp":"{gw}","seal":"{seal}","conditions":[{{"type":"{ACCEPTED}","status":"True","reason":"Ok","message":"checked","observedGeneration":{generation},"lastTransitionTime":"2026-01-01T00:00:00Z"}}]}}}}"#
    )
}

/// The status the operator writes when it gives EIP `name` address `ip`.
fn eip_patch(ns: &str, name: &str, gw: &str, ip: &str) -> String {
    let (uid, _) = identity(ns, "iptableseip", name);
    let seal = key().seal(&Decision {
        purpose: Purpose::Accepted,
        kind: "IptablesEIP".into(),
        namespace: ns.into(),
        name: name.into(),
        uid,
        generation: None,
        gateway: gw.into(),
        ip: ip.into(),
    });
    format!(r#"{{"status":{{"ip":"{ip}","natGwDp":"{gw}","seal":"{seal}"}}}}"#)
}

#[test]
fn agent_programs_rules_from_the_api_and_reports_programmed() {
    assert!(
        kubeconfig().exists(),
        "{} missing: start the box with `bash e2e/box/up.sh`",
        kubeconfig().display()
    );
    k(&["get", "crd", "iptablesdnatrules.vpcnet.io"]);
    let t = Topo::new();
    let id = t.gw.trim_start_matches("ngw-").to_string();
    let mut c = Cleanup {
        ns: format!("natgw-test-{id}"),
        gw: format!("gw-{id}"),
        vpc: format!("vpc-{id}"),
        agent: None,
    };
    k(&["create", "ns", &c.ns]);
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {vpc}}}\nspec: {{namespaces: [{ns}]}}\n---\n\
             apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {gw}}}\nspec: {{vpc: {vpc}, subnet: net1, lanIp: 10.0.1.254}}\n---\n\
             apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: e1, namespace: {ns}}}\nspec: {{natGwDp: {gw}}}\n---\n\
             apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: web, namespace: {ns}}}\nspec: {{eip: e1, externalPort: '8888', protocol: tcp, internalIp: 10.0.1.2, internalPort: '80'}}\n---\n\
             apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: pending, namespace: {ns}}}\nspec: {{eip: e1, externalPort: '9999', protocol: tcp, internalIp: 10.0.1.3}}\n",
            gw = c.gw,
            ns = c.ns,
            vpc = c.vpc
        )),
    )
    .unwrap();
    k(&[
        "-n",
        &c.ns,
        "patch",
        "iptableseip",
        "e1",
        "--subresource=status",
        "--type=merge",
        "-p",
        &eip_patch(&c.ns, "e1", &c.gw, "172.16.3.10"),
    ]);
    k(&[
        "-n",
        &c.ns,
        "patch",
        "iptablesdnatrule",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        &accepted_patch(
            &c.ns,
            "iptablesdnatrule",
            "IptablesDnatRule",
            "web",
            &c.gw,
            "172.16.3.10",
        ),
    ]);

    let port = 20000 + (std::process::id() % 20000) as u16;
    c.agent = Some(
        Command::new(env!("CARGO_BIN_EXE_vpcnet-natgw"))
            .env("KUBECONFIG", kubeconfig())
            .env(agent_env::GATEWAY, &c.gw)
            .env(agent_env::SEAL_KEY, KEY_TEXT)
            .args([
                "--netns",
                &t.gw,
                "--iptables",
                "iptables-nft",
                "--drift-interval",
                "1",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .spawn()
            .unwrap(),
    );
    let save = || nsx(&t.gw, &["iptables-nft-save", "-t", "nat"]);
    let web_tag = format!("\"vpcnet:dnat/{}/web\"", c.ns);
    wait_for("the DNAT rule in iptables", 30, || {
        save().contains(&web_tag)
    });
    let cond = |name: &str, field: &str| {
        k(&[
            "-n",
            &c.ns,
            "get",
            "iptablesdnatrule",
            name,
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{PROGRAMMED}\")].{field}}}"),
        ])
    };
    wait_for("Programmed=True on the rule", 30, || {
        cond("web", "status") == "True"
    });
    assert_eq!(cond("web", "reason"), "Applied");
    // The operator's condition is untouched; the agent owns only Programmed.
    let accepted = k(&[
        "-n",
        &c.ns,
        "get",
        "iptablesdnatrule",
        "web",
        "-o",
        &format!("jsonpath={{.status.conditions[?(@.type==\"{ACCEPTED}\")].message}}"),
    ]);
    assert_eq!(accepted, "checked");
    let managers = k(&[
        "-n",
        &c.ns,
        "get",
        "iptablesdnatrule",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(
        managers.contains(vpcnet_natgw::k8s::FIELD_MANAGER),
        "{managers}"
    );
    // Not accepted yet: not programmed, and says so.
    wait_for("Programmed=False on the pending rule", 30, || {
        cond("pending", "reason") == "NotAccepted"
    });
    assert!(!save().contains("vpcnet:dnat/") || !save().contains("/pending\""));
    // The EIP is on net1 and its condition is set.
    wait_for("EIP Programmed", 30, || {
        k(&[
            "-n",
            &c.ns,
            "get",
            "iptableseip",
            "e1",
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{PROGRAMMED}\")].status}}"),
        ]) == "True"
    });
    assert!(nsx(&t.gw, &["ip", "-4", "addr", "show", "dev", "net1"]).contains("172.16.3.10/24"));
    // Traffic.
    let l = Listener::start(&t.pod, "10.0.1.2", 80, 1);
    assert_eq!(connect(&t.ext, "172.16.3.10", 8888, None).unwrap(), "hi");
    assert_eq!(l.peers(), vec!["172.16.3.2"]);
    // Health and metrics.
    assert!(http_get(port, "/readyz").starts_with("HTTP/1.1 200"));
    let m = http_get(port, "/metrics");
    assert!(m.contains("vpcnet_natgw_applies_total"), "{m}");
    assert!(m.contains("vpcnet_natgw_rules_programmed 1"), "{m}");

    // The agent seals its report: Ready is never derived from a condition
    // alone.
    let programmed_seal = k(&[
        "-n",
        &c.ns,
        "get",
        "iptablesdnatrule",
        "web",
        "-o",
        "jsonpath={.status.programmedSeal}",
    ]);
    assert_eq!(programmed_seal.len(), 64, "{programmed_seal:?}");

    // A tenant whose role reaches /status forges the verdict: Accepted=True
    // with the address, but no seal of the operator. Nothing is programmed.
    k(&[
        "-n",
        &c.ns,
        "patch",
        "iptablesdnatrule",
        "pending",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            r#"{{"status":{{"v4ip":"172.16.3.10","natGwDp":"forged","conditions":[{{"type":"{ACCEPTED}","status":"True","reason":"Ok","message":"forged","lastTransitionTime":"2026-01-01T00:00:00Z"}}]}}}}"#
        ),
    ]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!save().contains(&format!("\"vpcnet:dnat/{}/pending\"", c.ns)));
    assert_eq!(cond("pending", "status"), "False");

    // Accepting the pending rule programs it; deleting web removes its lines.
    k(&[
        "-n",
        &c.ns,
        "patch",
        "iptablesdnatrule",
        "pending",
        "--subresource=status",
        "--type=merge",
        "-p",
        &accepted_patch(
            &c.ns,
            "iptablesdnatrule",
            "IptablesDnatRule",
            "pending",
            &c.gw,
            "172.16.3.10",
        ),
    ]);
    let pending_tag = format!("\"vpcnet:dnat/{}/pending\"", c.ns);
    wait_for("pending rule programmed", 30, || {
        save().contains(&pending_tag)
    });
    k(&["-n", &c.ns, "delete", "iptablesdnatrule", "web"]);
    wait_for("web's lines to vanish", 30, || !save().contains(&web_tag));
    assert!(save().contains(&pending_tag));

    // Drift: flushing the table is repaired within the drift interval.
    nsx(&t.gw, &["iptables-nft", "-t", "nat", "-F"]);
    wait_for("drift repair", 15, || {
        save().contains(&pending_tag) && save().contains("vpcnet:jump")
    });
    wait_for("drift metric", 5, || {
        http_get(port, "/metrics").contains("vpcnet_natgw_drift_repairs_total 1")
    });
}
