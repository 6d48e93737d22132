//! What re-runs which reconcile.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use vpcnet_api::contract::naming::SLR_SERVICE_PREFIX;
use vpcnet_api::{Subnet, SwitchLBRule, Vip, Vpc};

use crate::service_lb::SERVICE_NAME_LABEL;

/// An EndpointSlice -> its Service.
pub fn service_of_slice(slice: Arc<EndpointSlice>) -> Option<ObjectRef<Service>> {
    let name = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some(ObjectRef::new(name).within(&slice.namespace()?))
}

/// A Subnet -> every Service: which namespaces it claims and which ranges
/// its VPC has both decide the Services' rows (subnets change rarely).
pub fn services_on_subnet(
    services: Store<Service>,
) -> impl Fn(Arc<Subnet>) -> Vec<ObjectRef<Service>> + Send + Sync + 'static {
    move |_| {
        services
            .state()
            .iter()
            .map(|s| ObjectRef::from_obj(&**s))
            .collect()
    }
}

/// A Subnet -> its VPC (whose group its switch must refer to).
pub fn vpc_of_subnet(subnet: Arc<Subnet>) -> Option<ObjectRef<Vpc>> {
    subnet
        .spec
        .provider
        .is_none()
        .then(|| ObjectRef::new(subnet.vpc_name()))
}

/// A Subnet -> the Vips that name it (its pool may just have appeared).
pub fn vips_on_subnet(
    vips: Store<Vip>,
) -> impl Fn(Arc<Subnet>) -> Vec<ObjectRef<Vip>> + Send + Sync + 'static {
    move |subnet| {
        let name = subnet.name_any();
        vips.state()
            .iter()
            .filter(|v| v.spec.subnet == name)
            .map(|v| ObjectRef::from_obj(&**v))
            .collect()
    }
}

/// An EndpointSlice of a rule's headless Service -> the rule.
pub fn rule_of_slice(slice: Arc<EndpointSlice>) -> Option<ObjectRef<SwitchLBRule>> {
    let name = slice
        .labels()
        .get(SERVICE_NAME_LABEL)?
        .strip_prefix(SLR_SERVICE_PREFIX)?;
    Some(ObjectRef::new(name).within(&slice.namespace()?))
}

/// A Vip -> the rules of its namespace (one may use its address).
pub fn rules_of_vip(
    rules: Store<SwitchLBRule>,
) -> impl Fn(Arc<Vip>) -> Vec<ObjectRef<SwitchLBRule>> + Send + Sync + 'static {
    move |vip| {
        rules
            .state()
            .iter()
            .filter(|r| r.namespace() == vip.namespace())
            .map(|r| ObjectRef::from_obj(&**r))
            .collect()
    }
}

/// A Subnet -> every rule (its VPC's ranges decide the rules' verdicts).
pub fn rules_on_subnet(
    rules: Store<SwitchLBRule>,
) -> impl Fn(Arc<Subnet>) -> Vec<ObjectRef<SwitchLBRule>> + Send + Sync + 'static {
    move |_| {
        rules
            .state()
            .iter()
            .map(|r| ObjectRef::from_obj(&**r))
            .collect()
    }
}

/// A rule -> the other rules on the same VIP (the younger waits on the older).
pub fn rules_on_same_vip(
    rules: Store<SwitchLBRule>,
) -> impl Fn(Arc<SwitchLBRule>) -> Vec<ObjectRef<SwitchLBRule>> + Send + Sync + 'static {
    move |changed| {
        rules
            .state()
            .iter()
            .filter(|r| r.spec.vip == changed.spec.vip && r.uid() != changed.uid())
            .map(|r| ObjectRef::from_obj(&**r))
            .collect()
    }
}
