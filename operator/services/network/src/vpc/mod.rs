//! Vpc reconciler: a logical router with the spec's routes and policies.

pub mod desired;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use ovn::Owner;
use vpcnet_api::condition::{Conditioned, READY};
use vpcnet_api::{Vpc, VpcStatus};
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::refusal::{Reason, Refusal};
use vpcnet_runtime::status;

use crate::names;
use crate::reasons::VpcReason;
use crate::report::VpcReport;
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
        let refusal = Refusal::new(
            VpcReason::DuplicateRoute,
            format!("two static routes for {prefix} with the same policy; remove one"),
        );
        refusal
            .announce(ctx, vpc, previous, READY, "Validate")
            .await;
        let desired = VpcReport(VpcStatus {
            conditions: vec![refusal.condition(previous, READY, generation)],
            observed_generation: generation,
            ..Default::default()
        });
        write_status(api, vpc, &desired).await?;
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
    let desired = programmed_status(&name, subnets_of(ctx, &name), previous, generation);
    write_status(api, vpc, &desired).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The status of a programmed VPC: its router and its subnets.
fn programmed_status(
    name: &str,
    subnets: Vec<String>,
    previous: &[Condition],
    generation: Option<i64>,
) -> VpcReport {
    let router = names::router(name);
    VpcReport(VpcStatus {
        conditions: vec![status::ready(
            previous,
            true,
            VpcReason::Programmed.as_str(),
            format!("logical router {router} programmed"),
            generation,
        )],
        observed_generation: generation,
        router: Some(router),
        subnets,
        default_gateway: None,
    })
}

/// Writes `desired` unless the VPC already shows exactly that.
async fn write_status(api: &Api<Vpc>, vpc: &Vpc, desired: &VpcReport) -> Result<()> {
    let current = VpcReport::current(vpc);
    status::report(api, &vpc.name_any(), current.as_ref(), desired).await?;
    Ok(())
}

async fn cleanup(vpc: &Vpc, ctx: &Context, api: &Api<Vpc>) -> Result<Action> {
    let name = vpc.name_any();
    let subnets = subnets_of(ctx, &name);
    if !subnets.is_empty() {
        let refusal = Refusal::new(
            VpcReason::InUse,
            format!(
                "deletion waits until these subnets are deleted: {}",
                subnets.join(", ")
            ),
        );
        let previous = vpc.conditions();
        refusal.announce(ctx, vpc, previous, READY, "Delete").await;
        // As before: while deletion waits, the status is the verdict alone.
        let desired = VpcReport(VpcStatus {
            conditions: vec![refusal.condition(previous, READY, vpc.meta().generation)],
            ..Default::default()
        });
        write_status(api, vpc, &desired).await?;
        return Err(Error::Dependency(refusal.message));
    }
    let deleted = ovn::owner::delete_owned(&ctx.nb, &owner(&name)).await?;
    tracing::info!(deleted, "removed router");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_programmed_vpc_reports_router_and_subnets() {
        let st = programmed_status("mail263", vec!["a".into(), "b".into()], &[], Some(3));
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["router"], json!("vpcnet-mail263"));
        assert_eq!(v["subnets"], json!(["a", "b"]));
        assert_eq!(v["observedGeneration"], json!(3));
        let c = &v["conditions"][0];
        assert_eq!(
            (&c["type"], &c["status"], &c["reason"], &c["message"]),
            (
                &json!("Ready"),
                &json!("True"),
                &json!("Programmed"),
                &json!("logical router vpcnet-mail263 programmed")
            )
        );
        // The same verdict again carries its transition time over: no write.
        let again = programmed_status(
            "mail263",
            vec!["a".into(), "b".into()],
            &st.0.conditions,
            Some(3),
        );
        assert!(status::says(Some(&st), &again));
    }
}
