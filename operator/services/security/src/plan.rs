//! Planning writes (pure): a group's Port_Group and ACLs made exactly as
//! desired, changing only the ACLs that differ (an unchanged rule keeps its
//! row, a changed one is updated in place); a port's memberships made
//! exactly as decided. Each plan is one transaction.

use std::collections::{BTreeMap, BTreeSet};

use ovn::nb::{Acl, PortGroup, port_group};
use ovn::ops::{Cond, Mutation, WaitUntil};
use ovn::{Owner, Row, Table, Txn, Uuid, datum};

/// What a plan writes, so the caller can wait for its cache to show it.
#[derive(Debug, Default)]
pub struct Planned {
    /// The transaction; `None` when nothing differs.
    pub txn: Option<Txn>,
    /// Operations at the front that guard against a stale cache.
    pub guards: usize,
    /// Rows inserted (named uuids, resolved after the write).
    pub inserted: Vec<Uuid>,
    /// Rows deleted.
    pub deleted: Vec<Uuid>,
}

fn key_of(acl: &Acl) -> Option<&String> {
    acl.external_ids.get(ovn::owner::KEY_KEY)
}

fn set(uuids: impl IntoIterator<Item = Uuid>) -> serde_json::Value {
    datum::set_of(uuids.into_iter().map(|u| u.to_json()))
}

fn uuid_rows<'a>(uuids: impl IntoIterator<Item = &'a Uuid>) -> Vec<Row> {
    uuids
        .into_iter()
        .map(|u| Row::from_iter([("_uuid".to_string(), u.to_json())]))
        .collect()
}

/// The columns of `want` that differ from `have`.
fn changed<T: Table>(want: &T, have: &T, columns: &[&str]) -> Row {
    let (w, h) = (want.to_row(), have.to_row());
    w.into_iter()
        .filter(|(c, v)| columns.contains(&c.as_str()) && h.get(c) != Some(v))
        .collect()
}

/// The Port_Groups a new group must not be planned beside unseen: the
/// cached groups of its namespace, matched by an `external_ids` entry (its
/// slot is chosen among theirs).
pub struct Siblings<'a> {
    /// The `external_ids` entry every sibling carries.
    pub key: (&'a str, &'a str),
    /// The siblings the cache shows.
    pub cached: &'a [PortGroup],
}

/// Plans `owner`'s Port_Group `want` (its name and `external_ids`; its
/// ports are never touched here) and, unless `acls` is `None`, exactly the
/// ACLs `acls` on it (keyed by `vpcnet.io/key`), against the cached
/// `current` group and `current_acls`. A new group is planned only if the
/// namespace's groups are still `siblings`.
pub fn group(
    owner: &Owner,
    mut want: PortGroup,
    acls: Option<Vec<Acl>>,
    current: Option<&PortGroup>,
    current_acls: &[Acl],
    siblings: Option<Siblings<'_>>,
) -> Planned {
    let mut txn = Txn::nb();
    txn.wait(
        Acl::TABLE,
        &[owner.condition()],
        &["_uuid"],
        WaitUntil::Equal,
        uuid_rows(current_acls.iter().map(|a| &a.uuid)),
        Some(0),
    );
    if current.is_none()
        && let Some(s) = &siblings
    {
        txn.wait(
            PortGroup::TABLE,
            &[Cond::includes(
                ovn::owner::EXTERNAL_IDS,
                datum::str_map([s.key]),
            )],
            &["_uuid"],
            WaitUntil::Equal,
            uuid_rows(s.cached.iter().map(|g| &g.uuid)),
            Some(0),
        );
    }
    let guards = txn.len();
    let mut out = Planned {
        guards,
        ..Default::default()
    };
    owner.stamp(&mut want.external_ids);
    let mut by_key: BTreeMap<&String, &Acl> = current_acls
        .iter()
        .filter_map(|a| Some((key_of(a)?, a)))
        .collect();
    let mut kept = BTreeSet::new();
    let mut added = Vec::new();
    for mut a in acls.clone().unwrap_or_default() {
        owner.stamp(&mut a.external_ids);
        match key_of(&a).and_then(|k| by_key.remove(k)) {
            Some(have) => {
                kept.insert(have.uuid.clone());
                let cols = changed(&a, have, Acl::COLUMNS);
                if !cols.is_empty() {
                    // In place: the row (and the connections it let in) stays.
                    txn.update(Acl::TABLE, &[Cond::uuid(&have.uuid)], cols);
                }
            }
            None => {
                let u = txn.insert_row(&a);
                out.inserted.push(u.clone());
                added.push(u);
            }
        }
    }
    let gone: Vec<&Acl> = if acls.is_some() {
        current_acls
            .iter()
            .filter(|a| !kept.contains(&a.uuid))
            .collect()
    } else {
        Vec::new()
    };
    match current {
        None => {
            want.acls = added.into_iter().collect();
            want.ports = BTreeSet::new();
            // The name is the table's index: a concurrent insert of the
            // same group fails this transaction instead of duplicating it.
            let u = txn.insert_row(&want);
            out.inserted.push(u);
        }
        Some(have) => {
            let cols = changed(&want, have, &[port_group::NAME, port_group::EXTERNAL_IDS]);
            if !cols.is_empty() {
                txn.update(PortGroup::TABLE, &[Cond::uuid(&have.uuid)], cols);
            }
            let mut muts = Vec::new();
            if !added.is_empty() {
                muts.push(Mutation::insert(port_group::ACLS, set(added)));
            }
            if !gone.is_empty() {
                muts.push(Mutation::delete(
                    port_group::ACLS,
                    set(gone.iter().map(|a| a.uuid.clone())),
                ));
            }
            if !muts.is_empty() {
                txn.mutate(PortGroup::TABLE, &[Cond::uuid(&have.uuid)], &muts);
            }
        }
    }
    for a in gone {
        txn.delete(Acl::TABLE, &[Cond::uuid(&a.uuid)]);
        out.deleted.push(a.uuid.clone());
    }
    if txn.len() > guards {
        txn.comment(&format!("vpcnet: security group rows of {}", owner.id()));
        out.txn = Some(txn);
    }
    out
}

/// Plans deleting group `pg` and its ACLs `acls`.
pub fn remove(owner: &Owner, pg: Option<&PortGroup>, acls: &[Acl]) -> Planned {
    let mut txn = Txn::nb();
    let mut out = Planned::default();
    if let Some(pg) = pg {
        txn.delete(PortGroup::TABLE, &[Cond::uuid(&pg.uuid)]);
        out.deleted.push(pg.uuid.clone());
    }
    for a in acls {
        txn.delete(Acl::TABLE, &[Cond::uuid(&a.uuid)]);
        out.deleted.push(a.uuid.clone());
    }
    if !txn.is_empty() {
        txn.comment(&format!(
            "vpcnet: remove security group rows of {}",
            owner.id()
        ));
        out.txn = Some(txn);
    }
    out
}

/// Plans port `port` to be in exactly the groups `want` (uuids) among
/// `candidates` (every Port_Group of ours it may be in). Mutations only:
/// other ports of the same groups, written concurrently, are untouched.
pub fn membership(port: &Uuid, want: &BTreeSet<Uuid>, candidates: &[PortGroup]) -> Planned {
    let mut txn = Txn::nb();
    for g in candidates {
        let has = g.ports.contains(port);
        let should = want.contains(&g.uuid);
        if has != should {
            let m = if should {
                Mutation::insert(port_group::PORTS, set([port.clone()]))
            } else {
                Mutation::delete(port_group::PORTS, set([port.clone()]))
            };
            txn.mutate(PortGroup::TABLE, &[Cond::uuid(&g.uuid)], &[m]);
        }
    }
    let mut out = Planned::default();
    if !txn.is_empty() {
        txn.comment(&format!(
            "vpcnet: security group membership of port {}",
            port.as_str()
        ));
        out.txn = Some(txn);
    }
    out
}

#[cfg(test)]
mod tests {
    use ovn::nb::acl::{Action, Direction};
    use ovn::owner::KEY_KEY;

    use super::*;

    fn owner() -> Owner {
        Owner::new("SecurityGroup", "t", "web")
    }

    fn acl(key: &str, m: &str, prio: i64) -> Acl {
        Acl {
            action: Action::AllowRelated,
            direction: Direction::ToLport,
            r#match: m.into(),
            priority: prio,
            external_ids: BTreeMap::from([(KEY_KEY.to_string(), key.to_string())]),
            ..Default::default()
        }
    }

    fn cached(key: &str, uuid: &str, m: &str, prio: i64) -> Acl {
        let mut a = acl(key, m, prio);
        owner().stamp(&mut a.external_ids);
        a.uuid = Uuid::Real(uuid.into());
        a
    }

    fn pg(uuid: Option<&str>, acls: &[&str], ports: &[&str]) -> PortGroup {
        let mut p = PortGroup {
            name: "vpcnet_sg_t_sweb".into(),
            acls: acls.iter().map(|u| Uuid::Real(u.to_string())).collect(),
            ports: ports.iter().map(|u| Uuid::Real(u.to_string())).collect(),
            ..Default::default()
        };
        if let Some(u) = uuid {
            owner().stamp(&mut p.external_ids);
            p.uuid = Uuid::Real(u.into());
        }
        p
    }

    fn ops(p: &Planned) -> Vec<String> {
        p.txn
            .as_ref()
            .map(|t| {
                t.ops()
                    .iter()
                    .map(|o| {
                        format!(
                            "{} {}",
                            o["op"].as_str().unwrap(),
                            o["table"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_new_group_is_its_acls_and_its_port_group_after_the_guards() {
        let siblings = [pg(Some("other"), &[], &[])];
        let p = group(
            &owner(),
            pg(None, &[], &[]),
            Some(vec![acl("in/1/allow", "m1", 10), acl("in/2/drop", "m2", 9)]),
            None,
            &[],
            Some(Siblings {
                key: ("vpcnet.io/sg-namespace", "t"),
                cached: &siblings,
            }),
        );
        assert_eq!(
            ops(&p),
            vec![
                "wait ACL",
                "wait Port_Group",
                "insert ACL",
                "insert ACL",
                "insert Port_Group",
                "comment "
            ]
        );
        assert_eq!(p.guards, 2);
        let t = p.txn.unwrap();
        let row = &t.ops()[4]["row"];
        assert_eq!(row["acls"][1].as_array().unwrap().len(), 2, "{row}");
        assert!(
            row.get("ports")
                .is_none_or(|p| *p == serde_json::json!(["set", []])),
            "a new group has no ports of ours: {row}"
        );
    }

    #[test]
    fn one_changed_rule_is_one_update_of_its_row_and_the_others_are_untouched() {
        let have = [
            cached("in/1/allow", "a1", "m1", 10),
            cached("in/2/allow", "a2", "m2", 9),
        ];
        let cur = pg(Some("g"), &["a1", "a2"], &["p1"]);
        let p = group(
            &owner(),
            pg(None, &[], &[]),
            Some(vec![
                acl("in/1/allow", "m1", 10),
                acl("in/2/allow", "m2 changed", 9),
            ]),
            Some(&cur),
            &have,
            None,
        );
        assert_eq!(ops(&p), vec!["wait ACL", "update ACL", "comment "]);
        let t = p.txn.unwrap();
        assert_eq!(t.ops()[1]["where"][0][2][1], "a2");
        let cols: Vec<&String> = t.ops()[1]["row"].as_object().unwrap().keys().collect();
        assert_eq!(cols, vec!["match"]);
    }

    #[test]
    fn an_unchanged_group_writes_nothing() {
        let have = [cached("in/1/allow", "a1", "m1", 10)];
        let cur = pg(Some("g"), &["a1"], &["p1"]);
        let p = group(
            &owner(),
            pg(None, &[], &[]),
            Some(vec![acl("in/1/allow", "m1", 10)]),
            Some(&cur),
            &have,
            None,
        );
        assert!(p.txn.is_none());
    }

    #[test]
    fn a_rule_gone_and_a_rule_added_mutate_the_group_once_and_delete_the_old_row() {
        let have = [
            cached("in/1/allow", "a1", "m1", 10),
            cached("in/2/allow", "a2", "m2", 9),
        ];
        let cur = pg(Some("g"), &["a1", "a2"], &[]);
        let p = group(
            &owner(),
            pg(None, &[], &[]),
            Some(vec![
                acl("in/1/allow", "m1", 10),
                acl("out/3/drop", "m3", 8),
            ]),
            Some(&cur),
            &have,
            None,
        );
        assert_eq!(
            ops(&p),
            vec![
                "wait ACL",
                "insert ACL",
                "mutate Port_Group",
                "delete ACL",
                "comment "
            ]
        );
        assert_eq!(p.deleted, vec![Uuid::Real("a2".into())]);
        let t = p.txn.unwrap();
        let muts = t.ops()[2]["mutations"].as_array().unwrap();
        assert_eq!(
            (muts[0][1].as_str(), muts[1][1].as_str()),
            (Some("insert"), Some("delete"))
        );
    }

    #[test]
    fn without_acls_only_the_port_group_is_planned_and_existing_acls_stay() {
        let have = [cached("in/1/allow", "a1", "m1", 10)];
        let cur = pg(Some("g"), &["a1"], &[]);
        let p = group(&owner(), pg(None, &[], &[]), None, Some(&cur), &have, None);
        assert!(p.txn.is_none());
        let p = group(&owner(), pg(None, &[], &[]), None, None, &[], None);
        assert_eq!(ops(&p), vec!["wait ACL", "insert Port_Group", "comment "]);
    }

    #[test]
    fn membership_mutates_only_the_groups_whose_answer_changes() {
        let port = Uuid::Real("p1".into());
        let groups = [
            pg(Some("a"), &[], &["p1"]),
            pg(Some("b"), &[], &[]),
            pg(Some("c"), &[], &["p1", "p2"]),
        ];
        let want = BTreeSet::from([Uuid::Real("a".into()), Uuid::Real("b".into())]);
        let p = membership(&port, &want, &groups);
        let t = p.txn.unwrap();
        let m: Vec<String> = t
            .ops()
            .iter()
            .filter(|o| o["op"] == "mutate")
            .map(|o| {
                format!(
                    "{}:{}",
                    o["where"][0][2][1].as_str().unwrap(),
                    o["mutations"][0][1].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(m, vec!["b:insert", "c:delete"]);
        let want_same = BTreeSet::from([Uuid::Real("a".into()), Uuid::Real("c".into())]);
        assert!(membership(&port, &want_same, &groups).txn.is_none());
    }
}
