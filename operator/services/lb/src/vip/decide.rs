//! A Vip's pure steps: validate (the subnet is a switch of the namespace's
//! VPC, a fixed address lies in it), allocate (the only IPAM step), and the
//! status that records the decision with the operator's seal.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use kube::{Resource, ResourceExt};
use vpcnet_api::seal::{Decision, SealKey};
use vpcnet_api::{Subnet, Vip, VipStatus, Vpc};
use vpcnet_ipam::{Holder, Ipam, IpamError};
use vpcnet_runtime::status;

use crate::placement;
use crate::reasons::{LbReason, LbRefusal};

/// The IPAM holder of a Vip.
pub fn holder(ns: &str, name: &str) -> Holder {
    Holder::vip(ns, name)
}

/// What validation established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The subnet (its pool has the subnet's name).
    pub subnet: String,
    /// The address asked for, if any.
    pub fixed: Option<Ipv4Addr>,
}

/// Whether `namespace` may reserve addresses in VPC `vpc`: the VPC lists the
/// namespace, or the namespace's pods are placed in the VPC.
pub fn may_use(
    namespace: &str,
    vpc: &str,
    vpcs: &[Arc<Vpc>],
    subnets: &[Arc<Subnet>],
    default_subnet: Option<&str>,
) -> bool {
    let listed = vpcs
        .iter()
        .any(|v| v.name_any() == vpc && v.spec.namespaces.iter().any(|n| n == namespace));
    listed || placement::vpc_of(namespace, subnets, default_subnet).is_some_and(|f| f.name == vpc)
}

/// Validate (pure).
pub fn validate(
    vip: &Vip,
    vpcs: &[Arc<Vpc>],
    subnets: &[Arc<Subnet>],
    default_subnet: Option<&str>,
) -> Result<Wanted, LbRefusal> {
    let ns = vip.namespace().unwrap_or_default();
    let name = &vip.spec.subnet;
    let subnet = subnets
        .iter()
        .find(|s| s.name_any() == *name && s.spec.provider.is_none());
    // A subnet of another VPC is refused exactly like one that does not
    // exist: its existence is another tenant's business.
    let not_found = || {
        LbRefusal::new(
            LbReason::SubnetNotFound,
            format!("subnet {name} does not exist in this namespace's VPC"),
        )
    };
    let subnet = subnet.ok_or_else(not_found)?;
    if !may_use(&ns, subnet.vpc_name(), vpcs, subnets, default_subnet) {
        return Err(LbRefusal::new(
            LbReason::Forbidden,
            format!(
                "namespace {ns} may not use subnet {name}: its VPC neither lists this namespace nor places its pods; ask the VPC's admin to add it to spec.namespaces"
            ),
        ));
    }
    let fixed = match &vip.spec.v4ip {
        Some(v) => {
            let ip: Ipv4Addr = v.parse().map_err(|_| {
                LbRefusal::new(LbReason::OutOfRange, format!("v4ip {v} is not IPv4"))
            })?;
            let cidr: Option<Ipv4Net> = subnet.spec.cidr_block.parse().ok();
            if !cidr.is_some_and(|c| c.contains(&ip)) {
                return Err(LbRefusal::new(
                    LbReason::OutOfRange,
                    format!(
                        "v4ip {ip} is outside subnet {name} ({})",
                        subnet.spec.cidr_block
                    ),
                ));
            }
            Some(ip)
        }
        None => None,
    };
    Ok(Wanted {
        subnet: name.clone(),
        fixed,
    })
}

/// Allocate: the Vip's address, kept across reconciles.
pub fn allocate(ipam: &mut Ipam, vip: &Vip, w: &Wanted) -> Result<Ipv4Addr, LbRefusal> {
    let ns = vip.namespace().unwrap_or_default();
    let pool = ipam.pool_mut(&w.subnet).map_err(|_| {
        LbRefusal::new(
            LbReason::SubnetNotReady,
            format!("subnet {} has no address pool yet", w.subnet),
        )
    })?;
    let holder = holder(&ns, &vip.name_any());
    let got = match (w.fixed, pool.get(&holder)) {
        (None, Some(ip)) => Ok(ip),
        (Some(ip), _) => pool.allocate_fixed(&holder, ip),
        (None, None) => pool.allocate(&holder),
    };
    got.map_err(|e| {
        if let IpamError::InUse { ip, holder: other } = &e {
            tracing::info!(%ip, holder = %other, "requested Vip address is held");
        }
        LbRefusal::new(
            LbReason::IPConflict,
            format!("subnet {}: {}", w.subnet, e.for_namespace(&ns)),
        )
    })
}

/// The MAC a Vip's address answers with: the requested one, else the one
/// derived from the address (as for pods).
pub fn mac(vip: &Vip, ip: Ipv4Addr) -> String {
    vip.spec
        .mac_address
        .clone()
        .map(|m| m.to_lowercase())
        .unwrap_or_else(|| vpcnet_ipam::mac_for(ip))
}

/// The Vip's status for `decision` (pure).
pub fn vip_status(vip: &Vip, decision: &Result<Ipv4Addr, LbRefusal>, key: &SealKey) -> VipStatus {
    let generation = vip.meta().generation;
    let previous = vip
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let ready = match decision {
        Ok(ip) => status::ready(
            previous,
            true,
            "Allocated",
            format!("{ip} reserved in subnet {}", vip.spec.subnet),
            generation,
        ),
        Err(r) => r.condition(previous, vpcnet_api::condition::READY, generation),
    };
    let mut st = VipStatus {
        conditions: vec![ready],
        observed_generation: generation,
        ..Default::default()
    };
    if let Ok(ip) = decision {
        let ip_s = ip.to_string();
        st.seal = Some(key.seal(&Decision::vip(vip, &vip.spec.subnet, &ip_s)));
        st.mac = Some(mac(vip, *ip));
        st.v4ip = Some(ip_s);
    }
    st
}

/// The address the operator gave `vip`, if its status carries the
/// operator's seal over it.
pub fn sealed(key: &SealKey, vip: &Vip) -> Option<Ipv4Addr> {
    let st = vip.status.as_ref()?;
    let (ip, seal) = (st.v4ip.as_ref()?, st.seal.as_ref()?);
    key.verify(&Decision::vip(vip, &vip.spec.subnet, ip), seal)
        .then(|| ip.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use vpcnet_api::{SubnetSpec, VipSpec, VpcSpec};

    use super::*;

    fn subnet(name: &str, vpc: &str, cidr: &str, namespaces: &[&str]) -> Arc<Subnet> {
        Arc::new(Subnet::new(
            name,
            SubnetSpec {
                vpc: Some(vpc.into()),
                cidr_block: cidr.into(),
                namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            },
        ))
    }

    fn vpc(name: &str, namespaces: &[&str]) -> Arc<Vpc> {
        Arc::new(Vpc::new(
            name,
            VpcSpec {
                namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                ..Default::default()
            },
        ))
    }

    fn vip(ns: &str, subnet: &str, v4ip: Option<&str>) -> Vip {
        let mut v = Vip::new(
            "v",
            VipSpec {
                subnet: subnet.into(),
                v4ip: v4ip.map(str::to_string),
                mac_address: None,
            },
        );
        v.metadata.namespace = Some(ns.into());
        v.metadata.uid = Some("uid-1".into());
        v.metadata.generation = Some(1);
        v
    }

    fn world() -> (Vec<Arc<Vpc>>, Vec<Arc<Subnet>>) {
        (
            vec![vpc("a", &["ta"]), vpc("b", &["tb"])],
            vec![
                subnet("a-net", "a", "10.0.1.0/24", &["ta"]),
                subnet("b-net", "b", "10.0.1.0/24", &["tb"]),
            ],
        )
    }

    #[test]
    fn a_tenant_reserves_in_its_own_subnet_only() {
        let (vpcs, subnets) = world();
        let ok = validate(
            &vip("ta", "a-net", Some("10.0.1.50")),
            &vpcs,
            &subnets,
            None,
        )
        .unwrap();
        assert_eq!(ok.fixed, Some("10.0.1.50".parse().unwrap()));
        let other = validate(&vip("ta", "b-net", None), &vpcs, &subnets, None).unwrap_err();
        assert_eq!(other.reason, LbReason::Forbidden);
        assert!(!other.message.contains("\"b\""), "{}", other.message);
        let missing = validate(&vip("ta", "nope", None), &vpcs, &subnets, None).unwrap_err();
        assert_eq!(missing.reason, LbReason::SubnetNotFound);
    }

    #[test]
    fn a_fixed_address_outside_the_subnet_is_refused() {
        let (vpcs, subnets) = world();
        let r = validate(&vip("ta", "a-net", Some("10.0.2.5")), &vpcs, &subnets, None).unwrap_err();
        assert_eq!(r.reason, LbReason::OutOfRange);
    }

    #[test]
    fn allocation_keeps_the_address_and_refuses_a_held_one() {
        let mut ipam = Ipam::default();
        ipam.upsert("a-net", "10.0.1.0/24", None, &[]).unwrap();
        let v = vip("ta", "a-net", None);
        let w = Wanted {
            subnet: "a-net".into(),
            fixed: None,
        };
        let first = allocate(&mut ipam, &v, &w).unwrap();
        assert_eq!(allocate(&mut ipam, &v, &w).unwrap(), first, "kept");
        ipam.pool_mut("a-net")
            .unwrap()
            .allocate_fixed(&Holder::pod("ta", "p"), "10.0.1.77".parse().unwrap())
            .unwrap();
        let mut other = vip("ta", "a-net", Some("10.0.1.77"));
        other.metadata.name = Some("w".into());
        let r = allocate(
            &mut ipam,
            &other,
            &Wanted {
                subnet: "a-net".into(),
                fixed: Some("10.0.1.77".parse().unwrap()),
            },
        )
        .unwrap_err();
        assert_eq!(r.reason, LbReason::IPConflict);
        let r = allocate(
            &mut ipam,
            &v,
            &Wanted {
                subnet: "missing".into(),
                fixed: None,
            },
        )
        .unwrap_err();
        assert_eq!(r.reason, LbReason::SubnetNotReady);
    }

    #[test]
    fn only_the_operators_seal_makes_an_address_count() {
        let key = SealKey::new(&[3u8; 32]).unwrap();
        let mut v = vip("ta", "a-net", None);
        let st = vip_status(&v, &Ok("10.0.1.9".parse().unwrap()), &key);
        assert_eq!(
            st.mac.as_deref(),
            Some(vpcnet_ipam::mac_for("10.0.1.9".parse().unwrap()).as_str())
        );
        v.status = Some(st);
        assert_eq!(sealed(&key, &v), Some("10.0.1.9".parse().unwrap()));
        v.status.as_mut().unwrap().v4ip = Some("10.0.1.10".into());
        assert_eq!(sealed(&key, &v), None, "a forged address");
    }
}
