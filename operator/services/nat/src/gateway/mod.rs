//! VpcNatGateway reconciler: dereference what the gateway names ->
//! validate it (pure) -> allocate its external address (the only IPAM
//! step) -> build its workload (pure, typed objects) -> apply them through
//! one `KubeApplier`, which also deletes children no longer desired ->
//! install or withdraw the VPC's default route -> status.

pub mod allocate;
pub mod attachment;
pub mod facts;
pub mod node_lost;
pub mod objects;
pub mod replicas;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use vpcnet_api::condition::Conditioned;
use vpcnet_api::contract::naming;
use vpcnet_api::{IptablesEIP, Subnet, VpcNatGateway};
use vpcnet_ipam::Holder;
use vpcnet_runtime::applier::KubeApplier;
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::refusal::{Halt, Refusal};

use super::ACCEPTED;
use crate::{Ctx as Context, Error, Result};
pub use objects::{AGENT_CLUSTER_ROLE, GatewayObjects, GatewayPlan, build, node_selector};
use validate::{GatewayReason, GatewayRefusal};

/// The external subnet of the gateway's `net1`: its first, else `default`.
pub fn external_subnet(gw: &VpcNatGateway, default: &str) -> String {
    gw.spec
        .external_subnets
        .first()
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// IPAM holder of the gateway's external (`net1`) address (with two
/// replicas: that of replica 0, and the shared LAN address).
pub fn external_holder(name: &str) -> Holder {
    Holder::nat_gateway(name)
}

/// IPAM holder of replica 1's external address (`/` is in no object name,
/// so no gateway holds this one by its own name).
pub fn second_external_holder(name: &str) -> Holder {
    Holder::nat_gateway(&format!("{name}/1"))
}

/// How a VpcNatGateway is reconciled.
pub struct GatewayReconciler;

#[async_trait::async_trait]
impl Reconcile for GatewayReconciler {
    type Object = VpcNatGateway;
    type Context = Context;
    const KIND: &'static str = "VpcNatGateway";

    async fn apply(gw: &VpcNatGateway, ctx: &Context) -> Result<Action> {
        let api = Api::all(ctx.client.clone());
        match plan(gw, ctx).await {
            Ok(plan) => run(gw, ctx, &api, &plan).await,
            Err(Halt::Refused(r)) => refuse(gw, ctx, &api, r).await,
            Err(Halt::Failed(e)) => Err(e),
        }
    }

    async fn cleanup(gw: &VpcNatGateway, ctx: &Context) -> Result<Action> {
        cleanup(gw, ctx, &Api::all(ctx.client.clone())).await
    }
}

/// The owner reference every child carries (so Kubernetes deletes them
/// with the gateway).
fn owner_reference(gw: &VpcNatGateway) -> OwnerReference {
    OwnerReference {
        api_version: VpcNatGateway::api_version(&()).into(),
        kind: VpcNatGateway::kind(&()).into(),
        name: gw.name_any(),
        uid: gw.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Dereference, validate, allocate: everything the workload needs.
async fn plan(gw: &VpcNatGateway, ctx: &Context) -> Result<GatewayPlan, Halt<GatewayReason>> {
    let facts = facts::dereference(gw, ctx).await?;
    let v = validate::validate(gw, &facts)?;
    let external_ip = {
        let mut ipam = ctx.ipam.lock().await;
        let first = allocate::allocate(
            &mut ipam,
            &gw.name_any(),
            &ctx.namespace,
            &v,
            gw.spec.replicas,
        )?;
        let second = allocate::allocate_second(&mut ipam, &gw.name_any(), &v, gw.spec.replicas)?;
        (first, second)
    };
    let (external_ip, second_external_ip) = external_ip;
    Ok(GatewayPlan {
        name: gw.name_any(),
        namespace: ctx.namespace.clone(),
        image: ctx.natgw_image.clone(),
        pull_policy: ctx.image_pull_policy.clone(),
        subnet: v.subnet,
        lan_ip: v.lan_ip,
        lan_gateway: v.lan_gateway,
        vpc_cidrs: v.vpc_cidrs,
        nad: v.nad,
        nad_without_ipam: v.nad_without_ipam,
        external_ip,
        second_external_ip,
        external_gateway: v.external_gateway,
        node_selector: node_selector(&gw.spec.selector),
        tolerations: gw.spec.tolerations.clone(),
        owner: owner_reference(gw),
        api_endpoint: facts.api_endpoint,
        seal_key_id: ctx.seal.id(),
        replicas: gw.spec.replicas,
        lan_prefix: v.lan_prefix,
        lease_duration_ms: gw.spec.lease_duration_ms,
    })
}

/// A refused gateway: the verdict in its status, an Event if it is news,
/// and it is nobody's next hop.
async fn refuse(
    gw: &VpcNatGateway,
    ctx: &Context,
    api: &Api<VpcNatGateway>,
    r: GatewayRefusal,
) -> Result<Action> {
    r.announce(
        &ctx.rt,
        gw,
        gw.conditions(),
        vpcnet_api::condition::READY,
        "Validate",
    )
    .await;
    status::report(api, gw, status::refused(gw, &r)).await?;
    crate::route::converge(ctx, gw, false).await?;
    Ok(Action::requeue(Duration::from_secs(15)))
}

/// Applies the workload, the route and the status of an accepted gateway.
async fn run(
    gw: &VpcNatGateway,
    ctx: &Context,
    api: &Api<VpcNatGateway>,
    plan: &GatewayPlan,
) -> Result<Action> {
    let objs = build(plan);
    let mut applier = KubeApplier::new(
        ctx.client.clone(),
        VpcNatGateway::kind(&()).as_ref(),
        &gw.uid().unwrap_or_default(),
    );
    applier.apply(objs.service_account).await?;
    applier.apply(objs.cluster_binding).await?;
    applier.apply(objs.snapshot).await?;
    applier.apply(objs.snapshot_role).await?;
    applier.apply(objs.snapshot_binding).await?;
    applier.apply(objs.statefulset).await?;
    if let Some(l) = objs.lease {
        applier.apply(l).await?;
    }
    if let Some(b) = objs.disruption_budget {
        applier.apply(b).await?;
    }
    if let Some(n) = objs.attachment {
        applier.apply(n).await?;
    }
    let ns = Some(plan.namespace.as_str());
    applier.prune::<ServiceAccount>(ns).await?;
    applier.prune::<ClusterRoleBinding>(None).await?;
    applier.prune::<ConfigMap>(ns).await?;
    applier.prune::<Role>(ns).await?;
    applier.prune::<RoleBinding>(ns).await?;
    applier.prune::<StatefulSet>(ns).await?;
    applier.prune::<Lease>(ns).await?;
    applier.prune::<PodDisruptionBudget>(ns).await?;
    applier
        .prune::<attachment::NetworkAttachmentDefinition>(ns)
        .await?;

    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &plan.namespace);
    let mut replicas = Vec::new();
    for i in 0..plan.replicas.max(1) as u32 {
        if let Some(p) = pods.get_opt(&naming::natgw_replica(&plan.name, i)).await?
            && !release_from_lost_node(gw, ctx, &pods, &p).await?
        {
            replicas.push(p);
        }
    }
    let (pod, active, failover) = if plan.is_ha() {
        let lease = Api::<Lease>::namespaced(ctx.client.clone(), &plan.namespace)
            .get_opt(&naming::natgw_lease(&plan.name))
            .await?;
        let active = replicas::active(&plan.namespace, lease.as_ref(), &replicas);
        let failover = active.as_ref().and_then(|a| {
            replicas::failover(&plan.namespace, gw.status.as_ref(), lease.as_ref(), a)
        });
        if let Some(f) = &failover {
            announce_failover(gw, ctx, f).await;
        }
        let pod = active.as_ref().and_then(|a| {
            replicas
                .iter()
                .find(|p| format!("{}/{}", plan.namespace, p.name_any()) == a.pod)
                .cloned()
        });
        (pod, active, failover)
    } else {
        (replicas.into_iter().next(), None, None)
    };
    let vpc = ctx
        .vpcs
        .state()
        .into_iter()
        .find(|v| v.name_any() == gw.spec.vpc);
    let mut st = status::running(gw, plan, pod.as_ref(), vpc.as_deref());
    if plan.is_ha() {
        st.active = active;
        st.last_failover =
            failover.or_else(|| gw.status.as_ref().and_then(|s| s.last_failover.clone()));
    }
    let pod_ready = status::pod_ready(pod.as_ref());
    status::report(api, gw, st).await?;
    crate::route::converge(ctx, gw, true).await?;
    Ok(Action::requeue(Duration::from_secs(if pod_ready {
        60
    } else {
        3
    })))
}

/// An Event per change of the active replica: a warning when the active
/// died or was cut off, normal when it handed over or took it first.
async fn announce_failover(gw: &VpcNatGateway, ctx: &Context, f: &vpcnet_api::Failover) {
    let warning = f.cause == "LeaseExpired";
    let from = f.from.as_deref().unwrap_or("none");
    ctx.rt
        .event(
            gw,
            warning,
            "Failover",
            "Failover",
            format!("{} is active (was {from}): {}", f.to, f.cause),
        )
        .await;
}

/// Deletes the gateway's pod without its kubelet if its node is lost (see
/// [`node_lost`]), so the StatefulSet starts a successor elsewhere; true if
/// it did. The uid precondition spares a successor of the same name.
async fn release_from_lost_node(
    gw: &VpcNatGateway,
    ctx: &Context,
    pods: &Api<Pod>,
    pod: &Pod,
) -> Result<bool> {
    let Some(bound) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
        return Ok(false);
    };
    let node = Api::<Node>::all(ctx.client.clone()).get_opt(bound).await?;
    let Some(why) = node_lost::lost_node_reason(pod, node.as_ref()) else {
        return Ok(false);
    };
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods.delete(&pod.name_any(), &dp).await {
        Ok(_) => {}
        // Gone already, or already replaced by its successor.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    tracing::warn!(gateway = %gw.name_any(), pod = %pod.name_any(), %why, "deleted the gateway pod of a lost node");
    ctx.rt
        .event(
            gw,
            true,
            "NodeLost",
            "Failover",
            format!(
                "deleted gateway pod {} because {why}; its successor restores the rules from the snapshot",
                pod.name_any()
            ),
        )
        .await;
    Ok(true)
}

async fn cleanup(gw: &VpcNatGateway, ctx: &Context, api: &Api<VpcNatGateway>) -> Result<Action> {
    let name = gw.name_any();
    // Only EIPs the operator gave an address on this gateway hold it back;
    // an EIP refused here (another tenant's, say) is no user of it.
    let eips: Vec<String> = Api::<IptablesEIP>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .iter()
        .filter(|e| {
            e.spec.nat_gw_dp == name
                && super::sealed::eip(&ctx.seal, e).is_some_and(|(_, g)| g == name)
        })
        .map(|e| format!("{}/{}", e.namespace().unwrap_or_default(), e.name_any()))
        .collect();
    if !eips.is_empty() {
        // Refused rather than cascaded: EIPs belong to tenants, and deleting
        // their addresses under them is a surprise no tenant asked for.
        let r = Refusal::new(
            GatewayReason::InUse,
            format!(
                "deletion waits until the {} EIP(s) on this gateway are deleted: {}",
                eips.len(),
                eips.join(", ")
            ),
        );
        // Everything else stays as it is (Accepted keeps the VPC's default
        // route): a deletion that waits changes nothing until it proceeds.
        status::report(api, gw, status::waiting(gw, &r)).await?;
        r.announce(
            &ctx.rt,
            gw,
            gw.conditions(),
            vpcnet_api::condition::READY,
            "Delete",
        )
        .await;
        return Err(Error::Dependency(r.message));
    }
    // The deletion proceeds: the VPC's default route moves to the next
    // gateway (re-run by the watch on gateways) or goes.
    crate::route::withdraw(ctx, &name).await?;
    ctx.ipam
        .lock()
        .await
        .release_everywhere(&external_holder(&name));
    ctx.ipam
        .lock()
        .await
        .release_everywhere(&second_external_holder(&name));
    // The StatefulSet, ServiceAccount, bindings and snapshot go with their owner.
    Ok(Action::await_change())
}

/// Whether the gateway's plan was accepted for its current spec: only such
/// a gateway may be a VPC's next hop. One being deleted keeps its route
/// until its deletion proceeds.
pub fn accepted(gw: &VpcNatGateway) -> bool {
    // Marking an object for deletion bumps its generation: the verdict for
    // the spec before that still stands while the deletion waits.
    let deleting = gw.meta().deletion_timestamp.is_some();
    let current = |c: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition| {
        c.status == "True" && (deleting || c.observed_generation == gw.meta().generation)
    };
    match vpcnet_api::condition::find(gw.conditions(), ACCEPTED) {
        Some(c) => current(&c),
        // Written by an operator from before `Accepted`: its Ready says the
        // same until this one reconciles the gateway.
        None => vpcnet_api::condition::find(gw.conditions(), vpcnet_api::condition::READY)
            .as_ref()
            .is_some_and(current),
    }
}

/// The gateway of `vpc` that is its default next hop: the oldest accepted
/// one, unless the VPC routes `0.0.0.0/0` in its own spec (pure).
pub fn route_holder<'a>(
    vpc: &str,
    spec: &vpcnet_api::VpcSpec,
    gateways: &'a [Arc<VpcNatGateway>],
) -> Option<&'a VpcNatGateway> {
    if spec
        .static_routes
        .iter()
        .any(|r| r.cidr == crate::route::DEFAULT_PREFIX)
    {
        return None;
    }
    let mut gws: Vec<&Arc<VpcNatGateway>> = gateways
        .iter()
        .filter(|g| g.spec.vpc == vpc && accepted(g))
        .collect();
    gws.sort_by_key(|g| (g.creation_timestamp().map(|t| t.0), g.name_any()));
    gws.first().map(|g| &***g)
}

/// Subnets of the VPC a gateway is in (used to re-trigger gateways).
pub fn uses_subnet(gw: &VpcNatGateway, subnet: &Subnet) -> bool {
    gw.spec.subnet == subnet.name_any()
        || gw
            .spec
            .external_subnets
            .iter()
            .any(|s| *s == subnet.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_unless_the_vpc_has_its_own() {
        let gw = Arc::new(VpcNatGateway::new(
            "g",
            vpcnet_api::VpcNatGatewaySpec {
                vpc: "v".into(),
                subnet: "s".into(),
                lan_ip: "10.0.1.254".into(),
                ..Default::default()
            },
        ));
        assert!(
            route_holder(
                "v",
                &vpcnet_api::VpcSpec::default(),
                std::slice::from_ref(&gw)
            )
            .is_none(),
            "a gateway not (yet) accepted is nobody's next hop"
        );
        let mut valid = (*gw).clone();
        valid.metadata.generation = Some(1);
        valid.status = Some(vpcnet_api::VpcNatGatewayStatus {
            conditions: vec![vpcnet_api::condition::new(
                ACCEPTED,
                true,
                "Valid",
                "",
                Some(1),
            )],
            ..Default::default()
        });
        let mut refused = valid.clone();
        refused.metadata.name = Some("a-refused".into());
        refused.spec.lan_ip = "10.0.1.1".into();
        refused.status = Some(vpcnet_api::VpcNatGatewayStatus {
            conditions: vec![vpcnet_api::condition::new(
                ACCEPTED,
                false,
                "InvalidLanIp",
                "",
                Some(1),
            )],
            ..Default::default()
        });
        let mut deleting = valid.clone();
        deleting.metadata.generation = Some(2);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        for gws in [
            vec![Arc::new(refused), Arc::new(valid.clone())],
            vec![Arc::new(deleting)],
        ] {
            let r = route_holder("v", &vpcnet_api::VpcSpec::default(), &gws);
            assert_eq!(r.map(|g| g.spec.lan_ip.as_str()), Some("10.0.1.254"));
        }
        let gw = Arc::new(valid);
        let own = vpcnet_api::VpcSpec {
            static_routes: vec![vpcnet_api::vpc::StaticRoute {
                cidr: "0.0.0.0/0".into(),
                next_hop_ip: "10.0.1.9".into(),
                policy: Default::default(),
            }],
            ..Default::default()
        };
        assert!(route_holder("v", &own, &[gw]).is_none());
    }
}
