//! The ADD result (CNI 1.0 shape), appended to a `prevResult` when chained.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use rscni_plugin::types::{CNIResult, Interface, IpConfig, Route};

use crate::k8s::Allocation;

pub struct Attached<'a> {
    pub host_name: &'a str,
    pub host_mac: &'a str,
    pub ifname: &'a str,
    pub netns: &'a str,
    pub mtu: u32,
}

/// `prev` (if any) plus the host end, the pod's interface, its address and
/// the default route via the subnet gateway.
/// With a `probe` address, that is listed first, so it becomes the pod's
/// `status.podIP` (see `probe`).
pub fn build(
    prev: Option<CNIResult>,
    a: &Attached<'_>,
    alloc: &Allocation,
    probe: Option<Ipv4Addr>,
) -> CNIResult {
    let mut r = prev.unwrap_or_default();
    r.interfaces.push(Interface {
        name: a.host_name.into(),
        mac: a.host_mac.into(),
        mtu: Some(a.mtu),
        sandbox: None,
        socket_path: None,
        pci_id: None,
    });
    r.interfaces.push(Interface {
        name: a.ifname.into(),
        mac: alloc.mac_string(),
        mtu: Some(a.mtu),
        sandbox: Some(a.netns.into()),
        socket_path: None,
        pci_id: None,
    });
    let pod_index = u32::try_from(r.interfaces.len() - 1).unwrap_or(u32::MAX);
    if let Some(p) = probe {
        r.ips.push(IpConfig {
            interface: Some(pod_index),
            address: IpNet::V4(Ipv4Net::new(p, 32).expect("32 is a valid prefix length")),
            gateway: None,
        });
    }
    r.ips.push(IpConfig {
        interface: Some(pod_index),
        address: IpNet::V4(alloc.address),
        gateway: Some(IpAddr::V4(alloc.gateway)),
    });
    r.routes.push(Route {
        dst: IpNet::V4(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("0 is a valid prefix length")),
        gw: Some(IpAddr::V4(alloc.gateway)),
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    });
    r
}

/// The address `prev` records for the interface `ifname` in `netns`, if any.
pub fn recorded_address(prev: &CNIResult, ifname: &str, netns: &str) -> Option<IpNet> {
    let idx = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.as_deref() == Some(netns))?;
    // The last: a probe address, listed first, is not on the interface.
    prev.ips
        .iter()
        .rev()
        .find(|ip| ip.interface == u32::try_from(idx).ok())
        .map(|ip| ip.address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc() -> Allocation {
        Allocation {
            address: "10.0.1.5/24".parse().unwrap(),
            mac: [0x0a, 0x58, 10, 0, 1, 5],
            gateway: "10.0.1.1".parse().unwrap(),
            logical_switch: "s".into(),
            host_egress: None,
        }
    }

    fn att() -> Attached<'static> {
        Attached {
            host_name: "vpc0123456789a",
            host_mac: "aa:bb:cc:dd:ee:ff",
            ifname: "eth0",
            netns: "/var/run/netns/p",
            mtu: 1400,
        }
    }

    #[test]
    fn fresh_result() {
        let r = build(None, &att(), &alloc(), None);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["interfaces"][1]["name"], "eth0");
        assert_eq!(v["interfaces"][1]["mac"], "0a:58:0a:00:01:05");
        assert_eq!(v["interfaces"][1]["sandbox"], "/var/run/netns/p");
        assert!(v["interfaces"][0].get("sandbox").is_none());
        assert_eq!(v["ips"][0]["interface"], 1);
        assert_eq!(v["ips"][0]["address"], "10.0.1.5/24");
        assert_eq!(v["ips"][0]["gateway"], "10.0.1.1");
        assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(
            recorded_address(&r, "eth0", "/var/run/netns/p")
                .unwrap()
                .to_string(),
            "10.0.1.5/24"
        );
        assert_eq!(recorded_address(&r, "eth0", "/other"), None);
    }

    #[test]
    fn a_probe_address_comes_first_so_it_is_the_pods_ip() {
        let r = build(None, &att(), &alloc(), Some("100.64.0.9".parse().unwrap()));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ips"][0]["address"], "100.64.0.9/32");
        assert_eq!(v["ips"][0]["interface"], 1);
        assert!(v["ips"][0].get("gateway").is_none());
        assert_eq!(v["ips"][1]["address"], "10.0.1.5/24");
        assert_eq!(
            recorded_address(&r, "eth0", "/var/run/netns/p")
                .unwrap()
                .to_string(),
            "10.0.1.5/24",
            "CHECK compares the VPC address"
        );
    }

    #[test]
    fn chained_result_keeps_the_previous_plugins_entries() {
        let prev = build(
            None,
            &Attached {
                ifname: "net0",
                ..att()
            },
            &alloc(),
            None,
        );
        let r = build(Some(prev), &att(), &alloc(), None);
        assert_eq!(r.interfaces.len(), 4);
        assert_eq!(r.ips.len(), 2);
        assert_eq!(
            r.ips[1].interface,
            Some(3),
            "index points at our interface, after the previous ones"
        );
        assert_eq!(r.interfaces[1].name, "net0");
    }
}
