//! `Subnet`: an address range in a VPC (an OVN logical switch), or an
//! IPAM-only external range served through a Multus network.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use std::sync::Arc;

use kube::ResourceExt;
use serde::{Deserialize, Serialize};

/// A subnet. With `provider` unset it is a logical switch attached to its
/// VPC's router and pods in `namespaces` get addresses from it; with
/// `provider` naming a NetworkAttachmentDefinition it is an external network
/// from which NAT gateways and EIPs take their addresses.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "An address range: a logical switch in a VPC, or an IPAM-only external network (spec.provider).",
    version = "v1",
    kind = "Subnet",
    plural = "subnets",
    shortname = "subnet",
    category = "vpcnet",
    status = "SubnetStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"VPC","type":"string","jsonPath":".spec.vpc"}"#,
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidrBlock"}"#,
    printcolumn = r#"{"name":"Gateway","type":"string","jsonPath":".spec.gateway"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider","priority":1}"#,
    printcolumn = r#"{"name":"Used","type":"integer","jsonPath":".status.v4usingIPs"}"#,
    printcolumn = r#"{"name":"Available","type":"integer","jsonPath":".status.v4availableIPs"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.gateway) || !isCIDR(self.cidrBlock) || !isIP(self.gateway) || cidr(self.cidrBlock).containsIP(self.gateway)").message("gateway must be an address inside cidrBlock").field_path(".gateway"))]
// `!(a == b)` rather than `a != b`: the API server estimates `!=` on IP values
// beyond the CRD's cost budget and refuses the CRD.
#[x_kube(validation = Rule::new("!has(self.gateway) || !isCIDR(self.cidrBlock) || !isIP(self.gateway) || !(ip(self.gateway) == cidr(self.cidrBlock).masked().ip())").message("gateway must not be the network address of cidrBlock").field_path(".gateway"))]
#[x_kube(validation = Rule::new(format!(
    "!has(self.gateway) || !isCIDR(self.cidrBlock) || !isIP(self.gateway) || ip(self.gateway).family() != 4 || \
     cidr(self.cidrBlock).ip().family() != 4 || cidr(self.cidrBlock).prefixLength() > 30 || \
     !cidr(self.cidrBlock).containsIP(self.gateway) || ({} + 1) % {} != 0",
    crate::cel::ipv4_as_int("self.gateway"),
    crate::cel::ipv4_block_size("cidr(self.cidrBlock).prefixLength()"),
)).message("gateway must not be the broadcast address of cidrBlock").field_path(".gateway"))]
#[x_kube(validation = Rule::new("!has(self.excludeIps) || !isCIDR(self.cidrBlock) || self.excludeIps.all(r, r.split('..').all(a, !isIP(a) || cidr(self.cidrBlock).containsIP(a)))").message("every excludeIps address must lie inside cidrBlock").field_path(".excludeIps"))]
#[x_kube(validation = Rule::new("!has(self.protocol) || !isCIDR(self.cidrBlock) || (self.protocol == 'IPv4') == (cidr(self.cidrBlock).ip().family() == 4)").message("protocol does not match the address family of cidrBlock").field_path(".protocol"))]
#[x_kube(validation = Rule::new("has(self.vpc) == has(oldSelf.vpc)").message("vpc cannot be added or removed after creation").field_path(".vpc"))]
pub struct SubnetSpec {
    /// The VPC this subnet belongs to. Unset for an external (provider)
    /// subnet, and for subnets of the default VPC. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("vpc is immutable"))]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub vpc: Option<String>,

    /// The subnet's range, e.g. `10.0.1.0/24`; host bits must be zero and the
    /// prefix length between `/8` and `/30` (IPv6: `/126`). Two subnets of
    /// one VPC may not overlap; subnets of different VPCs may. Immutable.
    #[x_kube(validation = Rule::new(crate::cel::IS_NETWORK_CIDR).message("cidrBlock must be a network CIDR such as 10.0.1.0/24 (host bits zero)"))]
    #[x_kube(validation = Rule::new(crate::cel::SUBNET_PREFIX_LENGTH).message("cidrBlock prefix length must be between /8 and /30 for IPv4 (/8 and /126 for IPv6)"))]
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("cidrBlock is immutable"))]
    #[schemars(length(max = 64))]
    pub cidr_block: String,

    /// The router address on this subnet, inside `cidrBlock` and neither its
    /// network nor its broadcast address. Defaults to the first address of
    /// `cidrBlock`. Never allocated to a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IS_IP).message("gateway must be an IP address"))]
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("gateway is immutable"))]
    #[schemars(length(max = 64))]
    pub gateway: Option<String>,

    /// Address family: `IPv4` or `IPv6`. Defaults to the family of `cidrBlock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,

    /// Namespaces whose pods get their address from this subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub namespaces: Vec<String>,

    /// Addresses never handed out: single addresses (`10.0.1.7`) or inclusive
    /// ranges (`172.16.3.1..172.16.3.100`), all inside `cidrBlock`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 80)))]
    #[x_kube(validation = Rule::new("self.all(r, r.split('..').size() <= 2 && r.split('..').all(a, isIP(a)))").message("excludeIps entries must be an address or a range 'first..last' of addresses"))]
    #[x_kube(validation = Rule::new("self.all(r, r.split('..').size() != 2 || !isIP(r.split('..')[0]) || !isIP(r.split('..')[1]) || ip(r.split('..')[0]).family() == ip(r.split('..')[1]).family())").message("excludeIps range ends must be of the same address family"))]
    pub exclude_ips: Vec<String>,

    /// `<name>.<namespace>` of a Multus NetworkAttachmentDefinition. When set,
    /// this subnet is IPAM-only: an external network for NAT gateways and EIPs.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("provider is immutable"))]
    #[schemars(
        length(max = 317),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\.[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub provider: Option<String>,
}

/// Address family of a subnet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Protocol {
    /// IPv4 only.
    IPv4,
    /// IPv6 only.
    IPv6,
}

/// Observed state of a subnet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetStatus {
    /// `Ready` and kind-specific conditions, keyed by type (each may have its own writer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Addresses still free for allocation.
    #[serde(
        rename = "v4availableIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v4_available_ips: Option<u64>,
    /// Addresses allocated to pods, gateways or EIPs.
    #[serde(
        rename = "v4usingIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v4_using_ips: Option<u64>,
    /// The OVN Logical_Switch implementing this subnet (none for a provider subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_switch: Option<String>,
}

impl Subnet {
    /// The VPC a (non-provider) subnet belongs to: its `spec.vpc`, else the
    /// default VPC.
    pub fn vpc_name(&self) -> &str {
        self.spec
            .vpc
            .as_deref()
            .unwrap_or(crate::contract::DEFAULT_VPC)
    }
}

/// The subnet for pods of `namespace` (and so the namespace's VPC): a subnet that lists the namespace
/// (the oldest if several do), else the default subnet.
pub fn choose_subnet(
    namespace: &str,
    subnets: &[Arc<Subnet>],
    default: Option<&str>,
) -> Option<Arc<Subnet>> {
    let mut claiming: Vec<&Arc<Subnet>> = subnets
        .iter()
        .filter(|s| s.spec.provider.is_none() && s.spec.namespaces.iter().any(|n| n == namespace))
        .collect();
    claiming.sort_by_key(|s| (s.creation_timestamp().map(|t| t.0), s.name_any()));
    claiming
        .first()
        .map(|s| (*s).clone())
        .or_else(|| default.and_then(|d| subnets.iter().find(|s| s.name_any() == d).cloned()))
}

/// The address of a subnet's router port: `gateway` if it parses, else the
/// subnet's first host address.
pub fn router_address(gateway: Option<&str>, cidr: &ipnet::Ipv4Net) -> std::net::Ipv4Addr {
    gateway
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| default_gateway(cidr))
}

/// The default gateway of a subnet: its first host address.
pub fn default_gateway(cidr: &ipnet::Ipv4Net) -> std::net::Ipv4Addr {
    let n = u32::from(cidr.network());
    std::net::Ipv4Addr::from(if cidr.prefix_len() >= 31 { n } else { n + 1 })
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn the_router_takes_the_gateway_else_the_first_host() {
        let cidr: ipnet::Ipv4Net = "10.0.1.0/24".parse().unwrap();
        assert_eq!(
            router_address(Some("10.0.1.254"), &cidr).to_string(),
            "10.0.1.254"
        );
        assert_eq!(router_address(None, &cidr).to_string(), "10.0.1.1");
        let p2p: ipnet::Ipv4Net = "10.0.1.0/31".parse().unwrap();
        assert_eq!(default_gateway(&p2p).to_string(), "10.0.1.0");
    }
}
