//! Reading back the operator's own sealed decisions (`vpcnet_api::seal`):
//! whatever a tenant wrote into a status field counts for nothing unless the
//! seal over it verifies.

use std::net::Ipv4Addr;

use vpcnet_api::IptablesEIP;
use vpcnet_api::nat_rule_status::NatRuleStatus;
use vpcnet_api::seal::{Decision, SealKey};

/// The address the operator gave `eip`, and the gateway it gave it on, if
/// its status carries the operator's seal over exactly those.
pub fn eip(key: &SealKey, eip: &IptablesEIP) -> Option<(Ipv4Addr, String)> {
    let st = eip.status.as_ref()?;
    let (ip, gw, seal) = (st.ip.as_ref()?, st.nat_gw_dp.as_ref()?, st.seal.as_ref()?);
    if *gw != eip.spec.nat_gw_dp || !key.verify(&Decision::eip(eip, gw, ip), seal) {
        return None;
    }
    Some((ip.parse().ok()?, gw.clone()))
}

/// Whether the operator accepted `rule` as it is now (its current generation).
pub fn rule<K>(key: &SealKey, rule: &K, status: Option<&NatRuleStatus>) -> bool
where
    K: kube::Resource<DynamicType = ()>,
{
    let Some(st) = status else {
        return false;
    };
    match (&st.v4ip, &st.nat_gw_dp, &st.seal) {
        (Some(ip), Some(gw), Some(seal)) => key.verify(&Decision::rule(rule, gw, ip), seal),
        _ => false,
    }
}

/// Whether the gateway agent's `programmedSeal` vouches for `obj` at its
/// current generation on `gateway` at `ip`.
pub fn programmed<K>(key: &SealKey, obj: &K, seal: Option<&String>, gateway: &str, ip: &str) -> bool
where
    K: kube::Resource<DynamicType = ()>,
{
    seal.is_some_and(|s| key.verify(&Decision::programmed(obj, gateway, ip), s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcnet_api::{IptablesEIPSpec, IptablesEIPStatus, IptablesSnatRule};

    fn key() -> SealKey {
        SealKey::new(&[7u8; 32]).unwrap()
    }

    fn eip_of(ns: &str, gw: &str, ip: &str, seal: Option<String>) -> IptablesEIP {
        let mut e = IptablesEIP::new(
            "e",
            IptablesEIPSpec {
                nat_gw_dp: gw.into(),
                ..Default::default()
            },
        );
        e.metadata.namespace = Some(ns.into());
        e.metadata.uid = Some(format!("uid-{ns}"));
        e.status = Some(IptablesEIPStatus {
            ip: Some(ip.into()),
            nat_gw_dp: Some(gw.into()),
            seal,
            ..Default::default()
        });
        e
    }

    #[test]
    fn only_a_sealed_address_counts() {
        let k = key();
        let good = eip_of("a", "gw", "172.16.3.5", None);
        let seal = k.seal(&Decision::eip(&good, "gw", "172.16.3.5"));
        let sealed = eip_of("a", "gw", "172.16.3.5", Some(seal.clone()));
        assert_eq!(
            eip(&k, &sealed),
            Some(("172.16.3.5".parse().unwrap(), "gw".into()))
        );
        assert_eq!(eip(&k, &good), None, "no seal");
        // A tenant rewrites the address, or copies the seal to its own EIP.
        assert_eq!(
            eip(&k, &eip_of("a", "gw", "172.16.3.6", Some(seal.clone()))),
            None
        );
        assert_eq!(eip(&k, &eip_of("b", "gw", "172.16.3.5", Some(seal))), None);
    }

    #[test]
    fn a_rule_is_accepted_only_for_the_generation_sealed() {
        let k = key();
        let mut r = IptablesSnatRule::new("s", Default::default());
        r.metadata.namespace = Some("a".into());
        r.metadata.uid = Some("u".into());
        r.metadata.generation = Some(1);
        let seal = k.seal(&Decision::rule(&r, "gw", "172.16.3.5"));
        let st = NatRuleStatus {
            v4ip: Some("172.16.3.5".into()),
            nat_gw_dp: Some("gw".into()),
            seal: Some(seal),
            ..Default::default()
        };
        assert!(rule(&k, &r, Some(&st)));
        r.metadata.generation = Some(2);
        assert!(!rule(&k, &r, Some(&st)), "spec changed since");
        assert!(!rule(&k, &r, None));
    }
}
