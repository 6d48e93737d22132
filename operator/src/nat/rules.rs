//! SNAT, DNAT and FIP rules: one reconciler for the three kinds. It checks
//! the EIP, ownership, the internal address and conflicts, then records
//! `Accepted` (+ `v4ip`, `natGwDp`) for the gateway agent to program.

use std::fmt::Debug;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::instrument;
use vpcnet_api::condition::Conditioned;
use vpcnet_api::{IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule, VpcNatGateway};

use super::conflicts::{self, RuleUse, Use};
use super::{ACCEPTED, ownership};
use crate::context::NatStores;
use crate::names::FINALIZER;
use crate::{Context, Error, Result, status};

/// What the reconciler needs to know about a rule kind.
pub trait NatRule:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Conditioned
    + Send
    + Sync
    + 'static
{
    /// `snat`, `dnat` or `fip`.
    const SHORT: &'static str;
    /// The EIP it names.
    fn eip(&self) -> &str;
    /// What it wants from the EIP.
    fn use_(&self) -> Use;
    /// Checks the inside address against the VPC's subnets.
    fn check_inside(&self, cidrs: &[Ipv4Net]) -> Result<(), String>;
}

fn ip_inside(field: &str, value: &str, cidrs: &[Ipv4Net]) -> Result<(), String> {
    let ip: Ipv4Addr = value
        .parse()
        .map_err(|_| format!("{field} {value} is not an IPv4 address"))?;
    if ownership::inside(ip, cidrs) {
        Ok(())
    } else {
        Err(format!(
            "{field} {value} is not inside any subnet of the gateway's VPC ({})",
            list(cidrs)
        ))
    }
}

fn list(cidrs: &[Ipv4Net]) -> String {
    if cidrs.is_empty() {
        "it has none".into()
    } else {
        cidrs
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl NatRule for IptablesSnatRule {
    const SHORT: &'static str = "snat";
    fn eip(&self) -> &str {
        &self.spec.eip
    }
    fn use_(&self) -> Use {
        Use::Snat
    }
    fn check_inside(&self, cidrs: &[Ipv4Net]) -> Result<(), String> {
        let v = &self.spec.internal_cidr;
        let net: Ipv4Net = v
            .parse()
            .or_else(|_| v.parse::<Ipv4Addr>().map(Ipv4Net::from))
            .map_err(|_| format!("internalCIDR {v} is not IPv4"))?;
        let overlaps = cidrs
            .iter()
            .any(|c| c.contains(&net.network()) || net.contains(&c.network()));
        if overlaps {
            Ok(())
        } else {
            Err(format!(
                "internalCIDR {v} is outside the gateway's VPC ({})",
                list(cidrs)
            ))
        }
    }
}

impl NatRule for IptablesDnatRule {
    const SHORT: &'static str = "dnat";
    fn eip(&self) -> &str {
        &self.spec.eip
    }
    fn use_(&self) -> Use {
        let (lo, hi) = conflicts::port_range(&self.spec.external_port).unwrap_or((0, 0));
        Use::Dnat {
            proto: self.spec.protocol,
            lo,
            hi,
            shared: self.spec.shared,
        }
    }
    fn check_inside(&self, cidrs: &[Ipv4Net]) -> Result<(), String> {
        ip_inside("internalIp", &self.spec.internal_ip, cidrs)
    }
}

impl NatRule for IptablesFIPRule {
    const SHORT: &'static str = "fip";
    fn eip(&self) -> &str {
        &self.spec.eip
    }
    fn use_(&self) -> Use {
        Use::Fip
    }
    fn check_inside(&self, cidrs: &[Ipv4Net]) -> Result<(), String> {
        ip_inside("internalIp", &self.spec.internal_ip, cidrs)
    }
}

fn age<K: Resource>(o: &K) -> (Option<i64>, String) {
    (
        o.meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        o.meta().name.clone().unwrap_or_default(),
    )
}

fn use_of<K: NatRule>(r: &K) -> RuleUse {
    let (t, n) = age(r);
    RuleUse {
        key: format!("{}/{}", K::SHORT, r.name_any()),
        age: (t, format!("{}/{n}", K::SHORT)),
        what: r.use_(),
    }
}

fn names_eip<K: NatRule>(r: &K, ns: &str, eip: &str) -> bool {
    r.eip() == eip
        && r.meta().namespace.as_deref() == Some(ns)
        && r.meta().deletion_timestamp.is_none()
}

/// Every rule (of the three kinds) in `ns` that names `eip`, oldest first,
/// from the caches.
pub fn users_of(stores: &NatStores, ns: &str, eip: &str) -> Vec<RuleUse> {
    fn of<K: NatRule>(store: &Store<K>, ns: &str, eip: &str, out: &mut Vec<RuleUse>) {
        out.extend(
            store
                .state()
                .iter()
                .filter(|r| names_eip(r.as_ref(), ns, eip))
                .map(|r| use_of(r.as_ref())),
        );
    }
    let mut out = Vec::new();
    of(&stores.snats, ns, eip, &mut out);
    of(&stores.dnats, ns, eip, &mut out);
    of(&stores.fips, ns, eip, &mut out);
    out.sort_by(|a, b| a.age.cmp(&b.age));
    out
}

/// Like `users_of`, but listed from the API server: for decisions that must
/// not rest on a cache that may lag, such as releasing an EIP.
pub async fn users_of_live(client: &kube::Client, ns: &str, eip: &str) -> Result<Vec<RuleUse>> {
    async fn of<K: NatRule>(
        client: &kube::Client,
        ns: &str,
        eip: &str,
        out: &mut Vec<RuleUse>,
    ) -> Result<()> {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        for r in api.list(&ListParams::default()).await? {
            if names_eip(&r, ns, eip) {
                out.push(use_of(&r));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    of::<IptablesSnatRule>(client, ns, eip, &mut out).await?;
    of::<IptablesDnatRule>(client, ns, eip, &mut out).await?;
    of::<IptablesFIPRule>(client, ns, eip, &mut out).await?;
    out.sort_by(|a, b| a.age.cmp(&b.age));
    Ok(out)
}

/// Whether the operator has accepted the rule (for its current spec or not).
pub fn is_accepted<K: NatRule>(r: &K) -> bool {
    r.conditions()
        .iter()
        .any(|c| c.type_ == ACCEPTED && c.status == "True")
}

/// Reconciles one rule of kind `K`.
#[instrument(skip_all, fields(kind = K::SHORT, namespace = %rule.namespace().unwrap_or_default(), name = %rule.name_any()))]
pub async fn reconcile<K: NatRule>(rule: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.nat.ready().await;
    let ns = rule.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, rule, |ev| async {
        match ev {
            Finalizer::Apply(r) => apply(&*r, &ctx, &api).await,
            // The agent drops a deleted rule's lines on its own; the EIP's
            // list of users is refreshed by its reconciler watching rules.
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(Error::from);
    ctx.metrics
        .observe(K::SHORT, started.elapsed().as_secs_f64());
    result
}

/// Why a rule is not accepted.
type Refusal = (&'static str, String);

async fn decide<K: NatRule>(rule: &K, ctx: &Context) -> Result<Result<(String, String), Refusal>> {
    let ns = rule.namespace().unwrap_or_default();
    let Some(eip) = ctx
        .nat
        .eips
        .get(&ObjectRef::<IptablesEIP>::new(rule.eip()).within(&ns))
    else {
        return Ok(Err((
            "EipNotFound",
            format!(
                "IptablesEIP {} does not exist in namespace {ns}",
                rule.eip()
            ),
        )));
    };
    let gw_name = eip.spec.nat_gw_dp.clone();
    let gateway = ctx.gateways.get(&ObjectRef::<VpcNatGateway>::new(&gw_name));
    let vpc = match ownership::check(&ns, gateway.as_deref(), &gw_name, &ctx.vpcs.state()) {
        Ok(v) => v,
        Err(r) => return Ok(Err(r)),
    };
    let Some(ip) = eip.status.as_ref().and_then(|s| s.ip.clone()) else {
        return Ok(Err((
            "EipNotReady",
            format!("IptablesEIP {} has no address yet", rule.eip()),
        )));
    };
    if let Err(msg) = rule.check_inside(&ownership::vpc_cidrs(&vpc, &ctx.subnets.state())) {
        return Ok(Err(("OutsideVpc", msg)));
    }
    let users = users_of(&ctx.nat, &ns, rule.eip());
    let (t, n) = age(rule);
    let me = RuleUse {
        key: format!("{}/{}", K::SHORT, rule.name_any()),
        age: (t, format!("{}/{n}", K::SHORT)),
        what: rule.use_(),
    };
    if let Err(msg) = conflicts::judge(&me, &users) {
        return Ok(Err(("Conflict", msg)));
    }
    Ok(Ok((ip, gw_name)))
}

async fn apply<K: NatRule>(rule: &K, ctx: &Context, api: &Api<K>) -> Result<Action> {
    let generation = rule.meta().generation;
    let previous = rule.conditions();
    let decision = decide(rule, ctx).await?;
    let (accepted, extra) = match &decision {
        Ok((ip, gw)) => (
            status::condition(
                previous,
                ACCEPTED,
                true,
                "Accepted",
                format!("EIP {ip} on gateway {gw}"),
                generation,
            ),
            json!({"v4ip": ip, "natGwDp": gw}),
        ),
        Err((reason, msg)) => {
            if status::is_news(previous, ACCEPTED, reason, generation) {
                ctx.event(rule, true, reason, "Validate", msg.clone()).await;
            }
            (
                status::condition(previous, ACCEPTED, false, reason, msg.clone(), generation),
                json!({}),
            )
        }
    };
    let ready = super::ready(previous, &accepted, generation);
    let mut st = json!({"conditions": [accepted, ready], "observedGeneration": generation});
    if let (Some(m), Some(e)) = (st.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    // Re-judged whenever its EIP or a neighbour changes: write only news.
    if !status::unchanged(
        &serde_json::to_value(rule).unwrap_or_default()["status"],
        &st,
    ) {
        status::apply(api, &rule.name_any(), st).await?;
    }
    Ok(match decision {
        Ok(_) => Action::requeue(Duration::from_secs(300)),
        // A missing EIP or address may appear; retry calmly.
        Err(_) => Action::requeue(Duration::from_secs(15)),
    })
}
