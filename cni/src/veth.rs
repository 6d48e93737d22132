//! The pod's veth pair: host end in the node's namespace, peer in the pod's.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::CniError;
use crate::netns::Netns;

/// Name of the host end: `vpc` + 11 hex digits of a hash of the container ID
/// and interface name (two attachments of one container get two names).
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    // FNV-1a 64: stable across releases and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("vpc{:011x}", h >> 20)
}

fn nl(what: impl std::fmt::Display, e: rtnetlink::Error) -> CniError {
    CniError::Netlink(format!("{what}: {e}"))
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// The link named `name`, if any.
pub async fn link(h: &Handle, name: &str) -> Result<Option<LinkMessage>, CniError> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(l) => Ok(l),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format_args!("get link {name}"), e)),
    }
}

/// Delete the link named `name`; true if it existed.
pub async fn delete(h: &Handle, name: &str) -> Result<bool, CniError> {
    let Some(l) = link(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(l.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(false),
        Err(e) => Err(nl(format_args!("delete link {name}"), e)),
    }
}

pub fn mac_of(l: &LinkMessage) -> Option<Vec<u8>> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    })
}

/// What [`create`] sets up.
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub ifname: &'a str,
    pub mac: [u8; 6],
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// Create the pair with the peer directly inside the pod's namespace, then
/// configure the peer (MAC, MTU, address, default route) and bring both ends
/// up. A leftover pair of an earlier attempt is replaced. Returns the MAC of
/// the host end.
pub async fn create(
    node: &Handle,
    pod: &Handle,
    pod_ns: &Netns,
    s: &VethSpec<'_>,
) -> Result<Vec<u8>, CniError> {
    delete(node, s.host_name).await?;
    if let Some(old) = link(pod, s.ifname).await? {
        return Err(CniError::Netlink(format!(
            "interface {} already exists in the pod's namespace (index {})",
            s.ifname, old.header.index
        )));
    }
    let peer = LinkUnspec::new_with_name(s.ifname)
        .mtu(s.mtu)
        .address(s.mac.to_vec())
        .setns_by_fd(pod_ns.fd())
        .build();
    let msg = LinkVeth::new(s.host_name, s.ifname)
        .mtu(s.mtu)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    node.link().add(msg).execute().await.map_err(|e| {
        nl(
            format_args!("create veth {} / {}", s.host_name, s.ifname),
            e,
        )
    })?;

    let host = link(node, s.host_name)
        .await?
        .ok_or_else(|| CniError::Netlink(format!("veth {} vanished", s.host_name)))?;
    let peer = link(pod, s.ifname).await?.ok_or_else(|| {
        CniError::Netlink(format!(
            "{} not found in the pod's namespace after creation",
            s.ifname
        ))
    })?;
    let pidx = peer.header.index;

    if let Some(lo) = link(pod, "lo").await? {
        pod.link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(|e| nl("set lo up", e))?;
    }
    pod.link()
        .set(LinkUnspec::new_with_index(pidx).up().build())
        .execute()
        .await
        .map_err(|e| nl(format_args!("set {} up", s.ifname), e))?;
    pod.address()
        .add(pidx, IpAddr::V4(s.address.addr()), s.address.prefix_len())
        .execute()
        .await
        .map_err(|e| nl(format_args!("add address {} to {}", s.address, s.ifname), e))?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(s.gateway)
        .output_interface(pidx)
        .build();
    pod.route()
        .add(route)
        .execute()
        .await
        .map_err(|e| nl(format_args!("add default route via {}", s.gateway), e))?;
    node.link()
        .set(LinkUnspec::new_with_index(host.header.index).up().build())
        .execute()
        .await
        .map_err(|e| nl(format_args!("set {} up", s.host_name), e))?;
    Ok(mac_of(&host).unwrap_or_default())
}

/// The IPv4 addresses (with prefix length) of `ifname`.
pub async fn ipv4_addresses(h: &Handle, index: u32) -> Result<Vec<Ipv4Net>, CniError> {
    let mut out = Vec::new();
    let mut s = h.address().get().set_link_index_filter(index).execute();
    while let Some(m) = s.try_next().await.map_err(|e| nl("list addresses", e))? {
        if m.header.index != index {
            continue;
        }
        for a in &m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = a
                && let Ok(n) = Ipv4Net::new(*ip, m.header.prefix_len)
            {
                out.push(n);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_stable_short_and_distinct() {
        let a = host_ifname("0123456789abcdef", "eth0");
        assert_eq!(a, host_ifname("0123456789abcdef", "eth0"));
        assert_eq!(a.len(), 14, "{a}");
        assert!(a.starts_with("vpc") && a[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, host_ifname("0123456789abcdef", "net1"));
        assert_ne!(a, host_ifname("0123456789abcdee", "eth0"));
    }
}
