//! The operator's arguments (flags and environment) and what each service
//! is told from them.

use clap::Parser;
use vpcnet_dns_service::Settings as DnsSettings;
use vpcnet_nat::context::Settings as NatSettings;
use vpcnet_network::service::DefaultNetwork;
use vpcnet_nodes::Settings as NodeSettings;
use vpcnet_runtime::run::{Options, fallback_identity};

#[derive(Parser, Debug)]
#[command(version, about = "vpcnet operator: tenant VPCs on OVN")]
pub struct Args {
    /// OVN Northbound DB (`unix:/path` or `tcp:host:port`).
    #[arg(
        long,
        env = "OVN_NB_DB",
        default_value = "unix:/var/run/ovn/ovnnb_db.sock"
    )]
    pub ovn_nb: String,
    /// CIDR of the default subnet for pods of unclaimed namespaces.
    #[arg(long, env = "VPCNET_DEFAULT_CIDR", default_value = "10.16.0.0/16")]
    pub default_cidr: String,
    /// Gateway of the default subnet (default: its first address).
    #[arg(long, env = "VPCNET_DEFAULT_GATEWAY")]
    pub default_gateway: Option<String>,
    /// Do not create or use a default VPC and subnet.
    #[arg(long, env = "VPCNET_NO_DEFAULT_NETWORK")]
    pub no_default_network: bool,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "VPCNET_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// The operator's namespace; NAT gateway workloads run here.
    #[arg(long, env = "POD_NAMESPACE", default_value = vpcnet_api::contract::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Image of the NAT gateway agent.
    #[arg(
        long,
        env = "VPCNET_NATGW_IMAGE",
        default_value = "docker.io/local/vpcnet-natgw:latest"
    )]
    pub natgw_image: String,
    /// Pull policy of the NAT gateway agent image.
    #[arg(long, env = "VPCNET_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    pub image_pull_policy: String,
    /// External subnet for gateways that name none.
    #[arg(
        long,
        env = "VPCNET_EXTERNAL_SUBNET",
        default_value = "ovn-vpc-external-network"
    )]
    pub external_subnet: String,
    /// Image of the per-VPC DNS servers.
    #[arg(
        long,
        env = "VPCNET_DNS_IMAGE",
        default_value = "docker.io/local/vpcnet-dns:latest"
    )]
    pub dns_image: String,
    /// The kubelets' `clusterDNS` address: inside every VPC it leads to that
    /// VPC's own DNS servers. Unset: no default VpcDns, and a VpcDns must
    /// name its `vip`.
    #[arg(long, env = "VPCNET_CLUSTER_DNS")]
    pub cluster_dns: Option<std::net::IpAddr>,
    /// Upstream resolvers of VpcDnses that name none (comma-separated
    /// `ip` or `ip:port`).
    #[arg(long, env = "VPCNET_DNS_UPSTREAMS", value_delimiter = ',')]
    pub dns_upstreams: Vec<String>,
    /// The cluster's Service range (its reverse names are answered by the
    /// VPC's DNS servers, never forwarded).
    #[arg(long, env = "VPCNET_SERVICE_CIDR", default_value = "10.96.0.0/12")]
    pub service_cidr: ipnet::IpNet,
    /// Image of the CNI DaemonSet the operator runs on every node.
    #[arg(
        long,
        env = "VPCNET_CNI_IMAGE",
        default_value = "docker.io/local/vpcnet-cni:latest"
    )]
    pub cni_image: String,
    /// Each node's probe addresses (the kubelet's path into pods of VPCs);
    /// unset: no probe path.
    #[arg(long, env = "VPCNET_PROBE_CIDR")]
    pub probe_cidr: Option<String>,
    /// The kubelet's cgroup v2 path, the only one the probe path admits.
    #[arg(long, env = "VPCNET_PROBE_KUBELET_CGROUP")]
    pub probe_kubelet_cgroup: Option<String>,
    /// The Northbound database as the nodes' agents reach it (default: the
    /// operator's own `--ovn-nb`).
    #[arg(long, env = "VPCNET_NODE_OVN_NB_DB")]
    pub node_ovn_nb: Option<String>,
    /// Do not create the CNI DaemonSet (deploy it yourself).
    #[arg(long, env = "VPCNET_NO_CNI_DAEMONSET")]
    pub no_cni_daemonset: bool,
    /// This operator's name in the leader Lease (the pod's name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader's Lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// Seconds between garbage collections of orphaned OVN rows.
    #[arg(long, default_value_t = 60)]
    pub gc_interval: u64,
    /// Longest wait at shutdown for reconciles in flight.
    #[arg(long, default_value_t = 20)]
    pub drain_seconds: u64,
    /// OTLP/gRPC endpoint to export traces to (`http://collector:4317`);
    /// unset: no traces are exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl Args {
    /// The runtime's options.
    pub fn options(&self) -> Options {
        Options {
            ovn_nb: self.ovn_nb.clone(),
            namespace: self.namespace.clone(),
            identity: self.identity.clone().unwrap_or_else(fallback_identity),
            lease_seconds: self.lease_seconds,
            gc_interval: self.gc_interval,
            metrics_addr: self.metrics_addr.clone(),
            drain_seconds: self.drain_seconds,
        }
    }

    /// The default network, unless turned off.
    pub fn default_network(&self) -> Option<DefaultNetwork> {
        (!self.no_default_network).then(|| DefaultNetwork {
            cidr: self.default_cidr.clone(),
            gateway: self.default_gateway.clone(),
        })
    }

    /// The subnet of namespaces no Subnet claims, if there is a default network.
    pub fn default_subnet(&self) -> Option<String> {
        (!self.no_default_network).then(|| vpcnet_api::contract::DEFAULT_SUBNET.to_string())
    }

    /// The NAT service's settings.
    pub fn nat(&self) -> NatSettings {
        NatSettings {
            natgw_image: self.natgw_image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            external_subnet: self.external_subnet.clone(),
        }
    }

    /// The dns service's settings.
    pub fn dns(&self) -> DnsSettings {
        DnsSettings {
            image: self.dns_image.clone(),
            pull_policy: self.image_pull_policy.clone(),
            cluster_dns: self.cluster_dns,
            upstreams: self.dns_upstreams.clone(),
            service_cidr: Some(self.service_cidr),
            default_subnet: self.default_subnet(),
        }
    }

    /// The nodes service's settings, unless it is turned off.
    pub fn nodes(&self) -> Option<NodeSettings> {
        (!self.no_cni_daemonset).then(|| NodeSettings {
            image: self.cni_image.clone(),
            pull_policy: self.image_pull_policy.clone(),
            probe_cidr: self.probe_cidr.clone().filter(|s| !s.is_empty()),
            kubelet_cgroup: self.probe_kubelet_cgroup.clone().filter(|s| !s.is_empty()),
            ovn_nb: self
                .node_ovn_nb
                .clone()
                .unwrap_or_else(|| self.ovn_nb.clone()),
        })
    }
}
