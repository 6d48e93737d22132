//! A subnet's base group: the default deny of every pod of the subnet that
//! is in any SecurityGroup, and what such a pod needs to live (its own
//! gateway, neighbour discovery). One per pod subnet, whether or not any
//! of its pods is in a group yet (an empty Port_Group costs no flows), so
//! a pod's first membership is one transaction.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use ovn::Owner;
use vpcnet_api::Subnet;
use vpcnet_api::contract::naming;
use vpcnet_runtime::driver::Reconcile;

use crate::{BASE_OWNER_KIND, Ctx, Result, build, plan, write};

/// The OVN owner of subnet `subnet`'s base rows.
pub fn owner(subnet: &str) -> Owner {
    Owner::cluster(BASE_OWNER_KIND, subnet)
}

/// The gateway of a pod subnet (`None` for an external network or a range
/// that is not IPv4).
pub fn gateway(subnet: &Subnet) -> Option<std::net::IpAddr> {
    if subnet.spec.provider.is_some() {
        return None;
    }
    let cidr: ipnet::Ipv4Net = subnet.spec.cidr_block.parse().ok()?;
    Some(vpcnet_api::subnet::router_address(subnet.spec.gateway.as_deref(), &cidr).into())
}

/// Removes subnet `name`'s base rows.
pub async fn remove(ctx: &Ctx, name: &str) -> Result<bool> {
    let owner = owner(name);
    let pg = naming::security_base_port_group(name);
    write::write(ctx, || {
        plan::remove(
            &owner,
            ctx.view.port_group(&pg).as_ref(),
            &ctx.view.acls(&owner.id()),
        )
    })
    .await
}

/// Reconciles subnets' base groups.
pub struct BaseReconciler;

#[async_trait::async_trait]
impl Reconcile for BaseReconciler {
    type Object = Subnet;
    type Context = Ctx;
    const KIND: &'static str = "SubnetSecurityBase";
    // The network service owns the Subnet's finalizer; its deletion event
    // (or the garbage collection) removes the base rows.
    const CLEANS_UP: bool = false;

    async fn apply(subnet: &Subnet, ctx: &Ctx) -> Result<Action> {
        let name = subnet.name_any();
        let gw = gateway(subnet).filter(|_| subnet.metadata.deletion_timestamp.is_none());
        let Some(gw) = gw else {
            remove(ctx, &name).await?;
            return Ok(Action::await_change());
        };
        let rows = build::base_rows(&name, gw);
        let owner = owner(&name);
        let pg = rows.port_group.name.clone();
        if write::write(ctx, || {
            plan::group(
                &owner,
                rows.port_group.clone(),
                Some(rows.acls.clone()),
                ctx.view.port_group(&pg).as_ref(),
                &ctx.view.acls(&owner.id()),
                None,
            )
        })
        .await?
        {
            tracing::info!(subnet = %name, %gw, "base security group written");
        }
        Ok(Action::await_change())
    }
}
