//! vpcnet-cni against real parts: an OVN sandbox whose ovs-vswitchd runs in a
//! "node" namespace, pods as network namespaces, and the box's API server.
//! The test plays the operator (Logical_Switch_Ports + pod annotations).
//! Its Pod objects are bound to a node that does not exist, so no kubelet of
//! the box acts on them: they only carry the annotations.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Invocation, Ns, Ovn, cni};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovn::{Txn, Uuid};
use serde_json::{Value, json};
use vpcnet_api::contract::annotations::{
    ALLOCATED, CIDR, GATEWAY, IP_ADDRESS, LOGICAL_SWITCH, MAC_ADDRESS,
};
use vpcnet_api::contract::external_ids::{CONTAINER_ID, IFNAME, NETWORK};
use vpcnet_api::contract::naming::pod_port;

/// A namespace in the API server, deleted on drop.
struct KubeNs {
    client: kube::Client,
    name: String,
}

impl KubeNs {
    async fn new(client: kube::Client) -> KubeNs {
        let name = common::unique("cnit-");
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        KubeNs { client, name }
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.name)
    }
    async fn pod(&self, name: &str, annotations: BTreeMap<String, String>) {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            // hostNetwork: the box's own operator leaves such pods alone, so
            // this test alone plays the operator for them.
            "spec": {"nodeName": "vpcnet-cni-test-no-such-node", "hostNetwork": true, "containers": [{"name": "c", "image": "local/pause:latest"}]}
        }))
        .unwrap();
        self.pods()
            .create(&PostParams::default(), &p)
            .await
            .expect("create pod");
    }
    async fn annotate(&self, name: &str, annotations: BTreeMap<String, String>) {
        let patch = json!({"metadata": {"annotations": annotations}});
        self.pods()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate pod");
    }
}

impl Drop for KubeNs {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ())
            })
        })
        .join();
    }
}

fn allocation(ip: &str, mac: &str) -> BTreeMap<String, String> {
    [
        (IP_ADDRESS, ip),
        (MAC_ADDRESS, mac),
        (CIDR, "10.0.1.0/24"),
        (GATEWAY, "10.0.1.1"),
        (LOGICAL_SWITCH, "sub1"),
        (ALLOCATED, "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What the operator writes into the NB: a switch with one port per pod.
async fn operator_nb(ovn: &Ovn, ports: &[(&str, &str, &str)]) {
    let nb = ovn.nb_client().await;
    let mut t = Txn::nb();
    let mut uuids = BTreeSet::new();
    for (name, mac, ip) in ports {
        uuids.insert(t.insert_row(&LogicalSwitchPort {
            name: name.to_string(),
            addresses: BTreeSet::from([format!("{mac} {ip}")]),
            port_security: BTreeSet::from([format!("{mac} {ip}")]),
            ..Default::default()
        }));
    }
    t.insert_row(&LogicalSwitch {
        name: "sub1".into(),
        ports: uuids.into_iter().collect::<BTreeSet<Uuid>>(),
        ..Default::default()
    });
    nb.transact(t).await.expect("create switch and ports");
}

fn conf(ovn: &Ovn, kubeconfig: &std::path::Path, version: &str, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": version,
        "name": "vpcnet",
        "type": "vpcnet-cni",
        "kubeconfig": kubeconfig,
        "ovsdb": ovn.sock("conf"),
        "nodeNetns": ovn.node.path(),
        "logFile": ovn.p("cni.log"),
        "annotationTimeoutSeconds": 20,
        "ovnInstalledTimeoutSeconds": 20,
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn cni_args(ns: &str, pod: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID=x"
    )
}

async fn add_in_background(
    kubeconfig: std::path::PathBuf,
    c: Value,
    cid: String,
    netns: String,
    args: String,
) -> Invocation {
    let _ = kubeconfig;
    tokio::task::spawn_blocking(move || cni("ADD", &cid, Some(&netns), &args, &c))
        .await
        .unwrap()
}

fn link_json(ns: &Ns, ifname: &str) -> Value {
    let out = ns.exec(&["ip", "-j", "addr", "show", "dev", ifname]);
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

fn host_name_of(result: &Value) -> String {
    result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn port_exists(ovn: &Ovn, name: &str) -> bool {
    ovn.vsctl(&["--bare", "--columns=name", "list", "Port"])
        .lines()
        .any(|l| l.trim() == name)
}

fn link_exists(ns: &Ns, name: &str) -> bool {
    ns.cmd(&["ip", "link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The `ADD timings` line the plugin logs for `pod`.
fn timings(ovn: &Ovn, pod: &str) -> String {
    let log = std::fs::read_to_string(ovn.p("cni.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("ADD timings") && l.contains(pod))
        .map(|l| {
            l.split("ADD timings")
                .nth(1)
                .unwrap_or(l)
                .trim()
                .to_string()
        })
        .next_back()
        .unwrap_or_default()
}

const TCP_SERVER: &str = r#"
import socket, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(1); print("listening", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    h.update(d); n += len(d)
c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
"#;

const TCP_CLIENT: &str = r#"
import socket, hashlib, sys
data = bytes(range(256)) * 16384
c = socket.create_connection((sys.argv[1], 7000), timeout=20); c.sendall(data); c.shutdown(socket.SHUT_WR)
reply = b""
while True:
    d = c.recv(4096)
    if not d: break
    reply += d
want = f"{len(data)} {hashlib.sha256(data).hexdigest()}"
print("OK" if reply.decode() == want else f"MISMATCH {reply!r} != {want}")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_are_plugged_into_ovn_talk_and_are_cleaned_up() {
    let kubeconfig = common::kubeconfig();
    let kube = common::kube_client(&kubeconfig).await;
    let ovn = tokio::task::spawn_blocking(Ovn::start).await.unwrap();
    let kns = KubeNs::new(kube).await;
    let (pod_a, pod_b) = (Ns::new("poda-"), Ns::new("podb-"));
    let (mac_a, mac_b) = ("0a:58:0a:00:01:05", "0a:58:0a:00:01:06");
    operator_nb(
        &ovn,
        &[
            (&pod_port(&kns.name, "pod-a"), mac_a, "10.0.1.5"),
            (&pod_port(&kns.name, "pod-b"), mac_b, "10.0.1.6"),
        ],
    )
    .await;
    kns.pod("pod-a", allocation("10.0.1.5", mac_a)).await;
    // pod-b is created unallocated; the "operator" allocates it while ADD waits.
    let mut unallocated = allocation("10.0.1.6", mac_b);
    unallocated.remove(ALLOCATED);
    kns.pod("pod-b", unallocated).await;

    let c10 = conf(&ovn, &kubeconfig, "1.0.0", json!({}));
    let (cid_a, cid_b) = ("cid-a-0123456789", "cid-b-0123456789");

    // ADD pod A.
    let add_a = cni(
        "ADD",
        cid_a,
        Some(&pod_a.path()),
        &cni_args(&kns.name, "pod-a"),
        &c10,
    );
    add_a.ok();
    let ra = add_a.json();
    assert_eq!(ra["cniVersion"], "1.0.0");
    assert_eq!(ra["interfaces"][1]["name"], "eth0");
    assert_eq!(ra["interfaces"][1]["mac"], mac_a);
    assert_eq!(ra["interfaces"][1]["sandbox"], pod_a.path());
    assert!(
        ra["interfaces"][0].get("sandbox").is_none(),
        "host end has no sandbox: {ra}"
    );
    assert_eq!(ra["ips"][0]["address"], "10.0.1.5/24");
    assert_eq!(ra["ips"][0]["gateway"], "10.0.1.1");
    assert_eq!(ra["ips"][0]["interface"], 1);
    assert_eq!(ra["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(ra["routes"][0]["gw"], "10.0.1.1");
    let host_a = host_name_of(&ra);
    assert!(host_a.starts_with("vpc") && host_a.len() == 14, "{host_a}");

    // ADD pod B: starts before the allocation exists and sees it via the watch.
    let add_b = tokio::spawn(add_in_background(
        kubeconfig.clone(),
        c10.clone(),
        cid_b.into(),
        pod_b.path(),
        cni_args(&kns.name, "pod-b"),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!add_b.is_finished(), "ADD must wait for {ALLOCATED}");
    kns.annotate(
        "pod-b",
        BTreeMap::from([(ALLOCATED.to_string(), "true".to_string())]),
    )
    .await;
    let add_b = add_b.await.unwrap();
    add_b.ok();
    let rb = add_b.json();
    assert_eq!(rb["ips"][0]["address"], "10.0.1.6/24");
    let host_b = host_name_of(&rb);
    assert_ne!(host_a, host_b);

    // Inside the pods: MAC, address, MTU, default route, TX checksum off.
    let la = link_json(&pod_a, "eth0");
    assert_eq!(la["address"], mac_a);
    assert_eq!(la["mtu"], 1400);
    assert!(
        la["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "10.0.1.5" && a["prefixlen"] == 24),
        "{la}"
    );
    assert!(
        la["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{la}"
    );
    let routes: Value =
        serde_json::from_str(&pod_a.exec(&["ip", "-j", "route", "show", "default"])).unwrap();
    assert_eq!(routes[0]["gateway"], "10.0.1.1", "{routes}");
    assert_eq!(routes[0]["dev"], "eth0");
    let features = pod_a.exec(&["ethtool", "-k", "eth0"]);
    assert!(
        features.lines().any(|l| l.trim() == "tx-checksumming: off"),
        "{features}"
    );

    // The host ends live in the node namespace, plugged into br-int with the LSP name.
    assert!(link_exists(&ovn.node, &host_a) && link_exists(&ovn.node, &host_b));
    assert_eq!(
        ovn.vsctl(&["get", "Interface", &host_a, "external_ids:iface-id"])
            .trim()
            .trim_matches('"'),
        pod_port(&kns.name, "pod-a")
    );
    assert_eq!(
        ovn.vsctl(&[
            "get",
            "Interface",
            &host_a,
            &format!("external_ids:{CONTAINER_ID}")
        ])
        .trim()
        .trim_matches('"'),
        cid_a
    );
    assert_eq!(
        ovn.vsctl(&["get", "Interface", &host_b, "external_ids:ovn-installed"])
            .trim()
            .trim_matches('"'),
        "true"
    );
    assert!(
        ovn.vsctl(&["list-ports", "br-int"])
            .lines()
            .any(|l| l == host_a)
    );

    // Traffic: ping, then 4 MiB over TCP checked end to end.
    let ping = pod_a
        .cmd(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.1.6"])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "pod A cannot ping pod B: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let mut server = common::Daemon {
        name: "tcp server",
        child: pod_b
            .cmd(&["python3", "-c", TCP_SERVER])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    };
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening");
    }
    let client = pod_a.exec(&["python3", "-c", TCP_CLIENT, "10.0.1.6"]);
    assert_eq!(client.trim(), "OK", "TCP transfer pod A -> pod B");
    drop(server);

    // CHECK with the recorded result passes; with another address it fails.
    let mut chk = c10.clone();
    chk["prevResult"] = ra.clone();
    cni(
        "CHECK",
        cid_a,
        Some(&pod_a.path()),
        &cni_args(&kns.name, "pod-a"),
        &chk,
    )
    .ok();
    chk["prevResult"]["ips"][0]["address"] = json!("10.0.1.99/24");
    let bad = cni(
        "CHECK",
        cid_a,
        Some(&pod_a.path()),
        &cni_args(&kns.name, "pod-a"),
        &chk,
    );
    assert!(!bad.status.success());
    assert_eq!(bad.json()["code"], 106, "{}", bad.stdout);
    assert!(
        bad.json()["details"]
            .as_str()
            .unwrap()
            .contains("10.0.1.99/24"),
        "{}",
        bad.stdout
    );
    // CHECK without a prevResult compares against the annotations.
    cni(
        "CHECK",
        cid_b,
        Some(&pod_b.path()),
        &cni_args(&kns.name, "pod-b"),
        &c10,
    )
    .ok();

    // GC (CNI 1.1): a stale port of ours goes, valid attachments stay.
    ovn.vsctl(&[
        "add-port",
        "br-int",
        "vpcstale0",
        "--",
        "set",
        "Interface",
        "vpcstale0",
        &format!("external_ids:{NETWORK}=vpcnet"),
        &format!("external_ids:{CONTAINER_ID}=gone"),
        &format!("external_ids:{IFNAME}=eth0"),
    ]);
    ovn.vsctl(&["add-port", "br-int", "foreign0"]);
    ovn.vsctl(&[
        "set",
        "Port",
        "vpcstale0",
        &format!("external_ids:{NETWORK}=vpcnet"),
        &format!("external_ids:{CONTAINER_ID}=gone"),
        &format!("external_ids:{IFNAME}=eth0"),
    ]);
    let mut gc = conf(&ovn, &kubeconfig, "1.1.0", json!({}));
    gc["cni.dev/valid-attachments"] =
        json!([{"containerID": cid_a, "ifname": "eth0"}, {"containerID": cid_b, "ifname": "eth0"}]);
    cni("GC", "", None, "", &gc).ok();
    assert!(!port_exists(&ovn, "vpcstale0"), "GC removes the stale port");
    assert!(
        port_exists(&ovn, "foreign0"),
        "GC leaves ports it does not own"
    );
    assert!(
        port_exists(&ovn, &host_a) && port_exists(&ovn, &host_b),
        "GC keeps valid attachments"
    );

    // DEL pod A twice: everything goes, the second is a no-op success.
    for _ in 0..2 {
        cni(
            "DEL",
            cid_a,
            Some(&pod_a.path()),
            &cni_args(&kns.name, "pod-a"),
            &c10,
        )
        .ok();
        assert!(!port_exists(&ovn, &host_a));
        assert!(!link_exists(&ovn.node, &host_a));
        assert!(!link_exists(&pod_a, "eth0"));
    }
    // GC with no valid attachments for pod B's container removes it too.
    gc["cni.dev/valid-attachments"] = json!([]);
    cni("GC", "", None, "", &gc).ok();
    assert!(!port_exists(&ovn, &host_b) && !link_exists(&ovn.node, &host_b));
    // DEL after the pod's namespace is gone still succeeds.
    let mut pod_b = pod_b;
    pod_b.delete();
    cni(
        "DEL",
        cid_b,
        Some("/var/run/netns/does-not-exist"),
        &cni_args(&kns.name, "pod-b"),
        &c10,
    )
    .ok();
    cni("DEL", cid_b, None, &cni_args(&kns.name, "pod-b"), &c10).ok();

    println!("ADD latency (wall clock of the plugin process / phases from its log):");
    println!(
        "  pod-a: {:>5} ms  {}",
        add_a.elapsed.as_millis(),
        timings(&ovn, "pod-a")
    );
    println!(
        "  pod-b: {:>5} ms  {} (annotation wait includes the test's 700 ms delay)",
        add_b.elapsed.as_millis(),
        timings(&ovn, "pod-b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_fails_clearly_when_the_pod_is_never_allocated() {
    let kubeconfig = common::kubeconfig();
    let kube = common::kube_client(&kubeconfig).await;
    let ovn = tokio::task::spawn_blocking(Ovn::start).await.unwrap();
    let kns = KubeNs::new(kube).await;
    let pod = Ns::new("podc-");
    kns.pod("pod-c", BTreeMap::new()).await;
    let c = conf(
        &ovn,
        &kubeconfig,
        "1.0.0",
        json!({"annotationTimeoutSeconds": 2}),
    );
    let t0 = Instant::now();
    let r = tokio::task::spawn_blocking({
        let (c, p, a) = (c.clone(), pod.path(), cni_args(&kns.name, "pod-c"));
        move || cni("ADD", "cid-c-0123456789", Some(&p), &a, &c)
    })
    .await
    .unwrap();
    assert!(!r.status.success());
    let e = r.json();
    assert_eq!(e["code"], 101, "{e}");
    assert_eq!(
        e["msg"],
        format!(
            "pod {}/pod-c not allocated by vpcnet within 2s (annotation {ALLOCATED} missing)",
            kns.name
        )
    );
    assert!(e["details"].as_str().unwrap().contains("operator"), "{e}");
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "it waited for the allocation"
    );
    assert!(!link_exists(&pod, "eth0"), "nothing is plugged");
    assert!(ovn.vsctl(&["list-ports", "br-int"]).trim().is_empty());

    // An unknown pod fails at once with a Kubernetes error.
    let r = cni(
        "ADD",
        "cid-d-0123456789",
        Some(&pod.path()),
        &cni_args(&kns.name, "nope"),
        &c,
    );
    assert_eq!(r.json()["code"], 100, "{}", r.stdout);
    assert!(
        r.json()["details"].as_str().unwrap().contains("not found"),
        "{}",
        r.stdout
    );
    // Missing kubeconfig and missing pod identity are configuration errors.
    let mut no_kc = c.clone();
    no_kc.as_object_mut().unwrap().remove("kubeconfig");
    let r = cni(
        "ADD",
        "cid-e-0123456789",
        Some(&pod.path()),
        &cni_args(&kns.name, "pod-c"),
        &no_kc,
    );
    assert_eq!(r.json()["code"], 7, "{}", r.stdout);
    let r = cni(
        "ADD",
        "cid-e-0123456789",
        Some(&pod.path()),
        "IgnoreUnknown=1",
        &c,
    );
    assert_eq!(r.json()["code"], 4, "{}", r.stdout);
    let log = std::fs::read_to_string(ovn.p("cni.log")).unwrap();
    assert!(
        log.contains("not allocated by vpcnet"),
        "errors are logged to logFile: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_status() {
    let v = cni(
        "VERSION",
        "",
        None,
        "",
        &json!({"cniVersion": "1.1.0", "name": "vpcnet", "type": "vpcnet-cni"}),
    );
    v.ok();
    let j = v.json();
    assert_eq!(j["cniVersion"], "1.1.0");
    let supported: Vec<&str> = j["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for want in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert!(supported.contains(&want), "{supported:?}");
    }

    let ovn = tokio::task::spawn_blocking(Ovn::start).await.unwrap();
    let kc = std::path::PathBuf::from("/nonexistent");
    cni("STATUS", "", None, "", &conf(&ovn, &kc, "1.1.0", json!({}))).ok();
    let down = cni(
        "STATUS",
        "",
        None,
        "",
        &conf(
            &ovn,
            &kc,
            "1.1.0",
            json!({"ovsdb": format!("unix:{}", ovn.p("nothing.sock").display())}),
        ),
    );
    assert!(!down.status.success());
    assert_eq!(down.json()["code"], 50, "{}", down.stdout);
    assert!(
        down.json()["details"]
            .as_str()
            .unwrap()
            .contains("does not answer"),
        "{}",
        down.stdout
    );
}
