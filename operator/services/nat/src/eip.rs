//! IptablesEIP reconciler: ownership, an address from the external subnet,
//! and the list of rules using it. An EIP in use is not released.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use vpcnet_api::condition::Conditioned;
use vpcnet_api::seal::Decision;
use vpcnet_api::{IptablesEIP, VpcNatGateway};

use super::{ACCEPTED, ownership, rules};
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use crate::{Ctx as Context, Error, Result};

/// The IPAM holder of an EIP.
pub fn holder(ns: &str, name: &str) -> vpcnet_ipam::Holder {
    vpcnet_ipam::Holder::eip(ns, name)
}

/// The external subnet an EIP takes its address from.
pub fn external_subnet(
    eip: &IptablesEIP,
    gateway: Option<&VpcNatGateway>,
    default: &str,
) -> String {
    match (&eip.spec.external_subnet, gateway) {
        (Some(s), _) => s.clone(),
        (None, Some(g)) => super::gateway::external_subnet(g, default),
        (None, None) => default.to_string(),
    }
}

/// How an IptablesEIP is reconciled.
pub struct EipReconciler;

#[async_trait::async_trait]
impl Reconcile for EipReconciler {
    type Object = IptablesEIP;
    type Context = Context;
    const KIND: &'static str = "IptablesEIP";

    async fn apply(eip: &IptablesEIP, ctx: &Context) -> Result<Action> {
        apply(eip, ctx, &api(eip, ctx)).await
    }

    async fn cleanup(eip: &IptablesEIP, ctx: &Context) -> Result<Action> {
        cleanup(eip, ctx, &api(eip, ctx)).await
    }
}

fn api(eip: &IptablesEIP, ctx: &Context) -> Api<IptablesEIP> {
    Api::namespaced(ctx.client.clone(), &eip.namespace().unwrap_or_default())
}

/// Checks that `subnet` may hold addresses of an EIP on `gateway`: an
/// external (provider) subnet the gateway is attached to. Any other subnet
/// is another network's address space (a tenant's own, or the default).
fn check_external_subnet(
    subnet: &str,
    gateway: &VpcNatGateway,
    default: &str,
    subnets: &[Arc<vpcnet_api::Subnet>],
) -> Result<(), (&'static str, String)> {
    let attached: Vec<String> = if gateway.spec.external_subnets.is_empty() {
        vec![default.to_string()]
    } else {
        gateway.spec.external_subnets.clone()
    };
    let is_external = subnets
        .iter()
        .any(|s| s.name_any() == subnet && s.spec.provider.is_some());
    if !attached.iter().any(|a| a == subnet) || !is_external {
        return Err((
            "ExternalSubnetNotAttached",
            format!(
                "externalSubnet {subnet} is not an external network of gateway {}; use one of: {}",
                gateway.name_any(),
                attached.join(", ")
            ),
        ));
    }
    Ok(())
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
    let users: Vec<String> = rules::users_of(&ctx.nat, rules::Users::Sealed(&ctx.seal), &ns, &name)
        .into_iter()
        .map(|u| u.key)
        .collect();

    let decision: Result<Ipv4Addr, (&'static str, String)> = async {
        ownership::check(&ns, gateway.as_ref(), &gw_name, &ctx.vpcs.state())?;
        let subnet = external_subnet(eip, gateway.as_ref(), &ctx.external_subnet);
        if let Some(gw) = gateway.as_ref() {
            check_external_subnet(&subnet, gw, &ctx.external_subnet, &ctx.subnets.state())?;
        }
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
        got.map_err(|e| {
            // Who holds it is another tenant's business: the log has it.
            if let vpcnet_ipam::IpamError::InUse { ip, holder: other } = &e {
                tracing::info!(%ip, holder = %other, "requested EIP address is held");
            }
            (
                "IPConflict",
                format!("external subnet {subnet}: {}", e.for_namespace(&ns)),
            )
        })
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
    let programmed = ip.as_deref().is_some_and(|ip| {
        super::sealed::programmed(
            &ctx.seal,
            eip,
            eip.status.as_ref().and_then(|s| s.programmed_seal.as_ref()),
            &gw_name,
            ip,
        )
    });
    let ready = super::ready(previous, &accepted, generation, programmed);
    let mut st =
        json!({"conditions": [accepted, ready], "observedGeneration": generation, "nat": users});
    if let Some(ip) = ip {
        st["seal"] = json!(ctx.seal.seal(&Decision::eip(eip, &gw_name, &ip)));
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
    let users: Vec<String> = rules::accepted_users_live(&ctx.client, &ctx.seal, &ns, &name)
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
        // A deletion that waits changes nothing else: the address, its
        // gateway and seal are applied again, or server-side apply would
        // drop them and take the EIP (and every rule on it) down.
        let mut st = json!({"conditions": [cond], "nat": users});
        if let Some(cur) = eip.status.as_ref() {
            for (k, v) in [
                ("ip", &cur.ip),
                ("natGwDp", &cur.nat_gw_dp),
                ("seal", &cur.seal),
            ] {
                if let Some(v) = v {
                    st[k] = json!(v);
                }
            }
            if let Some(c) = vpcnet_api::condition::find(&cur.conditions, ACCEPTED) {
                st["conditions"]
                    .as_array_mut()
                    .expect("conditions is a list")
                    .push(json!(c));
            }
            if let Some(g) = cur.observed_generation {
                st["observedGeneration"] = json!(g);
            }
        }
        if !status::unchanged(
            &serde_json::to_value(eip).unwrap_or_default()["status"],
            &st,
        ) {
            status::apply(api, &name, st).await?;
        }
        if status::is_news(
            eip.conditions(),
            vpcnet_api::condition::READY,
            "InUse",
            eip.meta().generation,
        ) {
            ctx.event(eip, true, "InUse", "Delete", msg.clone()).await;
        }
        return Err(Error::Dependency(msg));
    }
    ctx.ipam
        .lock()
        .await
        .release_everywhere(&holder(&ns, &name));
    tracing::info!("released EIP");
    Ok(Action::await_change())
}
