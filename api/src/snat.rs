//! `IptablesSnatRule`: traffic from inside the VPC leaves with an EIP as source.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Source NAT: packets from `internalCIDR` leaving through the gateway get
/// the EIP as their source address. Longer prefixes win over shorter ones.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "Source NAT: traffic from internalCIDR leaves the VPC with the EIP as source.",
    version = "v1",
    kind = "IptablesSnatRule",
    plural = "iptablessnatrules",
    shortname = "snat",
    category = "vpcnet",
    namespaced,
    status = "IptablesSnatRuleStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"EIP","type":"string","jsonPath":".spec.eip"}"#,
    printcolumn = r#"{"name":"V4IP","type":"string","jsonPath":".status.v4ip"}"#,
    printcolumn = r#"{"name":"InternalCIDR","type":"string","jsonPath":".spec.internalCIDR"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IptablesSnatRuleSpec {
    /// Name of an IptablesEIP in the same namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub eip: String,

    /// Source range translated: an IPv4 CIDR (`10.0.1.0/24`) or one address,
    /// inside the gateway's VPC.
    #[serde(rename = "internalCIDR")]
    #[x_kube(validation = Rule::new("isIP(self) || (isCIDR(self) && cidr(self) == cidr(self).masked())").message("internalCIDR must be an IP address or a network CIDR such as 10.0.1.0/24 (host bits zero)"))]
    #[x_kube(validation = Rule::new(crate::cel::NOT_IPV6_IP_OR_CIDR).message("IPv6 is not supported yet; internalCIDR must be IPv4"))]
    #[schemars(length(max = 64))]
    pub internal_cidr: String,
}

/// Observed state of an SNAT rule.
pub type IptablesSnatRuleStatus = crate::nat_rule_status::NatRuleStatus;
