//! The IPAM behind its lock, exported as `vpcnet_ipam_addresses`: whoever
//! may have changed the pools (took the lock mutably) updates the gauges
//! as they let go, so the series follow every allocation, release and
//! resize with no polling and no lock taken at scrape time.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use vpcnet_ipam::Ipam;

use crate::metrics::Metrics;

/// The address pools of all subnets, behind one lock.
pub struct SharedIpam {
    ipam: Mutex<Ipam>,
    metrics: Arc<Metrics>,
}

impl SharedIpam {
    /// Empty pools, exported into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            ipam: Mutex::default(),
            metrics,
        }
    }

    /// Waits for the pools.
    pub async fn lock(&self) -> IpamGuard<'_> {
        IpamGuard {
            ipam: self.ipam.lock().await,
            metrics: &self.metrics,
            changed: false,
        }
    }
}

/// The locked pools; reads through it change nothing, a mutable borrow
/// re-exports the pools when the guard goes.
pub struct IpamGuard<'a> {
    ipam: MutexGuard<'a, Ipam>,
    metrics: &'a Metrics,
    changed: bool,
}

impl Deref for IpamGuard<'_> {
    type Target = Ipam;

    fn deref(&self) -> &Ipam {
        &self.ipam
    }
}

impl DerefMut for IpamGuard<'_> {
    fn deref_mut(&mut self) -> &mut Ipam {
        self.changed = true;
        &mut self.ipam
    }
}

impl Drop for IpamGuard<'_> {
    fn drop(&mut self) {
        // Still under the lock: the reading is consistent.
        if self.changed {
            self.metrics.pools(&self.ipam);
        }
    }
}

#[cfg(test)]
mod tests {
    use vpcnet_ipam::Holder;

    use super::*;

    fn sample(text: &str, subnet: &str, state: &str) -> Option<i64> {
        let prefix = format!(r#"vpcnet_ipam_addresses{{subnet="{subnet}",state="{state}"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn pool_usage_follows_allocations_releases_and_removals() {
        let metrics = Arc::new(Metrics::default());
        let ipam = SharedIpam::new(metrics.clone());
        {
            let mut pools = ipam.lock().await;
            // A /28: 14 hosts, one of them the gateway.
            pools
                .upsert("a", "10.0.1.0/28", Some("10.0.1.1"), &[])
                .unwrap();
            pools.upsert("b", "10.0.2.0/24", None, &[]).unwrap();
            let pool = pools.pool_mut("a").unwrap();
            pool.allocate(&Holder::pod("t", "x")).unwrap();
            pool.allocate(&Holder::pod("t", "y")).unwrap();
        }
        let text = metrics.render();
        let (used, free) = (sample(&text, "a", "used"), sample(&text, "a", "free"));
        let pools = ipam.lock().await;
        let pool = pools.pool("a").unwrap();
        assert_eq!(used, Some(pool.using() as i64), "{text}");
        assert_eq!(free, Some(pool.available() as i64), "{text}");
        assert_eq!(used, Some(2));
        assert_eq!(free, Some(11), "14 hosts less the gateway and two pods");
        assert_eq!(sample(&text, "b", "used"), Some(0));
        drop(pools);

        {
            let mut pools = ipam.lock().await;
            pools.release_everywhere(&Holder::pod("t", "x"));
            pools.remove("b");
        }
        let text = metrics.render();
        assert_eq!(sample(&text, "a", "used"), Some(1), "{text}");
        assert_eq!(sample(&text, "a", "free"), Some(12), "{text}");
        assert_eq!(
            sample(&text, "b", "used"),
            None,
            "a removed pool's series go"
        );
        assert_eq!(sample(&text, "b", "free"), None, "{text}");
    }

    #[tokio::test]
    async fn reading_the_pools_does_not_re_export_them() {
        let metrics = Arc::new(Metrics::default());
        let ipam = SharedIpam::new(metrics.clone());
        ipam.lock()
            .await
            .upsert("a", "10.0.1.0/28", None, &[])
            .unwrap();
        // Changed behind the guard's back: only a mutable borrow exports.
        metrics.ipam.clear();
        let _ = ipam.lock().await.usage();
        assert_eq!(sample(&metrics.render(), "a", "used"), None);
        let _ = ipam.lock().await.pool_mut("a");
        assert_eq!(sample(&metrics.render(), "a", "used"), Some(0));
    }
}
