//! Checks a Subnet needs a lookup for (admission cannot do them): its VPC
//! exists and no other subnet of the same VPC overlaps it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kube::ResourceExt;
use vpcnet_api::Subnet;

use vpcnet_runtime::refusal::Refusal;

use super::desired::{SwitchPlan, default_gateway, overlapping};
use crate::reasons::SubnetReason;

/// Validates `subnet` against the other subnets and the known VPCs; `vpc`
/// is the subnet's effective VPC.
pub fn validate(
    subnet: &Subnet,
    vpc: &str,
    vpc_exists: bool,
    all: &[std::sync::Arc<Subnet>],
) -> Result<SwitchPlan, Refusal<SubnetReason>> {
    let name = subnet.name_any();
    let cidr: Ipv4Net = subnet.spec.cidr_block.parse().map_err(|_| {
        Refusal::new(
            SubnetReason::Unsupported,
            format!(
                "cidrBlock {} is not IPv4; only IPv4 subnets are supported so far",
                subnet.spec.cidr_block
            ),
        )
    })?;
    if !vpc_exists {
        return Err(Refusal::new(
            SubnetReason::VpcNotFound,
            format!("VPC {vpc} does not exist; create it or fix spec.vpc"),
        ));
    }
    let gateway = match &subnet.spec.gateway {
        Some(g) => g.parse::<Ipv4Addr>().map_err(|_| {
            Refusal::new(
                SubnetReason::InvalidGateway,
                format!("gateway {g} is not an IPv4 address"),
            )
        })?,
        None => default_gateway(&cidr),
    };
    // Of two overlapping subnets the older keeps working, so creating a
    // conflicting subnet never breaks one already in use.
    let key = |s: &Subnet| (s.creation_timestamp().map(|t| t.0), s.name_any());
    let mine = key(subnet);
    let older_peers: Vec<(String, Ipv4Net)> = all
        .iter()
        .filter(|o| {
            o.name_any() != name
                && o.spec.provider.is_none()
                && o.vpc_name() == vpc
                && key(o) < mine
        })
        .filter_map(|o| {
            o.spec
                .cidr_block
                .parse::<Ipv4Net>()
                .ok()
                .map(|c| (o.name_any(), c))
        })
        .collect();
    if let Some((other, other_cidr)) =
        overlapping(&cidr, older_peers.iter().map(|(n, c)| (n.as_str(), *c)))
    {
        return Err(Refusal::new(
            SubnetReason::CidrOverlap,
            format!(
                "cidrBlock {cidr} overlaps subnet {other} ({other_cidr}) in VPC {vpc}; subnets of one VPC must not overlap"
            ),
        ));
    }
    Ok(SwitchPlan {
        subnet: name,
        vpc: vpc.to_string(),
        cidr,
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::sync::Arc;
    use vpcnet_api::SubnetSpec;

    fn subnet(name: &str, vpc: &str, cidr: &str, age_secs: i64) -> Arc<Subnet> {
        let mut s = Subnet::new(
            name,
            SubnetSpec {
                vpc: Some(vpc.into()),
                cidr_block: cidr.into(),
                ..Default::default()
            },
        );
        let t = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 - age_secs).unwrap();
        s.metadata.creation_timestamp = Some(Time(t));
        Arc::new(s)
    }

    fn refusal(s: &Arc<Subnet>, vpc_exists: bool, all: &[Arc<Subnet>]) -> Refusal<SubnetReason> {
        validate(s, s.vpc_name(), vpc_exists, all).unwrap_err()
    }

    #[test]
    fn same_cidr_in_two_vpcs_is_fine() {
        let a = subnet("a", "tenant-a", "10.0.1.0/24", 100);
        let b = subnet("b", "tenant-b", "10.0.1.0/24", 50);
        let all = vec![a.clone(), b.clone()];
        assert!(validate(&a, "tenant-a", true, &all).is_ok());
        assert!(validate(&b, "tenant-b", true, &all).is_ok());
    }

    #[test]
    fn the_younger_of_two_overlapping_subnets_is_refused() {
        let a = subnet("a", "v", "10.0.0.0/16", 100);
        let b = subnet("b", "v", "10.0.1.0/24", 50);
        let all = vec![a.clone(), b.clone()];
        assert!(validate(&a, "v", true, &all).is_ok());
        let r = validate(&b, "v", true, &all).unwrap_err();
        assert_eq!(r.reason, SubnetReason::CidrOverlap);
        assert_eq!(
            r.message,
            "cidrBlock 10.0.1.0/24 overlaps subnet a (10.0.0.0/16) in VPC v; subnets of one VPC must not overlap"
        );
    }

    #[test]
    fn a_provider_subnet_never_overlaps() {
        // An older external network with an overlapping range is no
        // switch of the VPC: it does not count.
        let mut ext = (*subnet("ext", "v", "10.0.0.0/16", 1000)).clone();
        ext.spec.provider = Some("ext.vpcnet-system".into());
        let b = subnet("b", "v", "10.0.1.0/24", 50);
        let all = vec![Arc::new(ext), b.clone()];
        assert!(validate(&b, "v", true, &all).is_ok());
    }

    #[test]
    fn missing_vpc_and_ipv6_are_refused() {
        let a = subnet("a", "v", "10.0.0.0/16", 1);
        let r = refusal(&a, false, std::slice::from_ref(&a));
        assert_eq!(r.reason, SubnetReason::VpcNotFound);
        assert_eq!(r.message, "VPC v does not exist; create it or fix spec.vpc");
        let six = subnet("six", "v", "fd00::/64", 1);
        let r = refusal(&six, true, std::slice::from_ref(&six));
        assert_eq!(r.reason, SubnetReason::Unsupported);
        assert_eq!(
            r.message,
            "cidrBlock fd00::/64 is not IPv4; only IPv4 subnets are supported so far"
        );
        // The CIDR is judged first: an IPv6 subnet of a missing VPC is
        // unsupported, whatever its VPC.
        assert_eq!(
            refusal(&six, false, std::slice::from_ref(&six)).reason,
            SubnetReason::Unsupported
        );
    }

    #[test]
    fn a_gateway_that_is_not_ipv4_is_refused() {
        let mut s = (*subnet("a", "v", "10.0.1.0/24", 1)).clone();
        s.spec.gateway = Some("10.0.1.x".into());
        let s = Arc::new(s);
        let r = refusal(&s, true, std::slice::from_ref(&s));
        assert_eq!(r.reason, SubnetReason::InvalidGateway);
        assert_eq!(r.message, "gateway 10.0.1.x is not an IPv4 address");
        assert_eq!(
            r.to_string(),
            "InvalidGateway: gateway 10.0.1.x is not an IPv4 address"
        );
    }

    #[test]
    fn gateway_defaults_and_is_used() {
        let a = subnet("a", "v", "10.0.1.0/24", 1);
        assert_eq!(
            validate(&a, "v", true, std::slice::from_ref(&a))
                .unwrap()
                .gateway,
            Ipv4Addr::new(10, 0, 1, 1)
        );
        let mut g = (*a).clone();
        g.spec.gateway = Some("10.0.1.254".into());
        let g = Arc::new(g);
        assert_eq!(
            validate(&g, "v", true, std::slice::from_ref(&g))
                .unwrap()
                .gateway,
            Ipv4Addr::new(10, 0, 1, 254)
        );
    }
}
