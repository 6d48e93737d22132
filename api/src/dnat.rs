//! `IptablesDnatRule`: EIP:port forwarded to an address inside the VPC.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Destination NAT: connections to the EIP on `externalPort` are forwarded to
/// `internalIp:internalPort`. Several rules with the same EIP, protocol and
/// port that are all `shared` spread connections across their backends.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "Destination NAT: EIP:externalPort is forwarded to internalIp:internalPort inside the VPC.",
    version = "v1",
    kind = "IptablesDnatRule",
    plural = "iptablesdnatrules",
    shortname = "dnat",
    category = "vpcnet",
    namespaced,
    status = "IptablesDnatRuleStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"EIP","type":"string","jsonPath":".spec.eip"}"#,
    printcolumn = r#"{"name":"V4IP","type":"string","jsonPath":".status.v4ip"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.protocol"}"#,
    printcolumn = r#"{"name":"ExternalPort","type":"string","jsonPath":".spec.externalPort"}"#,
    printcolumn = r#"{"name":"InternalIP","type":"string","jsonPath":".spec.internalIp"}"#,
    printcolumn = r#"{"name":"InternalPort","type":"string","jsonPath":".spec.internalPort"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.internalPort) || self.externalPort.split('-').size() != 2 || self.internalPort.split('-').size() != 2 || !self.externalPort.matches('^[0-9]+-[0-9]+$') || !self.internalPort.matches('^[0-9]+-[0-9]+$') || int(self.externalPort.split('-')[1]) - int(self.externalPort.split('-')[0]) == int(self.internalPort.split('-')[1]) - int(self.internalPort.split('-')[0])").message("internalPort range must be as long as the externalPort range").field_path(".internalPort"))]
#[x_kube(validation = Rule::new("!has(self.internalPort) || self.internalPort.split('-').size() == 1 || self.externalPort.split('-').size() == 2").message("internalPort may only be a range when externalPort is a range").field_path(".internalPort"))]
pub struct IptablesDnatRuleSpec {
    /// Name of an IptablesEIP in the same namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub eip: String,

    /// Port on the EIP, `1`-`65535`, or a range `lo-hi`, as a string (`'8888'`).
    #[x_kube(validation = Rule::new(crate::cel::IS_PORT_OR_RANGE).message("externalPort must be a port 1-65535 or an ascending range lo-hi"))]
    #[schemars(length(min = 1, max = 11))]
    pub external_port: String,

    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: L4Protocol,

    /// Destination inside the VPC.
    #[x_kube(validation = Rule::new(crate::cel::IS_IP).message("internalIp must be an IPv4 address"))]
    #[x_kube(validation = Rule::new(crate::cel::NOT_IPV6_IP).message("IPv6 is not supported yet; internalIp must be IPv4"))]
    #[schemars(length(max = 64))]
    pub internal_ip: String,

    /// Port on `internalIp`, `1`-`65535` or a range as long as `externalPort`'s;
    /// defaults to `externalPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IS_PORT_OR_RANGE).message("internalPort must be a port 1-65535 or an ascending range lo-hi"))]
    #[schemars(length(min = 1, max = 11))]
    pub internal_port: Option<String>,

    /// Allow other `shared` rules on the same EIP, protocol and port; new
    /// connections are then spread across all their backends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

/// Transport protocol of a port-based NAT rule.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// Observed state of a DNAT rule.
pub type IptablesDnatRuleStatus = crate::nat_rule_status::NatRuleStatus;
