//! The loop: follow the UDP load balancers in the Northbound database and,
//! whenever their backends change (and every resync period, which also
//! covers changes made while the agent was not running), delete the stale
//! entries from the node's conntrack.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ovn::nb::{LoadBalancer, load_balancer};
use ovn::{Monitor, MonitorRequest, Row, Table};

use crate::conntrack::{flush_args, parse_dump};
use crate::stale::{gone, stale};
use crate::unixctl;
use crate::vips::{VipMap, udp_vips};

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Entries in the dump.
    pub entries: usize,
    /// Stale entries deleted.
    pub flushed: usize,
}

/// How long one vswitchd command may take; a dump of a busy node's tracker
/// is the slow one.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Dumps the tracker of the vswitchd in `rundir` and deletes every entry
/// that `stale` picks. An entry that vanished meanwhile (it timed out, or a
/// client's flush beat us) is not an error.
pub async fn pass(
    rundir: &Path,
    vips: &VipMap,
    gone: &BTreeSet<SocketAddr>,
) -> Result<Pass, unixctl::Error> {
    let dump = unixctl::call(rundir, "dpctl/dump-conntrack", &[], COMMAND_TIMEOUT).await?;
    let entries = parse_dump(&dump);
    let mut flushed = 0;
    for e in stale(&entries, vips, gone) {
        match unixctl::call(
            rundir,
            "dpctl/flush-conntrack",
            &flush_args(e),
            COMMAND_TIMEOUT,
        )
        .await
        {
            Ok(_) => {
                flushed += 1;
                tracing::debug!(client = %e.orig_src, vip = %e.orig_dst, backend = %e.reply_src, zone = e.zone, "flushed");
            }
            Err(unixctl::Error::Command { message, .. }) => {
                tracing::debug!(%message, vip = %e.orig_dst, "entry already gone");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(Pass {
        entries: entries.len(),
        flushed,
    })
}

/// The monitor request of the load balancer columns the flusher reads.
pub fn monitor_request() -> MonitorRequest {
    MonitorRequest::of::<LoadBalancer>().columns(&[
        load_balancer::VIPS,
        load_balancer::PROTOCOL,
        load_balancer::EXTERNAL_IDS,
    ])
}

fn vips_of(tables: &HashMap<String, HashMap<String, Row>>) -> VipMap {
    let rows: Vec<LoadBalancer> = tables
        .get(LoadBalancer::TABLE)
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|r| LoadBalancer::from_row(r).ok())
        .collect();
    udp_vips(&rows)
}

/// Tunables of [`run`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Where ovs-vswitchd keeps its pid file and control socket.
    pub ovs_rundir: PathBuf,
    /// A pass at least this often, changed or not.
    pub resync: Duration,
    /// How long to gather a burst of changes (a rollout) into one pass.
    pub debounce: Duration,
}

/// Runs until `shutdown` resolves.
pub async fn run(monitor: Monitor, cfg: Config, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut last = VipMap::new();
    // VIPs that went away and whose entries are not flushed yet (kept until
    // a pass succeeds, so a vswitchd restart or timeout loses none).
    let mut pending_gone: BTreeSet<SocketAddr> = BTreeSet::new();
    loop {
        let wait = monitor.wait_until(cfg.resync, |t| vips_of(t) != last);
        tokio::select! {
            _ = &mut shutdown => return,
            _ = wait => {}
        }
        tokio::time::sleep(cfg.debounce).await;
        let now = monitor.with(vips_of);
        pending_gone.extend(gone(&last, &now));
        pending_gone.retain(|v| !now.contains_key(v));
        match pass(&cfg.ovs_rundir, &now, &pending_gone).await {
            Ok(p) => {
                pending_gone.clear();
                if p.flushed > 0 {
                    tracing::info!(
                        flushed = p.flushed,
                        entries = p.entries,
                        vips = now.len(),
                        "flushed stale UDP conntrack entries"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "conntrack pass failed; retrying at the next change or resync")
            }
        }
        last = now;
    }
}
