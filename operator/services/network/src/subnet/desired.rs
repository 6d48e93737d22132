//! The OVN rows a Subnet wants: a logical switch joined to its VPC's router.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use ovn::nb::{
    LogicalRouter, LogicalRouterPort, LogicalSwitch, LogicalSwitchPort, logical_router,
    logical_switch,
};
use ovn::{Desired, Table, Uuid};

use crate::names;
use vpcnet_ipam::mac_for;

/// What the switch needs to know about a subnet, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchPlan {
    /// Subnet name.
    pub subnet: String,
    /// VPC name.
    pub vpc: String,
    /// The subnet.
    pub cidr: Ipv4Net,
    /// The router's address on it.
    pub gateway: Ipv4Addr,
}

const SWITCH: &str = "switch";

/// Desired rows: switch, router port (child of the VPC's router `router`),
/// and the switch's router-type port peering with it.
pub fn desired(plan: &SwitchPlan, router: Uuid) -> Vec<Desired> {
    let ids = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        let mut m = BTreeMap::from([
            ("vpcnet.io/subnet".to_string(), plan.subnet.clone()),
            ("vpcnet.io/cidr".to_string(), plan.cidr.to_string()),
        ]);
        m.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        m
    };
    let lrp_name = names::router_port(&plan.subnet);
    let switch = LogicalSwitch {
        name: names::switch(&plan.subnet),
        external_ids: ids(&[]),
        ..Default::default()
    };
    let lrp = LogicalRouterPort {
        name: lrp_name.clone(),
        mac: mac_for(plan.gateway),
        networks: BTreeSet::from([format!("{}/{}", plan.gateway, plan.cidr.prefix_len())]),
        external_ids: ids(&[]),
        ..Default::default()
    };
    let lsp = LogicalSwitchPort {
        name: names::switch_router_port(&plan.subnet),
        r#type: "router".into(),
        addresses: BTreeSet::from(["router".to_string()]),
        options: BTreeMap::from([("router-port".to_string(), lrp_name)]),
        external_ids: ids(&[]),
        ..Default::default()
    };
    vec![
        Desired::new(&switch).named(SWITCH),
        Desired::new(&lrp).child_of(LogicalRouter::TABLE, logical_router::PORTS, router),
        Desired::new(&lsp).child_of(
            LogicalSwitch::TABLE,
            logical_switch::PORTS,
            Uuid::named(SWITCH),
        ),
    ]
}

/// The first subnet among `others` (name, cidr) whose range overlaps `cidr`.
pub fn overlapping<'a>(
    cidr: &Ipv4Net,
    others: impl IntoIterator<Item = (&'a str, Ipv4Net)>,
) -> Option<(&'a str, Ipv4Net)> {
    others
        .into_iter()
        .find(|(_, o)| o.contains(&cidr.network()) || cidr.contains(&o.network()))
}

pub use vpcnet_api::subnet::{default_gateway, router_address};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_router_port_and_peer() {
        let plan = SwitchPlan {
            subnet: "vmservers".into(),
            vpc: "mail263".into(),
            cidr: "10.0.1.0/24".parse().unwrap(),
            gateway: "10.0.1.1".parse().unwrap(),
        };
        let rows = desired(&plan, Uuid::Real("3f1c".into()));
        assert_eq!(rows.len(), 3);
        let dbg = format!("{rows:?}");
        assert!(dbg.contains("vpcnet-vmservers"), "{dbg}");
        assert!(dbg.contains("10.0.1.1/24"));
        assert!(dbg.contains("vpcnet_lrp_vmservers") && dbg.contains("vpcnet_lsp_vmservers"));
        assert!(dbg.contains("\"router\""));
    }

    #[test]
    fn overlap_is_detected_both_ways() {
        let a: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        let b: Ipv4Net = "10.0.1.0/24".parse().unwrap();
        let c: Ipv4Net = "10.1.0.0/24".parse().unwrap();
        assert_eq!(overlapping(&b, [("a", a)]).map(|x| x.0), Some("a"));
        assert_eq!(overlapping(&a, [("b", b)]).map(|x| x.0), Some("b"));
        assert_eq!(overlapping(&c, [("a", a), ("b", b)]), None);
    }

    #[test]
    fn gateway_defaults_to_first_host() {
        assert_eq!(
            default_gateway(&"10.0.1.0/24".parse().unwrap()),
            Ipv4Addr::new(10, 0, 1, 1)
        );
    }
}
