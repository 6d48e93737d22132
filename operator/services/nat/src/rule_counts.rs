//! `vpcnet_nat_gateway_rules{gateway,kind,state}`: how many SNAT, DNAT and
//! FIP rules each gateway carries, read off the caches at every scrape (so
//! a deleted gateway or rule never leaves a stale series behind).
//!
//! `accepted` counts rules the operator accepted for the gateway,
//! `programmed` those of them its agent reports programmed for their
//! current generation; the difference is work the agent has not done yet.
//! Every gateway has all six series, zeros included, so a dashboard sees a
//! gateway with no rules rather than nothing.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use vpcnet_api::condition;
use vpcnet_api::{IptablesDnatRule, IptablesFIPRule, IptablesSnatRule, VpcNatGateway};

use crate::PROGRAMMED;
use crate::rules::{NatRule, is_accepted};

/// Labels of `vpcnet_nat_gateway_rules`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct GatewayRulesLabel {
    /// The VpcNatGateway.
    pub gateway: String,
    /// `snat`, `dnat` or `fip`.
    pub kind: String,
    /// `accepted` or `programmed`.
    pub state: String,
}

/// Whether the agent reports `rule` programmed for its current generation.
fn programmed<R: NatRule>(rule: &R) -> bool {
    condition::find(rule.conditions(), PROGRAMMED)
        .is_some_and(|c| c.status == "True" && c.observed_generation == rule.meta().generation)
}

/// Adds `rules`' counts to `out` (pure).
fn count<R: NatRule>(rules: &[&R], out: &mut BTreeMap<GatewayRulesLabel, i64>) {
    for rule in rules {
        let Some(gateway) = rule.rule_status().and_then(|s| s.nat_gw_dp.clone()) else {
            continue;
        };
        if !is_accepted(*rule) {
            continue;
        }
        let label = |state: &str| GatewayRulesLabel {
            gateway: gateway.clone(),
            kind: R::SHORT.into(),
            state: state.into(),
        };
        *out.entry(label("accepted")).or_default() += 1;
        if programmed(*rule) {
            *out.entry(label("programmed")).or_default() += 1;
        }
    }
}

/// The counts of every gateway (pure): zeros for each kind and state of
/// each of `gateways`, plus what the rules name.
pub fn counts(
    gateways: &[String],
    snats: &[&IptablesSnatRule],
    dnats: &[&IptablesDnatRule],
    fips: &[&IptablesFIPRule],
) -> BTreeMap<GatewayRulesLabel, i64> {
    let mut out = BTreeMap::new();
    for gateway in gateways {
        for kind in [
            IptablesSnatRule::SHORT,
            IptablesDnatRule::SHORT,
            IptablesFIPRule::SHORT,
        ] {
            for state in ["accepted", "programmed"] {
                out.insert(
                    GatewayRulesLabel {
                        gateway: gateway.clone(),
                        kind: kind.into(),
                        state: state.into(),
                    },
                    0,
                );
            }
        }
    }
    count(snats, &mut out);
    count(dnats, &mut out);
    count(fips, &mut out);
    out
}

fn refs<T>(v: &[std::sync::Arc<T>]) -> Vec<&T> {
    v.iter().map(AsRef::as_ref).collect()
}

/// The collector over the NAT service's caches.
pub struct RuleCounts {
    /// Gateways.
    pub gateways: Store<VpcNatGateway>,
    /// SNAT rules.
    pub snats: Store<IptablesSnatRule>,
    /// DNAT rules.
    pub dnats: Store<IptablesDnatRule>,
    /// FIP rules.
    pub fips: Store<IptablesFIPRule>,
}

impl std::fmt::Debug for RuleCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuleCounts")
    }
}

impl Collector for RuleCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gateways: Vec<String> = self.gateways.state().iter().map(|g| g.name_any()).collect();
        let (snats, dnats, fips) = (self.snats.state(), self.dnats.state(), self.fips.state());
        let family = Family::<GatewayRulesLabel, Gauge>::default();
        for (label, n) in counts(&gateways, &refs(&snats), &refs(&dnats), &refs(&fips)) {
            family.get_or_create(&label).set(n);
        }
        family.encode(encoder.encode_descriptor(
            "vpcnet_nat_gateway_rules",
            "NAT rules per gateway, by kind: accepted by the operator, and of those programmed by the gateway's agent",
            None,
            family.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use vpcnet_api::condition::new;

    use crate::ACCEPTED;
    use vpcnet_api::nat_rule_status::NatRuleStatus;

    use super::*;

    fn status(gw: &str, accepted: bool, programmed_gen: Option<i64>) -> NatRuleStatus {
        let mut conditions = vec![new(ACCEPTED, accepted, "Accepted", "", Some(2))];
        if let Some(g) = programmed_gen {
            conditions.push(new(PROGRAMMED, true, "Programmed", "", Some(g)));
        }
        NatRuleStatus {
            conditions,
            nat_gw_dp: Some(gw.into()),
            ..Default::default()
        }
    }

    fn dnat(name: &str, st: Option<NatRuleStatus>) -> IptablesDnatRule {
        let mut r: IptablesDnatRule = serde_json::from_value(serde_json::json!({
            "apiVersion": "vpcnet.io/v1", "kind": "IptablesDnatRule",
            "metadata": {"name": name, "namespace": "t", "generation": 2},
            "spec": {"eip": "e", "externalPort": "80", "internalIp": "10.0.0.2",
                     "internalPort": "80", "protocol": "tcp"}
        }))
        .unwrap();
        r.status = st;
        r
    }

    fn get(m: &BTreeMap<GatewayRulesLabel, i64>, gw: &str, kind: &str, state: &str) -> i64 {
        m[&GatewayRulesLabel {
            gateway: gw.into(),
            kind: kind.into(),
            state: state.into(),
        }]
    }

    #[test]
    fn rules_count_on_their_gateway_only_once_accepted_and_programmed_for_their_generation() {
        let rules = [
            dnat("a", Some(status("gw1", true, Some(2)))),
            // Programmed for an older generation: accepted, not programmed.
            dnat("b", Some(status("gw1", true, Some(1)))),
            // Refused: not counted.
            dnat("c", Some(status("gw1", false, None))),
            // Not judged yet.
            dnat("d", None),
            dnat("e", Some(status("gw2", true, None))),
        ];
        let refs: Vec<&IptablesDnatRule> = rules.iter().collect();
        let m = counts(&["gw1".into(), "idle".into()], &[], &refs, &[]);
        assert_eq!(get(&m, "gw1", "dnat", "accepted"), 2);
        assert_eq!(get(&m, "gw1", "dnat", "programmed"), 1);
        assert_eq!(get(&m, "gw2", "dnat", "accepted"), 1, "named by a rule");
        assert_eq!(
            get(&m, "idle", "snat", "accepted"),
            0,
            "zeros for a gateway"
        );
        assert_eq!(get(&m, "idle", "fip", "programmed"), 0);
        assert_eq!(m.len(), 6 + 6 + 1);
    }
}
