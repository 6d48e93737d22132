//! What the security service's reconcilers share.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc::UnboundedSender;
use vpcnet_api::{SecurityGroup, Subnet};
use vpcnet_runtime::Runtime;

use crate::view::SgView;

/// The security service's state.
pub struct Ctx {
    /// The shared runtime.
    pub rt: Arc<Runtime>,
    /// SecurityGroups.
    pub groups: Store<SecurityGroup>,
    /// Pods (their annotations; their ports are in the view).
    pub pods: Store<Pod>,
    /// Subnets (their gateways).
    pub subnets: Store<Subnet>,
    /// The Northbound rows it plans against.
    pub view: SgView,
    /// Asks for a group's reconcile (its member count changed).
    pub group_nudge: UnboundedSender<ObjectRef<SecurityGroup>>,
    /// Asks for a pod's reconcile (a group it names got its Port_Group).
    pub pod_nudge: UnboundedSender<ObjectRef<Pod>>,
}

vpcnet_runtime::service_context!(Ctx);

impl Ctx {
    /// Waits until every cache a reconcile reads holds its first full list:
    /// a pod judged against an empty group cache would look as if it named
    /// missing groups.
    pub async fn caches_ready(&self) {
        use vpcnet_runtime::kinds::wait_ready;
        wait_ready(&self.groups).await;
        wait_ready(&self.pods).await;
        wait_ready(&self.subnets).await;
    }
}
