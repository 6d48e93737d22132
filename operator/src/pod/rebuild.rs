//! Rebuilding address state at start from what the cluster already says:
//! pod annotations, then ports in OVN (a crash between writing a port and
//! annotating its pod, and StatefulSet reservations). Nothing is allocated
//! before this has run, so a restart never hands out an address twice.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use vpcnet_api::{IptablesEIP, Subnet, VpcNatGateway};

use crate::names::{self, annotations as ann};
use crate::{Context, Result};

/// What the rebuild found.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Pools created.
    pub pools: usize,
    /// Addresses taken from pod annotations.
    pub from_pods: usize,
    /// External addresses taken from gateway and EIP status.
    pub from_status: usize,
    /// Addresses taken from OVN ports only.
    pub from_ports: usize,
    /// Addresses claimed by two holders (kept by the first; logged).
    pub conflicts: usize,
}

/// Loads every pool and every holder.
pub async fn rebuild(ctx: &Context) -> Result<Rebuilt> {
    let mut out = Rebuilt::default();
    let subnets = Api::<Subnet>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let pods = Api::<Pod>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let ports = crate::gc::owned_rows(&ctx.nb, super::PORT_TABLE).await?;
    let eips = Api::<IptablesEIP>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let gateways = Api::<VpcNatGateway>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let mut ipam = ctx.ipam.lock().await;
    for s in &subnets {
        let gateway = match (&s.spec.gateway, s.spec.provider.is_some()) {
            (Some(g), _) => Some(g.clone()),
            (None, false) => s
                .spec
                .cidr_block
                .parse()
                .ok()
                .map(|c| crate::subnet::desired::default_gateway(&c).to_string()),
            (None, true) => None,
        };
        if ipam
            .upsert(
                &s.name_any(),
                &s.spec.cidr_block,
                gateway.as_deref(),
                &s.spec.exclude_ips,
            )
            .is_ok()
        {
            out.pools += 1;
        }
    }
    let mut claim = |subnet: &str,
                     holder: String,
                     ip: Ipv4Addr,
                     counter: &mut usize,
                     conflicts: &mut usize| {
        let Ok(pool) = ipam.pool_mut(subnet) else {
            return;
        };
        match pool.holder_of(ip) {
            Some(h) if h == holder => {}
            Some(other) => {
                tracing::error!(%ip, holder, other, "address claimed twice; keeping the first holder");
                *conflicts += 1;
            }
            None if pool.get(&holder).is_some() => {}
            None => {
                pool.force(&holder, ip);
                *counter += 1;
            }
        }
    };
    for pod in &pods {
        let a = pod.annotations();
        if a.get(ann::ALLOCATED).map(String::as_str) != Some("true") {
            continue;
        }
        let (Some(subnet), Some(ip)) = (
            a.get(ann::SUBNET),
            a.get(ann::IP_ADDRESS).and_then(|i| i.parse().ok()),
        ) else {
            continue;
        };
        let holder = names::pod_holder(&pod.namespace().unwrap_or_default(), &pod.name_any());
        claim(subnet, holder, ip, &mut out.from_pods, &mut out.conflicts);
    }
    // External addresses: gateways' net1 and EIPs, from their status.
    for gw in &gateways {
        let ext = gw
            .spec
            .external_subnets
            .first()
            .cloned()
            .unwrap_or_else(|| ctx.external_subnet.clone());
        if let Some(ip) = gw
            .status
            .as_ref()
            .and_then(|s| s.external_ip.as_ref())
            .and_then(|i| i.parse().ok())
        {
            claim(
                &ext,
                crate::nat::gateway::external_holder(&gw.name_any()),
                ip,
                &mut out.from_status,
                &mut out.conflicts,
            );
        }
    }
    for eip in &eips {
        let gw = gateways.iter().find(|g| g.name_any() == eip.spec.nat_gw_dp);
        let ext = crate::nat::eip::external_subnet(eip, gw, &ctx.external_subnet);
        if let Some(ip) = eip
            .status
            .as_ref()
            .and_then(|s| s.ip.as_ref())
            .and_then(|i| i.parse().ok())
        {
            let holder =
                crate::nat::eip::holder(&eip.namespace().unwrap_or_default(), &eip.name_any());
            claim(&ext, holder, ip, &mut out.from_status, &mut out.conflicts);
        }
    }
    for (owner, ids) in &ports {
        let Some(rest) = owner.strip_prefix("Pod/") else {
            continue;
        };
        let Some((ns, name)) = rest.split_once('/') else {
            continue;
        };
        let (Some(subnet), Some(ip)) = (
            ids.get("vpcnet.io/subnet"),
            ids.get("vpcnet.io/ip").and_then(|i| i.parse().ok()),
        ) else {
            continue;
        };
        claim(
            subnet,
            names::pod_holder(ns, name),
            ip,
            &mut out.from_ports,
            &mut out.conflicts,
        );
    }
    Ok(out)
}

/// `owner id -> external_ids` of rows (re-exported for the rebuild's use).
pub type OwnedRows = Vec<(String, BTreeMap<String, String>)>;
