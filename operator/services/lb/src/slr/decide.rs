//! A SwitchLBRule's pure steps: validate (its VIP, its endpoints inside
//! the VPC, no older rule on the same VIP, port and protocol), build its
//! headless Service (and EndpointSlice for fixed endpoints), and its
//! load-balancer rows from the backends those yield.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use ovn::nb::LoadBalancer;
use ovn::owner::KEY_KEY;
use vpcnet_api::contract::naming;
use vpcnet_api::switch_lb_rule::{LbProtocol, SessionAffinity};
use vpcnet_api::{SwitchLBRule, Vip};

use crate::build::{self, VpcFacts};
use crate::reasons::{LbReason, LbRefusal};
use crate::service_lb::SERVICE_NAME_LABEL;

/// The label EndpointSlices carry naming who manages them.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`] (the built-in controller leaves such
/// slices alone).
pub const MANAGED_BY: &str = "vpcnet.io";

/// A validated rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Its VIP.
    pub vip: Ipv4Addr,
}

fn proto(p: LbProtocol) -> &'static str {
    match p {
        LbProtocol::Tcp => "TCP",
        LbProtocol::Udp => "UDP",
    }
}

/// `key: value` selector entries as labels.
pub fn selector(entries: &[String]) -> BTreeMap<String, String> {
    entries
        .iter()
        .filter_map(|e| {
            let (k, v) = e.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The (port, protocol) pairs a rule serves on its VIP.
fn served(rule: &SwitchLBRule) -> BTreeSet<(i32, &'static str)> {
    rule.spec
        .ports
        .iter()
        .map(|p| (p.port, proto(p.protocol)))
        .collect()
}

fn age(rule: &SwitchLBRule) -> (Option<k8s_openapi::jiff::Timestamp>, String, String) {
    (
        rule.creation_timestamp().map(|t| t.0),
        rule.namespace().unwrap_or_default(),
        rule.name_any(),
    )
}

/// Validate (pure). `vpc` is the namespace's VPC; `reserved` the addresses
/// Ready Vips of the namespace hold; `rivals` the other rules of the VPC's
/// namespaces.
pub fn validate(
    rule: &SwitchLBRule,
    vpc: Option<&VpcFacts>,
    reserved: &BTreeSet<Ipv4Addr>,
    rivals: &[Arc<SwitchLBRule>],
) -> Result<Accepted, LbRefusal> {
    let ns = rule.namespace().unwrap_or_default();
    let vpc = vpc.ok_or_else(|| {
        LbRefusal::new(
            LbReason::NoVpc,
            format!("no Subnet places the pods of namespace {ns}, so no VPC would carry the rule"),
        )
    })?;
    let vip: Ipv4Addr = rule.spec.vip.parse().map_err(|_| {
        LbRefusal::new(
            LbReason::OutOfRange,
            format!("vip {} is not an IPv4 address", rule.spec.vip),
        )
    })?;
    if vpc.holds(vip) && !reserved.contains(&vip) {
        return Err(LbRefusal::new(
            LbReason::VipNotReserved,
            format!(
                "vip {vip} lies in a subnet of the VPC but no Vip of namespace {ns} reserves it (a pod could be given it); create a Vip with v4ip {vip}"
            ),
        ));
    }
    for e in rule.spec.endpoints.iter().flatten() {
        let ip: Option<Ipv4Addr> = e.parse().ok();
        if !ip.is_some_and(|ip| vpc.holds(ip)) {
            return Err(LbRefusal::new(
                LbReason::Forbidden,
                format!("endpoint {e} is not an address of this namespace's VPC"),
            ));
        }
    }
    let mine = served(rule);
    let older = rivals
        .iter()
        .filter(|r| r.uid() != rule.uid() && r.spec.vip.parse::<Ipv4Addr>().ok() == Some(vip))
        .filter(|r| age(r) < age(rule))
        .find(|r| !served(r).is_disjoint(&mine));
    if let Some(o) = older {
        // Name the older rule only to its own tenant.
        let who = if o.namespace().as_deref() == Some(ns.as_str()) {
            format!("rule {}", o.name_any())
        } else {
            "an older rule of the VPC".to_string()
        };
        return Err(LbRefusal::new(
            LbReason::Conflict,
            format!("{who} already serves a port of vip {vip}"),
        ));
    }
    Ok(Accepted { vip })
}

/// The addresses Ready Vips of namespace `ns` hold.
pub fn reserved_in(ns: &str, vips: &[Arc<Vip>]) -> BTreeSet<Ipv4Addr> {
    vips.iter()
        .filter(|v| v.namespace().as_deref() == Some(ns))
        .filter(|v| {
            v.status.as_ref().is_some_and(|s| {
                vpcnet_api::condition::find(&s.conditions, vpcnet_api::condition::READY)
                    .is_some_and(|c| c.status == "True")
            })
        })
        .filter_map(|v| v.status.as_ref()?.v4ip.as_ref()?.parse().ok())
        .collect()
}

fn owner_reference(rule: &SwitchLBRule) -> OwnerReference {
    OwnerReference {
        api_version: SwitchLBRule::api_version(&()).into_owned(),
        kind: SwitchLBRule::kind(&()).into_owned(),
        name: rule.name_any(),
        uid: rule.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The rule's headless Service (pure): with the rule's selector, or none
/// for fixed endpoints (then [`endpoint_slice`] holds them).
pub fn headless_service(rule: &SwitchLBRule) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(naming::slr_service(&rule.name_any())),
            namespace: rule.namespace(),
            owner_references: Some(vec![owner_reference(rule)]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: rule.spec.selector.as_deref().map(selector),
            ports: Some(
                rule.spec
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        target_port: Some(IntOrString::Int(p.target_port.unwrap_or(p.port))),
                        protocol: Some(proto(p.protocol).into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The EndpointSlice of a rule with fixed endpoints (pure); `None` for a
/// selector rule, whose slices Kubernetes keeps.
pub fn endpoint_slice(rule: &SwitchLBRule) -> Option<EndpointSlice> {
    let endpoints = rule.spec.endpoints.as_ref()?;
    let svc = naming::slr_service(&rule.name_any());
    Some(EndpointSlice {
        metadata: ObjectMeta {
            name: Some(svc.clone()),
            namespace: rule.namespace(),
            owner_references: Some(vec![owner_reference(rule)]),
            labels: Some(BTreeMap::from([
                (SERVICE_NAME_LABEL.to_string(), svc),
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            ])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|e| Endpoint {
                addresses: vec![e.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            rule.spec
                .ports
                .iter()
                .map(|p| EndpointPort {
                    name: Some(p.name.clone()),
                    port: Some(p.target_port.unwrap_or(p.port)),
                    protocol: Some(proto(p.protocol).into()),
                    ..Default::default()
                })
                .collect(),
        ),
    })
}

/// The rule's rows (pure): one per protocol, `vip:port -> backends` of the
/// port's name in `slices`, with the rule's affinity.
pub fn rows(
    rule: &SwitchLBRule,
    vip: Ipv4Addr,
    slices: &[Arc<EndpointSlice>],
    vpc: &VpcFacts,
    resolve: build::Resolve<'_>,
) -> (Vec<LoadBalancer>, Vec<String>) {
    let affinity = (rule.spec.session_affinity == Some(SessionAffinity::ClientIP))
        .then_some(build::DEFAULT_AFFINITY_SECONDS);
    let options = build::lb_options(affinity);
    let ns = rule.namespace().unwrap_or_default();
    let mut by_proto: BTreeMap<&'static str, LoadBalancer> = BTreeMap::new();
    let mut all = BTreeSet::new();
    for p in &rule.spec.ports {
        let Some(proto) = build::protocol(Some(proto(p.protocol))) else {
            continue;
        };
        let to = build::backends(slices, Some(&p.name), proto, vpc, resolve);
        all.extend(to.iter().cloned());
        let lb = by_proto
            .entry(proto.as_str())
            .or_insert_with(|| LoadBalancer {
                name: naming::slr_lb(&ns, &rule.name_any(), proto.as_str()),
                protocol: Some(proto),
                options: options.clone(),
                external_ids: BTreeMap::from([(KEY_KEY.to_string(), proto.as_str().to_string())]),
                ..Default::default()
            });
        lb.vips.insert(
            build::vip_key(vip, p.port),
            to.into_iter().collect::<Vec<_>>().join(","),
        );
    }
    (by_proto.into_values().collect(), all.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use vpcnet_api::switch_lb_rule::{LbPort, SwitchLBRuleSpec};

    use super::*;

    fn vpc() -> VpcFacts {
        VpcFacts {
            name: "a".into(),
            cidrs: vec!["10.0.1.0/24".parse().unwrap()],
        }
    }

    fn rule(name: &str, vip: &str, ports: &[(i32, LbProtocol)], created: i64) -> SwitchLBRule {
        let mut r = SwitchLBRule::new(
            name,
            SwitchLBRuleSpec {
                vip: vip.into(),
                selector: Some(vec!["app: web".into()]),
                endpoints: None,
                session_affinity: None,
                ports: ports
                    .iter()
                    .map(|(p, proto)| LbPort {
                        name: format!("p{p}"),
                        port: *p,
                        target_port: Some(80),
                        protocol: *proto,
                    })
                    .collect(),
            },
        );
        r.metadata.namespace = Some("t".into());
        r.metadata.uid = Some(format!("uid-{name}"));
        r.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
        ));
        r
    }

    #[test]
    fn a_vip_in_a_subnet_needs_a_vip_reservation() {
        let r = rule("r", "10.0.1.200", &[(8091, LbProtocol::Tcp)], 1);
        let e = validate(&r, Some(&vpc()), &BTreeSet::new(), &[]).unwrap_err();
        assert_eq!(e.reason, LbReason::VipNotReserved);
        let reserved = BTreeSet::from(["10.0.1.200".parse().unwrap()]);
        assert!(validate(&r, Some(&vpc()), &reserved, &[]).is_ok());
        let outside = rule("o", "172.31.0.9", &[(8091, LbProtocol::Tcp)], 1);
        assert!(validate(&outside, Some(&vpc()), &BTreeSet::new(), &[]).is_ok());
    }

    #[test]
    fn endpoints_outside_the_vpc_are_forbidden() {
        let mut r = rule("r", "172.31.0.9", &[(8092, LbProtocol::Tcp)], 1);
        r.spec.selector = None;
        r.spec.endpoints = Some(vec!["10.0.1.5".into(), "10.0.2.5".into()]);
        let e = validate(&r, Some(&vpc()), &BTreeSet::new(), &[]).unwrap_err();
        assert_eq!(e.reason, LbReason::Forbidden);
        assert!(e.message.contains("10.0.2.5"));
    }

    #[test]
    fn the_younger_of_two_rules_on_one_vip_port_and_protocol_is_refused() {
        let old = Arc::new(rule("old", "172.31.0.9", &[(80, LbProtocol::Tcp)], 1));
        let young = rule("young", "172.31.0.9", &[(80, LbProtocol::Tcp)], 2);
        let e = validate(
            &young,
            Some(&vpc()),
            &BTreeSet::new(),
            std::slice::from_ref(&old),
        )
        .unwrap_err();
        assert_eq!(e.reason, LbReason::Conflict);
        assert!(e.message.contains("rule old"));
        // The older one is not refused by the younger.
        let young = Arc::new(young);
        assert!(validate(&old, Some(&vpc()), &BTreeSet::new(), &[young]).is_ok());
        // Another protocol on the same port is no conflict.
        let udp = rule("udp", "172.31.0.9", &[(80, LbProtocol::Udp)], 3);
        assert!(validate(&udp, Some(&vpc()), &BTreeSet::new(), &[old]).is_ok());
    }

    #[test]
    fn children_and_rows_of_a_fixed_endpoint_rule() {
        let mut r = rule("s", "172.31.0.9", &[(8092, LbProtocol::Tcp)], 1);
        r.spec.selector = None;
        r.spec.endpoints = Some(vec!["10.0.1.5".into(), "10.0.1.6".into()]);
        r.spec.session_affinity = Some(SessionAffinity::ClientIP);
        let svc = headless_service(&r);
        assert_eq!(svc.metadata.name.as_deref(), Some("slr-s"));
        assert_eq!(
            svc.spec.as_ref().unwrap().cluster_ip.as_deref(),
            Some("None")
        );
        assert!(svc.spec.as_ref().unwrap().selector.is_none());
        let slice = Arc::new(endpoint_slice(&r).unwrap());
        assert_eq!(slice.labels()[SERVICE_NAME_LABEL], "slr-s");
        let (rows, backends) = rows(
            &r,
            "172.31.0.9".parse().unwrap(),
            &[slice],
            &vpc(),
            &build::as_written,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].vips["172.31.0.9:8092"], "10.0.1.5:80,10.0.1.6:80");
        assert_eq!(rows[0].options[build::options::AFFINITY_TIMEOUT], "10800");
        assert_eq!(backends, vec!["10.0.1.5:80", "10.0.1.6:80"]);
    }

    #[test]
    fn a_selector_rule_selects_by_its_labels() {
        let r = rule("w", "172.31.0.9", &[(8091, LbProtocol::Tcp)], 1);
        let svc = headless_service(&r);
        assert_eq!(
            svc.spec.unwrap().selector.unwrap(),
            BTreeMap::from([("app".to_string(), "web".to_string())])
        );
        assert!(endpoint_slice(&r).is_none());
    }
}
