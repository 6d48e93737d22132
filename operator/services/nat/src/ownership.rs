//! Tenant self-service boundary: a namespaced object may only use the NAT
//! gateway (and so the EIPs and subnets) of a VPC that lists its namespace.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kube::ResourceExt;
use vpcnet_api::{Subnet, Vpc, VpcNatGateway};

use crate::reasons::{NatReason, NatRefusal};

/// Checks that `namespace` may use `gateway`; returns its VPC name.
pub fn check(
    namespace: &str,
    gateway: Option<&VpcNatGateway>,
    gateway_name: &str,
    vpcs: &[std::sync::Arc<Vpc>],
) -> Result<String, NatRefusal> {
    let gw = gateway.ok_or_else(|| {
        NatRefusal::new(
            NatReason::GatewayNotFound,
            format!("VpcNatGateway {gateway_name} does not exist"),
        )
    })?;
    let vpc_name = gw.spec.vpc.clone();
    let vpc = vpcs
        .iter()
        .find(|v| v.name_any() == vpc_name)
        .ok_or_else(|| {
            NatRefusal::new(
                NatReason::VpcNotFound,
                format!("the VPC of gateway {gateway_name} does not exist"),
            )
        })?;
    if !vpc.spec.namespaces.iter().any(|n| n == namespace) {
        // The VPC's name is another tenant's business: name only what the
        // tenant named itself.
        return Err(NatRefusal::new(
            NatReason::Forbidden,
            format!(
                "namespace {namespace} may not use gateway {gateway_name}: its VPC does not list this namespace; ask the VPC's admin to add it to spec.namespaces"
            ),
        ));
    }
    Ok(vpc_name)
}

/// Whether a subnet has been accepted by its reconciler (`Ready=True`). A
/// refused subnet (overlapping CIDR, missing VPC) must change nothing, so it
/// is no part of its VPC's address space.
pub fn subnet_accepted(s: &Subnet) -> bool {
    vpcnet_api::condition::find(
        s.status
            .as_ref()
            .map(|st| st.conditions.as_slice())
            .unwrap_or(&[]),
        vpcnet_api::condition::READY,
    )
    .is_some_and(|c| c.status == "True")
}

/// CIDRs of the VPC's accepted (non-provider) subnets.
pub fn vpc_cidrs(vpc: &str, subnets: &[std::sync::Arc<Subnet>]) -> Vec<Ipv4Net> {
    vpc_subnets(vpc, subnets)
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// `(cidr, router address)` of the VPC's accepted (non-provider) subnets.
pub fn vpc_subnets(vpc: &str, subnets: &[std::sync::Arc<Subnet>]) -> Vec<(Ipv4Net, Ipv4Addr)> {
    subnets
        .iter()
        .filter(|s| s.spec.provider.is_none() && s.vpc_name() == vpc)
        .filter(|s| subnet_accepted(s))
        .filter_map(|s| {
            let cidr: Ipv4Net = s.spec.cidr_block.parse().ok()?;
            let router = vpcnet_api::subnet::router_address(s.spec.gateway.as_deref(), &cidr);
            Some((cidr, router))
        })
        .collect()
}

/// What a rule's inside address is judged against: the VPC's subnets, and
/// the addresses in them that belong to the platform, not to workloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InsideVpc {
    /// `(cidr, router address)` of each accepted subnet.
    pub subnets: Vec<(Ipv4Net, Ipv4Addr)>,
    /// LAN addresses of the VPC's NAT gateways.
    pub gateways: Vec<Ipv4Addr>,
}

impl InsideVpc {
    /// The VPC `vpc` as the caches see it.
    pub fn of(
        vpc: &str,
        subnets: &[std::sync::Arc<Subnet>],
        gateways: &[std::sync::Arc<VpcNatGateway>],
    ) -> Self {
        Self {
            subnets: vpc_subnets(vpc, subnets),
            gateways: gateways
                .iter()
                .filter(|g| g.spec.vpc == vpc)
                .filter_map(|g| g.spec.lan_ip.parse().ok())
                .collect(),
        }
    }

    /// The CIDRs.
    pub fn cidrs(&self) -> Vec<Ipv4Net> {
        self.subnets.iter().map(|(c, _)| *c).collect()
    }

    /// Why `ip` may not be a workload address, if it may not.
    pub fn reserved(&self, ip: Ipv4Addr) -> Option<&'static str> {
        if self.gateways.contains(&ip) {
            return Some("a NAT gateway's own LAN address");
        }
        self.subnets
            .iter()
            .filter(|(c, _)| c.contains(&ip))
            .find_map(|(c, router)| {
                if ip == c.network() {
                    Some("the subnet's network address")
                } else if ip == c.broadcast() {
                    Some("the subnet's broadcast address")
                } else if ip == *router {
                    Some("the VPC router's address")
                } else {
                    None
                }
            })
    }
}

/// `ip` lies in one of `cidrs`.
pub fn inside(ip: Ipv4Addr, cidrs: &[Ipv4Net]) -> bool {
    cidrs.iter().any(|c| c.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use vpcnet_api::{VpcNatGatewaySpec, VpcSpec};

    #[test]
    fn only_listed_namespaces_may_use_a_gateway() {
        let vpc = Arc::new(Vpc::new(
            "a",
            VpcSpec {
                namespaces: vec!["tenant-a".into()],
                ..Default::default()
            },
        ));
        let gw = VpcNatGateway::new(
            "gw",
            VpcNatGatewaySpec {
                vpc: "a".into(),
                subnet: "s".into(),
                lan_ip: "10.0.1.254".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            check("tenant-a", Some(&gw), "gw", std::slice::from_ref(&vpc)).unwrap(),
            "a"
        );
        let r = check("tenant-b", Some(&gw), "gw", std::slice::from_ref(&vpc)).unwrap_err();
        let msg = r.message;
        assert_eq!(r.reason, NatReason::Forbidden);
        assert!(msg.contains("tenant-b") && msg.contains("gateway gw"));
        assert!(
            !msg.contains("VPC a"),
            "the VPC is not the tenant's to know: {msg}"
        );
        assert_eq!(
            check("tenant-a", None, "gw", &[vpc]).unwrap_err().reason,
            NatReason::GatewayNotFound
        );
    }
}
