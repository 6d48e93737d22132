//! The NAT state a gateway should have: plain data computed by `desired` and
//! turned into iptables-restore input by `render`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Prefix of every chain the agent owns in the `nat` table.
pub const CHAIN_PREFIX: &str = "VPCNAT-";
/// DNAT and FIP destination rewriting; jumped to from `PREROUTING`.
pub const CHAIN_PRE: &str = "VPCNAT-PREROUTING";
/// SNAT, FIP source rewriting and hairpin; jumped to from `POSTROUTING`.
pub const CHAIN_POST: &str = "VPCNAT-POSTROUTING";
/// Prefix of the per-group chains of shared DNAT rules.
pub const SHARED_PREFIX: &str = "VPCNAT-SHARED-";
/// Prefix of the DNAT bucket chains (one per EIP, protocol and block of
/// `DNAT_BUCKET_PORTS` ports).
pub const BUCKET_PREFIX: &str = "VPCNAT-D-";
/// Ports per DNAT bucket. Adding or removing one rule rewrites only its
/// bucket, so the cost of a change stays small however many rules exist.
pub const DNAT_BUCKET_PORTS: u32 = 256;

/// Kind of an object the agent programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// IptablesEIP.
    Eip,
    /// IptablesSnatRule.
    Snat,
    /// IptablesDnatRule.
    Dnat,
    /// IptablesFIPRule.
    Fip,
}

impl Kind {
    /// The word used in comments and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Eip => "eip",
            Kind::Snat => "snat",
            Kind::Dnat => "dnat",
            Kind::Fip => "fip",
        }
    }

    /// The kind of an `as_str` word.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "eip" => Some(Kind::Eip),
            "snat" => Some(Kind::Snat),
            "dnat" => Some(Kind::Dnat),
            "fip" => Some(Kind::Fip),
            _ => None,
        }
    }
}

/// Identity of one Kubernetes object: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjKey {
    /// Kind of the object.
    pub kind: Kind,
    /// Namespace.
    pub ns: String,
    /// Name.
    pub name: String,
}

impl ObjKey {
    /// Builds a key.
    pub fn new(kind: Kind, ns: &str, name: &str) -> Self {
        ObjKey {
            kind,
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }

    /// The iptables comment that marks every line this object owns.
    pub fn comment(&self) -> String {
        format!("vpcnet:{self}")
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind.as_str(), self.ns, self.name)
    }
}

/// What the agent knows about its own pod's network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayFacts {
    /// The VpcNatGateway's name.
    pub name: String,
    /// Interface inside the VPC (`eth0`).
    pub lan_iface: String,
    /// The gateway's address on `lan_iface` (its `lanIp`).
    pub lan_ip: Ipv4Addr,
    /// Source ranges inside the VPC whose DNAT'ed traffic back into the VPC
    /// is hairpin-SNAT'ed to `lan_ip` (default: `lan_iface`'s subnet).
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// Interface on the external network (`net1`).
    pub ext_iface: String,
    /// Whether SNAT gets `--random-fully`.
    pub random_fully: bool,
}

/// An inclusive L4 port range; `lo == hi` for one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

impl PortRange {
    /// Parses `8888` or `1000-2000`.
    pub fn parse(s: &str) -> Option<PortRange> {
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
            None => {
                let p = s.trim().parse::<u16>().ok()?;
                (p, p)
            }
        };
        (lo >= 1 && lo <= hi).then_some(PortRange { lo, hi })
    }

    /// Number of ports.
    pub fn len(self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(self) -> bool {
        false
    }

    /// `--dport` form: `8888` or `1000:2000`.
    pub fn match_form(self) -> String {
        if self.lo == self.hi {
            self.lo.to_string()
        } else {
            format!("{}:{}", self.lo, self.hi)
        }
    }

    /// `--to-destination` form: `8888` or `1000-2000`.
    pub fn nat_form(self) -> String {
        if self.lo == self.hi {
            self.lo.to_string()
        } else {
            format!("{}-{}", self.lo, self.hi)
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.nat_form())
    }
}

/// L4 protocol of a DNAT rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` / `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One SNAT rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snat {
    /// Owner.
    pub key: ObjKey,
    /// Source range.
    pub cidr: Ipv4Net,
    /// The EIP used as source.
    pub eip: Ipv4Addr,
}

/// One floating IP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fip {
    /// Owner.
    pub key: ObjKey,
    /// The EIP.
    pub eip: Ipv4Addr,
    /// The inside address.
    pub internal: Ipv4Addr,
}

/// One DNAT backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dnat {
    /// Owner.
    pub key: ObjKey,
    /// The EIP.
    pub eip: Ipv4Addr,
    /// Protocol.
    pub proto: Proto,
    /// Port(s) on the EIP.
    pub ext: PortRange,
    /// Destination inside the VPC.
    pub internal: Ipv4Addr,
    /// Port(s) on `internal`.
    pub int_port: PortRange,
}

/// The (EIP, protocol, port) a DNAT listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DnatGroup {
    /// The EIP.
    pub eip: Ipv4Addr,
    /// Protocol.
    pub proto: Proto,
    /// Port(s) on the EIP.
    pub ext: PortRange,
}

impl DnatGroup {
    /// Name of the chain spreading a shared group's connections:
    /// `VPCNAT-SHARED-` + 8 hex digits of an FNV-1a hash (stable across
    /// builds and platforms, within iptables' 28-character limit).
    pub fn chain(&self) -> String {
        let text = format!("{}:{}:{}", self.eip, self.proto.as_str(), self.ext);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{SHARED_PREFIX}{:08X}", (h ^ (h >> 32)) as u32)
    }
}

/// A block of `DNAT_BUCKET_PORTS` ports of one EIP and protocol, whose
/// DNAT rules live in a chain of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnatBucket {
    /// The EIP.
    pub eip: Ipv4Addr,
    /// Protocol.
    pub proto: Proto,
    /// Block number: ports `index * DNAT_BUCKET_PORTS ..` up to the next block.
    pub index: u16,
}

impl DnatBucket {
    /// The bucket holding `group`, or `None` when its port range crosses a
    /// block boundary (such a rule stays in the main chain).
    pub fn of(group: &DnatGroup) -> Option<DnatBucket> {
        let lo = u32::from(group.ext.lo) / DNAT_BUCKET_PORTS;
        let hi = u32::from(group.ext.hi) / DNAT_BUCKET_PORTS;
        (lo == hi).then_some(DnatBucket {
            eip: group.eip,
            proto: group.proto,
            index: lo as u16,
        })
    }

    /// The ports of this block (port 0 is never a rule's port, so the first
    /// block starting at 0 is harmless).
    pub fn ports(&self) -> PortRange {
        let lo = u32::from(self.index) * DNAT_BUCKET_PORTS;
        PortRange {
            lo: lo as u16,
            hi: (lo + DNAT_BUCKET_PORTS - 1).min(65535) as u16,
        }
    }

    /// `VPCNAT-D-<EIP in hex>-<T|U>-<block in hex>`, at most 22 characters.
    pub fn chain(&self) -> String {
        let p = match self.proto {
            Proto::Tcp => 'T',
            Proto::Udp => 'U',
        };
        format!(
            "{BUCKET_PREFIX}{:08X}-{p}-{:02X}",
            u32::from(self.eip),
            self.index
        )
    }
}

/// Why an object is not (or not yet) programmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    /// Condition reason (CamelCase).
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// Everything the gateway should have. Maps are keyed so equal inputs give
/// equal states, whatever order the objects arrived in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatState {
    /// The gateway's facts (absent: nothing gateway-specific is rendered).
    pub facts: Option<GatewayFacts>,
    /// EIP addresses to hold on the external interface, with their owner.
    pub eips: BTreeMap<Ipv4Addr, ObjKey>,
    /// SNAT rules, longest prefix first.
    pub snats: Vec<Snat>,
    /// Floating IPs, by EIP.
    pub fips: Vec<Fip>,
    /// DNAT groups: one backend for an exclusive rule, several for a shared one.
    pub dnats: BTreeMap<DnatGroup, Vec<Dnat>>,
    /// Objects of this gateway that are not programmed, and why.
    pub skipped: BTreeMap<ObjKey, Skip>,
}

impl NatState {
    /// Every object that is part of the rendered state.
    pub fn programmed_keys(&self) -> Vec<ObjKey> {
        let mut keys: Vec<ObjKey> = self.eips.values().cloned().collect();
        keys.extend(self.snats.iter().map(|s| s.key.clone()));
        keys.extend(self.fips.iter().map(|f| f.key.clone()));
        keys.extend(self.dnats.values().flatten().map(|d| d.key.clone()));
        keys.sort();
        keys
    }

    /// Number of rule objects (SNAT, DNAT, FIP) rendered.
    pub fn rule_count(&self) -> usize {
        self.snats.len() + self.fips.len() + self.dnats.values().map(Vec::len).sum::<usize>()
    }
}
