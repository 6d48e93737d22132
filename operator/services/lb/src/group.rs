//! A VPC's Load_Balancer_Group: created with the VPC's load balancers as
//! members and referred to once by each of the VPC's switches and by its
//! router (so a client on the VIP's own subnet gets an answer to ARP for the
//! VIP). A new switch is one reference; a new Service is one member.

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use ovn::Table;
use ovn::nb::LoadBalancerGroup;
use vpcnet_api::Vpc;
use vpcnet_api::contract::naming;
use vpcnet_runtime::driver::Reconcile;

use crate::{Ctx, Error, OWNER_KINDS, Result, placement, plan, write};

/// Makes VPC `vpc`'s group exist, hold its load balancers, and be referred
/// to by every switch of `subnets` and by the VPC's router.
pub async fn converge(ctx: &Ctx, vpc: &str) -> Result<()> {
    let name = naming::lb_group(vpc);
    let subnets = ctx.subnets.state();
    let switches: Vec<String> = placement::subnet_names(vpc, &subnets)
        .iter()
        .map(|s| naming::switch(s))
        .collect();
    if let Some(ls) = switches.iter().find(|ls| ctx.view.switch(ls).is_none()) {
        return Err(Error::Dependency(format!(
            "logical switch {ls} of VPC {vpc}"
        )));
    }
    let lr = naming::router(vpc);
    if ctx.view.router(&lr).is_none() {
        return Err(Error::Dependency(format!(
            "logical router {lr} of VPC {vpc}"
        )));
    }
    let written = write::write(ctx, LoadBalancerGroup::TABLE, || {
        let members: BTreeSet<_> = ctx.view.of_vpc(vpc, OWNER_KINDS);
        let holders: Vec<_> = switches
            .iter()
            .filter_map(|ls| ctx.view.switch(ls))
            .chain(ctx.view.router(&lr))
            .collect();
        plan::vpc_group(&name, ctx.view.group(&name).as_ref(), &members, &holders)
    })
    .await?;
    if written {
        tracing::info!(vpc, group = %name, "load-balancer group converged");
    }
    Ok(())
}

/// Deletes VPC `vpc`'s group, if there is one.
pub async fn remove(ctx: &Ctx, vpc: &str) -> Result<()> {
    let name = naming::lb_group(vpc);
    let Some(g) = ctx.view.group(&name) else {
        return Ok(());
    };
    let referrers = ctx.view.referrers(&g.uuid);
    write::write(ctx, LoadBalancerGroup::TABLE, || {
        plan::remove_group(&g, &referrers)
    })
    .await?;
    tracing::info!(vpc, group = %name, "removed the load-balancer group");
    Ok(())
}

/// Reconciles each VPC's group.
pub struct GroupReconciler;

#[async_trait::async_trait]
impl Reconcile for GroupReconciler {
    type Object = Vpc;
    type Context = Ctx;
    const KIND: &'static str = "VpcLoadBalancerGroup";
    // The Vpc's finalizer is the network service's; the group goes with the
    // Vpc's deletion event or the sweep.
    const CLEANS_UP: bool = false;

    async fn apply(vpc: &Vpc, ctx: &Ctx) -> Result<Action> {
        ctx.caches_ready().await;
        if vpc.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        converge(ctx, &vpc.name_any()).await?;
        Ok(Action::await_change())
    }
}
