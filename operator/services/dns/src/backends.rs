//! The resolver address's load balancers in a tenant VPC (pure): one row
//! per protocol, `vip:53 -> ready servers' VPC addresses`, refusing
//! queries while no server is ready (a client fails over at once instead
//! of timing out).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use ovn::nb::LoadBalancer;
use ovn::nb::load_balancer::Protocol;
use vpcnet_api::contract::annotations::IP_ADDRESS;
use vpcnet_api::contract::dns::DNS_PORT;
use vpcnet_api::contract::{labels, naming};

/// Where a server reaching its own VPC's address is seen from (as for
/// Services).
pub const HAIRPIN_SNAT_IP: &str = "169.254.169.5";

/// Whether `pod` is a server of VpcDns `name` that may take queries: ready
/// and not on its way out.
pub fn serving(pod: &Pod, name: &str) -> bool {
    pod.labels().get(labels::VPC_DNS).map(String::as_str) == Some(name)
        && pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The VPC addresses of VpcDns `name`'s serving pods in `namespace`, sorted.
pub fn addresses(pods: &[Arc<Pod>], namespace: &str, name: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = pods
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace) && serving(p, name))
        .filter_map(|p| p.annotations().get(IP_ADDRESS)?.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v) => format!("{v}:{port}"),
        IpAddr::V6(v) => format!("[{v}]:{port}"),
    }
}

/// The rows of VpcDns `name` at `vip` (pure; the owner's keys are stamped
/// when they are written).
pub fn rows(name: &str, vip: IpAddr, servers: &[IpAddr]) -> Vec<LoadBalancer> {
    let to: Vec<String> = servers.iter().map(|ip| endpoint(*ip, DNS_PORT)).collect();
    [Protocol::Udp, Protocol::Tcp]
        .into_iter()
        .map(|proto| LoadBalancer {
            name: naming::dns_lb(name, proto.as_str()),
            protocol: Some(proto),
            vips: BTreeMap::from([(endpoint(vip, DNS_PORT), to.join(","))]),
            options: BTreeMap::from([
                ("reject".to_string(), "true".to_string()),
                ("hairpin_snat_ip".to_string(), HAIRPIN_SNAT_IP.to_string()),
            ]),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn pod(name: &str, dns: &str, ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("vpcnet-system".into()),
                labels: Some(BTreeMap::from([(labels::VPC_DNS.into(), dns.into())])),
                annotations: Some(BTreeMap::from([(IP_ADDRESS.into(), ip.into())])),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_ready_live_servers_of_this_vpcdns_are_backends() {
        let mut going = pod("c", "a", "10.0.1.5", true);
        going.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let pods: Vec<Arc<Pod>> = vec![
            pod("a", "a", "10.0.1.4", true),
            pod("b", "a", "10.0.1.3", true),
            going,
            pod("d", "a", "10.0.1.6", false),
            pod("e", "other", "10.0.1.7", true),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let ips = addresses(&pods, "vpcnet-system", "a");
        assert_eq!(
            ips,
            vec![
                "10.0.1.3".parse::<IpAddr>().unwrap(),
                "10.0.1.4".parse().unwrap()
            ]
        );
        let rows = rows("a", "10.96.0.10".parse().unwrap(), &ips);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].protocol, Some(Protocol::Udp));
        assert_eq!(rows[0].vips["10.96.0.10:53"], "10.0.1.3:53,10.0.1.4:53");
        assert_eq!(rows[1].name, "vpcnet-dns:a:tcp");
        assert_eq!(rows[1].options["reject"], "true");
        let none = super::rows("a", "10.96.0.10".parse().unwrap(), &[]);
        assert_eq!(
            none[0].vips["10.96.0.10:53"], "",
            "no server: queries are refused at once"
        );
    }
}
