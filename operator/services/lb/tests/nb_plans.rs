//! The lb service's plans against a real ovsdb-server with OVN's NB schema:
//! a VPC's group is created with its members and referred to by a switch
//! and the router; a new Service is one member; a moved Service changes
//! groups; a plan from a stale cache is refused by its guard; a removed
//! group is detached first.

#[path = "../../../../ovn/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ovn::nb::LoadBalancer;
use ovn::owner::KEY_KEY;
use ovn::{Owner, Table, Txn, Uuid};
use vpcnet_lb::plan::{self, Planned};
use vpcnet_lb::view::LbView;

const SETTLE: Duration = Duration::from_secs(5);

fn lb(vips: &[(&str, &str)]) -> LoadBalancer {
    LoadBalancer {
        name: "svc".into(),
        vips: vips
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        external_ids: BTreeMap::from([(KEY_KEY.to_string(), "tcp".to_string())]),
        ..Default::default()
    }
}

/// Sends `p` and waits until `view` shows what it inserted and deleted.
async fn send(nb: &ovn::Client, view: &LbView, table: &str, p: Planned) -> ovn::Result<()> {
    let txn: Txn = p.txn.expect("the plan writes something");
    let res = nb.transact(txn).await?;
    let inserted: Vec<Uuid> = p.inserted.iter().filter_map(|u| res.uuid(u)).collect();
    view.settle(table, &inserted, &p.deleted, SETTLE).await
}

fn membership(view: &LbView) -> BTreeMap<Uuid, BTreeSet<Uuid>> {
    view.groups()
        .into_iter()
        .map(|g| (g.uuid, g.load_balancer))
        .collect()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < SETTLE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn groups_members_and_references_converge_in_single_transactions() {
    let s = common::Server::start_with(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../ovn/schema/ovn-nb.ovsschema"
        ),
        false,
    );
    s.nbctl(&["ls-add", "vpcnet-a-net1"]);
    s.nbctl(&["lr-add", "vpcnet-a"]);
    s.nbctl(&["ls-add", "vpcnet-b-net1"]);
    s.nbctl(&["lr-add", "vpcnet-b"]);
    let nb = common::client(&s).await;
    let view = LbView::start(&nb).await.unwrap();
    until("the switches in the view", || {
        view.switch("vpcnet-b-net1").is_some()
    })
    .await;

    // VPC a's group, referred to by its switch and router.
    let holders_a = vec![
        view.switch("vpcnet-a-net1").unwrap(),
        view.router("vpcnet-a").unwrap(),
    ];
    let p = plan::vpc_group("vpcnet-lbg-a", None, &BTreeSet::new(), &holders_a);
    send(&nb, &view, "Load_Balancer_Group", p).await.unwrap();
    let ga = view.group("vpcnet-lbg-a").expect("group a");
    assert!(
        view.switch("vpcnet-a-net1")
            .unwrap()
            .groups
            .contains(&ga.uuid)
    );
    assert!(view.router("vpcnet-a").unwrap().groups.contains(&ga.uuid));
    // Converged: planning again writes nothing.
    let holders_a = vec![
        view.switch("vpcnet-a-net1").unwrap(),
        view.router("vpcnet-a").unwrap(),
    ];
    assert!(
        plan::vpc_group("vpcnet-lbg-a", Some(&ga), &BTreeSet::new(), &holders_a)
            .txn
            .is_none()
    );
    let holders_b = vec![
        view.switch("vpcnet-b-net1").unwrap(),
        view.router("vpcnet-b").unwrap(),
    ];
    let p = plan::vpc_group("vpcnet-lbg-b", None, &BTreeSet::new(), &holders_b);
    send(&nb, &view, "Load_Balancer_Group", p).await.unwrap();
    let gb = view.group("vpcnet-lbg-b").expect("group b");

    // A new Service: one transaction inserts its row as a member of a's group.
    let owner = Owner::new("Service", "t", "web").with_vpc("a");
    let p = plan::owner_rows(
        &owner,
        vec![lb(&[("10.96.0.5:80", "10.0.1.5:8080")])],
        &[],
        Some(&ga.uuid),
        &membership(&view),
    );
    send(&nb, &view, LoadBalancer::TABLE, p).await.unwrap();
    let rows = view.owned(&owner.id());
    assert_eq!(rows.len(), 1);
    let row = rows[0].uuid.clone();
    until("the row in group a", || {
        view.group("vpcnet-lbg-a")
            .unwrap()
            .load_balancer
            .contains(&row)
    })
    .await;
    assert_eq!(
        view.of_vpc("a", &["Service"]),
        BTreeSet::from([row.clone()])
    );

    // A plan from a stale cache (it has not seen the row) fails its guard.
    let stale = plan::owner_rows(
        &owner,
        vec![lb(&[("10.96.0.5:80", "")])],
        &[],
        Some(&ga.uuid),
        &membership(&view),
    );
    let guards = stale.guards;
    match nb.transact(stale.txn.unwrap()).await {
        Err(ovn::Error::Transaction {
            op_index: Some(i), ..
        }) => assert!(i < guards, "failed at op {i}"),
        other => panic!("a stale plan must fail its guard, got {other:?}"),
    }
    assert_eq!(view.owned(&owner.id()).len(), 1, "no duplicate row");

    // The Service moves to VPC b: the same row leaves a's group for b's.
    let moved = Owner::new("Service", "t", "web").with_vpc("b");
    let p = plan::owner_rows(
        &moved,
        vec![lb(&[("10.96.0.5:80", "10.0.1.5:8080")])],
        &view.owned(&owner.id()),
        Some(&gb.uuid),
        &membership(&view),
    );
    send(&nb, &view, LoadBalancer::TABLE, p).await.unwrap();
    until("the row in group b only", || {
        view.group("vpcnet-lbg-b")
            .unwrap()
            .load_balancer
            .contains(&row)
            && !view
                .group("vpcnet-lbg-a")
                .unwrap()
                .load_balancer
                .contains(&row)
    })
    .await;
    assert_eq!(
        view.owned(&owner.id())[0].uuid,
        row,
        "updated in place, not replaced"
    );

    // Removing a's group detaches it from its switch and router first.
    let referrers = view.referrers(&ga.uuid);
    assert_eq!(referrers.len(), 2);
    send(
        &nb,
        &view,
        "Load_Balancer_Group",
        plan::remove_group(&ga, &referrers),
    )
    .await
    .unwrap();
    assert!(view.group("vpcnet-lbg-a").is_none());
    until("a's switch without the group", || {
        view.switch("vpcnet-a-net1").unwrap().groups.is_empty()
    })
    .await;

    // The Service gone: its row is deleted.
    let p = plan::owner_rows(
        &moved,
        Vec::new(),
        &view.owned(&moved.id()),
        None,
        &membership(&view),
    );
    send(&nb, &view, LoadBalancer::TABLE, p).await.unwrap();
    assert!(view.owned(&moved.id()).is_empty());
    assert!(
        s.nbctl(&["--bare", "--columns=name", "list", "Load_Balancer"])
            .trim()
            .is_empty()
    );
}
