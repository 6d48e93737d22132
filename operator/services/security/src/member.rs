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

/// Plans `port` into exactly the Port_Groups `want` (rows from the view):
/// the candidates are the groups that hold it now and the ones it should
/// be in (whatever it is in beyond those is none of ours). Returns the plan
/// and the candidates.
pub fn plan_for(view: &SgView, port: &Uuid, want: &[PortGroup]) -> (plan::Planned, Vec<PortGroup>) {
    let mut candidates = view.holding(port);
    for g in want {
        if !candidates.iter().any(|c| c.uuid == g.uuid) {
            candidates.push(g.clone());
        }
    }
    let uuids: BTreeSet<Uuid> = want.iter().map(|g| g.uuid.clone()).collect();
    (plan::membership(port, &uuids, &candidates), candidates)
}

/// The groups of namespace `ns` among `candidates` whose holding of `port`
/// changes when it is to be in exactly `want`: their member counts change.
pub fn changed_groups(
    ns: &str,
    port: &Uuid,
    want: &BTreeSet<Uuid>,
    candidates: &[PortGroup],
) -> Vec<String> {
    let prefix = format!("{}/{ns}/", crate::GROUP_OWNER_KIND);
    candidates
        .iter()
        .filter(|g| g.ports.contains(port) != want.contains(&g.uuid))
        .filter_map(|g| {
            g.external_ids
                .get(ovn::owner::OWNER_KEY)?
                .strip_prefix(&prefix)
        })
        .map(str::to_string)
        .collect()
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
        let asked = decide::requested(pod.annotations());
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
        let mut rows = Vec::new();
        for g in &wanted {
            let pg = naming::security_group_port_group(&ns, g);
            rows.push(ctx.view.port_group(&pg).ok_or_else(|| {
                Error::Dependency(format!("the Port_Group of SecurityGroup {ns}/{g}"))
            })?);
        }
        if !rows.is_empty() {
            let subnet = port.subnet.clone().ok_or_else(|| {
                Error::Dependency(format!("the subnet of pod {ns}/{name}'s port"))
            })?;
            let base = ctx
                .view
                .port_group(&naming::security_base_port_group(&subnet))
                .ok_or_else(|| Error::Dependency(format!("the base group of subnet {subnet}")))?;
            rows.push(base);
        }
        let want: BTreeSet<Uuid> = rows.iter().map(|g| g.uuid.clone()).collect();
        let (p, candidates) = plan_for(&ctx.view, &port.uuid, &rows);
        let changed = changed_groups(&ns, &port.uuid, &want, &candidates);
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
                let _ = ctx.group_nudge.send(ObjectRef::new(&g).within(&ns));
            }
        }
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn pg(uuid: &str, owner: &str, ports: &[&str]) -> PortGroup {
        PortGroup {
            uuid: Uuid::Real(uuid.into()),
            external_ids: BTreeMap::from([(ovn::owner::OWNER_KEY.to_string(), owner.to_string())]),
            ports: ports.iter().map(|p| Uuid::Real(p.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_groups_a_port_joins_or_leaves_are_told_and_the_rest_are_not() {
        let port = Uuid::Real("p".into());
        let cands = [
            pg("a", "SecurityGroup/t/sg-a", &[]),
            pg("b", "SecurityGroup/t/sg-b", &["p"]),
            pg("c", "SecurityGroup/t/sg-c", &["p"]),
            pg("base", "SecuritySubnet//net", &[]),
        ];
        let want = BTreeSet::from([
            Uuid::Real("a".into()),
            Uuid::Real("c".into()),
            Uuid::Real("base".into()),
        ]);
        assert_eq!(
            changed_groups("t", &port, &want, &cands),
            vec!["sg-a", "sg-b"]
        );
    }
}
