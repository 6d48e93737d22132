//! Interoperability with the real `ovn-nbctl`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Server;
use ovn::nb::{self, *};
use ovn::owner::{self, Desired, Owner};
use ovn::{MonitorRequest, Txn, Uuid};

#[tokio::test]
async fn nbctl_sees_what_we_write() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let owner = Owner::cluster("Vpc", "blue");
    owner::ensure_owned(
        &c,
        &owner,
        vec![
            Desired::new(&LogicalRouter {
                name: "blue".into(),
                ..Default::default()
            })
            .named("lr"),
            Desired::new(&LogicalRouterPort {
                name: "blue-s1".into(),
                mac: "0a:00:00:00:00:01".into(),
                networks: BTreeSet::from(["10.1.0.1/24".into()]),
                ..Default::default()
            })
            .child_of(
                logical_router::TABLE,
                logical_router::PORTS,
                Uuid::named("lr"),
            ),
            Desired::new(&Nat {
                r#type: nat::Type::Snat,
                external_ip: "172.16.0.9".into(),
                logical_ip: "10.1.0.0/24".into(),
                ..Default::default()
            })
            .child_of(
                logical_router::TABLE,
                logical_router::NAT,
                Uuid::named("lr"),
            ),
            Desired::new(&LogicalSwitch {
                name: "s1".into(),
                ..Default::default()
            })
            .named("ls"),
            Desired::new(&LogicalSwitchPort {
                name: "pod-a".into(),
                addresses: BTreeSet::from(["0a:00:00:00:01:02 10.1.0.2".into()]),
                ..Default::default()
            })
            .child_of(
                logical_switch::TABLE,
                logical_switch::PORTS,
                Uuid::named("ls"),
            ),
        ],
    )
    .await
    .unwrap();
    let show = srv.nbctl(&["show"]);
    for needle in [
        "router",
        "(blue)",
        "blue-s1",
        "10.1.0.1/24",
        "switch",
        "(s1)",
        "pod-a",
        "10.1.0.2",
        "snat",
        "172.16.0.9",
    ] {
        assert!(
            show.contains(needle),
            "ovn-nbctl show lacks {needle:?}:\n{show}"
        );
    }
    assert_eq!(
        srv.nbctl(&[
            "get",
            "Logical_Switch",
            "s1",
            "external_ids:\"vpcnet.io/owner\""
        ])
        .trim(),
        "\"Vpc//blue\""
    );
    assert_eq!(
        srv.nbctl(&["lsp-get-addresses", "pod-a"]).trim(),
        "0a:00:00:00:01:02 10.1.0.2"
    );
}

#[tokio::test]
async fn we_read_what_nbctl_writes() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let m = c
        .monitor(
            nb::SCHEMA_NAME,
            vec![
                MonitorRequest::of::<LogicalSwitch>(),
                MonitorRequest::of::<LogicalSwitchPort>(),
                MonitorRequest::of::<Acl>(),
            ],
        )
        .await
        .unwrap();
    srv.nbctl(&[
        "ls-add",
        "green",
        "--",
        "lsp-add",
        "green",
        "web",
        "--",
        "lsp-set-addresses",
        "web",
        "0a:00:00:00:02:02 10.2.0.2",
        "--",
        "acl-add",
        "green",
        "to-lport",
        "1002",
        "ip4.src==10.2.0.0/24",
        "allow-related",
        "--",
        "set",
        "Logical_Switch",
        "green",
        "other_config:subnet=10.2.0.0/24",
    ]);
    m.wait_until(Duration::from_secs(5), |t| {
        t[acl::TABLE].len() == 1 && t[logical_switch_port::TABLE].len() == 1
    })
    .await
    .unwrap();

    // Through a select...
    let mut t = Txn::nb();
    let i = t.select_all::<LogicalSwitch>();
    let j = t.select_all::<LogicalSwitchPort>();
    let k = t.select_all::<Acl>();
    let r = c.transact(t).await.unwrap();
    let ls: Vec<LogicalSwitch> = r.rows(i).unwrap();
    let lsp: Vec<LogicalSwitchPort> = r.rows(j).unwrap();
    let acls: Vec<Acl> = r.rows(k).unwrap();
    assert_eq!(ls[0].name, "green");
    assert_eq!(
        ls[0].other_config.get("subnet").map(String::as_str),
        Some("10.2.0.0/24")
    );
    assert_eq!(ls[0].ports, BTreeSet::from([lsp[0].uuid.clone()]));
    assert_eq!(ls[0].acls, BTreeSet::from([acls[0].uuid.clone()]));
    assert_eq!(
        lsp[0].addresses,
        BTreeSet::from(["0a:00:00:00:02:02 10.2.0.2".to_string()])
    );
    assert_eq!(
        (acls[0].priority, acls[0].action, acls[0].direction),
        (1002, acl::Action::AllowRelated, acl::Direction::ToLport)
    );
    // ...and through the monitor cache.
    assert_eq!(m.get::<LogicalSwitch>().unwrap(), ls);
    assert_eq!(m.get::<LogicalSwitchPort>().unwrap(), lsp);
    assert_eq!(m.get::<Acl>().unwrap(), acls);
}
