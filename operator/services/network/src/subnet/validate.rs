//! Checks a Subnet needs a lookup for (admission cannot do them): its VPC
//! exists and no other subnet of the same VPC overlaps it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kube::ResourceExt;
use vpcnet_api::Subnet;

use super::desired::{SwitchPlan, default_gateway, overlapping};

/// Why a subnet is not programmed: a condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn refuse(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message }
}

/// Validates `subnet` against the other subnets and the known VPCs; `vpc`
/// is the subnet's effective VPC.
pub fn validate(
    subnet: &Subnet,
    vpc: &str,
    vpc_exists: bool,
    all: &[std::sync::Arc<Subnet>],
) -> Result<SwitchPlan, Refusal> {
    let name = subnet.name_any();
    let cidr: Ipv4Net = subnet.spec.cidr_block.parse().map_err(|_| {
        refuse(
            "Unsupported",
            format!(
                "cidrBlock {} is not IPv4; only IPv4 subnets are supported so far",
                subnet.spec.cidr_block
            ),
        )
    })?;
    if !vpc_exists {
        return Err(refuse(
            "VpcNotFound",
            format!("VPC {vpc} does not exist; create it or fix spec.vpc"),
        ));
    }
    let gateway = match &subnet.spec.gateway {
        Some(g) => g.parse::<Ipv4Addr>().map_err(|_| {
            refuse(
                "InvalidGateway",
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
                && super::vpc_of(o) == vpc
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
        return Err(refuse(
            "CidrOverlap",
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
        assert_eq!(r.reason, "CidrOverlap");
        assert!(r.message.contains("subnet a"), "{}", r.message);
    }

    #[test]
    fn missing_vpc_and_ipv6_are_refused() {
        let a = subnet("a", "v", "10.0.0.0/16", 1);
        assert_eq!(
            validate(&a, "v", false, std::slice::from_ref(&a))
                .unwrap_err()
                .reason,
            "VpcNotFound"
        );
        let six = subnet("six", "v", "fd00::/64", 1);
        assert_eq!(
            validate(&six, "v", true, std::slice::from_ref(&six))
                .unwrap_err()
                .reason,
            "Unsupported"
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
    }
}
