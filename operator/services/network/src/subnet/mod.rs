//! Subnet reconciler: a logical switch on the VPC's router plus an address
//! pool; or, for a `provider` subnet, only the address pool.

pub mod desired;
pub mod usage;
pub mod validate;

use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use ovn::Owner;
use serde_json::{Value, json};
use vpcnet_api::Subnet;
use vpcnet_api::condition::Conditioned;
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use crate::names;
use crate::{Ctx as Context, Error, Result};

/// The VPC a (non-provider) subnet belongs to.
pub fn vpc_of(subnet: &Subnet) -> &str {
    subnet.vpc_name()
}

/// The OVN owner of a subnet's rows.
pub fn owner(subnet: &Subnet) -> Owner {
    Owner::cluster("Subnet", &subnet.name_any()).with_vpc(vpc_of(subnet))
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
    let generation = subnet.meta().generation;
    let previous = subnet.conditions();
    let refuse = |reason: &'static str, message: String| async move {
        ctx.event(subnet, true, reason, "Validate", message.clone())
            .await;
        // Nothing half-programmed: a refused subnet owns no OVN rows.
        ovn::owner::delete_owned(&ctx.nb, &owner(subnet)).await?;
        let cond = status::ready(previous, false, reason, message, generation);
        write_status(
            api,
            subnet,
            json!({"conditions": [cond], "observedGeneration": generation}),
        )
        .await?;
        Ok::<_, Error>(Action::requeue(Duration::from_secs(60)))
    };

    if subnet.spec.provider.is_some() {
        // An external network: only addresses are managed here.
        if let Err(e) = ctx.ipam.lock().await.upsert(
            &name,
            &subnet.spec.cidr_block,
            subnet.spec.gateway.as_deref(),
            &subnet.spec.exclude_ips,
        ) {
            return refuse("InvalidAddresses", e.to_string()).await;
        }
        return finish(
            subnet,
            ctx,
            api,
            None,
            "IpamOnly",
            "external network: addresses are allocated to NAT gateways and EIPs",
        )
        .await;
    }

    let vpc = vpc_of(subnet).to_string();
    // The cache may lag (e.g. right after a restart): a refusal deletes the
    // switch, so "VPC missing" is confirmed with the API server first.
    let vpc_exists = ctx.vpcs.store().state().iter().any(|v| v.name_any() == vpc)
        || Api::<vpcnet_api::Vpc>::all(ctx.client.clone())
            .get_opt(&vpc)
            .await?
            .is_some();
    let plan = match validate::validate(subnet, &vpc, vpc_exists, &ctx.subnets.store().state()) {
        Ok(p) => p,
        Err(r) => return refuse(r.reason, r.message).await,
    };
    if let Err(e) = ctx.ipam.lock().await.upsert(
        &name,
        &subnet.spec.cidr_block,
        Some(&plan.gateway.to_string()),
        &subnet.spec.exclude_ips,
    ) {
        return refuse("InvalidAddresses", e.to_string()).await;
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
        "Programmed",
        &format!("logical switch {ls} attached to VPC {vpc}"),
    )
    .await
}

async fn finish(
    subnet: &Subnet,
    ctx: &Context,
    api: &Api<Subnet>,
    ls: Option<String>,
    reason: &str,
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
    let cond = status::ready(previous, true, reason, message, generation);
    let mut st = json!({
        "conditions": [cond],
        "observedGeneration": generation,
        "v4usingIPs": using,
        "v4availableIPs": available,
    });
    if let Some(ls) = ls {
        st["logicalSwitch"] = Value::String(ls);
    }
    write_status(api, subnet, st).await?;
    // Counts follow allocations through `usage::changes`; this requeue only
    // repairs drift of the switch.
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Writes `status` unless the object already shows exactly that.
async fn write_status(api: &Api<Subnet>, subnet: &Subnet, st: Value) -> Result<()> {
    let current = serde_json::to_value(&subnet.status).unwrap_or(Value::Null);
    let unchanged = st
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| current.get(k) == Some(v)));
    if !unchanged {
        status::apply(api, &subnet.name_any(), st).await?;
    }
    Ok(())
}

async fn cleanup(subnet: &Subnet, ctx: &Context) -> Result<Action> {
    let deleted = ovn::owner::delete_owned(&ctx.nb, &owner(subnet)).await?;
    ctx.ipam.lock().await.remove(&subnet.name_any());
    tracing::info!(deleted, "removed switch");
    Ok(Action::await_change())
}
