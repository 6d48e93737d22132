//! `SecurityGroup`: cloud-style, prioritised allow/drop rules for pods,
//! realised as an OVN port group with ACLs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A security group. Pods join it through the annotation
/// `vpcnet.io/security_groups`; its rules become ACLs on the group's OVN port
/// group, evaluated by priority (lower number = evaluated first).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "Prioritised allow/drop rules for member pods (OVN port group + ACLs).",
    version = "v1",
    kind = "SecurityGroup",
    plural = "securitygroups",
    shortname = "sg",
    category = "vpcnet",
    namespaced,
    status = "SecurityGroupStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"PortGroup","type":"string","jsonPath":".status.portGroup"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.members"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupSpec {
    /// Members of the group may always talk to each other.
    #[serde(default)]
    pub allow_same_group_traffic: bool,

    /// Rules for traffic entering member pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub ingress_rules: Vec<SgRule>,

    /// Rules for traffic leaving member pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub egress_rules: Vec<SgRule>,
}

/// One security group rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.remoteType != 'address' || has(self.remoteAddress)").message("remoteAddress is required when remoteType is address").field_path(".remoteAddress"))]
#[x_kube(validation = Rule::new("self.remoteType != 'address' || !has(self.remoteSecurityGroup)").message("remoteSecurityGroup must not be set when remoteType is address").field_path(".remoteSecurityGroup"))]
#[x_kube(validation = Rule::new("self.remoteType != 'securityGroup' || has(self.remoteSecurityGroup)").message("remoteSecurityGroup is required when remoteType is securityGroup").field_path(".remoteSecurityGroup"))]
#[x_kube(validation = Rule::new("self.remoteType != 'securityGroup' || !has(self.remoteAddress)").message("remoteAddress must not be set when remoteType is securityGroup").field_path(".remoteAddress"))]
#[x_kube(validation = Rule::new("!(has(self.portRangeMin) || has(self.portRangeMax)) || self.protocol == 'tcp' || self.protocol == 'udp'").message("portRangeMin/portRangeMax are only allowed with protocol tcp or udp").field_path(".protocol"))]
#[x_kube(validation = Rule::new("!has(self.portRangeMin) || !has(self.portRangeMax) || self.portRangeMin <= self.portRangeMax").message("portRangeMin must not be greater than portRangeMax").field_path(".portRangeMin"))]
#[x_kube(validation = Rule::new("!has(self.remoteAddress) || !(isIP(self.remoteAddress) || isCIDR(self.remoteAddress)) || (self.ipVersion == 'ipv4') == ((isIP(self.remoteAddress) ? ip(self.remoteAddress).family() : cidr(self.remoteAddress).ip().family()) == 4)").message("remoteAddress does not match ipVersion").field_path(".remoteAddress"))]
pub struct SgRule {
    /// `ipv4` (default) or `ipv6`.
    #[serde(default)]
    pub ip_version: IpVersion,

    /// `all`, `icmp`, `tcp` or `udp`.
    pub protocol: SgProtocol,

    /// 1 (evaluated first) to 200 (evaluated last).
    #[schemars(range(min = 1, max = 200))]
    pub priority: i32,

    /// Whether the peer is an address range or another security group.
    pub remote_type: RemoteType,

    /// Peer address or CIDR, for `remoteType: address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IS_IP_OR_CIDR).message("remoteAddress must be an IP address or CIDR"))]
    #[schemars(length(max = 64))]
    pub remote_address: Option<String>,

    /// Peer security group (same namespace), for `remoteType: securityGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub remote_security_group: Option<String>,

    /// First port of the range (tcp/udp only, 1-65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port_range_min: Option<i32>,

    /// Last port of the range (tcp/udp only, 1-65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port_range_max: Option<i32>,

    /// `allow` or `drop`.
    pub policy: SgPolicy,
}

/// IP version of a rule.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum IpVersion {
    /// IPv4.
    #[default]
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// Protocol matched by a rule.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SgProtocol {
    /// Any protocol.
    #[default]
    All,
    /// ICMP (ICMPv6 for ipv6).
    Icmp,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Kind of peer a rule names.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum RemoteType {
    /// An address or CIDR in `remoteAddress`.
    #[default]
    Address,
    /// The members of `remoteSecurityGroup`.
    SecurityGroup,
}

/// Verdict of a rule.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SgPolicy {
    /// Let the traffic through.
    #[default]
    Allow,
    /// Discard the traffic.
    Drop,
}

/// Observed state of a security group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupStatus {
    /// `Ready` and kind-specific conditions, keyed by type (each may have its own writer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The OVN Port_Group implementing the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_group: Option<String>,
    /// Number of pod ports in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
}
