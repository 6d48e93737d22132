//! `IptablesEIP`: an elastic IP on a NAT gateway's external network.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An elastic IP held by a tenant. It lives on the gateway named by `natGwDp`
/// and is used by SNAT, DNAT and FIP rules in the same namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "An elastic IP on a NAT gateway's external network, held by a tenant namespace.",
    version = "v1",
    kind = "IptablesEIP",
    plural = "iptableseips",
    shortname = "eip",
    category = "vpcnet",
    namespaced,
    status = "IptablesEIPStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"IP","type":"string","jsonPath":".status.ip"}"#,
    printcolumn = r#"{"name":"Gateway","type":"string","jsonPath":".spec.natGwDp"}"#,
    printcolumn = r#"{"name":"Used-By","type":"string","jsonPath":".status.nat"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.v4ip) || (has(self.v4ip) && self.v4ip == oldSelf.v4ip)").message("v4ip cannot be changed or removed once set").field_path(".v4ip"))]
pub struct IptablesEIPSpec {
    /// Name of the VpcNatGateway that carries this EIP. Immutable.
    #[serde(rename = "natGwDp")]
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("natGwDp is immutable"))]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub nat_gw_dp: String,

    /// A specific address to hold; allocated from the external subnet when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IS_IPV4).message("v4ip must be an IPv4 address"))]
    #[schemars(length(max = 64))]
    pub v4ip: Option<String>,

    /// The external subnet to take the address from; defaults to the
    /// gateway's first external subnet. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("externalSubnet is immutable"))]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub external_subnet: Option<String>,
}

/// Observed state of an EIP.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IptablesEIPStatus {
    /// `Ready` and kind-specific conditions, keyed by type (each may have its own writer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The address held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The gateway the address is configured on.
    #[serde(rename = "natGwDp", default, skip_serializing_if = "Option::is_none")]
    pub nat_gw_dp: Option<String>,
    /// The operator's seal over this decision (see `vpcnet_api::seal`): the
    /// NAT agent programs nothing without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
    /// The NAT agent's seal over its `Programmed` report, for this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_seal: Option<String>,
    /// The rules using this EIP, as `<kind>/<name>` (e.g. `dnat/dnat01`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<String>,
}
