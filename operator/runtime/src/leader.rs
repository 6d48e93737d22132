//! One operator at a time. IPAM lives in the operator's memory, so two
//! running operators (a rollout that overlaps, a node cut off from the
//! cluster while its pod still runs) would hand out the same address twice.
//! A `coordination.k8s.io` Lease decides who may reconcile; the others wait.
//!
//! Expiry is judged on this process's own monotonic clock (how long the
//! record has stood unchanged since we first saw it), never by comparing the
//! holder's `renewTime` with our wall clock, so clock skew between nodes
//! cannot make two leaders.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// The Lease every operator competes for, in the operator's namespace.
pub const LEASE_NAME: &str = "vpcnet-operator";

/// What to do with the lease record as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Free or expired: take it over.
    Take,
    /// Ours: renew it.
    Renew,
    /// Someone else's and alive: wait.
    Wait {
        /// Who holds it.
        holder: String,
    },
}

/// Judges a lease held by `holder` whose record has stood unchanged for
/// `unchanged_for`, against a lease duration of `duration`.
pub fn judge(
    holder: Option<&str>,
    me: &str,
    unchanged_for: Duration,
    duration: Duration,
) -> Verdict {
    match holder.filter(|h| !h.is_empty()) {
        None => Verdict::Take,
        Some(h) if h == me => Verdict::Renew,
        Some(_) if unchanged_for >= duration => Verdict::Take,
        Some(h) => Verdict::Wait {
            holder: h.to_string(),
        },
    }
}

/// The record as another candidate sees it change: holder and renewal.
type Record = (Option<String>, Option<String>);

/// A contender for the operator's Lease.
pub struct Candidate {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The last record read and when it was first seen in that state.
    observed: Option<(Record, Instant)>,
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// Another candidate holds the lease now.
    #[error("the lease {0} is now held by {1}")]
    TakenOver(String, String),
    /// Renewals failed for longer than the renew deadline.
    #[error("could not renew the lease {lease} for {secs} s: {error}")]
    NotRenewed {
        /// The lease.
        lease: String,
        /// How long renewals failed.
        secs: u64,
        /// The last error.
        error: String,
    },
}

impl Candidate {
    /// A candidate named `identity` for Lease `name` in `api`'s namespace.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Candidate {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            observed: None,
        }
    }

    /// One round: takes or renews the lease when it may. `Ok(true)` when
    /// this candidate holds it afterwards; otherwise [`Candidate::holder`]
    /// says who does.
    pub async fn try_lead(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, true)),
            };
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record: Record = (
            spec.holder_identity.clone(),
            spec.renew_time.as_ref().map(|t| t.0.to_string()),
        );
        let since = match &self.observed {
            Some((seen, since)) if *seen == record => *since,
            _ => {
                self.observed = Some((record, now));
                now
            }
        };
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.duration);
        let verdict = judge(
            spec.holder_identity.as_deref(),
            &self.identity,
            now - since,
            duration,
        );
        if let Verdict::Wait { .. } = verdict {
            return Ok(false);
        }
        lease.spec = Some(self.spec(Some(&spec), verdict == Verdict::Take));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else wrote first: their record stands.
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The holder of the lease as last read.
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|((h, _), _)| h.as_deref())
            .filter(|h| !h.is_empty())
    }

    /// Waits until this candidate leads, retrying every third of the lease
    /// duration and logging who holds it whenever that changes.
    pub async fn acquire(&mut self) {
        let mut reported: Option<String> = None;
        loop {
            match self.try_lead().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "leading");
                    return;
                }
                Ok(false) => {
                    let holder = self.holder().map(str::to_string);
                    if holder != reported {
                        tracing::info!(lease = %self.name, holder = ?holder, "waiting for the lease");
                        reported = holder;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "reading the lease failed")
                }
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the lease every third of its duration for as long as this
    /// candidate keeps it; returns why it stopped leading. Renewals that fail
    /// for two thirds of the duration count as lost, so this process stops
    /// before any other candidate can judge the lease expired.
    pub async fn hold(&mut self) -> Lost {
        let deadline = self.duration * 2 / 3;
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_lead().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    return Lost::TakenOver(
                        self.name.clone(),
                        self.holder().unwrap_or("nobody").to_string(),
                    );
                }
                Err(e) if last_renewed.elapsed() >= deadline => {
                    return Lost::NotRenewed {
                        lease: self.name.clone(),
                        secs: last_renewed.elapsed().as_secs(),
                        error: e.to_string(),
                    };
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "renewing the lease failed; retrying")
                }
            }
        }
    }

    /// Hands the lease back so the next operator need not wait for it to
    /// expire (a clean shutdown, e.g. a rollout).
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let mine = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !mine {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "lease released"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "releasing the lease failed"),
        }
    }

    /// The spec this candidate writes: a takeover stamps a new acquire time
    /// and counts a transition; a renewal keeps both; `previous` is `None`
    /// when the lease is being created.
    fn spec(&self, previous: Option<&LeaseSpec>, takeover: bool) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        // Creating the lease is not a transition from another holder.
        let transitions = previous.map_or(0, |p| {
            p.lease_transitions.unwrap_or(0) + i32::from(takeover)
        });
        let previous = previous.cloned().unwrap_or_default();
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            renew_time: Some(now.clone()),
            acquire_time: if takeover {
                Some(now)
            } else {
                previous.acquire_time
            },
            lease_transitions: Some(transitions),
            ..previous
        }
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn a_free_lease_is_taken() {
        assert_eq!(judge(None, "a", Duration::ZERO, D), Verdict::Take);
        assert_eq!(judge(Some(""), "a", Duration::ZERO, D), Verdict::Take);
    }

    #[test]
    fn our_own_lease_is_renewed_however_old() {
        assert_eq!(judge(Some("a"), "a", D * 10, D), Verdict::Renew);
    }

    #[test]
    fn a_live_lease_of_another_is_left_alone() {
        assert_eq!(
            judge(Some("b"), "a", D - Duration::from_millis(1), D),
            Verdict::Wait { holder: "b".into() }
        );
    }

    #[test]
    fn a_lease_unchanged_for_its_duration_is_taken_over() {
        assert_eq!(judge(Some("b"), "a", D, D), Verdict::Take);
    }
}
