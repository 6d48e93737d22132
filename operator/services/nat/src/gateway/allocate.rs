//! Allocate: the only step of a gateway's reconcile that touches IPAM. The
//! LAN address must be free (or already its pod's); the external address
//! is the gateway's own, kept across reconciles.

use ipnet::Ipv4Net;
use vpcnet_api::contract::naming;
use vpcnet_ipam::{Holder, Ipam};
use vpcnet_runtime::Error;
use vpcnet_runtime::refusal::{Halt, Refusal};

use super::validate::{GatewayReason, Validated};

/// net1's address with prefix, or why not; a failure if a pool is missing
/// (its Subnet has not been reconciled yet: retried).
pub fn allocate(
    ipam: &mut Ipam,
    name: &str,
    operator_namespace: &str,
    v: &Validated,
) -> Result<Ipv4Net, Halt<GatewayReason>> {
    let pod = Holder::pod(operator_namespace, &naming::natgw_pod(name));
    if let Some(h) = ipam
        .pool(&v.subnet)
        .and_then(|p| p.holder_of(v.lan_ip))
        .filter(|h| **h != pod)
    {
        tracing::info!(lan_ip = %v.lan_ip, holder = %h, "gateway lanIp is held");
        return Err(Refusal::new(
            GatewayReason::LanIpInUse,
            format!(
                "lanIp {} is already in use in subnet {}",
                v.lan_ip, v.subnet
            ),
        )
        .into());
    }
    let pool = ipam.pool_mut(&v.external_subnet).map_err(|_| {
        Error::Dependency(format!(
            "address pool of external subnet {}",
            v.external_subnet
        ))
    })?;
    match pool.allocate(&super::external_holder(name)) {
        Ok(ip) => {
            Ok(Ipv4Net::new(ip, v.external_cidr.prefix_len()).expect("prefix of a parsed CIDR"))
        }
        Err(e) => Err(Refusal::new(
            GatewayReason::ExternalIpUnavailable,
            format!("external subnet {}: {e}", v.external_subnet),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated() -> Validated {
        Validated {
            subnet: "lan".into(),
            lan_ip: "10.0.1.254".parse().unwrap(),
            lan_gateway: "10.0.1.1".parse().unwrap(),
            vpc_cidrs: vec![],
            external_subnet: "ext".into(),
            external_cidr: "172.16.3.0/30".parse().unwrap(),
            external_gateway: None,
            nad: Default::default(),
        }
    }

    #[test]
    fn the_lan_address_must_be_free_and_the_external_one_is_kept() {
        let mut ipam = Ipam::default();
        ipam.upsert("lan", "10.0.1.0/24", Some("10.0.1.1"), &[])
            .unwrap();
        ipam.upsert("ext", "172.16.3.0/30", Some("172.16.3.2"), &[])
            .unwrap();
        let v = validated();
        let refused = |r: Result<Ipv4Net, Halt<GatewayReason>>| match r {
            Err(Halt::Refused(r)) => Some(r.reason),
            _ => None,
        };
        let first = allocate(&mut ipam, "g", "sys", &v).unwrap();
        assert_eq!(first.to_string(), "172.16.3.1/30");
        assert_eq!(allocate(&mut ipam, "g", "sys", &v).unwrap(), first, "kept");
        // The only other address is the gateway: exhausted for a second one.
        assert_eq!(
            refused(allocate(&mut ipam, "h", "sys", &v)),
            Some(GatewayReason::ExternalIpUnavailable)
        );
        // Its own pod may hold its lanIp; anyone else may not.
        let pool = ipam.pool_mut("lan").unwrap();
        pool.allocate_fixed(&Holder::pod("sys", "vpc-nat-gw-g-0"), v.lan_ip)
            .unwrap();
        assert!(allocate(&mut ipam, "g", "sys", &v).is_ok());
        assert_eq!(
            refused(allocate(&mut ipam, "other", "sys", &v)),
            Some(GatewayReason::LanIpInUse)
        );
        let mut no_pool = validated();
        no_pool.external_subnet = "gone".into();
        assert!(matches!(
            allocate(&mut ipam, "g", "sys", &no_pool),
            Err(Halt::Failed(Error::Dependency(_)))
        ));
    }
}
