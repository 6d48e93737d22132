//! Vpc reconciler: a logical router with the spec's routes and policies.

pub mod desired;

use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use ovn::Owner;
use serde_json::json;
use vpcnet_api::Vpc;
use vpcnet_api::condition::Conditioned;
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use crate::names;
use crate::{Ctx as Context, Error, Result};

/// The name of the VPC that pods of unclaimed namespaces use.
pub use vpcnet_api::contract::DEFAULT_VPC;

/// The OVN owner of a VPC's rows.
pub fn owner(name: &str) -> Owner {
    Owner::cluster("Vpc", name).with_vpc(name)
}

/// How a Vpc is reconciled.
pub struct VpcReconciler;

#[async_trait::async_trait]
impl Reconcile for VpcReconciler {
    type Object = Vpc;
    type Context = Context;
    const KIND: &'static str = "Vpc";

    async fn apply(vpc: &Vpc, ctx: &Context) -> Result<Action> {
        apply(vpc, ctx, &Api::all(ctx.client.clone())).await
    }

    async fn cleanup(vpc: &Vpc, ctx: &Context) -> Result<Action> {
        cleanup(vpc, ctx, &Api::all(ctx.client.clone())).await
    }
}

/// Names of the subnets attached to `vpc`.
fn subnets_of(ctx: &Context, vpc: &str) -> Vec<String> {
    let mut v: Vec<String> = ctx
        .subnets
        .store()
        .state()
        .iter()
        .filter(|s| s.spec.provider.is_none() && s.vpc_name() == vpc)
        .map(|s| s.name_any())
        .collect();
    v.sort();
    v
}

async fn apply(vpc: &Vpc, ctx: &Context, api: &Api<Vpc>) -> Result<Action> {
    let name = vpc.name_any();
    let generation = vpc.meta().generation;
    let previous = vpc.conditions();
    if let Some(prefix) = desired::duplicate_route(&vpc.spec) {
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
    let report =
        ovn::owner::ensure_owned(&ctx.nb, &owner(&name), desired::desired(&name, &vpc.spec))
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
