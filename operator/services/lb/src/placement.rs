//! Which VPC a namespace's Services serve (pure): the VPC of the subnet its
//! pods are placed on, the same rule the network service places pods by.

use std::sync::Arc;

use ipnet::Ipv4Net;
use kube::ResourceExt;
use vpcnet_api::Subnet;
use vpcnet_api::subnet::choose_subnet;

use crate::build::VpcFacts;

/// The VPC of `namespace` and its ranges; `None` if no subnet (and no
/// default subnet) takes the namespace's pods.
pub fn vpc_of(namespace: &str, subnets: &[Arc<Subnet>], default: Option<&str>) -> Option<VpcFacts> {
    let subnet = choose_subnet(namespace, subnets, default)?;
    let vpc = subnet.vpc_name().to_string();
    Some(VpcFacts {
        cidrs: cidrs_of(&vpc, subnets),
        name: vpc,
    })
}

/// The (logical-switch) subnets of VPC `vpc`.
pub fn subnets_of<'a>(
    vpc: &'a str,
    subnets: &'a [Arc<Subnet>],
) -> impl Iterator<Item = &'a Arc<Subnet>> {
    subnets
        .iter()
        .filter(move |s| s.spec.provider.is_none() && s.vpc_name() == vpc)
}

fn cidrs_of(vpc: &str, subnets: &[Arc<Subnet>]) -> Vec<Ipv4Net> {
    subnets_of(vpc, subnets)
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter_map(|s| s.spec.cidr_block.parse().ok())
        .collect()
}

/// The names of `subnets`' subnets of VPC `vpc` (for the group's switches).
pub fn subnet_names(vpc: &str, subnets: &[Arc<Subnet>]) -> Vec<String> {
    subnets_of(vpc, subnets)
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .map(|s| s.name_any())
        .collect()
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_namespace_serves_the_vpc_of_its_subnet_with_all_the_vpcs_ranges() {
        let subnets = vec![
            subnet("ovn-default", None, "10.16.0.0/16", &[]),
            subnet("a1", Some("a"), "10.0.1.0/24", &["ta"]),
            subnet("a2", Some("a"), "10.0.2.0/24", &[]),
            subnet("b1", Some("b"), "10.0.1.0/24", &["tb"]),
        ];
        let a = vpc_of("ta", &subnets, Some("ovn-default")).unwrap();
        assert_eq!(a.name, "a");
        assert_eq!(a.cidrs.len(), 2);
        let d = vpc_of("other", &subnets, Some("ovn-default")).unwrap();
        assert_eq!(d.name, vpcnet_api::contract::DEFAULT_VPC);
        assert!(vpc_of("other", &subnets, None).is_none());
        assert_eq!(subnet_names("a", &subnets), vec!["a1", "a2"]);
    }
}
