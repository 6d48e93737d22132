//! The UDP VIPs of the load balancers vpcnet owns, each with its backends,
//! read from `Load_Balancer` rows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use ovn::nb::{LoadBalancer, load_balancer};
use ovn::owner::OWNER_KEY;

/// VIP -> its backends, over every UDP load balancer vpcnet owns. A VIP in
/// two rows (a SwitchLBRule address reused by another VPC) gets the union:
/// an entry is stale only when its backend serves the VIP nowhere.
pub type VipMap = BTreeMap<SocketAddr, BTreeSet<SocketAddr>>;

/// `10.0.0.1:53` or `[fd00::1]:53`; OVN also allows a VIP without a port,
/// which no UDP flow can be told apart by, so it is skipped.
fn endpoint(s: &str) -> Option<SocketAddr> {
    s.trim().parse().ok()
}

/// The UDP VIPs of `rows` that carry vpcnet's owner key.
pub fn udp_vips<'a>(rows: impl IntoIterator<Item = &'a LoadBalancer>) -> VipMap {
    let mut out = VipMap::new();
    for lb in rows {
        if lb.protocol != Some(load_balancer::Protocol::Udp)
            || !lb.external_ids.contains_key(OWNER_KEY)
        {
            continue;
        }
        for (vip, backends) in &lb.vips {
            let Some(vip) = endpoint(vip) else { continue };
            out.entry(vip)
                .or_default()
                .extend(backends.split(',').filter_map(endpoint));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(proto: load_balancer::Protocol, owned: bool, vips: &[(&str, &str)]) -> LoadBalancer {
        let mut l = LoadBalancer {
            protocol: Some(proto),
            vips: vips
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        if owned {
            l.external_ids
                .insert(OWNER_KEY.into(), "Service/a/dns".into());
        }
        l
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_owned_udp_rows_count() {
        use load_balancer::Protocol::{Tcp, Udp};
        let rows = [
            lb(Udp, true, &[("10.96.0.10:53", "10.0.0.5:53,10.0.0.6:53")]),
            lb(Tcp, true, &[("10.96.0.10:53", "10.0.0.7:53")]),
            lb(Udp, false, &[("10.96.0.11:53", "10.0.0.8:53")]),
        ];
        let m = udp_vips(&rows);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[&sa("10.96.0.10:53")],
            [sa("10.0.0.5:53"), sa("10.0.0.6:53")].into()
        );
    }

    #[test]
    fn a_vip_without_backends_is_kept_with_none_and_ipv6_is_read() {
        use load_balancer::Protocol::Udp;
        let rows = [
            lb(Udp, true, &[("10.96.0.12:514", "")]),
            lb(Udp, true, &[("[fd00::a]:53", "[fd00::5]:53")]),
            lb(Udp, true, &[("10.96.0.13", "10.0.0.9")]),
        ];
        let m = udp_vips(&rows);
        assert!(m[&sa("10.96.0.12:514")].is_empty());
        assert_eq!(m[&sa("[fd00::a]:53")], [sa("[fd00::5]:53")].into());
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_vip_in_two_rows_gets_both_backend_sets() {
        use load_balancer::Protocol::Udp;
        let rows = [
            lb(Udp, true, &[("10.0.0.100:53", "10.0.0.5:53")]),
            lb(Udp, true, &[("10.0.0.100:53", "10.0.0.6:53")]),
        ];
        assert_eq!(udp_vips(&rows)[&sa("10.0.0.100:53")].len(), 2);
    }
}
