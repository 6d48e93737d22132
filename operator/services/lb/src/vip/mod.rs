//! Vip: an address reserved in a subnet of the tenant's VPC, from the
//! operator's IPAM: dereference -> validate (pure) -> allocate -> status.
//! The address counts in the Subnet's usage like a pod's and is freed when
//! the Vip goes (its finalizer).

pub mod decide;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use vpcnet_api::Vip;
use vpcnet_api::condition::READY;
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use crate::{Ctx, Result};

/// Reconciles Vips.
pub struct VipReconciler;

fn api(vip: &Vip, ctx: &Ctx) -> Api<Vip> {
    Api::namespaced(ctx.client.clone(), &vip.namespace().unwrap_or_default())
}

#[async_trait::async_trait]
impl Reconcile for VipReconciler {
    type Object = Vip;
    type Context = Ctx;
    const KIND: &'static str = "Vip";

    async fn apply(vip: &Vip, ctx: &Ctx) -> Result<Action> {
        ctx.caches_ready().await;
        let decision = decide::validate(
            vip,
            &ctx.vpcs.state(),
            &ctx.subnets.state(),
            ctx.default_subnet.as_deref(),
        );
        let decision = match decision {
            Ok(w) => decide::allocate(&mut *ctx.ipam.lock().await, vip, &w),
            Err(r) => Err(r),
        };
        let previous = vip
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        if let Err(r) = &decision {
            r.announce(&ctx.rt, vip, &previous, READY, "Reserve").await;
        } else if let Some(old) = vip.status.as_ref().and_then(|s| s.v4ip.as_ref())
            && decision.as_ref().is_ok_and(|ip| ip.to_string() != *old)
        {
            tracing::info!(vip = %vip.name_any(), %old, "Vip address changed");
        }
        let st = decide::vip_status(vip, &decision, &ctx.seal);
        status::report_by(
            &api(vip, ctx),
            &vip.name_any(),
            vip.status.as_ref(),
            &st,
            Clone::clone,
        )
        .await?;
        Ok(Action::requeue(Duration::from_secs(if decision.is_ok() {
            300
        } else {
            15
        })))
    }

    async fn cleanup(vip: &Vip, ctx: &Ctx) -> Result<Action> {
        let holder = decide::holder(&vip.namespace().unwrap_or_default(), &vip.name_any());
        ctx.ipam.lock().await.release_everywhere(&holder);
        tracing::info!(%holder, "released the Vip's address");
        Ok(Action::await_change())
    }
}
