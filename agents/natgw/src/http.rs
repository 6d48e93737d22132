//! `/healthz`, `/readyz` (ready after the first successful full apply) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    /// Applies run (iptables-restore or address reconcile).
    pub applies: Counter,
    /// Applies that failed for some object.
    pub apply_errors: Counter,
    /// Duration of the last apply, seconds.
    pub last_apply_seconds: Gauge<f64, AtomicU64>,
    /// Rule objects (SNAT/DNAT/FIP) programmed.
    pub rules_programmed: Gauge,
    /// Drift repairs (owned chains re-applied or EIPs re-added).
    pub drift_repairs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vpcnet_natgw");
        let m = Metrics {
            applies: Counter::default(),
            apply_errors: Counter::default(),
            last_apply_seconds: Gauge::default(),
            rules_programmed: Gauge::default(),
            drift_repairs: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("applies", "NAT state applies", m.applies.clone());
        registry.register(
            "apply_errors",
            "Applies with an error",
            m.apply_errors.clone(),
        );
        registry.register(
            "last_apply_duration_seconds",
            "Duration of the last apply",
            m.last_apply_seconds.clone(),
        );
        registry.register(
            "rules_programmed",
            "SNAT, DNAT and FIP rules programmed",
            m.rules_programmed.clone(),
        );
        registry.register("drift_repairs", "Drift repairs", m.drift_repairs.clone());
        Metrics { registry, ..m }
    }
}

/// State shared by the agent and its HTTP endpoints.
#[derive(Default)]
pub struct Shared {
    /// Set after the first successful full apply.
    pub ready: AtomicBool,
    /// Metrics.
    pub metrics: Metrics,
}

impl Shared {
    /// Prometheus text exposition.
    pub fn encode_metrics(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.metrics.registry);
        s
    }
}

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<Shared>>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not applied yet")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<Shared>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.encode_metrics(),
                )
                    .into_response()
            }),
        )
        .with_state(shared)
}

/// Serves until the process ends.
pub async fn serve(listen: std::net::SocketAddr, shared: Arc<Shared>) -> std::io::Result<()> {
    let l = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(l, router(shared)).await
}
