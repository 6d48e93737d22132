//! Garbage collection: OVN rows whose owner no longer exists are removed,
//! at start and periodically, so a crash or a missed delete leaves no trace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use ovn::owner::{EXTERNAL_IDS, OWNER_KEY};
use ovn::{Owner, Txn};
use vpcnet_api::{IptablesEIP, Subnet, Vpc, VpcNatGateway};

use crate::pod::rebuild::OwnedRows;
use crate::{Context, Result};

/// Tables the operator writes rows into.
pub const TABLES: &[&str] = &[
    ovn::nb::logical_router::TABLE,
    ovn::nb::logical_router_port::TABLE,
    ovn::nb::logical_router_static_route::TABLE,
    ovn::nb::logical_router_policy::TABLE,
    ovn::nb::logical_switch::TABLE,
    ovn::nb::logical_switch_port::TABLE,
];

/// `(owner id, external_ids)` of every row of `table` that has an owner.
pub async fn owned_rows(nb: &ovn::Client, table: &str) -> Result<OwnedRows> {
    let mut txn = Txn::new(ovn::nb::SCHEMA_NAME);
    txn.select(table, &[], Some(&[EXTERNAL_IDS]));
    let res = nb.transact(txn).await?;
    Ok(res
        .raw_rows(0)
        .iter()
        .filter_map(|r| {
            let ids: BTreeMap<String, String> = r
                .get(EXTERNAL_IDS)
                .and_then(|v| ovn::datum::map_from_json(v).ok())?;
            ids.get(OWNER_KEY).cloned().map(|o| (o, ids))
        })
        .collect())
}

/// What one collection removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Owners whose rows were deleted.
    pub owners: Vec<String>,
}

/// The external-address holders (EIPs, gateways' net1) among `holders`
/// whose object is not in `eips` / `gateways` (pure). Pods are released
/// with their ports (and StatefulSet pods keep theirs across a restart), so
/// they are not judged here.
pub fn orphaned_holds(
    holders: &BTreeSet<String>,
    eips: &BTreeSet<String>,
    gateways: &BTreeSet<String>,
) -> Vec<String> {
    holders
        .iter()
        .filter(|h| {
            let eip = h.strip_prefix("eip/").is_some_and(|k| !eips.contains(k));
            let gw = h
                .strip_prefix("natgw/")
                .is_some_and(|k| !gateways.contains(k));
            eip || gw
        })
        .cloned()
        .collect()
}

/// Frees the addresses of EIPs and gateways that are gone without their
/// finalizer having run (it was stripped, or the object was force-deleted):
/// such an address would otherwise stay taken until the next restart.
pub async fn collect_holds(ctx: &Context) -> Result<Vec<String>> {
    // Holders first, objects second: an object that took an address after
    // this read is not judged, and one that had it is in the lists below.
    let holders = ctx.ipam.lock().await.holders();
    let eips: BTreeSet<String> = Api::<IptablesEIP>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|e| format!("{}/{}", e.namespace().unwrap_or_default(), e.name_any()))
        .collect();
    let gateways: BTreeSet<String> = Api::<VpcNatGateway>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|g| g.name_any())
        .collect();
    let gone = orphaned_holds(&holders, &eips, &gateways);
    if !gone.is_empty() {
        let mut ipam = ctx.ipam.lock().await;
        for h in &gone {
            ipam.release_everywhere(h);
        }
        tracing::info!(holders = ?gone, "released addresses of deleted EIPs and gateways");
    }
    Ok(gone)
}

/// Deletes the rows of every owner that is gone.
pub async fn collect(ctx: &Context) -> Result<Collected> {
    // Rows first, owners second: a row written after this read is not
    // judged, and an owner created before it is in the lists below.
    let mut rows = Vec::new();
    for table in TABLES {
        rows.extend(owned_rows(&ctx.nb, table).await?);
    }
    let pods: BTreeSet<String> = Api::<Pod>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|p| format!("Pod/{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect();
    let subnets: BTreeSet<String> = Api::<Subnet>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|s| format!("Subnet//{}", s.name_any()))
        .collect();
    let vpcs: BTreeSet<String> = Api::<Vpc>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|v| format!("Vpc//{}", v.name_any()))
        .collect();

    let mut gone: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (owner, ids) in rows {
        let alive = match owner.split('/').next() {
            Some("Pod") => pods.contains(&owner),
            Some("Subnet") => subnets.contains(&owner),
            Some("Vpc") => vpcs.contains(&owner),
            // Kinds of other controllers are theirs to collect.
            _ => true,
        };
        if !alive {
            gone.entry(owner).or_insert(ids);
        }
    }
    let mut out = Collected::default();
    for (owner, ids) in gone {
        let parts: Vec<&str> = owner.splitn(3, '/').collect();
        let [kind, ns, name] = parts[..] else {
            continue;
        };
        if kind == "Pod" {
            let sts = ids.get(crate::pod::STATEFULSET_KEY).map(String::as_str);
            if !crate::pod::deletion::release(ctx, ns, name, sts).await? {
                continue;
            }
        } else {
            ovn::owner::delete_owned(&ctx.nb, &Owner::new(kind, ns, name)).await?;
        }
        out.owners.push(owner);
    }
    if !out.owners.is_empty() {
        tracing::info!(owners = ?out.owners, "collected rows of deleted objects");
    }
    Ok(out)
}

/// Collects every `period` for as long as the operator runs.
pub async fn run(ctx: Arc<Context>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        if let Err(e) = collect(&ctx).await {
            tracing::warn!(error = %e, "garbage collection failed; retrying next period");
        }
        if let Err(e) = collect_holds(&ctx).await {
            tracing::warn!(error = %e, "releasing orphaned addresses failed; retrying next period");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_holds_of_vanished_eips_and_gateways_are_orphans() {
        let holders = set(&[
            "eip/a/kept",
            "eip/a/stripped",
            "natgw/gw",
            "natgw/gone",
            "pod/a/web",
        ]);
        let orphans = orphaned_holds(&holders, &set(&["a/kept"]), &set(&["gw"]));
        assert_eq!(orphans, vec!["eip/a/stripped", "natgw/gone"]);
    }
}
