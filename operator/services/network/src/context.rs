//! What the network service's reconcilers share.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use vpcnet_api::{Subnet, Vpc};
use vpcnet_runtime::Runtime;
use vpcnet_runtime::kinds::Shared;

use crate::pod::notice::Notices;

/// The network service's state: the runtime and the kinds it reads.
pub struct Ctx {
    /// The shared runtime.
    pub rt: Arc<Runtime>,
    /// Vpc objects.
    pub vpcs: Shared<Vpc>,
    /// Subnet objects.
    pub subnets: Shared<Subnet>,
    /// Pods.
    pub pods: Shared<Pod>,
    /// The subnet for pods in namespaces no Subnet claims.
    pub default_subnet: Option<String>,
    /// The refusal each pod was last told about (pods have no condition of
    /// ours to record it in).
    pub notices: Notices,
}

vpcnet_runtime::service_context!(Ctx);
