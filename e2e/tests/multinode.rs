//! More than one node: pods of one VPC on different nodes talk over the
//! Geneve tunnel between the nodes' OVS (ping, TCP, 50 MB intact), two VPCs
//! with the same CIDR stay apart across nodes, and a NAT gateway on one node
//! serves SNAT, DNAT and a FIP for pods on another. Needs a box of at least
//! two nodes (`VPCNET_BOX_NODES`, 2 by default).

use std::time::{Duration, Instant};

use vpcnet_api::condition;
use vpcnet_api::contract::naming;
use vpcnet_e2e::cluster::{Cleanup, on_node, testapp_pod};
use vpcnet_e2e::external::{self, from_outside};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::GW_NS;
use vpcnet_e2e::{box_dir, box_env, node};

const READY: Duration = Duration::from_secs(180);
/// 50 MiB: the transfer each test checks byte for byte.
const TRANSFER: u64 = 50 * 1024 * 1024;

/// The two nodes the tests place pods on.
fn two_nodes() -> (String, String) {
    let nodes = node::all();
    assert!(
        nodes.len() >= 2,
        "this suite needs a box of at least 2 nodes (VPCNET_BOX_NODES=2); it has {nodes:?}"
    );
    (nodes[0].clone(), nodes[1].clone())
}

/// Namespace + Vpc + Subnet `t` of `cidr`, registered for cleanup (with
/// `gateway` before the namespace: the namespace and its EIPs go first).
fn tenant(k: &Kubectl, c: &mut Cleanup, t: &str, cidr: &str, gateway: bool) {
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {t}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {t}}}\nspec: {{namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {t}}}\nspec: {{vpc: {t}, cidrBlock: {cidr}, namespaces: [{t}]}}\n"
    ));
    c.add("vpc", None, t);
    c.add("subnet", None, t);
    if gateway {
        c.add("vpc-nat-gw", None, t);
    }
    c.add("namespace", None, t);
}

fn pod_on(k: &Kubectl, ns: &str, pod: &str, ip: &str, node: &str) {
    k.must_apply(&on_node(&testapp_pod(ns, pod, Some(ip)), node));
}

/// `curl` from a pod to `ip:8080`; the testapp's answer line.
fn http(k: &Kubectl, ns: &str, pod: &str, ip: &str) -> Result<String, String> {
    k.curl_from(ns, pod, &format!("http://{ip}:8080/"))
}

/// The shell line that downloads TRANSFER bytes from `url` and prints the
/// hash of what arrived, then the hash of what the server sent (the testapp
/// generates the same stream locally).
fn transfer_script(url: &str) -> String {
    format!(
        "curl -sS --max-time 120 {url}/bytes/{TRANSFER} | sha256sum; testapp bytes {TRANSFER} | sha256sum"
    )
}

/// Both hashes of [`transfer_script`]'s output are one and the same.
fn assert_intact(what: &str, out: &str, secs: f64) {
    let hashes: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        hashes.len() == 2 && hashes[0] == hashes[1],
        "{what}: 50 MiB arrived changed or cut short: {out}"
    );
    eprintln!(
        "{what}: 50 MiB intact in {secs:.2} s ({:.0} Mbit/s)",
        TRANSFER as f64 * 8.0 / secs / 1e6
    );
}

/// Geneve tunnel interfaces of `node`'s OVS and their remote IPs.
fn tunnels(node: &str) -> String {
    let db = box_dir().join(format!("nodes.d/{node}/ovs/db.sock"));
    let out = std::process::Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{}", db.display()))
        .args([
            "--bare",
            "--columns=options",
            "find",
            "interface",
            "type=geneve",
        ])
        .output()
        .expect("ovs-vsctl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pods_of_a_vpc_on_two_nodes_talk_and_same_cidr_vpcs_stay_apart() {
    let (n1, n2) = two_nodes();
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    tenant(&k, &mut c, "e2e-mna", "10.0.1.0/24", false);
    tenant(&k, &mut c, "e2e-mnb", "10.0.1.0/24", false);
    pod_on(&k, "e2e-mna", "a1", "10.0.1.10", &n1);
    pod_on(&k, "e2e-mna", "a2", "10.0.1.11", &n2);
    pod_on(&k, "e2e-mnb", "b1", "10.0.1.10", &n1);
    pod_on(&k, "e2e-mnb", "b2", "10.0.1.11", &n2);
    pod_on(&k, "e2e-mnb", "b3", "10.0.1.20", &n2);
    k.wait_ready("e2e-mna", &["a1", "a2"], READY);
    k.wait_ready("e2e-mnb", &["b1", "b2", "b3"], READY);
    assert_eq!(node::of_pod(&k, "e2e-mna", "a2"), n2);

    // The nodes reach each other through a tunnel on the underlay.
    // `--bare` prints the options unquoted: remote_ip=10.254.0.2.
    let remote = format!("remote_ip={}.2", box_env::get("UNDERLAY_BASE"));
    assert!(
        tunnels(&n1).replace('"', "").contains(&remote),
        "{n1} has a Geneve tunnel to {n2}: {}",
        tunnels(&n1)
    );

    // ICMP and TCP across the nodes, with the real source address.
    assert!(
        k.ping_from("e2e-mna", "a1", "10.0.1.11"),
        "a1 pings a2 on {n2}"
    );
    let answer = http(&k, "e2e-mna", "a1", "10.0.1.11").expect("a1 reaches a2 over TCP");
    assert!(
        answer.contains("server=a2") && answer.contains("client=10.0.1.10:"),
        "{answer}"
    );
    let answer = http(&k, "e2e-mnb", "b1", "10.0.1.11").expect("b1 reaches b2 over TCP");
    assert!(
        answer.contains("server=b2"),
        "the same address in the other VPC is the other VPC's pod: {answer}"
    );

    // 50 MiB from node-2 to node-1, byte for byte.
    let t = Instant::now();
    let out = k.exec(
        "e2e-mna",
        "a1",
        &["sh", "-c", &transfer_script("http://10.0.1.11:8080")],
    );
    assert!(out.ok, "transfer a2 -> a1: {}", out.stderr);
    assert_intact(
        "a2 -> a1 across nodes",
        &out.stdout,
        t.elapsed().as_secs_f64(),
    );

    // Across VPCs nothing passes, on either node.
    assert!(
        !k.ping_from("e2e-mna", "a1", "10.0.1.20"),
        "a1 must not reach b3 (tenant B only, on {n2})"
    );
    assert!(
        http(&k, "e2e-mna", "a1", "10.0.1.20").is_err(),
        "no TCP across VPCs"
    );
    assert!(
        http(&k, "e2e-mnb", "b1", "10.0.1.20").is_ok_and(|a| a.contains("server=b3")),
        "b3 itself is up and reached from its own VPC"
    );
}

#[test]
fn a_gateway_on_one_node_serves_snat_dnat_and_fip_for_pods_on_another() {
    let (n1, n2) = two_nodes();
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let samples = vpcnet_e2e::repo_root().join("config/samples/03-external-subnet.yaml");
    let out = k.apply(&samples);
    assert!(out.ok, "{}", out.stderr);
    let t = "e2e-mngw";
    tenant(&k, &mut c, t, "10.0.1.0/24", true);
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {t}}}\n\
         spec: {{vpc: {t}, subnet: {t}, lanIp: 10.0.1.254, externalSubnets: [ovn-vpc-external-network], \
         selector: ['kubernetes.io/hostname: {n2}']}}\n"
    ));
    pod_on(&k, t, "web", "10.0.1.2", &n1);
    pod_on(&k, t, "db", "10.0.1.3", &n1);
    let eip = |name: &str, ip: Option<&str>| {
        let ip = ip.map(|i| format!(", v4ip: {i}")).unwrap_or_default();
        k.must_apply(&format!(
            "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: {name}, namespace: {t}}}\nspec: {{natGwDp: {t}{ip}}}\n"
        ));
    };
    eip("eips01", Some("172.16.3.228"));
    eip("eipd01", Some("172.16.3.223"));
    eip("eipf01", None);
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesSnatRule\nmetadata: {{name: snat01, namespace: {t}}}\nspec: {{eip: eips01, internalCIDR: 10.0.1.0/24}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: dnat01, namespace: {t}}}\nspec: {{eip: eipd01, externalPort: '8888', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesFIPRule\nmetadata: {{name: fip01, namespace: {t}}}\nspec: {{eip: eipf01, internalIp: 10.0.1.3}}\n"
    ));
    k.wait_ready(t, &["web", "db"], READY);
    for (kind, ns, name) in [
        ("vpc-nat-gw", None, t),
        ("eip", Some(t), "eips01"),
        ("eip", Some(t), "eipd01"),
        ("eip", Some(t), "eipf01"),
        ("snat", Some(t), "snat01"),
        ("dnat", Some(t), "dnat01"),
        ("fip", Some(t), "fip01"),
    ] {
        k.wait_condition(kind, ns, &[name], condition::READY, READY);
    }
    let gw_node = node::of_pod(&k, GW_NS, &naming::natgw_pod(t));
    assert_eq!(gw_node, n2, "the selector put the gateway on {n2}");
    assert_eq!(node::of_pod(&k, t, "web"), n1);
    let fip = k.field("eip", Some(t), "eipf01", "{.status.ip}");

    // Egress from node-1's pods through node-2's gateway.
    let outside = external::host_url();
    let seen = k.exec(t, "web", &["curl", "-s", "--max-time", "3", &outside]);
    assert!(
        seen.ok && seen.stdout.contains("client=172.16.3.228:"),
        "SNAT source: {} {}",
        seen.stdout,
        seen.stderr
    );
    let seen = k.exec(t, "db", &["curl", "-s", "--max-time", "3", &outside]);
    assert!(
        seen.ok && seen.stdout.contains(&format!("client={fip}:")),
        "FIP egress source: {} {}",
        seen.stdout,
        seen.stderr
    );

    // Ingress to node-1's pods through node-2's gateway.
    let got = from_outside("http://172.16.3.223:8888/", Duration::from_secs(3))
        .expect("DNAT from outside");
    assert!(got.contains("server=web"), "{got}");
    let got = from_outside(&format!("http://{fip}:8080/"), Duration::from_secs(3))
        .expect("FIP from outside");
    assert!(got.contains("server=db"), "{got}");

    // 50 MiB through the DNAT, the gateway and the tunnel, byte for byte.
    let t0 = Instant::now();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", external::netns(), "sh", "-c"])
        .arg(format!(
            "curl -sS --max-time 120 http://172.16.3.223:8888/bytes/{TRANSFER} | sha256sum"
        ))
        .output()
        .expect("ip netns exec");
    let secs = t0.elapsed().as_secs_f64();
    let local = k.exec(
        t,
        "web",
        &["sh", "-c", &format!("testapp bytes {TRANSFER} | sha256sum")],
    );
    assert!(
        out.status.success() && local.ok,
        "transfer through the DNAT"
    );
    assert_intact(
        "web -> external host through the DNAT",
        &format!("{}{}", String::from_utf8_lossy(&out.stdout), local.stdout),
        secs,
    );
}
