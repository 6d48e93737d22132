//! What re-runs which reconcile.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use vpcnet_api::SecurityGroup;

use crate::build;

/// A group -> the other groups of its namespace naming it as their remote
/// group (it may just have appeared, or be going).
pub fn groups_naming(
    groups: Store<SecurityGroup>,
) -> impl Fn(Arc<SecurityGroup>) -> Vec<ObjectRef<SecurityGroup>> + Send + Sync + 'static {
    move |changed| {
        let name = changed.name_any();
        groups
            .state()
            .iter()
            .filter(|g| g.namespace() == changed.namespace() && g.uid() != changed.uid())
            .filter(|g| build::remote_groups(&g.spec).contains(&name))
            .map(|g| ObjectRef::from_obj(&**g))
            .collect()
    }
}

/// A group -> the pods of its namespace that name any group (it may be one
/// they wait for, or one going away).
pub fn pods_of_group(
    pods: Store<Pod>,
) -> impl Fn(Arc<SecurityGroup>) -> Vec<ObjectRef<Pod>> + Send + Sync + 'static {
    move |changed| {
        pods.state()
            .iter()
            .filter(|p| p.namespace() == changed.namespace())
            .filter(|p| crate::decide::requested(p.annotations()).is_some())
            .map(|p| ObjectRef::from_obj(&**p))
            .collect()
    }
}
