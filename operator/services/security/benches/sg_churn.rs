//! Security-group churn against a real ovsdb-server: 1,000 groups of 10
//! rules (100 namespaces of 10 groups) and 5,000 member ports (NB rows
//! without pods). Times a rule change from the spec to its ACL in the
//! service's NB cache, and a membership change from the decision to the
//! port in its new group, with the NB transactions each took; and the same
//! changes through `ovn-nbctl` processes, one per change, for comparison.
//! Prints a table. `cargo bench -p vpcnet-security --bench sg_churn`.

#[path = "../../../../ovn/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovn::{Owner, Txn, Uuid};
use vpcnet_api::SecurityGroupSpec;
use vpcnet_api::contract::external_ids::SG_NAMESPACE;
use vpcnet_api::contract::naming;
use vpcnet_api::security_group::{RemoteType, SgPolicy, SgProtocol, SgRule};
use vpcnet_security::member::plan_for;
use vpcnet_security::plan::{self, Planned, Siblings};
use vpcnet_security::view::SgView;
use vpcnet_security::{BASE_OWNER_KIND, GROUP_OWNER_KIND, build};

const NAMESPACES: usize = 100;
const GROUPS_PER_NS: usize = 10;
const RULES: usize = 10;
const PORTS: usize = 5000;
const SAMPLES: usize = 200;
const NBCTL_SAMPLES: usize = 50;
const SETTLE: Duration = Duration::from_secs(10);

fn spec(seed: usize) -> SecurityGroupSpec {
    let rules = (0..RULES)
        .map(|i| SgRule {
            protocol: SgProtocol::Tcp,
            priority: (i * 20 + 1) as i32,
            policy: if i.is_multiple_of(3) {
                SgPolicy::Drop
            } else {
                SgPolicy::Allow
            },
            remote_type: RemoteType::Address,
            remote_address: Some(format!("10.{}.{}.0/24", i, seed % 250)),
            port_range_min: Some(1000 + i as i32),
            port_range_max: Some(1000 + i as i32),
            ..Default::default()
        })
        .collect();
    SecurityGroupSpec {
        allow_same_group_traffic: true,
        ingress_rules: rules,
        egress_rules: Vec::new(),
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

async fn send(nb: &ovn::Client, view: &SgView, p: Planned) -> usize {
    let Some(txn) = p.txn else { return 0 };
    let res = nb.transact(txn).await.expect("transact");
    let inserted: Vec<Uuid> = p.inserted.iter().filter_map(|u| res.uuid(u)).collect();
    view.settle(&inserted, &p.deleted, SETTLE)
        .await
        .expect("settle");
    1
}

fn group_plan(view: &SgView, ns: &str, name: &str, spec: &SecurityGroupSpec, slot: u16) -> Planned {
    let owner = Owner::new(GROUP_OWNER_KIND, ns, name);
    let rows = build::group_rows(ns, name, spec, slot).expect("rows");
    let cached = view.port_group(&rows.port_group.name);
    let siblings = if cached.is_none() {
        view.groups_of(ns)
    } else {
        Vec::new()
    };
    plan::group(
        &owner,
        rows.port_group.clone(),
        Some(rows.acls),
        cached.as_ref(),
        &view.acls(&owner.id()),
        Some(Siblings {
            key: (SG_NAMESPACE, ns),
            cached: &siblings,
        }),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let s = common::Server::start_with(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../ovn/schema/ovn-nb.ovsschema"
        ),
        false,
    );
    let nb = common::client(&s).await;
    // 5,000 ports on one switch, in one transaction.
    let t0 = Instant::now();
    let mut txn = Txn::nb();
    let mut ports = BTreeSet::new();
    for i in 0..PORTS {
        ports.insert(txn.insert_row(&LogicalSwitchPort {
            name: format!("p{i}.bench"),
            addresses: BTreeSet::from([format!(
                "0a:00:00:00:{:02x}:{:02x} 10.1.{}.{}",
                i / 256,
                i % 256,
                i / 250,
                i % 250 + 2
            )]),
            external_ids: BTreeMap::from([("vpcnet.io/subnet".into(), "bench-net".into())]),
            ..Default::default()
        }));
    }
    txn.insert_row(&LogicalSwitch {
        name: "vpcnet-bench-net".into(),
        ports,
        ..Default::default()
    });
    nb.transact(txn).await.expect("ports");
    let view = SgView::start(&nb).await.expect("view");
    let ports_loaded = t0.elapsed();
    let base_rows = build::base_rows("bench-net", "10.1.0.1".parse().unwrap());
    send(
        &nb,
        &view,
        plan::group(
            &Owner::cluster(BASE_OWNER_KIND, "bench-net"),
            base_rows.port_group,
            Some(base_rows.acls),
            None,
            &[],
            None,
        ),
    )
    .await;

    // 1,000 groups, one transaction each.
    let t0 = Instant::now();
    let mut txns = 0;
    for n in 0..NAMESPACES {
        for g in 0..GROUPS_PER_NS {
            let p = group_plan(
                &view,
                &format!("ns{n}"),
                &format!("g{g}"),
                &spec(n * 10 + g),
                g as u16,
            );
            txns += send(&nb, &view, p).await;
        }
    }
    let groups_created = t0.elapsed();
    assert_eq!(txns, NAMESPACES * GROUPS_PER_NS);
    let group_of = |i: usize| {
        (
            format!("ns{}", (i / GROUPS_PER_NS) % NAMESPACES),
            format!("g{}", i % GROUPS_PER_NS),
        )
    };
    let pg_of = |view: &SgView, i: usize| {
        let (ns, g) = group_of(i);
        view.port_group(&naming::security_group_port_group(&ns, &g))
            .unwrap()
    };
    let base = view.bases().remove(0);

    // Every port joins one group (and the base group), one transaction each.
    let t0 = Instant::now();
    for i in 0..PORTS {
        let port = view.port(&format!("p{i}.bench")).unwrap().uuid;
        let (p, _) = plan_for(&view, &port, &[pg_of(&view, i % 1000), base.clone()]);
        nb.transact(p.txn.unwrap()).await.expect("join");
    }
    let joined = t0.elapsed();

    // Rule changes: one rule's port of one group, to its ACL in the cache.
    let mut rule_lat = Vec::new();
    let mut rule_txns = 0;
    for k in 0..SAMPLES {
        let i = (k * 37) % 1000;
        let (ns, g) = group_of(i);
        let mut sp = spec((i / GROUPS_PER_NS) * 10 + i % GROUPS_PER_NS);
        sp.ingress_rules[k % RULES].port_range_min = Some(2000 + k as i32);
        sp.ingress_rules[k % RULES].port_range_max = Some(2000 + k as i32);
        let started = Instant::now();
        let owner = Owner::new(GROUP_OWNER_KIND, &ns, &g);
        let p = group_plan(&view, &ns, &g, &sp, (i % GROUPS_PER_NS) as u16);
        rule_txns += send(&nb, &view, p).await;
        let needle = format!("tcp.dst == {}", 2000 + k);
        let key = format!(
            "in/{}/{}",
            (k % RULES) * 20 + 1,
            if (k % RULES).is_multiple_of(3) {
                "drop"
            } else {
                "allow"
            }
        );
        while !view
            .acls(&owner.id())
            .iter()
            .any(|a| a.external_ids["vpcnet.io/key"] == key && a.r#match.contains(&needle))
        {
            tokio::task::yield_now().await;
        }
        rule_lat.push(started.elapsed());
    }

    // Membership changes: a port moves to another group.
    let mut mem_lat = Vec::new();
    let mut mem_txns = 0;
    for k in 0..SAMPLES {
        let i = (k * 13) % PORTS;
        let port = view.port(&format!("p{i}.bench")).unwrap().uuid;
        let target = pg_of(&view, (i + 500) % 1000);
        let want = BTreeSet::from([target.uuid.clone(), base.uuid.clone()]);
        let started = Instant::now();
        let (p, cand) = plan_for(&view, &port, &[target, base.clone()]);
        nb.transact(p.txn.unwrap()).await.expect("move");
        mem_txns += 1;
        let uuids: Vec<Uuid> = cand.iter().map(|g| g.uuid.clone()).collect();
        view.settle_membership(&port, &uuids, &want, SETTLE)
            .await
            .expect("settled");
        mem_lat.push(started.elapsed());
    }

    // The same through ovn-nbctl, one process per change.
    let nbctl = |args: &[&str]| {
        let started = Instant::now();
        s.nbctl(args);
        started.elapsed()
    };
    let mut nbctl_rule = Vec::new();
    let mut nbctl_mem = Vec::new();
    for k in 0..NBCTL_SAMPLES {
        let (ns, g) = group_of(k);
        let pg = naming::security_group_port_group(&ns, &g);
        let new = format!("outport == @{pg} && ip4 && tcp && tcp.dst == {}", 3000 + k);
        let prio = "31000";
        nbctl_rule.push(nbctl(&[
            "--",
            "--type=port-group",
            "acl-add",
            &pg,
            "to-lport",
            prio,
            &new,
            "allow-related",
        ]));
        let members: Vec<String> = (0..5).map(|j| format!("p{}.bench", k + j * 1000)).collect();
        let mut args = vec!["pg-set-ports".to_string(), pg.clone()];
        args.extend(members);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nbctl_mem.push(nbctl(&args));
    }

    println!();
    println!(
        "security groups: {} groups x {RULES} rules, {PORTS} member ports",
        NAMESPACES * GROUPS_PER_NS
    );
    println!(
        "setup: {PORTS} ports {ports_loaded:?}; {} groups {groups_created:?} ({txns} txns); {PORTS} joins {joined:?}",
        NAMESPACES * GROUPS_PER_NS
    );
    println!();
    println!("| change | n | p50 ms | p99 ms | NB txns per change |");
    println!("|---|---|---|---|---|");
    let row = |what: &str, v: &mut Vec<Duration>, txns: f64| {
        let n = v.len();
        println!(
            "| {what} | {n} | {:.2} | {:.2} | {txns:.0} |",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    };
    row(
        "rule change -> ACL in NB (vpcnet)",
        &mut rule_lat,
        rule_txns as f64 / SAMPLES as f64,
    );
    row("ovn-nbctl acl-add, one process", &mut nbctl_rule, 1.0);
    row(
        "membership change -> port in group (vpcnet)",
        &mut mem_lat,
        mem_txns as f64 / SAMPLES as f64,
    );
    row("ovn-nbctl pg-set-ports, one process", &mut nbctl_mem, 1.0);
}
