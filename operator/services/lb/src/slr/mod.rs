//! SwitchLBRule: a tenant's VIP load-balancing to the pods its selector
//! picks or to fixed endpoints of its VPC. dereference -> validate (pure)
//! -> build children (pure) -> apply them -> rows from their backends
//! (pure) -> write -> status. The rule's headless Service and, for fixed
//! endpoints, its EndpointSlice are the rule's children; their backends go
//! through the same load-balancer machinery as every Service's.

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use ovn::Owner;
use vpcnet_api::condition::READY;
use vpcnet_api::contract::conditions::ACCEPTED;
use vpcnet_api::contract::naming;
use vpcnet_api::{SwitchLBRule, SwitchLBRuleStatus};
use vpcnet_runtime::applier::KubeApplier;
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use crate::reasons::LbRefusal;
use crate::{Ctx, Result, placement, service_lb};

/// The owner kind of a rule's rows.
pub const OWNER_KIND: &str = "SwitchLBRule";

/// The OVN owner of rule `ns/name`'s rows.
pub fn owner(ns: &str, name: &str) -> Owner {
    Owner::new(OWNER_KIND, ns, name)
}

/// Reconciles SwitchLBRules.
pub struct SlrReconciler;

fn api(rule: &SwitchLBRule, ctx: &Ctx) -> Api<SwitchLBRule> {
    Api::namespaced(ctx.client.clone(), &rule.namespace().unwrap_or_default())
}

/// The rule's status (pure): `Accepted` for the verdict, `Ready` once rows
/// carry at least one backend.
pub fn rule_status(
    rule: &SwitchLBRule,
    verdict: &std::result::Result<(), LbRefusal>,
    backends: Vec<String>,
) -> SwitchLBRuleStatus {
    let generation = rule.meta().generation;
    let previous = rule
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let (accepted, ready) = match verdict {
        Err(r) => (
            r.condition(previous, ACCEPTED, generation),
            r.condition(previous, READY, generation),
        ),
        Ok(()) => {
            let accepted = status::condition(previous, ACCEPTED, true, "Valid", "", generation);
            let ready = if backends.is_empty() {
                status::ready(
                    previous,
                    false,
                    "NoBackends",
                    format!(
                        "programmed, but no backend is ready: connections to {} are refused",
                        rule.spec.vip
                    ),
                    generation,
                )
            } else {
                status::ready(
                    previous,
                    true,
                    "Programmed",
                    format!("{} over {} backends", rule.spec.vip, backends.len()),
                    generation,
                )
            };
            (accepted, ready)
        }
    };
    SwitchLBRuleStatus {
        conditions: vec![accepted, ready],
        observed_generation: generation,
        service: verdict
            .is_ok()
            .then(|| naming::slr_service(&rule.name_any())),
        backends,
    }
}

async fn program(
    rule: &SwitchLBRule,
    ctx: &Ctx,
) -> Result<std::result::Result<Vec<String>, LbRefusal>> {
    let ns = rule.namespace().unwrap_or_default();
    let name = rule.name_any();
    let subnets = ctx.subnets.state();
    let default = ctx.default_subnet.as_deref();
    let vpc = placement::vpc_of(&ns, &subnets, default);
    let reserved = decide::reserved_in(&ns, &ctx.vips.state());
    let rivals: Vec<Arc<SwitchLBRule>> = ctx
        .rules
        .state()
        .into_iter()
        .filter(|r| {
            let rns = r.namespace().unwrap_or_default();
            vpc.as_ref().is_some_and(|v| {
                placement::vpc_of(&rns, &subnets, default).is_some_and(|o| o.name == v.name)
            })
        })
        .collect();
    let accepted = match decide::validate(rule, vpc.as_ref(), &reserved, &rivals) {
        Ok(a) => a,
        Err(r) => {
            // Nothing half-programmed: a refused rule has no rows.
            service_lb::converge(ctx, &owner(&ns, &name), Vec::new()).await?;
            return Ok(Err(r));
        }
    };
    let vpc = vpc.expect("validated");
    let mut applier = KubeApplier::new(
        ctx.client.clone(),
        OWNER_KIND,
        &rule.uid().unwrap_or_default(),
    );
    applier.apply(decide::headless_service(rule)).await?;
    match decide::endpoint_slice(rule) {
        Some(slice) => {
            applier.apply(slice).await?;
        }
        // Kubernetes copies the Service's labels (ours among them) onto the
        // slices it keeps for a selector, so a rule that switched from fixed
        // endpoints to a selector drops its own slice by name, not by label.
        None => drop_own_slice(ctx, &ns, &naming::slr_service(&name)).await?,
    }
    let slices = service_lb::slices_of(ctx, &ns, &naming::slr_service(&name));
    let resolve = service_lb::resolver(ctx);
    let (rows, backends) = decide::rows(rule, accepted.vip, &slices, &vpc, &resolve);
    service_lb::converge(ctx, &owner(&ns, &name).with_vpc(&vpc.name), rows).await?;
    Ok(Ok(backends))
}

/// Deletes the EndpointSlice `name` if it is ours (fixed endpoints).
async fn drop_own_slice(ctx: &Ctx, ns: &str, name: &str) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let ours = api.get_opt(name).await?.is_some_and(|s| {
        s.labels().get(decide::MANAGED_BY_LABEL).map(String::as_str) == Some(decide::MANAGED_BY)
    });
    if ours {
        api.delete(name, &Default::default()).await?;
        tracing::info!(
            namespace = ns,
            slice = name,
            "deleted the rule's fixed-endpoint slice"
        );
    }
    Ok(())
}

#[async_trait::async_trait]
impl Reconcile for SlrReconciler {
    type Object = SwitchLBRule;
    type Context = Ctx;
    const KIND: &'static str = "SwitchLBRule";

    async fn apply(rule: &SwitchLBRule, ctx: &Ctx) -> Result<Action> {
        ctx.caches_ready().await;
        let outcome = program(rule, ctx).await?;
        let (verdict, backends) = match outcome {
            Ok(b) => (Ok(()), b),
            Err(r) => (Err(r), Vec::new()),
        };
        if let Err(r) = &verdict {
            let previous = rule
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            r.announce(&ctx.rt, rule, &previous, ACCEPTED, "Program")
                .await;
        }
        let st = rule_status(rule, &verdict, backends);
        status::report_by(
            &api(rule, ctx),
            &rule.name_any(),
            rule.status.as_ref(),
            &st,
            Clone::clone,
        )
        .await?;
        Ok(if verdict.is_ok() {
            Action::await_change()
        } else {
            Action::requeue(Duration::from_secs(30))
        })
    }

    async fn cleanup(rule: &SwitchLBRule, ctx: &Ctx) -> Result<Action> {
        let ns = rule.namespace().unwrap_or_default();
        service_lb::converge(ctx, &owner(&ns, &rule.name_any()), Vec::new()).await?;
        tracing::info!(namespace = %ns, rule = %rule.name_any(), "removed the rule's load balancers");
        Ok(Action::await_change())
    }
}
