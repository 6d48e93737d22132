//! `Vpc`: a tenant's isolated network, realised as one OVN logical router.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A Virtual Private Cloud: an isolated layer-3 domain whose subnets may reuse
/// address space that other VPCs use.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "A tenant's isolated network (one OVN logical router); subnets of different VPCs may overlap.",
    version = "v1",
    kind = "Vpc",
    plural = "vpcs",
    shortname = "vpc",
    category = "vpcnet",
    status = "VpcStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Router","type":"string","jsonPath":".status.router"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".spec.namespaces"}"#,
    printcolumn = r#"{"name":"Subnets","type":"string","jsonPath":".status.subnets"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VpcSpec {
    /// Namespaces whose tenants own this VPC: namespaced objects (EIPs, NAT
    /// rules, load balancers, security groups) in these namespaces may use the
    /// VPC's gateway and subnets; objects elsewhere are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub namespaces: Vec<String>,

    /// Static routes of the VPC's router. A `0.0.0.0/0` route here takes
    /// precedence over the default route a NAT gateway would install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub static_routes: Vec<StaticRoute>,

    /// Policy routes of the VPC's router, evaluated by priority before the
    /// routing table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub policy_routes: Vec<PolicyRoute>,
}

/// Which address of a packet a static route matches.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum RoutePolicy {
    /// Match the destination address (ordinary routing).
    #[default]
    #[serde(rename = "policyDst")]
    Dst,
    /// Match the source address (source-based routing).
    #[serde(rename = "policySrc")]
    Src,
}

/// A static route: packets whose destination (or source) falls in `cidr` are
/// forwarded to `nextHopIP`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!isCIDR(self.cidr) || !isIP(self.nextHopIP) || cidr(self.cidr).ip().family() == ip(self.nextHopIP).family()").message("nextHopIP must be of the same address family as cidr").field_path(".nextHopIP"))]
pub struct StaticRoute {
    /// Prefix the route matches, e.g. `0.0.0.0/0`.
    #[x_kube(validation = Rule::new(crate::cel::IS_NETWORK_CIDR).message("cidr must be a network CIDR such as 10.0.0.0/16 (host bits zero)"))]
    #[schemars(length(max = 64))]
    pub cidr: String,

    /// Next hop address, of the same address family as `cidr`; must be
    /// reachable from one of the VPC's subnets.
    #[serde(rename = "nextHopIP")]
    #[x_kube(validation = Rule::new(crate::cel::IS_IP).message("nextHopIP must be an IP address"))]
    #[schemars(length(max = 64))]
    pub next_hop_ip: String,

    /// Match on destination (`policyDst`, default) or source (`policySrc`).
    #[serde(default)]
    pub policy: RoutePolicy,
}

/// What a policy route does with a matching packet.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Forward normally.
    #[default]
    Allow,
    /// Discard.
    Drop,
    /// Forward to `nextHopIP` instead of the routing table's choice.
    Reroute,
}

/// A policy route: an OVN logical router policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.action == 'reroute' ? has(self.nextHopIP) : !has(self.nextHopIP)").message("nextHopIP is required when action is reroute and not allowed otherwise").field_path(".nextHopIP"))]
#[x_kube(validation = Rule::new("!has(self.nextHopIP) || !isIP(self.nextHopIP) || (ip(self.nextHopIP).family() == 4 ? !self.match.matches('(^|[^A-Za-z0-9_])(ip|icmp)6([^A-Za-z0-9_]|$)') : !self.match.matches('(^|[^A-Za-z0-9_])(ip|icmp)4([^A-Za-z0-9_]|$)'))").message("nextHopIP must be of the address family the match tests (ip4 or ip6)").field_path(".nextHopIP"))]
pub struct PolicyRoute {
    /// Higher priorities are evaluated first (0..32767).
    #[schemars(range(min = 0, max = 32767))]
    pub priority: i32,

    /// An OVN match expression, e.g. `ip4.src == 10.0.1.0/24 && tcp.dst == 80`:
    /// field names, addresses, numbers, the operators `== != < <= > >= ! && ||`
    /// and parentheses. Quoted strings, `;`, `{}` sets and `$`/`@` references
    /// are not accepted.
    #[serde(rename = "match")]
    #[x_kube(validation = Rule::new(crate::cel::IS_SAFE_OVN_MATCH).message("match may only contain letters, digits, spaces and _ . : / = ! < > & | ( ) -; quotes, semicolons and braces are not allowed"))]
    #[schemars(length(min = 1, max = 1024))]
    pub match_: String,

    /// `allow`, `drop` or `reroute`.
    pub action: PolicyAction,

    /// Next hop for `reroute`, of the address family the match tests.
    #[serde(rename = "nextHopIP", default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IS_IP).message("nextHopIP must be an IP address"))]
    #[schemars(length(max = 64))]
    pub next_hop_ip: Option<String>,
}

/// Observed state of a VPC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcStatus {
    /// `Ready` and kind-specific conditions, keyed by type (each may have its own writer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the OVN Logical_Router that implements the VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// Subnets attached to the VPC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// The address the VPC's default route points at, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_gateway: Option<String>,
}
