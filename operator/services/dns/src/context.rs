//! What the dns service's reconcilers share.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use vpcnet_api::{Subnet, Vpc, VpcDns};
use vpcnet_runtime::Runtime;

/// How the operator was told to run DNS servers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The `vpcnet-dns` image.
    pub image: String,
    /// Its pull policy.
    pub pull_policy: String,
    /// The kubelets' `clusterDNS` address: every VPC's resolver address
    /// unless a VpcDns names its own.
    pub cluster_dns: Option<IpAddr>,
    /// Upstreams of VpcDnses that name none.
    pub upstreams: Vec<String>,
    /// The cluster's Service range (its reverse names are answered, never
    /// forwarded).
    pub service_cidr: Option<IpNet>,
    /// The subnet for pods of namespaces no Subnet claims (`None`: no
    /// default network, and no default VpcDns).
    pub default_subnet: Option<String>,
}

/// The dns service's state.
pub struct Ctx {
    /// The shared runtime.
    pub rt: Arc<Runtime>,
    /// How to run servers.
    pub settings: Settings,
    /// VpcDns objects.
    pub dnses: Store<VpcDns>,
    /// Vpc objects.
    pub vpcs: Store<Vpc>,
    /// Subnet objects (which namespaces a VPC has).
    pub subnets: Store<Subnet>,
    /// Namespaces.
    pub namespaces: Store<Namespace>,
    /// Services.
    pub services: Store<Service>,
    /// EndpointSlices (headless Services' endpoints).
    pub slices: Store<EndpointSlice>,
    /// Pods (the servers, and the VPC addresses of headless endpoints).
    pub pods: Store<Pod>,
    /// The servers' Deployments (their ready count).
    pub deployments: Store<Deployment>,
}

vpcnet_runtime::service_context!(Ctx);

impl Ctx {
    /// Waits until every cache a reconcile reads holds its first full list:
    /// a zone built from an empty Service cache would be served as the
    /// truth.
    pub async fn caches_ready(&self) {
        use vpcnet_runtime::kinds::wait_ready;
        wait_ready(&self.dnses).await;
        wait_ready(&self.vpcs).await;
        wait_ready(&self.subnets).await;
        wait_ready(&self.namespaces).await;
        wait_ready(&self.services).await;
        wait_ready(&self.slices).await;
        wait_ready(&self.pods).await;
        wait_ready(&self.deployments).await;
    }
}
