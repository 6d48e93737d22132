//! A pod's memberships: dereference (its port, its namespace's groups) ->
//! decide (pure) -> plan (pure) -> write. Its port joins exactly the
//! Port_Groups of the groups its annotation names, and its subnet's base
//! group while it is in any, in one transaction. An annotation that names
//! a missing or foreign group is refused with an Event on the pod and
//! nothing changes: the pod keeps the groups it had.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use vpcnet_api::contract::annotations::SECURITY_GROUPS;
use vpcnet_api::contract::naming;
use vpcnet_runtime::driver::Reconcile;

use vpcnet_runtime::refusal::Reason;

use ovn::Uuid;
use ovn::nb::PortGroup;

use crate::view::SgView;
use crate::{Ctx, Error, Result, decide, plan, write};

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Plans `port` into exactly the Port_Groups `want`: the candidates are
/// the groups that hold it now and the ones it should be in (whatever it
/// is in beyond those is none of ours). Returns the plan and the candidates.
pub fn plan_for(
    view: &SgView,
    port: &Uuid,
    want: &BTreeSet<Uuid>,
) -> (plan::Planned, Vec<PortGroup>) {
    let mut candidates = view.holding(port);
    for u in want {
        if !candidates.iter().any(|g| &g.uuid == u) {
            candidates.push(PortGroup {
                uuid: u.clone(),
                ..Default::default()
            });
        }
    }
    (plan::membership(port, want, &candidates), candidates)
}

/// Reconciles pods' memberships.
pub struct MemberReconciler;

#[async_trait::async_trait]
impl Reconcile for MemberReconciler {
    type Object = Pod;
    type Context = Ctx;
    const KIND: &'static str = "PodSecurityGroups";
    // A deleted pod's port goes with it, and with the port its memberships.
    const CLEANS_UP: bool = false;

    async fn apply(pod: &Pod, ctx: &Ctx) -> Result<Action> {
        if host_network(pod) || pod.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        ctx.caches_ready().await;
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let asked = pod.annotations().get(SECURITY_GROUPS).map(String::as_str);
        let Some(port) = ctx.view.port(&naming::pod_port(&ns, &name)) else {
            // The network service has not made its port yet.
            return Ok(match asked {
                Some(v) if !v.trim().is_empty() => Action::requeue(Duration::from_millis(300)),
                _ => Action::await_change(),
            });
        };
        let groups = decide::groups_of(&ns, &ctx.groups.state());
        let wanted = match decide::membership(&ns, asked, &groups) {
            Ok(w) => w,
            Err(r) => {
                tracing::info!(namespace = %ns, pod = %name, refusal = %r, "pod's security groups refused");
                ctx.event(
                    pod,
                    true,
                    r.reason.as_str(),
                    "JoinSecurityGroups",
                    r.message.clone(),
                )
                .await;
                return Ok(Action::await_change());
            }
        };
        let mut want = BTreeSet::new();
        for g in &wanted {
            let pg = naming::security_group_port_group(&ns, g);
            let found = ctx.view.port_group(&pg).ok_or_else(|| {
                Error::Dependency(format!("the Port_Group of SecurityGroup {ns}/{g}"))
            })?;
            want.insert(found.uuid);
        }
        if !want.is_empty() {
            let subnet = port.subnet.clone().ok_or_else(|| {
                Error::Dependency(format!("the subnet of pod {ns}/{name}'s port"))
            })?;
            let base = ctx
                .view
                .port_group(&naming::security_base_port_group(&subnet))
                .ok_or_else(|| Error::Dependency(format!("the base group of subnet {subnet}")))?;
            want.insert(base.uuid);
        }
        let (p, candidates) = plan_for(&ctx.view, &port.uuid, &want);
        let changed: Vec<_> = candidates
            .iter()
            .filter(|g| g.ports.contains(&port.uuid) != want.contains(&g.uuid))
            .cloned()
            .collect();
        if let Some(txn) = p.txn {
            ctx.nb.transact(txn).await?;
            let uuids: Vec<_> = candidates.iter().map(|g| g.uuid.clone()).collect();
            if let Err(e) = ctx
                .view
                .settle_membership(&port.uuid, &uuids, &want, write::SETTLE)
                .await
            {
                tracing::warn!(error = %e, "the NB cache has not shown a membership write yet");
            }
            tracing::debug!(namespace = %ns, pod = %name, groups = ?wanted, "memberships written");
            // Their member counts changed.
            for g in changed {
                if let Some(gname) = g
                    .external_ids
                    .get(ovn::owner::OWNER_KEY)
                    .and_then(|o| o.strip_prefix(&format!("{}/{ns}/", crate::GROUP_OWNER_KIND)))
                {
                    let _ = ctx.group_nudge.send(ObjectRef::new(gname).within(&ns));
                }
            }
        }
        Ok(Action::await_change())
    }
}
