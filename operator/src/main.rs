//! `vpcnet-operator`: the shared runtime with every service registered.
//! Adding a service is one line in `services` below.

use std::sync::Arc;

use clap::Parser;
use vpcnet_dns_service::{Dns, Settings as DnsSettings};
use vpcnet_lb::Lb;
use vpcnet_nat::{Nat, context::Settings};
use vpcnet_network::{Network, service::DefaultNetwork};
use vpcnet_nodes::{Nodes, Settings as NodeSettings};
use vpcnet_runtime::run::{Options, fallback_identity, lead};
use vpcnet_runtime::{Result, Service};
use vpcnet_security::Security;

#[derive(Parser, Debug)]
#[command(version, about = "vpcnet operator: tenant VPCs on OVN")]
struct Args {
    /// OVN Northbound DB (`unix:/path` or `tcp:host:port`).
    #[arg(
        long,
        env = "OVN_NB_DB",
        default_value = "unix:/var/run/ovn/ovnnb_db.sock"
    )]
    ovn_nb: String,
    /// CIDR of the default subnet for pods of unclaimed namespaces.
    #[arg(long, env = "VPCNET_DEFAULT_CIDR", default_value = "10.16.0.0/16")]
    default_cidr: String,
    /// Gateway of the default subnet (default: its first address).
    #[arg(long, env = "VPCNET_DEFAULT_GATEWAY")]
    default_gateway: Option<String>,
    /// Do not create or use a default VPC and subnet.
    #[arg(long, env = "VPCNET_NO_DEFAULT_NETWORK")]
    no_default_network: bool,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "VPCNET_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// The operator's namespace; NAT gateway workloads run here.
    #[arg(long, env = "POD_NAMESPACE", default_value = vpcnet_api::contract::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Image of the NAT gateway agent.
    #[arg(
        long,
        env = "VPCNET_NATGW_IMAGE",
        default_value = "docker.io/local/vpcnet-natgw:latest"
    )]
    natgw_image: String,
    /// Pull policy of the NAT gateway agent image.
    #[arg(long, env = "VPCNET_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    image_pull_policy: String,
    /// External subnet for gateways that name none.
    #[arg(
        long,
        env = "VPCNET_EXTERNAL_SUBNET",
        default_value = "ovn-vpc-external-network"
    )]
    external_subnet: String,
    /// Image of the per-VPC DNS servers.
    #[arg(
        long,
        env = "VPCNET_DNS_IMAGE",
        default_value = "docker.io/local/vpcnet-dns:latest"
    )]
    dns_image: String,
    /// The kubelets' `clusterDNS` address: inside every VPC it leads to that
    /// VPC's own DNS servers. Unset: no default VpcDns, and a VpcDns must
    /// name its `vip`.
    #[arg(long, env = "VPCNET_CLUSTER_DNS")]
    cluster_dns: Option<std::net::IpAddr>,
    /// Upstream resolvers of VpcDnses that name none (comma-separated
    /// `ip` or `ip:port`).
    #[arg(long, env = "VPCNET_DNS_UPSTREAMS", value_delimiter = ',')]
    dns_upstreams: Vec<String>,
    /// The cluster's Service range (its reverse names are answered by the
    /// VPC's DNS servers, never forwarded).
    #[arg(long, env = "VPCNET_SERVICE_CIDR", default_value = "10.96.0.0/12")]
    service_cidr: ipnet::IpNet,
    /// Image of the CNI DaemonSet the operator runs on every node.
    #[arg(
        long,
        env = "VPCNET_CNI_IMAGE",
        default_value = "docker.io/local/vpcnet-cni:latest"
    )]
    cni_image: String,
    /// Each node's probe addresses (the kubelet's path into pods of VPCs);
    /// unset: no probe path.
    #[arg(long, env = "VPCNET_PROBE_CIDR")]
    probe_cidr: Option<String>,
    /// The kubelet's cgroup v2 path, the only one the probe path admits.
    #[arg(long, env = "VPCNET_PROBE_KUBELET_CGROUP")]
    probe_kubelet_cgroup: Option<String>,
    /// The Northbound database as the nodes' agents reach it (default: the
    /// operator's own `--ovn-nb`).
    #[arg(long, env = "VPCNET_NODE_OVN_NB_DB")]
    node_ovn_nb: Option<String>,
    /// Do not create the CNI DaemonSet (deploy it yourself).
    #[arg(long, env = "VPCNET_NO_CNI_DAEMONSET")]
    no_cni_daemonset: bool,
    /// This operator's name in the leader Lease (the pod's name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a leader's Lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Seconds between garbage collections of orphaned OVN rows.
    #[arg(long, default_value_t = 60)]
    gc_interval: u64,
    /// Longest wait at shutdown for reconciles in flight.
    #[arg(long, default_value_t = 20)]
    drain_seconds: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Container logs are files: colour codes only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let node_settings = NodeSettings {
        image: args.cni_image,
        pull_policy: args.image_pull_policy.clone(),
        probe_cidr: args.probe_cidr.filter(|s| !s.is_empty()),
        kubelet_cgroup: args.probe_kubelet_cgroup.filter(|s| !s.is_empty()),
        ovn_nb: args.node_ovn_nb.unwrap_or_else(|| args.ovn_nb.clone()),
    };
    let leading = lead(Options {
        ovn_nb: args.ovn_nb,
        namespace: args.namespace,
        identity: args.identity.unwrap_or_else(fallback_identity),
        lease_seconds: args.lease_seconds,
        gc_interval: args.gc_interval,
        metrics_addr: args.metrics_addr,
        drain_seconds: args.drain_seconds,
    })
    .await?;
    let rt = &leading.rt;
    let default = (!args.no_default_network).then_some(DefaultNetwork {
        cidr: args.default_cidr,
        gateway: args.default_gateway,
    });
    let default_subnet = default
        .is_some()
        .then(|| vpcnet_api::contract::DEFAULT_SUBNET.to_string());
    let dns = Dns::new(
        rt,
        DnsSettings {
            image: args.dns_image,
            pull_policy: args.image_pull_policy.clone(),
            cluster_dns: args.cluster_dns,
            upstreams: args.dns_upstreams,
            service_cidr: Some(args.service_cidr),
            default_subnet: default_subnet.clone(),
        },
    );
    let mut services: Vec<Arc<dyn Service>> = vec![
        Arc::new(Network::new(rt, default).await?),
        Arc::new(Lb::new(rt, default_subnet).await?),
        Arc::new(Security::new(rt).await?),
        Arc::new(dns),
        Arc::new(Nat::new(
            rt,
            Settings {
                natgw_image: args.natgw_image,
                image_pull_policy: args.image_pull_policy,
                external_subnet: args.external_subnet,
            },
        )),
    ];
    if !args.no_cni_daemonset {
        services.push(Arc::new(Nodes::new(rt, node_settings)));
    }
    leading.run(services).await
}
