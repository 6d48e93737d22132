mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Server;
use ovn::nb::{self, *};
use ovn::ops::WaitUntil;
use ovn::{Cond, Error, Mutation, Table, Txn, Uuid, datum};
use serde_json::json;

fn s(x: &str) -> String {
    x.to_string()
}

fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (s(k), s(v))).collect()
}

async fn select_all<T: Table>(c: &ovn::Client) -> Vec<T> {
    let mut t = Txn::nb();
    let i = t.select_all::<T>();
    c.transact(t).await.unwrap().rows::<T>(i).unwrap()
}

#[tokio::test]
async fn insert_with_uuid_name_references_then_select() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let mut t = Txn::nb();
    let lsp = t.insert_row(&LogicalSwitchPort {
        name: s("p1"),
        addresses: BTreeSet::from([s("00:00:00:00:00:01 10.0.0.2")]),
        ..Default::default()
    });
    let ls = t.insert_row(&LogicalSwitch {
        name: s("sw"),
        ports: BTreeSet::from([lsp.clone()]),
        ..Default::default()
    });
    let res = c.transact(t).await.unwrap();
    let (ls_uuid, lsp_uuid) = (res.uuid(&ls).unwrap(), res.uuid(&lsp).unwrap());
    assert!(matches!(ls_uuid, Uuid::Real(_)) && !ls_uuid.is_nil());

    let switches: Vec<LogicalSwitch> = select_all(&c).await;
    assert_eq!(switches.len(), 1);
    assert_eq!(switches[0].uuid, ls_uuid);
    assert_eq!(switches[0].ports, BTreeSet::from([lsp_uuid.clone()]));
    let ports: Vec<LogicalSwitchPort> = select_all(&c).await;
    assert_eq!(ports[0].uuid, lsp_uuid);
    assert_eq!(
        ports[0].addresses,
        BTreeSet::from([s("00:00:00:00:00:01 10.0.0.2")])
    );

    // Select with a where clause and a column subset.
    let mut t = Txn::nb();
    let i = t.select(
        logical_switch_port::TABLE,
        &[Cond::eq(logical_switch_port::NAME, "p1")],
        Some(&[logical_switch_port::NAME]),
    );
    let rows = c.transact(t).await.unwrap().raw_rows(i);
    assert_eq!(
        rows,
        vec![serde_json::from_value(json!({"name": "p1"})).unwrap()]
    );
}

#[tokio::test]
async fn update_mutate_delete_round_trip() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let mut t = Txn::nb();
    t.insert_row(&NbGlobal {
        nb_cfg: 5,
        ..Default::default()
    });
    t.insert_row(&AddressSet {
        name: s("as1"),
        addresses: BTreeSet::from([s("10.0.0.1")]),
        ..Default::default()
    });
    c.transact(t).await.unwrap();

    let by_name = [Cond::eq(address_set::NAME, "as1")];
    let mut t = Txn::nb();
    let u = t.update(
        address_set::TABLE,
        &by_name,
        serde_json::from_value(json!({"external_ids": datum::str_map([("a", "1")])})).unwrap(),
    );
    let m = t.mutate(
        address_set::TABLE,
        &by_name,
        &[
            Mutation::insert(
                address_set::ADDRESSES,
                datum::set_of([json!("10.0.0.2"), json!("10.0.0.3")]),
            ),
            Mutation::delete(address_set::ADDRESSES, json!("10.0.0.1")),
        ],
    );
    let n = t.mutate(
        nb_global::TABLE,
        &[],
        &[
            Mutation::add(nb_global::NB_CFG, 10),
            Mutation::mul(nb_global::SB_CFG, 3),
        ],
    );
    let r = c.transact(t).await.unwrap();
    assert_eq!(
        (
            r.results[u].count(),
            r.results[m].count(),
            r.results[n].count()
        ),
        (Some(1), Some(1), Some(1))
    );

    let sets: Vec<AddressSet> = select_all(&c).await;
    assert_eq!(
        sets[0].addresses,
        BTreeSet::from([s("10.0.0.2"), s("10.0.0.3")])
    );
    assert_eq!(sets[0].external_ids, ids(&[("a", "1")]));
    let g: Vec<NbGlobal> = select_all(&c).await;
    assert_eq!(g[0].nb_cfg, 15);

    // Typed partial update.
    let mut a = sets[0].clone();
    a.addresses.insert(s("10.0.0.9"));
    a.external_ids.clear();
    let mut t = Txn::nb();
    t.update_row(&a, &[address_set::ADDRESSES]);
    c.transact(t).await.unwrap();
    let got: Vec<AddressSet> = select_all(&c).await;
    assert_eq!(got[0].addresses.len(), 3);
    assert_eq!(
        got[0].external_ids,
        ids(&[("a", "1")]),
        "only the named column was written"
    );

    let mut t = Txn::nb();
    let d = t.delete(address_set::TABLE, &by_name);
    assert_eq!(c.transact(t).await.unwrap().results[d].count(), Some(1));
    assert!(select_all::<AddressSet>(&c).await.is_empty());
}

#[tokio::test]
async fn wait_semantics() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let mut t = Txn::nb();
    t.insert_row(&LogicalRouter {
        name: s("r1"),
        ..Default::default()
    });
    c.transact(t).await.unwrap();
    let by_name = [Cond::eq(logical_router::NAME, "r1")];
    let row = |n: &str| serde_json::from_value(json!({"name": n})).unwrap();

    // "==" holds: the transaction proceeds.
    let mut t = Txn::nb();
    t.wait(
        logical_router::TABLE,
        &by_name,
        &[logical_router::NAME],
        WaitUntil::Equal,
        vec![row("r1")],
        Some(0),
    );
    t.insert_row(&LogicalRouter {
        name: s("r2"),
        ..Default::default()
    });
    c.transact(t).await.unwrap();

    // "!=" does not hold and timeout 0: fails with "timed out", nothing applied.
    let mut t = Txn::nb();
    t.wait(
        logical_router::TABLE,
        &by_name,
        &[logical_router::NAME],
        WaitUntil::NotEqual,
        vec![row("r1")],
        Some(0),
    );
    t.insert_row(&LogicalRouter {
        name: s("r3"),
        ..Default::default()
    });
    let e = c.transact(t).await.unwrap_err();
    assert!(
        matches!(&e, Error::Transaction { op_index: Some(0), error, .. } if error == "timed out"),
        "{e}"
    );
    assert_eq!(select_all::<LogicalRouter>(&c).await.len(), 2);

    // A blocking wait completes once another client makes it true.
    let c2 = common::client(&srv).await;
    let mut t = Txn::nb();
    t.wait(
        logical_router::TABLE,
        &by_name,
        &[logical_router::NAME],
        WaitUntil::NotEqual,
        vec![row("r1")],
        Some(10_000),
    );
    t.insert_row(&LogicalRouter {
        name: s("after-wait"),
        ..Default::default()
    });
    let waiter = tokio::spawn(async move { c2.transact(t).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "wait must block while the condition is false"
    );
    let mut t = Txn::nb();
    t.update(logical_router::TABLE, &by_name, row("renamed"));
    c.transact(t).await.unwrap();
    waiter.await.unwrap().unwrap();
    let names: BTreeSet<String> = select_all::<LogicalRouter>(&c)
        .await
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([s("renamed"), s("r2"), s("after-wait")])
    );
}

#[tokio::test]
async fn assert_requires_the_lock() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let mut t = Txn::nb();
    t.assert("vpcnet_leader");
    let e = c.transact(t).await.unwrap_err();
    assert_eq!(e.ovsdb_error(), Some("not owner"), "{e}");

    assert!(c.lock("vpcnet_leader").await.unwrap());
    // Another client cannot take it without stealing.
    let c2 = common::client(&srv).await;
    assert!(!c2.lock("vpcnet_leader").await.unwrap());
    let mut t = Txn::nb();
    t.assert("vpcnet_leader");
    t.insert_row(&LogicalSwitch {
        name: s("locked"),
        ..Default::default()
    });
    c.transact(t).await.unwrap();
    let mut t = Txn::nb();
    t.assert("vpcnet_leader");
    assert_eq!(
        c2.transact(t).await.unwrap_err().ovsdb_error(),
        Some("not owner")
    );
    c.unlock("vpcnet_leader").await.unwrap();
    assert_eq!(select_all::<LogicalSwitch>(&c).await.len(), 1);
}

#[tokio::test]
async fn failure_on_third_op_leaves_nothing_applied() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let mut t = Txn::nb();
    t.insert_row(&LogicalSwitch {
        name: s("a"),
        ..Default::default()
    });
    t.insert_row(&AddressSet {
        name: s("as"),
        ..Default::default()
    });
    t.update(
        logical_switch::TABLE,
        &[],
        serde_json::from_value(json!({"no_such_column": 1})).unwrap(),
    );
    t.insert_row(&LogicalSwitch {
        name: s("d"),
        ..Default::default()
    });
    let e = c.transact(t).await.unwrap_err();
    match &e {
        Error::Transaction { op_index, op, .. } => {
            assert_eq!(*op_index, Some(2), "{e}");
            assert_eq!(op.as_deref(), Some("update"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(select_all::<LogicalSwitch>(&c).await.is_empty());
    assert!(select_all::<AddressSet>(&c).await.is_empty());

    // A failure found only at commit (duplicate index value) is atomic too.
    let mut t = Txn::nb();
    t.insert_row(&LogicalSwitch {
        name: s("b"),
        ..Default::default()
    });
    t.insert_row(&AddressSet {
        name: s("dup"),
        ..Default::default()
    });
    t.insert_row(&AddressSet {
        name: s("dup"),
        ..Default::default()
    });
    let e = c.transact(t).await.unwrap_err();
    assert!(
        matches!(&e, Error::Transaction { op_index: None, error, .. } if error == "constraint violation"),
        "{e}"
    );
    assert!(select_all::<LogicalSwitch>(&c).await.is_empty());
}

#[tokio::test]
async fn comment_and_abort() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let mut t = Txn::nb();
    t.insert_row(&LogicalSwitch {
        name: s("x"),
        ..Default::default()
    });
    t.comment("vpcnet: test comment");
    t.commit(true);
    c.transact(t).await.unwrap();
    assert!(
        std::fs::read_to_string(&srv.db)
            .unwrap()
            .contains("vpcnet: test comment"),
        "comment is in the log"
    );

    let mut t = Txn::nb();
    t.insert_row(&LogicalSwitch {
        name: s("y"),
        ..Default::default()
    });
    t.abort();
    assert_eq!(
        c.transact(t).await.unwrap_err().ovsdb_error(),
        Some("aborted")
    );
    assert_eq!(select_all::<LogicalSwitch>(&c).await.len(), 1);
}

/// One row of every modelled table, non-root rows attached to their parents,
/// written in one transaction and read back field by field.
#[tokio::test]
async fn every_modelled_table_round_trips() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let e = ids(&[("vpcnet.io/owner", "Vpc//v1")]);
    let mut t = Txn::nb();
    let lsp_in = LogicalSwitchPort {
        name: s("lsp1"),
        r#type: s("router"),
        addresses: BTreeSet::from([s("router")]),
        options: ids(&[("router-port", "lrp1")]),
        tag_request: Some(7),
        enabled: Some(true),
        external_ids: e.clone(),
        ..Default::default()
    };
    let lsp = t.insert_row(&lsp_in);
    let acl_in = Acl {
        priority: 1001,
        direction: acl::Direction::ToLport,
        r#match: s("ip4.src == 10.0.0.0/24"),
        action: acl::Action::AllowRelated,
        name: Some(s("allow-vpc")),
        log: true,
        severity: Some(acl::Severity::Info),
        external_ids: e.clone(),
        ..Default::default()
    };
    let acl_u = t.insert_row(&acl_in);
    let hc_in = LoadBalancerHealthCheck {
        vip: s("10.96.0.10:80"),
        options: ids(&[("interval", "5")]),
        external_ids: e.clone(),
        ..Default::default()
    };
    let hc = t.insert_row(&hc_in);
    let lb_in = LoadBalancer {
        name: s("lb1"),
        vips: ids(&[("10.96.0.10:80", "10.0.0.2:8080,10.0.0.3:8080")]),
        protocol: Some(load_balancer::Protocol::Tcp),
        health_check: BTreeSet::from([hc.clone()]),
        selection_fields: BTreeSet::from([load_balancer::SelectionFields::IpSrc]),
        external_ids: e.clone(),
        ..Default::default()
    };
    let lb = t.insert_row(&lb_in);
    let dns_in = Dns {
        records: ids(&[("svc.ns", "10.96.0.10")]),
        external_ids: e.clone(),
        ..Default::default()
    };
    let dns = t.insert_row(&dns_in);
    let ls_in = LogicalSwitch {
        name: s("ls1"),
        ports: BTreeSet::from([lsp.clone()]),
        acls: BTreeSet::from([acl_u.clone()]),
        load_balancer: BTreeSet::from([lb.clone()]),
        dns_records: BTreeSet::from([dns.clone()]),
        other_config: ids(&[("subnet", "10.0.0.0/24")]),
        external_ids: e.clone(),
        ..Default::default()
    };
    let ls = t.insert_row(&ls_in);
    let lrp_in = LogicalRouterPort {
        name: s("lrp1"),
        mac: s("00:00:00:00:ff:01"),
        networks: BTreeSet::from([s("10.0.0.1/24")]),
        external_ids: e.clone(),
        ..Default::default()
    };
    let lrp = t.insert_row(&lrp_in);
    let route_in = LogicalRouterStaticRoute {
        ip_prefix: s("0.0.0.0/0"),
        nexthop: s("10.0.0.254"),
        policy: Some(logical_router_static_route::Policy::DstIp),
        external_ids: e.clone(),
        ..Default::default()
    };
    let route = t.insert_row(&route_in);
    let pol_in = LogicalRouterPolicy {
        priority: 31000,
        r#match: s("ip4.dst == 10.0.0.0/24"),
        action: logical_router_policy::Action::Allow,
        external_ids: e.clone(),
        ..Default::default()
    };
    let pol = t.insert_row(&pol_in);
    let nat_in = Nat {
        r#type: nat::Type::Snat,
        external_ip: s("172.16.0.10"),
        logical_ip: s("10.0.0.0/24"),
        external_ids: e.clone(),
        ..Default::default()
    };
    let natu = t.insert_row(&nat_in);
    let lr_in = LogicalRouter {
        name: s("lr1"),
        ports: BTreeSet::from([lrp.clone()]),
        static_routes: BTreeSet::from([route.clone()]),
        policies: BTreeSet::from([pol.clone()]),
        nat: BTreeSet::from([natu.clone()]),
        enabled: Some(true),
        external_ids: e.clone(),
        ..Default::default()
    };
    let lr = t.insert_row(&lr_in);
    let pg_in = PortGroup {
        name: s("pg1"),
        ports: BTreeSet::from([lsp.clone()]),
        external_ids: e.clone(),
        ..Default::default()
    };
    let pg = t.insert_row(&pg_in);
    let as_in = AddressSet {
        name: s("as1"),
        addresses: BTreeSet::from([s("10.0.0.2"), s("10.0.0.3")]),
        external_ids: e.clone(),
        ..Default::default()
    };
    let asu = t.insert_row(&as_in);
    let g_in = NbGlobal {
        name: s("global"),
        options: ids(&[("mac_prefix", "0a:00:00")]),
        external_ids: e.clone(),
        ..Default::default()
    };
    let g = t.insert_row(&g_in);
    let res = c.transact(t).await.unwrap();
    let real = |u: &Uuid| res.uuid(u).unwrap();
    let reals = |set: &BTreeSet<Uuid>| {
        set.iter()
            .map(|u| res.uuid(u).unwrap())
            .collect::<BTreeSet<_>>()
    };

    macro_rules! check {
        ($ty:ty, $input:expr, $named:expr, $($refcol:ident),*) => {{
            let mut want: $ty = $input.clone();
            want.uuid = real(&$named);
            $( want.$refcol = reals(&want.$refcol); )*
            let got: Vec<$ty> = select_all(&c).await;
            assert_eq!(got, vec![want], "{}", <$ty as Table>::TABLE);
        }};
    }
    check!(LogicalSwitchPort, lsp_in, lsp,);
    check!(Acl, acl_in, acl_u,);
    check!(LoadBalancerHealthCheck, hc_in, hc,);
    check!(LoadBalancer, lb_in, lb, health_check);
    check!(Dns, dns_in, dns,);
    check!(
        LogicalSwitch,
        ls_in,
        ls,
        ports,
        acls,
        load_balancer,
        dns_records
    );
    check!(LogicalRouterPort, lrp_in, lrp,);
    check!(LogicalRouterStaticRoute, route_in, route,);
    check!(LogicalRouterPolicy, pol_in, pol,);
    check!(Nat, nat_in, natu,);
    check!(
        LogicalRouter,
        lr_in,
        lr,
        ports,
        static_routes,
        policies,
        nat
    );
    check!(PortGroup, pg_in, pg, ports);
    check!(AddressSet, as_in, asu,);
    check!(NbGlobal, g_in, g,);
    assert_eq!(nb::TABLES.len(), 30);
}

/// A transaction blocked in `wait` whose caller gives up is cancelled on the
/// server: it is not applied when the condition later becomes true.
#[tokio::test]
async fn abandoned_blocked_transaction_is_cancelled() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let mut t = Txn::nb();
    t.wait(
        logical_switch::TABLE,
        &[Cond::eq(logical_switch::NAME, "gate")],
        &[logical_switch::NAME],
        WaitUntil::NotEqual,
        vec![],
        Some(30_000),
    );
    t.insert_row(&AddressSet {
        name: s("too-late"),
        ..Default::default()
    });
    let r = tokio::time::timeout(Duration::from_millis(200), c.transact(t)).await;
    assert!(r.is_err(), "the wait blocks");
    // Open the gate; a cancelled transaction must not run now.
    let mut t = Txn::nb();
    t.insert_row(&LogicalSwitch {
        name: s("gate"),
        ..Default::default()
    });
    c.transact(t).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        select_all::<AddressSet>(&c).await.is_empty(),
        "cancelled transaction was applied"
    );

    // Control: the same transaction not abandoned does complete.
    let mut t = Txn::nb();
    t.wait(
        logical_switch::TABLE,
        &[Cond::eq(logical_switch::NAME, "gate2")],
        &[logical_switch::NAME],
        WaitUntil::NotEqual,
        vec![],
        Some(30_000),
    );
    t.insert_row(&AddressSet {
        name: s("in-time"),
        ..Default::default()
    });
    let c2 = c.clone();
    let h = tokio::spawn(async move { c2.transact(t).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut t = Txn::nb();
    t.insert_row(&LogicalSwitch {
        name: s("gate2"),
        ..Default::default()
    });
    c.transact(t).await.unwrap();
    h.await.unwrap().unwrap();
    assert_eq!(select_all::<AddressSet>(&c).await.len(), 1);
}

/// The observer hears of every transaction of the client and its clones:
/// committed, failed (an operation's error) and cancelled (future dropped),
/// each with how long it took.
#[tokio::test]
async fn the_transaction_observer_hears_every_outcome() {
    use std::sync::{Arc, Mutex};
    let srv = Server::start();
    let c = common::client(&srv).await;
    let heard: Arc<Mutex<Vec<(Duration, ovn::TransactOutcome)>>> = Arc::default();
    let h = heard.clone();
    c.observe_transactions(Arc::new(move |took, outcome| {
        h.lock().unwrap().push((took, outcome))
    }));
    let mut t = Txn::nb();
    t.insert_row(&AddressSet {
        name: s("a1"),
        ..Default::default()
    });
    c.clone().transact(t).await.unwrap();
    // A second address set named a1: the name index forbids it.
    let mut t = Txn::nb();
    t.insert_row(&AddressSet {
        name: s("a1"),
        ..Default::default()
    });
    c.transact(t).await.unwrap_err();
    // Blocked in a 30 s wait, given up after 150 ms.
    let mut t = Txn::nb();
    t.wait(
        logical_switch::TABLE,
        &[Cond::eq(logical_switch::NAME, "gate")],
        &[logical_switch::NAME],
        WaitUntil::NotEqual,
        vec![],
        Some(30_000),
    );
    let r = tokio::time::timeout(Duration::from_millis(150), c.transact(t)).await;
    assert!(r.is_err(), "the wait blocks");
    let heard = heard.lock().unwrap().clone();
    let outcomes: Vec<_> = heard.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        outcomes,
        [
            ovn::TransactOutcome::Committed,
            ovn::TransactOutcome::Failed,
            ovn::TransactOutcome::Cancelled
        ]
    );
    assert!(
        heard[2].0 >= Duration::from_millis(150),
        "the cancelled one took as long as it was waited for: {heard:?}"
    );
}
