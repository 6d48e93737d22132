//! `/healthz` (always 200), `/readyz` (200 once a zone document is loaded)
//! and `/metrics` (Prometheus text). `/readyz` fails again once the server
//! is shutting down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the endpoints read.
pub struct Shared {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The generation of the zone in force (0: none yet).
    pub generation: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Set on SIGTERM: not ready any more, still answering.
    pub draining: Arc<AtomicBool>,
}

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<Shared>>| async move {
                if s.draining.load(Ordering::Relaxed) {
                    (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                } else if (s.generation)() > 0 {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "no zone loaded yet")
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
                    s.metrics.encode(),
                )
                    .into_response()
            }),
        )
        .with_state(shared)
}

/// Serves on `l` until `shutdown` resolves.
pub async fn serve(
    l: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(l, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}
