//! OVN central as production runs it: the box's Northbound database is a
//! RAFT cluster of three ovsdb-servers (`e2e/box/ovn.sh`), and the operator
//! and the nodes' agents are given every member. Its leader is killed with
//! SIGKILL in the middle of a churn of 200 pod creations and 200 DNAT rules
//! (the pods held back from scheduling by a gate: what is measured is the
//! operator's writes, not 200 containers starting on two cores):
//! a new leader takes over, the operator follows it, and every pod and rule
//! ends programmed exactly once (one port row per pod, one set of lines per
//! rule, no address twice). The killed member then rejoins its cluster.

use std::collections::BTreeSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use vpcnet_api::condition;
use vpcnet_e2e::cluster::Cleanup;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::{dnat_comment, nat_table};
use vpcnet_e2e::{box_dir, ovn_rows};

const NS: &str = "e2e-raft";
const PODS: usize = 200;
const RULES: usize = 200;
const READY: Duration = Duration::from_secs(420);

/// `e2e/box/ovn.sh ARGS` against the running box: its trimmed stdout.
fn ovn_sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(vpcnet_e2e::repo_root().join("e2e/box/ovn.sh"))
        .args(args)
        .output()
        .expect("bash runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The index of the member leading the NB cluster, once there is one.
fn nb_leader(timeout: Duration) -> usize {
    let t0 = Instant::now();
    loop {
        if let Ok(i) = ovn_sh(&["leader", "nb"]) {
            return i.parse().expect("a member index");
        }
        assert!(t0.elapsed() < timeout, "no NB leader after {timeout:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The PID of NB member `i`, a daemon the box started.
fn member_pid(i: usize) -> i32 {
    let f = box_dir().join(format!("pids/ovn-nb-{i}.pid"));
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .trim()
        .parse()
        .expect("a pid")
}

fn setup(k: &Kubectl, c: &mut Cleanup) {
    let samples = vpcnet_e2e::repo_root().join("config/samples/03-external-subnet.yaml");
    let out = k.apply(&samples);
    assert!(out.ok, "{}", out.stderr);
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {NS}}}\nspec: {{namespaces: [{NS}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {NS}}}\nspec: {{vpc: {NS}, cidrBlock: 10.0.0.0/22, namespaces: [{NS}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {NS}}}\nspec: {{vpc: {NS}, subnet: {NS}, lanIp: 10.0.3.254, externalSubnets: [ovn-vpc-external-network]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: eipd, namespace: {NS}}}\nspec: {{natGwDp: {NS}}}\n"
    ));
    c.add("vpc", None, NS);
    c.add("subnet", None, NS);
    c.add("vpc-nat-gw", None, NS);
    c.add("namespace", None, NS);
    for (kind, ns, name) in [("vpc-nat-gw", None, NS), ("eip", Some(NS), "eipd")] {
        k.wait_condition(kind, ns, &[name], condition::READY, READY);
    }
}

fn pods_yaml() -> String {
    (0..PODS)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i:03}, namespace: {NS}}}\nspec:\n  \
                 schedulingGates: [{{name: vpcnet.io/e2e-hold}}]\n  \
                 terminationGracePeriodSeconds: 0\n  containers:\n  - {{name: app, image: docker.io/local/vpcnet-testapp:latest, imagePullPolicy: Never}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn rules_yaml() -> String {
    (0..RULES)
        .map(|i| {
            format!(
                "apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: r{i:03}, namespace: {NS}}}\n\
                 spec: {{eip: eipd, externalPort: '{}', internalIp: 10.0.1.{}, internalPort: '8080', protocol: tcp}}\n",
                20000 + i,
                1 + i % 250
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn killing_the_nb_leader_mid_churn_loses_no_write_and_programs_everything_once() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    setup(&k, &mut c);
    let leader = nb_leader(Duration::from_secs(10));

    let t0 = Instant::now();
    let (kp, kr) = (k.clone(), k.clone());
    let pods = thread::spawn(move || kp.must_apply(&pods_yaml()));
    let rules = thread::spawn(move || kr.must_apply(&rules_yaml()));

    // SIGKILL the leader once a quarter of the pods have their port.
    let deadline = Instant::now() + Duration::from_secs(180);
    let before = loop {
        let n = ovn_rows::pod_port_rows(NS).len();
        if n >= PODS / 4 {
            break n;
        }
        assert!(Instant::now() < deadline, "only {n} pod ports after 180 s");
        thread::sleep(Duration::from_millis(50));
    };
    let pid = member_pid(leader);
    // By the PID the box recorded for its own ovsdb-server.
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(st.success(), "kill -KILL {pid}");
    let killed = Instant::now();
    eprintln!(
        "NB leader (member {leader}, pid {pid}) killed {:.1} s into the churn, {before} pod ports written",
        t0.elapsed().as_secs_f64()
    );

    // The write stall: from the kill to the first new pod port, as the
    // operator writes it through the new leader.
    let stall = loop {
        let n = ovn_rows::pod_port_rows(NS).len();
        if n > before {
            break killed.elapsed();
        }
        assert!(
            before < PODS,
            "the churn was over before the kill: nothing to measure"
        );
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no pod port written in 60 s after the leader died"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let new_leader = nb_leader(Duration::from_secs(30));
    assert_ne!(new_leader, leader, "another member leads");
    eprintln!(
        "write stall: {} ms from the kill to the next pod port (member {new_leader} leads)",
        stall.as_millis()
    );

    pods.join().expect("pods applied");
    rules.join().expect("rules applied");
    // Every pod allocated: its address annotation and its port.
    k.eventually(READY, "every pod allocated", || {
        let ips = k.ok(&[
            "get",
            "pods",
            "-n",
            NS,
            "-o",
            "jsonpath={range .items[*]}{.metadata.annotations.vpcnet\\.io/ip_address}{\"\\n\"}{end}",
        ]);
        ips.lines().filter(|l| !l.is_empty()).count() >= PODS
            && ovn_rows::pod_port_rows(NS).len() >= PODS
    });
    let rule_names: Vec<String> = (0..RULES).map(|i| format!("r{i:03}")).collect();
    let rules: Vec<&str> = rule_names.iter().map(String::as_str).collect();
    k.wait_condition("dnat", Some(NS), &rules, condition::READY, READY);
    eprintln!(
        "{PODS} pods allocated and {RULES} DNAT rules Ready {:.1} s after the churn began",
        t0.elapsed().as_secs_f64()
    );

    // Exactly once: one port row per pod, no address twice, one set of
    // lines per rule.
    let rows = ovn_rows::pod_port_rows(NS);
    assert_eq!(rows.len(), PODS, "every pod has a port: {rows:?}");
    assert!(
        rows.values().all(|&n| n == 1),
        "one port row per pod: {:?}",
        rows.iter().filter(|(_, n)| **n != 1).collect::<Vec<_>>()
    );
    let ips = k.ok(&[
        "get",
        "pods",
        "-n",
        NS,
        "-o",
        "jsonpath={range .items[*]}{.metadata.annotations.vpcnet\\.io/ip_address}{\"\\n\"}{end}",
    ]);
    let ips: Vec<&str> = ips.lines().filter(|l| !l.is_empty()).collect();
    let unique: BTreeSet<&str> = ips.iter().copied().collect();
    assert!(
        ips.len() >= PODS && unique.len() == ips.len(),
        "every pod has its own address: {} addresses, {} distinct",
        ips.len(),
        unique.len()
    );
    let table = nat_table(&k, NS);
    assert!(table.ok, "{}", table.stderr);
    let lines_of = |r: &str| {
        let tag = dnat_comment(NS, r);
        table.stdout.lines().filter(|l| l.contains(&tag)).count()
    };
    let first = lines_of(&rule_names[0]);
    assert!(first > 0, "r000 is in the gateway: {}", table.stdout);
    let odd: Vec<(&String, usize)> = rule_names
        .iter()
        .map(|r| (r, lines_of(r)))
        .filter(|(_, n)| *n != first)
        .collect();
    assert!(
        odd.is_empty(),
        "every rule has {first} lines, these differ: {odd:?}"
    );

    // The killed member rejoins, and the cluster goes on taking writes.
    ovn_sh(&["member-up", "nb", &leader.to_string()])
        .unwrap_or_else(|e| panic!("member {leader} does not rejoin: {e}"));
    k.ok(&["delete", "pod", "-n", NS, "p000", "--wait=true"]);
    k.eventually(Duration::from_secs(30), "p000's port leaves NB", || {
        !ovn_rows::pod_port_rows(NS)
            .keys()
            .any(|o| o.ends_with("/p000"))
    });
}
