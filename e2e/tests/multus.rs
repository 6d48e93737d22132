//! Multus on the box: a pod with a second interface on the external network.
//! A testapp pod in `default` annotated for `ovn-vpc-external-network` with
//! a static address must get Ready with eth0 from vpcnet (the default subnet,
//! 10.16.0.0/16) and net1 at that address; curl from the pod to the external
//! host must work and the host must log the pod's net1 address; after
//! deletion nothing of net1 is left on the node. Two rounds: the second
//! reuses the address, which only works if the first cleaned up.

use std::process::Command;
use std::time::{Duration, Instant};

use vpcnet_api::contract::annotations;
use vpcnet_e2e::cluster::{Cleanup, TESTAPP_IMAGE, jsonpath_key};
use vpcnet_e2e::external;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::GW_NS;
use vpcnet_e2e::{box_env, node};

const POD: &str = "multus-ext";
const NS: &str = "default";
/// Inside the external network, outside the samples' EIP range.
const NET1_IP: &str = "172.16.3.150";
const ROUNDS: usize = 2;
/// The NAD of the external network lives beside the gateways that use it.
const NAD_NS: &str = GW_NS;
const NAD_NAME: &str = "ovn-vpc-external-network";
/// What Multus records on the pod about each attachment.
const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
const MULTUS_CONF: &str = "/etc/cni/net.d/00-multus.conf";
const MULTUS_LOG: &str = "/var/log/multus.log";
const DEFAULT_CONFLIST: &str = "/etc/cni/net.d/10-vpcnet.conflist";

/// Runs one of the box's scripts with `args` (e.g. `external.sh up`).
fn box_script(name: &str, args: &[&str]) {
    let script = vpcnet_e2e::repo_root().join("e2e/box").join(name);
    let st = Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .expect("bash runs");
    assert!(st.success(), "{name} {args:?} failed");
}

/// Multus, the external host and its NAD, each only where missing (the box
/// sets all of them up; a box that lost one gets it back).
fn setup(k: &Kubectl) {
    let t = Instant::now();
    if !node::all()
        .iter()
        .all(|n| node::exec_on(n, &["test", "-s", MULTUS_CONF]).ok)
    {
        box_script("multus.sh", &["install"]);
    }
    // Returns at once when the external host is already up.
    box_script("external.sh", &["up"]);
    if !k.run(&["get", "ns", NAD_NS]).ok {
        k.ok(&["create", "ns", NAD_NS]);
    }
    box_script("external.sh", &["nad"]);
    if !node::exec(&["test", "-s", DEFAULT_CONFLIST]).ok {
        eprintln!(
            "WARNING: no {DEFAULT_CONFLIST} in the node: the default network (eth0) will fail"
        );
    }
    eprintln!("setup {:.2}s", t.elapsed().as_secs_f64());
}

/// Panics with `msg`, after the pod's events and the end of Multus' log.
fn fail(k: &Kubectl, msg: &str) -> ! {
    let describe = k.run(&["-n", NS, "describe", "pod", POD]).stdout;
    let tail: Vec<&str> = describe.lines().rev().take(15).collect();
    eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    eprintln!("{}", node::exec(&["tail", "-n", "20", MULTUS_LOG]).stdout);
    panic!("{msg}");
}

/// IPv4 addresses (with prefix) of `dev` in the pod.
fn pod_addrs(k: &Kubectl, dev: &str) -> String {
    k.exec(NS, POD, &["ip", "-4", "-o", "addr", "show", "dev", dev])
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What of the pod's net1 is still on the node: macvlan links in its
/// namespace, and Multus' cache entries naming the pod.
fn node_leftovers() -> String {
    let links = Command::new("ip")
        .args([
            "-n",
            &box_env::node_netns(&node::first()),
            "-o",
            "link",
            "show",
            "type",
            "macvlan",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let cache = node::exec(&[
        "sh",
        "-c",
        &format!(
            "grep -ls '\"{POD}\"' /var/lib/cni/multus/* /var/lib/cni/multus/results/* 2>/dev/null"
        ),
    ])
    .stdout;
    format!("{links}{cache}").trim().to_string()
}

/// On the first node, whose Multus log and cache the test reads (every
/// node has its own).
fn pod_manifest() -> String {
    vpcnet_e2e::cluster::on_node(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\n  namespace: {NS}\n  labels: {{app: {POD}}}\n  annotations:\n    {}: '[{{\"name\":\"{NAD_NAME}\",\"namespace\":\"{NAD_NS}\",\"interface\":\"net1\",\"ips\":[\"{NET1_IP}/24\"]}}]'\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n    - {{name: testapp, image: {TESTAPP_IMAGE}, imagePullPolicy: Never}}\n",
            annotations::MULTUS_NETWORKS
        ),
        &node::first(),
    )
}

fn round(k: &Kubectl, n: usize) {
    k.ok(&[
        "-n",
        NS,
        "delete",
        "pod",
        POD,
        "--ignore-not-found",
        "--wait=true",
    ]);
    let t0 = Instant::now();
    k.must_apply(&pod_manifest());
    if !k
        .run(&[
            "-n",
            NS,
            "wait",
            "--for=condition=Ready",
            &format!("pod/{POD}"),
            "--timeout=60s",
        ])
        .ok
    {
        fail(k, &format!("pod {NS}/{POD} not Ready in 60s"));
    }
    let t_run = t0.elapsed();
    let uid = k.field("pod", Some(NS), POD, "{.metadata.uid}");
    let ip_eth0 = pod_addrs(k, "eth0");
    let ip_net1 = pod_addrs(k, "net1");
    if !ip_eth0.starts_with("10.16.") {
        fail(
            k,
            &format!("eth0 has '{ip_eth0}', not an address of 10.16.0.0/16"),
        );
    }
    if ip_net1 != format!("{NET1_IP}/24") {
        fail(k, &format!("net1 has '{ip_net1}', not {NET1_IP}/24"));
    }
    let status: String = k
        .field(
            "pod",
            Some(NS),
            POD,
            &format!("{{.metadata.annotations.{}}}", jsonpath_key(NETWORK_STATUS)),
        )
        .chars()
        .filter(|c| *c != '\n' && *c != ' ')
        .collect();
    if !(status.contains(&format!("\"{NET1_IP}\"")) && status.contains("\"interface\":\"net1\"")) {
        fail(
            k,
            &format!("{NETWORK_STATUS} annotation lacks net1 {NET1_IP}: {status}"),
        );
    }

    let t1 = Instant::now();
    let url = external::host_url();
    let out = k.exec(NS, POD, &["curl", "-sS", "-m", "5", &url]);
    if !out.ok {
        fail(
            k,
            &format!("curl {url} from the pod failed: {}", out.stderr),
        );
    }
    let t_curl = t1.elapsed();
    let body = out.stdout.trim_end_matches('\n');
    let client = body.strip_suffix(" server=external").unwrap_or_default();
    if !client.starts_with(&format!("client={NET1_IP}:")) {
        fail(k, &format!("unexpected answer: {body}"));
    }
    let log = std::fs::read_to_string(external::access_log()).unwrap_or_default();
    if !log.lines().any(|l| l == client) {
        fail(k, &format!("the external host's log lacks {client}"));
    }

    let t2 = Instant::now();
    if !k
        .run(&[
            "-n",
            NS,
            "delete",
            "pod",
            POD,
            "--wait=true",
            "--timeout=60s",
        ])
        .ok
    {
        fail(k, "pod deletion timed out");
    }
    let t_del = t2.elapsed();
    // The sandbox's teardown (CNI DEL) may finish just after the API object goes.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = node_leftovers();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            fail(k, &format!("left on the node after deletion: {left}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Logged as <ns>:<pod>:<uid>:<network>:<ifname>; the uid is unknownUID
    // when the pod object was already gone at DEL time.
    let del = node::exec(&[
        "grep",
        "-qE",
        &format!("Del: {NS}:{POD}:({uid}|unknownUID):{NAD_NAME}:net1 "),
        MULTUS_LOG,
    ]);
    if !del.ok {
        fail(
            k,
            &format!("no Multus DEL of net1 for pod uid {uid} in {MULTUS_LOG}"),
        );
    }
    eprintln!(
        "round {n}: Running+Ready {:.2}s (eth0 {ip_eth0}, net1 {ip_net1}); curl {:.2}s -> '{body}'; delete {:.2}s; net1 cleaned up",
        t_run.as_secs_f64(),
        t_curl.as_secs_f64(),
        t_del.as_secs_f64()
    );
}

#[test]
fn a_pod_gets_a_macvlan_leg_on_the_external_network_and_leaves_nothing_behind() {
    let k = Kubectl::for_box();
    setup(&k);
    let mut c = Cleanup::new(&k);
    c.add("pod", Some(NS), POD);
    for n in 1..=ROUNDS {
        round(&k, n);
    }
}
