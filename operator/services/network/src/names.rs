//! The names the network service writes, all from the shared contract.

pub use vpcnet_api::contract::annotations;
pub use vpcnet_api::contract::naming::{pod_port, router, router_port, switch, switch_router_port};
use vpcnet_ipam::Holder;

/// The IPAM holder of a pod.
pub fn pod_holder(namespace: &str, pod: &str) -> Holder {
    Holder::pod(namespace, pod)
}
