//! Prometheus metrics of the operator.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a per-controller metric (`controller` is the reconciled kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// The reconciled kind.
    pub controller: String,
}

/// Labels of `controller_runtime_reconcile_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// The reconciled kind.
    pub controller: String,
    /// `success`, `requeue_after` or `error`, as controller-runtime counts.
    pub result: String,
}

/// Labels of our own error breakdown.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// The reconciled kind.
    pub controller: String,
    /// [`crate::Error::metric_label`].
    pub error: String,
}

/// Labels of `leader_election_master_status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabel {
    /// The Lease's name.
    pub name: String,
}

/// How a reconcile ended, in controller-runtime's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; waits for the next change.
    Success,
    /// Done; runs again after a delay.
    RequeueAfter,
    /// Failed (also: panicked or was cancelled).
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RequeueAfter => "requeue_after",
            Outcome::Error => "error",
        }
    }
}

/// Every metric the operator exports. The reconcile metrics carry the
/// names and labels of controller-runtime (Go operators), so dashboards
/// and alerts written for those work unchanged: `controller` is our kind.
pub struct Metrics {
    /// `controller_runtime_reconcile_total{controller,result}`.
    pub reconciles: Family<ResultLabel, Counter>,
    /// `controller_runtime_reconcile_errors_total{controller}`.
    pub errors: Family<ControllerLabel, Counter>,
    /// `controller_runtime_reconcile_time_seconds{controller}`.
    pub duration: Family<ControllerLabel, Histogram>,
    /// `controller_runtime_active_workers{controller}`: reconciles running.
    pub active: Family<ControllerLabel, Gauge>,
    /// `vpcnet_reconcile_errors_by_cause_total{controller,error}`: which
    /// kind of error (ours; controller-runtime has no such breakdown).
    pub errors_by_cause: Family<ErrorLabel, Counter>,
    /// `leader_election_master_status{name}`: 1 while this process leads.
    pub leader: Family<LeaseLabel, Gauge>,
    /// The registry they live in.
    pub registry: Registry,
}

/// controller-runtime's reconcile-time buckets.
const RECONCILE_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabel, Counter>::default();
        let errors = Family::<ControllerLabel, Counter>::default();
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            let wide = [
                1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0,
                20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
            ];
            Histogram::new(RECONCILE_BUCKETS.into_iter().chain(wide))
        });
        let active = Family::<ControllerLabel, Gauge>::default();
        let errors_by_cause = Family::<ErrorLabel, Counter>::default();
        let leader = Family::<LeaseLabel, Gauge>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconciles.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            duration.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active.clone(),
        );
        registry.register(
            "vpcnet_reconcile_errors_by_cause",
            "Reconciliation errors per controller and cause",
            errors_by_cause.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "1 while this process holds the lease, 0 while it waits",
            leader.clone(),
        );
        Self {
            reconciles,
            errors,
            duration,
            active,
            errors_by_cause,
            leader,
            registry,
        }
    }
}

impl Metrics {
    fn controller(kind: &str) -> ControllerLabel {
        ControllerLabel {
            controller: kind.into(),
        }
    }

    /// A reconcile of `kind` started.
    pub fn started(&self, kind: &str) {
        self.active.get_or_create(&Self::controller(kind)).inc();
    }

    /// A reconcile of `kind` ended with `outcome` after `secs`.
    pub fn observe(&self, kind: &str, outcome: Outcome, secs: f64) {
        let c = Self::controller(kind);
        self.active.get_or_create(&c).dec();
        self.reconciles
            .get_or_create(&ResultLabel {
                controller: kind.into(),
                result: outcome.label().into(),
            })
            .inc();
        if outcome == Outcome::Error {
            self.errors.get_or_create(&c).inc();
        }
        self.duration.get_or_create(&c).observe(secs);
    }

    /// Why a reconcile of `kind` failed (counted by cause).
    pub fn failed(&self, kind: &str, e: &crate::Error) {
        self.errors_by_cause
            .get_or_create(&ErrorLabel {
                controller: kind.into(),
                error: e.metric_label().into(),
            })
            .inc();
    }

    /// Whether this process holds the lease `name`.
    pub fn leading(&self, name: &str, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabel { name: name.into() })
            .set(i64::from(leading));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr`.
pub async fn serve(
    addr: String,
    metrics: std::sync::Arc<Metrics>,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(std::sync::atomic::Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        );
    match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        }
        Err(e) => tracing::error!(%addr, error = %e, "cannot bind the metrics address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_exported_under_controller_runtimes_names() {
        let m = Metrics::default();
        m.leading("vpcnet-operator", false);
        m.started("Vpc");
        m.observe("Vpc", Outcome::Success, 0.02);
        m.started("Vpc");
        m.observe("Vpc", Outcome::Error, 0.5);
        m.started("Subnet");
        m.failed("Vpc", &crate::Error::Dependency("x".into()));
        m.leading("vpcnet-operator", true);
        let text = m.render();
        for line in [
            r#"controller_runtime_reconcile_total{controller="Vpc",result="success"} 1"#,
            r#"controller_runtime_reconcile_total{controller="Vpc",result="error"} 1"#,
            r#"controller_runtime_reconcile_errors_total{controller="Vpc"} 1"#,
            r#"controller_runtime_reconcile_time_seconds_count{controller="Vpc"} 2"#,
            r#"controller_runtime_reconcile_time_seconds_bucket{le="0.025",controller="Vpc"} 1"#,
            r#"controller_runtime_active_workers{controller="Vpc"} 0"#,
            r#"controller_runtime_active_workers{controller="Subnet"} 1"#,
            r#"leader_election_master_status{name="vpcnet-operator"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            text.contains(r#"vpcnet_reconcile_errors_by_cause_total{controller="Vpc",error="#),
            "{text}"
        );
    }

    /// Metric names in a PromQL expression: identifiers directly followed
    /// by a label matcher (every query of the dashboard selects by `job`).
    fn selected_metrics(expr: &str) -> Vec<String> {
        let b = expr.as_bytes();
        let mut out = Vec::new();
        for (i, _) in expr.match_indices('{') {
            let mut j = i;
            while j > 0
                && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_' || b[j - 1] == b':')
            {
                j -= 1;
            }
            if j < i {
                out.push(expr[j..i].to_string());
            }
        }
        out
    }

    #[test]
    fn every_dashboard_query_selects_a_metric_the_operator_exports() {
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(
            "../../../config/monitoring/grafana-dashboard.json"
        ))
        .unwrap();
        let m = Metrics::default();
        m.leading("vpcnet-operator", true);
        m.started("Vpc");
        m.observe("Vpc", Outcome::Error, 0.1);
        m.failed("Vpc", &crate::Error::Dependency("x".into()));
        let exported: std::collections::BTreeSet<String> = m
            .render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
            .collect();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let names = selected_metrics(expr);
                assert!(!names.is_empty(), "no metric found in {expr}");
                for name in names {
                    assert!(
                        exported.contains(&name),
                        "{expr}: {name} is not exported; exported: {exported:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 5, "the dashboard has its queries");
    }
}
