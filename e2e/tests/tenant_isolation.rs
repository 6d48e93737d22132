//! Two tenants with the same CIDR, each with a gateway: tenant a, acting
//! through its own ServiceAccount with the broad role an admin would write
//! (`*` on vpcnet.io, status included), tries to take tenant b's EIP and
//! reach b's pods: by forged status, forged pod annotations across an
//! operator restart, foreign subnets and catch-all rules. b keeps working
//! throughout. Then: refused objects change nothing, a deletion that waits
//! changes nothing, and an address whose finalizer was stripped comes back.

use std::time::Duration;

use vpcnet_api::condition;
use vpcnet_api::contract::{agent_env, annotations, conditions, naming};
use vpcnet_e2e::cluster::{Cleanup, operator_selector, testapp_pod};
use vpcnet_e2e::external::{self, from_outside};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::{GW_NS, nat_table};
use vpcnet_e2e::tenant::Tenant;

const READY: Duration = Duration::from_secs(180);
const CURL: Duration = Duration::from_secs(3);
const EXT: &str = "ovn-vpc-external-network";

fn external_network(k: &Kubectl) {
    let ext = vpcnet_e2e::repo_root().join("config/samples/03-external-subnet.yaml");
    let out = k.apply(&ext);
    assert!(out.ok, "{}", out.stderr);
}

/// The platform side of a tenant (as cluster-admin): VPC, subnet and gateway.
fn platform(k: &Kubectl, c: &mut Cleanup, t: &str) {
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {t}}}\nspec: {{namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {t}-net}}\nspec: {{vpc: {t}, cidrBlock: 10.0.1.0/24, namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {t}}}\nspec: {{vpc: {t}, subnet: {t}-net, lanIp: 10.0.1.254, externalSubnets: [{EXT}]}}\n"
    ));
    // Deleted in reverse: gateway, subnet, then VPC.
    c.add("vpc", None, t);
    c.add("subnet", None, &format!("{t}-net"));
    c.add("vpc-nat-gw", None, t);
}

/// The role an admin writes when none ships for "all of vpcnet": it
/// includes every subresource, `/status` too.
fn broad_role(k: &Kubectl, t: &Tenant) {
    let ns = t.ns();
    k.must_apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: all-of-vpcnet, namespace: {ns}}}\n\
         rules: [{{apiGroups: [vpcnet.io], resources: ['*'], verbs: ['*']}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: all-of-vpcnet, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: all-of-vpcnet}}\n\
         subjects: [{{kind: ServiceAccount, name: tenant-admin, namespace: {ns}}}]\n"
    ));
    let can = |what: &str| {
        t.kubectl()
            .run(&["auth", "can-i", "patch", what, "-n", ns])
            .stdout
            .trim()
            == "yes"
    };
    k.eventually(Duration::from_secs(30), "the broad role to apply", || {
        can("iptableseips.vpcnet.io/status")
    });
}

fn cond(k: &Kubectl, kind: &str, ns: Option<&str>, name: &str, t: &str, f: &str) -> String {
    k.field(
        kind,
        ns,
        name,
        &format!("{{.status.conditions[?(@.type==\"{t}\")].{f}}}"),
    )
}

fn wait_ready(k: &Kubectl, kind: &str, ns: Option<&str>, name: &str) {
    let start = std::time::Instant::now();
    while start.elapsed() < READY {
        if cond(k, kind, ns, name, condition::READY, "status") == "True" {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "{kind}/{name} not Ready: {} {}",
        cond(k, kind, ns, name, condition::READY, "reason"),
        cond(k, kind, ns, name, condition::READY, "message")
    );
}

/// Waits for Ready=False with `reason`; returns the message.
fn refused(k: &Kubectl, kind: &str, ns: Option<&str>, name: &str, reason: &str) -> String {
    let mut last = String::new();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        last = cond(k, kind, ns, name, condition::READY, "reason");
        if last == reason {
            return cond(k, kind, ns, name, condition::READY, "message");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "{kind}/{name}: want Ready=False {reason}, got {last}: {}",
        cond(k, kind, ns, name, condition::READY, "message")
    );
}

fn patch_status(k: &Kubectl, kind: &str, ns: &str, name: &str, body: &str) {
    k.ok(&[
        "-n",
        ns,
        "patch",
        kind,
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        body,
    ]);
}

/// An `Accepted` condition as a forger would write it into a status.
fn forged_accepted() -> String {
    format!(
        r#"{{"type":"{}","status":"True","reason":"Accepted","message":"forged","lastTransitionTime":"2026-01-01T00:00:00Z"}}"#,
        conditions::ACCEPTED
    )
}

/// Restarts the operator and waits until its successor is ready.
fn restart_operator(k: &Kubectl) {
    let before = k.ok(&[
        "get",
        "pods",
        "-n",
        GW_NS,
        "-l",
        &operator_selector(),
        "-o",
        "jsonpath={.items[*].metadata.uid}",
    ]);
    k.ok(&[
        "delete",
        "pods",
        "-n",
        GW_NS,
        "-l",
        &operator_selector(),
        "--wait=true",
    ]);
    k.eventually(READY, "a new operator pod to be ready", || {
        let out = k.run(&[
            "get",
            "pods",
            "-n",
            GW_NS,
            "-l",
            &operator_selector(),
            "-o",
            "jsonpath={range .items[*]}{.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        out.stdout.lines().any(|l| {
            l.split_once(' ')
                .is_some_and(|(uid, ready)| !before.contains(uid) && ready == "True")
        })
    });
}

fn b_still_served(k: &Kubectl, what: &str) {
    k.eventually(
        Duration::from_secs(30),
        &format!("b's DNAT still reaches b's pod ({what})"),
        || {
            from_outside("http://172.16.3.230:8888/", CURL)
                .is_ok_and(|a| a.contains("server=web-b"))
        },
    );
    assert_eq!(
        k.field("eip", Some("e2e-iso-b"), "eb", "{.status.ip}"),
        "172.16.3.230",
        "b's EIP keeps its address ({what})"
    );
    assert_eq!(
        cond(
            k,
            "eip",
            Some("e2e-iso-b"),
            "eb",
            condition::READY,
            "status"
        ),
        "True",
        "b's EIP stays Ready ({what})"
    );
}

#[test]
fn a_hostile_tenant_takes_nothing_from_its_neighbour() {
    let k = Kubectl::for_box();
    external_network(&k);
    let mut c = Cleanup::new(&k);
    let b = Tenant::create(&k, "e2e-iso-b");
    let a = Tenant::create(&k, "e2e-iso-a");
    platform(&k, &mut c, "e2e-iso-b");
    platform(&k, &mut c, "e2e-iso-a");
    broad_role(&k, &a);
    let (ka, kb) = (a.kubectl(), b.kubectl());
    kb.must_apply(&testapp_pod("e2e-iso-b", "web-b", Some("10.0.1.2")));
    kb.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: eb, namespace: e2e-iso-b}\nspec: {natGwDp: e2e-iso-b, v4ip: 172.16.3.230}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {name: web, namespace: e2e-iso-b}\nspec: {eip: eb, externalPort: '8888', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}\n",
    );
    ka.must_apply(&testapp_pod("e2e-iso-a", "web-a", Some("10.0.1.2")));
    k.wait_ready("e2e-iso-b", &["web-b"], READY);
    wait_ready(&k, "vpc-nat-gw", None, "e2e-iso-b");
    wait_ready(&k, "vpc-nat-gw", None, "e2e-iso-a");
    wait_ready(&k, "dnat", Some("e2e-iso-b"), "web");
    b_still_served(&k, "before");

    // 1. An EIP on b's gateway is refused, and forging its status (b's
    // address, b's gateway, Accepted) programs nothing on b's gateway.
    ka.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: on-b, namespace: e2e-iso-a}\nspec: {natGwDp: e2e-iso-b}\n",
    );
    let msg = refused(&k, "eip", Some("e2e-iso-a"), "on-b", "Forbidden");
    assert!(!msg.contains("VPC e2e-iso-b"), "names b's VPC: {msg}");
    patch_status(
        ka,
        "iptableseip",
        "e2e-iso-a",
        "on-b",
        &format!(
            r#"{{"status":{{"ip":"172.16.3.230","natGwDp":"e2e-iso-b","seal":"{}","conditions":[{}]}}}}"#,
            "00".repeat(32),
            forged_accepted()
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    let table = nat_table(&k, "e2e-iso-b").stdout;
    assert!(
        !table.contains("e2e-iso-a"),
        "b's gateway programs a's objects:\n{table}"
    );
    b_still_served(&k, "after a's forged EIP status");

    // 2. A refused DNAT of a, forged to Accepted on its own gateway, is not
    // programmed either.
    ka.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: ea, namespace: e2e-iso-a}\nspec: {natGwDp: e2e-iso-a, v4ip: 172.16.3.231}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {name: out, namespace: e2e-iso-a}\nspec: {eip: ea, externalPort: '80', internalIp: 10.9.9.9, protocol: tcp}\n",
    );
    wait_ready(&k, "eip", Some("e2e-iso-a"), "ea");
    refused(&k, "dnat", Some("e2e-iso-a"), "out", "OutsideVpc");
    patch_status(
        ka,
        "iptablesdnatrule",
        "e2e-iso-a",
        "out",
        &format!(
            r#"{{"status":{{"v4ip":"172.16.3.231","natGwDp":"e2e-iso-a","conditions":[{}]}}}}"#,
            forged_accepted()
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    let table = nat_table(&k, "e2e-iso-a").stdout;
    assert!(
        !table.contains("vpcnet:dnat/e2e-iso-a/out"),
        "a forged verdict was programmed:\n{table}"
    );
    assert_ne!(
        cond(
            &k,
            "dnat",
            Some("e2e-iso-a"),
            "out",
            condition::READY,
            "status"
        ),
        "True"
    );

    // 3. Addresses: b's EIP address is "in use" (b is not named); a foreign
    // or internal subnet is no external network of a's gateway.
    ka.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: take, namespace: e2e-iso-a}\nspec: {natGwDp: e2e-iso-a, v4ip: 172.16.3.230}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: inner, namespace: e2e-iso-a}\nspec: {natGwDp: e2e-iso-a, externalSubnet: e2e-iso-b-net}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: dflt, namespace: e2e-iso-a}\nspec: {natGwDp: e2e-iso-a, externalSubnet: ovn-default}\n",
    );
    let msg = refused(&k, "eip", Some("e2e-iso-a"), "take", "IPConflict");
    assert!(
        msg.contains("in use") && !msg.contains("e2e-iso-b"),
        "{msg}"
    );
    for name in ["inner", "dflt"] {
        let msg = refused(
            &k,
            "eip",
            Some("e2e-iso-a"),
            name,
            "ExternalSubnetNotAttached",
        );
        assert!(msg.contains(EXT), "{msg}");
    }

    // 4. Catch-all or platform-address rules are refused.
    let rules = [
        (
            "IptablesSnatRule",
            "all",
            "{eip: ea, internalCIDR: 0.0.0.0/0}",
        ),
        (
            "IptablesSnatRule",
            "wide",
            "{eip: ea, internalCIDR: 10.0.0.0/8}",
        ),
        (
            "IptablesSnatRule",
            "bcast",
            "{eip: ea, internalCIDR: 10.0.1.255}",
        ),
        (
            "IptablesDnatRule",
            "to-net",
            "{eip: ea, externalPort: '81', internalIp: 10.0.1.0, protocol: tcp}",
        ),
        (
            "IptablesDnatRule",
            "to-bcast",
            "{eip: ea, externalPort: '82', internalIp: 10.0.1.255, protocol: tcp}",
        ),
        (
            "IptablesDnatRule",
            "to-router",
            "{eip: ea, externalPort: '83', internalIp: 10.0.1.1, protocol: tcp}",
        ),
        (
            "IptablesDnatRule",
            "to-gateway",
            "{eip: ea, externalPort: '84', internalIp: 10.0.1.254, internalPort: '8080', protocol: tcp}",
        ),
    ];
    let yaml: String = rules
        .iter()
        .map(|(kind, name, spec)| {
            format!("apiVersion: vpcnet.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: e2e-iso-a}}\nspec: {spec}\n---\n")
        })
        .collect();
    ka.must_apply(&yaml);
    for (kind, name, _) in rules {
        let short = if kind == "IptablesSnatRule" {
            "snat"
        } else {
            "dnat"
        };
        refused(&k, short, Some("e2e-iso-a"), name, "OutsideVpc");
    }

    // 5. The agent's HTTP port answers on no EIP.
    assert!(
        from_outside("http://172.16.3.230:8080/metrics", CURL).is_err(),
        "the gateway's agent answers on an EIP"
    );
    assert!(
        from_outside("http://172.16.3.231:8080/readyz", CURL).is_err(),
        "the gateway's agent answers on an EIP"
    );

    // 6. Pod annotations claiming b's EIP address and b's pod address,
    // then an operator restart: the rebuild gives them nothing.
    let forged = |name: &str, subnet: &str, ip: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: e2e-iso-a\n  annotations:\n    {allocated}: \"true\"\n    {subnet_key}: {subnet}\n    {ip_key}: \"{ip}\"\n    {switch_key}: x\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {}\n    imagePullPolicy: Never\n",
            vpcnet_e2e::cluster::TESTAPP_IMAGE,
            allocated = annotations::ALLOCATED,
            subnet_key = annotations::SUBNET,
            ip_key = annotations::IP_ADDRESS,
            switch_key = annotations::LOGICAL_SWITCH,
        )
    };
    ka.must_apply(&format!(
        "{}---\n{}",
        forged("steal-eip", EXT, "172.16.3.230"),
        forged("steal-pod", "e2e-iso-b-net", "10.0.1.2")
    ));
    restart_operator(&k);
    b_still_served(&k, "after an operator restart with forged pod annotations");
    // The address is still b's: a still cannot take it.
    ka.ok(&[
        "delete",
        "iptableseip",
        "take",
        "-n",
        "e2e-iso-a",
        "--wait=true",
    ]);
    ka.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: take, namespace: e2e-iso-a}\nspec: {natGwDp: e2e-iso-a, v4ip: 172.16.3.230}\n",
    );
    refused(&k, "eip", Some("e2e-iso-a"), "take", "IPConflict");
    // Deleting the forged pods frees nothing b uses.
    ka.ok(&[
        "delete",
        "pod",
        "steal-eip",
        "steal-pod",
        "-n",
        "e2e-iso-a",
        "--wait=true",
    ]);
    restart_operator(&k);
    b_still_served(&k, "after the forged pods are gone");
    drop(a);
    drop(b);
}

#[test]
fn refused_objects_change_nothing_and_waiting_deletions_keep_traffic() {
    let k = Kubectl::for_box();
    external_network(&k);
    let mut c = Cleanup::new(&k);
    let t = Tenant::create(&k, "e2e-iso-c");
    let other = Tenant::create(&k, "e2e-iso-x");
    let ns = "e2e-iso-c";
    // A gateway refused for its LAN address, older than the valid one.
    k.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {name: e2e-iso-c}\nspec: {namespaces: [e2e-iso-c]}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {name: e2e-iso-c-net}\nspec: {vpc: e2e-iso-c, cidrBlock: 10.0.1.0/24, namespaces: [e2e-iso-c]}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {name: e2e-iso-c-bad}\nspec: {vpc: e2e-iso-c, subnet: e2e-iso-c-net, lanIp: 10.0.1.1, externalSubnets: [ovn-vpc-external-network]}\n",
    );
    c.add("vpc", None, ns);
    c.add("subnet", None, "e2e-iso-c-net");
    c.add("vpc-nat-gw", None, "e2e-iso-c-bad");
    refused(&k, "vpc-nat-gw", None, "e2e-iso-c-bad", "InvalidLanIp");
    std::thread::sleep(Duration::from_millis(1100));
    k.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {name: e2e-iso-c}\nspec: {vpc: e2e-iso-c, subnet: e2e-iso-c-net, lanIp: 10.0.1.254, externalSubnets: [ovn-vpc-external-network]}\n",
    );
    c.add("vpc-nat-gw", None, "e2e-iso-c");
    let kt = t.kubectl();
    kt.must_apply(&testapp_pod(ns, "web", Some("10.0.1.2")));
    kt.must_apply(&testapp_pod(ns, "db", Some("10.0.1.3")));
    wait_ready(&k, "vpc-nat-gw", None, "e2e-iso-c");
    k.wait_ready(ns, &["web", "db"], READY);

    // The VPC routes to the valid gateway, so SNAT works.
    kt.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: es, namespace: e2e-iso-c}\nspec: {natGwDp: e2e-iso-c, v4ip: 172.16.3.232}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesSnatRule\nmetadata: {name: s, namespace: e2e-iso-c}\nspec: {eip: es, internalCIDR: 10.0.1.0/24}\n",
    );
    wait_ready(&k, "snat", Some(ns), "s");
    k.eventually(
        Duration::from_secs(60),
        "egress through the valid gateway",
        || {
            let out = k.exec(
                ns,
                "web",
                &["curl", "-s", "--max-time", "3", &external::host_url()],
            );
            out.ok && out.stdout.contains("client=172.16.3.232:")
        },
    );

    // A subnet refused for overlapping does not widen the gateway's VPC.
    let cidrs = || {
        k.field(
            "statefulset",
            Some(GW_NS),
            &naming::natgw_workload("e2e-iso-c"),
            &format!(
                "{{.spec.template.spec.containers[0].env[?(@.name==\"{}\")].value}}",
                agent_env::VPC_CIDRS
            ),
        )
    };
    let before = cidrs();
    k.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {name: e2e-iso-c-overlap}\nspec: {vpc: e2e-iso-c, cidrBlock: 10.0.0.0/16, namespaces: [e2e-iso-c-none]}\n",
    );
    c.add("subnet", None, "e2e-iso-c-overlap");
    refused(&k, "subnet", None, "e2e-iso-c-overlap", "CidrOverlap");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cidrs(), before, "a refused subnet changed the gateway");

    // A refused FIP (outside the VPC) blocks no younger DNAT on its EIP;
    // shared DNATs must share the same range.
    kt.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: ed, namespace: e2e-iso-c}\nspec: {natGwDp: e2e-iso-c, v4ip: 172.16.3.233}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesFIPRule\nmetadata: {name: bad-fip, namespace: e2e-iso-c}\nspec: {eip: ed, internalIp: 10.9.9.9}\n",
    );
    refused(&k, "fip", Some(ns), "bad-fip", "OutsideVpc");
    std::thread::sleep(Duration::from_millis(1100));
    kt.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {name: d, namespace: e2e-iso-c}\nspec: {eip: ed, externalPort: '8888', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {name: sh1, namespace: e2e-iso-c}\nspec: {eip: ed, externalPort: '9000-9010', internalIp: 10.0.1.2, protocol: tcp, shared: true}\n",
    );
    wait_ready(&k, "dnat", Some(ns), "d");
    std::thread::sleep(Duration::from_millis(1100));
    kt.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {name: sh2, namespace: e2e-iso-c}\nspec: {eip: ed, externalPort: '9005-9020', internalIp: 10.0.1.3, protocol: tcp, shared: true}\n",
    );
    let msg = refused(&k, "dnat", Some(ns), "sh2", "Conflict");
    assert!(msg.contains("same range"), "{msg}");

    // Another tenant's EIP on this gateway is refused and is no user of it.
    other.kubectl().must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: squat, namespace: e2e-iso-x}\nspec: {natGwDp: e2e-iso-c}\n",
    );
    refused(&k, "eip", Some("e2e-iso-x"), "squat", "Forbidden");

    // A FIP holds its EIP's deletion; meanwhile nothing changes.
    kt.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: ef, namespace: e2e-iso-c}\nspec: {natGwDp: e2e-iso-c, v4ip: 172.16.3.234}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesFIPRule\nmetadata: {name: f, namespace: e2e-iso-c}\nspec: {eip: ef, internalIp: 10.0.1.3}\n",
    );
    wait_ready(&k, "fip", Some(ns), "f");
    let fip_works =
        || from_outside("http://172.16.3.234:8080/", CURL).is_ok_and(|a| a.contains("server=db"));
    k.eventually(Duration::from_secs(30), "the FIP answers", fip_works);
    kt.ok(&["delete", "iptableseip", "ef", "-n", ns, "--wait=false"]);
    refused(&k, "eip", Some(ns), "ef", "InUse");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        k.field("eip", Some(ns), "ef", "{.status.ip}"),
        "172.16.3.234"
    );
    assert_eq!(
        cond(&k, "fip", Some(ns), "f", condition::READY, "status"),
        "True"
    );
    assert!(fip_works(), "a waiting EIP deletion stopped the FIP");

    // A gateway with EIPs waits too, and keeps the VPC's default route.
    k.ok(&["delete", "vpc-nat-gw", "e2e-iso-c", "--wait=false"]);
    let msg = refused(&k, "vpc-nat-gw", None, "e2e-iso-c", "InUse");
    assert!(
        !msg.contains("e2e-iso-x"),
        "another tenant's refused EIP counts: {msg}"
    );
    std::thread::sleep(Duration::from_secs(4));
    let routes = std::process::Command::new("ovn-nbctl")
        .args([
            &format!("--db={}", vpcnet_e2e::ovn_rows::nb_target()),
            "lr-route-list",
            "vpcnet-e2e-iso-c",
        ])
        .output()
        .expect("ovn-nbctl");
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        routes.contains("0.0.0.0/0") && routes.contains("10.0.1.254"),
        "a waiting gateway deletion withdrew the default route:\n{routes}"
    );
    k.eventually(
        Duration::from_secs(30),
        "DNAT through the waiting gateway",
        || from_outside("http://172.16.3.233:8888/", CURL).is_ok_and(|a| a.contains("server=web")),
    );

    // Once its own EIPs go, the gateway goes, the squatter's EIP
    // notwithstanding.
    kt.ok(&[
        "delete",
        "iptablesfiprule,iptablesdnatrule,iptablessnatrule,iptableseip",
        "--all",
        "-n",
        ns,
        "--wait=true",
        "--timeout=120s",
    ]);
    k.eventually(
        Duration::from_secs(120),
        "the gateway deletion to proceed",
        || !k.run(&["get", "vpc-nat-gw", "e2e-iso-c"]).ok,
    );
    drop(other);
    drop(t);
}

#[test]
fn an_address_whose_finalizer_was_stripped_is_freed_by_the_collection() {
    let k = Kubectl::for_box();
    external_network(&k);
    let mut c = Cleanup::new(&k);
    let t = Tenant::create(&k, "e2e-iso-gc");
    let ns = "e2e-iso-gc";
    platform(&k, &mut c, ns);
    let kt = t.kubectl();
    kt.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: leak, namespace: e2e-iso-gc}\nspec: {natGwDp: e2e-iso-gc, v4ip: 172.16.3.236}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {name: d, namespace: e2e-iso-gc}\nspec: {eip: leak, externalPort: '80', internalIp: 10.0.1.2, protocol: tcp}\n",
    );
    wait_ready(&k, "eip", Some(ns), "leak");
    k.eventually(Duration::from_secs(60), "the DNAT accepted", || {
        cond(&k, "dnat", Some(ns), "d", conditions::ACCEPTED, "status") == "True"
    });
    // Held by its DNAT, then stripped of its finalizer: gone without
    // releasing its address.
    kt.ok(&["delete", "iptableseip", "leak", "-n", ns, "--wait=false"]);
    refused(&k, "eip", Some(ns), "leak", "InUse");
    k.ok(&[
        "patch",
        "iptableseip",
        "leak",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    kt.ok(&["delete", "iptablesdnatrule", "d", "-n", ns, "--wait=true"]);
    kt.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: again, namespace: e2e-iso-gc}\nspec: {natGwDp: e2e-iso-gc, v4ip: 172.16.3.236}\n",
    );
    // The box collects every 15 s; a refused EIP retries every 15 s.
    wait_ready(&k, "eip", Some(ns), "again");
    drop(t);
}
