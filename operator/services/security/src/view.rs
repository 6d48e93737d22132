//! The security service's live view of the Northbound rows it plans
//! against: Port_Groups, ACLs, and the names and subnets of switch ports
//! (to add a pod's port to a group by reference). Planning reads this
//! cache, so a change costs one write transaction and no read; guards in
//! that transaction catch a stale cache.

use std::collections::BTreeSet;
use std::time::Duration;

use ovn::nb::{Acl, LogicalSwitchPort, PortGroup, logical_switch_port};
use ovn::owner::{OWNER_KEY, external_id, with_uuid};
use ovn::{Client, Monitor, MonitorRequest, Table, Uuid};
use serde_json::Value;
use vpcnet_api::contract::external_ids::{SG_NAMESPACE, SUBNET};
use vpcnet_api::contract::naming::{SG_BASE_PORT_GROUP_PREFIX, SG_PORT_GROUP_PREFIX};

use crate::{BASE_OWNER_KIND, GROUP_OWNER_KIND};

/// A pod's switch port as the view knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Its row.
    pub uuid: Uuid,
    /// The subnet the network service placed it on.
    pub subnet: Option<String>,
}

/// A monitor of the tables the security service writes or refers to.
pub struct SgView {
    monitor: Monitor,
}

fn owner_kind(row: &ovn::Row) -> Option<&str> {
    external_id(row, OWNER_KEY)?.split('/').next()
}

impl SgView {
    /// Starts the monitor.
    pub async fn start(nb: &Client) -> ovn::Result<Self> {
        let monitor = nb
            .monitor(
                ovn::nb::SCHEMA_NAME,
                vec![
                    MonitorRequest::of::<PortGroup>(),
                    MonitorRequest::of::<Acl>(),
                    MonitorRequest::of::<LogicalSwitchPort>()
                        .columns(&[logical_switch_port::NAME, logical_switch_port::EXTERNAL_IDS]),
                ],
            )
            .await?;
        Ok(Self { monitor })
    }

    fn port_groups(&self, keep: impl Fn(&ovn::Row) -> bool) -> Vec<PortGroup> {
        self.monitor.with(|t| {
            t.get(PortGroup::TABLE)
                .into_iter()
                .flatten()
                .filter(|(_, r)| keep(r))
                .filter_map(|(u, r)| PortGroup::from_row(&with_uuid(u, r)).ok())
                .collect()
        })
    }

    /// The Port_Group called `name`.
    pub fn port_group(&self, name: &str) -> Option<PortGroup> {
        self.port_groups(|r| r.get("name").and_then(Value::as_str) == Some(name))
            .into_iter()
            .next()
    }

    /// Every SecurityGroup Port_Group of ours.
    pub fn groups(&self) -> Vec<PortGroup> {
        self.port_groups(|r| {
            owner_kind(r) == Some(GROUP_OWNER_KIND)
                && r.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with(SG_PORT_GROUP_PREFIX))
        })
    }

    /// The SecurityGroup Port_Groups of namespace `ns`.
    pub fn groups_of(&self, ns: &str) -> Vec<PortGroup> {
        self.groups()
            .into_iter()
            .filter(|g| g.external_ids.get(SG_NAMESPACE).map(String::as_str) == Some(ns))
            .collect()
    }

    /// Every subnet base Port_Group of ours.
    pub fn bases(&self) -> Vec<PortGroup> {
        self.port_groups(|r| {
            owner_kind(r) == Some(BASE_OWNER_KIND)
                && r.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with(SG_BASE_PORT_GROUP_PREFIX))
        })
    }

    /// The Port_Groups of ours (groups and bases) that hold `port`; the
    /// rows are decoded only for those (a port is in a few of thousands).
    pub fn holding(&self, port: &Uuid) -> Vec<PortGroup> {
        let atom = port.to_json();
        self.port_groups(|r| {
            matches!(owner_kind(r), Some(k) if k == GROUP_OWNER_KIND || k == BASE_OWNER_KIND)
                && r.get(ovn::nb::port_group::PORTS)
                    .is_some_and(|v| contains(v, &atom))
        })
    }

    /// The ACLs owned by `owner` (an `ovn::Owner` id).
    pub fn acls(&self, owner: &str) -> Vec<Acl> {
        self.monitor.with(|t| {
            t.get(Acl::TABLE)
                .into_iter()
                .flatten()
                .filter(|(_, r)| external_id(r, OWNER_KEY) == Some(owner))
                .filter_map(|(u, r)| Acl::from_row(&with_uuid(u, r)).ok())
                .collect()
        })
    }

    /// Every ACL of ours (of either owner kind).
    pub fn all_acls(&self) -> Vec<Acl> {
        self.monitor.with(|t| {
            t.get(Acl::TABLE)
                .into_iter()
                .flatten()
                .filter(|(_, r)| {
                    matches!(owner_kind(r), Some(k) if k == GROUP_OWNER_KIND || k == BASE_OWNER_KIND)
                })
                .filter_map(|(u, r)| Acl::from_row(&with_uuid(u, r)).ok())
                .collect()
        })
    }

    /// The switch port called `name`.
    pub fn port(&self, name: &str) -> Option<Port> {
        self.monitor.with(|t| {
            t.get(LogicalSwitchPort::TABLE)?
                .iter()
                .find(|(_, r)| r.get("name").and_then(Value::as_str) == Some(name))
                .map(|(u, r)| Port {
                    uuid: Uuid::Real(u.clone()),
                    subnet: external_id(r, SUBNET).map(str::to_string),
                })
        })
    }

    /// Waits (up to `timeout`) until the cache shows `present` rows (of
    /// Port_Group or ACL) and none of `absent`: after a write, so the next
    /// plan reads it.
    pub async fn settle(
        &self,
        present: &[Uuid],
        absent: &[Uuid],
        timeout: Duration,
    ) -> ovn::Result<()> {
        if present.is_empty() && absent.is_empty() {
            return Ok(());
        }
        let (present, absent) = (present.to_vec(), absent.to_vec());
        self.monitor
            .wait_until(timeout, move |t| {
                let has = |u: &Uuid| {
                    [PortGroup::TABLE, Acl::TABLE]
                        .iter()
                        .any(|tb| t.get(*tb).is_some_and(|r| r.contains_key(u.as_str())))
                };
                present.iter().all(has) && !absent.iter().any(has)
            })
            .await
    }

    /// Waits (up to `timeout`) until `port` is in exactly the Port_Groups
    /// `member_of` of `groups` (by uuid).
    pub async fn settle_membership(
        &self,
        port: &Uuid,
        groups: &[Uuid],
        member_of: &BTreeSet<Uuid>,
        timeout: Duration,
    ) -> ovn::Result<()> {
        let port = port.to_json();
        let (groups, member_of) = (groups.to_vec(), member_of.clone());
        self.monitor
            .wait_until(timeout, move |t| {
                let Some(pgs) = t.get(PortGroup::TABLE) else {
                    return member_of.is_empty();
                };
                groups.iter().all(|g| {
                    let has = pgs
                        .get(g.as_str())
                        .and_then(|r| r.get(ovn::nb::port_group::PORTS))
                        .is_some_and(|v| contains(v, &port));
                    has == member_of.contains(g)
                })
            })
            .await
    }
}

/// Whether an OVSDB set (or a single atom) holds `atom`.
fn contains(set: &Value, atom: &Value) -> bool {
    ovn::datum::set_elements(set).contains(&atom)
}
