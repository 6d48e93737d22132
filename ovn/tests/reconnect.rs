mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Server;
use ovn::nb::{self, *};
use ovn::ops::WaitUntil;
use ovn::owner::{self, Desired, Owner};
use ovn::{Client, ClientOptions, Cond, Error, MonitorRequest, Table, Txn, Uuid};

fn desired(n: usize) -> Vec<Desired> {
    let mut d = vec![
        Desired::new(&LogicalSwitch {
            name: "sw".into(),
            ..Default::default()
        })
        .named("sw"),
    ];
    for i in 0..n {
        d.push(
            Desired::new(&LogicalSwitchPort {
                name: format!("p{i}"),
                ..Default::default()
            })
            .child_of(
                logical_switch::TABLE,
                logical_switch::PORTS,
                Uuid::named("sw"),
            ),
        );
    }
    d
}

async fn names<T: Table>(c: &Client, name: impl Fn(&T) -> String) -> BTreeMap<String, usize> {
    let mut t = Txn::nb();
    let i = t.select_all::<T>();
    let mut m = BTreeMap::new();
    for r in c.transact(t).await.unwrap().rows::<T>(i).unwrap() {
        *m.entry(name(&r)).or_insert(0) += 1;
    }
    m
}

async fn kill_restart_mid_stream(clustered: bool) {
    let mut srv = if clustered {
        Server::start_clustered()
    } else {
        Server::start()
    };
    let opts = ClientOptions {
        request_timeout: Duration::from_secs(10),
        inactivity_probe: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let c = Client::connect_with(&srv.target(), opts).await.unwrap();
    let owner = Owner::cluster("Vpc", "v");
    owner::ensure_owned(&c, &owner, desired(50)).await.unwrap();
    let m = c
        .monitor(
            nb::SCHEMA_NAME,
            vec![
                MonitorRequest::of::<LogicalSwitch>(),
                MonitorRequest::of::<LogicalSwitchPort>(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(m.len(logical_switch_port::TABLE), 50);
    assert_eq!(m.full_loads(), 1);

    // A transaction that blocks in the server (a wait that cannot hold yet).
    let mut t = Txn::nb();
    t.wait(
        logical_switch::TABLE,
        &[Cond::eq(logical_switch::NAME, "never")],
        &[logical_switch::NAME],
        WaitUntil::NotEqual,
        vec![],
        Some(60_000),
    );
    t.insert_row(&LogicalSwitch {
        name: "in-flight".into(),
        ..Default::default()
    });
    let c2 = c.clone();
    let blocked = tokio::spawn(async move { c2.transact(t).await });

    // And a stream of small transactions running through the outage.
    let c3 = c.clone();
    let stream = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for i in 0..60 {
            let mut t = Txn::nb();
            t.insert_row(&AddressSet {
                name: format!("s{i}"),
                ..Default::default()
            });
            outcomes.push((format!("s{i}"), c3.transact(t).await.is_ok()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        outcomes
    });
    tokio::time::sleep(Duration::from_millis(150)).await;

    srv.kill();
    let r = tokio::time::timeout(Duration::from_secs(3), blocked)
        .await
        .expect("in-flight transaction must not hang")
        .unwrap();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.restart();

    let outcomes = stream.await.unwrap();
    assert!(outcomes.iter().any(|(_, ok)| !ok) || c.connections() == 2);

    // Changes made by someone else after the restart reach the cache.
    srv.nbctl(&["ls-add", "after-restart"]);
    m.wait_until(Duration::from_secs(10), |t| {
        t[logical_switch::TABLE]
            .values()
            .any(|r| r["name"] == "after-restart")
    })
    .await
    .unwrap();
    assert_eq!(c.connections(), 2, "exactly one reconnection");
    if clustered {
        assert_eq!(
            (m.full_loads(), m.resumes()),
            (1, 1),
            "a clustered server resumes the monitor from its last txn id"
        );
    } else {
        assert_eq!(
            (m.full_loads(), m.resumes()),
            (2, 0),
            "a standalone server has no history: full reload"
        );
    }
    // Cache equals the database.
    let mut t = Txn::nb();
    let i = t.select_all::<LogicalSwitchPort>();
    let j = t.select_all::<LogicalSwitch>();
    let r = c.transact(t).await.unwrap();
    let mut fresh: Vec<LogicalSwitchPort> = r.rows(i).unwrap();
    let mut cached: Vec<LogicalSwitchPort> = m.get().unwrap();
    fresh.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    cached.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    assert_eq!(cached, fresh);
    assert_eq!(
        m.len(logical_switch::TABLE),
        r.rows::<LogicalSwitch>(j).unwrap().len()
    );

    // Nothing was applied twice, the blocked transaction not at all.
    let sw = names::<LogicalSwitch>(&c, |r| r.name.clone()).await;
    assert_eq!(sw.get("in-flight"), None);
    let sets = names::<AddressSet>(&c, |r| r.name.clone()).await;
    for (name, ok) in &outcomes {
        let n = sets.get(name).copied().unwrap_or(0);
        assert!(n <= 1, "{name} applied {n} times");
        if *ok {
            assert_eq!(n, 1, "{name} was acknowledged but is missing");
        }
    }

    // A subsequent ensure creates no duplicates.
    let r = owner::ensure_owned(&c, &owner, desired(50)).await.unwrap();
    assert_eq!((r.created, r.updated, r.deleted), (0, 0, 0));
    let ports = names::<LogicalSwitchPort>(&c, |r| r.name.clone()).await;
    assert_eq!(ports.len(), 50);
    assert!(ports.values().all(|n| *n == 1));
    assert_eq!(sw.get("sw"), Some(&1));
}

#[tokio::test]
async fn kill_and_restart_clustered_server_resumes_monitor() {
    kill_restart_mid_stream(true).await;
}

#[tokio::test]
async fn kill_and_restart_standalone_server_reloads_monitor() {
    kill_restart_mid_stream(false).await;
}

#[tokio::test]
async fn requests_while_down_time_out_instead_of_hanging() {
    let mut srv = Server::start();
    let opts = ClientOptions {
        request_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let c = Client::connect_with(&srv.target(), opts).await.unwrap();
    srv.kill();
    let t0 = std::time::Instant::now();
    let e = c.list_dbs().await.unwrap_err();
    assert!(
        matches!(e, Error::Timeout { .. } | Error::Disconnected),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    srv.restart();
    // The client recovers by itself.
    let mut ok = false;
    for _ in 0..50 {
        if c.list_dbs().await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "client reconnected after restart");
}

#[tokio::test]
async fn schema_is_rechecked_after_reconnection() {
    let mut srv = Server::start();
    let opts = ClientOptions {
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let c = nb::connect_with(&srv.target(), opts).await.unwrap();
    c.echo().await.unwrap();
    // The server comes back serving another database.
    srv.restart_with_schema("/usr/share/openvswitch/vswitch.ovsschema");
    // A request already on the old connection may fail with Disconnected;
    // after that the refusal is reported as such.
    let mut e = c.list_dbs().await.unwrap_err();
    if matches!(e, Error::Disconnected) {
        e = c.list_dbs().await.unwrap_err();
    }
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e}");
    // A fresh connection is refused at once.
    let e = nb::connect(&srv.target()).await.err().unwrap();
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e}");
}

#[tokio::test]
async fn hung_server_is_detected_by_the_inactivity_probe() {
    let srv = Server::start();
    let opts = ClientOptions {
        inactivity_probe: Some(Duration::from_millis(200)),
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let c = Client::connect_with(&srv.target(), opts).await.unwrap();
    c.echo().await.unwrap();
    // Idle but healthy: probes are answered, the connection stays.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!((c.connections(), c.is_connected()), (1, true));
    srv.signal("STOP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let down = !c.is_connected();
    let connections = c.connections();
    srv.signal("CONT");
    assert!(down, "a server that stops answering echo is dropped");
    assert_eq!(
        connections, 1,
        "a stopped server does not count as reconnected"
    );
    c.echo().await.unwrap();
    assert_eq!(c.connections(), 2);
}
