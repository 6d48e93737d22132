//! The host end's Port/Interface in the local Open_vSwitch database.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ovn::datum::{self, str_map};
use ovn::ops::WaitUntil;
use ovn::{Client, ClientOptions, Cond, MonitorRequest, Mutation, Row, Txn};
use serde_json::{Value, json};

use crate::error::CniError;

pub const DB: &str = "Open_vSwitch";
pub use vpcnet_api::contract::external_ids::{CONTAINER_ID, IFNAME, NETWORK, POD};
pub const IFACE_ID: &str = "iface-id";
pub const OVN_INSTALLED: &str = "ovn-installed";

fn ovs(what: impl std::fmt::Display, e: ovn::Error) -> CniError {
    CniError::Ovs(format!("{what}: {e}"))
}

pub async fn connect(target: &str, timeout: Duration) -> Result<Client, CniError> {
    let opts = ClientOptions {
        request_timeout: timeout,
        inactivity_probe: None,
        ..Default::default()
    };
    Client::connect_with(target, opts)
        .await
        .map_err(|e| ovs(format_args!("connect {target}"), e))
}

/// One attachment: which container/interface a port belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

/// The string map of a row's `external_ids`.
pub fn external_ids(row: &Row) -> BTreeMap<String, String> {
    row.get("external_ids")
        .and_then(|v| datum::map_pairs(v).ok())
        .map(|p| {
            p.into_iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn uuid_of(row: &Row) -> Option<Value> {
    row.get("_uuid").cloned()
}

fn name_of(row: &Row) -> String {
    row.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Detach ports (by `_uuid` datum) from every bridge; OVSDB then removes the
/// unreferenced Port and Interface rows.
fn detach(t: &mut Txn, uuids: &[Value]) {
    for u in uuids {
        t.mutate(
            "Bridge",
            &[Cond::includes("ports", u.clone())],
            &[Mutation::delete("ports", u.clone())],
        );
    }
}

/// Ports named `host_name` or stamped with this attachment.
async fn ports_of(c: &Client, host_name: &str, a: &Attachment<'_>) -> Result<Vec<Row>, CniError> {
    let mut t = Txn::new(DB);
    let by_name = t.select(
        "Port",
        &[Cond::eq("name", host_name)],
        Some(&["_uuid", "name"]),
    );
    let by_ids = t.select(
        "Port",
        &[Cond::includes(
            "external_ids",
            str_map([(CONTAINER_ID, a.container_id), (IFNAME, a.ifname)]),
        )],
        Some(&["_uuid", "name"]),
    );
    let r = c.transact(t).await.map_err(|e| ovs("select ports", e))?;
    let mut rows = r.raw_rows(by_name);
    for row in r.raw_rows(by_ids) {
        if !rows.iter().any(|x| x.get("_uuid") == row.get("_uuid")) {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Add `host_name` to `bridge` with `external_ids:iface-id=<iface_id>`,
/// replacing any port left by an earlier attempt, in one transaction that
/// fails if the bridge does not exist.
pub async fn add_port(
    c: &Client,
    bridge: &str,
    host_name: &str,
    iface_id: &str,
    pod: &str,
    mac: &str,
    a: &Attachment<'_>,
) -> Result<(), CniError> {
    let stale: Vec<Value> = ports_of(c, host_name, a)
        .await?
        .iter()
        .filter_map(uuid_of)
        .collect();
    let mut t = Txn::new(DB);
    t.wait(
        "Bridge",
        &[Cond::eq("name", bridge)],
        &["name"],
        WaitUntil::NotEqual,
        vec![],
        Some(0),
    );
    detach(&mut t, &stale);
    let ours = [
        (CONTAINER_ID, a.container_id),
        (IFNAME, a.ifname),
        (NETWORK, a.network),
        (POD, pod),
    ];
    let mut iface = Row::new();
    iface.insert("name".into(), json!(host_name));
    let mut ids: Vec<(&str, &str)> = vec![
        (IFACE_ID, iface_id),
        ("attached-mac", mac),
        ("iface-status", "active"),
    ];
    ids.extend(ours);
    iface.insert("external_ids".into(), str_map(ids));
    let iface_uuid = t.insert("Interface", iface);
    let mut port = Row::new();
    port.insert("name".into(), json!(host_name));
    port.insert("interfaces".into(), iface_uuid.to_json());
    port.insert("external_ids".into(), str_map(ours));
    let port_uuid = t.insert("Port", port);
    t.mutate(
        "Bridge",
        &[Cond::eq("name", bridge)],
        &[Mutation::insert("ports", port_uuid.to_json())],
    );
    match c.transact(t).await {
        Ok(_) => Ok(()),
        Err(ovn::Error::Transaction {
            op_index: Some(0), ..
        }) => Err(CniError::Ovs(format!("bridge {bridge} does not exist"))),
        Err(e) => Err(ovs(format_args!("add port {host_name} to {bridge}"), e)),
    }
}

/// Remove the ports of an attachment (and any port named `host_name`);
/// returns how many were removed. Nothing to remove is success.
pub async fn del_port(c: &Client, host_name: &str, a: &Attachment<'_>) -> Result<usize, CniError> {
    let uuids: Vec<Value> = ports_of(c, host_name, a)
        .await?
        .iter()
        .filter_map(uuid_of)
        .collect();
    if uuids.is_empty() {
        return Ok(0);
    }
    let mut t = Txn::new(DB);
    detach(&mut t, &uuids);
    c.transact(t)
        .await
        .map_err(|e| ovs(format_args!("delete port {host_name}"), e))?;
    Ok(uuids.len())
}

/// The Interface row named `name`.
pub async fn interface(c: &Client, name: &str) -> Result<Option<Row>, CniError> {
    let mut t = Txn::new(DB);
    let i = t.select("Interface", &[Cond::eq("name", name)], None);
    let r = c
        .transact(t)
        .await
        .map_err(|e| ovs("select interface", e))?;
    Ok(r.raw_rows(i).into_iter().next())
}

/// Remove every port of `network` whose (container ID, ifname) is not in
/// `valid`; returns the names of the removed ports.
pub async fn gc(
    c: &Client,
    network: &str,
    valid: &HashSet<(String, String)>,
) -> Result<Vec<String>, CniError> {
    let mut t = Txn::new(DB);
    let i = t.select(
        "Port",
        &[Cond::includes(
            "external_ids",
            str_map([(NETWORK, network)]),
        )],
        Some(&["_uuid", "name", "external_ids"]),
    );
    let rows = c
        .transact(t)
        .await
        .map_err(|e| ovs("select ports", e))?
        .raw_rows(i);
    let stale: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            let ids = external_ids(r);
            match (ids.get(CONTAINER_ID), ids.get(IFNAME)) {
                (Some(cid), Some(ifn)) => !valid.contains(&(cid.clone(), ifn.clone())),
                _ => false,
            }
        })
        .collect();
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let mut t = Txn::new(DB);
    detach(
        &mut t,
        &stale.iter().filter_map(|r| uuid_of(r)).collect::<Vec<_>>(),
    );
    c.transact(t)
        .await
        .map_err(|e| ovs("delete stale ports", e))?;
    Ok(stale.iter().map(|r| name_of(r)).collect())
}

/// Wait until ovn-controller marks the Interface `name` with
/// `external_ids:ovn-installed="true"` (its flows are in place).
pub async fn wait_ovn_installed(
    c: &Client,
    name: &str,
    iface_id: &str,
    timeout: Duration,
) -> Result<(), CniError> {
    let req = MonitorRequest::table("Interface")
        .columns(&["name", "external_ids", "ofport", "error"])
        .conditions(vec![Cond::eq("name", name)]);
    let m = c
        .monitor(DB, vec![req])
        .await
        .map_err(|e| ovs("monitor Interface", e))?;
    let res = m
        .wait_until(timeout, |tables| {
            tables.get("Interface").is_some_and(|rows| {
                rows.values().any(|r| {
                    name_of(r) == name
                        && external_ids(r).get(OVN_INSTALLED).map(String::as_str) == Some("true")
                })
            })
        })
        .await;
    let last = m.rows("Interface").into_iter().next();
    let _ = m.cancel().await;
    match res {
        Ok(()) => Ok(()),
        Err(_) => {
            let err = last
                .as_ref()
                .and_then(|r| r.get("error"))
                .map(Value::to_string)
                .unwrap_or_default();
            Err(CniError::OvnNotInstalled {
                msg: format!(
                    "OVS interface {name} (iface-id {iface_id}) not marked ovn-installed within {}s",
                    timeout.as_secs()
                ),
                details: format!(
                    "ovn-controller sets external_ids:ovn-installed=\"true\" once the Logical_Switch_Port {iface_id} is bound on this chassis; check that ovn-controller runs and that the operator created the port (interface error column: {err})"
                ),
            })
        }
    }
}
