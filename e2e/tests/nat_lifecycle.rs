//! NAT objects over time: invalid or conflicting objects are refused with a
//! reason; rules come back by themselves after the gateway is disturbed;
//! hundreds of create/delete cycles leave nothing behind.

use std::time::Duration;

use k8s_openapi::ByteString;
use vpcnet_api::condition::READY;
use vpcnet_api::contract::naming::{natgw_pod, natgw_snapshot};
use vpcnet_e2e::cluster::{Cleanup, testapp_pod};
use vpcnet_e2e::external::from_outside;
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::natgw::{GW_NS, dnat_comment, nat_table};
use vpcnet_natgw::model::{DnatGroup, PortRange};
use vpcnet_natgw::snapshot::{SNAPSHOT_KEY, Snapshot};

/// How long a request from the external host may take.
const CURL: Duration = Duration::from_secs(2);

fn setup(k: &Kubectl, c: &mut Cleanup, t: &str, lan_ip: &str) {
    let ext = vpcnet_e2e::repo_root().join("config/samples/03-external-subnet.yaml");
    assert!(k.apply(&ext).ok);
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {t}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {t}}}\nspec: {{namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {t}-net}}\nspec: {{vpc: {t}, cidrBlock: 10.0.1.0/24, namespaces: [{t}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {{name: {t}}}\nspec: {{vpc: {t}, subnet: {t}-net, lanIp: {lan_ip}, externalSubnets: [ovn-vpc-external-network]}}\n"
    ));
    c.add("vpc", None, t);
    c.add("subnet", None, &format!("{t}-net"));
    c.add("vpc-nat-gw", None, t);
    c.add("namespace", None, t);
}

fn ready_reason(k: &Kubectl, kind: &str, ns: Option<&str>, name: &str) -> (String, String) {
    let reason = k.field(
        kind,
        ns,
        name,
        &format!("{{.status.conditions[?(@.type==\"{READY}\")].reason}}"),
    );
    let msg = k.field(
        kind,
        ns,
        name,
        &format!("{{.status.conditions[?(@.type==\"{READY}\")].message}}"),
    );
    (reason, msg)
}

fn expect_refused(
    k: &Kubectl,
    kind: &str,
    ns: Option<&str>,
    name: &str,
    reason: &str,
    text: &str,
) -> Result<(), String> {
    let start = std::time::Instant::now();
    let mut last = (String::new(), String::new());
    while start.elapsed() < Duration::from_secs(40) {
        last = ready_reason(k, kind, ns, name);
        if last.0 == reason && last.1.contains(text) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "{kind}/{name}: want Ready=False {reason} mentioning {text:?}, got {last:?}"
    ))
}

#[test]
fn invalid_and_conflicting_nat_objects_are_refused_with_a_reason() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let t = "e2e-natbad";
    setup(&k, &mut c, t, "10.0.1.254");
    k.must_apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: e2e-natbad-other}\n");
    c.add("namespace", None, "e2e-natbad-other");
    let eip = |name: &str, gw: &str, ip: &str| {
        format!(
            "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: {name}, namespace: {t}}}\nspec: {{natGwDp: {gw}{ip}}}\n---\n"
        )
    };
    let mut yaml = String::new();
    yaml += &eip("good", t, ", v4ip: 172.16.3.230");
    yaml += &eip("good2", t, ", v4ip: 172.16.3.231");
    yaml += &eip("no-gw", "missing-gw", "");
    yaml += &eip("outside", t, ", v4ip: 172.16.4.9");
    yaml += &eip("excluded", t, ", v4ip: 172.16.3.50");
    yaml += &eip("taken", t, ", v4ip: 172.16.3.230");
    let rule = |kind: &str, name: &str, spec: &str| {
        format!(
            "apiVersion: vpcnet.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {t}}}\nspec: {spec}\n---\n"
        )
    };
    yaml += &rule(
        "IptablesDnatRule",
        "d-first",
        "{eip: good, externalPort: '80', internalIp: 10.0.1.5, protocol: tcp}",
    );
    yaml += &rule(
        "IptablesDnatRule",
        "no-eip",
        "{eip: nope, externalPort: '80', internalIp: 10.0.1.5, protocol: tcp}",
    );
    yaml += &rule(
        "IptablesDnatRule",
        "d-outside",
        "{eip: good, externalPort: '81', internalIp: 10.9.0.5, protocol: tcp}",
    );
    yaml += &rule(
        "IptablesSnatRule",
        "s-outside",
        "{eip: good, internalCIDR: 192.168.0.0/24}",
    );
    yaml += &rule(
        "IptablesFIPRule",
        "f-outside",
        "{eip: good2, internalIp: 10.9.0.6}",
    );
    yaml += &rule(
        "IptablesSnatRule",
        "s-ok",
        "{eip: good, internalCIDR: 10.0.1.0/24}",
    );
    yaml += &rule(
        "IptablesFIPRule",
        "f-first",
        "{eip: good2, internalIp: 10.0.1.7}",
    );
    k.must_apply(&yaml);
    // Younger rules that conflict with the ones above.
    std::thread::sleep(Duration::from_millis(1100));
    let mut later = String::new();
    later += &rule(
        "IptablesDnatRule",
        "d-second",
        "{eip: good, externalPort: '80', internalIp: 10.0.1.6, protocol: tcp}",
    );
    later += &rule(
        "IptablesFIPRule",
        "f-on-snat",
        "{eip: good, internalIp: 10.0.1.8}",
    );
    later += &rule(
        "IptablesFIPRule",
        "f-twice",
        "{eip: good2, internalIp: 10.0.1.9}",
    );
    later += &rule(
        "IptablesDnatRule",
        "d-on-fip",
        "{eip: good2, externalPort: '90', internalIp: 10.0.1.5, protocol: tcp}",
    );
    later += "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {name: stolen, namespace: e2e-natbad-other}\nspec: {natGwDp: e2e-natbad}\n---\n";
    later += "apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {name: e2e-natbad-lan}\nspec: {vpc: e2e-natbad, subnet: e2e-natbad-net, lanIp: 10.0.2.254}\n---\n";
    later += "apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {name: e2e-natbad-ext}\nspec: {vpc: e2e-natbad, subnet: e2e-natbad-net, lanIp: 10.0.1.250, externalSubnets: [no-such-net]}\n---\n";
    later += "apiVersion: vpcnet.io/v1\nkind: VpcNatGateway\nmetadata: {name: e2e-natbad-vpc}\nspec: {vpc: e2e-natbad, subnet: ovn-default, lanIp: 10.16.0.250}\n";
    k.must_apply(&later);
    c.add("vpc-nat-gw", None, "e2e-natbad-lan");
    c.add("vpc-nat-gw", None, "e2e-natbad-ext");
    c.add("vpc-nat-gw", None, "e2e-natbad-vpc");

    let ns = Some(t);
    let cases: Vec<(&str, Option<&str>, &str, &str, &str)> = vec![
        ("eip", ns, "no-gw", "GatewayNotFound", "missing-gw"),
        ("eip", ns, "outside", "IPConflict", "outside"),
        ("eip", ns, "excluded", "IPConflict", "reserved"),
        ("eip", ns, "taken", "IPConflict", "already in use"),
        (
            "eip",
            Some("e2e-natbad-other"),
            "stolen",
            "Forbidden",
            "e2e-natbad-other",
        ),
        ("dnat", ns, "no-eip", "EipNotFound", "nope"),
        ("dnat", ns, "d-outside", "OutsideVpc", "10.9.0.5"),
        ("snat", ns, "s-outside", "OutsideVpc", "192.168.0.0/24"),
        ("fip", ns, "f-outside", "OutsideVpc", "10.9.0.6"),
        ("dnat", ns, "d-second", "Conflict", "dnat/d-first"),
        (
            "fip",
            ns,
            "f-on-snat",
            "Conflict",
            "a floating IP needs an EIP no other rule uses",
        ),
        ("fip", ns, "f-twice", "Conflict", "fip/f-first"),
        ("dnat", ns, "d-on-fip", "Conflict", "fip/f-first"),
        (
            "vpc-nat-gw",
            None,
            "e2e-natbad-lan",
            "InvalidLanIp",
            "10.0.2.254",
        ),
        (
            "vpc-nat-gw",
            None,
            "e2e-natbad-ext",
            "ExternalSubnetNotFound",
            "no-such-net",
        ),
        (
            "vpc-nat-gw",
            None,
            "e2e-natbad-vpc",
            "SubnetNotInVpc",
            "ovn-default",
        ),
    ];
    assert!(cases.len() >= 15);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(kind, ns, name, reason, text)| {
            expect_refused(&k, kind, *ns, name, reason, text).err()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} refusals wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Refusals come with an Event naming the problem.
    let events = k.ok(&[
        "get",
        "events",
        "-n",
        t,
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    for r in ["Conflict", "OutsideVpc", "IPConflict"] {
        assert!(
            events.lines().any(|l| l == r),
            "an Event with reason {r}: {events}"
        );
    }
}

#[test]
fn rules_heal_after_flush_address_loss_and_pod_recreation() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let t = "e2e-heal";
    setup(&k, &mut c, t, "10.0.1.254");
    k.must_apply(&testapp_pod(t, "web", Some("10.0.1.2")));
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: e, namespace: {t}}}\nspec: {{natGwDp: {t}, v4ip: 172.16.3.220}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: d, namespace: {t}}}\nspec: {{eip: e, externalPort: '8888', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}}\n"
    ));
    k.wait_ready(t, &["web"], Duration::from_secs(120));
    let url = "http://172.16.3.220:8888/";
    k.eventually(Duration::from_secs(120), "DNAT works", || {
        from_outside(url, CURL).is_ok_and(|a| a.contains("server=web"))
    });
    let gw = natgw_pod(t);

    let flush = k.exec(
        GW_NS,
        &gw,
        &["iptables", "-t", "nat", "-F", "VPCNAT-PREROUTING"],
    );
    assert!(flush.ok, "{}", flush.stderr);
    assert!(from_outside(url, CURL).is_err(), "flushing really broke it");
    k.eventually(Duration::from_secs(30), "DNAT back after a flush", || {
        from_outside(url, CURL).is_ok_and(|a| a.contains("server=web"))
    });

    let del = k.exec(
        GW_NS,
        &gw,
        &["ip", "addr", "del", "172.16.3.220/24", "dev", "net1"],
    );
    assert!(del.ok, "{}", del.stderr);
    k.eventually(Duration::from_secs(30), "EIP address back", || {
        from_outside(url, CURL).is_ok_and(|a| a.contains("server=web"))
    });

    k.ok(&["delete", "pod", "-n", GW_NS, &gw, "--wait=true"]);
    k.eventually(
        Duration::from_secs(120),
        "DNAT back after the gateway pod is recreated",
        || from_outside(url, CURL).is_ok_and(|a| a.contains("server=web")),
    );
}

/// The snapshot the gateway's agent keeps in its ConfigMap, if any.
fn stored_snapshot(k: &Kubectl, gw: &str) -> Option<Snapshot> {
    // Dots in the key are escaped in a jsonpath.
    let path = format!(
        "jsonpath={{.binaryData.{}}}",
        SNAPSHOT_KEY.replace('.', "\\.")
    );
    let b64 = k.ok(&[
        "get",
        "configmap",
        "-n",
        GW_NS,
        &natgw_snapshot(gw),
        "-o",
        &path,
    ]);
    if b64.trim().is_empty() {
        return None;
    }
    let bytes: ByteString = serde_json::from_value(serde_json::json!(b64.trim())).ok()?;
    Snapshot::decode(&bytes.0, gw).ok()
}

fn dnat_line_for(k: &Kubectl, gw: &str, ns: &str, name: &str) -> bool {
    nat_table(k, gw).stdout.contains(&dnat_comment(ns, name))
}

#[test]
fn a_recreated_gateway_restores_its_snapshot_first_then_follows_the_api() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let t = "e2e-snap";
    setup(&k, &mut c, t, "10.0.1.254");
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: e, namespace: {t}}}\nspec: {{natGwDp: {t}, v4ip: 172.16.3.221}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: d1, namespace: {t}}}\nspec: {{eip: e, externalPort: '8881', internalIp: 10.0.1.2, internalPort: '80', protocol: tcp}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: d2, namespace: {t}}}\nspec: {{eip: e, externalPort: '8882', internalIp: 10.0.1.3, internalPort: '80', protocol: tcp}}\n"
    ));
    k.eventually(
        Duration::from_secs(120),
        "both rules live and in the snapshot",
        || {
            dnat_line_for(&k, t, t, "d1")
                && dnat_line_for(&k, t, t, "d2")
                && stored_snapshot(&k, t).is_some_and(|s| s.rule_count() == 2)
        },
    );

    // Plant a snapshot with a rule the API does not have, as if it had been
    // deleted while the gateway was away.
    let mut snap = stored_snapshot(&k, t).unwrap();
    let (group, backends) = snap.dnats[0].clone();
    let mut ghost = backends[0].clone();
    ghost.key.name = "ghost".into();
    ghost.ext = PortRange::parse("8899").unwrap();
    snap.dnats.push((
        DnatGroup {
            ext: ghost.ext,
            ..group
        },
        vec![ghost],
    ));
    let patch =
        serde_json::json!({"binaryData": {SNAPSHOT_KEY: ByteString(snap.encode().unwrap())}});
    k.ok(&[
        "patch",
        "configmap",
        "-n",
        GW_NS,
        &natgw_snapshot(t),
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);

    let gw = natgw_pod(t);
    k.ok(&["delete", "pod", "-n", GW_NS, &gw, "--wait=true"]);
    k.eventually(
        Duration::from_secs(120),
        "the new agent applied the API's state",
        || {
            k.run(&["logs", "-n", GW_NS, &gw])
                .stdout
                .contains("first apply done")
        },
    );
    let log = k.ok(&["logs", "-n", GW_NS, &gw]);
    let restored = log
        .find("restored from snapshot")
        .unwrap_or_else(|| panic!("no restore from the snapshot:\n{log}"));
    assert!(
        log[restored..].contains("rules=3 errors=0"),
        "the planted snapshot (3 rules) was applied:\n{log}"
    );
    assert!(
        restored < log.find("first apply done").unwrap(),
        "the snapshot went in before the lists:\n{log}"
    );
    // The API wins: the ghost goes, the real rules stay, and the snapshot
    // is rewritten without it.
    k.eventually(Duration::from_secs(30), "the ghost rule removed", || {
        !dnat_line_for(&k, t, t, "ghost")
            && stored_snapshot(&k, t).is_some_and(|s| s.rule_count() == 2)
    });
    assert!(dnat_line_for(&k, t, t, "d1") && dnat_line_for(&k, t, t, "d2"));
}

#[test]
fn two_hundred_create_delete_cycles_leave_no_rules_and_no_addresses() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let t = "e2e-cycle";
    setup(&k, &mut c, t, "10.0.1.254");
    let gw = natgw_pod(t);
    k.eventually(Duration::from_secs(120), "gateway ready", || {
        k.field(
            "vpc-nat-gw",
            None,
            t,
            &format!("{{.status.conditions[?(@.type==\"{READY}\")].status}}"),
        ) == "True"
    });
    let used = || {
        k.field(
            "subnet",
            None,
            "ovn-vpc-external-network",
            "{.status.v4usingIPs}",
        )
        .parse::<u64>()
        .unwrap_or(u64::MAX)
    };
    // Earlier suites' gateways and EIPs release their addresses as their
    // deletions finish; count only once they are gone.
    k.eventually(
        Duration::from_secs(120),
        "earlier suites' NAT objects gone",
        || {
            k.run(&["get", "vpc-nat-gw", "-o", "name"]).stdout.trim()
                == format!("vpcnatgateway.vpcnet.io/{t}")
                && k.run(&["get", "eip", "-A", "-o", "name"])
                    .stdout
                    .trim()
                    .is_empty()
        },
    );
    // The count follows allocations within seconds (the Subnet is
    // reconciled when its pool moves, not only on its periodic requeue).
    let mut before = used();
    k.eventually(
        Duration::from_secs(30),
        "the external subnet's count settled",
        || {
            std::thread::sleep(Duration::from_secs(2));
            let now = used();
            std::mem::replace(&mut before, now) == now
        },
    );
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: probe, namespace: {t}}}\nspec: {{natGwDp: {t}}}\n"
    ));
    k.eventually(
        Duration::from_secs(15),
        "the external subnet's status counting a new EIP",
        || used() == before + 1,
    );
    k.ok(&["delete", "-n", t, "iptableseip/probe"]);
    // 200 cycles, ten at a time: one apply creates ten EIPs and their
    // rules, one delete removes them again before the operator is done
    // with them (40 kubectl calls instead of 400: the churn the operator
    // sees is the same, more of it at once).
    for batch in 0..20 {
        let cycle = |i: usize| {
            format!(
                "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: c{i}, namespace: {t}}}\nspec: {{natGwDp: {t}}}\n---\n\
                 apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: c{i}, namespace: {t}}}\nspec: {{eip: c{i}, externalPort: '8080', internalIp: 10.0.1.2, protocol: tcp}}\n"
            )
        };
        let ids: Vec<usize> = (batch * 10..batch * 10 + 10).collect();
        k.must_apply(
            &ids.iter()
                .map(|&i| cycle(i))
                .collect::<Vec<_>>()
                .join("---\n"),
        );
        let mut args = vec![
            "delete".to_string(),
            "-n".into(),
            t.into(),
            "--wait=false".into(),
        ];
        for i in &ids {
            args.push(format!("iptablesdnatrule/c{i}"));
            args.push(format!("iptableseip/c{i}"));
        }
        k.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    k.eventually(Duration::from_secs(180), "every EIP and rule gone", || {
        k.run(&["get", "eip,dnat", "-n", t, "-o", "name"])
            .stdout
            .trim()
            .is_empty()
    });
    k.eventually(
        Duration::from_secs(60),
        "no iptables lines of the cycled rules",
        || {
            let save = nat_table(&k, t).stdout;
            !save.contains(&format!("vpcnet:dnat/{t}/")) && !save.is_empty()
        },
    );
    // The count is the Subnet's status, reconciled when its pool moves: after
    // 400 deletions that reconcile may wait its turn behind them (15 s to
    // over 45 s with the test suite's unoptimised operator build on two
    // cores). The addresses themselves are checked on net1 below.
    k.eventually(
        Duration::from_secs(120),
        "no more external addresses held than before the cycles (earlier suites may still be releasing theirs)",
        || used() <= before,
    );
    let addrs = k
        .exec(GW_NS, &gw, &["ip", "-4", "addr", "show", "net1"])
        .stdout;
    assert_eq!(
        addrs.matches("net1:eip").count(),
        0,
        "no EIP left on net1: {addrs}"
    );
}

/// Entries in the gateway's conntrack table for flows to `eip:port`.
fn conntrack_entries(k: &Kubectl, gw: &str, eip: &str, port: &str) -> usize {
    let out = k.exec(
        GW_NS,
        gw,
        &[
            "conntrack",
            "-L",
            "-p",
            "tcp",
            "--orig-dst",
            eip,
            "--orig-port-dst",
            port,
        ],
    );
    assert!(out.ok, "conntrack -L: {}", out.stderr);
    out.stdout.lines().filter(|l| l.contains(eip)).count()
}

#[test]
fn deleting_a_rule_removes_exactly_its_lines_and_its_conntrack_entries() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let t = "e2e-ct";
    setup(&k, &mut c, t, "10.0.1.254");
    k.must_apply(&testapp_pod(t, "web", Some("10.0.1.2")));
    let eip = "172.16.3.221";
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: IptablesEIP\nmetadata: {{name: e, namespace: {t}}}\nspec: {{natGwDp: {t}, v4ip: {eip}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: d1, namespace: {t}}}\nspec: {{eip: e, externalPort: '8888', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: IptablesDnatRule\nmetadata: {{name: d2, namespace: {t}}}\nspec: {{eip: e, externalPort: '8889', internalIp: 10.0.1.2, internalPort: '8080', protocol: tcp}}\n"
    ));
    k.wait_ready(t, &["web"], Duration::from_secs(120));
    let gw = natgw_pod(t);
    for port in ["8888", "8889"] {
        let url = format!("http://{eip}:{port}/");
        k.eventually(
            Duration::from_secs(120),
            &format!("DNAT {port} works"),
            || from_outside(&url, CURL).is_ok_and(|a| a.contains("server=web")),
        );
        // A finished connection stays in conntrack (TIME_WAIT) for minutes.
        assert!(
            conntrack_entries(&k, &gw, eip, port) >= 1,
            "the flow through {port} is tracked"
        );
    }
    let lines = |tag: &str| -> Vec<String> {
        nat_table(&k, t)
            .stdout
            .lines()
            .filter(|l| l.contains(&dnat_comment(t, tag)))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(lines("d1").len(), 1);
    let d2_before = lines("d2");
    assert_eq!(d2_before.len(), 1);

    k.ok(&["delete", "dnat", "d1", "-n", t, "--wait=true"]);
    k.eventually(Duration::from_secs(30), "d1's line gone", || {
        lines("d1").is_empty()
    });
    assert_eq!(lines("d2"), d2_before, "the other rule is untouched");
    // Flushed right after the rule's lines go, in the same apply.
    k.eventually(
        Duration::from_secs(10),
        "the removed rule's flows flushed from conntrack",
        || conntrack_entries(&k, &gw, eip, "8888") == 0,
    );
    assert!(
        conntrack_entries(&k, &gw, eip, "8889") >= 1,
        "the other rule's flows are kept"
    );
    assert!(from_outside(&format!("http://{eip}:8888/"), CURL).is_err());
    assert!(
        from_outside(&format!("http://{eip}:8889/"), CURL).is_ok_and(|a| a.contains("server=web"))
    );
}
