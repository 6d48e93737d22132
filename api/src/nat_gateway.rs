//! `VpcNatGateway`: a VPC's way out — a gateway pod with one leg in the VPC
//! and one on an external network, doing SNAT/DNAT/FIP for the VPC's EIPs.

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A NAT gateway for one VPC. The operator runs it as a StatefulSet whose pod
/// has `eth0` at `lanIp` in `subnet` and `net1` on the external network, and
/// points the VPC's default route at `lanIp`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "vpcnet.io",
    doc = "A VPC's NAT gateway: a pod with a leg in the VPC and one on an external network, carrying EIPs.",
    version = "v1",
    kind = "VpcNatGateway",
    plural = "vpcnatgateways",
    shortname = "vpc-nat-gw",
    category = "vpcnet",
    status = "VpcNatGatewayStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"VPC","type":"string","jsonPath":".spec.vpc"}"#,
    printcolumn = r#"{"name":"Subnet","type":"string","jsonPath":".spec.subnet"}"#,
    printcolumn = r#"{"name":"LanIP","type":"string","jsonPath":".spec.lanIp"}"#,
    printcolumn = r#"{"name":"ExternalIP","type":"string","jsonPath":".status.externalIp"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.node"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VpcNatGatewaySpec {
    /// The VPC served. Immutable.
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("vpc is immutable"))]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub vpc: String,

    /// The VPC subnet the gateway's `eth0` sits on. Immutable.
    #[x_kube(validation = Rule::new(crate::cel::IMMUTABLE).message("subnet is immutable"))]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub subnet: String,

    /// The gateway's address in `subnet`; the VPC's default route points here.
    /// Must lie inside the subnet and be free.
    #[x_kube(validation = Rule::new(crate::cel::IS_IPV4).message("lanIp must be an IPv4 address"))]
    #[schemars(length(max = 64))]
    pub lan_ip: String,

    /// Node selector as `key: value` strings, e.g. `kubernetes.io/os: linux`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 317)))]
    #[x_kube(validation = Rule::new(format!("self.all(s, {})", crate::cel::IS_SELECTOR_ITEM.replace("self", "s"))).message("selector entries must look like 'key: value'"))]
    pub selector: Vec<String>,

    /// External (provider) subnets the gateway attaches to; the first is used
    /// for `net1` and is the default for EIPs. Defaults to the cluster's
    /// configured external subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 1),
        inner(
            length(max = 253),
            regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
        )
    )]
    pub external_subnets: Vec<String>,

    /// Tolerations for the gateway pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
}

/// Observed state of a NAT gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcNatGatewayStatus {
    /// `Ready` (the gateway pod is running and its agent reports ready) and
    /// kind-specific conditions such as `DefaultRoute`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The gateway pod (namespace/name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The node the gateway pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The gateway's own address on the external network (`net1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ip: Option<String>,
}
