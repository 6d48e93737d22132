//! Subnet reconciler: a logical switch on the VPC's router plus an address
//! pool; or, for a `provider` subnet, only the address pool.

pub mod desired;
pub mod usage;
pub mod validate;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use ovn::Owner;
use vpcnet_api::condition::{Conditioned, READY};
use vpcnet_api::{Subnet, SubnetStatus};
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::refusal::{Reason, Refusal};
use vpcnet_runtime::status;

use crate::names;
use crate::reasons::SubnetReason;
use crate::report::SubnetReport;
use crate::{Ctx as Context, Error, Result};

/// The OVN owner of a subnet's rows.
pub fn owner(subnet: &Subnet) -> Owner {
    Owner::cluster("Subnet", &subnet.name_any()).with_vpc(subnet.vpc_name())
}

/// How a Subnet is reconciled.
pub struct SubnetReconciler;

#[async_trait::async_trait]
impl Reconcile for SubnetReconciler {
    type Object = Subnet;
    type Context = Context;
    const KIND: &'static str = "Subnet";

    async fn apply(subnet: &Subnet, ctx: &Context) -> Result<Action> {
        apply(subnet, ctx, &Api::all(ctx.client.clone())).await
    }

    async fn cleanup(subnet: &Subnet, ctx: &Context) -> Result<Action> {
        cleanup(subnet, ctx).await
    }
}

async fn apply(subnet: &Subnet, ctx: &Context, api: &Api<Subnet>) -> Result<Action> {
    let name = subnet.name_any();
    if subnet.spec.provider.is_some() {
        // An external network: only addresses are managed here.
        if let Err(e) = ctx.ipam.lock().await.upsert(
            &name,
            &subnet.spec.cidr_block,
            subnet.spec.gateway.as_deref(),
            &subnet.spec.exclude_ips,
        ) {
            let refusal = Refusal::new(SubnetReason::InvalidAddresses, e.to_string());
            return refuse(subnet, ctx, api, refusal).await;
        }
        return finish(
            subnet,
            ctx,
            api,
            None,
            SubnetReason::IpamOnly,
            "external network: addresses are allocated to NAT gateways and EIPs",
        )
        .await;
    }

    let vpc = subnet.vpc_name().to_string();
    // The cache may lag (e.g. right after a restart): a refusal deletes the
    // switch, so "VPC missing" is confirmed with the API server first.
    let vpc_exists = ctx.vpcs.store().state().iter().any(|v| v.name_any() == vpc)
        || Api::<vpcnet_api::Vpc>::all(ctx.client.clone())
            .get_opt(&vpc)
            .await?
            .is_some();
    let plan = match validate::validate(subnet, &vpc, vpc_exists, &ctx.subnets.store().state()) {
        Ok(p) => p,
        Err(refusal) => return refuse(subnet, ctx, api, refusal).await,
    };
    if let Err(e) = ctx.ipam.lock().await.upsert(
        &name,
        &subnet.spec.cidr_block,
        Some(&plan.gateway.to_string()),
        &subnet.spec.exclude_ips,
    ) {
        let refusal = Refusal::new(SubnetReason::InvalidAddresses, e.to_string());
        return refuse(subnet, ctx, api, refusal).await;
    }
    let router = ctx
        .ovn
        .router(&names::router(&vpc))
        .ok_or_else(|| Error::Dependency(format!("logical router of VPC {vpc}")))?;
    let report =
        ovn::owner::ensure_owned(&ctx.nb, &owner(subnet), desired::desired(&plan, router)).await?;
    if report.created + report.updated + report.deleted > 0 {
        tracing::info!(
            created = report.created,
            updated = report.updated,
            deleted = report.deleted,
            "programmed switch"
        );
    }
    let ls = names::switch(&name);
    finish(
        subnet,
        ctx,
        api,
        Some(ls.clone()),
        SubnetReason::Programmed,
        &format!("logical switch {ls} attached to VPC {vpc}"),
    )
    .await
}

/// A refused subnet: an Event when the refusal is news, no OVN rows, and
/// the refusal as its `Ready` condition.
async fn refuse(
    subnet: &Subnet,
    ctx: &Context,
    api: &Api<Subnet>,
    refusal: Refusal<SubnetReason>,
) -> Result<Action> {
    let previous = subnet.conditions();
    let generation = subnet.meta().generation;
    refusal
        .announce(ctx, subnet, previous, READY, "Validate")
        .await;
    // Nothing half-programmed: a refused subnet owns no OVN rows.
    ovn::owner::delete_owned(&ctx.nb, &owner(subnet)).await?;
    let desired = refused_status(&refusal, previous, generation);
    write_status(api, subnet, &desired).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The status of a refused subnet: the verdict only (server-side apply
/// drops the counts and the switch it no longer sends).
fn refused_status(
    refusal: &Refusal<SubnetReason>,
    previous: &[Condition],
    generation: Option<i64>,
) -> SubnetReport {
    SubnetReport(SubnetStatus {
        conditions: vec![refusal.condition(previous, READY, generation)],
        observed_generation: generation,
        ..Default::default()
    })
}

async fn finish(
    subnet: &Subnet,
    ctx: &Context,
    api: &Api<Subnet>,
    ls: Option<String>,
    reason: SubnetReason,
    message: &str,
) -> Result<Action> {
    let name = subnet.name_any();
    let generation = subnet.meta().generation;
    let previous = subnet.conditions();
    let (using, available) = {
        let ipam = ctx.ipam.lock().await;
        ipam.pool(&name)
            .map(|p| (p.using(), p.available()))
            .unwrap_or_default()
    };
    let desired = SubnetReport(SubnetStatus {
        conditions: vec![status::ready(
            previous,
            true,
            reason.as_str(),
            message,
            generation,
        )],
        observed_generation: generation,
        v4_using_ips: Some(using),
        v4_available_ips: Some(available),
        logical_switch: ls,
    });
    write_status(api, subnet, &desired).await?;
    // Counts follow allocations through `usage::changes`; this requeue only
    // repairs drift of the switch.
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Writes `desired` unless the subnet already shows exactly that.
async fn write_status(api: &Api<Subnet>, subnet: &Subnet, desired: &SubnetReport) -> Result<()> {
    let current = SubnetReport::current(subnet);
    status::report(api, &subnet.name_any(), current.as_ref(), desired).await?;
    Ok(())
}

async fn cleanup(subnet: &Subnet, ctx: &Context) -> Result<Action> {
    let deleted = ovn::owner::delete_owned(&ctx.nb, &owner(subnet)).await?;
    ctx.ipam.lock().await.remove(&subnet.name_any());
    tracing::info!(deleted, "removed switch");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refused_subnet_reports_only_its_verdict() {
        let refusal = Refusal::new(SubnetReason::VpcNotFound, "VPC v does not exist");
        let st = serde_json::to_value(refused_status(&refusal, &[], Some(2))).unwrap();
        assert_eq!(st["observedGeneration"], json!(2));
        assert_eq!(st.as_object().unwrap().len(), 2, "{st}");
        let c = &st["conditions"][0];
        assert_eq!(
            (&c["type"], &c["status"], &c["reason"], &c["message"]),
            (
                &json!("Ready"),
                &json!("False"),
                &json!("VpcNotFound"),
                &json!("VPC v does not exist")
            )
        );
    }
}
