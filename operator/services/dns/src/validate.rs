//! Validate (pure): whether a VpcDns can serve, judged against what it
//! names and against the other VpcDnses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::Ipv4Net;
use kube::ResourceExt;
use vpcnet_api::dns_zone::{DEFAULT_DOMAIN, parse_upstream};
use vpcnet_api::{Subnet, Vpc, VpcDns};

use crate::reasons::{DnsReason, DnsRefusal};

/// What validation reads.
pub struct Facts<'a> {
    /// Every Vpc.
    pub vpcs: &'a [Arc<Vpc>],
    /// Every Subnet.
    pub subnets: &'a [Arc<Subnet>],
    /// Every VpcDns.
    pub dnses: &'a [Arc<VpcDns>],
    /// The operator's cluster DNS address.
    pub cluster_dns: Option<IpAddr>,
    /// Upstreams of VpcDnses that name none.
    pub default_upstreams: &'a [String],
}

/// An accepted VpcDns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Valid {
    /// Its VPC.
    pub vpc: String,
    /// The subnet its servers run in.
    pub subnet: String,
    /// The resolver address.
    pub vip: IpAddr,
    /// Upstreams, parsed.
    pub upstreams: Vec<SocketAddr>,
    /// The cluster domain.
    pub domain: String,
    /// The VPC's subnets' ranges.
    pub vpc_cidrs: Vec<Ipv4Net>,
}

fn refuse(reason: DnsReason, message: String) -> DnsRefusal {
    DnsRefusal::new(reason, message)
}

/// The VpcDns that serves `vpc`: the oldest live one naming it.
pub fn server_of<'a>(vpc: &str, dnses: &'a [Arc<VpcDns>]) -> Option<&'a Arc<VpcDns>> {
    dnses
        .iter()
        .filter(|d| d.spec.vpc == vpc && d.metadata.deletion_timestamp.is_none())
        .min_by_key(|d| (d.creation_timestamp().map(|t| t.0), d.name_any()))
}

/// Judges `dns` (pure).
pub fn validate(dns: &VpcDns, f: &Facts<'_>) -> Result<Valid, DnsRefusal> {
    let vpc = &dns.spec.vpc;
    if !f
        .vpcs
        .iter()
        .any(|v| v.name_any() == *vpc && v.metadata.deletion_timestamp.is_none())
    {
        return Err(refuse(
            DnsReason::VpcNotFound,
            format!("VPC {vpc} does not exist"),
        ));
    }
    let Some(subnet) = f.subnets.iter().find(|s| s.name_any() == dns.spec.subnet) else {
        return Err(refuse(
            DnsReason::SubnetNotFound,
            format!("subnet {} does not exist", dns.spec.subnet),
        ));
    };
    if subnet.spec.provider.is_some() || subnet.vpc_name() != vpc {
        return Err(refuse(
            DnsReason::SubnetNotInVpc,
            format!(
                "subnet {} is not a subnet of VPC {vpc} (it is of {})",
                dns.spec.subnet,
                if subnet.spec.provider.is_some() {
                    "an attachment network".to_string()
                } else {
                    format!("VPC {}", subnet.vpc_name())
                }
            ),
        ));
    }
    if let Some(first) = server_of(vpc, f.dnses)
        && first.uid() != dns.uid()
    {
        return Err(refuse(
            DnsReason::VpcAlreadyServed,
            format!(
                "VPC {vpc} is already served by VpcDns {}; one VpcDns per VPC",
                first.name_any()
            ),
        ));
    }
    let vip = match (&dns.spec.vip, f.cluster_dns) {
        (Some(v), _) => v
            .parse::<IpAddr>()
            .map_err(|_| refuse(DnsReason::NoVip, format!("vip {v:?} is not an IP address")))?,
        (None, Some(c)) => c,
        (None, None) => {
            return Err(refuse(
                DnsReason::NoVip,
                "no resolver address: set spec.vip, or start the operator with --cluster-dns (the kubelets' clusterDNS)".into(),
            ));
        }
    };
    let vpc_cidrs: Vec<Ipv4Net> = f
        .subnets
        .iter()
        .filter(|s| s.spec.provider.is_none() && s.vpc_name() == vpc)
        .filter_map(|s| s.spec.cidr_block.parse().ok())
        .collect();
    if let IpAddr::V4(v4) = vip
        && let Some(c) = vpc_cidrs.iter().find(|c| c.contains(&v4))
    {
        return Err(refuse(
            DnsReason::VipInSubnet,
            format!("vip {vip} is inside {c}, a subnet of VPC {vpc}: a pod could be given it"),
        ));
    }
    let named = if dns.spec.upstreams.is_empty() {
        f.default_upstreams
    } else {
        &dns.spec.upstreams[..]
    };
    let mut upstreams = Vec::new();
    for u in named {
        let a = parse_upstream(u).map_err(|e| refuse(DnsReason::UnsupportedUpstream, e.0))?;
        if !a.is_ipv4() {
            return Err(refuse(
                DnsReason::UnsupportedUpstream,
                format!("upstream {u}: the servers reach upstreams over IPv4 only"),
            ));
        }
        upstreams.push(a);
    }
    Ok(Valid {
        vpc: vpc.clone(),
        subnet: dns.spec.subnet.clone(),
        vip,
        upstreams,
        domain: dns
            .spec
            .domain
            .clone()
            .unwrap_or_else(|| DEFAULT_DOMAIN.to_string()),
        vpc_cidrs,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use vpcnet_api::{SubnetSpec, VpcDnsSpec, VpcSpec};

    use super::*;

    fn vpc(name: &str) -> Arc<Vpc> {
        Arc::new(Vpc::new(name, VpcSpec::default()))
    }

    fn subnet(name: &str, vpc: &str, cidr: &str) -> Arc<Subnet> {
        Arc::new(Subnet::new(
            name,
            SubnetSpec {
                vpc: Some(vpc.into()),
                cidr_block: cidr.into(),
                ..Default::default()
            },
        ))
    }

    fn dns(name: &str, vpc: &str, subnet: &str, age: i64) -> Arc<VpcDns> {
        let mut d = VpcDns::new(
            name,
            VpcDnsSpec {
                vpc: vpc.into(),
                subnet: subnet.into(),
                replicas: 2,
                ..Default::default()
            },
        );
        d.metadata.uid = Some(format!("uid-{name}"));
        d.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + age).unwrap(),
        ));
        Arc::new(d)
    }

    fn judge(d: &VpcDns, dnses: &[Arc<VpcDns>]) -> Result<Valid, DnsRefusal> {
        let vpcs = [vpc("a"), vpc("b")];
        let subnets = [
            subnet("a1", "a", "10.0.1.0/24"),
            subnet("a2", "a", "10.0.2.0/24"),
            subnet("b1", "b", "10.0.1.0/24"),
        ];
        validate(
            d,
            &Facts {
                vpcs: &vpcs,
                subnets: &subnets,
                dnses,
                cluster_dns: Some("10.96.0.10".parse().unwrap()),
                default_upstreams: &["172.16.3.2".to_string()],
            },
        )
    }

    fn reason(r: Result<Valid, DnsRefusal>) -> DnsReason {
        r.expect_err("refused").reason
    }

    #[test]
    fn accepts_a_subnet_of_its_vpc_with_the_cluster_defaults() {
        let d = dns("d", "a", "a2", 0);
        let v = judge(&d, std::slice::from_ref(&d)).unwrap();
        assert_eq!(v.vip, "10.96.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(v.upstreams, vec!["172.16.3.2:53".parse().unwrap()]);
        assert_eq!(v.domain, "cluster.local");
        assert_eq!(v.vpc_cidrs.len(), 2);
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let only = |d: Arc<VpcDns>| judge(&d, std::slice::from_ref(&d));
        assert_eq!(
            reason(only(dns("d", "zz", "a1", 0))),
            DnsReason::VpcNotFound
        );
        assert_eq!(
            reason(only(dns("d", "a", "zz", 0))),
            DnsReason::SubnetNotFound
        );
        assert_eq!(
            reason(only(dns("d", "a", "b1", 0))),
            DnsReason::SubnetNotInVpc
        );
        let mut inside = (*dns("d", "a", "a1", 0)).clone();
        inside.spec.vip = Some("10.0.2.9".into());
        assert_eq!(reason(only(Arc::new(inside))), DnsReason::VipInSubnet);
        let mut v6 = (*dns("d", "a", "a1", 0)).clone();
        v6.spec.upstreams = vec!["fd00::1".into()];
        assert_eq!(reason(only(Arc::new(v6))), DnsReason::UnsupportedUpstream);
    }

    #[test]
    fn the_younger_of_two_for_one_vpc_is_refused_and_others_are_not() {
        let old = dns("old", "a", "a1", 0);
        let young = dns("young", "a", "a2", 10);
        let other = dns("other", "b", "b1", 20);
        let all = [old.clone(), young.clone(), other.clone()];
        assert!(judge(&old, &all).is_ok());
        assert!(judge(&other, &all).is_ok());
        let r = judge(&young, &all).unwrap_err();
        assert_eq!(r.reason, DnsReason::VpcAlreadyServed);
        assert!(r.message.contains("VpcDns old"), "{}", r.message);
        // Once the older one is being deleted, the younger takes over.
        let mut going = (*old).clone();
        going.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(judge(&young, &[Arc::new(going), young.clone()]).is_ok());
    }
}
