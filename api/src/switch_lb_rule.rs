//! `SwitchLBRule`: a tenant-chosen VIP load-balancing to pods or addresses.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A load balancer on the VPC's switches: `vip:port` is spread over the pods
/// matching `selector` (through a headless Service and its EndpointSlices) or
/// over fixed `endpoints`. Exactly one of the two is given.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "A load balancer: a tenant-chosen VIP:port spread over selected pods or fixed endpoints.",
    version = "v1",
    kind = "SwitchLBRule",
    plural = "switchlbrules",
    shortname = "slr",
    category = "vpcnet",
    namespaced,
    status = "SwitchLBRuleStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"VIP","type":"string","jsonPath":".spec.vip"}"#,
    printcolumn = r#"{"name":"Ports","type":"string","jsonPath":".spec.ports[*].port"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".status.service"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.selector) != has(self.endpoints)").message("exactly one of selector and endpoints must be set").field_path(".selector"))]
pub struct SwitchLBRuleSpec {
    /// The virtual address, inside one of the VPC's subnets.
    #[x_kube(validation = Rule::new(crate::cel::IS_IP).message("vip must be an IP address"))]
    #[schemars(length(max = 64))]
    pub vip: String,

    /// Pods (in this namespace) behind the VIP, as `key: value` label pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 317)))]
    #[x_kube(validation = Rule::new("self.all(s, s.matches('^[A-Za-z0-9./_-]+: *[A-Za-z0-9._-]*$'))").message("selector entries must look like 'key: value'"))]
    pub selector: Option<Vec<String>>,

    /// Fixed backend addresses, instead of a selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(a, isIP(a))").message("endpoints must be IP addresses"))]
    pub endpoints: Option<Vec<String>>,

    /// `ClientIP` keeps a client on one backend; `None` (default) does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,

    /// Ports served on the VIP.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))").message("ports must not repeat a port+protocol pair"))]
    pub ports: Vec<LbPort>,
}

/// One port of a SwitchLBRule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LbPort {
    /// A name for the port (e.g. `http`).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Port on the VIP (1-65535).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Port on the backends (1-65535); defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<i32>,
    /// `TCP` (default) or `UDP`.
    #[serde(default)]
    pub protocol: LbProtocol,
}

/// Transport protocol of a load-balanced port (Service spelling).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum LbProtocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// Session affinity of a SwitchLBRule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SessionAffinity {
    /// Keep a client on the backend it first reached.
    ClientIP,
    /// Balance every connection independently.
    None,
}

/// Observed state of a SwitchLBRule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchLBRuleStatus {
    /// `Ready` and kind-specific conditions, keyed by type (each may have its own writer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The headless Service that tracks the backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Backends currently programmed, as `ip:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
}
