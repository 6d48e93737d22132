//! `IptablesFIPRule`: a floating IP, an EIP mapped 1:1 to one inside address.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A floating IP: every port of the EIP reaches `internalIp`, and
/// `internalIp` leaves the VPC with the EIP as source. The EIP may not be
/// used by any other rule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "A floating IP: the EIP maps 1:1 (all ports, both directions) to one address inside the VPC.",
    version = "v1",
    kind = "IptablesFIPRule",
    plural = "iptablesfiprules",
    shortname = "fip",
    category = "vpcnet",
    namespaced,
    status = "IptablesFIPRuleStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"EIP","type":"string","jsonPath":".spec.eip"}"#,
    printcolumn = r#"{"name":"V4IP","type":"string","jsonPath":".status.v4ip"}"#,
    printcolumn = r#"{"name":"InternalIP","type":"string","jsonPath":".spec.internalIp"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IptablesFIPRuleSpec {
    /// Name of an IptablesEIP in the same namespace, used by nothing else.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub eip: String,

    /// The address inside the VPC the EIP maps to.
    #[x_kube(validation = Rule::new(crate::cel::IS_IP).message("internalIp must be an IPv4 address"))]
    #[x_kube(validation = Rule::new(crate::cel::NOT_IPV6_IP).message("IPv6 is not supported yet; internalIp must be IPv4"))]
    #[schemars(length(max = 64))]
    pub internal_ip: String,
}

/// Observed state of a FIP rule.
pub type IptablesFIPRuleStatus = crate::nat_rule_status::NatRuleStatus;
