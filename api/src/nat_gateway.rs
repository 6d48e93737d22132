//! `VpcNatGateway`: a VPC's way out — a gateway pod with one leg in the VPC
//! and one on an external network, doing SNAT/DNAT/FIP for the VPC's EIPs.

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A NAT gateway for one VPC. The operator runs it as a StatefulSet whose pod
/// has `eth0` at `lanIp` in `subnet` and `net1` on the external network, and
/// points the VPC's default route at `lanIp`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
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

    /// Gateway pods: 1, or 2 for an active and a standby on different nodes.
    /// With 2, `lanIp` is a virtual address held by whichever is active; the
    /// pods' own LAN addresses come from the subnet's pool.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self == 1 || self == 2").message("replicas must be 1 or 2"))]
    pub replicas: i32,

    /// With 2 replicas: how long the active may go without renewing its
    /// Lease before the standby takes over, in milliseconds. Failover takes
    /// about this long after the active dies; shorter reacts faster but an
    /// API server slower than two thirds of it takes the active's addresses
    /// down. At least 1500: the active's addresses live whole seconds (the
    /// kernel's unit) past its last renewal and must be gone before the
    /// standby may take over.
    #[serde(default = "default_lease_duration_ms")]
    #[schemars(range(min = 1500, max = 60000))]
    pub lease_duration_ms: i32,
}

/// One gateway pod unless asked for two.
pub fn default_replicas() -> i32 {
    1
}

/// 1.5 s: failover well under 2 s, and a margin of 0.5 s for the old active
/// to take its addresses down before the standby may add them.
pub fn default_lease_duration_ms() -> i32 {
    1500
}

impl Default for VpcNatGatewaySpec {
    fn default() -> Self {
        VpcNatGatewaySpec {
            vpc: String::new(),
            subnet: String::new(),
            lan_ip: String::new(),
            selector: Vec::new(),
            external_subnets: Vec::new(),
            tolerations: Vec::new(),
            replicas: default_replicas(),
            lease_duration_ms: default_lease_duration_ms(),
        }
    }
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
    /// Each replica's own external address, by ordinal (with one replica,
    /// `externalIp` alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// With 2 replicas: which pod is active, as its Lease says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveReplica>,
    /// With 2 replicas: the last time the active role changed pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<Failover>,
}

/// The active replica of a two-replica gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveReplica {
    /// The active pod (namespace/name).
    pub pod: String,
    /// Its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When it took the Lease (RFC 3339, microseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// A change of the active replica.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// When the new active took the Lease.
    pub time: String,
    /// The pod that held it before (namespace/name), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The pod that holds it now.
    pub to: String,
    /// Why: `LeaseExpired` (the active stopped renewing: it, its node or
    /// its link died), `Released` (it stepped down: shutdown, handover, lost
    /// API) or `Initial`.
    pub cause: String,
}
