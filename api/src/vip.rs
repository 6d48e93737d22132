//! `Vip`: a reserved address in a subnet, for a load balancer or a workload.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A reserved address. The operator allocates it (or checks `v4ip`) in
/// `subnet` so no pod gets it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "A reserved address in a subnet that no pod will be given.",
    version = "v1",
    kind = "Vip",
    plural = "vips",
    shortname = "vip",
    category = "vpcnet",
    namespaced,
    status = "VipStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Subnet","type":"string","jsonPath":".spec.subnet"}"#,
    printcolumn = r#"{"name":"V4IP","type":"string","jsonPath":".status.v4ip"}"#,
    printcolumn = r#"{"name":"MAC","type":"string","jsonPath":".status.mac"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.v4ip) || (has(self.v4ip) && self.v4ip == oldSelf.v4ip)").message("v4ip cannot be changed or removed once set").field_path(".v4ip"))]
pub struct VipSpec {
    /// The subnet to reserve the address in; must belong to this namespace's VPC. Immutable.
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("subnet is immutable"))]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub subnet: String,

    /// A specific address; allocated when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IS_IPV4).message("v4ip must be an IPv4 address"))]
    #[schemars(length(max = 64))]
    pub v4ip: Option<String>,

    /// A specific MAC address (`aa:bb:cc:dd:ee:ff`); generated when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"))]
    pub mac_address: Option<String>,
}

/// Observed state of a Vip.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VipStatus {
    /// `Ready` and kind-specific conditions, keyed by type (each may have its own writer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The reserved address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v4ip: Option<String>,
    /// The MAC address bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The operator's seal over the address: a `v4ip` written by anyone else
    /// reserves nothing when the operator rebuilds its address state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}
