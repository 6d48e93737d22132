//! VpcNatGateway reconciler: validates the gateway's VPC, subnet, LAN
//! address and external network, then runs it as a one-pod StatefulSet
//! (eth0 at `lanIp` in the VPC, `net1` on the external network through
//! Multus) with the `vpcnet-natgw` agent and a ServiceAccount of its own.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use vpcnet_api::condition::Conditioned;
use vpcnet_api::contract::{OPERATOR_MANAGER as MANAGER, annotations as ann, naming};
use vpcnet_api::{IptablesEIP, Subnet, VpcNatGateway};
use vpcnet_ipam::Holder;
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use super::ACCEPTED;
use crate::{Ctx as Context, Error, Result};

/// The ClusterRole (shipped in `config/`) every gateway's agent is bound to.
pub const AGENT_CLUSTER_ROLE: &str = "vpcnet-natgw";
/// Pod template annotation naming the seal key (`SealKey::id`).
pub const SEAL_KEY_ANNOTATION: &str = ann::SEAL_KEY_ID;
/// Multus' network-selection annotation.
pub const NETWORKS_ANNOTATION: &str = ann::MULTUS_NETWORKS;

/// Name of the StatefulSet, ServiceAccount and binding of gateway `name`.
pub fn workload_name(name: &str) -> String {
    naming::natgw_workload(name)
}

/// The ConfigMap in which gateway `name`'s agent keeps its last applied state.
pub fn snapshot_name(name: &str) -> String {
    naming::natgw_snapshot(name)
}

/// The external subnet of the gateway's `net1`: its first, else `default`.
pub fn external_subnet(gw: &VpcNatGateway, default: &str) -> String {
    gw.spec
        .external_subnets
        .first()
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// IPAM holder of the gateway's external (`net1`) address.
pub fn external_holder(name: &str) -> Holder {
    Holder::nat_gateway(name)
}

/// Everything the gateway pod needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayPlan {
    /// Gateway name.
    pub name: String,
    /// Namespace the workload runs in (the operator's).
    pub namespace: String,
    /// Agent image.
    pub image: String,
    /// Image pull policy.
    pub pull_policy: String,
    /// VPC subnet of eth0.
    pub subnet: String,
    /// eth0 address.
    pub lan_ip: Ipv4Addr,
    /// The VPC router's address on that subnet.
    pub lan_gateway: Ipv4Addr,
    /// All CIDRs of the VPC (routed via eth0).
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// NetworkAttachmentDefinition `(namespace, name)` for net1.
    pub nad: (String, String),
    /// net1 address with prefix.
    pub external_ip: Ipv4Net,
    /// External network's gateway (the gateway pod's default route).
    pub external_gateway: Option<Ipv4Addr>,
    /// Node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations (as JSON, from the spec).
    pub tolerations: Value,
    /// Owner reference to the VpcNatGateway.
    pub owner: Value,
    /// The API server's real address: the agent reaches it through its
    /// external leg, where Service IPs are not translated.
    pub api_endpoint: Option<(String, i32)>,
    /// Names the seal key the agent gets: a new key rolls the pod.
    pub seal_key_id: String,
}

/// The objects that run one gateway, all owned by its VpcNatGateway.
pub struct GatewayObjects {
    /// The agent's ServiceAccount.
    pub service_account: Value,
    /// Binds it to the shared agent ClusterRole (read rules, write their status).
    pub cluster_binding: Value,
    /// The agent's snapshot ConfigMap (created empty; the agent fills it).
    pub snapshot: Value,
    /// Lets the agent get and patch exactly that ConfigMap.
    pub snapshot_role: Value,
    /// Binds the ServiceAccount to that Role.
    pub snapshot_binding: Value,
    /// The one-pod StatefulSet.
    pub statefulset: Value,
}

/// The gateway's objects (pure).
pub fn build(plan: &GatewayPlan) -> GatewayObjects {
    let wl = workload_name(&plan.name);
    let labels =
        json!({"app.kubernetes.io/name": "vpcnet-natgw", "vpcnet.io/nat-gateway": plan.name});
    let meta = |name: &str, ns: Option<&str>| {
        let mut m = json!({"name": name, "labels": labels, "ownerReferences": [plan.owner]});
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    };
    let snap = snapshot_name(&plan.name);
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(&wl, Some(&plan.namespace))});
    // Both bindings grant to the gateway's own ServiceAccount.
    let subjects = json!([{"kind": "ServiceAccount", "name": wl, "namespace": plan.namespace}]);
    let crb = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(&wl, None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT_CLUSTER_ROLE},
        "subjects": subjects,
    });
    let networks = json!([{
        "name": plan.nad.1, "namespace": plan.nad.0, "interface": "net1", "ips": [plan.external_ip.to_string()],
    }]);
    let cidrs: Vec<String> = plan.vpc_cidrs.iter().map(|c| c.to_string()).collect();
    let env = json!([
        {"name": "VPCNET_GATEWAY", "value": plan.name},
        {"name": "VPCNET_LAN_GATEWAY", "value": plan.lan_gateway.to_string()},
        {"name": "VPCNET_VPC_CIDRS", "value": cidrs.join(",")},
        {"name": "VPCNET_EXTERNAL_GATEWAY", "value": plan.external_gateway.map(|g| g.to_string()).unwrap_or_default()},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "VPCNET_SNAPSHOT_CONFIGMAP", "value": snap},
        {"name": vpcnet_api::seal::AGENT_ENV, "valueFrom": {"secretKeyRef": {
            "name": vpcnet_api::seal::SECRET_NAME, "key": vpcnet_api::seal::SECRET_KEY,
        }}},
    ]);
    let mut env = env;
    if let (Some((host, port)), Some(list)) = (&plan.api_endpoint, env.as_array_mut()) {
        list.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": host}));
        list.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": port.to_string()}));
    }
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(&wl, Some(&plan.namespace)),
        "spec": {
            "replicas": 1,
            "serviceName": wl,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        NETWORKS_ANNOTATION: networks.to_string(),
                        ann::SUBNET: plan.subnet,
                        ann::IP_ADDRESS: plan.lan_ip.to_string(),
                        ann::ROUTER: "true",
                        SEAL_KEY_ANNOTATION: plan.seal_key_id,
                    },
                },
                "spec": {
                    "serviceAccountName": wl,
                    "terminationGracePeriodSeconds": 5,
                    "nodeSelector": plan.node_selector,
                    "tolerations": plan.tolerations,
                    "containers": [{
                        "name": "natgw",
                        "image": plan.image,
                        "imagePullPolicy": plan.pull_policy,
                        "env": env,
                        "securityContext": {"privileged": true},
                        // Exec probes: the kubelet cannot reach addresses inside a
                        // tenant VPC, so the agent asks itself on localhost.
                        "readinessProbe": {"exec": {"command": ["vpcnet-natgw", "probe", "/readyz"]}, "periodSeconds": 2},
                        "livenessProbe": {"exec": {"command": ["vpcnet-natgw", "probe", "/healthz"]}, "periodSeconds": 10, "failureThreshold": 6},
                    }],
                },
            },
        },
    });
    let snapshot = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&snap, Some(&plan.namespace))});
    let snapshot_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(&wl, Some(&plan.namespace)),
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [snap], "verbs": ["get", "patch"]}],
    });
    let snapshot_binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(&wl, Some(&plan.namespace)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": wl},
        "subjects": subjects,
    });
    GatewayObjects {
        service_account: sa,
        cluster_binding: crb,
        snapshot,
        snapshot_role,
        snapshot_binding,
        statefulset: sts,
    }
}

/// `key: value` selector strings as a map.
pub fn node_selector(selector: &[String]) -> BTreeMap<String, String> {
    selector
        .iter()
        .filter_map(|s| {
            s.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// How a VpcNatGateway is reconciled.
pub struct GatewayReconciler;

#[async_trait::async_trait]
impl Reconcile for GatewayReconciler {
    type Object = VpcNatGateway;
    type Context = Context;
    const KIND: &'static str = "VpcNatGateway";

    async fn apply(gw: &VpcNatGateway, ctx: &Context) -> Result<Action> {
        apply(gw, ctx, &Api::all(ctx.client.clone())).await
    }

    async fn cleanup(gw: &VpcNatGateway, ctx: &Context) -> Result<Action> {
        cleanup(gw, ctx, &Api::all(ctx.client.clone())).await
    }
}

type Refusal = (&'static str, String);

async fn plan(gw: &VpcNatGateway, ctx: &Context) -> Result<Result<GatewayPlan, Refusal>> {
    let name = gw.name_any();
    let subnets = ctx.subnets.state();
    if !ctx.vpcs.state().iter().any(|v| v.name_any() == gw.spec.vpc) {
        return Ok(Err((
            "VpcNotFound",
            format!("VPC {} does not exist", gw.spec.vpc),
        )));
    }
    let Some(subnet) = subnets.iter().find(|s| s.name_any() == gw.spec.subnet) else {
        return Ok(Err((
            "SubnetNotFound",
            format!("subnet {} does not exist", gw.spec.subnet),
        )));
    };
    if subnet.spec.provider.is_some() || subnet.vpc_name() != gw.spec.vpc {
        return Ok(Err((
            "SubnetNotInVpc",
            format!(
                "subnet {} is not a subnet of VPC {}",
                gw.spec.subnet, gw.spec.vpc
            ),
        )));
    }
    // The VPC's address space is that of its accepted subnets: wait for
    // this one's verdict rather than start a gateway that knows none.
    if !super::ownership::subnet_accepted(subnet) {
        return Ok(Err((
            "SubnetNotReady",
            format!(
                "subnet {} is not Ready yet; the gateway starts once it is",
                gw.spec.subnet
            ),
        )));
    }
    let cidr: Ipv4Net = match subnet.spec.cidr_block.parse() {
        Ok(c) => c,
        Err(_) => {
            return Ok(Err((
                "SubnetNotFound",
                format!("subnet {} is not IPv4", gw.spec.subnet),
            )));
        }
    };
    let lan_ip: Ipv4Addr = match gw.spec.lan_ip.parse() {
        Ok(ip) => ip,
        Err(_) => {
            return Ok(Err((
                "InvalidLanIp",
                format!("lanIp {} is not IPv4", gw.spec.lan_ip),
            )));
        }
    };
    let lan_gateway = vpcnet_api::subnet::router_address(subnet.spec.gateway.as_deref(), &cidr);
    if !cidr.contains(&lan_ip)
        || lan_ip == lan_gateway
        || lan_ip == cidr.network()
        || lan_ip == cidr.broadcast()
    {
        return Ok(Err((
            "InvalidLanIp",
            format!(
                "lanIp {lan_ip} must be a host address of subnet {} ({cidr}) other than its gateway {lan_gateway}",
                gw.spec.subnet
            ),
        )));
    }
    let pod_holder = Holder::pod(&ctx.namespace, &naming::natgw_pod(&name));
    {
        let ipam = ctx.ipam.lock().await;
        if let Some(h) = ipam
            .pool(&gw.spec.subnet)
            .and_then(|p| p.holder_of(lan_ip))
            .filter(|h| **h != pod_holder)
        {
            return Ok(Err(("LanIpInUse", {
                tracing::info!(%lan_ip, holder = %h, "gateway lanIp is held");
                format!(
                    "lanIp {lan_ip} is already in use in subnet {}",
                    gw.spec.subnet
                )
            })));
        }
    }
    let ext_name = external_subnet(gw, &ctx.external_subnet);
    let Some(ext) = subnets.iter().find(|s| s.name_any() == ext_name) else {
        return Ok(Err((
            "ExternalSubnetNotFound",
            format!("external subnet {ext_name} does not exist"),
        )));
    };
    let Some(provider) = ext.spec.provider.clone() else {
        return Ok(Err((
            "ExternalSubnetNotFound",
            format!("subnet {ext_name} has no provider, so it is not an external network"),
        )));
    };
    let (nad_name, nad_ns) = provider
        .split_once('.')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap_or_default();
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    let nads: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &nad_ns,
        &ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions"),
    );
    match nads.get_opt(&nad_name).await {
        Ok(Some(_)) => {}
        Ok(None) | Err(kube::Error::Api(_)) => {
            return Ok(Err((
                "NetworkAttachmentNotFound",
                format!(
                    "NetworkAttachmentDefinition {nad_ns}/{nad_name} (provider of {ext_name}) does not exist"
                ),
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let ext_cidr: Ipv4Net = match ext.spec.cidr_block.parse() {
        Ok(c) => c,
        Err(_) => {
            return Ok(Err((
                "ExternalSubnetNotFound",
                format!("external subnet {ext_name} is not IPv4"),
            )));
        }
    };
    let external_ip = {
        let mut ipam = ctx.ipam.lock().await;
        let Ok(pool) = ipam.pool_mut(&ext_name) else {
            return Err(Error::Dependency(format!(
                "address pool of external subnet {ext_name}"
            )));
        };
        match pool.allocate(&external_holder(&name)) {
            Ok(ip) => ip,
            Err(e) => {
                return Ok(Err((
                    "ExternalIpUnavailable",
                    format!("external subnet {ext_name}: {e}"),
                )));
            }
        }
    };
    let owner = json!({
        "apiVersion": VpcNatGateway::api_version(&()), "kind": VpcNatGateway::kind(&()), "name": name,
        "uid": gw.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true,
    });
    Ok(Ok(GatewayPlan {
        name,
        namespace: ctx.namespace.clone(),
        image: ctx.natgw_image.clone(),
        pull_policy: ctx.image_pull_policy.clone(),
        subnet: gw.spec.subnet.clone(),
        lan_ip,
        lan_gateway,
        vpc_cidrs: super::ownership::vpc_cidrs(&gw.spec.vpc, &subnets),
        nad: (nad_ns, nad_name),
        external_ip: Ipv4Net::new(external_ip, ext_cidr.prefix_len())
            .expect("prefix of a parsed CIDR"),
        external_gateway: ext.spec.gateway.as_deref().and_then(|g| g.parse().ok()),
        node_selector: node_selector(&gw.spec.selector),
        tolerations: serde_json::to_value(&gw.spec.tolerations).unwrap_or(json!([])),
        owner,
        api_endpoint: api_endpoint(&ctx.client).await?,
        seal_key_id: ctx.seal.id(),
    }))
}

/// The first address and port of the `default/kubernetes` Service's endpoints.
async fn api_endpoint(client: &kube::Client) -> Result<Option<(String, i32)>> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await?;
    Ok(slices.items.iter().find_map(|s| {
        let addr = s.endpoints.first()?.addresses.first()?.clone();
        let port = s.ports.as_ref()?.first()?.port?;
        Some((addr, port))
    }))
}

async fn apply(gw: &VpcNatGateway, ctx: &Context, api: &Api<VpcNatGateway>) -> Result<Action> {
    let name = gw.name_any();
    let generation = gw.meta().generation;
    let previous = gw.conditions();
    let plan = match plan(gw, ctx).await? {
        Ok(p) => p,
        Err((reason, msg)) => {
            if status::is_news(previous, vpcnet_api::condition::READY, reason, generation) {
                ctx.event(gw, true, reason, "Validate", msg.clone()).await;
            }
            let accepted =
                status::condition(previous, ACCEPTED, false, reason, msg.clone(), generation);
            let cond = status::ready(previous, false, reason, msg, generation);
            status::apply(
                api,
                &name,
                json!({"conditions": [accepted, cond], "observedGeneration": generation}),
            )
            .await?;
            // A refused gateway is nobody's next hop.
            crate::route::converge(ctx, gw, false).await?;
            return Ok(Action::requeue(Duration::from_secs(15)));
        }
    };
    let objs = build(&plan);
    let pp = PatchParams::apply(MANAGER).force();
    let wl = workload_name(&name);
    let c = || ctx.client.clone();
    let ns = plan.namespace.as_str();
    Api::<ServiceAccount>::namespaced(c(), ns)
        .patch(&wl, &pp, &Patch::Apply(&objs.service_account))
        .await?;
    Api::<ClusterRoleBinding>::all(c())
        .patch(&wl, &pp, &Patch::Apply(&objs.cluster_binding))
        .await?;
    // Only metadata is applied: the agent's binaryData stays its own.
    Api::<ConfigMap>::namespaced(c(), ns)
        .patch(&snapshot_name(&name), &pp, &Patch::Apply(&objs.snapshot))
        .await?;
    Api::<Role>::namespaced(c(), ns)
        .patch(&wl, &pp, &Patch::Apply(&objs.snapshot_role))
        .await?;
    Api::<RoleBinding>::namespaced(c(), ns)
        .patch(&wl, &pp, &Patch::Apply(&objs.snapshot_binding))
        .await?;
    Api::<StatefulSet>::namespaced(c(), ns)
        .patch(&wl, &pp, &Patch::Apply(&objs.statefulset))
        .await?;

    let pod = Api::<Pod>::namespaced(ctx.client.clone(), &plan.namespace)
        .get_opt(&format!("{wl}-0"))
        .await?;
    let pod_ready = pod
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let node = pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.node_name.clone());
    let route = default_route_condition(gw, ctx, previous, generation);
    let ready = if pod_ready {
        status::ready(
            previous,
            true,
            "Running",
            format!("gateway pod {}/{wl}-0 is ready", plan.namespace),
            generation,
        )
    } else {
        status::ready(
            previous,
            false,
            "PodNotReady",
            format!(
                "waiting for gateway pod {}/{wl}-0 to become ready",
                plan.namespace
            ),
            generation,
        )
    };
    let accepted = status::condition(
        previous,
        ACCEPTED,
        true,
        "Valid",
        format!(
            "LAN {} in subnet {}, external {} on {}/{}",
            plan.lan_ip, plan.subnet, plan.external_ip, plan.nad.0, plan.nad.1
        ),
        generation,
    );
    let mut st = json!({
        "conditions": [accepted, ready, route],
        "observedGeneration": generation,
        "pod": format!("{}/{wl}-0", plan.namespace),
        "externalIp": plan.external_ip.addr().to_string(),
    });
    if let Some(n) = node {
        st["node"] = json!(n);
    }
    status::apply(api, &name, st).await?;
    crate::route::converge(ctx, gw, true).await?;
    Ok(Action::requeue(Duration::from_secs(if pod_ready {
        60
    } else {
        3
    })))
}

/// Whether the VPC's default route points at this gateway.
fn default_route_condition(
    gw: &VpcNatGateway,
    ctx: &Context,
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    generation: Option<i64>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let vpc = ctx
        .vpcs
        .state()
        .into_iter()
        .find(|v| v.name_any() == gw.spec.vpc);
    let own = vpc.as_ref().and_then(|v| {
        v.spec
            .static_routes
            .iter()
            .find(|r| r.cidr == "0.0.0.0/0")
            .map(|r| r.next_hop_ip.clone())
    });
    match own {
        Some(hop) if hop != gw.spec.lan_ip => status::condition(
            previous,
            "DefaultRoute",
            false,
            "VpcRoutesElsewhere",
            format!(
                "VPC {} routes 0.0.0.0/0 to {hop} in its own staticRoutes; this gateway is not its default route",
                gw.spec.vpc
            ),
            generation,
        ),
        _ => status::condition(
            previous,
            "DefaultRoute",
            true,
            "Installed",
            format!("VPC {} routes 0.0.0.0/0 to {}", gw.spec.vpc, gw.spec.lan_ip),
            generation,
        ),
    }
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
        let msg = format!(
            "deletion waits until the {} EIP(s) on this gateway are deleted: {}",
            eips.len(),
            eips.join(", ")
        );
        let previous = gw.conditions();
        let cond = status::ready(previous, false, "InUse", msg.clone(), gw.meta().generation);
        // Everything else stays as it is (Accepted keeps the VPC's default
        // route): a deletion that waits changes nothing until it proceeds.
        let mut st = serde_json::to_value(&gw.status).unwrap_or(json!({}));
        if !st.is_object() {
            st = json!({});
        }
        let mut conds: Vec<Value> = previous
            .iter()
            .filter(|c| c.type_ != vpcnet_api::condition::READY)
            .map(|c| json!(c))
            .collect();
        conds.push(json!(cond));
        st["conditions"] = json!(conds);
        if !status::unchanged(&serde_json::to_value(&gw.status).unwrap_or_default(), &st) {
            status::apply(api, &name, st).await?;
        }
        if status::is_news(
            previous,
            vpcnet_api::condition::READY,
            "InUse",
            gw.meta().generation,
        ) {
            ctx.event(gw, true, "InUse", "Delete", msg.clone()).await;
        }
        return Err(Error::Dependency(msg));
    }
    // The deletion proceeds: the VPC's default route moves to the next
    // gateway (re-run by the watch on gateways) or goes.
    crate::route::withdraw(ctx, &name).await?;
    ctx.ipam
        .lock()
        .await
        .release_everywhere(&external_holder(&name));
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

/// Default routes the NAT gateways of `vpc` want on its router (pure).
pub fn default_routes(
    vpc: &str,
    spec: &vpcnet_api::VpcSpec,
    gateways: &[Arc<VpcNatGateway>],
) -> Vec<crate::route::Route> {
    route_holder(vpc, spec, gateways)
        .map(|g| {
            vec![crate::route::Route {
                cidr: crate::route::DEFAULT_PREFIX.into(),
                next_hop: g.spec.lan_ip.clone(),
            }]
        })
        .unwrap_or_default()
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

    fn plan() -> GatewayPlan {
        GatewayPlan {
            name: "natgw".into(),
            namespace: "vpcnet-system".into(),
            image: "docker.io/local/vpcnet-natgw:latest".into(),
            pull_policy: "Never".into(),
            subnet: "vmservers".into(),
            lan_ip: "10.0.1.254".parse().unwrap(),
            lan_gateway: "10.0.1.1".parse().unwrap(),
            vpc_cidrs: vec!["10.0.1.0/24".parse().unwrap()],
            nad: ("vpcnet-system".into(), "ovn-vpc-external-network".into()),
            external_ip: "172.16.3.101/24".parse().unwrap(),
            external_gateway: Some("172.16.3.2".parse().unwrap()),
            node_selector: node_selector(&["kubernetes.io/os: linux".into()]),
            tolerations: json!([]),
            owner: json!({"kind": "VpcNatGateway", "name": "natgw", "uid": "u"}),
            api_endpoint: Some(("10.255.0.1".into(), 36443)),
            seal_key_id: "k1".into(),
        }
    }

    #[test]
    fn statefulset_carries_both_legs_and_the_agent() {
        let objs = build(&plan());
        let (sa, crb, sts) = (
            &objs.service_account,
            &objs.cluster_binding,
            &objs.statefulset,
        );
        assert_eq!(sa["metadata"]["name"], "vpc-nat-gw-natgw");
        assert_eq!(crb["roleRef"]["name"], AGENT_CLUSTER_ROLE);
        assert_eq!(crb["subjects"][0]["namespace"], "vpcnet-system");
        let tpl = &sts["spec"]["template"];
        let nets: Value = serde_json::from_str(
            tpl["metadata"]["annotations"][NETWORKS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(nets[0]["ips"][0], "172.16.3.101/24");
        assert_eq!(nets[0]["interface"], "net1");
        assert_eq!(
            tpl["metadata"]["annotations"][ann::IP_ADDRESS],
            "10.0.1.254"
        );
        assert_eq!(tpl["metadata"]["annotations"][ann::SUBNET], "vmservers");
        assert_eq!(tpl["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
        assert_eq!(tpl["spec"]["serviceAccountName"], "vpc-nat-gw-natgw");
        let env = tpl["spec"]["containers"][0]["env"].as_array().unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "VPCNET_GATEWAY" && e["value"] == "natgw")
        );
        assert!(
            env.iter()
                .any(|e| e["name"] == "VPCNET_EXTERNAL_GATEWAY" && e["value"] == "172.16.3.2")
        );
        assert_eq!(
            sts["metadata"]["ownerReferences"][0]["kind"],
            "VpcNatGateway"
        );
    }

    #[test]
    fn the_agent_may_touch_only_its_own_snapshot() {
        let objs = build(&plan());
        let cm = "vpc-nat-gw-natgw-snapshot";
        assert_eq!(objs.snapshot["metadata"]["name"], cm);
        assert!(objs.snapshot.get("data").is_none() && objs.snapshot.get("binaryData").is_none());
        assert_eq!(
            objs.snapshot["metadata"]["ownerReferences"][0]["kind"],
            "VpcNatGateway"
        );
        let rules = objs.snapshot_role["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["resources"], json!(["configmaps"]));
        assert_eq!(rules[0]["resourceNames"], json!([cm]));
        assert_eq!(rules[0]["verbs"], json!(["get", "patch"]));
        assert_eq!(
            objs.snapshot_binding["roleRef"]["name"],
            objs.snapshot_role["metadata"]["name"]
        );
        assert_eq!(
            objs.snapshot_binding["subjects"][0]["name"],
            objs.service_account["metadata"]["name"]
        );
        let env = objs.statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "VPCNET_SNAPSHOT_CONFIGMAP" && e["value"] == cm)
        );
    }

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
            default_routes(
                "v",
                &vpcnet_api::VpcSpec::default(),
                std::slice::from_ref(&gw)
            )
            .is_empty(),
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
            let r = default_routes("v", &vpcnet_api::VpcSpec::default(), &gws);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].next_hop, "10.0.1.254");
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
        assert!(default_routes("v", &own, &[gw]).is_empty());
    }
}
