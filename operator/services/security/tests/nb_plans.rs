//! The security service's plans against a real ovsdb-server with OVN's NB
//! schema: a base group and a group created with their ACLs; a pod port
//! joining both in one transaction; one changed rule is one updated row
//! while every unchanged ACL keeps its `_uuid`; plans from a stale cache
//! are refused by their guards (no duplicate ACLs, no shared slot); a
//! deleted port leaves every group by itself; a removed group leaves no
//! row. And every ACL we write compiles in a real ovn-northd into flows.

#[path = "../../../../ovn/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovn::nb::{Acl, PortGroup};
use ovn::{Owner, Txn, Uuid};
use vpcnet_api::SecurityGroupSpec;
use vpcnet_api::contract::external_ids::SG_NAMESPACE;
use vpcnet_api::security_group::{RemoteType, SgPolicy, SgProtocol, SgRule};
use vpcnet_security::build::{self, GroupRows};
use vpcnet_security::plan::{self, Planned, Siblings};
use vpcnet_security::view::SgView;
use vpcnet_security::{BASE_OWNER_KIND, GROUP_OWNER_KIND, layout};

const SETTLE: Duration = Duration::from_secs(5);
const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../ovn/schema/ovn-nb.ovsschema"
);

fn tcp(port: i32, from: &str, priority: i32, policy: SgPolicy) -> SgRule {
    SgRule {
        protocol: SgProtocol::Tcp,
        priority,
        policy,
        remote_type: RemoteType::Address,
        remote_address: Some(from.into()),
        port_range_min: Some(port),
        port_range_max: Some(port),
        ..Default::default()
    }
}

fn from_group(g: &str, port: i32, priority: i32) -> SgRule {
    SgRule {
        remote_type: RemoteType::SecurityGroup,
        remote_address: None,
        remote_security_group: Some(g.into()),
        ..tcp(port, "", priority, SgPolicy::Allow)
    }
}

fn web_spec(second_port: i32) -> SecurityGroupSpec {
    SecurityGroupSpec {
        allow_same_group_traffic: true,
        ingress_rules: vec![
            tcp(80, "0.0.0.0/0", 10, SgPolicy::Allow),
            tcp(22, "0.0.0.0/0", 20, SgPolicy::Drop),
            tcp(second_port, "10.0.0.0/8", 30, SgPolicy::Allow),
        ],
        egress_rules: vec![SgRule {
            protocol: SgProtocol::All,
            priority: 100,
            policy: SgPolicy::Allow,
            remote_type: RemoteType::Address,
            remote_address: Some("0.0.0.0/0".into()),
            ..Default::default()
        }],
    }
}

/// Sends `p` and waits until `view` shows what it inserted and deleted.
async fn send(nb: &ovn::Client, view: &SgView, p: Planned) -> ovn::Result<()> {
    let txn: Txn = p.txn.expect("the plan writes something");
    let res = nb.transact(txn).await?;
    let inserted: Vec<Uuid> = p.inserted.iter().filter_map(|u| res.uuid(u)).collect();
    view.settle(&inserted, &p.deleted, SETTLE).await
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < SETTLE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn plan_group(view: &SgView, owner: &Owner, rows: &GroupRows, ns: &str) -> Planned {
    let siblings = view.groups_of(ns);
    plan::group(
        owner,
        rows.port_group.clone(),
        Some(rows.acls.clone()),
        view.port_group(&rows.port_group.name).as_ref(),
        &view.acls(&owner.id()),
        Some(Siblings {
            key: (SG_NAMESPACE, ns),
            cached: &siblings,
        }),
    )
}

fn by_key(acls: &[Acl]) -> BTreeMap<String, Acl> {
    acls.iter()
        .map(|a| (a.external_ids[ovn::owner::KEY_KEY].clone(), a.clone()))
        .collect()
}

/// A switch with two pod ports, the base group of its subnet and group
/// `t/web` with one of the ports as a member.
async fn setup(s: &common::Server, nb: &ovn::Client) -> (SgView, Uuid, PortGroup, PortGroup) {
    s.nbctl(&["ls-add", "vpcnet-t-net"]);
    for p in ["a.t", "b.t"] {
        s.nbctl(&[
            "lsp-add",
            "vpcnet-t-net",
            p,
            "--",
            "lsp-set-addresses",
            p,
            if p == "a.t" {
                "0a:00:00:00:00:05 10.0.1.5"
            } else {
                "0a:00:00:00:00:06 10.0.1.6"
            },
            "--",
            "set",
            "Logical_Switch_Port",
            p,
            "external_ids:vpcnet.io/subnet=t-net",
        ]);
    }
    let view = SgView::start(nb).await.unwrap();
    until("the ports in the view", || view.port("b.t").is_some()).await;
    let port = view.port("a.t").unwrap();
    assert_eq!(port.subnet.as_deref(), Some("t-net"));

    let base = build::base_rows("t-net", "10.0.1.1".parse().unwrap());
    let base_owner = Owner::cluster(BASE_OWNER_KIND, "t-net");
    let p = plan::group(
        &base_owner,
        base.port_group.clone(),
        Some(base.acls.clone()),
        None,
        &[],
        None,
    );
    send(nb, &view, p).await.unwrap();
    let owner = Owner::new(GROUP_OWNER_KIND, "t", "web");
    let rows = build::group_rows("t", "web", &web_spec(8080), 0).unwrap();
    send(nb, &view, plan_group(&view, &owner, &rows, "t"))
        .await
        .unwrap();
    let web = view.port_group(&rows.port_group.name).expect("web's group");
    let base_pg = view.port_group(&base.port_group.name).expect("base group");
    assert_eq!(view.acls(&owner.id()).len(), rows.acls.len());
    assert_eq!(web.acls.len(), rows.acls.len(), "every ACL on the group");

    // The port joins web and its base group: one transaction.
    let want = BTreeSet::from([web.uuid.clone(), base_pg.uuid.clone()]);
    let candidates = vec![web.clone(), base_pg.clone()];
    send(nb, &view, plan::membership(&port.uuid, &want, &candidates))
        .await
        .unwrap();
    view.settle_membership(
        &port.uuid,
        &[web.uuid.clone(), base_pg.uuid.clone()],
        &want,
        SETTLE,
    )
    .await
    .unwrap();
    let (web, base_pg) = (view_pg(&view, &web.name), view_pg(&view, &base_pg.name));
    (view, port.uuid, web, base_pg)
}

fn view_pg(view: &SgView, name: &str) -> PortGroup {
    view.port_group(name).unwrap()
}

#[tokio::test]
async fn a_changed_rule_is_one_updated_row_and_unchanged_acls_keep_their_uuid() {
    let s = common::Server::start_with(SCHEMA, false);
    let nb = common::client(&s).await;
    let (view, port, web, base) = setup(&s, &nb).await;
    assert!(web.ports.contains(&port) && base.ports.contains(&port));
    let owner = Owner::new(GROUP_OWNER_KIND, "t", "web");
    let before = by_key(&view.acls(&owner.id()));

    // Converged: planning again writes nothing.
    let rows = build::group_rows("t", "web", &web_spec(8080), 0).unwrap();
    assert!(plan_group(&view, &owner, &rows, "t").txn.is_none());

    // One rule's port changes: one update of that one row, in one
    // transaction; every other ACL is the same row as before.
    let rows = build::group_rows("t", "web", &web_spec(9090), 0).unwrap();
    let p = plan_group(&view, &owner, &rows, "t");
    let ops: Vec<String> = p
        .txn
        .as_ref()
        .unwrap()
        .ops()
        .iter()
        .map(|o| o["op"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops, vec!["wait", "update", "comment"]);
    send(&nb, &view, p).await.unwrap();
    until("the new match in the view", || {
        by_key(&view.acls(&owner.id()))["in/30/allow"]
            .r#match
            .contains("9090")
    })
    .await;
    let after = by_key(&view.acls(&owner.id()));
    assert_eq!(before.len(), after.len());
    for (k, a) in &before {
        assert_eq!(after[k].uuid, a.uuid, "{k} kept its row");
        if k != "in/30/allow" {
            assert_eq!(after[k], *a, "{k} unchanged");
        }
    }

    // A plan from the stale cache (before the change) fails its guard once
    // another writer has added a row of the owner.
    let extra = build::group_rows(
        "t",
        "web",
        &SecurityGroupSpec {
            ingress_rules: vec![tcp(443, "0.0.0.0/0", 5, SgPolicy::Allow)],
            ..web_spec(9090)
        },
        0,
    )
    .unwrap();
    let stale_current: Vec<Acl> = view.acls(&owner.id());
    send(&nb, &view, plan_group(&view, &owner, &extra, "t"))
        .await
        .unwrap();
    let other = build::group_rows("t", "web", &web_spec(7070), 0).unwrap();
    let stale = plan::group(
        &owner,
        other.port_group.clone(),
        Some(other.acls.clone()),
        Some(&view_pg(&view, &web.name)),
        &stale_current,
        None,
    );
    let guards = stale.guards;
    match nb.transact(stale.txn.unwrap()).await {
        Err(ovn::Error::Transaction {
            op_index: Some(i), ..
        }) => assert!(i < guards, "failed at op {i}"),
        other => panic!("a stale plan must fail its guard, got {other:?}"),
    }

    // A second new group of the namespace planned beside an unseen first
    // one would take the same slot: its guard refuses it.
    let siblings_before = view.groups_of("t");
    let db = build::group_rows("t", "db", &SecurityGroupSpec::default(), 1).unwrap();
    let db_owner = Owner::new(GROUP_OWNER_KIND, "t", "db");
    send(&nb, &view, plan_group(&view, &db_owner, &db, "t"))
        .await
        .unwrap();
    let cache = build::group_rows("t", "cache", &SecurityGroupSpec::default(), 1).unwrap();
    let racing = plan::group(
        &Owner::new(GROUP_OWNER_KIND, "t", "cache"),
        cache.port_group.clone(),
        Some(cache.acls.clone()),
        None,
        &[],
        Some(Siblings {
            key: (SG_NAMESPACE, "t"),
            cached: &siblings_before,
        }),
    );
    assert!(matches!(
        nb.transact(racing.txn.unwrap()).await,
        Err(ovn::Error::Transaction {
            op_index: Some(1),
            ..
        })
    ));
    assert!(view.port_group(&cache.port_group.name).is_none());

    // A deleted port leaves every group by itself (weak references).
    s.nbctl(&["lsp-del", "a.t"]);
    until("the port out of both groups", || {
        view_pg(&view, &web.name).ports.is_empty() && view_pg(&view, &base.name).ports.is_empty()
    })
    .await;

    // Removing the group deletes its Port_Group and every ACL of it; the
    // base group's rows stay.
    let p = plan::remove(
        &owner,
        Some(&view_pg(&view, &web.name)),
        &view.acls(&owner.id()),
    );
    send(&nb, &view, p).await.unwrap();
    assert!(view.port_group(&web.name).is_none());
    assert!(view.acls(&owner.id()).is_empty());
    let left: usize = s
        .nbctl(&["--bare", "--columns=_uuid", "list", "ACL"])
        .split_whitespace()
        .count();
    assert_eq!(left, 6, "only the base group's ACLs are left");
}

/// An SB database and an ovn-northd over the test's NB, killed by PID.
struct Northd {
    sb: Child,
    northd: Child,
    sb_target: String,
    log: std::path::PathBuf,
}

impl Northd {
    fn start(nb: &common::Server) -> Self {
        let dir = &nb.dir.0;
        let sb_db = dir.join("sb.db");
        common::run(
            Command::new(common::tool("ovsdb-tool"))
                .arg("create")
                .arg(&sb_db)
                .arg("/usr/share/ovn/ovn-sb.ovsschema"),
        );
        let sb_sock = dir.join("sb.sock");
        let sb = Command::new(common::tool("ovsdb-server"))
            .arg(&sb_db)
            .arg(format!("--remote=punix:{}", sb_sock.display()))
            .arg(format!("--unixctl={}", dir.join("sb.ctl").display()))
            .arg(format!("--log-file={}", dir.join("sb.log").display()))
            .arg("--no-chdir")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the SB ovsdb-server");
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sb_sock).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "SB did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = dir.join("northd.log");
        let northd = Command::new(common::tool("ovn-northd"))
            .arg(format!("--ovnnb-db={}", nb.target()))
            .arg(format!("--ovnsb-db=unix:{}", sb_sock.display()))
            .arg(format!("--unixctl={}", dir.join("northd.ctl").display()))
            .arg(format!("--log-file={}", log.display()))
            .arg("--no-chdir")
            .env("OVN_RUNDIR", dir)
            .env("OVS_RUNDIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ovn-northd");
        Self {
            sb,
            northd,
            sb_target: format!("unix:{}", sb_sock.display()),
            log,
        }
    }

    fn lflows(&self) -> String {
        common::run(
            Command::new(common::tool("ovn-sbctl"))
                .arg(format!("--db={}", self.sb_target))
                .arg("lflow-list"),
        )
    }
}

impl Drop for Northd {
    fn drop(&mut self) {
        for c in [&mut self.northd, &mut self.sb] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test]
async fn every_acl_we_write_compiles_into_flows_in_ovn_northd() {
    let s = common::Server::start_with(SCHEMA, false);
    let nb = common::client(&s).await;
    let northd = Northd::start(&s);
    let (view, _port, _web, _base) = setup(&s, &nb).await;
    // A second group naming web as its remote group, with a port of its own.
    let db_spec = SecurityGroupSpec {
        ingress_rules: vec![
            from_group("web", 3306, 10),
            tcp(3306, "0.0.0.0/0", 20, SgPolicy::Drop),
        ],
        egress_rules: vec![SgRule {
            protocol: SgProtocol::Icmp,
            priority: 1,
            policy: SgPolicy::Allow,
            remote_type: RemoteType::Address,
            remote_address: Some("10.0.1.1".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let db = build::group_rows("t", "db", &db_spec, 1).unwrap();
    let db_owner = Owner::new(GROUP_OWNER_KIND, "t", "db");
    send(&nb, &view, plan_group(&view, &db_owner, &db, "t"))
        .await
        .unwrap();
    let b = view.port("b.t").unwrap();
    let db_pg = view.port_group(&db.port_group.name).unwrap();
    let base = view.bases().pop().unwrap();
    let want = BTreeSet::from([db_pg.uuid.clone(), base.uuid.clone()]);
    send(&nb, &view, plan::membership(&b.uuid, &want, &[db_pg, base]))
        .await
        .unwrap();

    // Every ACL of ours becomes a flow at its priority + 1000 in its stage.
    let acls = view.all_acls();
    assert_eq!(
        acls.len(),
        6 + build::group_rows("t", "web", &web_spec(8080), 0)
            .unwrap()
            .acls
            .len()
            + db.acls.len()
    );
    let wanted: BTreeSet<(String, i64)> = acls
        .iter()
        .map(|a| {
            let stage = match a.direction {
                ovn::nb::acl::Direction::ToLport => "ls_out_acl",
                ovn::nb::acl::Direction::FromLport => "ls_in_acl",
            };
            (stage.to_string(), a.priority + 1000)
        })
        .collect();
    let start = Instant::now();
    let missing = loop {
        let flows = northd.lflows();
        let have: BTreeSet<(String, i64)> = flows
            .lines()
            .filter_map(|l| {
                let stage = l.split('(').nth(1)?.split(')').next()?.trim().to_string();
                let prio = l
                    .split("priority=")
                    .nth(1)?
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()?;
                Some((stage, prio))
            })
            .collect();
        let missing: Vec<_> = wanted.difference(&have).cloned().collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(20) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = std::fs::read_to_string(&northd.log).unwrap_or_default();
    assert!(
        missing.is_empty(),
        "no flow for {missing:?}\nnorthd log:\n{log}"
    );
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("|WARN|") || l.contains("|ERR|"))
        .filter(|l| !l.contains("connection") && !l.contains("reconnect"))
        .collect();
    assert!(
        complaints.is_empty(),
        "ovn-northd complained:\n{}",
        complaints.join("\n")
    );
    // The layout held: the base drop is lowest, the gateway allow highest.
    assert!(
        acls.iter()
            .all(|a| a.priority >= layout::DEFAULT_DROP && a.priority <= layout::BASE_GATEWAY)
    );
}
