//! Tenant self-service boundary: a namespaced object may only use the NAT
//! gateway (and so the EIPs and subnets) of a VPC that lists its namespace.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kube::ResourceExt;
use vpcnet_api::{Subnet, Vpc, VpcNatGateway};

/// A refusal: condition reason and message.
pub type Refusal = (&'static str, String);

/// Checks that `namespace` may use `gateway`; returns its VPC name.
pub fn check(
    namespace: &str,
    gateway: Option<&VpcNatGateway>,
    gateway_name: &str,
    vpcs: &[std::sync::Arc<Vpc>],
) -> Result<String, Refusal> {
    let gw = gateway.ok_or_else(|| {
        (
            "GatewayNotFound",
            format!("VpcNatGateway {gateway_name} does not exist"),
        )
    })?;
    let vpc_name = gw.spec.vpc.clone();
    let vpc = vpcs
        .iter()
        .find(|v| v.name_any() == vpc_name)
        .ok_or_else(|| {
            (
                "VpcNotFound",
                format!("VPC {vpc_name} of gateway {gateway_name} does not exist"),
            )
        })?;
    if !vpc.spec.namespaces.iter().any(|n| n == namespace) {
        return Err((
            "Forbidden",
            format!(
                "namespace {namespace} does not own VPC {vpc_name} (gateway {gateway_name}); ask the VPC's admin to add it to spec.namespaces"
            ),
        ));
    }
    Ok(vpc_name)
}

/// CIDRs of the VPC's (non-provider) subnets.
pub fn vpc_cidrs(vpc: &str, subnets: &[std::sync::Arc<Subnet>]) -> Vec<Ipv4Net> {
    subnets
        .iter()
        .filter(|s| s.spec.provider.is_none() && crate::subnet::vpc_of(s) == vpc)
        .filter_map(|s| s.spec.cidr_block.parse().ok())
        .collect()
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
        let (reason, msg) =
            check("tenant-b", Some(&gw), "gw", std::slice::from_ref(&vpc)).unwrap_err();
        assert_eq!(reason, "Forbidden");
        assert!(msg.contains("tenant-b") && msg.contains("VPC a"));
        assert_eq!(
            check("tenant-a", None, "gw", &[vpc]).unwrap_err().0,
            "GatewayNotFound"
        );
    }
}
