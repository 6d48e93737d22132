//! SNAT, DNAT and FIP rules: one reconciler for the three kinds. It checks
//! the EIP, ownership, the internal address and conflicts, then records
//! `Accepted` (+ `v4ip`, `natGwDp`) for the gateway agent to program.

use std::fmt::Debug;
use std::net::Ipv4Addr;
use std::sync::Arc;

use std::time::Duration;

use ipnet::Ipv4Net;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vpcnet_api::condition::Conditioned;
use vpcnet_api::{
    IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule, Subnet, Vpc, VpcNatGateway,
};

use super::conflicts::{self, RuleUse, Use};
use super::ownership::InsideVpc;
use super::{ACCEPTED, ownership, sealed};
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use crate::context::NatStores;
use crate::reasons::{NatReason, NatRefusal};
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

/// What a rule's verdict is judged against: the caches, read once.
pub struct RuleFacts<'a> {
    /// The rule's EIP, if it exists.
    pub eip: Option<Arc<IptablesEIP>>,
    /// The EIP's gateway, if it exists.
    pub gateway: Option<Arc<VpcNatGateway>>,
    /// Every VPC.
    pub vpcs: Vec<Arc<Vpc>>,
    /// Every Subnet.
    pub subnets: Vec<Arc<Subnet>>,
    /// Every gateway.
    pub gateways: Vec<Arc<VpcNatGateway>>,
    /// The NAT caches (the other rules on the EIP).
    pub nat: &'a NatStores,
    /// The operator's seal key.
    pub key: &'a SealKey,
}

/// Dereference: what the rule names.
pub fn dereference<'a, K: NatRule>(rule: &K, ctx: &'a Context) -> RuleFacts<'a> {
    let ns = rule.namespace().unwrap_or_default();
    let eip = ctx
        .nat
        .eips
        .get(&ObjectRef::<IptablesEIP>::new(rule.eip()).within(&ns));
    let gateway = eip
        .as_ref()
        .and_then(|e| ctx.gateways.get(&ObjectRef::new(&e.spec.nat_gw_dp)));
    RuleFacts {
        eip,
        gateway,
        vpcs: ctx.vpcs.state(),
        subnets: ctx.subnets.state(),
        gateways: ctx.gateways.state(),
        nat: &ctx.nat,
        key: &ctx.seal,
    }
}

/// An accepted rule: the EIP's address and gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The EIP's (sealed) address.
    pub ip: String,
    /// Its gateway.
    pub gateway: String,
}

/// The rule's verdict (pure): ownership, the EIP's sealed address, the
/// inside address, conflicts with older rules.
pub fn decide<K: NatRule>(rule: &K, f: &RuleFacts<'_>) -> Result<Verdict, NatRefusal> {
    let ns = rule.namespace().unwrap_or_default();
    let Some(eip) = &f.eip else {
        return Err(NatRefusal::new(
            NatReason::EipNotFound,
            format!(
                "IptablesEIP {} does not exist in namespace {ns}",
                rule.eip()
            ),
        ));
    };
    let gw_name = eip.spec.nat_gw_dp.clone();
    let vpc = ownership::check(&ns, f.gateway.as_deref(), &gw_name, &f.vpcs)?;
    // The address the operator sealed, never what a status field claims.
    let Some((ip, _)) = sealed::eip(f.key, eip) else {
        return Err(NatRefusal::new(
            NatReason::EipNotReady,
            format!("IptablesEIP {} has no address yet", rule.eip()),
        ));
    };
    let inside = InsideVpc::of(&vpc, &f.subnets, &f.gateways);
    rule.check_inside(&inside)
        .map_err(|m| NatRefusal::new(NatReason::OutsideVpc, m))?;
    // A rule refused on its own merits never blocks another.
    let users = users_of(f.nat, Users::Valid(&inside), &ns, rule.eip());
    conflicts::judge(&use_of(rule), &users).map_err(|m| NatRefusal::new(NatReason::Conflict, m))?;
    Ok(Verdict {
        ip: ip.to_string(),
        gateway: gw_name,
    })
}

/// The part of a rule's status the operator owns (the agent owns
/// `Programmed` and its seal).
pub fn owned_part(st: &NatRuleStatus) -> NatRuleStatus {
    NatRuleStatus {
        conditions: crate::operator_conditions(&st.conditions),
        programmed_seal: None,
        ..st.clone()
    }
}

/// The rule's status for `verdict` (pure).
pub fn rule_status<K: NatRule>(
    rule: &K,
    verdict: &Result<Verdict, NatRefusal>,
    key: &SealKey,
) -> NatRuleStatus {
    let generation = rule.meta().generation;
    let previous = rule.conditions();
    let accepted = match verdict {
        Ok(v) => status::condition(
            previous,
            ACCEPTED,
            true,
            "Accepted",
            format!("EIP {} on gateway {}", v.ip, v.gateway),
            generation,
        ),
        Err(r) => r.condition(previous, ACCEPTED, generation),
    };
    let programmed = verdict.as_ref().is_ok_and(|v| {
        sealed::programmed(
            key,
            rule,
            rule.rule_status().and_then(|s| s.programmed_seal.as_ref()),
            &v.gateway,
            &v.ip,
        )
    });
    let ready = super::ready(previous, &accepted, generation, programmed);
    let mut st = NatRuleStatus {
        conditions: vec![accepted, ready],
        observed_generation: generation,
        ..Default::default()
    };
    if let Ok(v) = verdict {
        st.v4ip = Some(v.ip.clone());
        st.nat_gw_dp = Some(v.gateway.clone());
        st.seal = Some(key.seal(&Decision::rule(rule, &v.gateway, &v.ip)));
    }
    st
}

async fn apply<K: NatRule>(rule: &K, ctx: &Context, api: &Api<K>) -> Result<Action> {
    let verdict = decide(rule, &dereference(rule, ctx));
    if let Err(r) = &verdict {
        r.announce(&ctx.rt, rule, rule.conditions(), ACCEPTED, "Validate")
            .await;
    }
    let st = rule_status(rule, &verdict, &ctx.seal);
    // Re-judged whenever its EIP or a neighbour changes: write only news.
    status::report_by(api, &rule.name_any(), rule.rule_status(), &st, owned_part).await?;
    Ok(match verdict {
        Ok(_) => Action::requeue(Duration::from_secs(300)),
        // A missing EIP or address may appear; retry calmly.
        Err(_) => Action::requeue(Duration::from_secs(15)),
    })
}

#[cfg(test)]
mod decide_tests {
    use std::sync::Arc;

    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use vpcnet_api::dnat::IptablesDnatRuleSpec;
    use vpcnet_api::{
        IptablesEIPSpec, IptablesEIPStatus, SubnetSpec, SubnetStatus, VpcNatGatewaySpec, VpcSpec,
    };

    use super::*;

    fn key() -> SealKey {
        SealKey::new(&[5u8; 32]).unwrap()
    }

    fn eip(sealed: bool) -> IptablesEIP {
        let mut e = IptablesEIP::new(
            "e",
            IptablesEIPSpec {
                nat_gw_dp: "g".into(),
                ..Default::default()
            },
        );
        e.metadata.namespace = Some("a".into());
        e.metadata.uid = Some("eip-uid".into());
        e.status = Some(IptablesEIPStatus {
            ip: Some("172.16.3.10".into()),
            nat_gw_dp: Some("g".into()),
            seal: sealed.then(|| key().seal(&Decision::eip(&e, "g", "172.16.3.10"))),
            ..Default::default()
        });
        e
    }

    fn dnat(name: &str, inside: &str, port: &str, age: i64) -> IptablesDnatRule {
        let mut r = IptablesDnatRule::new(
            name,
            IptablesDnatRuleSpec {
                eip: "e".into(),
                external_port: port.into(),
                internal_ip: inside.into(),
                internal_port: Some("80".into()),
                ..Default::default()
            },
        );
        r.metadata.namespace = Some("a".into());
        r.metadata.uid = Some(format!("{name}-uid"));
        r.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(age).unwrap(),
        ));
        r
    }

    fn store<K>(items: Vec<K>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let (s, mut w) = reflector::store();
        w.apply_watcher_event(&Event::Init);
        for i in items {
            w.apply_watcher_event(&Event::InitApply(i));
        }
        w.apply_watcher_event(&Event::InitDone);
        s
    }

    struct World {
        nat: NatStores,
        vpcs: Vec<Arc<Vpc>>,
        subnets: Vec<Arc<Subnet>>,
        gateways: Vec<Arc<VpcNatGateway>>,
        key: SealKey,
    }

    impl World {
        fn new(eips: Vec<IptablesEIP>, dnats: Vec<IptablesDnatRule>) -> Self {
            let mut lan = Subnet::new(
                "lan",
                SubnetSpec {
                    vpc: Some("v".into()),
                    cidr_block: "10.0.1.0/24".into(),
                    ..Default::default()
                },
            );
            lan.status = Some(SubnetStatus {
                conditions: vec![vpcnet_api::condition::new(
                    "Ready",
                    true,
                    "Programmed",
                    "",
                    Some(1),
                )],
                ..Default::default()
            });
            Self {
                nat: NatStores {
                    eips: store(eips),
                    snats: store(vec![]),
                    dnats: store(dnats),
                    fips: store(vec![]),
                },
                vpcs: vec![Arc::new(Vpc::new(
                    "v",
                    VpcSpec {
                        namespaces: vec!["a".into()],
                        ..Default::default()
                    },
                ))],
                subnets: vec![Arc::new(lan)],
                gateways: vec![Arc::new(VpcNatGateway::new(
                    "g",
                    VpcNatGatewaySpec {
                        vpc: "v".into(),
                        subnet: "lan".into(),
                        lan_ip: "10.0.1.254".into(),
                        ..Default::default()
                    },
                ))],
                key: key(),
            }
        }

        fn facts(&self) -> RuleFacts<'_> {
            RuleFacts {
                eip: self.nat.eips.state().into_iter().next(),
                gateway: self.gateways.first().cloned(),
                vpcs: self.vpcs.clone(),
                subnets: self.subnets.clone(),
                gateways: self.gateways.clone(),
                nat: &self.nat,
                key: &self.key,
            }
        }
    }

    fn reason(r: Result<Verdict, NatRefusal>) -> Option<NatReason> {
        r.err().map(|r| r.reason)
    }

    #[test]
    fn a_valid_rule_takes_the_sealed_address() {
        let w = World::new(vec![eip(true)], vec![]);
        let v = decide(&dnat("web", "10.0.1.5", "8080", 1), &w.facts()).unwrap();
        assert_eq!(
            v,
            Verdict {
                ip: "172.16.3.10".into(),
                gateway: "g".into()
            }
        );
    }

    #[test]
    fn each_flaw_has_its_reason() {
        let rule = dnat("web", "10.0.1.5", "8080", 1);
        let none = World::new(vec![], vec![]);
        assert_eq!(
            reason(decide(&rule, &none.facts())),
            Some(NatReason::EipNotFound)
        );
        let unsealed = World::new(vec![eip(false)], vec![]);
        assert_eq!(
            reason(decide(&rule, &unsealed.facts())),
            Some(NatReason::EipNotReady)
        );
        let w = World::new(vec![eip(true)], vec![]);
        let mut no_gw = w.facts();
        no_gw.gateway = None;
        assert_eq!(
            reason(decide(&rule, &no_gw)),
            Some(NatReason::GatewayNotFound)
        );
        let mut other_ns = rule.clone();
        other_ns.metadata.namespace = Some("b".into());
        let mut f = w.facts();
        // b's view: an EIP of its own name on a's gateway.
        let mut e = eip(true);
        e.metadata.namespace = Some("b".into());
        f.eip = Some(Arc::new(e));
        assert_eq!(reason(decide(&other_ns, &f)), Some(NatReason::Forbidden));
        for outside in ["10.0.2.5", "10.0.1.1", "10.0.1.254", "10.0.1.255"] {
            assert_eq!(
                reason(decide(&dnat("x", outside, "8080", 1), &w.facts())),
                Some(NatReason::OutsideVpc),
                "{outside}"
            );
        }
    }

    #[test]
    fn the_older_of_two_rules_on_one_port_wins() {
        let older = dnat("older", "10.0.1.5", "8080", 1);
        let newer = dnat("newer", "10.0.1.6", "8080", 2);
        let w = World::new(vec![eip(true)], vec![older.clone(), newer.clone()]);
        assert!(decide(&older, &w.facts()).is_ok());
        assert_eq!(
            reason(decide(&newer, &w.facts())),
            Some(NatReason::Conflict)
        );
        // Refused on its own merits, a rule blocks nobody.
        let bad_older = dnat("bad", "10.9.9.9", "8080", 0);
        let w = World::new(vec![eip(true)], vec![bad_older, newer.clone()]);
        assert!(decide(&newer, &w.facts()).is_ok());
    }

    #[test]
    fn a_status_written_by_anyone_else_is_not_the_operators() {
        let w = World::new(vec![eip(true)], vec![]);
        let rule = dnat("web", "10.0.1.5", "8080", 1);
        let st = rule_status(&rule, &decide(&rule, &w.facts()), &w.key);
        assert_eq!(st.v4ip.as_deref(), Some("172.16.3.10"));
        assert!(
            sealed::rule(&w.key, &rule, Some(&st)),
            "the verdict is sealed"
        );
        let refused = rule_status(
            &rule,
            &Err(NatRefusal::new(NatReason::Conflict, "m")),
            &w.key,
        );
        assert_eq!(refused.v4ip, None);
        assert_eq!(refused.seal, None);
    }
}
