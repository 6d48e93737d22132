//! Validate (pure): a gateway's VPC, subnet, LAN address and external
//! network, judged against the dereferenced [`Facts`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kube::ResourceExt;
use vpcnet_api::VpcNatGateway;
use vpcnet_runtime::reasons;
use vpcnet_runtime::refusal::Refusal;

use super::facts::{Facts, nad_of};
use crate::ownership;

reasons! {
    /// Why a gateway is not run (its `Accepted`/`Ready` reason).
    pub enum GatewayReason {
        /// `spec.vpc` names no VPC.
        VpcNotFound,
        /// `spec.subnet` names no subnet (or not an IPv4 one).
        SubnetNotFound,
        /// The subnet is a provider subnet or another VPC's.
        SubnetNotInVpc,
        /// The subnet has no verdict (or a refusal) yet.
        SubnetNotReady,
        /// `lanIp` is not a host address of the subnet.
        InvalidLanIp,
        /// `lanIp` is held by someone else.
        LanIpInUse,
        /// The external subnet is missing or not an external network.
        ExternalSubnetNotFound,
        /// The external subnet's NetworkAttachmentDefinition is missing.
        NetworkAttachmentNotFound,
        /// Two replicas, but the NetworkAttachmentDefinition's configuration
        /// cannot be read (no JSON `spec.config`).
        NetworkAttachmentUnusable,
        /// No external address is free.
        ExternalIpUnavailable,
        /// Deletion waits for the EIPs on the gateway.
        InUse,
    }
}

/// A gateway refusal.
pub type GatewayRefusal = Refusal<GatewayReason>;

/// What validation established.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// eth0's subnet.
    pub subnet: String,
    /// eth0's address (with 2 replicas: the active's shared address).
    pub lan_ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub lan_prefix: u8,
    /// The VPC router's address on that subnet.
    pub lan_gateway: Ipv4Addr,
    /// The VPC's CIDRs (its accepted subnets').
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// The external subnet.
    pub external_subnet: String,
    /// Its CIDR.
    pub external_cidr: Ipv4Net,
    /// Its gateway.
    pub external_gateway: Option<Ipv4Addr>,
    /// The NetworkAttachmentDefinition `(namespace, name)` of net1.
    pub nad: (String, String),
    /// Its CNI configuration without IPAM (for two replicas' own copy).
    pub nad_without_ipam: Option<String>,
}

fn refuse(reason: GatewayReason, message: String) -> GatewayRefusal {
    Refusal::new(reason, message)
}

/// Validates `gw` against `facts` (pure).
pub fn validate(gw: &VpcNatGateway, facts: &Facts) -> Result<Validated, GatewayRefusal> {
    use GatewayReason::*;
    if facts.vpc.is_none() {
        return Err(refuse(
            VpcNotFound,
            format!("VPC {} does not exist", gw.spec.vpc),
        ));
    }
    let Some(subnet) = facts
        .subnets
        .iter()
        .find(|s| s.name_any() == gw.spec.subnet)
    else {
        return Err(refuse(
            SubnetNotFound,
            format!("subnet {} does not exist", gw.spec.subnet),
        ));
    };
    if subnet.spec.provider.is_some() || subnet.vpc_name() != gw.spec.vpc {
        return Err(refuse(
            SubnetNotInVpc,
            format!(
                "subnet {} is not a subnet of VPC {}",
                gw.spec.subnet, gw.spec.vpc
            ),
        ));
    }
    // The VPC's address space is that of its accepted subnets: wait for
    // this one's verdict rather than start a gateway that knows none.
    if !ownership::subnet_accepted(subnet) {
        return Err(refuse(
            SubnetNotReady,
            format!(
                "subnet {} is not Ready yet; the gateway starts once it is",
                gw.spec.subnet
            ),
        ));
    }
    let Ok(cidr) = subnet.spec.cidr_block.parse::<Ipv4Net>() else {
        return Err(refuse(
            SubnetNotFound,
            format!("subnet {} is not IPv4", gw.spec.subnet),
        ));
    };
    let Ok(lan_ip) = gw.spec.lan_ip.parse::<Ipv4Addr>() else {
        return Err(refuse(
            InvalidLanIp,
            format!("lanIp {} is not IPv4", gw.spec.lan_ip),
        ));
    };
    let lan_gateway = vpcnet_api::subnet::router_address(subnet.spec.gateway.as_deref(), &cidr);
    if !cidr.contains(&lan_ip)
        || lan_ip == lan_gateway
        || lan_ip == cidr.network()
        || lan_ip == cidr.broadcast()
    {
        return Err(refuse(
            InvalidLanIp,
            format!(
                "lanIp {lan_ip} must be a host address of subnet {} ({cidr}) other than its gateway {lan_gateway}",
                gw.spec.subnet
            ),
        ));
    }
    let ext_name = &facts.external_subnet;
    let Some(ext) = facts.subnets.iter().find(|s| s.name_any() == *ext_name) else {
        return Err(refuse(
            ExternalSubnetNotFound,
            format!("external subnet {ext_name} does not exist"),
        ));
    };
    let Some(provider) = ext.spec.provider.as_deref() else {
        return Err(refuse(
            ExternalSubnetNotFound,
            format!("subnet {ext_name} has no provider, so it is not an external network"),
        ));
    };
    let nad = nad_of(provider);
    if facts.nad_exists != Some(true) {
        return Err(refuse(
            NetworkAttachmentNotFound,
            format!(
                "NetworkAttachmentDefinition {}/{} (provider of {ext_name}) does not exist",
                nad.0, nad.1
            ),
        ));
    }
    let Ok(external_cidr) = ext.spec.cidr_block.parse::<Ipv4Net>() else {
        return Err(refuse(
            ExternalSubnetNotFound,
            format!("external subnet {ext_name} is not IPv4"),
        ));
    };
    Ok(Validated {
        subnet: gw.spec.subnet.clone(),
        lan_ip,
        lan_prefix: cidr.prefix_len(),
        lan_gateway,
        vpc_cidrs: ownership::vpc_cidrs(&gw.spec.vpc, &facts.subnets),
        external_subnet: ext_name.clone(),
        external_cidr,
        external_gateway: ext.spec.gateway.as_deref().and_then(|g| g.parse().ok()),
        nad_without_ipam: match (gw.spec.replicas, facts.nad_config.as_deref()) {
            (2, Some(c)) => Some(super::attachment::without_ipam(c).map_err(|e| {
                refuse(
                    NetworkAttachmentUnusable,
                    format!("NetworkAttachmentDefinition {}/{}: {e}", nad.0, nad.1),
                )
            })?),
            (2, None) => {
                return Err(refuse(
                    NetworkAttachmentUnusable,
                    format!(
                        "NetworkAttachmentDefinition {}/{} has no spec.config to run two replicas with",
                        nad.0, nad.1
                    ),
                ));
            }
            _ => None,
        },
        nad,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vpcnet_api::{Subnet, SubnetSpec, SubnetStatus, Vpc, VpcNatGatewaySpec, VpcSpec};

    use super::*;

    fn subnet(
        name: &str,
        cidr: &str,
        vpc: Option<&str>,
        provider: Option<&str>,
        ready: bool,
    ) -> Arc<Subnet> {
        let mut s = Subnet::new(
            name,
            SubnetSpec {
                vpc: vpc.map(str::to_string),
                cidr_block: cidr.into(),
                provider: provider.map(str::to_string),
                gateway: provider.map(|_| "172.16.3.2".to_string()),
                ..Default::default()
            },
        );
        s.status = Some(SubnetStatus {
            conditions: vec![vpcnet_api::condition::new(
                "Ready",
                ready,
                "Programmed",
                "",
                Some(1),
            )],
            ..Default::default()
        });
        Arc::new(s)
    }

    fn facts() -> Facts {
        Facts {
            vpc: Some(Arc::new(Vpc::new("v", VpcSpec::default()))),
            subnets: vec![
                subnet("lan", "10.0.1.0/24", Some("v"), None, true),
                subnet("other", "10.0.2.0/24", Some("w"), None, true),
                subnet(
                    "ext",
                    "172.16.3.0/24",
                    None,
                    Some("ext-nad.vpcnet-system"),
                    true,
                ),
            ],
            external_subnet: "ext".into(),
            nad_exists: Some(true),
            nad_config: Some(r#"{"type":"macvlan","ipam":{"type":"static"}}"#.into()),
            api_endpoint: None,
        }
    }

    fn gw(subnet: &str, lan_ip: &str) -> VpcNatGateway {
        VpcNatGateway::new(
            "g",
            VpcNatGatewaySpec {
                vpc: "v".into(),
                subnet: subnet.into(),
                lan_ip: lan_ip.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_valid_gateway_gets_both_legs() {
        let v = validate(&gw("lan", "10.0.1.254"), &facts()).unwrap();
        assert_eq!(v.lan_gateway.to_string(), "10.0.1.1");
        assert_eq!(v.vpc_cidrs, vec!["10.0.1.0/24".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(v.nad, ("vpcnet-system".to_string(), "ext-nad".to_string()));
        assert_eq!(
            v.external_gateway.map(|g| g.to_string()).as_deref(),
            Some("172.16.3.2")
        );
    }

    #[test]
    fn each_flaw_has_its_reason() {
        use GatewayReason::*;
        let reason = |g: VpcNatGateway, f: Facts| validate(&g, &f).unwrap_err().reason;
        let mut no_vpc = facts();
        no_vpc.vpc = None;
        assert_eq!(reason(gw("lan", "10.0.1.254"), no_vpc), VpcNotFound);
        assert_eq!(reason(gw("nope", "10.0.1.254"), facts()), SubnetNotFound);
        assert_eq!(reason(gw("other", "10.0.2.254"), facts()), SubnetNotInVpc);
        assert_eq!(reason(gw("ext", "172.16.3.9"), facts()), SubnetNotInVpc);
        for bad in [
            "10.0.1.1",
            "10.0.1.0",
            "10.0.1.255",
            "10.0.9.9",
            "fe80::1",
            "x",
        ] {
            assert_eq!(reason(gw("lan", bad), facts()), InvalidLanIp, "{bad}");
        }
        let mut unready = facts();
        unready.subnets[0] = subnet("lan", "10.0.1.0/24", Some("v"), None, false);
        assert_eq!(reason(gw("lan", "10.0.1.254"), unready), SubnetNotReady);
        let mut no_nad = facts();
        no_nad.nad_exists = Some(false);
        assert_eq!(
            reason(gw("lan", "10.0.1.254"), no_nad),
            NetworkAttachmentNotFound
        );
        let mut not_external = facts();
        not_external.external_subnet = "other".into();
        assert_eq!(
            reason(gw("lan", "10.0.1.254"), not_external),
            ExternalSubnetNotFound
        );
        let mut missing = facts();
        missing.external_subnet = "gone".into();
        assert_eq!(
            reason(gw("lan", "10.0.1.254"), missing),
            ExternalSubnetNotFound
        );
    }
}
