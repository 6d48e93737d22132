//! The seed walk-through on the real node: a tenant VPC with a NAT gateway
//! (eth0 in the VPC, net1 on the external network through Multus), EIPs,
//! SNAT, DNAT, FIP, hairpin and shared DNAT — proven with traffic to and from
//! the box's external host (`EXT_NETNS`/`EXT_HOST_IP` of `e2e/box/box.env`,
//! which logs clients).

use std::collections::BTreeSet;
use std::time::Duration;

use vpcnet_api::condition;
use vpcnet_e2e::cluster::{Cleanup, testapp_pod};
use vpcnet_e2e::external::{self, from_outside};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::nat_table;

const READY: Duration = Duration::from_secs(180);
/// How long a request from the external host may take.
const CURL: Duration = Duration::from_secs(3);

/// The external network of the samples (Subnet + NAD are box-provided or applied here).
fn external_network(k: &Kubectl) {
    let samples = vpcnet_e2e::repo_root().join("config/samples/03-external-subnet.yaml");
    let out = k.apply(&samples);
    assert!(out.ok, "{}", out.stderr);
}

/// A tenant: namespace, VPC, subnet and a NAT gateway at `lan_ip`.
fn tenant_with_gateway(k: &Kubectl, c: &mut Cleanup, t: &str, cidr: &str, lan_ip: &str) {
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {t}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {t}}}\nspec: {{namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {t}}}\nspec: {{vpc: {t}, cidrBlock: {cidr}, namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {t}}}\nspec: {{vpc: {t}, subnet: {t}, lanIp: {lan_ip}, externalSubnets: [ovn-vpc-external-network]}}\n"
    ));
    c.add("vpc", None, t);
    c.add("subnet", None, t);
    c.add("vpc-nat-gw", None, t);
    c.add("namespace", None, t);
}

fn eip(k: &Kubectl, ns: &str, name: &str, gw: &str, v4ip: Option<&str>) {
    let ip = v4ip.map(|i| format!(", v4ip: {i}")).unwrap_or_default();
    k.must_apply(&format!("apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{natGwDp: {gw}{ip}}}\n"));
}

#[test]
fn seed_walkthrough_snat_dnat_fip_hairpin_and_shared_dnat() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    external_network(&k);
    let t = "e2e-nat";
    tenant_with_gateway(&k, &mut c, t, "10.0.1.0/24", "10.0.1.254");
    k.must_apply(&testapp_pod(t, "web", Some("10.0.1.2")));
    k.must_apply(&testapp_pod(t, "db", Some("10.0.1.3")));
    eip(&k, t, "eips01", t, Some("172.16.3.218"));
    eip(&k, t, "eipd01", t, Some("172.16.3.213"));
    eip(&k, t, "eipf01", t, None);
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesSnatRule\nmetadata: {{name: snat01, namespace: {t}}}\nspec: {{eip: eips01, internalCIDR: 10.0.1.0/24}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: dnat01, namespace: {t}}}\nspec: {{eip: eipd01, externalPort: '8888', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: shared-a, namespace: {t}}}\nspec: {{eip: eipd01, externalPort: '9999', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp, shared: true}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: shared-b, namespace: {t}}}\nspec: {{eip: eipd01, externalPort: '9999', internalIp: 10.0.1.3, internalPort: '8080', protocol: tcp, shared: true}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesFIPRule\nmetadata: {{name: fip01, namespace: {t}}}\nspec: {{eip: eipf01, internalIp: 10.0.1.3}}\n"
    ));
    k.wait_ready(t, &["web", "db"], READY);
    k.wait_condition("vpc-nat-gw", None, &[t], condition::READY, READY);
    for (kind, name) in [
        ("eip", "eips01"),
        ("eip", "eipd01"),
        ("eip", "eipf01"),
        ("snat", "snat01"),
        ("dnat", "dnat01"),
        ("dnat", "shared-a"),
        ("dnat", "shared-b"),
        ("fip", "fip01"),
    ] {
        k.wait_condition(kind, Some(t), &[name], condition::READY, READY);
    }
    let fip = k.field("eip", Some(t), "eipf01", "{.status.ip}");
    // The operator counts the gateway's rules, and its work queues.
    let rules = |metrics: &str, kind: &str, state: &str| {
        Kubectl::sample(
            metrics,
            &format!(r#"vpcnet_nat_gateway_rules{{gateway="{t}",kind="{kind}",state="{state}"}}"#),
        )
    };
    let metrics = k.operator_metrics();
    for (kind, n) in [("snat", 1.0), ("dnat", 3.0), ("fip", 1.0)] {
        assert_eq!(
            rules(&metrics, kind, "accepted"),
            Some(n),
            "{kind} accepted"
        );
        assert_eq!(
            rules(&metrics, kind, "programmed"),
            Some(n),
            "{kind} programmed"
        );
    }
    let queue = r#"{name="dnat",controller="dnat"}"#;
    assert!(
        Kubectl::sample(&metrics, &format!("workqueue_adds_total{queue}")).unwrap_or(0.0) >= 4.0,
        "four DNAT rules were added: {metrics}"
    );
    assert!(
        Kubectl::sample(
            &metrics,
            &format!("workqueue_queue_duration_seconds_count{queue}")
        )
        .unwrap_or(0.0)
            >= 4.0,
        "{metrics}"
    );
    assert!(
        Kubectl::sample(&metrics, &format!("workqueue_depth{queue}")).is_some(),
        "{metrics}"
    );

    // Egress: the external host sees the SNAT EIP (the FIP pod its FIP).
    let outside = external::host_url();
    let seen = k
        .curl_from(t, "web", &outside)
        .expect("web reaches the external host");
    assert!(seen.contains("client=172.16.3.218:"), "SNAT source: {seen}");
    let seen = k
        .curl_from(t, "db", &outside)
        .expect("db reaches the external host");
    assert!(
        seen.contains(&format!("client={fip}:")),
        "FIP egress source: {seen}"
    );

    // Ingress: EIP:8888 -> web:8080; the FIP on any port -> db.
    let got = from_outside("http://172.16.3.213:8888/", CURL).expect("DNAT from outside");
    assert!(
        got.contains("server=web") && got.contains(&format!("client={}:", external::host_ip())),
        "{got}"
    );
    let got = from_outside(&format!("http://{fip}:8080/"), CURL).expect("FIP from outside");
    assert!(got.contains("server=db"), "{got}");

    // Hairpin: from inside the VPC to another pod's FIP and DNAT.
    let got = k
        .curl_from(t, "web", &format!("http://{fip}:8080/"))
        .expect("hairpin to the FIP");
    assert!(got.contains("server=db"), "{got}");
    let got = k
        .curl_from(t, "db", "http://172.16.3.213:8888/")
        .expect("hairpin to the DNAT");
    assert!(got.contains("server=web"), "{got}");

    // Shared DNAT spreads new connections over both backends.
    let servers: BTreeSet<String> = (0..20)
        .filter_map(|_| from_outside("http://172.16.3.213:9999/", CURL).ok())
        .filter_map(|a| {
            a.split_whitespace()
                .find(|w| w.starts_with("server="))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        servers,
        BTreeSet::from(["server=db".to_string(), "server=web".to_string()]),
        "both backends answer"
    );

    // Deleting a rule removes exactly its lines.
    let dnat01 = format!("vpcnet:dnat/{t}/dnat01");
    let before = nat_table(&k, t).stdout;
    assert!(before.contains(&dnat01), "{before}");
    k.ok(&["delete", "dnat", "-n", t, "dnat01", "--wait=true"]);
    k.eventually(Duration::from_secs(20), "dnat01's lines gone", || {
        !nat_table(&k, t).stdout.contains(&dnat01)
    });
    assert_eq!(
        rules(&k.operator_metrics(), "dnat", "accepted"),
        Some(2.0),
        "a deleted rule is not counted"
    );
    let after = nat_table(&k, t).stdout;
    let strip = |s: &str| -> BTreeSet<String> {
        s.lines()
            .filter(|l| l.starts_with("-A VPCNAT"))
            .map(str::to_string)
            .collect()
    };
    let removed: Vec<String> = strip(&before).difference(&strip(&after)).cloned().collect();
    // Besides its own lines, only the jump into its port block may go, and
    // only if that block is now empty.
    let emptied_block_jump = |l: &str| {
        l.contains("\"vpcnet:dnat-bucket\"")
            && l.rsplit(" -j ").next().is_some_and(|chain| {
                !after
                    .lines()
                    .any(|a| a.starts_with(&format!("-A {chain} ")))
            })
    };
    assert!(
        removed.iter().any(|l| l.contains(&dnat01))
            && removed
                .iter()
                .all(|l| l.contains(&dnat01) || emptied_block_jump(l)),
        "only dnat01's lines went: {removed:?}"
    );
    assert!(
        from_outside("http://172.16.3.213:8888/", CURL).is_err(),
        "the deleted DNAT no longer forwards"
    );
}

#[test]
fn a_tenant_cannot_use_another_tenants_gateway() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    external_network(&k);
    tenant_with_gateway(&k, &mut c, "e2e-own-a", "10.0.1.0/24", "10.0.1.254");
    k.must_apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: e2e-own-b}\n");
    c.add("namespace", None, "e2e-own-b");
    eip(&k, "e2e-own-b", "stolen", "e2e-own-a", None);
    k.must_apply(
        "apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {name: sneaky, namespace: e2e-own-b}\n\
         spec: {eip: stolen, externalPort: '7777', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}\n",
    );
    let ready_reason = format!(
        "{{.status.conditions[?(@.type==\"{}\")].reason}}",
        condition::READY
    );
    k.eventually(
        Duration::from_secs(30),
        "Forbidden on the EIP and the rule",
        || {
            k.field("eip", Some("e2e-own-b"), "stolen", &ready_reason) == "Forbidden"
                && k.field("dnat", Some("e2e-own-b"), "sneaky", &ready_reason) == "Forbidden"
        },
    );
    assert_eq!(
        k.field("eip", Some("e2e-own-b"), "stolen", "{.status.ip}"),
        "",
        "no address handed out"
    );
    k.wait_condition("vpc-nat-gw", None, &["e2e-own-a"], condition::READY, READY);
    assert!(
        !nat_table(&k, "e2e-own-a").stdout.contains("sneaky"),
        "nothing programmed"
    );
}

#[test]
fn two_tenants_with_the_same_cidr_leave_through_their_own_eips() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    external_network(&k);
    let tenants = [
        ("e2e-two-a", "172.16.3.240", "10.0.1.20"),
        ("e2e-two-b", "172.16.3.241", "10.0.1.21"),
    ];
    for (t, eip_ip, pod_ip) in tenants {
        tenant_with_gateway(&k, &mut c, t, "10.0.1.0/24", "10.0.1.254");
        k.must_apply(&testapp_pod(t, "app", Some(pod_ip)));
        eip(&k, t, "out", t, Some(eip_ip));
        k.must_apply(&format!("apiVersion: vpcnet.io/v1\nkind: IptablesSnatRule\nmetadata: {{name: out, namespace: {t}}}\nspec: {{eip: out, internalCIDR: 10.0.1.0/24}}\n"));
    }
    for (t, eip_ip, _) in tenants {
        k.wait_ready(t, &["app"], READY);
        k.wait_condition("snat", Some(t), &["out"], condition::READY, READY);
        let seen = k
            .curl_from(t, "app", &external::host_url())
            .expect("egress works");
        assert!(
            seen.contains(&format!("client={eip_ip}:")),
            "{t} leaves with its own EIP {eip_ip}: {seen}"
        );
    }
    // Same CIDR, separate VPCs: A's pod cannot reach B's pod address.
    let cross = k.exec(
        "e2e-two-a",
        "app",
        &["curl", "-s", "--max-time", "2", "http://10.0.1.21:8080/"],
    );
    assert!(
        !cross.ok,
        "tenant A reached tenant B's pod: {}",
        cross.stdout
    );
}
