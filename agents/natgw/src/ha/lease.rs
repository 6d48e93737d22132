//! The gateway's Lease, read and written with optimistic concurrency
//! (`resourceVersion`): of two replicas writing at once, one gets a
//! conflict. Every call is bounded, so a slow API server cannot hold the
//! loop past the renew deadline.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use vpcnet_api::contract::annotations as ann;

use super::elector::{Seen, Timing};

/// The Lease of one gateway.
pub struct Leases {
    api: Api<Lease>,
    name: String,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = kube::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

/// What the elector needs from a Lease (pure).
pub fn seen(l: &Lease) -> Seen {
    let holder = l
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty());
    let released_by = if holder.is_none() {
        l.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ann::PREVIOUS_HOLDER).cloned())
            .filter(|p| !p.is_empty())
    } else {
        None
    };
    Seen {
        holder,
        version: l.metadata.resource_version.clone().unwrap_or_default(),
        released_by,
    }
}

impl Leases {
    /// Lease `name` in `namespace` (created by the operator).
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Leases {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
        }
    }

    /// The Lease now, or None (not there yet, API away: try again later).
    pub async fn read(&self, limit: Duration) -> Option<(Seen, Lease)> {
        match bounded(limit, self.api.get_opt(&self.name)).await {
            Ok(Some(l)) => Some((seen(&l), l)),
            Ok(None) => {
                tracing::debug!(lease = %self.name, "no Lease yet");
                None
            }
            Err(e) => {
                tracing::warn!(lease = %self.name, "reading the Lease: {e}");
                None
            }
        }
    }

    async fn write(&self, l: &Lease, limit: Duration) -> Result<(), String> {
        bounded(
            limit,
            self.api.replace(&self.name, &PostParams::default(), l),
        )
        .await
        .map(|_| ())
    }

    /// Renews `l` (as read), which this replica holds.
    pub async fn renew(&self, mut l: Lease, limit: Duration) -> Result<(), String> {
        l.spec.get_or_insert_with(Default::default).renew_time = Some(now());
        self.write(&l, limit).await
    }

    /// Takes `l` (as read) for `me`, noting why and from whom.
    pub async fn acquire(
        &self,
        mut l: Lease,
        me: &str,
        cause: &str,
        previous: Option<&str>,
        timing: Timing,
    ) -> Result<(), String> {
        let spec = l.spec.get_or_insert_with(LeaseSpec::default);
        let t = now();
        spec.holder_identity = Some(me.to_string());
        spec.acquire_time = Some(t.clone());
        spec.renew_time = Some(t);
        // Whole seconds for readers of the Lease; the agents use the
        // duration they were given in milliseconds.
        spec.lease_duration_seconds = Some(timing.duration.as_secs_f64().ceil() as i32);
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        let a = l.metadata.annotations.get_or_insert_with(Default::default);
        a.insert(ann::FAILOVER_CAUSE.into(), cause.into());
        a.insert(
            ann::PREVIOUS_HOLDER.into(),
            previous.unwrap_or_default().into(),
        );
        self.write(&l, timing.renew_deadline).await
    }

    /// Gives the Lease up if `me` holds it.
    pub async fn release(&self, me: &str, limit: Duration) -> Result<(), String> {
        let Some((s, mut l)) = self.read(limit).await else {
            return Err("the Lease could not be read".into());
        };
        if s.holder.as_deref() != Some(me) {
            return Ok(());
        }
        let spec = l.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = None;
        spec.renew_time = Some(now());
        l.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ann::PREVIOUS_HOLDER.into(), me.into());
        self.write(&l, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_lease_names_who_released_it() {
        let mut l = Lease::default();
        l.metadata.resource_version = Some("7".into());
        l.metadata.annotations =
            Some([(ann::PREVIOUS_HOLDER.to_string(), "gw-0".to_string())].into());
        let s = seen(&l);
        assert_eq!((s.holder, s.released_by.as_deref()), (None, Some("gw-0")));
        l.spec = Some(LeaseSpec {
            holder_identity: Some("gw-1".into()),
            ..Default::default()
        });
        let s = seen(&l);
        assert_eq!((s.holder.as_deref(), s.released_by), (Some("gw-1"), None));
        assert_eq!(s.version, "7");
    }
}
