mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Server;
use ovn::nb::*;
use ovn::owner::{self, Desired, EnsureReport, Owner};
use ovn::{Table, Txn, Uuid};

fn s(x: &str) -> String {
    x.to_string()
}

async fn all<T: Table>(c: &ovn::Client) -> Vec<T> {
    let mut t = Txn::nb();
    let i = t.select_all::<T>();
    c.transact(t).await.unwrap().rows::<T>(i).unwrap()
}

/// A VPC: router + switch joined by a port pair, a pod port, an ACL, a NAT rule.
fn vpc(pod_addr: &str, with_nat: bool, with_route: bool) -> Vec<Desired> {
    let mut d = vec![
        Desired::new(&LogicalRouter {
            name: s("vpc1"),
            ..Default::default()
        })
        .named("lr"),
        Desired::new(&LogicalRouterPort {
            name: s("vpc1-sub1"),
            mac: s("00:00:00:00:01:01"),
            networks: BTreeSet::from([s("10.0.0.1/24")]),
            ..Default::default()
        })
        .child_of(
            logical_router::TABLE,
            logical_router::PORTS,
            Uuid::named("lr"),
        ),
        Desired::new(&LogicalSwitch {
            name: s("sub1"),
            ..Default::default()
        })
        .named("ls"),
        Desired::new(&LogicalSwitchPort {
            name: s("sub1-vpc1"),
            r#type: s("router"),
            addresses: BTreeSet::from([s("router")]),
            options: BTreeMap::from([(s("router-port"), s("vpc1-sub1"))]),
            ..Default::default()
        })
        .child_of(
            logical_switch::TABLE,
            logical_switch::PORTS,
            Uuid::named("ls"),
        ),
        Desired::new(&LogicalSwitchPort {
            name: s("pod1.ns1"),
            addresses: BTreeSet::from([s(pod_addr)]),
            ..Default::default()
        })
        .child_of(
            logical_switch::TABLE,
            logical_switch::PORTS,
            Uuid::named("ls"),
        ),
        Desired::new(&Acl {
            priority: 1000,
            direction: acl::Direction::ToLport,
            r#match: s("outport == \"pod1.ns1\""),
            action: acl::Action::AllowRelated,
            ..Default::default()
        })
        .child_of(
            logical_switch::TABLE,
            logical_switch::ACLS,
            Uuid::named("ls"),
        ),
    ];
    if with_nat {
        d.push(
            Desired::new(&Nat {
                r#type: nat::Type::Snat,
                external_ip: s("172.16.0.5"),
                logical_ip: s("10.0.0.0/24"),
                ..Default::default()
            })
            .child_of(
                logical_router::TABLE,
                logical_router::NAT,
                Uuid::named("lr"),
            ),
        );
    }
    if with_route {
        d.push(
            Desired::new(&LogicalRouterStaticRoute {
                ip_prefix: s("0.0.0.0/0"),
                nexthop: s("10.0.0.254"),
                ..Default::default()
            })
            .child_of(
                logical_router::TABLE,
                logical_router::STATIC_ROUTES,
                Uuid::named("lr"),
            ),
        );
    }
    d
}

#[tokio::test]
async fn ensure_creates_updates_deletes_and_is_idempotent() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let owner = Owner::cluster("Vpc", "vpc1").with_vpc("vpc1");

    let r = owner::ensure_owned(&c, &owner, vpc("00:00:00:00:00:02 10.0.0.2", true, false))
        .await
        .unwrap();
    assert_eq!((r.created, r.updated, r.deleted), (7, 0, 0));
    let lr: Vec<LogicalRouter> = all(&c).await;
    assert_eq!(lr.len(), 1);
    assert_eq!(r.uuids["lr"], lr[0].uuid);
    assert_eq!(
        (lr[0].ports.len(), lr[0].nat.len()),
        (1, 1),
        "children are linked to their parent"
    );
    assert_eq!(lr[0].external_ids["vpcnet.io/owner"], "Vpc//vpc1");
    assert_eq!(lr[0].external_ids["vpcnet.io/vpc"], "vpc1");
    let ls: Vec<LogicalSwitch> = all(&c).await;
    assert_eq!((ls[0].ports.len(), ls[0].acls.len()), (2, 1));

    // Same desired state: nothing to do, no transaction.
    let r = owner::ensure_owned(&c, &owner, vpc("00:00:00:00:00:02 10.0.0.2", true, false))
        .await
        .unwrap();
    assert_eq!((r.created, r.updated, r.deleted), (0, 0, 0));
    assert_eq!(r.uuids["ls"], ls[0].uuid);

    // Changed port address, NAT gone, route added.
    let r = owner::ensure_owned(&c, &owner, vpc("00:00:00:00:00:03 10.0.0.3", false, true))
        .await
        .unwrap();
    assert_eq!((r.created, r.updated, r.deleted), (1, 1, 1));
    assert!(all::<Nat>(&c).await.is_empty());
    let lr: Vec<LogicalRouter> = all(&c).await;
    assert_eq!((lr[0].nat.len(), lr[0].static_routes.len()), (0, 1));
    let ports: Vec<LogicalSwitchPort> = all(&c).await;
    let pod = ports.iter().find(|p| p.name == "pod1.ns1").unwrap();
    assert_eq!(
        pod.addresses,
        BTreeSet::from([s("00:00:00:00:00:03 10.0.0.3")])
    );
    assert_eq!(
        all::<LogicalSwitch>(&c).await[0].ports.len(),
        2,
        "updating the switch kept its ports"
    );

    // Someone else's rows are not touched by GC.
    let other = Owner::new("SecurityGroup", "ns1", "sg");
    owner::ensure_owned(
        &c,
        &other,
        vec![Desired::new(&PortGroup {
            name: s("sg1"),
            ..Default::default()
        })],
    )
    .await
    .unwrap();
    let listed = owner::list_owned(&c, &owner).await.unwrap();
    let counts: BTreeMap<&str, usize> = listed
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(t, r)| (t.as_str(), r.len()))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("ACL", 1),
            ("Logical_Router", 1),
            ("Logical_Router_Port", 1),
            ("Logical_Router_Static_Route", 1),
            ("Logical_Switch", 1),
            ("Logical_Switch_Port", 2)
        ])
    );

    assert_eq!(owner::delete_owned(&c, &owner).await.unwrap(), 7);
    assert!(all::<LogicalRouter>(&c).await.is_empty());
    assert!(all::<LogicalSwitchPort>(&c).await.is_empty());
    assert!(all::<Acl>(&c).await.is_empty());
    assert_eq!(all::<PortGroup>(&c).await.len(), 1);
    assert_eq!(owner::delete_owned(&c, &owner).await.unwrap(), 0);
}

#[tokio::test]
async fn ensure_detaches_owned_children_from_foreign_parents() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    // A switch created by someone else (the platform), not owned by us.
    srv.nbctl(&["ls-add", "shared"]);
    let shared = all::<LogicalSwitch>(&c).await.remove(0).uuid;
    let owner = Owner::new("Pod", "ns1", "pod1");
    let port = |mac: &str| {
        Desired::new(&LogicalSwitchPort {
            name: s("pod1.ns1"),
            addresses: BTreeSet::from([s(mac)]),
            ..Default::default()
        })
        .child_of(logical_switch::TABLE, logical_switch::PORTS, shared.clone())
    };
    let r = owner::ensure_owned(&c, &owner, vec![port("00:00:00:00:00:09")])
        .await
        .unwrap();
    assert_eq!(
        r,
        EnsureReport {
            created: 1,
            ..Default::default()
        }
    );
    assert_eq!(all::<LogicalSwitch>(&c).await[0].ports.len(), 1);
    assert!(srv.nbctl(&["lsp-list", "shared"]).contains("pod1.ns1"));

    assert_eq!(owner::delete_owned(&c, &owner).await.unwrap(), 1);
    let sw = all::<LogicalSwitch>(&c).await;
    assert_eq!(sw.len(), 1, "the foreign parent stays");
    assert!(sw[0].ports.is_empty());
}

#[tokio::test]
async fn ensure_refuses_tables_without_external_ids() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let e = owner::ensure_owned(
        &c,
        &Owner::cluster("Vpc", "x"),
        vec![Desired::new(&LoadBalancerGroup {
            name: s("g"),
            ..Default::default()
        })],
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no external_ids"), "{e}");
}

/// Columns ovn-northd writes (here: `up`, `dynamic_addresses`) are not
/// reverted by the next ensure, while columns we own are.
#[tokio::test]
async fn ensure_leaves_server_written_columns_alone() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let owner = Owner::new("Pod", "ns1", "p");
    let want = || {
        vec![
            Desired::new(&LogicalSwitch {
                name: s("ls"),
                ..Default::default()
            })
            .named("ls"),
            Desired::new(&LogicalSwitchPort {
                name: s("p.ns1"),
                addresses: BTreeSet::from([s("dynamic")]),
                ..Default::default()
            })
            .child_of(
                logical_switch::TABLE,
                logical_switch::PORTS,
                Uuid::named("ls"),
            ),
        ]
    };
    owner::ensure_owned(&c, &owner, want()).await.unwrap();
    srv.nbctl(&[
        "set",
        "Logical_Switch_Port",
        "p.ns1",
        "up=true",
        "dynamic_addresses=\"0a:00:00:00:00:05 10.0.0.5\"",
        "addresses=foo",
    ]);
    let r = owner::ensure_owned(&c, &owner, want()).await.unwrap();
    assert_eq!(r.updated, 1, "addresses drifted and is corrected");
    let p = all::<LogicalSwitchPort>(&c).await.remove(0);
    assert_eq!(p.addresses, BTreeSet::from([s("dynamic")]));
    assert_eq!(p.up, Some(true));
    assert_eq!(
        p.dynamic_addresses.as_deref(),
        Some("0a:00:00:00:00:05 10.0.0.5")
    );
}
