//! `IptablesSnatRule`: traffic from inside the VPC leaves with an EIP as source.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
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

    /// Source range translated: a CIDR (`10.0.1.0/24`) or one address, inside
    /// the gateway's VPC.
    #[serde(rename = "internalCIDR")]
    #[x_kube(validation = Rule::new("isIP(self) || (isCIDR(self) && cidr(self) == cidr(self).masked())").message("internalCIDR must be an IP address or a network CIDR such as 10.0.1.0/24 (host bits zero)"))]
    #[schemars(length(max = 64))]
    pub internal_cidr: String,
}

/// Observed state of an SNAT rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IptablesSnatRuleStatus {
    /// `Ready` and kind-specific conditions, keyed by type (each may have its own writer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The EIP's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v4ip: Option<String>,
    /// The gateway the rule is programmed on.
    #[serde(rename = "natGwDp", default, skip_serializing_if = "Option::is_none")]
    pub nat_gw_dp: Option<String>,
}
