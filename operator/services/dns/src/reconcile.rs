//! VpcDns reconciler: dereference (the caches and the API server's
//! address) -> validate (pure) -> build the zone and the objects (pure) ->
//! apply them through one `KubeApplier`, which deletes children no longer
//! desired -> the resolver's load balancers -> status. A refused VpcDns
//! runs nothing and has no rows: nothing is left half-programmed.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use vpcnet_api::condition::READY;
use vpcnet_api::contract::{DEFAULT_VPC, naming};
use vpcnet_api::{VpcDns, VpcDnsStatus};
use vpcnet_runtime::applier::KubeApplier;
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::refusal::Reason;
use vpcnet_runtime::status;

use crate::objects::{DnsPlan, build};
use crate::reasons::{DnsReason, DnsRefusal, SERVING};
use crate::validate::{Facts, Valid, validate};
use crate::zone::{ZoneInputs, build as build_zone};
use crate::{Ctx, Error, Result, backends, rows};

fn previous(dns: &VpcDns) -> Vec<Condition> {
    dns.status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn owner_reference(dns: &VpcDns) -> OwnerReference {
    OwnerReference {
        api_version: VpcDns::api_version(&()).into(),
        kind: VpcDns::kind(&()).into(),
        name: dns.name_any(),
        uid: dns.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

async fn report(
    ctx: &Ctx,
    dns: &VpcDns,
    ready: Condition,
    vip: Option<String>,
    ready_replicas: Option<i32>,
) -> Result<()> {
    let generation = dns.metadata.generation;
    let st = VpcDnsStatus {
        conditions: vec![ready],
        observed_generation: generation,
        vip,
        ready_replicas,
    };
    status::report_by(
        &Api::<VpcDns>::all(ctx.client.clone()),
        &dns.name_any(),
        dns.status.as_ref(),
        &st,
        Clone::clone,
    )
    .await?;
    Ok(())
}

/// Deletes every child and row of `dns`.
async fn withdraw(ctx: &Ctx, dns: &VpcDns) -> Result<()> {
    let applier = applier(ctx, dns);
    prune(ctx, &applier).await?;
    rows::remove(ctx, &dns.name_any()).await?;
    Ok(())
}

fn applier(ctx: &Ctx, dns: &VpcDns) -> KubeApplier {
    KubeApplier::new(
        ctx.client.clone(),
        VpcDns::kind(&()).as_ref(),
        &dns.uid().unwrap_or_default(),
    )
}

async fn prune(ctx: &Ctx, applier: &KubeApplier) -> Result<()> {
    let ns = Some(ctx.rt.namespace.as_str());
    applier.prune::<Deployment>(ns).await?;
    applier.prune::<PodDisruptionBudget>(ns).await?;
    applier.prune::<Service>(ns).await?;
    applier.prune::<RoleBinding>(ns).await?;
    applier.prune::<Role>(ns).await?;
    applier.prune::<ServiceAccount>(ns).await?;
    applier.prune::<ConfigMap>(ns).await?;
    Ok(())
}

async fn refuse(ctx: &Ctx, dns: &VpcDns, r: DnsRefusal) -> Result<Action> {
    r.announce(&ctx.rt, dns, &previous(dns), READY, "Validate")
        .await;
    withdraw(ctx, dns).await?;
    let cond = r.condition(&previous(dns), READY, dns.metadata.generation);
    report(ctx, dns, cond, None, None).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// The zone of `v`'s VPC as JSON.
fn zone_json(ctx: &Ctx, v: &Valid) -> String {
    let namespaces: Vec<String> = ctx
        .namespaces
        .state()
        .iter()
        .map(|n| n.name_any())
        .collect();
    let (subnets, services, slices, pods) = (
        ctx.subnets.state(),
        ctx.services.state(),
        ctx.slices.state(),
        ctx.pods.state(),
    );
    build_zone(&ZoneInputs {
        vpc: &v.vpc,
        domain: &v.domain,
        upstreams: &v.upstreams,
        namespaces: &namespaces,
        subnets: &subnets,
        default_subnet: ctx.settings.default_subnet.as_deref(),
        services: &services,
        slices: &slices,
        pods: &pods,
        service_cidr: ctx.settings.service_cidr,
        vpc_cidrs: &v.vpc_cidrs,
    })
    .to_json()
}

/// Reconciles VpcDnses.
pub struct DnsReconciler;

#[async_trait::async_trait]
impl Reconcile for DnsReconciler {
    type Object = VpcDns;
    type Context = Ctx;
    const KIND: &'static str = "VpcDns";

    async fn apply(dns: &VpcDns, ctx: &Ctx) -> Result<Action> {
        ctx.caches_ready().await;
        let name = dns.name_any();
        let (vpcs, subnets, dnses) = (ctx.vpcs.state(), ctx.subnets.state(), ctx.dnses.state());
        let facts = Facts {
            vpcs: &vpcs,
            subnets: &subnets,
            dnses: &dnses,
            cluster_dns: ctx.settings.cluster_dns,
            default_upstreams: &ctx.settings.upstreams,
        };
        let v = match validate(dns, &facts) {
            Ok(v) => v,
            Err(r) => return refuse(ctx, dns, r).await,
        };
        let default_vpc = v.vpc == DEFAULT_VPC;
        // The servers first: a server that goes (a rollout, a node lost)
        // leaves the load balancer on the next pod event, not after the
        // fifteen API calls of the children below.
        let pods = ctx.pods.state();
        let servers = backends::addresses(&pods, &ctx.rt.namespace, &name);
        if !default_vpc {
            let switches: Vec<String> = subnets
                .iter()
                .filter(|s| s.spec.provider.is_none() && s.vpc_name() == v.vpc)
                .filter(|s| s.metadata.deletion_timestamp.is_none())
                .map(|s| naming::switch(&s.name_any()))
                .collect();
            rows::converge(
                ctx,
                &name,
                &v.vpc,
                backends::rows(&name, v.vip, &servers),
                &switches,
            )
            .await?;
        }
        let api_endpoint = vpcnet_runtime::api_server::endpoint(&ctx.client)
            .await?
            .ok_or_else(|| Error::Dependency("the endpoints of default/kubernetes".into()))?;
        let plan = DnsPlan {
            name: name.clone(),
            namespace: ctx.rt.namespace.clone(),
            image: ctx.settings.image.clone(),
            pull_policy: ctx.settings.pull_policy.clone(),
            subnet: v.subnet.clone(),
            replicas: dns.spec.replicas,
            vip: v.vip,
            default_vpc,
            api_endpoint,
            upstreams: v.upstreams.clone(),
            zone_json: zone_json(ctx, &v),
            owner: owner_reference(dns),
        };
        let objs = build(&plan);
        let mut applier = applier(ctx, dns);
        applier.apply(objs.zone).await?;
        applier.apply(objs.service_account).await?;
        applier.apply(objs.role).await?;
        applier.apply(objs.role_binding).await?;
        if let Some(svc) = objs.service {
            match applier.apply(svc).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 422 => {
                    return refuse(
                        ctx,
                        dns,
                        DnsRefusal::new(
                            DnsReason::VipTaken,
                            format!(
                                "the resolver address {} cannot be given to Service {}/{}: {}",
                                v.vip,
                                ctx.rt.namespace,
                                naming::dns_workload(&name),
                                e.message
                            ),
                        ),
                    )
                    .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        applier.apply(objs.deployment).await?;
        applier.apply(objs.disruption_budget).await?;
        prune(ctx, &applier).await?;

        let ready_replicas = ctx
            .deployments
            .state()
            .iter()
            .find(|d| d.name_any() == naming::dns_workload(&name))
            .and_then(|d| d.status.as_ref()?.ready_replicas)
            .unwrap_or(0);
        let serving = servers.len();
        let prev = previous(dns);
        let generation = dns.metadata.generation;
        let cond = if serving > 0 {
            status::ready(
                &prev,
                true,
                SERVING,
                format!(
                    "{serving} of {} server(s) answer at {} in VPC {}",
                    dns.spec.replicas, v.vip, v.vpc
                ),
                generation,
            )
        } else {
            status::ready(
                &prev,
                false,
                DnsReason::NoReadyServers.as_str(),
                format!(
                    "waiting for a server of {} to be ready in subnet {}",
                    naming::dns_workload(&name),
                    v.subnet
                ),
                generation,
            )
        };
        report(
            ctx,
            dns,
            cond,
            Some(v.vip.to_string()),
            Some(ready_replicas),
        )
        .await?;
        Ok(Action::requeue(Duration::from_secs(if serving > 0 {
            300
        } else {
            5
        })))
    }

    async fn cleanup(dns: &VpcDns, ctx: &Ctx) -> Result<Action> {
        // The children go with their owner; the rows are ours to remove.
        let n = rows::remove(ctx, &dns.name_any()).await?;
        tracing::info!(vpcdns = %dns.name_any(), rows = n, "removed the resolver load balancers");
        Ok(Action::await_change())
    }
}
