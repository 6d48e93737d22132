//! The zone of one VPC (pure): what its servers may answer. Isolation is
//! decided here, by what the document contains: only the namespaces whose
//! pods the VPC holds, and only their Services.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use vpcnet_api::Subnet;
use vpcnet_api::contract::annotations::IP_ADDRESS;
use vpcnet_api::dns_zone::{
    VERSION, ZoneDocument, ZoneEndpoint, ZonePort, ZoneProtocol, ZoneService,
};
use vpcnet_api::subnet::choose_subnet;

/// The label linking an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What a VPC's zone is built from.
pub struct ZoneInputs<'a> {
    /// The VPC.
    pub vpc: &'a str,
    /// The cluster domain.
    pub domain: &'a str,
    /// Upstreams.
    pub upstreams: &'a [SocketAddr],
    /// Every namespace's name.
    pub namespaces: &'a [String],
    /// Every Subnet.
    pub subnets: &'a [Arc<Subnet>],
    /// The subnet of namespaces no Subnet claims.
    pub default_subnet: Option<&'a str>,
    /// Every Service.
    pub services: &'a [Arc<Service>],
    /// Every EndpointSlice.
    pub slices: &'a [Arc<EndpointSlice>],
    /// Every pod (headless endpoints are named by the pod's VPC address,
    /// not by `status.podIP`, which is the node-local probe address).
    pub pods: &'a [Arc<Pod>],
    /// Reverse ranges answered here: the Service range and the VPC's subnets.
    pub service_cidr: Option<IpNet>,
    /// The VPC's subnets.
    pub vpc_cidrs: &'a [Ipv4Net],
}

/// The namespaces of `vpc`: those whose pods are placed on one of its subnets.
pub fn namespaces_of(
    vpc: &str,
    namespaces: &[String],
    subnets: &[Arc<Subnet>],
    default_subnet: Option<&str>,
) -> BTreeSet<String> {
    namespaces
        .iter()
        .filter(|ns| {
            choose_subnet(ns, subnets, default_subnet).is_some_and(|s| s.vpc_name() == vpc)
        })
        .cloned()
        .collect()
}

fn protocol(p: Option<&str>) -> Option<ZoneProtocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(ZoneProtocol::Tcp),
        "UDP" => Some(ZoneProtocol::Udp),
        "SCTP" => Some(ZoneProtocol::Sctp),
        _ => None,
    }
}

/// `pod namespace/name` -> its VPC address.
fn pod_addresses(pods: &[Arc<Pod>]) -> BTreeMap<(String, String), IpAddr> {
    pods.iter()
        .filter_map(|p| {
            let ip = p.annotations().get(IP_ADDRESS)?.parse().ok()?;
            Some(((p.namespace()?, p.name_any()), ip))
        })
        .collect()
}

fn endpoints_of(
    ns: &str,
    name: &str,
    slices: &[Arc<EndpointSlice>],
    addresses: &BTreeMap<(String, String), IpAddr>,
) -> (Vec<ZoneEndpoint>, Vec<ZonePort>) {
    let mut eps = Vec::new();
    let mut ports = BTreeSet::new();
    for s in slices.iter().filter(|s| {
        s.namespace().as_deref() == Some(ns)
            && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
    }) {
        for p in s.ports.iter().flatten() {
            if let (Some(port), Some(proto)) = (p.port, protocol(p.protocol.as_deref()))
                && let Ok(port) = u16::try_from(port)
            {
                ports.insert((p.name.clone(), proto as u8, port));
            }
        }
        for e in &s.endpoints {
            // Only pods' addresses inside the VPC mean anything to its
            // clients; the slice lists the probe address.
            let target = e
                .target_ref
                .as_ref()
                .filter(|t| t.kind.as_deref() == Some("Pod"))
                .and_then(|t| t.name.clone());
            let Some(ip) = target.and_then(|pod| addresses.get(&(ns.to_string(), pod))) else {
                continue;
            };
            eps.push(ZoneEndpoint {
                addresses: vec![*ip],
                hostname: e.hostname.clone(),
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            });
        }
    }
    eps.sort_by(|a, b| (&a.hostname, &a.addresses).cmp(&(&b.hostname, &b.addresses)));
    let ports = ports
        .into_iter()
        .map(|(name, proto, port)| ZonePort {
            name,
            protocol: match proto {
                0 => ZoneProtocol::Tcp,
                1 => ZoneProtocol::Udp,
                _ => ZoneProtocol::Sctp,
            },
            port,
        })
        .collect();
    (eps, ports)
}

/// The zone document of one VPC (pure; its order is stable, so an
/// unchanged VPC writes the same bytes).
pub fn build(i: &ZoneInputs<'_>) -> ZoneDocument {
    let namespaces = namespaces_of(i.vpc, i.namespaces, i.subnets, i.default_subnet);
    let addresses = pod_addresses(i.pods);
    let mut services: Vec<ZoneService> = i
        .services
        .iter()
        .filter(|s| s.namespace().is_some_and(|ns| namespaces.contains(&ns)))
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            if spec.type_.as_deref() == Some("ExternalName") {
                return None;
            }
            let ns = s.namespace()?;
            let cluster_ips: Vec<IpAddr> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|ip| ip.parse().ok())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let (endpoints, slice_ports) = if cluster_ips.is_empty() {
                endpoints_of(&ns, &s.name_any(), i.slices, &addresses)
            } else {
                (Vec::new(), Vec::new())
            };
            let ports = if cluster_ips.is_empty() {
                slice_ports
            } else {
                spec.ports
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        Some(ZonePort {
                            name: p.name.clone().filter(|n| !n.is_empty()),
                            protocol: protocol(p.protocol.as_deref())?,
                            port: u16::try_from(p.port).ok()?,
                        })
                    })
                    .collect()
            };
            Some(ZoneService {
                namespace: ns,
                name: s.name_any(),
                cluster_ips,
                ports,
                endpoints,
            })
        })
        .collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut reverse: Vec<IpNet> = i.service_cidr.into_iter().collect();
    reverse.extend(i.vpc_cidrs.iter().map(|c| IpNet::V4(*c)));
    reverse.sort();
    reverse.dedup();
    ZoneDocument {
        version: VERSION,
        domain: i.domain.to_string(),
        upstreams: i.upstreams.iter().map(|u| u.to_string()).collect(),
        namespaces: namespaces.into_iter().collect(),
        services,
        reverse_zones: reverse,
        ttl: None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ObjectReference, ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use vpcnet_api::SubnetSpec;

    use super::*;

    fn subnet(name: &str, vpc: Option<&str>, cidr: &str, namespaces: &[&str]) -> Arc<Subnet> {
        Arc::new(Subnet::new(
            name,
            SubnetSpec {
                vpc: vpc.map(str::to_string),
                cidr_block: cidr.into(),
                namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            },
        ))
    }

    fn svc(ns: &str, name: &str, ip: Option<&str>, ports: &[(&str, &str, i32)]) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.unwrap_or("None").into()),
                cluster_ips: Some(vec![ip.unwrap_or("None").into()]),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, proto, port)| ServicePort {
                            name: Some(n.to_string()),
                            protocol: Some(proto.to_string()),
                            port: *port,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pod(ns: &str, name: &str, vpc_ip: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                annotations: Some(BTreeMap::from([(IP_ADDRESS.into(), vpc_ip.into())])),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn slice(ns: &str, svc: &str, eps: &[(&str, &str, bool)]) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(format!("{svc}-x")),
                labels: Some(BTreeMap::from([(SERVICE_NAME_LABEL.into(), svc.into())])),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            ports: Some(vec![EndpointPort {
                name: Some("pg".into()),
                port: Some(5432),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            endpoints: eps
                .iter()
                .map(|(pod, probe_ip, ready)| Endpoint {
                    addresses: vec![probe_ip.to_string()],
                    hostname: Some(pod.to_string()),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        ..Default::default()
                    }),
                    target_ref: Some(ObjectReference {
                        kind: Some("Pod".into()),
                        name: Some(pod.to_string()),
                        namespace: Some(ns.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        })
    }

    #[test]
    fn a_vpcs_zone_holds_its_namespaces_only_with_vpc_addresses_for_endpoints() {
        let subnets = vec![
            subnet("ovn-default", None, "10.16.0.0/16", &[]),
            subnet("a1", Some("a"), "10.0.1.0/24", &["ta"]),
            subnet("b1", Some("b"), "10.0.1.0/24", &["tb"]),
        ];
        let namespaces: Vec<String> = ["ta", "tb", "default", "kube-system"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let services = vec![
            svc("ta", "web", Some("10.96.0.20"), &[("http", "TCP", 80)]),
            svc("tb", "web", Some("10.96.0.30"), &[("http", "TCP", 80)]),
            svc("ta", "db", None, &[]),
            svc(
                "default",
                "kubernetes",
                Some("10.96.0.1"),
                &[("https", "TCP", 443)],
            ),
        ];
        let slices = vec![slice(
            "ta",
            "db",
            &[
                ("db-0", "100.64.0.3", true),
                ("db-1", "100.64.0.4", false),
                ("gone", "100.64.0.9", true),
            ],
        )];
        let pods = vec![
            pod("ta", "db-0", "10.0.1.7"),
            pod("ta", "db-1", "10.0.1.8"),
            pod("tb", "db-0", "10.0.1.99"),
        ];
        let cidrs: Vec<Ipv4Net> = vec!["10.0.1.0/24".parse().unwrap()];
        let inputs = ZoneInputs {
            vpc: "a",
            domain: "cluster.local",
            upstreams: &["172.16.3.2:53".parse().unwrap()],
            namespaces: &namespaces,
            subnets: &subnets,
            default_subnet: Some("ovn-default"),
            services: &services,
            slices: &slices,
            pods: &pods,
            service_cidr: Some("10.96.0.0/16".parse().unwrap()),
            vpc_cidrs: &cidrs,
        };
        let z = build(&inputs);
        assert_eq!(z.namespaces, vec!["ta"]);
        let names: Vec<_> = z
            .services
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        assert_eq!(
            names,
            vec!["ta/db", "ta/web"],
            "tenant b's web and the default VPC's Services stay out"
        );
        assert_eq!(
            z.services[1].cluster_ips,
            vec!["10.96.0.20".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(z.services[1].ports[0].name.as_deref(), Some("http"));
        let db = &z.services[0];
        assert!(db.is_headless());
        let eps: Vec<_> = db
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].to_string(), e.ready))
            .collect();
        assert_eq!(
            eps,
            vec![("10.0.1.7".into(), true), ("10.0.1.8".into(), false)],
            "VPC addresses, not probe ones; an endpoint with no known pod is left out"
        );
        assert_eq!(db.ports[0].port, 5432);
        assert_eq!(z.upstreams, vec!["172.16.3.2:53"]);
        assert_eq!(z.reverse_zones.len(), 2);
        // The default VPC gets every namespace no tenant subnet claims.
        let d = build(&ZoneInputs {
            vpc: vpcnet_api::contract::DEFAULT_VPC,
            ..inputs
        });
        assert_eq!(d.namespaces, vec!["default", "kube-system"]);
        assert_eq!(d.services.len(), 1);
        // Stable output: the same inputs write the same bytes.
        assert_eq!(build(&inputs).to_json(), z.to_json());
    }
}
