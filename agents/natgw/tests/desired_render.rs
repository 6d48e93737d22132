//! Pure tests of `desired` and `render`.

mod common;

use common::*;
use vpcnet_natgw::desired::{Inputs, desired};
use vpcnet_natgw::model::{GatewayFacts, Kind, ObjKey};
use vpcnet_natgw::render::{render, render_lines};

fn facts() -> GatewayFacts {
    GatewayFacts {
        name: GW.into(),
        lan_iface: "eth0".into(),
        lan_ip: "10.0.1.254".parse().unwrap(),
        vpc_cidrs: vec!["10.0.1.0/24".parse().unwrap()],
        ext_iface: "net1".into(),
        random_fully: true,
    }
}

fn rules_of(text: &str, tag: &str) -> Vec<String> {
    let needle = format!("--comment \"vpcnet:{tag}\"");
    text.lines()
        .filter(|l| l.contains(&needle))
        .map(String::from)
        .collect()
}

#[test]
fn snat_longest_prefix_first_with_random_fully() {
    let inp = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        snats: vec![
            snat("t", "wide", "e1", "10.0.0.0/16", true),
            snat("t", "host", "e1", "10.0.1.7", true),
            snat("t", "mid", "e1", "10.0.1.0/24", true),
        ],
        ..Default::default()
    };
    let mut wide = facts();
    wide.vpc_cidrs = vec!["10.0.0.0/16".parse().unwrap()];
    let text = render(&desired_sealed(Some(wide.clone()), GW, &inp));
    let snats: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("vpcnet:snat/"))
        .collect();
    assert_eq!(snats.len(), 3);
    assert!(snats[0].contains("-s 10.0.1.7/32 ") && snats[0].contains("vpcnet:snat/t/host"));
    assert!(snats[1].contains("-s 10.0.1.0/24 "));
    assert!(snats[2].contains("-s 10.0.0.0/16 "));
    assert_eq!(
        snats[1],
        "-A VPCNAT-POSTROUTING -s 10.0.1.0/24 -o net1 -m comment --comment \"vpcnet:snat/t/mid\" -j SNAT --to-source 172.16.3.10 --random-fully"
    );
    let mut f = wide;
    f.random_fully = false;
    let text = render(&desired_sealed(Some(f), GW, &inp));
    assert!(!text.contains("--random-fully"));
}

#[test]
fn fip_is_dnat_plus_snat() {
    let inp = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.11"))],
        fips: vec![fip("t", "f1", "e1", "10.0.1.2")],
        ..Default::default()
    };
    let text = render(&desired_sealed(Some(facts()), GW, &inp));
    assert_eq!(
        rules_of(&text, "fip/t/f1"),
        vec![
            "-A VPCNAT-PREROUTING -d 172.16.3.11/32 -m comment --comment \"vpcnet:fip/t/f1\" -j DNAT --to-destination 10.0.1.2",
            "-A VPCNAT-POSTROUTING -s 10.0.1.2/32 -o net1 -m comment --comment \"vpcnet:fip/t/f1\" -j SNAT --to-source 172.16.3.11",
        ]
    );
}

#[test]
fn exclusive_dnat_and_port_ranges() {
    let inp = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        dnats: vec![
            dnat(
                "t",
                "web",
                "e1",
                "8888",
                "10.0.1.2",
                Some("80"),
                false,
                false,
            ),
            dnat("t", "same", "e1", "53", "10.0.1.3", None, true, false),
            dnat(
                "t",
                "range",
                "e1",
                "1000-2000",
                "10.0.1.2",
                Some("3000-4000"),
                false,
                false,
            ),
        ],
        ..Default::default()
    };
    let text = render(&desired_sealed(Some(facts()), GW, &inp));
    assert_eq!(
        rules_of(&text, "dnat/t/web"),
        vec![
            "-A VPCNAT-D-AC10030A-T-22 -d 172.16.3.10/32 -p tcp -m tcp --dport 8888 -m comment --comment \"vpcnet:dnat/t/web\" -j DNAT --to-destination 10.0.1.2:80"
        ]
    );
    assert_eq!(
        rules_of(&text, "dnat/t/same"),
        vec![
            "-A VPCNAT-D-AC10030A-U-00 -d 172.16.3.10/32 -p udp -m udp --dport 53 -m comment --comment \"vpcnet:dnat/t/same\" -j DNAT --to-destination 10.0.1.3:53"
        ]
    );
    let r = rules_of(&text, "dnat/t/range");
    assert_eq!(r.len(), 1);
    assert!(r[0].contains("--dport 1000:2000 "), "{r:?}");
    // A range across port blocks stays in the main chain.
    assert!(r[0].starts_with("-A VPCNAT-PREROUTING "), "{r:?}");
    // Each block is entered by one jump from the main chain.
    assert_eq!(
        rules_of(&text, "dnat-bucket"),
        vec![
            "-A VPCNAT-PREROUTING -d 172.16.3.10/32 -p tcp -m tcp --dport 8704:8959 -m comment --comment \"vpcnet:dnat-bucket\" -j VPCNAT-D-AC10030A-T-22",
            "-A VPCNAT-PREROUTING -d 172.16.3.10/32 -p udp -m udp --dport 0:255 -m comment --comment \"vpcnet:dnat-bucket\" -j VPCNAT-D-AC10030A-U-00",
        ]
    );
    assert!(
        r[0].ends_with("--to-destination 10.0.1.2:3000-4000"),
        "{r:?}"
    );
}

#[test]
fn shared_dnat_spreads_in_a_group_chain() {
    let inp = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        dnats: vec![
            dnat("t", "b", "e1", "80", "10.0.1.3", None, false, true),
            dnat("t", "a", "e1", "80", "10.0.1.2", None, false, true),
            dnat("t", "c", "e1", "80", "10.0.1.4", None, false, true),
        ],
        ..Default::default()
    };
    let st = desired_sealed(Some(facts()), GW, &inp);
    let r = render_lines(&st);
    let chain = r
        .chains
        .iter()
        .find(|c| c.starts_with("VPCNAT-SHARED-"))
        .expect("group chain")
        .clone();
    assert!(chain.len() <= 28);
    let text = render(&st);
    assert!(text.contains(&format!(":{chain} - [0:0]")));
    let jump: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with(&format!("-j {chain}")))
        .collect();
    assert_eq!(jump.len(), 1);
    assert!(
        jump[0]
            .starts_with("-A VPCNAT-D-AC10030A-T-00 -d 172.16.3.10/32 -p tcp -m tcp --dport 80 ")
    );
    let members: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("-A {chain} ")))
        .collect();
    assert_eq!(members.len(), 3);
    assert!(members[0].contains("--every 3 --packet 0") && members[0].contains("vpcnet:dnat/t/a"));
    assert!(members[1].contains("--every 2 --packet 0") && members[1].contains("vpcnet:dnat/t/b"));
    assert!(!members[2].contains("statistic") && members[2].contains("vpcnet:dnat/t/c"));
    assert!(members[2].ends_with("-j DNAT --to-destination 10.0.1.4:80"));
}

#[test]
fn exclusive_conflict_first_wins_and_is_reported() {
    let inp = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        dnats: vec![
            dnat("t", "b", "e1", "80", "10.0.1.3", None, false, false),
            dnat("t", "a", "e1", "80", "10.0.1.2", None, false, true),
        ],
        ..Default::default()
    };
    let st = desired_sealed(Some(facts()), GW, &inp);
    assert_eq!(st.rule_count(), 1);
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Dnat, "t", "b")].reason,
        "Conflict"
    );
}

#[test]
fn hairpin_snats_dnated_vpc_traffic_to_lan_ip() {
    let text = render(&desired_sealed(Some(facts()), GW, &Inputs::default()));
    assert_eq!(
        rules_of(&text, "hairpin"),
        vec![
            "-A VPCNAT-POSTROUTING -s 10.0.1.0/24 -o eth0 -m conntrack --ctstate DNAT -m comment --comment \"vpcnet:hairpin\" -j SNAT --to-source 10.0.1.254"
        ]
    );
    // Hairpin precedes every SNAT.
    let inp = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        snats: vec![snat("t", "s", "e1", "10.0.1.0/24", true)],
        ..Default::default()
    };
    let text = render(&desired_sealed(Some(facts()), GW, &inp));
    let post: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("-A VPCNAT-POSTROUTING"))
        .collect();
    assert!(post[0].contains("vpcnet:own-traffic"));
    assert!(post[1].contains("vpcnet:hairpin") && post[2].contains("vpcnet:snat/t/s"));
}

#[test]
fn the_gateways_own_traffic_is_never_translated() {
    // Whatever the rules, locally sourced packets (the agent's API
    // connections) leave POSTROUTING before any SNAT.
    let inp = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        snats: vec![snat("t", "s", "e1", "10.0.1.0/24", true)],
        ..Default::default()
    };
    let text = render(&desired_sealed(Some(facts()), GW, &inp));
    let first = text
        .lines()
        .find(|l| l.starts_with("-A VPCNAT-POSTROUTING"))
        .unwrap();
    assert_eq!(
        first,
        "-A VPCNAT-POSTROUTING -m addrtype --src-type LOCAL -m comment --comment \"vpcnet:own-traffic\" -j RETURN"
    );
    // A catch-all SNAT the operator should have refused is not programmed.
    let wide = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        snats: vec![snat("t", "all", "e1", "0.0.0.0/0", true)],
        ..Default::default()
    };
    let st = desired_sealed(Some(facts()), GW, &wide);
    assert!(st.snats.is_empty());
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Snat, "t", "all")].reason,
        "OutsideVpc"
    );
}

#[test]
fn nothing_unsealed_or_outside_the_vpc_is_programmed() {
    let honest = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        dnats: vec![dnat("t", "web", "e1", "80", "10.0.1.2", None, false, false)],
        ..Default::default()
    };
    let st = desired_sealed(Some(facts()), GW, &honest);
    assert_eq!((st.eips.len(), st.rule_count()), (1, 1));

    // A tenant writes what the operator would have: address, verdict, even
    // a seal copied from another object. Nothing of it is programmed.
    let mut forged = sealed(&honest);
    forged.eips[0].status.as_mut().unwrap().ip = Some("172.16.3.99".into());
    let st = desired(Some(facts()), GW, &forged, &key());
    assert!(st.eips.is_empty() && st.rule_count() == 0, "{st:?}");
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Eip, "t", "e1")].reason,
        "NotAccepted"
    );
    // The spec changed since the operator's verdict (a new generation),
    // and the old sealed status is kept: the rule waits for a new verdict.
    let mut stale = sealed(&honest);
    stale.dnats[0].metadata.generation = Some(2);
    let st = desired(Some(facts()), GW, &stale, &key());
    assert_eq!((st.eips.len(), st.rule_count()), (1, 0));
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Dnat, "t", "web")].reason,
        "NotAccepted"
    );
    // Or a seal copied from another rule.
    let mut copied = sealed(&honest);
    copied.dnats[0].metadata.uid = Some("someone-else".into());
    let st = desired(Some(facts()), GW, &copied, &key());
    assert_eq!(st.rule_count(), 0);

    // Sealed by the operator, but the namespace left the gateway's VPC.
    let mut moved = sealed(&honest);
    moved.vpc_namespaces = vec!["other".into()];
    let st = desired(Some(facts()), GW, &moved, &key());
    assert!(st.eips.is_empty() && st.rule_count() == 0);
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Eip, "t", "e1")].reason,
        "Forbidden"
    );

    // Sealed with another key: not the operator's.
    let other = vpcnet_api::seal::SealKey::new(b"another-key-0123456789").unwrap();
    let mut foreign = honest.clone();
    foreign.vpc_namespaces = vec!["t".into()];
    vpcnet_natgw::desired::seal_as_operator(&mut foreign, &other);
    let st = desired(Some(facts()), GW, &foreign, &key());
    assert!(st.eips.is_empty() && st.rule_count() == 0);
}

#[test]
fn every_rule_line_is_attributed() {
    let inp = Inputs {
        vpc_namespaces: vec!["t".into()],
        eips: vec![
            eip("t", "e1", GW, Some("172.16.3.10")),
            eip("t", "e2", GW, Some("172.16.3.11")),
        ],
        snats: vec![snat("t", "s", "e1", "10.0.1.0/24", true)],
        fips: vec![fip("t", "f", "e2", "10.0.1.9")],
        dnats: vec![
            dnat("t", "d1", "e1", "80", "10.0.1.2", None, false, true),
            dnat("t", "d2", "e1", "80", "10.0.1.3", None, false, true),
        ],
    };
    let text = render(&desired_sealed(Some(facts()), GW, &inp));
    for l in text.lines().filter(|l| l.starts_with("-A ")) {
        assert!(
            l.contains("-m comment --comment \"vpcnet:"),
            "unattributed: {l}"
        );
    }
    assert!(text.starts_with("*nat\n:VPCNAT-PREROUTING - [0:0]\n:VPCNAT-POSTROUTING - [0:0]\n"));
    assert!(text.ends_with("COMMIT\n"));
}

#[test]
fn output_is_deterministic_whatever_the_input_order() {
    let mut inp = Inputs {
        vpc_namespaces: vec!["t".into()],
        eips: (0..20)
            .map(|i| {
                eip(
                    "t",
                    &format!("e{i}"),
                    GW,
                    Some(&format!("172.16.3.{}", 10 + i)),
                )
            })
            .collect(),
        snats: (0..20)
            .map(|i| {
                snat(
                    "t",
                    &format!("s{i}"),
                    &format!("e{i}"),
                    &format!("10.0.{i}.0/24"),
                    true,
                )
            })
            .collect(),
        dnats: (0..40)
            .map(|i| {
                dnat(
                    "t",
                    &format!("d{i}"),
                    &format!("e{}", i % 20),
                    &format!("{}", 8000 + i / 20),
                    "10.0.1.2",
                    None,
                    false,
                    true,
                )
            })
            .collect(),
        fips: vec![],
    };
    let a = render(&desired_sealed(Some(facts()), GW, &inp));
    inp.eips.reverse();
    inp.snats.reverse();
    inp.dnats.reverse();
    let b = render(&desired_sealed(Some(facts()), GW, &inp));
    assert_eq!(a, b);
    assert_eq!(a.lines().filter(|l| l.contains("vpcnet:dnat/")).count(), 40);
}

#[test]
fn not_accepted_rules_and_eips_without_ip_are_ignored() {
    let mut pending_dnat = dnat("t", "d2", "e1", "81", "10.0.1.2", None, false, false);
    pending_dnat.status.as_mut().unwrap().conditions[0].observed_generation = Some(0);
    let inp = Inputs {
        vpc_namespaces: vec!["t".into()],
        eips: vec![
            eip("t", "e1", GW, Some("172.16.3.10")),
            eip("t", "noip", GW, None),
            eip("t", "other", "gw2", Some("172.16.3.50")),
        ],
        snats: vec![
            snat("t", "rejected", "e1", "10.0.1.0/24", false),
            snat("t", "waiting", "noip", "10.0.2.0/24", true),
            snat("t", "foreign", "other", "10.0.3.0/24", true),
        ],
        dnats: vec![pending_dnat],
        fips: vec![],
    };
    let st = desired_sealed(Some(facts()), GW, &inp);
    assert_eq!(st.rule_count(), 0);
    assert_eq!(st.eips.len(), 1);
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Snat, "t", "rejected")].reason,
        "NotAccepted"
    );
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Snat, "t", "waiting")].reason,
        "EipPending"
    );
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Eip, "t", "noip")].reason,
        "EipPending"
    );
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Dnat, "t", "d2")].reason,
        "NotAccepted"
    );
    assert!(
        !st.skipped
            .contains_key(&ObjKey::new(Kind::Snat, "t", "foreign"))
    );
    let text = render(&st);
    assert!(
        !text.contains("172.16.3.50")
            && !text.contains("10.0.2.0")
            && !text.contains("vpcnet:snat/")
    );
}

#[test]
fn rule_v4ip_must_match_eip() {
    let mut r = snat("t", "s", "e1", "10.0.1.0/24", true);
    r.status.as_mut().unwrap().v4ip = Some("172.16.3.99".into());
    let inp = Inputs {
        eips: vec![eip("t", "e1", GW, Some("172.16.3.10"))],
        snats: vec![r],
        ..Default::default()
    };
    let st = desired_sealed(Some(facts()), GW, &inp);
    assert_eq!(st.rule_count(), 0);
    assert_eq!(
        st.skipped[&ObjKey::new(Kind::Snat, "t", "s")].reason,
        "EipPending"
    );
}

#[test]
fn one_more_dnat_rule_changes_only_its_port_block() {
    let mut inp = Inputs {
        eips: vec![
            eip("t", "e1", GW, Some("172.16.3.10")),
            eip("t", "e2", GW, Some("172.16.3.11")),
        ],
        dnats: (0..1000)
            .map(|i| {
                dnat(
                    "t",
                    &format!("d{i}"),
                    if i % 2 == 0 { "e1" } else { "e2" },
                    &(1000 + i / 2).to_string(),
                    "10.0.1.2",
                    None,
                    false,
                    false,
                )
            })
            .collect(),
        ..Default::default()
    };
    let before = render_lines(&desired_sealed(Some(facts()), GW, &inp)).chain_texts();
    inp.dnats.push(dnat(
        "t", "new", "e2", "1500", "10.0.1.3", None, false, false,
    ));
    let after = render_lines(&desired_sealed(Some(facts()), GW, &inp)).chain_texts();
    assert_eq!(before.len(), after.len());
    let changed: Vec<&String> = after
        .iter()
        .filter(|(c, t)| before.get(*c) != Some(*t))
        .map(|(c, _)| c)
        .collect();
    // 1500 / 256 = block 5; 172.16.3.11 = AC10030B.
    assert_eq!(changed, vec!["VPCNAT-D-AC10030B-T-05"]);
    // No chain holds more than a block's worth of rules.
    assert!(after.values().all(|t| t.lines().count() <= 256));
}
