//! EIP addresses on the external interface, over rtnetlink.
//!
//! Addresses the agent adds carry the label `<iface>:eip`, so after a
//! restart it still knows which ones are its own; it only ever removes
//! those, never the interface's primary or anything else.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, CacheInfo,
};
use rtnetlink::packet_route::link::LinkAttribute;

/// Errors from netlink.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// The interface does not exist.
    #[error("interface {0} not found")]
    NoLink(String),
    /// The interface has no IPv4 address to take the prefix length from.
    #[error("interface {0} has no IPv4 address")]
    NoAddress(String),
    /// Netlink failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
}

/// One IPv4 address on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V4Addr {
    /// Address.
    pub ip: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// `IFA_LABEL`.
    pub label: String,
    /// Kernel flags it as secondary.
    pub secondary: bool,
    msg: AddressMessage,
}

/// A link's index, MAC and IPv4 addresses.
#[derive(Clone, Debug)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// ifindex.
    pub index: u32,
    /// MAC address (zeros when none).
    pub mac: [u8; 6],
    /// IPv4 addresses, in kernel order (primary first).
    pub addrs: Vec<V4Addr>,
}

impl LinkInfo {
    /// The primary IPv4 address (the first non-secondary one).
    pub fn primary(&self) -> Option<&V4Addr> {
        self.addrs.iter().find(|a| !a.secondary)
    }
}

/// The label marking addresses the agent added (max 15 bytes).
pub fn owned_label(iface: &str) -> String {
    let mut l = format!("{iface}:eip");
    l.truncate(15);
    l
}

/// Reads a link and its IPv4 addresses.
pub async fn link_info(h: &Handle, name: &str) -> Result<LinkInfo, AddrError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    let link = match links.try_next().await {
        Ok(Some(l)) => l,
        Ok(None) => return Err(AddrError::NoLink(name.to_string())),
        Err(rtnetlink::Error::NetlinkError(_)) => return Err(AddrError::NoLink(name.to_string())),
        Err(e) => return Err(e.into()),
    };
    let mut mac = [0u8; 6];
    for a in &link.attributes {
        if let LinkAttribute::Address(b) = a
            && b.len() == 6
        {
            mac.copy_from_slice(b);
        }
    }
    let index = link.header.index;
    let mut addrs = Vec::new();
    let mut stream = h.address().get().set_link_index_filter(index).execute();
    while let Some(msg) = stream.try_next().await? {
        if msg.header.index != index {
            continue;
        }
        let mut ip = None;
        let mut label = String::new();
        for a in &msg.attributes {
            match a {
                AddressAttribute::Local(IpAddr::V4(v)) => ip = Some(*v),
                AddressAttribute::Address(IpAddr::V4(v)) if ip.is_none() => ip = Some(*v),
                AddressAttribute::Label(l) => label = l.clone(),
                _ => {}
            }
        }
        if let Some(ip) = ip {
            addrs.push(V4Addr {
                ip,
                prefix: msg.header.prefix_len,
                label,
                secondary: msg.header.flags.contains(AddressHeaderFlags::Secondary),
                msg: msg.clone(),
            });
        }
    }
    Ok(LinkInfo {
        name: name.to_string(),
        index,
        mac,
        addrs,
    })
}

/// What `reconcile` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrChanges {
    /// Addresses added (announce them).
    pub added: Vec<Ipv4Addr>,
    /// Owned addresses removed.
    pub removed: Vec<Ipv4Addr>,
}

/// Makes `iface` hold exactly `want` among the addresses the agent owns:
/// adds missing ones as `/prefix` (the primary's prefix length) with the
/// owned label, removes owned ones no longer wanted.
pub async fn reconcile(
    h: &Handle,
    iface: &str,
    want: &BTreeSet<Ipv4Addr>,
) -> Result<AddrChanges, AddrError> {
    reconcile_with(h, iface, want, None).await
}

/// The kernel's lifetime attribute: the address goes by itself `secs`
/// after it was last added or refreshed.
fn lifetime_attr(secs: u32) -> AddressAttribute {
    let mut c = CacheInfo::default();
    c.ifa_preferred = secs;
    c.ifa_valid = secs;
    AddressAttribute::CacheInfo(c)
}

/// As [`reconcile`]; with `lifetime`, added addresses expire after that
/// many seconds unless [`refresh`]ed (an active gateway replica's addresses
/// die with its agent).
pub async fn reconcile_with(
    h: &Handle,
    iface: &str,
    want: &BTreeSet<Ipv4Addr>,
    lifetime: Option<u32>,
) -> Result<AddrChanges, AddrError> {
    let info = link_info(h, iface).await?;
    let prefix = info
        .primary()
        .map(|a| a.prefix)
        .ok_or_else(|| AddrError::NoAddress(iface.to_string()))?;
    let label = owned_label(iface);
    let mut ch = AddrChanges::default();
    for a in &info.addrs {
        let primary = info.primary().is_some_and(|p| p.ip == a.ip);
        if a.label == label && !primary && !want.contains(&a.ip) {
            h.address().del(a.msg.clone()).execute().await?;
            ch.removed.push(a.ip);
        }
    }
    for ip in want {
        if info.addrs.iter().any(|a| a.ip == *ip) {
            continue;
        }
        let mut req = h.address().add(info.index, IpAddr::V4(*ip), prefix);
        req.message_mut()
            .attributes
            .push(AddressAttribute::Label(label.clone()));
        if let Some(l) = lifetime {
            req.message_mut().attributes.push(lifetime_attr(l));
        }
        req.execute().await?;
        ch.added.push(*ip);
    }
    Ok(ch)
}

/// Gives `iface` the address `net` as its primary if it has no IPv4
/// address (a replica of two gets none from its network attachment); true
/// if it added it.
pub async fn ensure_primary(
    h: &Handle,
    iface: &str,
    net: ipnet::Ipv4Net,
) -> Result<bool, AddrError> {
    let info = link_info(h, iface).await?;
    if info.primary().is_some() {
        return Ok(false);
    }
    h.address()
        .add(info.index, IpAddr::V4(net.addr()), net.prefix_len())
        .execute()
        .await?;
    Ok(true)
}

/// Restarts the lifetime of every address the agent owns on `iface`;
/// how many.
pub async fn refresh(h: &Handle, iface: &str, lifetime: u32) -> Result<usize, AddrError> {
    let info = link_info(h, iface).await?;
    let label = owned_label(iface);
    let mut n = 0;
    for a in info
        .addrs
        .iter()
        .filter(|a| a.label == label && a.secondary)
    {
        let mut req = h
            .address()
            .add(info.index, IpAddr::V4(a.ip), a.prefix)
            .replace();
        let attrs = &mut req.message_mut().attributes;
        attrs.push(AddressAttribute::Label(label.clone()));
        attrs.push(lifetime_attr(lifetime));
        req.execute().await?;
        n += 1;
    }
    Ok(n)
}
