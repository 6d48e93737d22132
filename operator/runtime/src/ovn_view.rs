//! A live, monitor-fed view of the OVN rows other reconcilers link to
//! (routers and switches by name), so linking a child needs no round trip.

use std::time::Duration;

use ovn::nb::{LogicalRouter, LogicalSwitch, logical_router, logical_switch};
use ovn::{Client, Monitor, MonitorRequest, Table, Uuid};

/// Routers and switches of the Northbound DB, kept current by a monitor.
pub struct OvnView {
    monitor: Monitor,
}

impl OvnView {
    /// Starts monitoring the name and external_ids of routers and switches.
    pub async fn start(nb: &Client) -> ovn::Result<Self> {
        let monitor = nb
            .monitor(
                ovn::nb::SCHEMA_NAME,
                vec![
                    MonitorRequest::of::<LogicalRouter>()
                        .columns(&[logical_router::NAME, logical_router::EXTERNAL_IDS]),
                    MonitorRequest::of::<LogicalSwitch>()
                        .columns(&[logical_switch::NAME, logical_switch::EXTERNAL_IDS]),
                ],
            )
            .await?;
        Ok(Self { monitor })
    }

    /// The uuid of the router called `name`.
    pub fn router(&self, name: &str) -> Option<Uuid> {
        self.find(LogicalRouter::TABLE, name)
    }

    /// The uuid of the switch called `name`.
    pub fn switch(&self, name: &str) -> Option<Uuid> {
        self.find(LogicalSwitch::TABLE, name)
    }

    /// Waits until a row named `name` shows up in `table` (after our own write).
    pub async fn wait_for(&self, table: &str, name: &str, timeout: Duration) -> ovn::Result<()> {
        let name = name.to_string();
        let table = table.to_string();
        self.monitor
            .wait_until(timeout, |t| {
                t.get(&table).is_some_and(|rows| {
                    rows.values()
                        .any(|r| r.get("name").and_then(|v| v.as_str()) == Some(name.as_str()))
                })
            })
            .await
    }

    fn find(&self, table: &str, name: &str) -> Option<Uuid> {
        self.monitor.with(|t| {
            t.get(table)?
                .iter()
                .find(|(_, r)| r.get("name").and_then(|v| v.as_str()) == Some(name))
                .map(|(uuid, _)| Uuid::Real(uuid.clone()))
        })
    }
}
