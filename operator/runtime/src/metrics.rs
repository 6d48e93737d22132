//! Prometheus metrics of the operator.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use vpcnet_ipam::Ipam;

use crate::workqueue::WorkQueues;

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

/// The exemplar of a reconcile's duration: the trace it was exported in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    /// The OpenTelemetry trace id (32 hex digits).
    pub trace_id: String,
}

/// Labels of `vpcnet_ipam_addresses`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// The Subnet's name.
    pub subnet: String,
    /// `used` (handed out) or `free` (still allocatable).
    pub state: String,
}

/// Labels of `vpcnet_ovn_transaction_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransactLabel {
    /// `committed`, `failed` or `cancelled`.
    pub result: String,
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
    /// The `result` label.
    pub fn label(self) -> &'static str {
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
    /// `controller_runtime_reconcile_time_seconds{controller}`, with the
    /// reconcile's trace id as exemplar when traces are exported.
    pub duration: Family<ControllerLabel, HistogramWithExemplars<TraceLabel>>,
    /// `controller_runtime_active_workers{controller}`: reconciles running.
    pub active: Family<ControllerLabel, Gauge>,
    /// `vpcnet_reconcile_errors_by_cause_total{controller,error}`: which
    /// kind of error (ours; controller-runtime has no such breakdown).
    pub errors_by_cause: Family<ErrorLabel, Counter>,
    /// `leader_election_master_status{name}`: 1 while this process leads.
    pub leader: Family<LeaseLabel, Gauge>,
    /// `vpcnet_ipam_addresses{subnet,state}`: addresses of each subnet's
    /// pool, `used` and `free`.
    pub ipam: Family<PoolLabel, Gauge>,
    /// `vpcnet_ovn_transaction_seconds{result}`: how long NB transactions
    /// took.
    pub ovn_transactions: Family<TransactLabel, Histogram>,
    /// Subnets with `vpcnet_ipam_addresses` series (removed with the pool).
    pools: Mutex<BTreeSet<String>>,
    /// controller-runtime's `workqueue_*` metrics, one queue per kind.
    pub queues: Arc<WorkQueues>,
    /// The registry they live in; services add collectors of their own
    /// ([`Metrics::register_collector`]).
    registry: Mutex<Registry>,
}

/// NB transaction buckets: a local commit takes a millisecond, a loaded
/// clustered database seconds; requests time out at 30 s.
const TRANSACTION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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
        let duration =
            Family::<ControllerLabel, HistogramWithExemplars<TraceLabel>>::new_with_constructor(
                || {
                    let wide = [
                        1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0,
                        10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
                    ];
                    HistogramWithExemplars::new(RECONCILE_BUCKETS.into_iter().chain(wide))
                },
            );
        let active = Family::<ControllerLabel, Gauge>::default();
        let errors_by_cause = Family::<ErrorLabel, Counter>::default();
        let leader = Family::<LeaseLabel, Gauge>::default();
        let ipam = Family::<PoolLabel, Gauge>::default();
        let ovn_transactions = Family::<TransactLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(TRANSACTION_BUCKETS)
        });
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
        registry.register(
            "vpcnet_ipam_addresses",
            "Addresses of each subnet's pool: used (handed out) and free (allocatable)",
            ipam.clone(),
        );
        registry.register(
            "vpcnet_ovn_transaction_seconds",
            "Length of time per OVN Northbound transaction, by result",
            ovn_transactions.clone(),
        );
        let queues = Arc::new(WorkQueues::default());
        registry.register_collector(Box::new(queues.clone()));
        Self {
            reconciles,
            errors,
            duration,
            active,
            errors_by_cause,
            leader,
            ipam,
            ovn_transactions,
            pools: Mutex::default(),
            queues,
            registry: Mutex::new(registry),
        }
    }
}

impl Metrics {
    /// Adds `collector`, asked for its samples at every scrape: how a
    /// service exports what it can read off its caches (counts of objects,
    /// say) without keeping gauges in step.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry
            .lock()
            .expect("registry")
            .register_collector(collector);
    }

    fn controller(kind: &str) -> ControllerLabel {
        ControllerLabel {
            controller: kind.into(),
        }
    }

    /// A reconcile of `kind` started.
    pub fn started(&self, kind: &str) {
        self.active.get_or_create(&Self::controller(kind)).inc();
    }

    /// A reconcile of `kind` ended with `outcome` after `secs`; `trace_id`
    /// (of the reconcile's exported span) becomes the exemplar.
    pub fn observe(&self, kind: &str, outcome: Outcome, secs: f64, trace_id: Option<String>) {
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
        self.duration.get_or_create(&c).observe(
            secs,
            trace_id.map(|trace_id| TraceLabel { trace_id }),
            None,
        );
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

    /// The pools as they are now: `used` and `free` per subnet; subnets
    /// whose pool is gone lose their series.
    pub fn pools(&self, ipam: &Ipam) {
        let mut known = self.pools.lock().expect("pools");
        let now: BTreeSet<String> = ipam.subnets().map(str::to_string).collect();
        for gone in known.difference(&now) {
            for state in ["used", "free"] {
                self.ipam.remove(&PoolLabel {
                    subnet: gone.clone(),
                    state: state.into(),
                });
            }
        }
        for subnet in &now {
            let pool = ipam.pool(subnet).expect("listed");
            for (state, n) in [("used", pool.using()), ("free", pool.available())] {
                self.ipam
                    .get_or_create(&PoolLabel {
                        subnet: subnet.clone(),
                        state: state.into(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        *known = now;
    }

    /// One NB transaction took `took` and ended with `outcome`.
    pub fn transaction(&self, took: Duration, outcome: ovn::TransactOutcome) {
        let result = match outcome {
            ovn::TransactOutcome::Committed => "committed",
            ovn::TransactOutcome::Failed => "failed",
            ovn::TransactOutcome::Cancelled => "cancelled",
        };
        self.ovn_transactions
            .get_or_create(&TransactLabel {
                result: result.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// An observer for [`ovn::Client::observe_transactions`] feeding
    /// `vpcnet_ovn_transaction_seconds`.
    pub fn transaction_observer(self: &std::sync::Arc<Self>) -> ovn::TransactObserver {
        let m = std::sync::Arc::downgrade(self);
        std::sync::Arc::new(move |took, outcome| {
            if let Some(m) = m.upgrade() {
                m.transaction(took, outcome);
            }
        })
    }

    /// The OpenMetrics text format, with exemplars (the trace ids of
    /// reconciles).
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &self.registry.lock().expect("registry"),
        )
        .expect("writing to a String");
        out
    }

    /// The same samples without exemplars, which only the OpenMetrics
    /// format has: what a scraper that asks for the classic Prometheus text
    /// format (or for nothing in particular) gets.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in self.render_openmetrics().lines() {
            // A sample's exemplar follows it as ` # {labels} value`; no label
            // value of ours holds " # {" (kinds, subnet and lease names).
            let line = match line.find(" # {") {
                Some(i) if !line.starts_with('#') => &line[..i],
                _ => line,
            };
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// What `/metrics` answers a request with `accept`: OpenMetrics (with
    /// exemplars) to a scraper that asks for it, as Prometheus does, the
    /// classic text format to anyone else.
    pub fn exposition(&self, accept: Option<&str>) -> (&'static str, String) {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.render_openmetrics(),
            )
        } else {
            ("text/plain; version=0.0.4; charset=utf-8", self.render())
        }
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
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| async move {
                let accept = headers
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let (content_type, body) = metrics.exposition(accept);
                ([(axum::http::header::CONTENT_TYPE, content_type)], body)
            }),
        )
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

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn pools() -> Ipam {
        let mut ipam = Ipam::default();
        ipam.upsert("s1", "10.0.1.0/24", Some("10.0.1.1"), &[])
            .unwrap();
        ipam
    }

    #[test]
    fn the_trace_id_is_the_reconcile_durations_exemplar_in_openmetrics_only() {
        let m = Metrics::default();
        m.started("Vpc");
        m.observe("Vpc", Outcome::Success, 0.02, Some(TRACE.into()));
        m.started("Vpc");
        m.observe("Vpc", Outcome::Success, 3.0, None);
        let open = m.render_openmetrics();
        let bucket = open
            .lines()
            .find(|l| {
                l.starts_with(r#"controller_runtime_reconcile_time_seconds_bucket{le="0.025",controller="Vpc"} 1"#)
            })
            .unwrap_or_else(|| panic!("no 0.025 bucket in\n{open}"));
        assert_eq!(
            bucket,
            format!(
                r#"controller_runtime_reconcile_time_seconds_bucket{{le="0.025",controller="Vpc"}} 1 # {{trace_id="{TRACE}"}} 0.02"#
            ),
            "the exemplar sits on the bucket the reconcile fell in"
        );
        assert_eq!(open.matches("trace_id=").count(), 1, "{open}");
        // The classic text format has no exemplars: same samples, no suffix.
        let classic = m.render();
        assert!(!classic.contains("trace_id"), "{classic}");
        assert!(
            classic.lines().any(|l| l
                == r#"controller_runtime_reconcile_time_seconds_bucket{le="0.025",controller="Vpc"} 1"#),
            "{classic}"
        );
        assert_eq!(
            open.lines().count(),
            classic.lines().count(),
            "only exemplars differ"
        );
    }

    #[test]
    fn scrapers_asking_for_openmetrics_get_it_others_the_classic_format() {
        let m = Metrics::default();
        m.started("Vpc");
        m.observe("Vpc", Outcome::Success, 0.02, Some(TRACE.into()));
        // What Prometheus sends by default.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (ct, body) = m.exposition(Some(prometheus));
        assert!(ct.starts_with("application/openmetrics-text; version=1.0.0"));
        assert!(body.contains(TRACE) && body.ends_with("# EOF\n"), "{body}");
        for accept in [None, Some("*/*"), Some("text/plain")] {
            let (ct, body) = m.exposition(accept);
            assert!(ct.starts_with("text/plain; version=0.0.4"), "{accept:?}");
            assert!(!body.contains(TRACE), "{accept:?}: {body}");
        }
    }

    #[test]
    fn nb_transactions_are_timed_by_result() {
        let m = std::sync::Arc::new(Metrics::default());
        let observe = m.transaction_observer();
        observe(Duration::from_micros(700), ovn::TransactOutcome::Committed);
        observe(Duration::from_millis(40), ovn::TransactOutcome::Committed);
        observe(Duration::from_secs(31), ovn::TransactOutcome::Failed);
        let text = m.render();
        for line in [
            r#"vpcnet_ovn_transaction_seconds_count{result="committed"} 2"#,
            r#"vpcnet_ovn_transaction_seconds_bucket{le="0.001",result="committed"} 1"#,
            r#"vpcnet_ovn_transaction_seconds_bucket{le="0.05",result="committed"} 2"#,
            r#"vpcnet_ovn_transaction_seconds_count{result="failed"} 1"#,
            r#"vpcnet_ovn_transaction_seconds_bucket{le="30.0",result="failed"} 0"#,
            r#"vpcnet_ovn_transaction_seconds_bucket{le="+Inf",result="failed"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains(r#"result="cancelled""#), "{text}");
        // The observer holds the metrics weakly: the client may outlive them.
        drop(m);
        observe(Duration::from_millis(1), ovn::TransactOutcome::Cancelled);
    }

    #[test]
    fn reconciles_are_exported_under_controller_runtimes_names() {
        let m = Metrics::default();
        m.leading("vpcnet-operator", false);
        m.started("Vpc");
        m.observe("Vpc", Outcome::Success, 0.02, None);
        m.started("Vpc");
        m.observe("Vpc", Outcome::Error, 0.5, None);
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
        m.observe(
            "Vpc",
            Outcome::Error,
            0.1,
            Some("0af7651916cd43dd8448eb211c80319c".into()),
        );
        m.transaction(Duration::from_millis(3), ovn::TransactOutcome::Committed);
        m.pools(&pools());
        m.failed("Vpc", &crate::Error::Dependency("x".into()));
        let q = m.queues.queue("Vpc");
        let vpc =
            kube::runtime::reflector::ObjectRef::<k8s_openapi::api::core::v1::ConfigMap>::new("v");
        q.add(&vpc);
        q.started(&vpc);
        q.finished(&vpc);
        q.retried();
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
