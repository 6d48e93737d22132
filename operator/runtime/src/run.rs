//! The life of an operator process: serve health and metrics, win the
//! lease, connect, rebuild the address state, collect what deleted objects
//! left, run every service, and on SIGTERM let reconciles in flight finish
//! before the lease is handed back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::Api;
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::ovn_view::OvnView;
use crate::rebuild::{self, Found};
use crate::service::Service;
use crate::{Error, Result, Runtime, gc, leader, seal_key};

/// How the process runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// OVN Northbound DB (`unix:/path` or `tcp:host:port`).
    pub ovn_nb: String,
    /// The operator's namespace.
    pub namespace: String,
    /// This process's name in the leader Lease.
    pub identity: String,
    /// Seconds a leader's Lease lasts without renewal.
    pub lease_seconds: u64,
    /// Seconds between garbage collections.
    pub gc_interval: u64,
    /// Address for /metrics, /healthz and /readyz.
    pub metrics_addr: String,
    /// Longest wait for reconciles in flight at shutdown.
    pub drain_seconds: u64,
}

/// A process that leads: its runtime and the lease it holds.
pub struct Leading {
    /// The runtime services are built on.
    pub rt: Arc<Runtime>,
    options: Options,
    ready: Arc<AtomicBool>,
    holding: tokio::task::JoinHandle<()>,
}

/// Waits for the lease, then connects. Nothing is read into memory or
/// written before this process leads.
pub async fn lead(options: Options) -> Result<Leading> {
    // Named, so that what no field manager is given for (kube-runtime's
    // finalizer patch) is recorded under the operator's name, not `unknown`.
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(vpcnet_api::contract::OPERATOR_MANAGER),
    ));
    let client = kube::Client::try_from(config)?;
    // Served while waiting for the lease too: a standby is alive, not ready.
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(crate::metrics::serve(
        options.metrics_addr.clone(),
        metrics.clone(),
        ready.clone(),
    ));
    let mut lease = candidate(&client, &options);
    metrics.leading(leader::LEASE_NAME, false);
    lease.acquire().await;
    metrics.leading(leader::LEASE_NAME, true);
    // Renewed from now on, also while the state is rebuilt.
    let holding = tokio::spawn(async move {
        let lost = lease.hold().await;
        // Another operator may be reconciling now: stop at once rather than
        // allocate beside it. The restart waits for the lease.
        tracing::error!(reason = %lost, "no longer leading; exiting");
        std::process::exit(1);
    });
    let seal = seal_key::ensure(&client, &options.namespace).await?;
    let nb = ovn::Client::connect(&options.ovn_nb).await?;
    // Every transaction of every service, timed in one place.
    nb.observe_transactions(metrics.transaction_observer());
    nb.check_schema(ovn::nb::schema()).await?;
    let ovn = OvnView::start(&nb).await?;
    let rt = Arc::new(Runtime::new(
        client,
        nb,
        ovn,
        options.namespace.clone(),
        seal,
        metrics,
    ));
    Ok(Leading {
        rt,
        options,
        ready,
        holding,
    })
}

fn candidate(client: &kube::Client, options: &Options) -> leader::Candidate {
    leader::Candidate::new(
        Api::namespaced(client.clone(), &options.namespace),
        leader::LEASE_NAME,
        &options.identity,
        Duration::from_secs(options.lease_seconds),
    )
}

impl Leading {
    /// Runs `services` until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run(self, services: Vec<Arc<dyn Service>>) -> Result<()> {
        let rt = self.rt.clone();
        // Addresses and orphans first: no allocation before the state is known.
        let mut found = Found::default();
        for s in &services {
            s.rebuild(&rt, &mut found).await?;
        }
        let rebuilt = rebuild::load(&mut *rt.ipam.lock().await, found);
        tracing::info!(?rebuilt, "address state rebuilt");
        let collected = gc::collect(&rt, &services).await?;
        tracing::info!(
            owners = collected.owners.len(),
            holders = collected.holders.len(),
            "startup garbage collection done"
        );
        let mut tasks = JoinSet::new();
        for s in &services {
            tracing::info!(service = s.name(), "starting");
            tasks.spawn(s.clone().run(rt.clone()));
        }
        let watched = rt.kinds.start();
        tracing::info!(watch_streams = watched.len(), kinds = ?watched, "watching");
        tasks.spawn(gc::run(
            rt.clone(),
            services.clone(),
            Duration::from_secs(self.options.gc_interval),
        ));
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!("operator running");

        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| Error::Dependency(format!("a SIGTERM handler: {e}")))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
            _ = terminate.recv() => tracing::info!("terminated; stopping"),
            r = tasks.join_next() => tracing::error!(?r, "a service ended on its own; stopping"),
        }
        self.ready.store(false, Ordering::SeqCst);
        rt.shut_down();
        let drain = Duration::from_secs(self.options.drain_seconds);
        let drained =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                seconds = drain.as_secs(),
                "reconciles still running at the drain deadline; stopping anyway"
            );
        }
        self.holding.abort();
        candidate(&rt.client, &self.options).release().await;
        tracing::info!("lease released");
        Ok(())
    }
}

/// The Lease identity outside a pod: host name and process id, so two
/// operators on one host still differ.
pub fn fallback_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}
