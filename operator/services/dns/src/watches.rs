//! What re-runs which VpcDns: anything that changes its VPC's zone or its
//! servers.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use vpcnet_api::contract::labels;
use vpcnet_api::subnet::choose_subnet;
use vpcnet_api::{Subnet, VpcDns};

use crate::validate::server_of;

/// An object of namespace `ns` -> the VpcDns serving that namespace's VPC.
pub fn server_of_namespace(
    dnses: &Store<VpcDns>,
    subnets: &Store<Subnet>,
    default_subnet: Option<&str>,
    ns: &str,
) -> Option<ObjectRef<VpcDns>> {
    let subnets = subnets.state();
    let vpc = choose_subnet(ns, &subnets, default_subnet)?
        .vpc_name()
        .to_string();
    let dnses = dnses.state();
    server_of(&vpc, &dnses).map(|d| ObjectRef::from_obj(&**d))
}

/// A namespaced object -> the VpcDns of its namespace's VPC.
pub fn by_namespace<K: kube::Resource>(
    dnses: Store<VpcDns>,
    subnets: Store<Subnet>,
    default_subnet: Option<String>,
) -> impl Fn(Arc<K>) -> Option<ObjectRef<VpcDns>> + Send + Sync + 'static {
    move |obj| {
        let ns = obj.namespace()?;
        server_of_namespace(&dnses, &subnets, default_subnet.as_deref(), &ns)
    }
}

/// A server pod or Deployment -> its VpcDns (by label).
pub fn by_label<K: kube::Resource>(obj: Arc<K>) -> Option<ObjectRef<VpcDns>> {
    obj.labels().get(labels::VPC_DNS).map(|n| ObjectRef::new(n))
}

/// A Subnet or Namespace -> every VpcDns (which namespaces a VPC has, and
/// its switches, may have changed; both change rarely).
pub fn every<K>(
    dnses: Store<VpcDns>,
) -> impl Fn(Arc<K>) -> Vec<ObjectRef<VpcDns>> + Send + Sync + 'static {
    move |_| {
        dnses
            .state()
            .iter()
            .map(|d| ObjectRef::from_obj(&**d))
            .collect()
    }
}
