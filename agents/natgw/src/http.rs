//! `/healthz`, `/readyz` (ready after the first successful full apply) and
//! `/metrics` (Prometheus text; the traffic counters of the rules are read
//! from the kernel on each scrape, see `acct`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::acct::Tally;
use crate::apply::Worker;

/// Labels of a rule object's traffic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// `snat`, `dnat` or `fip`.
    pub kind: String,
    /// The rule object's namespace.
    pub namespace: String,
    /// The rule object's name.
    pub name: String,
    /// The EIP's address.
    pub eip: String,
    /// `in` (towards the VPC) or `out` (from the VPC).
    pub direction: String,
}

/// Labels of an EIP's traffic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EipLabels {
    /// The IptablesEIP's namespace.
    pub namespace: String,
    /// The IptablesEIP's name.
    pub name: String,
    /// Its address.
    pub eip: String,
    /// `in` or `out`.
    pub direction: String,
}

/// The traffic counters, refilled from the kernel's on every scrape.
#[derive(Clone, Default)]
pub struct TrafficMetrics {
    /// Packets per rule object and direction.
    pub rule_packets: Family<RuleLabels, Counter>,
    /// Bytes per rule object and direction.
    pub rule_bytes: Family<RuleLabels, Counter>,
    /// Packets per EIP and direction.
    pub eip_packets: Family<EipLabels, Counter>,
    /// Bytes per EIP and direction.
    pub eip_bytes: Family<EipLabels, Counter>,
}

impl TrafficMetrics {
    /// Replaces every series with those of `t`: objects gone lose theirs.
    pub fn set(&self, t: &Tally) {
        for f in [&self.rule_packets, &self.rule_bytes] {
            f.clear();
        }
        for f in [&self.eip_packets, &self.eip_bytes] {
            f.clear();
        }
        for r in &t.rules {
            let l = RuleLabels {
                kind: r.key.kind.as_str().into(),
                namespace: r.key.ns.clone(),
                name: r.key.name.clone(),
                eip: r.eip.to_string(),
                direction: r.dir.as_str().into(),
            };
            self.rule_packets.get_or_create(&l).inc_by(r.packets);
            self.rule_bytes.get_or_create(&l).inc_by(r.bytes);
        }
        for e in &t.eips {
            let l = EipLabels {
                namespace: e.key.ns.clone(),
                name: e.key.name.clone(),
                eip: e.eip.to_string(),
                direction: e.dir.as_str().into(),
            };
            self.eip_packets.get_or_create(&l).inc_by(e.packets);
            self.eip_bytes.get_or_create(&l).inc_by(e.bytes);
        }
    }
}

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
    /// Scrapes whose traffic counters could not be read.
    pub counter_read_errors: Counter,
    /// Per-rule and per-EIP traffic.
    pub traffic: TrafficMetrics,
    /// Two replicas: 1 while this one is active.
    pub active: Gauge,
    /// Two replicas: times this one took over.
    pub takeovers: Counter,
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
            counter_read_errors: Counter::default(),
            traffic: TrafficMetrics::default(),
            active: Gauge::default(),
            takeovers: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "active",
            "1 while this replica holds the gateway's Lease and addresses",
            m.active.clone(),
        );
        registry.register(
            "takeovers",
            "Times this replica took the gateway's Lease",
            m.takeovers.clone(),
        );
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
        registry.register(
            "counter_read_errors",
            "Scrapes whose traffic counters could not be read from iptables",
            m.counter_read_errors.clone(),
        );
        let t = &m.traffic;
        registry.register(
            "rule_packets",
            "Packets forwarded for a SNAT, DNAT or FIP rule, by direction (in: towards the VPC)",
            t.rule_packets.clone(),
        );
        registry.register(
            "rule_bytes",
            "Bytes (IP headers included) forwarded for a SNAT, DNAT or FIP rule, by direction",
            t.rule_bytes.clone(),
        );
        registry.register(
            "eip_packets",
            "Packets forwarded through an EIP's rules, by direction",
            t.eip_packets.clone(),
        );
        registry.register(
            "eip_bytes",
            "Bytes forwarded through an EIP's rules, by direction",
            t.eip_bytes.clone(),
        );
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
    /// The apply thread: `/metrics` reads the traffic counters through it
    /// (iptables runs in the gateway's namespace). Unset: no traffic series.
    pub worker: OnceLock<Arc<Worker>>,
    /// One scrape at a time refills the traffic series.
    scrape: tokio::sync::Mutex<()>,
    /// Two replicas: `/handover` asks the active to hand over.
    pub handover: tokio::sync::Notify,
    /// Two replicas: "active", "standby" (unset with one replica).
    pub role: std::sync::Mutex<Option<&'static str>>,
}

impl Shared {
    /// Reads the kernel's counters now and encodes every metric: the
    /// traffic series are those of the rules present at this moment.
    pub async fn scrape(&self) -> String {
        let _one = self.scrape.lock().await;
        if let Some(w) = self.worker.get() {
            match w.call(|a| a.counters()).await {
                Ok(t) => self.metrics.traffic.set(&t),
                Err(e) => {
                    tracing::warn!("reading traffic counters: {e}");
                    self.metrics.counter_read_errors.inc();
                }
            }
        }
        self.encode_metrics()
    }

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
        // Two replicas: the role, and a planned handover (the active gives
        // up its addresses and the Lease; the other takes them).
        .route(
            "/role",
            get(|State(s): State<Arc<Shared>>| async move {
                s.role.lock().ok().and_then(|r| *r).unwrap_or("single")
            }),
        )
        .route(
            "/handover",
            get(|State(s): State<Arc<Shared>>| async move {
                s.handover.notify_one();
                "handing over if active"
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
                    s.scrape().await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acct::{Dir, EipCount, RuleCount};
    use crate::model::{Kind, ObjKey};

    #[test]
    fn traffic_series_follow_the_tally() {
        let s = Shared::default();
        let eip = "172.16.3.11".parse().unwrap();
        let rule = |name: &str, bytes| RuleCount {
            key: ObjKey::new(Kind::Dnat, "t", name),
            eip,
            dir: Dir::In,
            packets: 3,
            bytes,
        };
        let eips = vec![EipCount {
            key: ObjKey::new(Kind::Eip, "t", "e2"),
            eip,
            dir: Dir::Out,
            packets: 0,
            bytes: 0,
        }];
        s.metrics.traffic.set(&Tally {
            rules: vec![rule("web", 1000), rule("old", 5)],
            eips: eips.clone(),
        });
        let m = s.encode_metrics();
        for want in [
            "vpcnet_natgw_rule_bytes_total{kind=\"dnat\",namespace=\"t\",name=\"web\",eip=\"172.16.3.11\",direction=\"in\"} 1000",
            "vpcnet_natgw_rule_packets_total{kind=\"dnat\",namespace=\"t\",name=\"old\",eip=\"172.16.3.11\",direction=\"in\"} 3",
            "vpcnet_natgw_eip_bytes_total{namespace=\"t\",name=\"e2\",eip=\"172.16.3.11\",direction=\"out\"} 0",
        ] {
            assert!(m.contains(want), "{want} missing: {m}");
        }
        // The next scrape's tally replaces the series: a rule gone has none.
        s.metrics.traffic.set(&Tally {
            rules: vec![rule("web", 2000)],
            eips,
        });
        let m = s.encode_metrics();
        assert!(
            m.contains("name=\"web\",eip=\"172.16.3.11\",direction=\"in\"} 2000"),
            "{m}"
        );
        assert!(!m.contains("name=\"old\""), "{m}");
    }
}
