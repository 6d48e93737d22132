//! What the lb service's reconcilers share.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use vpcnet_api::{Subnet, SwitchLBRule, Vip, Vpc};
use vpcnet_runtime::Runtime;

use crate::view::LbView;

/// The lb service's state.
pub struct Ctx {
    /// The shared runtime.
    pub rt: Arc<Runtime>,
    /// Vpc objects.
    pub vpcs: Store<Vpc>,
    /// Subnet objects.
    pub subnets: Store<Subnet>,
    /// Services.
    pub services: Store<Service>,
    /// EndpointSlices.
    pub slices: Store<EndpointSlice>,
    /// Vips.
    pub vips: Store<Vip>,
    /// Pods (their VPC addresses, for endpoints).
    pub pods: Store<Pod>,
    /// SwitchLBRules.
    pub rules: Store<SwitchLBRule>,
    /// The subnet for pods of namespaces no Subnet claims.
    pub default_subnet: Option<String>,
    /// The Northbound rows it plans against.
    pub view: LbView,
}

vpcnet_runtime::service_context!(Ctx);

impl Ctx {
    /// Waits until every cache a reconcile reads holds its first full list:
    /// a Service judged against an empty Subnet cache would look VPC-less
    /// and lose its rows (to be written again moments later) at every start.
    pub async fn caches_ready(&self) {
        use vpcnet_runtime::kinds::wait_ready;
        wait_ready(&self.vpcs).await;
        wait_ready(&self.subnets).await;
        wait_ready(&self.services).await;
        wait_ready(&self.slices).await;
        wait_ready(&self.vips).await;
        wait_ready(&self.rules).await;
        wait_ready(&self.pods).await;
    }
}
