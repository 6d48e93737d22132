mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Server;
use ovn::nb::{self, *};
use ovn::{Cond, Monitor, MonitorRequest, Mutation, Row, Txn, datum};
use serde_json::{Value, json};

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn canonical(table: &str, rows: Vec<Row>) -> BTreeMap<String, BTreeMap<String, Value>> {
    let ts = &nb::schema().tables[table];
    rows.into_iter()
        .map(|r| {
            let u = r["_uuid"][1].as_str().unwrap().to_string();
            let cols = r
                .into_iter()
                .filter(|(c, _)| c != "_version")
                .map(|(c, v)| {
                    let n = datum::normalize(&v, &ts.columns[&c]);
                    (c, n)
                })
                .collect();
            (u, cols)
        })
        .collect()
}

async fn assert_cache_matches_select(c: &ovn::Client, m: &Monitor, tables: &[&str]) {
    let mut t = Txn::nb();
    for tb in tables {
        t.select(tb, &[], None);
    }
    let r = c.transact(t).await.unwrap();
    for (i, tb) in tables.iter().enumerate() {
        let fresh = canonical(tb, r.raw_rows(i));
        let cached = canonical(tb, m.rows(tb));
        let diffs: Vec<String> = fresh
            .iter()
            .filter(|(u, r)| cached.get(*u) != Some(*r))
            .map(|(u, r)| format!("{u}: select {r:?}\n  cache {:?}", cached.get(u)))
            .chain(
                cached
                    .keys()
                    .filter(|u| !fresh.contains_key(*u))
                    .map(|u| format!("{u}: only in cache")),
            )
            .take(3)
            .collect();
        assert!(
            diffs.is_empty(),
            "cache of {tb} differs from a fresh select:\n{}",
            diffs.join("\n")
        );
    }
}

#[tokio::test]
async fn cache_equals_select_after_1000_random_mutations() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let tables = [
        logical_switch::TABLE,
        logical_switch_port::TABLE,
        address_set::TABLE,
    ];
    let m = c
        .monitor(
            nb::SCHEMA_NAME,
            tables.iter().map(|t| MonitorRequest::table(t)).collect(),
        )
        .await
        .unwrap();
    // Another client writes, so updates arrive independently of our replies.
    let w = common::client(&srv).await;
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut switches: Vec<String> = Vec::new();
    let mut ports: Vec<String> = Vec::new();
    let mut n = 0;
    for step in 0..1000 {
        let mut t = Txn::nb();
        let choice = if switches.is_empty() { 0 } else { rng.below(9) };
        match choice {
            0 => {
                n += 1;
                t.insert_row(&LogicalSwitch {
                    name: format!("ls{n}"),
                    ..Default::default()
                });
            }
            1 | 2 => {
                n += 1;
                let sw = &switches[rng.below(switches.len())];
                let p = t.insert_row(&LogicalSwitchPort {
                    name: format!("p{n}"),
                    addresses: [format!(
                        "00:00:00:00:{:02x}:{:02x} dynamic",
                        n / 256 % 256,
                        n % 256
                    )]
                    .into(),
                    ..Default::default()
                });
                t.mutate(
                    logical_switch::TABLE,
                    &[Cond::uuid(&ovn::Uuid::Real(sw.clone()))],
                    &[Mutation::insert(logical_switch::PORTS, p.to_json())],
                );
            }
            3 if !ports.is_empty() => {
                let p = ovn::Uuid::Real(ports[rng.below(ports.len())].clone());
                let k = format!("k{}", rng.below(4));
                let v = format!("v{}", rng.below(3));
                t.mutate(
                    logical_switch_port::TABLE,
                    &[Cond::uuid(&p)],
                    &[
                        Mutation::delete(
                            logical_switch_port::EXTERNAL_IDS,
                            datum::set_of([json!(k)]),
                        ),
                        Mutation::insert(
                            logical_switch_port::EXTERNAL_IDS,
                            datum::str_map([(k.as_str(), v.as_str())]),
                        ),
                    ],
                );
            }
            4 if !ports.is_empty() => {
                let p = ovn::Uuid::Real(ports[rng.below(ports.len())].clone());
                let up = rng.below(3);
                let row: Row = serde_json::from_value(json!({
                    "up": if up == 2 { json!(["set", []]) } else { json!(up == 1) },
                    "tag_request": rng.below(4095) as i64,
                    "addresses": datum::set_of((0..rng.below(3)).map(|i| json!(format!("addr{i}")))),
                }))
                .unwrap();
                t.update(logical_switch_port::TABLE, &[Cond::uuid(&p)], row);
            }
            5 if !ports.is_empty() => {
                // Detach a port from its switch: OVSDB garbage-collects it.
                let p = ovn::Uuid::Real(ports[rng.below(ports.len())].clone());
                let set = datum::set_of([p.to_json()]);
                t.mutate(
                    logical_switch::TABLE,
                    &[Cond::includes(logical_switch::PORTS, set.clone())],
                    &[Mutation::delete(logical_switch::PORTS, set)],
                );
            }
            6 => {
                let name = format!("as{}", rng.below(20));
                t.delete(
                    address_set::TABLE,
                    &[Cond::eq(address_set::NAME, name.as_str())],
                );
                t.insert_row(&AddressSet {
                    name,
                    addresses: (0..rng.below(5))
                        .map(|i| format!("10.0.{step}.{i}"))
                        .collect(),
                    ..Default::default()
                });
            }
            7 => {
                let sw = ovn::Uuid::Real(switches[rng.below(switches.len())].clone());
                let key = format!("o{}", rng.below(3));
                t.mutate(
                    logical_switch::TABLE,
                    &[Cond::uuid(&sw)],
                    &[Mutation::insert(
                        logical_switch::OTHER_CONFIG,
                        datum::str_map([(key.as_str(), "x")]),
                    )],
                );
            }
            _ if switches.len() > 3 => {
                let i = rng.below(switches.len());
                t.delete(
                    logical_switch::TABLE,
                    &[Cond::uuid(&ovn::Uuid::Real(switches[i].clone()))],
                );
            }
            _ => {
                n += 1;
                t.insert_row(&LogicalSwitch {
                    name: format!("ls{n}"),
                    ..Default::default()
                });
            }
        }
        w.transact(t).await.unwrap();
        // Track live rows from the writer's point of view.
        if step % 10 == 0 || choice == 8 || choice == 5 {
            let mut t = Txn::nb();
            let a = t.select(logical_switch::TABLE, &[], Some(&["_uuid"]));
            let b = t.select(logical_switch_port::TABLE, &[], Some(&["_uuid"]));
            let r = w.transact(t).await.unwrap();
            switches = r
                .raw_rows(a)
                .iter()
                .map(|r| r["_uuid"][1].as_str().unwrap().to_string())
                .collect();
            ports = r
                .raw_rows(b)
                .iter()
                .map(|r| r["_uuid"][1].as_str().unwrap().to_string())
                .collect();
        }
    }
    // Wait until the cache has caught up with the writer's last transaction:
    // a sentinel row written last.
    let mut t = Txn::nb();
    t.insert_row(&AddressSet {
        name: "sentinel".into(),
        ..Default::default()
    });
    w.transact(t).await.unwrap();
    m.wait_until(Duration::from_secs(10), |tb| {
        tb[address_set::TABLE]
            .values()
            .any(|r| r["name"] == "sentinel")
    })
    .await
    .unwrap();
    assert!(
        m.len(logical_switch_port::TABLE) > 10,
        "the run produced a non-trivial state"
    );
    assert_cache_matches_select(&c, &m, &tables).await;
    // Typed access to the cache.
    let typed: Vec<LogicalSwitchPort> = m.get().unwrap();
    assert_eq!(typed.len(), m.len(logical_switch_port::TABLE));
}

#[tokio::test]
async fn conditional_monitor_and_cancel() {
    let srv = Server::start();
    let c = common::client(&srv).await;
    let m = c
        .monitor(
            nb::SCHEMA_NAME,
            vec![
                MonitorRequest::of::<LogicalSwitch>()
                    .columns(&[logical_switch::NAME])
                    .conditions(vec![Cond::includes(
                        logical_switch::EXTERNAL_IDS,
                        datum::str_map([("vpcnet.io/vpc", "a")]),
                    )]),
            ],
        )
        .await
        .unwrap();
    let mut t = Txn::nb();
    for (name, vpc) in [("x", "a"), ("y", "b"), ("z", "a")] {
        t.insert_row(&LogicalSwitch {
            name: name.into(),
            external_ids: [("vpcnet.io/vpc".to_string(), vpc.to_string())].into(),
            ..Default::default()
        });
    }
    c.transact(t).await.unwrap();
    m.wait_until(Duration::from_secs(5), |t| {
        t[logical_switch::TABLE].len() == 2
    })
    .await
    .unwrap();
    let mut names: Vec<String> = m
        .get::<LogicalSwitch>()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    assert_eq!(names, ["x", "z"]);
    assert!(
        m.rows(logical_switch::TABLE)
            .iter()
            .all(|r| !r.contains_key("external_ids")),
        "only the requested column"
    );
    m.cancel().await.unwrap();
    // The id is gone on the server: cancelling again is an error.
    let e = c.call("monitor_cancel", json!(["m1"])).await.unwrap_err();
    assert_eq!(e.ovsdb_error(), Some("unknown monitor"), "{e}");
}
