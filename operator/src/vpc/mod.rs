//! Vpc reconciler: a logical router with the spec's routes and policies.

pub mod desired;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use ovn::Owner;
use serde_json::json;
use tracing::instrument;
use vpcnet_api::Vpc;
use vpcnet_api::condition::Conditioned;

use crate::names::{self, FINALIZER};
use crate::{Context, Error, Result, status};

/// The name of the VPC that pods of unclaimed namespaces use.
pub const DEFAULT_VPC: &str = "ovn-cluster";

/// The OVN owner of a VPC's rows.
pub fn owner(name: &str) -> Owner {
    Owner::cluster("Vpc", name).with_vpc(name)
}

/// Reconciles one Vpc.
#[instrument(skip_all, fields(kind = "Vpc", name = %vpc.name_any()))]
pub async fn reconcile(vpc: Arc<Vpc>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let api: Api<Vpc> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, vpc, |ev| async {
        match ev {
            Finalizer::Apply(v) => apply(&v, &ctx, &api).await,
            Finalizer::Cleanup(v) => cleanup(&v, &ctx, &api).await,
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics.observe("Vpc", started.elapsed().as_secs_f64());
    result
}

/// Names of the subnets attached to `vpc`.
fn subnets_of(ctx: &Context, vpc: &str) -> Vec<String> {
    let mut v: Vec<String> = ctx
        .subnets
        .state()
        .iter()
        .filter(|s| s.spec.provider.is_none() && crate::subnet::vpc_of(s) == vpc)
        .map(|s| s.name_any())
        .collect();
    v.sort();
    v
}

async fn apply(vpc: &Vpc, ctx: &Context, api: &Api<Vpc>) -> Result<Action> {
    let name = vpc.name_any();
    let generation = vpc.meta().generation;
    let previous = vpc.conditions();
    // Read from the API, not a cache: this reconcile is often triggered by
    // a gateway event that another controller's cache has not seen yet.
    let gateways: Vec<Arc<vpcnet_api::VpcNatGateway>> =
        Api::<vpcnet_api::VpcNatGateway>::all(ctx.client.clone())
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .map(Arc::new)
            .collect();
    let extra = crate::nat::gateway::default_routes(&name, &vpc.spec, &gateways);
    if let Some(prefix) = desired::duplicate_route(&vpc.spec, &extra) {
        let msg = format!("two static routes for {prefix} with the same policy; remove one");
        ctx.event(vpc, true, "DuplicateRoute", "Validate", msg.clone())
            .await;
        let cond = status::ready(previous, false, "DuplicateRoute", msg, generation);
        status::apply(
            api,
            &name,
            json!({"conditions": [cond], "observedGeneration": generation}),
        )
        .await?;
        return Ok(Action::await_change());
    }
    let report = ovn::owner::ensure_owned(
        &ctx.nb,
        &owner(&name),
        desired::desired(&name, &vpc.spec, &extra),
    )
    .await?;
    if report.created + report.updated + report.deleted > 0 {
        tracing::info!(
            created = report.created,
            updated = report.updated,
            deleted = report.deleted,
            "programmed router"
        );
    }
    let subnets = subnets_of(ctx, &name);
    let cond = status::ready(
        previous,
        true,
        "Programmed",
        format!("logical router {} programmed", names::router(&name)),
        generation,
    );
    let new = json!({
        "conditions": [cond],
        "observedGeneration": generation,
        "router": names::router(&name),
        "subnets": subnets,
    });
    status::apply(api, &name, new).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup(vpc: &Vpc, ctx: &Context, api: &Api<Vpc>) -> Result<Action> {
    let name = vpc.name_any();
    let subnets = subnets_of(ctx, &name);
    if !subnets.is_empty() {
        let msg = format!(
            "deletion waits until these subnets are deleted: {}",
            subnets.join(", ")
        );
        ctx.event(vpc, true, "InUse", "Delete", msg.clone()).await;
        let previous = vpc.conditions();
        let cond = status::ready(previous, false, "InUse", msg.clone(), vpc.meta().generation);
        status::apply(api, &name, json!({"conditions": [cond]})).await?;
        return Err(Error::Dependency(msg));
    }
    let deleted = ovn::owner::delete_owned(&ctx.nb, &owner(&name)).await?;
    tracing::info!(deleted, "removed router");
    Ok(Action::await_change())
}
