//! Host egress (`vpcnet.io/host-egress`) through the real plugin: an OVN
//! sandbox whose ovs-vswitchd runs in a "node" namespace, pods as network
//! namespaces, a "remote" namespace behind the node for the destinations
//! outside every VPC, and a minimal stand-in for the API server that serves
//! the pods' annotations (so the cluster-in-a-box is not needed). All
//! iptables rules live in the node namespace, deleted with it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::{Daemon, Invocation, Ns, Ovn, TempDir, cni};
use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovn::{Txn, Uuid};
use serde_json::{Value, json};
use vpcnet_api::contract::annotations::{
    ALLOCATED, CIDR, GATEWAY, HOST_EGRESS, IP_ADDRESS, LOGICAL_SWITCH, MAC_ADDRESS,
};
use vpcnet_api::contract::naming::pod_port;

const TRUSTED: &str = "vpcnet-system";
const TENANT: &str = "tenant-a";
const PROBE_CIDR: &str = "100.64.9.0/29";
/// The node's probe source: the range's last host.
const SOURCE: &str = "100.64.9.6";
/// The node's address towards the remote, and the remote's.
const NODE_IP: &str = "192.0.2.1";
const REMOTE_IP: &str = "192.0.2.2";

type Pods = Arc<Mutex<BTreeMap<(String, String), BTreeMap<String, String>>>>;

/// Answers `GET /api/v1/namespaces/<ns>/pods/<name>` with the pod and its
/// annotations; nothing else. One request per connection.
fn fake_api(pods: Pods) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let path = path.split('?').next().unwrap_or("");
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let found = match parts.as_slice() {
                ["api", "v1", "namespaces", ns, "pods", name] => pods
                    .lock()
                    .unwrap()
                    .get(&(ns.to_string(), name.to_string()))
                    .map(|a| {
                        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
                            "name": name, "namespace": ns, "resourceVersion": "1",
                            "uid": format!("uid-{ns}-{name}"), "annotations": a}})
                    }),
                _ => None,
            };
            let (status, body) = match found {
                Some(p) => ("200 OK", p),
                None => (
                    "404 Not Found",
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
                ),
            };
            let body = body.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn kubeconfig(dir: &Path, port: u16) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: fake, user: u}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    p
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

async fn operator_nb(ovn: &Ovn, ports: &[(String, &str, &str)]) {
    let nb = ovn.nb_client().await;
    let mut t = Txn::nb();
    let mut uuids = BTreeSet::new();
    for (name, mac, ip) in ports {
        uuids.insert(t.insert_row(&LogicalSwitchPort {
            name: name.clone(),
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

fn cni_args(ns: &str, pod: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod}")
}

/// Listens on `ip:port` inside `ns`, answering each connection with the
/// address it came from.
const PEER_SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); print("listening", flush=True)
while True:
    c, a = s.accept(); c.sendall(a[0].encode()); c.close()
"#;

const CLIENT: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    print("PEER " + c.recv(64).decode())
except Exception as e:
    print("FAIL " + type(e).__name__)
"#;

fn serve(ns: &Ns, ip: &str, port: u16) -> Daemon {
    let mut child = ns
        .cmd(&["python3", "-c", PEER_SERVER, ip, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening", "server {ip}:{port}");
    Daemon {
        name: "peer server",
        child,
    }
}

/// What a connection from `ns` to `ip:port` sees: `PEER <addr>` or `FAIL ...`.
fn connect(ns: &Ns, ip: &str, port: u16) -> String {
    ns.exec(&["python3", "-c", CLIENT, ip, &port.to_string()])
        .trim()
        .to_string()
}

/// The node's rules of both tables tagged with `cid`.
fn rules_of(node: &Ns, cid: &str) -> (Vec<String>, Vec<String>) {
    let tagged = |table: &str| {
        node.exec(&["iptables", "-w", "-t", table, "-S"])
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == cid))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    (tagged("filter"), tagged("nat"))
}

fn refused(r: &Invocation, why: &str) {
    assert!(!r.status.success(), "ADD must fail: {}", r.stdout);
    let e = r.json();
    assert_eq!(e["code"], 107, "{e}");
    let details = e["details"].as_str().unwrap();
    assert!(
        details.contains(HOST_EGRESS) && details.contains(why),
        "{why:?} not in {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_pods_reach_exactly_their_destinations_and_del_removes_their_rules() {
    let ovn = tokio::task::spawn_blocking(Ovn::start).await.unwrap();
    let node = &ovn.node;
    let tmp = TempDir::new("egress-");
    let pods: Pods = Arc::default();
    let kc = kubeconfig(&tmp.0, fake_api(pods.clone()));

    // The remote, behind the node on 192.0.2.0/24, with no route back to
    // the probe range: only masqueraded traffic can be answered.
    let remote = Ns::new("remote-");
    node.exec(&[
        "ip",
        "link",
        "add",
        "egn0",
        "type",
        "veth",
        "peer",
        "name",
        "egr0",
        "netns",
        &remote.name,
    ]);
    node.exec(&["ip", "addr", "add", &format!("{NODE_IP}/24"), "dev", "egn0"]);
    node.exec(&["ip", "link", "set", "egn0", "up"]);
    remote.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{REMOTE_IP}/24"),
        "dev",
        "egr0",
    ]);
    remote.exec(&["ip", "link", "set", "egr0", "up"]);
    let _servers = [
        serve(&remote, REMOTE_IP, 7001),
        serve(&remote, REMOTE_IP, 7002),
        serve(node, NODE_IP, 7003),
        serve(node, NODE_IP, 7004),
    ];

    let (mac_a, mac_b) = ("0a:58:0a:00:01:05", "0a:58:0a:00:01:06");
    operator_nb(
        &ovn,
        &[
            (pod_port(TRUSTED, "dns-a"), mac_a, "10.0.1.5"),
            (pod_port(TRUSTED, "plain-b"), mac_b, "10.0.1.6"),
        ],
    )
    .await;
    let grant = format!("{REMOTE_IP}:7001/tcp, {NODE_IP}:7003/tcp");
    let mut ann_a = allocation("10.0.1.5", mac_a);
    ann_a.insert(HOST_EGRESS.into(), grant.clone());
    let mut ann_c = allocation("10.0.1.7", "0a:58:0a:00:01:07");
    ann_c.insert(HOST_EGRESS.into(), grant.clone());
    {
        let mut p = pods.lock().unwrap();
        p.insert((TRUSTED.into(), "dns-a".into()), ann_a);
        p.insert(
            (TRUSTED.into(), "plain-b".into()),
            allocation("10.0.1.6", mac_b),
        );
        p.insert((TENANT.into(), "sneaky-c".into()), ann_c);
    }

    let base = json!({
        "cniVersion": "1.0.0",
        "name": "vpcnet",
        "type": "vpcnet-cni",
        "kubeconfig": kc,
        "ovsdb": ovn.sock("conf"),
        "nodeNetns": node.path(),
        "logFile": ovn.p("cni.log"),
        "annotationTimeoutSeconds": 10,
        "ovnInstalledTimeoutSeconds": 20,
        "probeCidr": PROBE_CIDR,
        "probeStateDir": tmp.0.join("probe"),
    });
    let mut c = base.clone();
    c["hostEgressNamespace"] = json!(TRUSTED);
    let (pod_a, pod_b, pod_c) = (Ns::new("poda-"), Ns::new("podb-"), Ns::new("podc-"));
    let (cid_a, cid_b, cid_c) = ("cid-a-0123456789", "cid-b-0123456789", "cid-c-0123456789");
    let add = |cid: &'static str, ns: &Ns, kns: &'static str, pod: &'static str, conf: &Value| {
        let (p, conf) = (ns.path(), conf.clone());
        move || cni("ADD", cid, Some(&p), &cni_args(kns, pod), &conf)
    };
    let run = |f: Box<dyn FnOnce() -> Invocation + Send>| async move {
        tokio::task::spawn_blocking(f).await.unwrap()
    };

    // Refusals, before anything is plugged: the field unset, a foreign
    // namespace, a node that does not forward.
    refused(
        &run(Box::new(add(cid_a, &pod_a, TRUSTED, "dns-a", &base))).await,
        "no hostEgressNamespace",
    );
    refused(
        &run(Box::new(add(cid_c, &pod_c, TENANT, "sneaky-c", &c))).await,
        &format!("only pods of namespace \"{TRUSTED}\""),
    );
    node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    refused(
        &run(Box::new(add(cid_a, &pod_a, TRUSTED, "dns-a", &c))).await,
        "ip_forward is 0",
    );
    for p in [&pod_a, &pod_c] {
        assert!(
            p.exec(&["ip", "-o", "link"]).lines().count() == 1,
            "nothing plugged into {}",
            p.name
        );
    }
    node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

    // Granted: pod A. Not granted: pod B, given the same route by hand.
    let ra = run(Box::new(add(cid_a, &pod_a, TRUSTED, "dns-a", &c))).await;
    ra.ok();
    let probe_a = ra.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    let rb = run(Box::new(add(cid_b, &pod_b, TRUSTED, "plain-b", &c))).await;
    rb.ok();
    let probe_b = rb.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    let route: Value =
        serde_json::from_str(&pod_a.exec(&["ip", "-j", "route", "show", REMOTE_IP])).unwrap();
    assert_eq!(route[0]["gateway"], SOURCE, "{route}");
    assert_eq!(route[0]["dev"], "probe0", "{route}");
    assert_eq!(route[0]["prefsrc"], probe_a.as_str(), "{route}");
    assert!(
        pod_b
            .exec(&["ip", "route", "show", REMOTE_IP])
            .trim()
            .is_empty(),
        "no grant, no route"
    );
    for ip in [REMOTE_IP, NODE_IP] {
        pod_b.exec(&[
            "ip", "route", "add", ip, "via", SOURCE, "dev", "probe0", "src", &probe_b,
        ]);
    }

    let (f, n) = rules_of(node, cid_a);
    assert_eq!((f.len(), n.len()), (4, 2), "{f:#?} {n:#?}");
    assert!(
        f.iter().all(|r| r.contains(&format!("-s {probe_a}/32"))),
        "{f:#?}"
    );
    assert_eq!(rules_of(node, cid_b), (vec![], vec![]));
    assert_eq!(rules_of(node, cid_c), (vec![], vec![]));

    let check_a = || {
        assert_eq!(
            connect(&pod_a, REMOTE_IP, 7001),
            format!("PEER {NODE_IP}"),
            "forwarded, masqueraded"
        );
        assert_eq!(
            connect(&pod_a, NODE_IP, 7003),
            format!("PEER {probe_a}"),
            "a local address of the node (INPUT)"
        );
    };
    check_a();
    assert!(connect(&pod_a, REMOTE_IP, 7002).starts_with("FAIL"));
    assert!(connect(&pod_a, NODE_IP, 7004).starts_with("FAIL"));
    for (ip, port) in [(REMOTE_IP, 7001), (NODE_IP, 7003)] {
        let r = connect(&pod_b, ip, port);
        assert!(r.starts_with("FAIL"), "pod B reached {ip}:{port}: {r}");
    }

    // A repeated ADD replaces the container's rules, no duplicates.
    run(Box::new(add(cid_a, &pod_a, TRUSTED, "dns-a", &c)))
        .await
        .ok();
    let (f2, n2) = rules_of(node, cid_a);
    assert_eq!((f2.len(), n2.len()), (4, 2), "{f2:#?} {n2:#?}");
    check_a();

    // DEL leaves no rule of the container; the chains and jumps stay.
    for (cid, p, pod) in [(cid_a, &pod_a, "dns-a"), (cid_b, &pod_b, "plain-b")] {
        cni("DEL", cid, Some(&p.path()), &cni_args(TRUSTED, pod), &c).ok();
        assert_eq!(rules_of(node, cid), (vec![], vec![]), "{cid}");
    }
    let filter = node.exec(&["iptables", "-w", "-S"]);
    let nat = node.exec(&["iptables", "-w", "-t", "nat", "-S"]);
    for want in [
        "-A VPCNET-PROBE-IN -i vpp+ -j VPCNET-EGRESS-IN",
        "-A VPCNET-PROBE-FWD -i vpp+ -j VPCNET-EGRESS-FWD",
    ] {
        assert!(filter.contains(want), "{want} missing:\n{filter}");
    }
    assert!(
        !filter.contains("-A VPCNET-EGRESS"),
        "no per-pod rule left:\n{filter}"
    );
    assert!(
        nat.contains("-A POSTROUTING -j VPCNET-EGRESS-NAT")
            && !nat.contains("-A VPCNET-EGRESS-NAT"),
        "{nat}"
    );
    drop(remote);
}
