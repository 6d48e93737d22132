//! What every reconciler shares.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Mutex;
use vpcnet_api::{
    IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule, Subnet, Vpc, VpcNatGateway,
};

use crate::ipam::Ipam;
use crate::metrics::Metrics;
use crate::ovn_view::OvnView;

/// Shared state of the operator.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// OVN Northbound client.
    pub nb: ovn::Client,
    /// Routers and switches by name.
    pub ovn: OvnView,
    /// Address pools of all subnets.
    pub ipam: Mutex<Ipam>,
    /// Cached Vpc objects.
    pub vpcs: Store<Vpc>,
    /// Cached Subnet objects.
    pub subnets: Store<Subnet>,
    /// Event publisher.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Cached VpcNatGateway objects.
    pub gateways: Store<VpcNatGateway>,
    /// The subnet for pods in namespaces no Subnet claims.
    pub default_subnet: Option<String>,
    /// The operator's own namespace (NAT gateway workloads run here).
    pub namespace: String,
    /// Image of the `vpcnet-natgw` agent.
    pub natgw_image: String,
    /// Pull policy for the agent image.
    pub image_pull_policy: String,
    /// External subnet used when a gateway names none.
    pub external_subnet: String,
    /// Cached NAT objects: a rule's verdict is judged against these, not
    /// against fresh lists (which cost the API server O(rules) per rule).
    pub nat: NatStores,
    /// Bounds each namespace's NAT reconciles in flight.
    pub fairness: crate::nat::fairness::Fairness,
    /// Seals the operator's NAT decisions (and checks the agents' reports).
    pub seal: vpcnet_api::seal::SealKey,
}

/// Caches of the NAT kinds, filled by their controllers' watches.
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

/// Waits until a controller's store holds its first full list. (A parked
/// `wait_until_ready` was not woken reliably, so this polls.)
pub async fn wait_ready<K: Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) {
    use futures::FutureExt;
    while store.wait_until_ready().now_or_never().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl Context {
    /// A recorder identifying this controller.
    pub fn recorder(client: &Client) -> Recorder {
        let instance = std::env::var("POD_NAME").ok();
        Recorder::new(
            client.clone(),
            Reporter {
                controller: crate::names::MANAGER.into(),
                instance,
            },
        )
    }

    /// Publishes an Event on `obj`; failures are logged, never fatal.
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(object = %obj.name_any(), error = %e, "publishing event failed");
        }
    }
}
