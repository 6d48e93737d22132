//! Logs and traces of the operator process: log lines on stdout always,
//! and, given an OTLP endpoint, every span (one per reconcile, see
//! [`crate::driver::reconcile_span`]) exported over OTLP/gRPC by a batch
//! exporter on the tokio runtime. Without an endpoint there is no exporter
//! and no OpenTelemetry layer at all.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `service.name` of the exported spans.
pub const SERVICE_NAME: &str = "vpcnet-operator";

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter refused its configuration (the endpoint, say).
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was installed already.
    #[error("tracing subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporter of the process; [`Telemetry::shutdown`] exports what
/// is still buffered.
#[must_use = "spans still buffered are lost unless shut down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the process's subscriber: log lines filtered by `RUST_LOG`
/// (default `info`) and, when `endpoint` is a non-empty OTLP/gRPC address
/// (`http://collector:4317`), the same spans exported there with
/// `service.name` [`SERVICE_NAME`]. Must run inside the tokio runtime.
pub fn init(endpoint: Option<&str>) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Container logs are files: colour codes only on a terminal.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let provider = match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        Some(endpoint) => Some(provider(endpoint)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(SERVICE_NAME))
            .with_filter(not_the_exporter())
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()?;
    if let Some(endpoint) = endpoint.filter(|_| provider.is_some()) {
        tracing::info!(endpoint, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

/// The exporter's own stack (gRPC, HTTP/2) logs through `tracing` too; its
/// spans are never exported, or each export would trace the next.
fn not_the_exporter() -> Targets {
    [
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "opentelemetry",
    ]
    .into_iter()
    .fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(target, LevelFilter::OFF),
    )
}

fn provider(endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()?;
    let batch = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build())
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every span ended so far and waits for the receiver's answer.
    pub async fn flush(&self) {
        if let Some(p) = self.provider.clone() {
            // Blocks until the batch task on the runtime has exported.
            match tokio::task::spawn_blocking(move || p.force_flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "flushing traces failed"),
                Err(e) => tracing::warn!(error = %e, "flushing traces failed"),
            }
        }
    }

    /// Exports what is still buffered and stops the exporter (at the end
    /// of a graceful shutdown).
    pub async fn shutdown(self) {
        if let Some(p) = self.provider {
            match tokio::task::spawn_blocking(move || p.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "stopping the trace exporter failed"),
                Err(e) => tracing::warn!(error = %e, "stopping the trace exporter failed"),
            }
        }
    }
}
