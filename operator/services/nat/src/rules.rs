//! SNAT, DNAT and FIP rules: one reconciler for the three kinds. It checks
//! the EIP, ownership, the internal address and conflicts, then records
//! `Accepted` (+ `v4ip`, `natGwDp`) for the gateway agent to program.

use std::fmt::Debug;
use std::net::Ipv4Addr;

use std::time::Duration;

use ipnet::Ipv4Net;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use vpcnet_api::condition::Conditioned;
use vpcnet_api::{IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule, VpcNatGateway};

use super::conflicts::{self, RuleUse, Use};
use super::ownership::InsideVpc;
use super::{ACCEPTED, ownership, sealed};
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use crate::context::NatStores;
use crate::{Ctx as Context, Result};
use vpcnet_api::nat_rule_status::NatRuleStatus;
use vpcnet_api::seal::{Decision, SealKey};

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
    fn check_inside(&self, vpc: &InsideVpc) -> Result<(), String>;
    /// The status the operator and the agent write.
    fn rule_status(&self) -> Option<&NatRuleStatus>;
}

/// `value` as IPv4, or why not (IPv6 is named as such: it is not supported
/// yet, rather than outside the VPC).
fn ipv4(field: &str, value: &str) -> Result<Ipv4Addr, String> {
    value.parse().map_err(|_| {
        if value.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("{field} {value} is IPv6; IPv6 is not supported yet, use an IPv4 address")
        } else {
            format!("{field} {value} is not an IPv4 address")
        }
    })
}

fn ip_inside(field: &str, value: &str, vpc: &InsideVpc) -> Result<(), String> {
    let ip = ipv4(field, value)?;
    let cidrs = vpc.cidrs();
    if !ownership::inside(ip, &cidrs) {
        return Err(format!(
            "{field} {value} is not inside any subnet of the gateway's VPC ({})",
            list(&cidrs)
        ));
    }
    match vpc.reserved(ip) {
        Some(what) => Err(format!(
            "{field} {value} is {what}, not a workload's address"
        )),
        None => Ok(()),
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

/// A SNAT source range: inside one subnet of the VPC (a catch-all would
/// translate traffic that is not the tenant's, the gateway's own included),
/// and not a subnet's broadcast or network address alone.
fn snat_source(value: &str, vpc: &InsideVpc) -> Result<(), String> {
    let net: Ipv4Net = match value.parse::<Ipv4Net>() {
        Ok(n) => n,
        Err(_) => Ipv4Net::from(ipv4(
            "internalCIDR",
            value.split('/').next().unwrap_or(value),
        )?),
    };
    if net.trunc() != net {
        return Err(format!(
            "internalCIDR {value} has host bits set; write {}",
            net.trunc()
        ));
    }
    let cidrs = vpc.cidrs();
    if !cidrs.iter().any(|c| c.contains(&net)) {
        return Err(format!(
            "internalCIDR {value} must lie inside one subnet of the gateway's VPC ({})",
            list(&cidrs)
        ));
    }
    if net.prefix_len() == 32
        && let Some(what) = vpc.reserved(net.addr())
    {
        return Err(format!(
            "internalCIDR {value} is {what}, not a workload's address"
        ));
    }
    Ok(())
}

impl NatRule for IptablesSnatRule {
    const SHORT: &'static str = "snat";
    fn eip(&self) -> &str {
        &self.spec.eip
    }
    fn use_(&self) -> Use {
        Use::Snat
    }
    fn check_inside(&self, vpc: &InsideVpc) -> Result<(), String> {
        snat_source(&self.spec.internal_cidr, vpc)
    }
    fn rule_status(&self) -> Option<&NatRuleStatus> {
        self.status.as_ref()
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
    fn check_inside(&self, vpc: &InsideVpc) -> Result<(), String> {
        ip_inside("internalIp", &self.spec.internal_ip, vpc)
    }
    fn rule_status(&self) -> Option<&NatRuleStatus> {
        self.status.as_ref()
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
    fn check_inside(&self, vpc: &InsideVpc) -> Result<(), String> {
        ip_inside("internalIp", &self.spec.internal_ip, vpc)
    }
    fn rule_status(&self) -> Option<&NatRuleStatus> {
        self.status.as_ref()
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

/// Which of the rules naming an EIP count.
#[derive(Clone, Copy)]
pub enum Users<'a> {
    /// Those the operator sealed (its list of users).
    Sealed(&'a SealKey),
    /// Those whose inside address is valid in the VPC (the candidates a
    /// conflict is judged among).
    Valid(&'a InsideVpc),
}

impl Users<'_> {
    fn keep<K: NatRule>(self, r: &K) -> bool {
        match self {
            Users::Sealed(key) => sealed::rule(key, r, r.rule_status()),
            Users::Valid(vpc) => r.check_inside(vpc).is_ok(),
        }
    }
}

/// Every rule (of the three kinds) in `ns` that names `eip` and counts as
/// `which` says, oldest first, from the caches.
pub fn users_of(stores: &NatStores, which: Users<'_>, ns: &str, eip: &str) -> Vec<RuleUse> {
    fn of<K: NatRule>(
        store: &Store<K>,
        which: Users<'_>,
        ns: &str,
        eip: &str,
        out: &mut Vec<RuleUse>,
    ) {
        out.extend(
            store
                .state()
                .iter()
                .filter(|r| names_eip(r.as_ref(), ns, eip) && which.keep(r.as_ref()))
                .map(|r| use_of(r.as_ref())),
        );
    }
    let mut out = Vec::new();
    of(&stores.snats, which, ns, eip, &mut out);
    of(&stores.dnats, which, ns, eip, &mut out);
    of(&stores.fips, which, ns, eip, &mut out);
    out.sort_by(|a, b| a.age.cmp(&b.age));
    out
}

/// The rules in `ns` that the operator accepted on `eip`, listed from the
/// API server: for decisions that must not rest on a cache that may lag,
/// such as releasing an EIP. A refused rule never holds an EIP back.
pub async fn accepted_users_live(
    client: &kube::Client,
    key: &SealKey,
    ns: &str,
    eip: &str,
) -> Result<Vec<RuleUse>> {
    async fn of<K: NatRule>(
        client: &kube::Client,
        key: &SealKey,
        ns: &str,
        eip: &str,
        out: &mut Vec<RuleUse>,
    ) -> Result<()> {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        for r in api.list(&ListParams::default()).await? {
            if names_eip(&r, ns, eip) && sealed::rule(key, &r, r.rule_status()) {
                out.push(use_of(&r));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    of::<IptablesSnatRule>(client, key, ns, eip, &mut out).await?;
    of::<IptablesDnatRule>(client, key, ns, eip, &mut out).await?;
    of::<IptablesFIPRule>(client, key, ns, eip, &mut out).await?;
    out.sort_by(|a, b| a.age.cmp(&b.age));
    Ok(out)
}

/// Whether the operator has accepted the rule (for its current spec or not).
/// Only a hint for which rules to re-run: decisions verify seals.
pub fn is_accepted<K: NatRule>(r: &K) -> bool {
    r.conditions()
        .iter()
        .any(|c| c.type_ == ACCEPTED && c.status == "True")
}

/// How a SNAT, DNAT or FIP rule is reconciled. Deleting one needs no
/// cleanup here: the agent drops a deleted rule's lines on its own, and the
/// EIP's list of users is refreshed by its reconciler watching rules.
pub struct RuleReconciler<K>(std::marker::PhantomData<K>);

#[async_trait::async_trait]
impl<K: NatRule> Reconcile for RuleReconciler<K> {
    type Object = K;
    type Context = Context;
    const KIND: &'static str = K::SHORT;

    async fn admit(rule: &K, ctx: &Context) -> Option<Box<dyn Send>> {
        ctx.nat.ready().await;
        let ns = rule.namespace().unwrap_or_default();
        Some(Box::new(ctx.fairness.slot(&ns).await))
    }

    async fn apply(rule: &K, ctx: &Context) -> Result<Action> {
        let api: Api<K> =
            Api::namespaced(ctx.client.clone(), &rule.namespace().unwrap_or_default());
        apply(rule, ctx, &api).await
    }
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
    // The address the operator sealed, never what a status field claims.
    let Some((ip, _)) = sealed::eip(&ctx.seal, &eip) else {
        return Ok(Err((
            "EipNotReady",
            format!("IptablesEIP {} has no address yet", rule.eip()),
        )));
    };
    let inside = InsideVpc::of(&vpc, &ctx.subnets.state(), &ctx.gateways.state());
    if let Err(msg) = rule.check_inside(&inside) {
        return Ok(Err(("OutsideVpc", msg)));
    }
    // A rule refused on its own merits never blocks another.
    let users = users_of(&ctx.nat, Users::Valid(&inside), &ns, rule.eip());
    if let Err(msg) = conflicts::judge(&use_of(rule), &users) {
        return Ok(Err(("Conflict", msg)));
    }
    Ok(Ok((ip.to_string(), gw_name)))
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
            json!({"v4ip": ip, "natGwDp": gw, "seal": ctx.seal.seal(&Decision::rule(rule, gw, ip))}),
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
    let programmed = match &decision {
        Ok((ip, gw)) => sealed::programmed(
            &ctx.seal,
            rule,
            rule.rule_status().and_then(|s| s.programmed_seal.as_ref()),
            gw,
            ip,
        ),
        Err(_) => false,
    };
    let ready = super::ready(previous, &accepted, generation, programmed);
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
