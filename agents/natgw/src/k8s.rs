//! The Kubernetes side: list+watch reflectors of the gateway, EIPs and
//! rules; any change recomputes the whole state (debounced) and applies it;
//! `Programmed` conditions are server-side applied when they change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use vpcnet_api::seal::{Decision, SealKey};
use vpcnet_api::{
    IptablesDnatRule, IptablesEIP, IptablesFIPRule, IptablesSnatRule, Vpc, VpcNatGateway,
};

use crate::apply::{ApplyReport, Worker};
use crate::desired::{Inputs, desired};
use crate::http::Shared;
use crate::model::{GatewayFacts, Kind, NatState, ObjKey};
use crate::snapshot_store::SnapshotStore;

/// The condition type the agent owns.
pub use vpcnet_api::contract::conditions::PROGRAMMED;
/// Field manager of the agent's status writes.
pub const FIELD_MANAGER: &str = "vpcnet-natgw";

/// The `Programmed` condition an object should carry after an apply, as
/// (status, reason, message); `None` for objects not of this gateway.
pub fn programmed(
    st: &NatState,
    rep: &ApplyReport,
    key: &ObjKey,
) -> Option<(bool, String, String)> {
    if let Some(s) = st.skipped.get(key) {
        return Some((false, s.reason.clone(), s.message.clone()));
    }
    match rep.results.get(key)? {
        Ok(()) => Some((true, "Applied".into(), "programmed on the gateway".into())),
        Err(e) => {
            let mut m = e.clone();
            m.truncate(32 * 1024 - 16);
            Some((false, "ApplyFailed".into(), m))
        }
    }
}

struct Stores {
    eips: Store<IptablesEIP>,
    snats: Store<IptablesSnatRule>,
    dnats: Store<IptablesDnatRule>,
    fips: Store<IptablesFIPRule>,
    gw: Store<VpcNatGateway>,
    vpcs: Store<Vpc>,
}

/// What is known of one object when its `Programmed` report is written:
/// its generation, its current `Programmed` condition and seal, and the
/// seal the report should carry.
struct Current {
    generation: Option<i64>,
    condition: Option<Condition>,
    seal_now: Option<String>,
    seal_due: Option<String>,
}

impl Stores {
    fn inputs(&self) -> Inputs {
        fn all<K: Clone + kube::runtime::reflector::Lookup>(s: &Store<K>) -> Vec<K>
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            s.state().iter().map(|a| (**a).clone()).collect()
        }
        // The VPC's namespaces, read from the Vpc itself: a rule of any
        // other namespace is never programmed, whatever its status says.
        let vpc_namespaces = self
            .gw
            .state()
            .first()
            .and_then(|g| self.vpcs.get(&reflector::ObjectRef::new(&g.spec.vpc)))
            .map(|v| v.spec.namespaces.clone())
            .unwrap_or_default();
        Inputs {
            eips: all(&self.eips),
            snats: all(&self.snats),
            dnats: all(&self.dnats),
            fips: all(&self.fips),
            vpc_namespaces,
        }
    }

    fn current(&self, key: &ObjKey, seal_key: &SealKey, gateway: &str) -> Option<Current> {
        fn find<K>(
            s: &Store<K>,
            ns: &str,
            name: &str,
            parts: impl Fn(&K) -> (Option<&Vec<Condition>>, Option<&String>, Option<&String>),
            seal_key: &SealKey,
            gateway: &str,
        ) -> Option<Current>
        where
            K: Clone + Resource<DynamicType = ()> + 'static,
        {
            let o = s.get(&reflector::ObjectRef::<K>::new(name).within(ns))?;
            let (conds, seal_now, ip) = parts(&o);
            let condition = conds.and_then(|c| c.iter().find(|c| c.type_ == PROGRAMMED).cloned());
            Some(Current {
                generation: o.meta().generation,
                condition,
                seal_now: seal_now.cloned(),
                seal_due: ip
                    .map(|ip| seal_key.seal(&Decision::programmed(o.as_ref(), gateway, ip))),
            })
        }
        match key.kind {
            Kind::Eip => find(
                &self.eips,
                &key.ns,
                &key.name,
                |o| {
                    let st = o.status.as_ref();
                    (
                        st.map(|s| &s.conditions),
                        st.and_then(|s| s.programmed_seal.as_ref()),
                        st.and_then(|s| s.ip.as_ref()),
                    )
                },
                seal_key,
                gateway,
            ),
            Kind::Snat => find(
                &self.snats,
                &key.ns,
                &key.name,
                |o| rule_parts(o.status.as_ref()),
                seal_key,
                gateway,
            ),
            Kind::Dnat => find(
                &self.dnats,
                &key.ns,
                &key.name,
                |o| rule_parts(o.status.as_ref()),
                seal_key,
                gateway,
            ),
            Kind::Fip => find(
                &self.fips,
                &key.ns,
                &key.name,
                |o| rule_parts(o.status.as_ref()),
                seal_key,
                gateway,
            ),
        }
    }
}

fn rule_parts(
    st: Option<&vpcnet_api::nat_rule_status::NatRuleStatus>,
) -> (Option<&Vec<Condition>>, Option<&String>, Option<&String>) {
    (
        st.map(|s| &s.conditions),
        st.and_then(|s| s.programmed_seal.as_ref()),
        st.and_then(|s| s.v4ip.as_ref()),
    )
}

fn watch<K>(
    api: Api<K>,
    cfg: watcher::Config,
    notify: Arc<Notify>,
) -> (Store<K>, BoxStream<'static, ()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let s = reflector::reflector(writer, watcher(api, cfg))
        .default_backoff()
        .map(move |ev| match ev {
            Ok(_) => notify.notify_one(),
            Err(e) => tracing::warn!("watch error: {e}"),
        })
        .boxed();
    (store, s)
}

async fn patch_status<K>(
    api: Api<K>,
    name: &str,
    cond: &Condition,
    seal: Option<&String>,
) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    // The seal goes with a True report only; leaving it out of the apply
    // removes an earlier one (the agent owns the field).
    let mut status = serde_json::json!({ "conditions": [cond] });
    if let Some(seal) = seal {
        status["programmedSeal"] = serde_json::json!(seal);
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
}

async fn write_condition(
    client: &Client,
    key: &ObjKey,
    cond: &Condition,
    seal: Option<&String>,
) -> kube::Result<()> {
    let c = client.clone();
    match key.kind {
        Kind::Eip => {
            patch_status(
                Api::<IptablesEIP>::namespaced(c, &key.ns),
                &key.name,
                cond,
                seal,
            )
            .await
        }
        Kind::Snat => {
            patch_status(
                Api::<IptablesSnatRule>::namespaced(c, &key.ns),
                &key.name,
                cond,
                seal,
            )
            .await
        }
        Kind::Dnat => {
            patch_status(
                Api::<IptablesDnatRule>::namespaced(c, &key.ns),
                &key.name,
                cond,
                seal,
            )
            .await
        }
        Kind::Fip => {
            patch_status(
                Api::<IptablesFIPRule>::namespaced(c, &key.ns),
                &key.name,
                cond,
                seal,
            )
            .await
        }
    }
}

/// Applies the stored snapshot, if any: the rules are live again while the
/// lists load. Readiness and `Programmed` wait for the state from the API.
async fn restore_snapshot(store: &mut SnapshotStore, facts: &GatewayFacts, worker: &Worker) {
    let Some(snap) = store.load().await else {
        return;
    };
    let rules = snap.rule_count();
    let st = snap.into_state(facts.clone());
    let rep = worker.call(move |a| a.apply(&st, false)).await;
    let errors = rep.results.values().filter(|r| r.is_err()).count();
    tracing::info!(
        rules,
        errors,
        error = ?rep.error,
        since_start_ms = crate::uptime::process_uptime().map(|d| d.as_millis() as u64),
        apply_ms = rep.duration.as_millis() as u64,
        "restored from snapshot"
    );
}

/// A `Programmed` report as last written: status, reason, message,
/// generation and seal.
type Written = (String, String, String, Option<i64>, Option<String>);

/// Objects per page of the initial lists.
const LIST_PAGE_SIZE: u32 = 5000;

/// Condition writes in flight at once.
const STATUS_WRITES_IN_FLIGHT: usize = 16;

/// Which gateway this agent serves, and the key its decisions are checked
/// (and its reports sealed) with.
pub struct Serving {
    /// The VpcNatGateway's name.
    pub gateway: String,
    /// The operator's seal key.
    pub seal_key: SealKey,
}

/// Runs the watch -> desired -> apply -> status loop forever; with a
/// snapshot store, first puts back the last applied state while the lists
/// are still loading, and keeps the snapshot current after each apply.
pub async fn run(
    client: Client,
    serving: Serving,
    facts: GatewayFacts,
    worker: Arc<Worker>,
    shared: Arc<Shared>,
    debounce: Duration,
    mut snapshots: Option<SnapshotStore>,
) -> anyhow::Result<()> {
    let Serving { gateway, seal_key } = serving;
    let notify = Arc::new(Notify::new());
    // A restarted gateway is down until the first lists are in: take them
    // in few, large pages (10,000 rules: 2 round trips instead of 20).
    let cfg = watcher::Config::default().page_size(LIST_PAGE_SIZE);
    let (eips, s1) = watch(
        Api::<IptablesEIP>::all(client.clone()),
        cfg.clone(),
        notify.clone(),
    );
    let (snats, s2) = watch(
        Api::<IptablesSnatRule>::all(client.clone()),
        cfg.clone(),
        notify.clone(),
    );
    let (dnats, s3) = watch(
        Api::<IptablesDnatRule>::all(client.clone()),
        cfg.clone(),
        notify.clone(),
    );
    let (fips, s4) = watch(
        Api::<IptablesFIPRule>::all(client.clone()),
        cfg.clone(),
        notify.clone(),
    );
    let (gw, s5) = watch(
        Api::<VpcNatGateway>::all(client.clone()),
        cfg.clone().fields(&format!("metadata.name={gateway}")),
        notify.clone(),
    );
    let (vpcs, s6) = watch(Api::<Vpc>::all(client.clone()), cfg, notify.clone());
    let stores = Stores {
        eips,
        snats,
        dnats,
        fips,
        gw,
        vpcs,
    };
    let lists_started = std::time::Instant::now();
    tokio::spawn(futures::stream::select_all([s1, s2, s3, s4, s5, s6]).for_each(|_| async {}));
    if let Some(store) = snapshots.as_mut() {
        restore_snapshot(store, &facts, &worker).await;
    }
    for ready in [
        stores.eips.wait_until_ready().await,
        stores.snats.wait_until_ready().await,
        stores.dnats.wait_until_ready().await,
        stores.fips.wait_until_ready().await,
        stores.gw.wait_until_ready().await,
        stores.vpcs.wait_until_ready().await,
    ] {
        ready?;
    }
    let lists_ms = lists_started.elapsed().as_millis() as u64;
    tracing::info!(lists_ms, "initial lists done");
    let mut first_apply = true;
    // Conditions as last written by us: (status, reason, message, generation).
    let mut written: HashMap<ObjKey, Written> = HashMap::new();
    let mut warned_lan = false;
    loop {
        // The first apply follows the lists at once: the gateway is down
        // until then. Later ones gather a burst of changes.
        if !first_apply {
            tokio::time::sleep(debounce).await;
        }
        if let Some(g) = stores.gw.state().first()
            && g.spec.lan_ip != facts.lan_ip.to_string()
            // With two replicas lanIp is the shared address, not eth0's own.
            && g.spec.replicas != 2
            && !warned_lan
        {
            tracing::warn!(lan_ip = %g.spec.lan_ip, eth0 = %facts.lan_ip, "gateway lanIp differs from the LAN interface's address");
            warned_lan = true;
        }
        let t_desired = std::time::Instant::now();
        let inputs = stores.inputs();
        let inputs_ms = t_desired.elapsed().as_millis() as u64;
        let st = desired(Some(facts.clone()), &gateway, &inputs, &seal_key);
        drop(inputs);
        let desired_ms = t_desired.elapsed().as_millis() as u64 - inputs_ms;
        let st2 = st.clone();
        let rep = worker.call(move |a| a.apply(&st2, false)).await;
        let m = &shared.metrics;
        if rep.restored || !rep.added_addrs.is_empty() {
            m.applies.inc();
            m.last_apply_seconds.set(rep.duration.as_secs_f64());
        }
        // Every rule and the apply itself succeeded.
        let clean = rep.error.is_none() && rep.results.values().all(|r| r.is_ok());
        if !clean {
            m.apply_errors.inc();
            tracing::warn!(error = ?rep.error, "apply had errors");
        } else {
            shared.ready.store(true, Ordering::Relaxed);
        }
        if first_apply {
            // What a restarted gateway costs: process start to rules live.
            first_apply = false;
            tracing::info!(
                rules = st.rule_count(),
                since_start_ms = crate::uptime::process_uptime().map(|d| d.as_millis() as u64),
                lists_ms,
                inputs_ms,
                desired_ms,
                apply_ms = rep.duration.as_millis() as u64,
                "first apply done"
            );
        }
        for w in &rep.warnings {
            tracing::warn!("{w}");
        }
        // Before the condition writes, which take seconds for thousands of
        // rules: a pod lost meanwhile should still find this state.
        if clean && let Some(store) = snapshots.as_mut() {
            store.save(&st).await;
        }
        m.rules_programmed.set(
            rep.results
                .iter()
                .filter(|(k, r)| k.kind != Kind::Eip && r.is_ok())
                .count() as i64,
        );
        let mut keys: Vec<&ObjKey> = st.skipped.keys().collect();
        keys.extend(rep.results.keys());
        let mut writes = Vec::new();
        for key in keys {
            let Some((ok, reason, message)) = programmed(&st, &rep, key) else {
                continue;
            };
            let Some(cur) = stores.current(key, &seal_key, &gateway) else {
                continue;
            };
            let (generation, existing) = (cur.generation, cur.condition);
            // A True report carries the agent's seal: the operator counts
            // Programmed only with it.
            let seal = if ok { cur.seal_due } else { None };
            let status = if ok { "True" } else { "False" }.to_string();
            let want = (
                status.clone(),
                reason.clone(),
                message.clone(),
                generation,
                seal.clone(),
            );
            let same_live = cur.seal_now == seal
                && existing.as_ref().is_some_and(|c| {
                    c.status == status
                        && c.reason == reason
                        && c.message == message
                        && c.observed_generation == generation
                });
            if same_live || (existing.is_some() && written.get(key) == Some(&want)) {
                continue;
            }
            let ltt = match &existing {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Time(k8s_openapi::jiff::Timestamp::now()),
            };
            let cond = Condition {
                type_: PROGRAMMED.into(),
                status,
                reason,
                message,
                observed_generation: generation,
                last_transition_time: ltt,
            };
            writes.push((key.clone(), want, cond, seal));
        }
        // Thousands of rules after a restart: write in parallel, bounded.
        let client = &client;
        let done: Vec<_> = futures::stream::iter(writes)
            .map(|(key, want, cond, seal)| async move {
                let r = write_condition(client, &key, &cond, seal.as_ref()).await;
                (key, want, r)
            })
            .buffer_unordered(STATUS_WRITES_IN_FLIGHT)
            .collect()
            .await;
        for (key, want, r) in done {
            match r {
                Ok(()) => {
                    written.insert(key, want);
                }
                Err(e) => tracing::warn!(%key, "writing Programmed: {e}"),
            }
        }
        if !clean {
            // Retry later even without API changes.
            let n = notify.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                n.notify_one();
            });
        }
        notify.notified().await;
    }
}
