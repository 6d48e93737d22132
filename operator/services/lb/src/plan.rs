//! Planning writes (pure): one owner's load balancers made exactly as
//! desired and members of exactly their VPC's group; a VPC's group made to
//! hold exactly its load balancers and be referred to by each of its
//! switches and its router. Each plan is one transaction.

use std::collections::{BTreeMap, BTreeSet};

use ovn::nb::{LoadBalancer, LoadBalancerGroup};
use ovn::ops::{Cond, Mutation, WaitUntil};
use ovn::{Owner, Row, Table, Txn, Uuid, datum};

use crate::view::{self, Holder, MEMBERS};

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

fn key_of(lb: &LoadBalancer) -> Option<&String> {
    lb.external_ids.get(ovn::owner::KEY_KEY)
}

fn one(u: &Uuid) -> serde_json::Value {
    datum::set_of([u.to_json()])
}

/// The columns of `want` that differ from `have`.
fn changed(want: &LoadBalancer, have: &LoadBalancer) -> Row {
    let (w, h) = (want.to_row(), have.to_row());
    w.into_iter().filter(|(c, v)| h.get(c) != Some(v)).collect()
}

/// Plans `owner`'s load balancers: `desired` (keyed by `vpcnet.io/key`)
/// against `current` (from the cache), each a member of `group` and of no
/// other group in `membership` (group uuid -> its members). An owner whose
/// rows are all gone passes no `group`.
pub fn owner_rows(
    owner: &Owner,
    desired: Vec<LoadBalancer>,
    current: &[LoadBalancer],
    group: Option<&Uuid>,
    membership: &BTreeMap<Uuid, BTreeSet<Uuid>>,
) -> Planned {
    let mut txn = Txn::nb();
    let rows: Vec<Row> = current
        .iter()
        .map(|c| Row::from_iter([("_uuid".to_string(), c.uuid.to_json())]))
        .collect();
    txn.wait(
        LoadBalancer::TABLE,
        &[owner.condition()],
        &["_uuid"],
        WaitUntil::Equal,
        rows,
        Some(0),
    );
    let guards = txn.len();
    let mut out = Planned {
        guards,
        ..Default::default()
    };
    let mut by_key: BTreeMap<&String, &LoadBalancer> = current
        .iter()
        .filter_map(|c| Some((key_of(c)?, c)))
        .collect();
    let mut kept = BTreeSet::new();
    for mut want in desired {
        owner.stamp(&mut want.external_ids);
        let hit = key_of(&want).and_then(|k| by_key.remove(k));
        match hit {
            Some(have) => {
                kept.insert(have.uuid.clone());
                let cols = changed(&want, have);
                if !cols.is_empty() {
                    txn.update(LoadBalancer::TABLE, &[Cond::uuid(&have.uuid)], cols);
                }
                for (g, members) in membership {
                    let belongs = Some(g) == group;
                    if members.contains(&have.uuid) != belongs {
                        let m = if belongs {
                            Mutation::insert(MEMBERS, one(&have.uuid))
                        } else {
                            Mutation::delete(MEMBERS, one(&have.uuid))
                        };
                        txn.mutate(LoadBalancerGroup::TABLE, &[Cond::uuid(g)], &[m]);
                    }
                }
            }
            None => {
                let Some(g) = group else { continue };
                let u = txn.insert_row(&want);
                txn.mutate(
                    LoadBalancerGroup::TABLE,
                    &[Cond::uuid(g)],
                    &[Mutation::insert(MEMBERS, one(&u))],
                );
                out.inserted.push(u);
            }
        }
    }
    for c in current.iter().filter(|c| !kept.contains(&c.uuid)) {
        // Every reference to a load balancer is weak: deleting it is enough.
        txn.delete(LoadBalancer::TABLE, &[Cond::uuid(&c.uuid)]);
        out.deleted.push(c.uuid.clone());
    }
    if txn.len() > guards {
        txn.comment(&format!("vpcnet: load balancers of {}", owner.id()));
        out.txn = Some(txn);
    }
    out
}

/// Plans a VPC's group called `name`: holding exactly `members`, referred
/// to by every one of `holders` (its switches and router). `group` is the
/// cached row, if any.
pub fn vpc_group(
    name: &str,
    group: Option<&LoadBalancerGroup>,
    members: &BTreeSet<Uuid>,
    holders: &[Holder],
) -> Planned {
    let mut txn = Txn::nb();
    let mut out = Planned::default();
    let uuid = match group {
        Some(g) => {
            let add: Vec<_> = members.difference(&g.load_balancer).collect();
            let drop: Vec<_> = g.load_balancer.difference(members).collect();
            let mut muts = Vec::new();
            if !add.is_empty() {
                muts.push(Mutation::insert(
                    MEMBERS,
                    datum::set_of(add.iter().map(|u| u.to_json())),
                ));
            }
            if !drop.is_empty() {
                muts.push(Mutation::delete(
                    MEMBERS,
                    datum::set_of(drop.iter().map(|u| u.to_json())),
                ));
            }
            if !muts.is_empty() {
                txn.mutate(LoadBalancerGroup::TABLE, &[Cond::uuid(&g.uuid)], &muts);
            }
            g.uuid.clone()
        }
        None => {
            // The name is the table's index: a concurrent insert of the
            // same group fails this transaction instead of duplicating it.
            let u = txn.insert_row(&LoadBalancerGroup {
                name: name.into(),
                load_balancer: members.clone(),
                ..Default::default()
            });
            out.inserted.push(u.clone());
            u
        }
    };
    for h in holders.iter().filter(|h| !h.groups.contains(&uuid)) {
        txn.mutate(
            h.table,
            &[Cond::uuid(&h.uuid)],
            &[Mutation::insert(view::group_column(h.table), one(&uuid))],
        );
    }
    if !txn.is_empty() {
        txn.comment(&format!("vpcnet: load-balancer group {name}"));
        out.txn = Some(txn);
    }
    out
}

/// Plans deleting group `group`: detached from every referrer first (their
/// references are strong, so OVSDB refuses to delete a referenced row).
pub fn remove_group(group: &LoadBalancerGroup, referrers: &[Holder]) -> Planned {
    let mut txn = Txn::nb();
    for h in referrers {
        txn.mutate(
            h.table,
            &[Cond::uuid(&h.uuid)],
            &[Mutation::delete(
                view::group_column(h.table),
                one(&group.uuid),
            )],
        );
    }
    txn.delete(LoadBalancerGroup::TABLE, &[Cond::uuid(&group.uuid)]);
    txn.comment(&format!(
        "vpcnet: remove load-balancer group {}",
        group.name
    ));
    Planned {
        txn: Some(txn),
        deleted: vec![group.uuid.clone()],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use ovn::nb::LogicalSwitch;
    use ovn::owner::KEY_KEY;

    use super::*;

    fn owner() -> Owner {
        Owner::new("Service", "t", "web").with_vpc("a")
    }

    fn lb(key: &str, vips: &[(&str, &str)]) -> LoadBalancer {
        LoadBalancer {
            name: format!("lb-{key}"),
            vips: vips
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            external_ids: BTreeMap::from([(KEY_KEY.to_string(), key.to_string())]),
            ..Default::default()
        }
    }

    fn cached(key: &str, uuid: &str, vips: &[(&str, &str)]) -> LoadBalancer {
        let mut l = lb(key, vips);
        owner().stamp(&mut l.external_ids);
        l.uuid = Uuid::Real(uuid.into());
        l
    }

    fn ops(p: &Planned) -> Vec<(String, String)> {
        p.txn
            .as_ref()
            .map(|t| {
                t.ops()
                    .iter()
                    .map(|o| {
                        (
                            o["op"].as_str().unwrap_or("").to_string(),
                            o["table"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn g(u: &str) -> Uuid {
        Uuid::Real(u.into())
    }

    #[test]
    fn a_new_service_is_one_insert_and_one_group_membership_after_the_guard() {
        let membership = BTreeMap::from([(g("g1"), BTreeSet::new())]);
        let p = owner_rows(
            &owner(),
            vec![lb("tcp", &[("10.96.0.5:80", "")])],
            &[],
            Some(&g("g1")),
            &membership,
        );
        assert_eq!(
            ops(&p),
            vec![
                ("wait".into(), "Load_Balancer".into()),
                ("insert".into(), "Load_Balancer".into()),
                ("mutate".into(), "Load_Balancer_Group".into()),
                ("comment".into(), "".into()),
            ]
        );
        assert_eq!(p.inserted.len(), 1);
    }

    #[test]
    fn an_unchanged_service_writes_nothing() {
        let have = cached("tcp", "u1", &[("10.96.0.5:80", "10.0.1.5:80")]);
        let membership = BTreeMap::from([(g("g1"), BTreeSet::from([g("u1")]))]);
        let p = owner_rows(
            &owner(),
            vec![lb("tcp", &[("10.96.0.5:80", "10.0.1.5:80")])],
            &[have],
            Some(&g("g1")),
            &membership,
        );
        assert!(p.txn.is_none());
    }

    #[test]
    fn a_backend_change_updates_only_the_vips_of_the_same_row() {
        let have = cached("tcp", "u1", &[("10.96.0.5:80", "10.0.1.5:80")]);
        let membership = BTreeMap::from([(g("g1"), BTreeSet::from([g("u1")]))]);
        let p = owner_rows(
            &owner(),
            vec![lb("tcp", &[("10.96.0.5:80", "10.0.1.5:80,10.0.1.6:80")])],
            &[have],
            Some(&g("g1")),
            &membership,
        );
        let t = p.txn.unwrap();
        let upd: Vec<_> = t.ops().iter().filter(|o| o["op"] == "update").collect();
        assert_eq!(upd.len(), 1);
        let cols: Vec<&String> = upd[0]["row"].as_object().unwrap().keys().collect();
        assert_eq!(cols, vec!["vips"]);
        assert!(p.inserted.is_empty() && p.deleted.is_empty());
    }

    #[test]
    fn a_protocol_gone_is_deleted_and_a_moved_service_changes_groups() {
        let tcp = cached("tcp", "u1", &[("10.96.0.5:80", "")]);
        let udp = cached("udp", "u2", &[("10.96.0.5:53", "")]);
        // u1 sits in the old VPC's group g0; the Service now belongs to g1.
        let membership = BTreeMap::from([
            (g("g0"), BTreeSet::from([g("u1"), g("u2")])),
            (g("g1"), BTreeSet::new()),
        ]);
        let p = owner_rows(
            &owner(),
            vec![lb("tcp", &[("10.96.0.5:80", "")])],
            &[tcp, udp],
            Some(&g("g1")),
            &membership,
        );
        let t = p.txn.unwrap();
        let muts: Vec<String> = t
            .ops()
            .iter()
            .filter(|o| o["op"] == "mutate")
            .map(|o| format!("{}:{}", o["where"][0][2][1], o["mutations"][0][1]))
            .collect();
        assert_eq!(muts, vec!["\"g0\":\"delete\"", "\"g1\":\"insert\""]);
        assert_eq!(p.deleted, vec![g("u2")]);
    }

    #[test]
    fn a_deleted_service_deletes_all_its_rows() {
        let tcp = cached("tcp", "u1", &[("10.96.0.5:80", "")]);
        let p = owner_rows(&owner(), Vec::new(), &[tcp], None, &BTreeMap::new());
        assert_eq!(p.deleted, vec![g("u1")]);
    }

    fn switch(u: &str, groups: &[&str]) -> Holder {
        Holder {
            table: LogicalSwitch::TABLE,
            uuid: g(u),
            groups: groups.iter().map(|x| g(x)).collect(),
        }
    }

    #[test]
    fn a_new_group_is_created_with_its_members_and_referred_to_by_each_switch() {
        let members = BTreeSet::from([g("u1")]);
        let p = vpc_group(
            "vpcnet-lbg-a",
            None,
            &members,
            &[switch("s1", &[]), switch("s2", &[])],
        );
        assert_eq!(
            ops(&p),
            vec![
                ("insert".into(), "Load_Balancer_Group".into()),
                ("mutate".into(), "Logical_Switch".into()),
                ("mutate".into(), "Logical_Switch".into()),
                ("comment".into(), "".into()),
            ]
        );
    }

    #[test]
    fn a_new_switch_is_one_reference_and_a_current_group_writes_nothing() {
        let grp = LoadBalancerGroup {
            uuid: g("g1"),
            name: "vpcnet-lbg-a".into(),
            load_balancer: BTreeSet::from([g("u1")]),
        };
        let members = BTreeSet::from([g("u1")]);
        let p = vpc_group(
            "vpcnet-lbg-a",
            Some(&grp),
            &members,
            &[switch("s1", &["g1"]), switch("s2", &[])],
        );
        assert_eq!(
            ops(&p),
            vec![
                ("mutate".into(), "Logical_Switch".into()),
                ("comment".into(), "".into())
            ]
        );
        let p = vpc_group(
            "vpcnet-lbg-a",
            Some(&grp),
            &members,
            &[switch("s1", &["g1"])],
        );
        assert!(p.txn.is_none());
    }

    #[test]
    fn a_group_loses_members_that_are_not_its_vpcs() {
        let grp = LoadBalancerGroup {
            uuid: g("g1"),
            name: "vpcnet-lbg-a".into(),
            load_balancer: BTreeSet::from([g("u1"), g("stray")]),
        };
        let p = vpc_group("vpcnet-lbg-a", Some(&grp), &BTreeSet::from([g("u1")]), &[]);
        let t = p.txn.unwrap();
        assert_eq!(t.ops()[0]["mutations"][0][1], "delete");
        assert_eq!(
            t.ops()[0]["mutations"][0][2],
            serde_json::json!(["set", [["uuid", "stray"]]])
        );
    }
}
