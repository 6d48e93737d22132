//! `VpcDns`: a DNS server inside one VPC, answering for its tenants only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A per-VPC DNS service. It answers `<svc>.<ns>.svc.<domain>` for the VPC's
/// namespaces only and forwards every other name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "A DNS server inside a VPC that answers for the VPC's namespaces only and forwards the rest.",
    version = "v1",
    kind = "VpcDns",
    plural = "vpcdnses",
    shortname = "vpc-dns",
    category = "vpcnet",
    status = "VpcDnsStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"VPC","type":"string","jsonPath":".spec.vpc"}"#,
    printcolumn = r#"{"name":"Subnet","type":"string","jsonPath":".spec.subnet"}"#,
    printcolumn = r#"{"name":"VIP","type":"string","jsonPath":".status.vip"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VpcDnsSpec {
    /// The VPC served. Immutable.
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("vpc is immutable"))]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub vpc: String,

    /// The VPC subnet the DNS pods run in.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub subnet: String,

    /// The address the VPC's pods reach the servers at. Unset: the
    /// operator's cluster DNS address (the kubelets' `clusterDNS`), which
    /// is what pods use with no configuration; another address must be
    /// named in the pods' `dnsConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::cel::IS_IP).message("vip must be an IP address"))]
    #[schemars(length(max = 64))]
    pub vip: Option<String>,

    /// Number of DNS server pods (1-5, default 2).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,

    /// Upstream resolvers for names outside the cluster domain (`addr` or
    /// `addr:port`, IPv4); unset: the operator's default upstreams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(u, isIP(u) || (u.contains(':') && isIP(u.substring(0, u.lastIndexOf(':'))) && u.substring(u.lastIndexOf(':') + 1).matches('^[0-9]{1,5}$')))").message("upstreams entries must be an IP address or address:port"))]
    pub upstreams: Vec<String>,

    /// The cluster domain (default `cluster.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub domain: Option<String>,
}

fn default_replicas() -> i32 {
    2
}

/// Observed state of a VpcDns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcDnsStatus {
    /// `Ready` and kind-specific conditions, keyed by type (each may have its own writer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The resolver address in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<String>,
    /// DNS pods ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
}
