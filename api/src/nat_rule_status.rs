//! The status every NAT rule kind (SNAT, DNAT, FIP) reports: one type, so
//! the three kinds cannot drift apart.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a NAT rule (SNAT, DNAT or FIP).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatRuleStatus {
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
    /// The operator's seal over this decision (see `vpcnet_api::seal`): the
    /// NAT agent programs nothing without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
    /// The NAT agent's seal over its `Programmed` report, for this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_seal: Option<String>,
    /// The gateway the rule is programmed on.
    #[serde(rename = "natGwDp", default, skip_serializing_if = "Option::is_none")]
    pub nat_gw_dp: Option<String>,
}
