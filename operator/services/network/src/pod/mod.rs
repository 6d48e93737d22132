//! Pod reconciler: an address and a logical switch port for every pod on the
//! pod network, announced to the CNI through annotations.

pub mod deletion;
pub mod notice;
pub mod placement;
pub mod rebuild;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use ovn::nb::{LogicalSwitch, LogicalSwitchPort, logical_switch};
use ovn::{Desired, Owner, Table};
use serde_json::json;
use vpcnet_api::contract::external_ids;
use vpcnet_ipam::{Holder, IpamError, mac_for};
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::refusal::{Reason, Refusal};

use crate::names::{self, annotations as ann};
use crate::reasons::PodReason;
use crate::{Ctx as Context, Error, Result};
use placement::Request;

/// The OVN owner of a pod's port.
pub fn owner(namespace: &str, pod: &str, vpc: &str) -> Owner {
    Owner::new("Pod", namespace, pod).with_vpc(vpc)
}

/// True for pods that do not use the pod network.
pub fn is_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// How a Pod is reconciled. Deletion needs no finalizer: the port and the
/// address go when the pod is gone (see [`deletion`]).
pub struct PodReconciler;

#[async_trait::async_trait]
impl Reconcile for PodReconciler {
    type Object = Pod;
    type Context = Context;
    const KIND: &'static str = "Pod";
    const CLEANS_UP: bool = false;

    async fn apply(pod: &Pod, ctx: &Context) -> Result<Action> {
        if is_host_network(pod) || pod.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        apply(pod, ctx).await
    }
}

async fn apply(pod: &Pod, ctx: &Context) -> Result<Action> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let annotations = placement::with_aliases(pod.annotations());
    let chosen = placement::choose_subnet_for(
        &ns,
        &annotations,
        &ctx.namespace,
        &ctx.subnets.store().state(),
        ctx.default_subnet.as_deref(),
    );
    let subnet = match chosen {
        Ok(Some(s)) => s,
        Ok(None) => {
            let msg = format!("no Subnet lists namespace {ns} and the default subnet is disabled");
            let refusal = Refusal::new(PodReason::NoSubnet, msg);
            return Ok(refuse(pod, ctx, &refusal, Action::requeue(Duration::from_secs(60))).await);
        }
        Err(msg) => {
            let refusal = Refusal::new(PodReason::SubnetForbidden, msg);
            return Ok(refuse(pod, ctx, &refusal, Action::requeue(Duration::from_secs(60))).await);
        }
    };
    let subnet_name = subnet.name_any();
    let vpc = subnet.vpc_name().to_string();
    let ls = names::switch(&subnet_name);
    let Some(ls_uuid) = ctx.ovn.switch(&ls) else {
        return Err(Error::Dependency(format!(
            "logical switch {ls} of subnet {subnet_name}"
        )));
    };
    let request = match placement::request(&annotations, &ls) {
        Ok(r) => r,
        Err(msg) => {
            let refusal = Refusal::new(PodReason::InvalidAnnotation, msg);
            return Ok(refuse(pod, ctx, &refusal, Action::await_change()).await);
        }
    };
    let holder = names::pod_holder(&ns, &name);
    let ip = {
        let mut ipam = ctx.ipam.lock().await;
        let pool = ipam
            .pool_mut(&subnet_name)
            .map_err(|_| Error::Dependency(format!("address pool of subnet {subnet_name}")))?;
        match &request {
            Request::Existing(ip) | Request::Fixed(ip) => pool.allocate_fixed(&holder, *ip),
            Request::Pool(list) => first_free(pool, &holder, list),
            Request::Any => pool.allocate(&holder),
        }
    };
    let ip = match ip {
        Ok(ip) => ip,
        Err(e) => {
            // A user-visible problem (conflict, exhausted, out of range):
            // an Event, no port, and a retry in case the conflict clears.
            tracing::warn!(error = %e, "no address for pod");
            let refusal = Refusal::new(
                ipam_reason(&e),
                format!("subnet {subnet_name}: {}", e.for_namespace(&ns)),
            );
            return Ok(refuse(pod, ctx, &refusal, Action::requeue(Duration::from_secs(30))).await);
        }
    };
    let mac = mac_for(ip);
    let sts = deletion::statefulset_of(pod);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let mut port = port_row(&ns, &name, &subnet_name, &mac, ip, sts.as_deref(), node);
    // A router pod (a NAT gateway) forwards other addresses' packets, so
    // only its MAC is pinned. Honoured only in the operator's namespace:
    // anywhere else it would let a tenant spoof addresses.
    if ns == ctx.namespace
        && pod
            .annotations()
            .get(ann::ROUTER)
            .is_some_and(|v| v == "true")
    {
        port.port_security = BTreeSet::from([mac.clone()]);
    }
    ovn::owner::ensure_owned(
        &ctx.nb,
        &owner(&ns, &name, &vpc),
        vec![Desired::new(&port).child_of(LogicalSwitch::TABLE, logical_switch::PORTS, ls_uuid)],
    )
    .await?;

    if !matches!(request, Request::Existing(_)) || annotations.get(ann::MAC_ADDRESS) != Some(&mac) {
        let cidr = subnet.spec.cidr_block.clone();
        let gateway =
            match &subnet.spec.gateway {
                Some(g) => g.clone(),
                None => crate::subnet::desired::default_gateway(&cidr.parse().map_err(|_| {
                    Error::Dependency(format!("valid CIDR of subnet {subnet_name}"))
                })?)
                .to_string(),
            };
        let patch = json!({"metadata": {"annotations": {
            ann::IP_ADDRESS: ip.to_string(),
            ann::MAC_ADDRESS: mac,
            ann::CIDR: cidr,
            ann::GATEWAY: gateway,
            ann::LOGICAL_SWITCH: ls,
            ann::SUBNET: subnet_name,
            ann::ALLOCATED: "true",
        }}});
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(%ip, "allocated");
    }
    ctx.notices.forget(&notice::key(pod));
    Ok(Action::await_change())
}

/// A pod that gets no address (yet): a Warning Event when its situation
/// changed since the last one, then `then`.
async fn refuse(pod: &Pod, ctx: &Context, refusal: &Refusal<PodReason>, then: Action) -> Action {
    if ctx.notices.is_news(&notice::key(pod), refusal) {
        ctx.event(
            pod,
            true,
            refusal.reason.as_str(),
            "Allocate",
            refusal.message.clone(),
        )
        .await;
    }
    then
}

/// The reason an allocation failed, as the pod's Event says it.
pub fn ipam_reason(e: &IpamError) -> PodReason {
    match e {
        IpamError::InUse { .. } | IpamError::Reserved(_) => PodReason::IPConflict,
        IpamError::Exhausted(_) => PodReason::SubnetExhausted,
        _ => PodReason::InvalidIP,
    }
}

fn first_free(
    pool: &mut vpcnet_ipam::Pool,
    holder: &Holder,
    list: &[Ipv4Addr],
) -> Result<Ipv4Addr, IpamError> {
    if let Some(ip) = pool.get(holder).filter(|ip| list.contains(ip)) {
        return Ok(ip);
    }
    let mut last = IpamError::Exhausted(format!("ip_pool {list:?}"));
    for ip in list {
        match pool.allocate_fixed(holder, *ip) {
            Ok(ip) => return Ok(ip),
            Err(e) => last = e,
        }
    }
    Err(match last {
        IpamError::InUse { .. } => IpamError::Exhausted(format!(
            "ip_pool {}",
            list.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )),
        other => other,
    })
}

/// The logical switch port of a pod: addresses and port security pinned to
/// its MAC and IP, so it cannot spoof either; once the pod is bound to a
/// node, only that node's chassis may claim it (`requested-chassis`: the
/// chassis of that name or hostname). A StatefulSet pod recreated on
/// another node keeps its port, and a node that comes back with the old
/// pod's interface still plugged must not take the port back.
pub fn port_row(
    ns: &str,
    pod: &str,
    subnet: &str,
    mac: &str,
    ip: Ipv4Addr,
    statefulset: Option<&str>,
    node: Option<&str>,
) -> LogicalSwitchPort {
    let addr = format!("{mac} {ip}");
    let mut port = LogicalSwitchPort {
        name: names::pod_port(ns, pod),
        addresses: BTreeSet::from([addr.clone()]),
        port_security: BTreeSet::from([addr]),
        external_ids: BTreeMap::from([
            (external_ids::POD.to_string(), format!("{ns}/{pod}")),
            (external_ids::SUBNET.to_string(), subnet.to_string()),
            (external_ids::IP.to_string(), ip.to_string()),
        ]),
        ..Default::default()
    };
    if let Some(sts) = statefulset {
        port.external_ids
            .insert(STATEFULSET_KEY.to_string(), sts.to_string());
    }
    if let Some(node) = node {
        port.options
            .insert(REQUESTED_CHASSIS.to_string(), node.to_string());
    }
    port
}

/// The port option that names the one chassis allowed to bind it.
pub const REQUESTED_CHASSIS: &str = "requested-chassis";

/// external_ids key naming the StatefulSet of a pod's port.
pub const STATEFULSET_KEY: &str = external_ids::STATEFULSET;

/// The table pod ports live in (for GC and rebuild).
pub const PORT_TABLE: &str = LogicalSwitchPort::TABLE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_pod_port_may_be_claimed_by_its_node_only() {
        let ip: Ipv4Addr = "10.0.1.5".parse().unwrap();
        let unbound = port_row("a", "web", "s", "0a:00:00:00:00:01", ip, None, None);
        assert!(
            unbound.options.is_empty(),
            "any chassis until it is scheduled"
        );
        let bound = port_row(
            "a",
            "web",
            "s",
            "0a:00:00:00:00:01",
            ip,
            None,
            Some("node-2"),
        );
        assert_eq!(
            bound.options.get(REQUESTED_CHASSIS).map(String::as_str),
            Some("node-2")
        );
    }

    #[test]
    fn allocation_failures_keep_their_event_reasons() {
        let holder = Holder::pod("b", "web");
        let cases = [
            (
                IpamError::InUse {
                    ip: "10.0.1.9".into(),
                    holder,
                },
                "IPConflict",
            ),
            (IpamError::Reserved("10.0.1.1".into()), "IPConflict"),
            (IpamError::Exhausted("a".into()), "SubnetExhausted"),
            (
                IpamError::OutOfRange {
                    ip: "10.0.2.9".into(),
                    cidr: "10.0.1.0/24".into(),
                },
                "InvalidIP",
            ),
            (IpamError::BadAddress("x".into()), "InvalidIP"),
        ];
        for (e, want) in cases {
            assert_eq!(ipam_reason(&e).as_str(), want, "{e}");
        }
    }
}
