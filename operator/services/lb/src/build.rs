//! A Service's load-balancer rows, from the Service, its EndpointSlices and
//! its VPC (pure): one `Load_Balancer` per protocol, `clusterIP:port ->
//! ready backends`, refusing connections while a port has none.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::ResourceExt;
use ovn::nb::LoadBalancer;
use ovn::nb::load_balancer::Protocol;
use ovn::owner::KEY_KEY;
use vpcnet_api::contract::naming;

/// The source address a backend sees when it reaches its own VIP. The same
/// in every VPC (a VPC never sees another's), link-local so no subnet can
/// hold it.
pub const HAIRPIN_SNAT_IP: &str = "169.254.169.5";

/// The affinity timeout Kubernetes defaults `ClientIP` to (3 h).
pub const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

/// `options` keys of OVN load balancers.
pub mod options {
    /// Answer a VIP without backends with a TCP RST / ICMP unreachable.
    pub const REJECT: &str = "reject";
    /// Source of hairpinned connections.
    pub const HAIRPIN_SNAT_IP: &str = "hairpin_snat_ip";
    /// Seconds a client stays on its backend (session affinity).
    pub const AFFINITY_TIMEOUT: &str = "affinity_timeout";
}

/// What the rows of a Service depend on besides the Service itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcFacts {
    /// The VPC of the Service's namespace.
    pub name: String,
    /// Its subnets' ranges: only backends inside them are reachable.
    pub cidrs: Vec<Ipv4Net>,
}

impl VpcFacts {
    /// Whether `ip` lies in one of the VPC's subnets.
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        self.cidrs.iter().any(|c| c.contains(&ip))
    }
}

/// Whether the Service gets load-balancer rows at all: not headless, not
/// `ExternalName`, with an IPv4 cluster address.
pub fn cluster_ips(svc: &Service) -> Vec<Ipv4Addr> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let mut ips: Vec<&String> = spec.cluster_ips.iter().flatten().collect();
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.iter());
    }
    let mut out: Vec<Ipv4Addr> = ips.iter().filter_map(|s| s.parse().ok()).collect();
    out.dedup();
    out
}

pub(crate) fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// Whether an endpoint takes new connections: ready (unset counts as
/// ready, as the API says) and not terminating.
fn takes_traffic(ep: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    let c = ep.conditions.as_ref();
    c.and_then(|c| c.ready).unwrap_or(true) && !c.and_then(|c| c.terminating).unwrap_or(false)
}

/// The VPC addresses of an endpoint. A pod's endpoint address is its
/// `status.podIP`, which is its probe address when the node gives it one
/// (see the CNI's `probe`), so the caller looks the pod's VPC address up.
pub type Resolve<'a> = &'a dyn Fn(&Endpoint) -> Vec<Ipv4Addr>;

/// An endpoint's addresses as written (fixed endpoints, or pods without a
/// probe address).
pub fn as_written(ep: &Endpoint) -> Vec<Ipv4Addr> {
    ep.addresses.iter().filter_map(|a| a.parse().ok()).collect()
}

/// The ready backends (`ip:port`, sorted) of the Service port named
/// `port_name` with `proto`, from the Service's slices, inside the VPC.
pub(crate) fn backends(
    slices: &[Arc<EndpointSlice>],
    port_name: Option<&str>,
    proto: Protocol,
    vpc: &VpcFacts,
    resolve: Resolve<'_>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name.unwrap_or("")
                && protocol(p.protocol.as_deref()) == Some(proto)
        });
        let Some(port) = port.and_then(|p| p.port) else {
            continue;
        };
        for ep in slice.endpoints.iter().filter(|e| takes_traffic(e)) {
            for ip in resolve(ep).into_iter().filter(|ip| vpc.holds(*ip)) {
                out.insert(format!("{ip}:{port}"));
            }
        }
    }
    out
}

/// The affinity timeout of a `ClientIP` Service, if it has affinity.
fn affinity_seconds(svc: &Service) -> Option<i32> {
    let spec = svc.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let t = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .unwrap_or(DEFAULT_AFFINITY_SECONDS);
    // OVN's learned flows cap the timeout at 65535 s.
    Some(t.clamp(1, 65535))
}

/// The options every row carries, plus affinity.
pub fn lb_options(affinity: Option<i32>) -> BTreeMap<String, String> {
    let mut o = BTreeMap::from([
        (options::REJECT.to_string(), "true".to_string()),
        (
            options::HAIRPIN_SNAT_IP.to_string(),
            HAIRPIN_SNAT_IP.to_string(),
        ),
    ]);
    if let Some(t) = affinity {
        o.insert(options::AFFINITY_TIMEOUT.into(), t.to_string());
    }
    o
}

/// An address and port as an OVN VIP key.
pub(crate) fn vip_key(ip: Ipv4Addr, port: i32) -> String {
    format!("{ip}:{port}")
}

/// The rows a Service wants: one per protocol its ports use (pure). The
/// owner's keys are stamped when the rows are written.
pub fn service_rows(
    svc: &Service,
    slices: &[Arc<EndpointSlice>],
    vpc: &VpcFacts,
    resolve: Resolve<'_>,
) -> Vec<LoadBalancer> {
    let ips = cluster_ips(svc);
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let (Some(ports), false) = (ports, ips.is_empty()) else {
        return Vec::new();
    };
    let mut by_proto: BTreeMap<&'static str, (Protocol, BTreeMap<String, String>)> =
        BTreeMap::new();
    for p in ports {
        let Some(proto) = protocol(p.protocol.as_deref()) else {
            continue;
        };
        let to: Vec<String> = backends(slices, p.name.as_deref(), proto, vpc, resolve)
            .into_iter()
            .collect();
        let vips = &mut by_proto
            .entry(proto.as_str())
            .or_insert_with(|| (proto, BTreeMap::new()))
            .1;
        for ip in &ips {
            vips.insert(vip_key(*ip, p.port), to.join(","));
        }
    }
    let ns = svc.namespace().unwrap_or_default();
    let options = lb_options(affinity_seconds(svc));
    by_proto
        .into_iter()
        .map(|(key, (proto, vips))| LoadBalancer {
            name: naming::service_lb(&ns, &svc.name_any(), key),
            protocol: Some(proto),
            vips,
            options: options.clone(),
            external_ids: BTreeMap::from([(KEY_KEY.to_string(), key.to_string())]),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ClientIPConfig, ServicePort, ServiceSpec, SessionAffinityConfig,
    };
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};

    use super::*;

    fn vpc() -> VpcFacts {
        VpcFacts {
            name: "a".into(),
            cidrs: vec!["10.0.1.0/24".parse().unwrap()],
        }
    }

    fn port(name: Option<&str>, port: i32, proto: &str) -> ServicePort {
        ServicePort {
            name: name.map(str::to_string),
            port,
            protocol: Some(proto.into()),
            ..Default::default()
        }
    }

    fn svc(cluster_ip: &str, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: kube::api::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("t".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                cluster_ips: Some(vec![cluster_ip.into()]),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ep(ip: &str, ready: Option<bool>, terminating: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready,
                terminating,
                serving: None,
            }),
            ..Default::default()
        }
    }

    fn slice(ports: Vec<(Option<&str>, i32, &str)>, eps: Vec<Endpoint>) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: eps,
            ports: Some(
                ports
                    .into_iter()
                    .map(|(n, p, proto)| EndpointPort {
                        name: n.map(str::to_string),
                        port: Some(p),
                        protocol: Some(proto.into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            metadata: Default::default(),
        })
    }

    #[test]
    fn ready_endpoints_only_and_terminating_ones_leave_at_once() {
        let s = svc("10.96.0.20", vec![port(None, 80, "TCP")]);
        let sl = slice(
            vec![(None, 8080, "TCP")],
            vec![
                ep("10.0.1.5", Some(true), None),
                ep("10.0.1.6", None, None),
                ep("10.0.1.7", Some(false), None),
                ep("10.0.1.8", Some(true), Some(true)),
            ],
        );
        let rows = service_rows(&s, &[sl], &vpc(), &as_written);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].vips["10.96.0.20:80"], "10.0.1.5:8080,10.0.1.6:8080");
        assert_eq!(rows[0].protocol, Some(Protocol::Tcp));
        assert_eq!(rows[0].options[options::REJECT], "true");
        assert_eq!(rows[0].options[options::HAIRPIN_SNAT_IP], HAIRPIN_SNAT_IP);
        assert!(!rows[0].options.contains_key(options::AFFINITY_TIMEOUT));
    }

    #[test]
    fn a_port_without_backends_keeps_its_vip_so_it_is_refused() {
        let s = svc("10.96.0.20", vec![port(None, 80, "TCP")]);
        let rows = service_rows(&s, &[], &vpc(), &as_written);
        assert_eq!(rows[0].vips["10.96.0.20:80"], "");
    }

    #[test]
    fn one_row_per_protocol_and_ports_matched_by_name() {
        let s = svc(
            "10.96.0.53",
            vec![
                port(Some("dns"), 53, "UDP"),
                port(Some("dns-tcp"), 53, "TCP"),
            ],
        );
        let sl = slice(
            vec![(Some("dns"), 5353, "UDP"), (Some("dns-tcp"), 5354, "TCP")],
            vec![ep("10.0.1.9", Some(true), None)],
        );
        let rows = service_rows(&s, &[sl], &vpc(), &as_written);
        let by: BTreeMap<_, _> = rows.iter().map(|r| (r.protocol.unwrap(), r)).collect();
        assert_eq!(by[&Protocol::Udp].vips["10.96.0.53:53"], "10.0.1.9:5353");
        assert_eq!(by[&Protocol::Tcp].vips["10.96.0.53:53"], "10.0.1.9:5354");
        assert_eq!(by[&Protocol::Udp].external_ids[KEY_KEY], "udp");
        assert_eq!(by[&Protocol::Tcp].name, "vpcnet-svc:t/web:tcp");
    }

    #[test]
    fn backends_outside_the_vpc_are_never_programmed() {
        // The API server's endpoint (the host) and another VPC's range.
        let s = svc("10.96.0.1", vec![port(Some("https"), 443, "TCP")]);
        let sl = slice(
            vec![(Some("https"), 6443, "TCP")],
            vec![
                ep("10.255.0.1", Some(true), None),
                ep("10.0.2.5", None, None),
            ],
        );
        let rows = service_rows(&s, &[sl], &vpc(), &as_written);
        assert_eq!(rows[0].vips["10.96.0.1:443"], "");
    }

    #[test]
    fn headless_and_external_name_services_get_no_row() {
        let mut headless = svc("None", vec![port(None, 80, "TCP")]);
        assert!(service_rows(&headless, &[], &vpc(), &as_written).is_empty());
        headless.spec.as_mut().unwrap().cluster_ips = Some(vec!["None".into()]);
        assert!(service_rows(&headless, &[], &vpc(), &as_written).is_empty());
        let mut ext = svc("10.96.0.9", vec![port(None, 80, "TCP")]);
        ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert!(service_rows(&ext, &[], &vpc(), &as_written).is_empty());
    }

    #[test]
    fn client_ip_affinity_carries_its_timeout_capped_for_ovn() {
        let mut s = svc("10.96.0.20", vec![port(None, 80, "TCP")]);
        s.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
        let rows = service_rows(&s, &[], &vpc(), &as_written);
        assert_eq!(rows[0].options[options::AFFINITY_TIMEOUT], "10800");
        s.spec.as_mut().unwrap().session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(86400),
            }),
        });
        let rows = service_rows(&s, &[], &vpc(), &as_written);
        assert_eq!(rows[0].options[options::AFFINITY_TIMEOUT], "65535");
    }

    #[test]
    fn a_pods_vpc_address_is_looked_up_when_its_endpoint_is_a_probe_address() {
        let s = svc("10.96.0.20", vec![port(None, 80, "TCP")]);
        let sl = slice(
            vec![(None, 8080, "TCP")],
            vec![ep("100.64.0.7", None, None)],
        );
        let by_pod = |e: &Endpoint| {
            if e.addresses == ["100.64.0.7"] {
                vec!["10.0.1.42".parse().unwrap()]
            } else {
                Vec::new()
            }
        };
        let rows = service_rows(&s, std::slice::from_ref(&sl), &vpc(), &by_pod);
        assert_eq!(rows[0].vips["10.96.0.20:80"], "10.0.1.42:8080");
        // Taken as written, a probe address is outside the VPC: never a backend.
        let rows = service_rows(&s, &[sl], &vpc(), &as_written);
        assert_eq!(rows[0].vips["10.96.0.20:80"], "");
    }

    #[test]
    fn backends_from_several_slices_are_merged_and_sorted() {
        let s = svc("10.96.0.20", vec![port(None, 80, "TCP")]);
        let a = slice(vec![(None, 80, "TCP")], vec![ep("10.0.1.9", None, None)]);
        let b = slice(vec![(None, 80, "TCP")], vec![ep("10.0.1.3", None, None)]);
        let rows = service_rows(&s, &[a, b], &vpc(), &as_written);
        assert_eq!(rows[0].vips["10.96.0.20:80"], "10.0.1.3:80,10.0.1.9:80");
    }
}
