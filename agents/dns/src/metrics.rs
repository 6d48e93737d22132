//! The server's metrics (Prometheus text at `/metrics`, prefix `vpcnet_dns`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `transport` label of `queries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    /// `udp` or `tcp`.
    pub transport: &'static str,
}

/// `rcode` label of `responses_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RcodeLabel {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...
    pub rcode: &'static str,
}

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    /// `vpcnet_dns_queries_total{transport}`: requests received.
    pub queries: Family<TransportLabel, Counter>,
    /// `vpcnet_dns_responses_total{rcode}`: responses sent.
    pub responses: Family<RcodeLabel, Counter>,
    /// `vpcnet_dns_cache_hits_total`.
    pub cache_hits: Counter,
    /// `vpcnet_dns_cache_misses_total`: forwarded questions not in the cache.
    pub cache_misses: Counter,
    /// `vpcnet_dns_cache_entries`.
    pub cache_entries: Gauge,
    /// `vpcnet_dns_upstream_duration_seconds`: one exchange with one upstream.
    pub upstream_duration: Histogram,
    /// `vpcnet_dns_upstream_errors_total`: exchanges that failed (timeout,
    /// network, malformed, SERVFAIL/REFUSED).
    pub upstream_errors: Counter,
    /// `vpcnet_dns_forwards_refused_total`: questions answered SERVFAIL
    /// because too many were already forwarded.
    pub forwards_refused: Counter,
    /// `vpcnet_dns_zone_records`: records of the zone in force.
    pub zone_records: Gauge,
    /// `vpcnet_dns_zone_generation`: documents loaded by this process.
    pub zone_generation: Gauge,
    /// `vpcnet_dns_zone_load_errors_total`: documents refused.
    pub zone_load_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("vpcnet_dns");
        let m = Metrics {
            queries: Family::default(),
            responses: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_entries: Gauge::default(),
            // 50 µs .. ~1.6 s.
            upstream_duration: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            upstream_errors: Counter::default(),
            forwards_refused: Counter::default(),
            zone_records: Gauge::default(),
            zone_generation: Gauge::default(),
            zone_load_errors: Counter::default(),
            registry: Registry::default(),
        };
        r.register("queries", "DNS requests by transport", m.queries.clone());
        r.register("responses", "DNS responses by rcode", m.responses.clone());
        r.register(
            "cache_hits",
            "Forwarded questions answered from the cache",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Forwarded questions not in the cache",
            m.cache_misses.clone(),
        );
        r.register(
            "cache_entries",
            "Answers in the cache",
            m.cache_entries.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Duration of one exchange with one upstream",
            m.upstream_duration.clone(),
        );
        r.register(
            "upstream_errors",
            "Failed exchanges with an upstream",
            m.upstream_errors.clone(),
        );
        r.register(
            "forwards_refused",
            "Questions not forwarded: too many in flight",
            m.forwards_refused.clone(),
        );
        r.register(
            "zone_records",
            "Records of the zone in force",
            m.zone_records.clone(),
        );
        r.register(
            "zone_generation",
            "Zone documents loaded by this process",
            m.zone_generation.clone(),
        );
        r.register(
            "zone_load_errors",
            "Zone documents refused",
            m.zone_load_errors.clone(),
        );
        Metrics { registry: r, ..m }
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// Counts a response.
    pub fn response(&self, rcode: hickory_proto::op::ResponseCode) {
        self.responses
            .get_or_create(&RcodeLabel {
                rcode: rcode_name(rcode),
            })
            .inc();
    }
}

/// The mnemonic dig prints.
pub fn rcode_name(rcode: hickory_proto::op::ResponseCode) -> &'static str {
    use hickory_proto::op::ResponseCode as R;
    match rcode {
        R::NoError => "NOERROR",
        R::FormErr => "FORMERR",
        R::ServFail => "SERVFAIL",
        R::NXDomain => "NXDOMAIN",
        R::NotImp => "NOTIMP",
        R::Refused => "REFUSED",
        R::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}
