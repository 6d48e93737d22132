//! Which NAT objects a change re-runs. An EIP's `status.nat` changes with
//! every rule that joins it; accepted rules do not depend on that list (the
//! older of two conflicting rules wins), so such a change re-runs only the
//! rules still waiting or refused. A change of the EIP itself (spec,
//! address, verdict, deletion) re-runs them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use vpcnet_api::{IptablesEIP, Subnet, Vpc, VpcNatGateway};

use crate::rules::{self, NatRule};

/// The EIP a rule in the same namespace names.
pub fn eip_of<K: NatRule>(rule: Arc<K>) -> Option<ObjectRef<IptablesEIP>> {
    Some(ObjectRef::new(rule.eip()).within(rule.meta().namespace.as_deref().unwrap_or_default()))
}

/// What rules depend on in their EIP: spec, address, gateway, verdict and
/// whether it is being deleted (not its list of users).
pub fn eip_fingerprint(e: &IptablesEIP) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&e.spec)
        .unwrap_or_default()
        .hash(&mut h);
    e.metadata.deletion_timestamp.is_some().hash(&mut h);
    if let Some(st) = &e.status {
        st.ip.hash(&mut h);
        st.nat_gw_dp.hash(&mut h);
        for c in &st.conditions {
            (&c.type_, &c.status, c.observed_generation).hash(&mut h);
        }
    }
    h.finish()
}

/// Maps EIP changes to the rules of kind `K` they concern (see the module
/// comment). One per rule kind: each remembers what it last saw.
pub fn rules_of_eip<K: NatRule>(
    rules: Store<K>,
) -> impl Fn(Arc<IptablesEIP>) -> Vec<ObjectRef<K>> + Send + Sync + 'static {
    let seen: Mutex<HashMap<(String, String), u64>> = Mutex::default();
    move |e: Arc<IptablesEIP>| {
        let ns = e.namespace().unwrap_or_default();
        let name = e.name_any();
        let fp = eip_fingerprint(&e);
        let changed = seen
            .lock()
            .map(|mut m| m.insert((ns.clone(), name.clone()), fp) != Some(fp))
            .unwrap_or(true);
        rules
            .state()
            .iter()
            .filter(|r| r.meta().namespace.as_deref() == Some(ns.as_str()) && r.eip() == name)
            .filter(|r| changed || !rules::is_accepted(r.as_ref()))
            .map(|r| ObjectRef::from(r.as_ref()))
            .collect()
    }
}

/// Gateways of the same VPC as `changed` (itself excluded): the VPC's
/// default route may move to one of them.
pub fn same_vpc(
    gateways: Store<VpcNatGateway>,
) -> impl Fn(Arc<VpcNatGateway>) -> Vec<ObjectRef<VpcNatGateway>> + Send + Sync + 'static {
    move |changed: Arc<VpcNatGateway>| {
        gateways
            .state()
            .iter()
            .filter(|g| g.spec.vpc == changed.spec.vpc && g.name_any() != changed.name_any())
            .map(|g| ObjectRef::from(g.as_ref()))
            .collect()
    }
}

/// Gateways of a VPC (its own default route decides theirs).
pub fn of_vpc(
    gateways: Store<VpcNatGateway>,
) -> impl Fn(Arc<Vpc>) -> Vec<ObjectRef<VpcNatGateway>> + Send + Sync + 'static {
    move |vpc: Arc<Vpc>| {
        let name = vpc.name_any();
        gateways
            .state()
            .iter()
            .filter(|g| g.spec.vpc == name)
            .map(|g| ObjectRef::from(g.as_ref()))
            .collect()
    }
}

/// Gateways on a subnet (as their LAN or external network).
pub fn on_subnet(
    gateways: Store<VpcNatGateway>,
) -> impl Fn(Arc<Subnet>) -> Vec<ObjectRef<VpcNatGateway>> + Send + Sync + 'static {
    move |s: Arc<Subnet>| {
        gateways
            .state()
            .iter()
            .filter(|g| crate::gateway::uses_subnet(g, &s))
            .map(|g| ObjectRef::from(g.as_ref()))
            .collect()
    }
}

/// The gateway a StatefulSet runs, by its label. (Mapping by owner
/// reference would name the cluster-scoped gateway with the StatefulSet's
/// namespace: a second key for the same gateway, reconciled beside the
/// first.)
pub fn gateway_of_workload(
    sts: Arc<k8s_openapi::api::apps::v1::StatefulSet>,
) -> Option<ObjectRef<VpcNatGateway>> {
    use vpcnet_api::contract::labels;
    let l = sts.metadata.labels.as_ref()?;
    if l.get(labels::APP_NAME).map(String::as_str) != Some(labels::NATGW_APP) {
        return None;
    }
    l.get(labels::NAT_GATEWAY).map(|g| ObjectRef::new(g))
}

/// The gateway a pod of the operator's namespace runs, by its label.
pub fn gateway_of_pod(
    namespace: String,
) -> impl Fn(Arc<k8s_openapi::api::core::v1::Pod>) -> Option<ObjectRef<VpcNatGateway>>
+ Send
+ Sync
+ 'static {
    use vpcnet_api::contract::labels;
    move |p| {
        if p.metadata.namespace.as_deref() != Some(namespace.as_str()) {
            return None;
        }
        let l = p.metadata.labels.as_ref()?;
        if l.get(labels::APP_NAME).map(String::as_str) != Some(labels::NATGW_APP) {
            return None;
        }
        l.get(labels::NAT_GATEWAY).map(|g| ObjectRef::new(g))
    }
}

/// The gateway whose replicas hold a Lease, when its holder changed since
/// the last time it was seen: a renewal (several a second) re-runs nothing.
pub fn gateway_of_lease()
-> impl Fn(Arc<k8s_openapi::api::coordination::v1::Lease>) -> Option<ObjectRef<VpcNatGateway>>
+ Send
+ Sync
+ 'static {
    use vpcnet_api::contract::labels;
    let seen: Mutex<HashMap<String, Option<String>>> = Mutex::default();
    move |l| {
        let lb = l.metadata.labels.as_ref()?;
        if lb.get(labels::APP_NAME).map(String::as_str) != Some(labels::NATGW_APP) {
            return None;
        }
        let gw = lb.get(labels::NAT_GATEWAY)?;
        let holder = l.spec.as_ref().and_then(|s| s.holder_identity.clone());
        let changed = seen
            .lock()
            .map(|mut m| m.insert(gw.clone(), holder.clone()) != Some(holder))
            .unwrap_or(true);
        changed.then(|| ObjectRef::new(gw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_workload_names_its_cluster_scoped_gateway() {
        let mut sts = k8s_openapi::api::apps::v1::StatefulSet::default();
        sts.metadata.namespace = Some("vpcnet-system".into());
        sts.metadata.labels = Some(crate::gateway::objects::workload_labels("g"));
        let r = gateway_of_workload(Arc::new(sts.clone())).unwrap();
        assert_eq!(r, ObjectRef::<VpcNatGateway>::new("g"));
        assert_eq!(r.namespace, None);
        sts.metadata.labels = None;
        assert!(gateway_of_workload(Arc::new(sts)).is_none());
    }
}
