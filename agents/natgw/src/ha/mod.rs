//! Two replicas: an active and a standby. Both apply the whole NAT state;
//! only the holder of the gateway's Lease has the EIPs on the external leg
//! and the shared LAN address (the VPC's next hop) on the LAN leg, with a
//! lifetime it keeps refreshing, so they go by themselves soon after its
//! agent dies (before the standby may take over; see `elector`).
//! Connection state follows through `conntrackd`.

pub mod conntrackd;
pub mod elector;
pub mod lease;

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::apply::Worker;
use crate::http::Shared;
use elector::{Elector, Step, Timing};

/// What the HA loop needs to know.
#[derive(Clone, Debug)]
pub struct HaConfig {
    /// The pods' namespace (the Lease is there too).
    pub namespace: String,
    /// The Lease's name.
    pub lease: String,
    /// This pod's name: the holder identity.
    pub me: String,
    /// The other replica's pod name.
    pub peer: Option<String>,
    /// The Lease duration.
    pub duration: Duration,
    /// The LAN interface (sync runs on it).
    pub lan_iface: String,
    /// This replica's own LAN address.
    pub lan_ip: Ipv4Addr,
    /// The iptables flavour (for the sync port's guard).
    pub iptables: String,
}

/// The other replica of StatefulSet pod `me` (`<name>-0` <-> `<name>-1`).
pub fn peer_of(me: &str) -> Option<String> {
    let (base, ord) = me.rsplit_once('-')?;
    match ord {
        "0" => Some(format!("{base}-1")),
        "1" => Some(format!("{base}-0")),
        _ => None,
    }
}

/// Runs the election for as long as the agent runs.
pub async fn run(client: kube::Client, cfg: HaConfig, worker: Arc<Worker>, shared: Arc<Shared>) {
    let timing = Timing::from_duration(cfg.duration);
    let mut el = Elector::new(&cfg.me, timing);
    let leases = lease::Leases::new(client.clone(), &cfg.namespace, &cfg.lease);
    let pods: Api<Pod> = Api::namespaced(client, &cfg.namespace);
    let sync = Arc::new(Mutex::new(conntrackd::Conntrackd::default()));
    // Its own task: an API server that does not answer must not hold up
    // the election.
    tokio::spawn(keep_sync(pods, cfg.clone(), sync.clone()));
    set_role(&shared, false);
    let mut suspended = false;
    let mut tick = tokio::time::interval(timing.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let handover = tokio::select! {
            _ = tick.tick() => false,
            _ = shared.handover.notified() => true,
        };
        let now = Instant::now();
        if handover && el.is_active() {
            tracing::info!("handover: giving up the addresses and the Lease");
            stand_by(&worker, &shared, &sync, "handover").await;
            el.step_down(now, true);
            suspended = false;
            if let Err(e) = leases.release(&cfg.me, timing.retry * 4).await {
                tracing::warn!("releasing the Lease: {e}");
            }
            continue;
        }
        // Not renewed in time: the addresses go now (the standby may take
        // over once the Lease expires), the claim on the Lease stays; a
        // renewal that gets through brings them back.
        if el.overdue(now) && !suspended {
            tracing::warn!(
                deadline_ms = timing.renew_deadline.as_millis() as u64,
                "no renewal within the deadline: addresses down until one gets through"
            );
            let rep = worker.call(|a| a.set_role(false)).await;
            set_role(&shared, false);
            tracing::info!(removed = ?rep.removed, "addresses down");
            suspended = true;
        }
        let Some((seen, l)) = leases.read(timing.retry * 2).await else {
            continue;
        };
        match el.step(&seen, now) {
            Step::Renew if !el.renew_due(now) => {}
            Step::Renew => {
                let sent = Instant::now();
                match leases.renew(l, timing.duration / 4).await {
                    Ok(()) => {
                        el.confirmed(sent);
                        // Only right after the renewal: a lifetime started
                        // later could outlast the Lease (see `elector`).
                        if !timing.may_refresh(sent.elapsed()) {
                            tracing::warn!(
                                took_ms = sent.elapsed().as_millis() as u64,
                                "renewal too slow to refresh the addresses on"
                            );
                        } else if suspended {
                            let rep = worker.call(|a| a.set_role(true)).await;
                            set_role(&shared, true);
                            suspended = false;
                            tracing::info!(added = ?rep.added, "renewed again: addresses back");
                        } else if let Err(e) = worker.call(|a| a.refresh_addresses()).await {
                            tracing::warn!("refreshing address lifetimes: {e}");
                        }
                    }
                    Err(e) => tracing::warn!(
                        took_ms = sent.elapsed().as_millis() as u64,
                        "renewing the Lease: {e}"
                    ),
                }
            }
            Step::Acquire { cause, previous } => {
                let sent = Instant::now();
                match leases
                    .acquire(l, &cfg.me, cause, previous.as_deref(), timing)
                    .await
                {
                    Ok(()) => {
                        el.confirmed(sent);
                        suspended = false;
                        take_over(&worker, &shared, &sync, cause, previous.as_deref()).await;
                    }
                    // Another was quicker, or the API is away.
                    Err(e) => tracing::info!("taking the Lease: {e}"),
                }
            }
            Step::StepDown => {
                tracing::warn!(holder = ?seen.holder, "another replica holds the Lease: stepping down");
                stand_by(&worker, &shared, &sync, "lease taken").await;
                suspended = false;
            }
            Step::Wait => {}
        }
    }
}

fn set_role(shared: &Shared, active: bool) {
    shared.metrics.active.set(i64::from(active));
    if let Ok(mut r) = shared.role.lock() {
        *r = Some(if active { "active" } else { "standby" });
    }
}

/// Becomes active: the synced connections into the kernel first, then the
/// addresses (and gratuitous ARP), so the first packet finds its mapping.
async fn take_over(
    worker: &Worker,
    shared: &Shared,
    sync: &Mutex<conntrackd::Conntrackd>,
    cause: &str,
    previous: Option<&str>,
) {
    let t0 = Instant::now();
    let committed = tokio::task::block_in_place(|| lock(sync).commit());
    let rep = worker.call(|a| a.set_role(true)).await;
    lock(sync).after_takeover();
    set_role(shared, true);
    shared.metrics.takeovers.inc();
    tracing::info!(
        cause,
        ?previous,
        added = ?rep.added,
        took_ms = t0.elapsed().as_millis() as u64,
        "active: took the Lease and the addresses"
    );
    for w in rep.warnings.iter().chain(&committed) {
        tracing::warn!("{w}");
    }
}

/// Becomes the standby: the addresses go first.
async fn stand_by(
    worker: &Worker,
    shared: &Shared,
    sync: &Mutex<conntrackd::Conntrackd>,
    why: &str,
) {
    let rep = worker.call(|a| a.set_role(false)).await;
    set_role(shared, false);
    tracing::info!(why, removed = ?rep.removed, "standby: gave up the addresses");
    for w in rep.warnings {
        tracing::warn!("{w}");
    }
    lock(sync).stand_by();
}

fn lock(m: &Mutex<conntrackd::Conntrackd>) -> std::sync::MutexGuard<'_, conntrackd::Conntrackd> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps conntrackd syncing with the peer's current LAN address, looking
/// every 3 s.
async fn keep_sync(pods: Api<Pod>, cfg: HaConfig, sync: Arc<Mutex<conntrackd::Conntrackd>>) {
    loop {
        sync_once(&pods, &cfg, &sync).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn sync_once(pods: &Api<Pod>, cfg: &HaConfig, sync: &Mutex<conntrackd::Conntrackd>) {
    let Some(peer) = &cfg.peer else { return };
    // Its LAN address as the operator allocated it (`status.podIP` is the
    // address the kubelet probes, not the LAN leg's).
    let ip = match tokio::time::timeout(Duration::from_secs(2), pods.get_opt(peer)).await {
        Ok(Ok(Some(p))) => p
            .metadata
            .annotations
            .and_then(|a| {
                a.get(vpcnet_api::contract::annotations::IP_ADDRESS)
                    .cloned()
            })
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok()),
        _ => return,
    };
    let Some(ip) = ip else { return };
    let ensured = lock(sync).ensure(&cfg.lan_iface, cfg.lan_ip, ip, &[cfg.lan_ip]);
    match ensured {
        Ok(true) => {
            tracing::info!(peer = %ip, "conntrackd syncs with the other replica");
            if let Err(e) = conntrackd::guard(&cfg.iptables, &cfg.lan_iface, ip) {
                tracing::warn!("{e}");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!("connection state sync: {e}"),
    }
}

/// On shutdown: the addresses go, then the Lease is released, so the
/// other replica takes over at once instead of waiting it out.
pub async fn shut_down(client: kube::Client, cfg: &HaConfig, worker: &Worker) {
    let rep = worker.call(|a| a.set_role(false)).await;
    tracing::info!(removed = ?rep.removed, "shutting down: gave up the addresses");
    let leases = lease::Leases::new(client, &cfg.namespace, &cfg.lease);
    if let Err(e) = leases.release(&cfg.me, Duration::from_secs(2)).await {
        tracing::warn!("releasing the Lease: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_is_the_other_ordinal() {
        assert_eq!(peer_of("vpc-nat-gw-g-0").as_deref(), Some("vpc-nat-gw-g-1"));
        assert_eq!(peer_of("vpc-nat-gw-g-1").as_deref(), Some("vpc-nat-gw-g-0"));
        assert_eq!(peer_of("vpc-nat-gw-g-2"), None);
    }
}
