//! Garbage collection: OVN rows whose owner no longer exists are removed,
//! at start and periodically, so a crash or a missed delete leaves no trace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use ovn::owner::OWNER_KEY;
use ovn::{Owner, Txn};
use vpcnet_api::{Subnet, Vpc};

use crate::pod::rebuild::OwnedRows;
use crate::{Context, Result};

/// Tables the operator writes rows into.
pub const TABLES: &[&str] = &[
    "Logical_Router",
    "Logical_Router_Port",
    "Logical_Router_Static_Route",
    "Logical_Router_Policy",
    "Logical_Switch",
    "Logical_Switch_Port",
];

/// `(owner id, external_ids)` of every row of `table` that has an owner.
pub async fn owned_rows(nb: &ovn::Client, table: &str) -> Result<OwnedRows> {
    let mut txn = Txn::new(ovn::nb::SCHEMA_NAME);
    txn.select(table, &[], Some(&["external_ids"]));
    let res = nb.transact(txn).await?;
    Ok(res
        .raw_rows(0)
        .iter()
        .filter_map(|r| {
            let ids: BTreeMap<String, String> = r
                .get("external_ids")
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
    }
}
