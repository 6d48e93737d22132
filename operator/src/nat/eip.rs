//! IptablesEIP reconciler: ownership, an address from the external subnet,
//! and the list of rules using it. An EIP in use is not released.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::instrument;
use vpcnet_api::condition::Conditioned;
use vpcnet_api::{IptablesEIP, VpcNatGateway};

use super::{ACCEPTED, ownership, rules};
use crate::names::FINALIZER;
use crate::{Context, Error, Result, status};

/// The IPAM holder of an EIP.
pub fn holder(ns: &str, name: &str) -> String {
    format!("eip/{ns}/{name}")
}

/// The external subnet an EIP takes its address from.
pub fn external_subnet(
    eip: &IptablesEIP,
    gateway: Option<&VpcNatGateway>,
    default: &str,
) -> String {
    eip.spec
        .external_subnet
        .clone()
        .or_else(|| gateway.and_then(|g| g.spec.external_subnets.first().cloned()))
        .unwrap_or_else(|| default.to_string())
}

/// Reconciles one EIP.
#[instrument(skip_all, fields(kind = "IptablesEIP", namespace = %eip.namespace().unwrap_or_default(), name = %eip.name_any()))]
pub async fn reconcile(eip: Arc<IptablesEIP>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let ns = eip.namespace().unwrap_or_default();
    let api: Api<IptablesEIP> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, eip, |ev| async {
        match ev {
            Finalizer::Apply(e) => apply(&e, &ctx, &api).await,
            Finalizer::Cleanup(e) => cleanup(&e, &ctx, &api).await,
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics
        .observe("IptablesEIP", started.elapsed().as_secs_f64());
    result
}

async fn apply(eip: &IptablesEIP, ctx: &Context, api: &Api<IptablesEIP>) -> Result<Action> {
    let ns = eip.namespace().unwrap_or_default();
    let name = eip.name_any();
    let generation = eip.meta().generation;
    let previous = eip.conditions();
    let gw_name = eip.spec.nat_gw_dp.clone();
    let gateway = ctx
        .gateways
        .get(&ObjectRef::<VpcNatGateway>::new(&gw_name))
        .map(|g| (*g).clone());
    ctx.nat.ready().await;
    let users: Vec<String> = rules::users_of(&ctx.nat, &ns, &name)
        .into_iter()
        .map(|u| u.key)
        .collect();

    let decision: Result<Ipv4Addr, (&'static str, String)> = async {
        ownership::check(&ns, gateway.as_ref(), &gw_name, &ctx.vpcs.state())?;
        let subnet = external_subnet(eip, gateway.as_ref(), &ctx.external_subnet);
        let mut ipam = ctx.ipam.lock().await;
        let pool = ipam.pool_mut(&subnet).map_err(|_| {
            (
                "ExternalSubnetNotFound",
                format!("external subnet {subnet} does not exist or is not ready"),
            )
        })?;
        let holder = holder(&ns, &name);
        let got = match &eip.spec.v4ip {
            Some(v) => {
                let ip: Ipv4Addr = v
                    .parse()
                    .map_err(|_| ("InvalidIP", format!("v4ip {v} is not IPv4")))?;
                pool.allocate_fixed(&holder, ip)
            }
            None => pool.allocate(&holder),
        };
        got.map_err(|e| ("IPConflict", format!("external subnet {subnet}: {e}")))
    }
    .await;

    let (accepted, ip) = match &decision {
        Ok(ip) => (
            status::condition(
                previous,
                ACCEPTED,
                true,
                "Allocated",
                format!("{ip} on gateway {gw_name}"),
                generation,
            ),
            Some(ip.to_string()),
        ),
        Err((reason, msg)) => {
            if status::is_news(previous, ACCEPTED, reason, generation) {
                ctx.event(eip, true, reason, "Allocate", msg.clone()).await;
            }
            (
                status::condition(previous, ACCEPTED, false, reason, msg.clone(), generation),
                None,
            )
        }
    };
    let ready = super::ready(previous, &accepted, generation);
    let mut st =
        json!({"conditions": [accepted, ready], "observedGeneration": generation, "nat": users});
    if let Some(ip) = ip {
        st["ip"] = json!(ip);
        st["natGwDp"] = json!(gw_name);
    }
    // Re-run for every change of a rule naming it: write only news.
    if !status::unchanged(
        &serde_json::to_value(eip).unwrap_or_default()["status"],
        &st,
    ) {
        status::apply(api, &name, st).await?;
    }
    Ok(Action::requeue(Duration::from_secs(if decision.is_ok() {
        300
    } else {
        15
    })))
}

async fn cleanup(eip: &IptablesEIP, ctx: &Context, api: &Api<IptablesEIP>) -> Result<Action> {
    let ns = eip.namespace().unwrap_or_default();
    let name = eip.name_any();
    let users: Vec<String> = rules::users_of_live(&ctx.client, &ns, &name)
        .await?
        .into_iter()
        .map(|u| u.key)
        .collect();
    if !users.is_empty() {
        // Releasing an address rules still point at would hand it to the
        // next tenant while traffic for it still arrives.
        let msg = format!(
            "deletion waits until these rules are deleted: {}",
            users.join(", ")
        );
        let cond = status::ready(
            eip.conditions(),
            false,
            "InUse",
            msg.clone(),
            eip.meta().generation,
        );
        status::apply(api, &name, json!({"conditions": [cond], "nat": users})).await?;
        ctx.event(eip, true, "InUse", "Delete", msg.clone()).await;
        return Err(Error::Dependency(msg));
    }
    ctx.ipam
        .lock()
        .await
        .release_everywhere(&holder(&ns, &name));
    tracing::info!("released EIP");
    Ok(Action::await_change())
}
