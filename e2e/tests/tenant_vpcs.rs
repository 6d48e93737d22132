//! Tenant VPCs on the real node: pods in two VPCs with the same CIDR talk
//! inside their VPC and never across; routing between subnets; fixed
//! addresses; an operator crash mid-creation; and a clean teardown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use vpcnet_e2e::cluster::{Cleanup, OPERATOR_NS, operator_selector, testapp_pod};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::ovn_rows;

const READY: Duration = Duration::from_secs(180);

/// Namespace + Vpc + Subnet for one tenant, registered for cleanup.
fn tenant(k: &Kubectl, c: &mut Cleanup, ns: &str, vpc: &str, subnet: &str, cidr: &str) {
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {vpc}}}\nspec: {{namespaces: [{ns}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {subnet}}}\nspec: {{vpc: {vpc}, cidrBlock: {cidr}, namespaces: [{ns}]}}\n"
    ));
    c.add("vpc", None, vpc);
    c.add("subnet", None, subnet);
    c.add("namespace", None, ns);
}

/// `curl` from a pod to `ip:8080`; the testapp's answer line.
fn http(k: &Kubectl, ns: &str, pod: &str, ip: &str) -> Result<String, String> {
    k.curl_from(ns, pod, &format!("http://{ip}:8080/"))
}

#[test]
fn two_tenants_with_the_same_cidr_are_isolated() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    tenant(&k, &mut c, "e2e-ta", "e2e-ta", "e2e-ta-net", "10.0.1.0/24");
    tenant(&k, &mut c, "e2e-tb", "e2e-tb", "e2e-tb-net", "10.0.1.0/24");
    for (ns, pod, ip) in [
        ("e2e-ta", "a1", "10.0.1.10"),
        ("e2e-ta", "a2", "10.0.1.11"),
        ("e2e-tb", "b1", "10.0.1.10"),
        ("e2e-tb", "b2", "10.0.1.11"),
        ("e2e-tb", "b3", "10.0.1.20"),
    ] {
        k.must_apply(&testapp_pod(ns, pod, Some(ip)));
    }
    k.wait_ready("e2e-ta", &["a1", "a2"], READY);
    k.wait_ready("e2e-tb", &["b1", "b2", "b3"], READY);
    assert_eq!(k.pod_ip("e2e-ta", "a1"), "10.0.1.10");
    assert_eq!(
        k.pod_ip("e2e-tb", "b1"),
        "10.0.1.10",
        "the same address in two VPCs"
    );

    // Inside a VPC: ICMP and TCP reach the neighbour, with the real source.
    assert!(k.ping_from("e2e-ta", "a1", "10.0.1.11"), "a1 pings a2");
    let answer = http(&k, "e2e-ta", "a1", "10.0.1.11").expect("a1 reaches a2 over TCP");
    assert!(
        answer.contains("server=a2") && answer.contains("client=10.0.1.10:"),
        "{answer}"
    );
    let answer = http(&k, "e2e-tb", "b1", "10.0.1.11").expect("b1 reaches b2 over TCP");
    assert!(
        answer.contains("server=b2"),
        "same address, other VPC's pod answers: {answer}"
    );

    // Across VPCs: an address that exists only in tenant B is unreachable from A.
    assert!(
        !k.ping_from("e2e-ta", "a1", "10.0.1.20"),
        "a1 must not reach b3 (tenant B only)"
    );
    assert!(
        http(&k, "e2e-ta", "a1", "10.0.1.20").is_err(),
        "no TCP across VPCs"
    );
    assert!(
        http(&k, "e2e-tb", "b3", "10.0.1.11").is_ok_and(|a| a.contains("server=b2")),
        "b3 itself is up"
    );
}

#[test]
fn a_second_subnet_reaches_the_first_through_the_vpc_router() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    tenant(&k, &mut c, "e2e-r1", "e2e-r", "e2e-r-net1", "10.0.1.0/24");
    k.must_apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: e2e-r2}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {name: e2e-r-net2}\nspec: {vpc: e2e-r, cidrBlock: 10.0.2.0/24, namespaces: [e2e-r2]}\n",
    );
    c.add("subnet", None, "e2e-r-net2");
    c.add("namespace", None, "e2e-r2");
    k.must_apply(&testapp_pod("e2e-r1", "left", None));
    k.must_apply(&testapp_pod("e2e-r2", "right", None));
    k.wait_ready("e2e-r1", &["left"], READY);
    k.wait_ready("e2e-r2", &["right"], READY);
    let left = k.pod_ip("e2e-r1", "left");
    let right = k.pod_ip("e2e-r2", "right");
    assert!(
        left.starts_with("10.0.1.") && right.starts_with("10.0.2."),
        "{left} {right}"
    );
    assert!(k.ping_from("e2e-r2", "right", &left));
    let answer = http(&k, "e2e-r2", "right", &left).expect("TCP across the router");
    assert!(
        answer.contains("server=left") && answer.contains(&format!("client={right}:")),
        "{answer}"
    );
}

#[test]
fn fixed_addresses_are_honoured_and_conflicts_refused() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    tenant(
        &k,
        &mut c,
        "e2e-fix",
        "e2e-fix",
        "e2e-fix-net",
        "10.0.5.0/24",
    );
    k.must_apply(&testapp_pod("e2e-fix", "first", Some("10.0.5.30")));
    k.wait_ready("e2e-fix", &["first"], READY);
    assert_eq!(k.pod_ip("e2e-fix", "first"), "10.0.5.30");
    k.must_apply(&testapp_pod("e2e-fix", "second", Some("10.0.5.30")));
    k.eventually(
        Duration::from_secs(30),
        "an IPConflict event on the second pod",
        || {
            let ev = k.run(&[
                "get",
                "events",
                "-n",
                "e2e-fix",
                "--field-selector",
                "involvedObject.name=second",
                "-o",
                "jsonpath={.items[*].reason} {.items[*].message}",
            ]);
            ev.stdout.contains("IPConflict")
                && ev.stdout.contains("10.0.5.30")
                && ev.stdout.contains("first")
        },
    );
    assert_eq!(
        k.field(
            "pod",
            Some("e2e-fix"),
            "second",
            "{.metadata.annotations.vpcnet\\.io/allocated}"
        ),
        "",
        "no allocation"
    );
    let ports = ovn_rows::pod_ports("e2e-fix");
    assert_eq!(
        ports,
        vec!["Pod/e2e-fix/first".to_string()],
        "no port for the conflicting pod"
    );

    // A pod written for Kube-OVN: its annotations ask for the same.
    k.must_apply(&testapp_pod("e2e-fix", "kubeovn", None).replace(
        "  labels:\n",
        "  annotations:\n    ovn.kubernetes.io/ip_address: \"10.0.5.31\"\n    ovn.kubernetes.io/logical_switch: e2e-fix-net\n  labels:\n",
    ));
    k.wait_ready("e2e-fix", &["kubeovn"], READY);
    assert_eq!(k.pod_ip("e2e-fix", "kubeovn"), "10.0.5.31");
    assert_eq!(
        k.field(
            "pod",
            Some("e2e-fix"),
            "kubeovn",
            "{.metadata.annotations.vpcnet\\.io/subnet}"
        ),
        "e2e-fix-net"
    );
    assert_eq!(
        http(&k, "e2e-fix", "first", "10.0.5.31").map(|_| ()),
        Ok(())
    );
}

/// Finds the PID of `binary` running in pod `uid` by its cgroup.
fn pid_in_pod(uid: &str, binary: &str) -> Option<u32> {
    let uid_cg = uid.replace('-', "_");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        ((cg.contains(uid) || cg.contains(&uid_cg)) && binary.starts_with(comm.trim()))
            .then_some(pid)
    })
}

/// One jsonpath field (below `.items[0].`) of the operator's pod.
fn operator_pod_field(k: &Kubectl, path: &str) -> String {
    k.ok(&[
        "get",
        "pods",
        "-n",
        OPERATOR_NS,
        "-l",
        &operator_selector(),
        "-o",
        &format!("jsonpath={{.items[0].{path}}}"),
    ])
}

#[test]
fn operator_killed_while_creating_fifty_pods_leaves_unique_addresses_and_no_orphans() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    tenant(
        &k,
        &mut c,
        "e2e-crash",
        "e2e-crash",
        "e2e-crash-net",
        "10.0.3.0/24",
    );
    let op_pod = operator_pod_field(&k, "metadata.uid");
    let manifests: Vec<String> = (0..50)
        .map(|i| testapp_pod("e2e-crash", &format!("p{i:02}"), None))
        .collect();
    k.must_apply(&manifests.join("---\n"));
    std::thread::sleep(Duration::from_millis(800));
    let pid = pid_in_pod(op_pod.trim(), "vpcnet-operator")
        .expect("the operator process is found by its pod's cgroup");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid}");

    let names: Vec<String> = (0..50).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    k.wait_ready("e2e-crash", &refs, Duration::from_secs(300));
    let ips: Vec<String> = names.iter().map(|p| k.pod_ip("e2e-crash", p)).collect();
    let unique: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(unique.len(), 50, "every pod has its own address: {ips:?}");
    let owners: BTreeMap<String, usize> = ovn_rows::owners()
        .into_iter()
        .filter(|(o, _)| o.starts_with("Pod/e2e-crash/"))
        .collect();
    assert_eq!(
        owners.len(),
        50,
        "exactly the 50 pods own ports, no orphans: {owners:?}"
    );
    assert!(
        owners.values().all(|&n| n == 1),
        "one port per pod: {owners:?}"
    );
    let restarts = operator_pod_field(&k, "status.containerStatuses[0].restartCount");
    assert!(
        restarts.trim().parse::<u32>().unwrap_or(0) >= 1,
        "the operator really restarted"
    );
    // The restarted operator leads under its pod's name: the same pod may
    // renew its own lease at once instead of waiting for it to run out.
    let pod_name = operator_pod_field(&k, "metadata.name");
    let holder = k.field(
        "lease",
        Some(OPERATOR_NS),
        "vpcnet-operator",
        "{.spec.holderIdentity}",
    );
    assert_eq!(
        holder,
        pod_name.trim(),
        "the leader Lease names the operator's pod"
    );
}

#[test]
fn deleting_pods_subnet_and_vpc_leaves_ovn_without_their_rows() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    tenant(
        &k,
        &mut c,
        "e2e-gone",
        "e2e-gone",
        "e2e-gone-net",
        "10.0.4.0/24",
    );
    k.must_apply(&testapp_pod("e2e-gone", "g1", None));
    k.must_apply(&testapp_pod("e2e-gone", "g2", None));
    k.wait_ready("e2e-gone", &["g1", "g2"], READY);
    let ours = |o: &str| o.contains("e2e-gone");
    assert!(
        ovn_rows::owners().keys().filter(|o| ours(o)).count() >= 4,
        "VPC, subnet and both pods own rows"
    );
    k.ok(&["delete", "pod", "-n", "e2e-gone", "g1", "g2", "--wait=true"]);
    c.run_now();
    k.eventually(
        Duration::from_secs(60),
        "no OVN rows owned by the deleted objects",
        || ovn_rows::owners().keys().all(|o| !ours(o)),
    );
}
