//! Triggers a Subnet's reconcile when its address count moves, so
//! `v4usingIPs`/`v4availableIPs` follow pods, gateways and EIPs within about
//! a second instead of waiting for the next periodic requeue.
//!
//! Allocations happen in several reconcilers (pods, gateways, EIPs); watching
//! the pools' counts in one place keeps every allocating path from having to
//! remember to notify the Subnet controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;
use vpcnet_api::Subnet;

use crate::Ctx as Context;

/// Subnets whose count differs between two readings (new pools included;
/// removed pools are left to the Subnet's own deletion).
pub fn changed(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> Vec<String> {
    now.iter()
        .filter(|(name, n)| before.get(*name) != Some(n))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Every `period`, the subnets whose address count changed since the last
/// reading.
pub fn changes(ctx: Arc<Context>, period: Duration) -> impl Stream<Item = ObjectRef<Subnet>> {
    let state = (ctx, BTreeMap::new(), tokio::time::interval(period));
    futures::stream::unfold(state, |(ctx, before, mut tick)| async move {
        tick.tick().await;
        let now = ctx.ipam.lock().await.usage();
        let refs: Vec<ObjectRef<Subnet>> = changed(&before, &now)
            .iter()
            .map(|n| ObjectRef::new(n))
            .collect();
        Some((futures::stream::iter(refs), (ctx, now, tick)))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn only_subnets_whose_count_moved_are_named() {
        let before = counts(&[("a", 3), ("b", 5), ("gone", 1)]);
        let now = counts(&[("a", 3), ("b", 4), ("new", 0)]);
        assert_eq!(changed(&before, &now), vec!["b", "new"]);
    }

    #[test]
    fn an_unchanged_reading_names_nothing() {
        let c = counts(&[("a", 3), ("b", 5)]);
        assert!(changed(&c, &c).is_empty());
    }
}
