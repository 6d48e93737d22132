//! A Kubernetes Service -> its load balancers in its VPC's group:
//! dereference (VPC, group, slices) -> build (pure) -> plan (pure) -> write.
//! Services are the users' own objects: the operator adds no finalizer and
//! writes no status; a deleted Service's rows go with its deletion event or,
//! if that was missed, the garbage collection.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use std::net::Ipv4Addr;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use ovn::nb::LoadBalancer;
use ovn::{Owner, Table};
use vpcnet_api::contract::annotations;
use vpcnet_api::contract::naming;
use vpcnet_runtime::driver::Reconcile;

use crate::{Ctx, Error, Result, build, placement, plan, write};

/// The owner kind of a Service's rows.
pub const OWNER_KIND: &str = "Service";

/// The label EndpointSlices name their Service by.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The OVN owner of Service `ns/name`'s rows.
pub fn owner(ns: &str, name: &str) -> Owner {
    Owner::new(OWNER_KIND, ns, name)
}

/// The cached slices of Service `ns/name`.
pub fn slices_of(ctx: &Ctx, ns: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
    ctx.slices
        .state()
        .into_iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
        })
        .collect()
}

/// The VPC addresses of an endpoint: a pod's from its annotation (its
/// endpoint address may be its probe address), anything else as written.
pub fn resolver(ctx: &Ctx) -> impl Fn(&Endpoint) -> Vec<Ipv4Addr> + '_ {
    move |ep| {
        let pod = ep
            .target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            .and_then(|r| {
                ctx.pods
                    .get(&ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
            });
        match pod {
            Some(p) => p
                .annotations()
                .get(annotations::IP_ADDRESS)
                .and_then(|a| a.parse().ok())
                .into_iter()
                .collect(),
            None => build::as_written(ep),
        }
    }
}

/// Makes `owner`'s rows `rows`, in the group of VPC `vpc` (none: remove all).
pub async fn converge(ctx: &Ctx, owner: &Owner, rows: Vec<LoadBalancer>) -> Result<bool> {
    let group = match &owner.vpc {
        Some(vpc) if !rows.is_empty() => {
            let name = naming::lb_group(vpc);
            let g = ctx.view.group(&name).ok_or_else(|| {
                Error::Dependency(format!("load-balancer group {name} of VPC {vpc}"))
            })?;
            Some(g.uuid)
        }
        _ => None,
    };
    write::write(ctx, LoadBalancer::TABLE, || {
        let current = ctx.view.owned(&owner.id());
        let membership: BTreeMap<_, _> = ctx
            .view
            .groups()
            .into_iter()
            .map(|g| (g.uuid, g.load_balancer))
            .collect();
        plan::owner_rows(owner, rows.clone(), &current, group.as_ref(), &membership)
    })
    .await
}

/// Removes every row of Service `ns/name`.
pub async fn remove(ctx: &Ctx, ns: &str, name: &str) -> Result<bool> {
    converge(ctx, &owner(ns, name), Vec::new()).await
}

/// Reconciles Services.
pub struct ServiceReconciler;

#[async_trait::async_trait]
impl Reconcile for ServiceReconciler {
    type Object = Service;
    type Context = Ctx;
    const KIND: &'static str = "Service";
    const CLEANS_UP: bool = false;

    async fn apply(svc: &Service, ctx: &Ctx) -> Result<Action> {
        ctx.caches_ready().await;
        let ns = svc.namespace().unwrap_or_default();
        let name = svc.name_any();
        if svc.metadata.deletion_timestamp.is_some() {
            remove(ctx, &ns, &name).await?;
            return Ok(Action::await_change());
        }
        let subnets = ctx.subnets.state();
        let Some(vpc) = placement::vpc_of(&ns, &subnets, ctx.default_subnet.as_deref()) else {
            // No VPC takes this namespace's pods: nothing could reach the Service.
            remove(ctx, &ns, &name).await?;
            return Ok(Action::await_change());
        };
        if ctx.vpcs.get(&ObjectRef::new(&vpc.name)).is_none() {
            // The namespace's subnet names a VPC that does not exist (its
            // Subnet is refused): nothing carries the Service yet.
            remove(ctx, &ns, &name).await?;
            return Ok(Action::requeue(std::time::Duration::from_secs(60)));
        }
        let rows = build::service_rows(svc, &slices_of(ctx, &ns, &name), &vpc, &resolver(ctx));
        let owner = owner(&ns, &name).with_vpc(&vpc.name);
        if converge(ctx, &owner, rows).await? {
            tracing::debug!(namespace = %ns, service = %name, vpc = %vpc.name, "load balancers written");
        }
        Ok(Action::await_change())
    }
}
