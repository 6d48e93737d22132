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
/// (its Subnet has not been reconciled yet: retried). With two replicas
/// the gateway itself holds `lanIp` (the active's shared address; no pod
/// may get it from the pool), once its first pod of one replica let go.
pub fn allocate(
    ipam: &mut Ipam,
    name: &str,
    operator_namespace: &str,
    v: &Validated,
    replicas: i32,
) -> Result<Ipv4Net, Halt<GatewayReason>> {
    let pod = Holder::pod(operator_namespace, &naming::natgw_pod(name));
    let own = super::external_holder(name);
    let holder = ipam
        .pool(&v.subnet)
        .and_then(|p| p.holder_of(v.lan_ip))
        .cloned();
    if replicas == 2 && holder.is_none() {
        let pool = ipam
            .pool_mut(&v.subnet)
            .map_err(|_| Error::Dependency(format!("address pool of subnet {}", v.subnet)))?;
        if let Err(e) = pool.allocate_fixed(&own, v.lan_ip) {
            return Err(Refusal::new(
                GatewayReason::InvalidLanIp,
                format!("lanIp {} in subnet {}: {e}", v.lan_ip, v.subnet),
            )
            .into());
        }
    }
    // Back to one replica: its pod takes lanIp as its own address.
    if replicas != 2
        && holder.as_ref() == Some(&own)
        && let Ok(pool) = ipam.pool_mut(&v.subnet)
    {
        pool.release(&own);
    }
    if let Some(h) = holder.filter(|h| *h != pod && *h != own) {
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

/// With two replicas, replica 1's own external address (kept across
/// reconciles); with one, none (and an earlier one is released).
pub fn allocate_second(
    ipam: &mut Ipam,
    name: &str,
    v: &Validated,
    replicas: i32,
) -> Result<Option<Ipv4Net>, Halt<GatewayReason>> {
    let holder = super::second_external_holder(name);
    let pool = ipam.pool_mut(&v.external_subnet).map_err(|_| {
        Error::Dependency(format!(
            "address pool of external subnet {}",
            v.external_subnet
        ))
    })?;
    if replicas != 2 {
        pool.release(&holder);
        return Ok(None);
    }
    match pool.allocate(&holder) {
        Ok(ip) => Ok(Some(
            Ipv4Net::new(ip, v.external_cidr.prefix_len()).expect("prefix of a parsed CIDR"),
        )),
        Err(e) => Err(Refusal::new(
            GatewayReason::ExternalIpUnavailable,
            format!(
                "external subnet {} (second replica): {e}",
                v.external_subnet
            ),
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
            lan_prefix: 24,
            lan_gateway: "10.0.1.1".parse().unwrap(),
            vpc_cidrs: vec![],
            external_subnet: "ext".into(),
            external_cidr: "172.16.3.0/30".parse().unwrap(),
            external_gateway: None,
            nad: Default::default(),
            nad_without_ipam: None,
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
        let first = allocate(&mut ipam, "g", "sys", &v, 1).unwrap();
        assert_eq!(first.to_string(), "172.16.3.1/30");
        assert_eq!(
            allocate(&mut ipam, "g", "sys", &v, 1).unwrap(),
            first,
            "kept"
        );
        // The only other address is the gateway: exhausted for a second one.
        assert_eq!(
            refused(allocate(&mut ipam, "h", "sys", &v, 1)),
            Some(GatewayReason::ExternalIpUnavailable)
        );
        // Its own pod may hold its lanIp; anyone else may not.
        let pool = ipam.pool_mut("lan").unwrap();
        pool.allocate_fixed(&Holder::pod("sys", "vpc-nat-gw-g-0"), v.lan_ip)
            .unwrap();
        assert!(allocate(&mut ipam, "g", "sys", &v, 1).is_ok());
        assert_eq!(
            refused(allocate(&mut ipam, "other", "sys", &v, 1)),
            Some(GatewayReason::LanIpInUse)
        );
        // Two replicas: the gateway holds its lanIp, so no pod gets it.
        let ha = Validated {
            lan_ip: "10.0.1.250".parse().unwrap(),
            ..validated()
        };
        assert!(allocate(&mut ipam, "g", "sys", &ha, 2).is_ok());
        assert_eq!(
            ipam.pool("lan").unwrap().holder_of(ha.lan_ip),
            Some(&crate::gateway::external_holder("g"))
        );
        assert!(allocate(&mut ipam, "g", "sys", &ha, 2).is_ok(), "kept");
        assert!(allocate(&mut ipam, "g", "sys", &ha, 1).is_ok());
        assert_eq!(
            ipam.pool("lan").unwrap().holder_of(ha.lan_ip),
            None,
            "one replica again: its pod takes lanIp"
        );
        assert!(allocate(&mut ipam, "g", "sys", &ha, 2).is_ok());
        assert_eq!(
            refused(allocate(&mut ipam, "other", "sys", &ha, 2)),
            Some(GatewayReason::LanIpInUse)
        );
        // The second replica's external address: kept, and released for one.
        let mut big = Ipam::default();
        big.upsert("ext", "172.16.3.0/24", Some("172.16.3.2"), &[])
            .unwrap();
        let two = allocate_second(&mut big, "g", &v, 2).unwrap().unwrap();
        assert_eq!(allocate_second(&mut big, "g", &v, 2).unwrap(), Some(two));
        assert_eq!(allocate_second(&mut big, "g", &v, 1).unwrap(), None);
        assert_eq!(big.pool("ext").unwrap().holder_of(two.addr()), None);
        let mut no_pool = validated();
        no_pool.external_subnet = "gone".into();
        assert!(matches!(
            allocate(&mut ipam, "g", "sys", &no_pool, 1),
            Err(Halt::Failed(Error::Dependency(_)))
        ));
    }
}
