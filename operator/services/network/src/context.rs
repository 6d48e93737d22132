//! What the network service's reconcilers share.

use std::ops::Deref;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use vpcnet_api::{Subnet, Vpc};
use vpcnet_runtime::Runtime;
use vpcnet_runtime::kinds::Shared;
use vpcnet_runtime::runtime::HasRuntime;

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

impl Deref for Ctx {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        &self.rt
    }
}

impl HasRuntime for Ctx {
    fn rt(&self) -> &Runtime {
        &self.rt
    }
}
