//! Garbage collection: OVN rows whose owner no longer exists, and addresses
//! whose holder no longer exists, are removed at start and periodically, so
//! a crash or a missed delete leaves no trace. The runtime reads the rows
//! and holders; each service judges the owners and holders of its kinds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ovn::Txn;
use ovn::owner::OWNER_KEY;

use crate::service::{Ids, Service};
use crate::{Result, Runtime};

/// `(owner id, external_ids)` of rows.
pub type OwnedRows = Vec<(String, Ids)>;

/// `(owner id, external_ids)` of every row of `table` that has an owner.
pub async fn owned_rows(nb: &ovn::Client, table: &str) -> Result<OwnedRows> {
    let mut txn = Txn::new(ovn::nb::SCHEMA_NAME);
    txn.select(table, &[], Some(&[ovn::owner::EXTERNAL_IDS]));
    let res = nb.transact(txn).await?;
    Ok(res
        .raw_rows(0)
        .iter()
        .filter_map(|r| {
            let ids: Ids = r
                .get(ovn::owner::EXTERNAL_IDS)
                .and_then(|v| ovn::datum::map_from_json(v).ok())?;
            ids.get(OWNER_KEY).cloned().map(|o| (o, ids))
        })
        .collect())
}

/// The kind of an owner id (`Kind/namespace/name`).
pub fn owner_kind(owner: &str) -> &str {
    owner.split('/').next().unwrap_or_default()
}

/// What one collection removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Owners whose rows were deleted.
    pub owners: Vec<String>,
    /// Holders whose addresses were freed.
    pub holders: Vec<String>,
}

/// Owners of rows in `rows`, grouped by the service whose kind they are
/// (pure). Owners of kinds no service claims are left alone: OVN may be
/// shared with other systems.
pub fn by_service(rows: OwnedRows, kinds: &[&[&str]]) -> Vec<BTreeMap<String, Ids>> {
    let mut out = vec![BTreeMap::new(); kinds.len()];
    for (owner, ids) in rows {
        if let Some(i) = kinds.iter().position(|k| k.contains(&owner_kind(&owner))) {
            out[i].entry(owner).or_insert(ids);
        }
    }
    out
}

/// One pass over rows and holders.
pub async fn collect(rt: &Runtime, services: &[Arc<dyn Service>]) -> Result<Collected> {
    // Rows first, owners second (inside each service): a row written after
    // this read is not judged, and an owner created before it is found.
    let tables: BTreeSet<&str> = services
        .iter()
        .flat_map(|s| s.tables().iter().copied())
        .collect();
    let mut rows = Vec::new();
    for table in tables {
        rows.extend(owned_rows(&rt.nb, table).await?);
    }
    let kinds: Vec<&[&str]> = services.iter().map(|s| s.owner_kinds()).collect();
    let mut out = Collected::default();
    for (service, owners) in services.iter().zip(by_service(rows, &kinds)) {
        if !owners.is_empty() {
            out.owners.extend(service.collect(rt, &owners).await?);
        }
    }
    // Holders first, objects second, for the same reason.
    let holders = rt.ipam.lock().await.holders();
    for service in services {
        let mine: Vec<_> = holders
            .iter()
            .filter(|h| service.holder_kinds().contains(&h.kind()))
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let gone = service.orphaned_holders(rt, &mine).await?;
        if !gone.is_empty() {
            let mut ipam = rt.ipam.lock().await;
            for h in &gone {
                ipam.release_everywhere(h);
                out.holders.push(h.to_string());
            }
        }
    }
    if !out.owners.is_empty() || !out.holders.is_empty() {
        tracing::info!(owners = ?out.owners, holders = ?out.holders, "collected what deleted objects left");
    }
    Ok(out)
}

/// Collects every `period` until shutdown.
pub async fn run(rt: Arc<Runtime>, services: Vec<Arc<dyn Service>>, period: Duration) {
    let stop = rt.shutting_down();
    let work = async {
        loop {
            tokio::time::sleep(period).await;
            if let Err(e) = collect(&rt, &services).await {
                tracing::warn!(error = %e, "garbage collection failed; retrying next period");
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_judges_only_owners_of_its_kinds() {
        let ids = Ids::new();
        let rows: OwnedRows = [
            "Pod/a/web",
            "Vpc//v",
            "VpcNatGateway//g",
            "Other//x",
            "Pod/a/web",
        ]
        .iter()
        .map(|o| (o.to_string(), ids.clone()))
        .collect();
        let groups = by_service(rows, &[&["Pod", "Vpc"], &["VpcNatGateway"]]);
        assert_eq!(
            groups[0].keys().collect::<Vec<_>>(),
            vec!["Pod/a/web", "Vpc//v"]
        );
        assert_eq!(
            groups[1].keys().collect::<Vec<_>>(),
            vec!["VpcNatGateway//g"]
        );
    }
}
