//! What the NAT service's reconcilers share.

use std::sync::Arc;

use kube::runtime::reflector::Store;
use vpcnet_api::{
    IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule, Subnet, Vpc, VpcNatGateway,
};
use vpcnet_runtime::Runtime;
use vpcnet_runtime::kinds::wait_ready;

/// How gateway workloads are run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image of the `vpcnet-natgw` agent.
    pub natgw_image: String,
    /// Pull policy for the agent image.
    pub image_pull_policy: String,
    /// External subnet used when a gateway names none.
    pub external_subnet: String,
}

/// The NAT service's state: the runtime, the caches it judges against and
/// its settings.
pub struct Ctx {
    /// The shared runtime.
    pub rt: Arc<Runtime>,
    /// Cached Vpc objects.
    pub vpcs: Store<Vpc>,
    /// Cached Subnet objects.
    pub subnets: Store<Subnet>,
    /// Cached VpcNatGateway objects.
    pub gateways: Store<VpcNatGateway>,
    /// Cached NAT objects: a rule's verdict is judged against these, not
    /// against fresh lists (which cost the API server O(rules) per rule).
    pub nat: NatStores,
    /// Bounds each namespace's NAT reconciles in flight.
    pub fairness: crate::fairness::Fairness,
    /// Image of the `vpcnet-natgw` agent.
    pub natgw_image: String,
    /// Pull policy for the agent image.
    pub image_pull_policy: String,
    /// External subnet used when a gateway names none.
    pub external_subnet: String,
}

vpcnet_runtime::service_context!(Ctx);

/// Caches of the NAT kinds.
#[derive(Clone)]
pub struct NatStores {
    /// IptablesEIPs.
    pub eips: Store<IptablesEIP>,
    /// IptablesSnatRules.
    pub snats: Store<IptablesSnatRule>,
    /// IptablesDnatRules.
    pub dnats: Store<IptablesDnatRule>,
    /// IptablesFIPRules.
    pub fips: Store<IptablesFIPRule>,
}

impl NatStores {
    /// Waits until every cache holds its first full list, so no verdict is
    /// reached on a partial view.
    pub async fn ready(&self) {
        wait_ready(&self.eips).await;
        wait_ready(&self.snats).await;
        wait_ready(&self.dnats).await;
        wait_ready(&self.fips).await;
    }
}
