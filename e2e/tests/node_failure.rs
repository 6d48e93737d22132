//! A node dies under its NAT gateway: node-2's kubelet, containerd and
//! OVS/OVN daemons are frozen and its links cut (`e2e/box/node-ctl.sh`),
//! the way a node dies, not a clean drain. The gateway comes back on node-1
//! with every rule restored from its snapshot, and traffic through its EIPs
//! works again; each phase is measured. When node-2 comes back there is
//! still one gateway, the EIP answers from one MAC only, and the old pod's
//! containers are gone from node-2.

use std::process::Command;
use std::time::{Duration, Instant};

use vpcnet_api::condition;
use vpcnet_api::contract::naming;
use vpcnet_e2e::cluster::{Cleanup, on_node, testapp_pod};
use vpcnet_e2e::external::{self, from_outside};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::{GW_NS, dnat_comment, nat_table};
use vpcnet_e2e::node;

const T: &str = "e2e-nodefail";
const DNAT_EIP: &str = "172.16.3.233";
const SNAT_EIP: &str = "172.16.3.238";
const READY: Duration = Duration::from_secs(180);

fn node_ctl(args: &[&str]) {
    let st = Command::new("bash")
        .arg(vpcnet_e2e::repo_root().join("e2e/box/node-ctl.sh"))
        .args(args)
        .status()
        .expect("bash runs");
    assert!(st.success(), "node-ctl.sh {args:?}");
}

/// Brings the failed node back and uncordons node-1 however the test ends.
struct Restore {
    k: Kubectl,
    failed: Option<String>,
    cordoned: Option<String>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(n) = self.failed.take() {
            node_ctl(&["recover", &n]);
        }
        if let Some(n) = self.cordoned.take() {
            self.k.run(&["uncordon", &n]);
        }
    }
}

fn gw_pod_uid(k: &Kubectl) -> Option<(String, String)> {
    let out = k.run(&[
        "-n",
        GW_NS,
        "get",
        "pod",
        &naming::natgw_pod(T),
        "-o",
        "jsonpath={.metadata.uid} {.spec.nodeName}",
    ]);
    let text = out.stdout.trim().to_string();
    let (uid, node) = text.split_once(' ')?;
    (out.ok && !uid.is_empty()).then(|| (uid.to_string(), node.to_string()))
}

fn node_ready(k: &Kubectl, n: &str) -> String {
    k.field(
        "node",
        None,
        n,
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    )
}

/// The MACs that answer ARP for `ip` on the external network.
fn arp_answers(ip: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            external::netns(),
            "arping",
            "-c",
            "3",
            "-w",
            "4",
        ])
        .args(["-i", vpcnet_e2e::box_env::get("EXT_HOST_IF"), ip])
        .output()
        .expect("arping runs");
    // Either arping's format: iputils' "reply from IP [MAC]" or Habets'
    // "from MAC (IP)": any word that is a MAC.
    let mut macs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|w| w.trim_matches(['[', ']', '(', ')', ':']).to_lowercase())
        .filter(|w| {
            w.len() == 17
                && w.split(':').count() == 6
                && w.split(':')
                    .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

/// The operator's pod on `keep`: this test measures a gateway's failover,
/// not the operator's own (which adds its 10 s toleration of the lost node
/// and a restart; see the README).
fn operator_on(k: &Kubectl, keep: &str, other: &str) {
    let sel = vpcnet_e2e::cluster::operator_selector();
    let node_of = || {
        k.ok(&[
            "-n",
            vpcnet_e2e::cluster::OPERATOR_NS,
            "get",
            "pods",
            "-l",
            &sel,
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ])
    };
    if node_of().trim() == keep {
        return;
    }
    k.ok(&["cordon", other]);
    k.ok(&[
        "-n",
        vpcnet_e2e::cluster::OPERATOR_NS,
        "delete",
        "pods",
        "-l",
        &sel,
        "--wait=true",
    ]);
    k.eventually(
        Duration::from_secs(90),
        "the operator running on node-1",
        || node_of().trim() == keep,
    );
    k.ok(&["uncordon", other]);
    let out = k.run(&[
        "-n",
        vpcnet_e2e::cluster::OPERATOR_NS,
        "wait",
        "--for=condition=Available",
        "deployment/vpcnet-operator",
        "--timeout=90s",
    ]);
    assert!(out.ok, "{}", out.stderr);
}

#[test]
fn a_gateway_comes_back_on_a_live_node_when_its_node_dies() {
    let nodes = node::all();
    assert!(nodes.len() >= 2, "needs a box of 2+ nodes: {nodes:?}");
    let (n1, n2) = (nodes[0].clone(), nodes[1].clone());
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let mut restore = Restore {
        k: k.clone(),
        failed: None,
        cordoned: None,
    };
    let samples = vpcnet_e2e::repo_root().join("config/samples/03-external-subnet.yaml");
    assert!(k.apply(&samples).ok);
    operator_on(&k, &n1, &n2);
    // The gateway goes to node-2: node-1 is cordoned until it runs there.
    k.ok(&["cordon", &n1]);
    restore.cordoned = Some(n1.clone());
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {T}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {T}}}\nspec: {{namespaces: [{T}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {T}}}\nspec: {{vpc: {T}, cidrBlock: 10.0.1.0/24, namespaces: [{T}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {T}}}\nspec: {{vpc: {T}, subnet: {T}, lanIp: 10.0.1.254, externalSubnets: [ovn-vpc-external-network]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: eipd, namespace: {T}}}\nspec: {{natGwDp: {T}, v4ip: {DNAT_EIP}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: eips, namespace: {T}}}\nspec: {{natGwDp: {T}, v4ip: {SNAT_EIP}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: web, namespace: {T}}}\nspec: {{eip: eipd, externalPort: '8888', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesSnatRule\nmetadata: {{name: out, namespace: {T}}}\nspec: {{eip: eips, internalCIDR: 10.0.1.0/24}}\n"
    ));
    for (kind, name) in [
        ("vpc", T),
        ("subnet", T),
        ("vpc-nat-gw", T),
        ("namespace", T),
    ] {
        c.add(kind, None, name);
    }
    // The tenant's pod stays on node-1 (bound past the cordon).
    k.must_apply(&on_node(&testapp_pod(T, "web", Some("10.0.1.2")), &n1));
    k.wait_ready(T, &["web"], READY);
    k.wait_condition("vpc-nat-gw", None, &[T], condition::READY, READY);
    for (kind, name) in [
        ("eip", "eipd"),
        ("eip", "eips"),
        ("dnat", "web"),
        ("snat", "out"),
    ] {
        k.wait_condition(kind, Some(T), &[name], condition::READY, READY);
    }
    let (old_uid, old_node) = gw_pod_uid(&k).expect("the gateway pod");
    assert_eq!(old_node, n2, "the gateway runs on {n2}");
    k.ok(&["uncordon", &n1]);
    restore.cordoned = None;
    let url = format!("http://{DNAT_EIP}:8888/");
    let got = from_outside(&url, Duration::from_secs(3)).expect("DNAT before the failure");
    assert!(got.contains("server=web"), "{got}");

    // node-2 dies.
    node_ctl(&["fail", &n2]);
    restore.failed = Some(n2.clone());
    let t0 = Instant::now();
    let phase = |what: &str, f: &mut dyn FnMut() -> bool| -> f64 {
        let limit = Duration::from_secs(240);
        while !f() {
            assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        t0.elapsed().as_secs_f64()
    };
    let detected = phase("node-2 judged lost (Ready=Unknown)", &mut || {
        node_ready(&k, &n2) == "Unknown"
    });
    let evicted = phase("the old gateway pod gone", &mut || {
        gw_pod_uid(&k).is_none_or(|(uid, _)| uid != old_uid)
    });
    let rescheduled = phase("a new gateway pod on node-1", &mut || {
        gw_pod_uid(&k).is_some_and(|(uid, node)| uid != old_uid && node == n1)
    });
    let rules = phase("the DNAT rule live in the new pod", &mut || {
        let t = nat_table(&k, T);
        t.ok && t.stdout.contains(&dnat_comment(T, "web"))
    });
    let first = phase("the first answer through the EIP", &mut || {
        from_outside(&url, Duration::from_secs(1)).is_ok_and(|a| a.contains("server=web"))
    });
    eprintln!(
        "node-2 died at 0 s: lost (Ready=Unknown) {detected:.1} s, old gateway pod gone {evicted:.1} s, \
         new pod on {n1} {rescheduled:.1} s, rules live {rules:.1} s, first packet through the EIP {first:.1} s"
    );
    assert!(
        first < 60.0,
        "traffic back {first:.1} s after the node died (target < 60 s)"
    );
    let seen = k.exec(
        T,
        "web",
        &["curl", "-s", "--max-time", "3", &external::host_url()],
    );
    assert!(
        seen.ok && seen.stdout.contains(&format!("client={SNAT_EIP}:")),
        "SNAT through the new gateway: {} {}",
        seen.stdout,
        seen.stderr
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={T},reason=NodeLost"),
        "-A",
    ]);
    assert!(events.contains("NodeLost"), "a NodeLost Event: {events}");

    // node-2 comes back: still one gateway, one MAC for the EIP, and the
    // old pod's containers leave node-2.
    node_ctl(&["recover", &n2]);
    restore.failed = None;
    k.eventually(Duration::from_secs(60), "node-2 Ready again", || {
        node_ready(&k, &n2) == "True"
    });
    let filter = format!("labels.\"io.kubernetes.pod.uid\"=={old_uid}");
    k.eventually(
        Duration::from_secs(60),
        "the old pod's containers gone from node-2",
        || {
            let out = node::exec_on(
                &n2,
                &["ctr", "-n", "k8s.io", "containers", "ls", "-q", &filter],
            );
            out.ok && out.stdout.trim().is_empty()
        },
    );
    let pods = k.ok(&[
        "-n",
        GW_NS,
        "get",
        "pods",
        "-l",
        &format!("{}={T}", vpcnet_api::contract::labels::NAT_GATEWAY),
        "-o",
        "name",
    ]);
    assert!(pods.lines().count() <= 1, "one gateway pod: {pods}");
    let (uid, node) = gw_pod_uid(&k).expect("the gateway pod");
    assert!(
        uid != old_uid && node == n1,
        "the new gateway stays: {uid} on {node}"
    );
    let macs = arp_answers(DNAT_EIP);
    assert_eq!(macs.len(), 1, "one MAC answers for {DNAT_EIP}: {macs:?}");
    let neigh = Command::new("ip")
        .args(["-n", external::netns(), "neigh", "show", DNAT_EIP])
        .output()
        .expect("ip neigh");
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    eprintln!(
        "external host's neighbour entry after node-2 came back: {}",
        neigh.trim()
    );
    assert!(
        neigh.contains(&macs[0]),
        "the neighbour table has the live gateway's MAC: {neigh}"
    );
    let got = from_outside(&url, Duration::from_secs(3)).expect("DNAT after node-2 came back");
    assert!(got.contains("server=web"), "{got}");
}
