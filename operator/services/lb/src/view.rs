//! The lb service's live view of the Northbound rows it plans against: load
//! balancers, load-balancer groups, and which switches and routers refer to
//! which group. Planning reads this cache, so a change costs one write
//! transaction and no read; a guard in that transaction catches a stale
//! cache.

use std::collections::BTreeSet;
use std::time::Duration;

use ovn::nb::{
    LoadBalancer, LoadBalancerGroup, LogicalRouter, LogicalSwitch, load_balancer_group,
    logical_router, logical_switch,
};
use ovn::owner::{OWNER_KEY, VPC_KEY, external_id, with_uuid};
use ovn::{Client, Monitor, MonitorRequest, Table, Uuid};
use serde_json::Value;
use vpcnet_api::contract::naming::LB_GROUP_PREFIX;

/// A switch or router and the groups it refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its table.
    pub table: &'static str,
    /// Its row.
    pub uuid: Uuid,
    /// Its `load_balancer_group` column.
    pub groups: BTreeSet<Uuid>,
}

/// A monitor of the tables the lb service writes or links to.
pub struct LbView {
    monitor: Monitor,
}

impl LbView {
    /// Starts the monitor.
    pub async fn start(nb: &Client) -> ovn::Result<Self> {
        let monitor = nb
            .monitor(
                ovn::nb::SCHEMA_NAME,
                vec![
                    MonitorRequest::of::<LoadBalancer>(),
                    MonitorRequest::of::<LoadBalancerGroup>(),
                    MonitorRequest::of::<LogicalSwitch>()
                        .columns(&[logical_switch::NAME, logical_switch::LOAD_BALANCER_GROUP]),
                    MonitorRequest::of::<LogicalRouter>()
                        .columns(&[logical_router::NAME, logical_router::LOAD_BALANCER_GROUP]),
                ],
            )
            .await?;
        Ok(Self { monitor })
    }

    /// The load balancers owned by `owner` (an `ovn::Owner` id).
    pub fn owned(&self, owner: &str) -> Vec<LoadBalancer> {
        self.monitor.with(|t| {
            t.get(LoadBalancer::TABLE)
                .into_iter()
                .flatten()
                .filter(|(_, r)| external_id(r, OWNER_KEY) == Some(owner))
                .filter_map(|(u, r)| LoadBalancer::from_row(&with_uuid(u, r)).ok())
                .collect()
        })
    }

    /// The load balancers of owners of `kinds` recorded as of VPC `vpc`.
    pub fn of_vpc(&self, vpc: &str, kinds: &[&str]) -> BTreeSet<Uuid> {
        self.monitor.with(|t| {
            t.get(LoadBalancer::TABLE)
                .into_iter()
                .flatten()
                .filter(|(_, r)| external_id(r, VPC_KEY) == Some(vpc))
                .filter(|(_, r)| {
                    external_id(r, OWNER_KEY)
                        .and_then(|o| o.split('/').next())
                        .is_some_and(|k| kinds.contains(&k))
                })
                .map(|(u, _)| Uuid::Real(u.clone()))
                .collect()
        })
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<LoadBalancerGroup> {
        self.groups().into_iter().find(|g| g.name == name)
    }

    /// Every group of ours (named with the VPC group prefix).
    pub fn groups(&self) -> Vec<LoadBalancerGroup> {
        self.monitor.with(|t| {
            t.get(LoadBalancerGroup::TABLE)
                .into_iter()
                .flatten()
                .filter_map(|(u, r)| LoadBalancerGroup::from_row(&with_uuid(u, r)).ok())
                .filter(|g| g.name.starts_with(LB_GROUP_PREFIX))
                .collect()
        })
    }

    /// The switch called `name`, with its groups.
    pub fn switch(&self, name: &str) -> Option<Holder> {
        self.holder(LogicalSwitch::TABLE, name)
    }

    /// The router called `name`, with its groups.
    pub fn router(&self, name: &str) -> Option<Holder> {
        self.holder(LogicalRouter::TABLE, name)
    }

    /// Every switch and router that refers to group `group`.
    pub fn referrers(&self, group: &Uuid) -> Vec<Holder> {
        [LogicalSwitch::TABLE, LogicalRouter::TABLE]
            .into_iter()
            .flat_map(|table| {
                self.monitor.with(|t| {
                    t.get(table)
                        .into_iter()
                        .flatten()
                        .map(|(u, r)| holder(table, u, r))
                        .filter(|h| h.groups.contains(group))
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    }

    fn holder(&self, table: &'static str, name: &str) -> Option<Holder> {
        self.monitor.with(|t| {
            t.get(table)?
                .iter()
                .find(|(_, r)| r.get("name").and_then(Value::as_str) == Some(name))
                .map(|(u, r)| holder(table, u, r))
        })
    }

    /// Waits (up to `timeout`) until the cache shows `present` rows of
    /// `table` and none of `absent`: after a write, so the next plan reads it.
    pub async fn settle(
        &self,
        table: &str,
        present: &[Uuid],
        absent: &[Uuid],
        timeout: Duration,
    ) -> ovn::Result<()> {
        if present.is_empty() && absent.is_empty() {
            return Ok(());
        }
        let (present, absent) = (present.to_vec(), absent.to_vec());
        let table = table.to_string();
        self.monitor
            .wait_until(timeout, move |t| {
                let rows = t.get(&table);
                let has = |u: &Uuid| rows.is_some_and(|r| r.contains_key(u.as_str()));
                present.iter().all(has) && !absent.iter().any(has)
            })
            .await
    }
}

fn holder(table: &'static str, uuid: &str, row: &ovn::Row) -> Holder {
    let groups = row
        .get(group_column(table))
        .and_then(|v| ovn::datum::set_from_json::<Uuid>(v).ok())
        .unwrap_or_default();
    Holder {
        table,
        uuid: Uuid::Real(uuid.into()),
        groups,
    }
}

/// The column of group references in a holder's table.
pub fn group_column(table: &str) -> &'static str {
    if table == LogicalSwitch::TABLE {
        logical_switch::LOAD_BALANCER_GROUP
    } else {
        logical_router::LOAD_BALANCER_GROUP
    }
}

/// The member column of a group.
pub const MEMBERS: &str = load_balancer_group::LOAD_BALANCER;
