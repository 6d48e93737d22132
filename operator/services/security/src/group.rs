//! SecurityGroup: dereference (its namespace's groups, its Port_Group) ->
//! validate and build (pure) -> plan (pure) -> write -> status. A refused
//! change writes nothing: the rows of the last accepted spec stay, so bad
//! input never half-programs a group. Deleting a group waits until no pod
//! is a member and no other live group names it as its remote group.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use ovn::Owner;
use vpcnet_api::condition::READY;
use vpcnet_api::contract::annotations::SECURITY_GROUPS;
use vpcnet_api::contract::external_ids::SG_NAMESPACE;
use vpcnet_api::contract::naming;
use vpcnet_api::{SecurityGroup, SecurityGroupStatus};
use vpcnet_runtime::driver::Reconcile;
use vpcnet_runtime::status;

use crate::plan::{self, Siblings};
use crate::reasons::{PROGRAMMED, SgReason, SgRefusal};
use crate::{Ctx, Error, GROUP_OWNER_KIND, Result, build, decide, write};

/// The OVN owner of group `ns/name`'s rows.
pub fn owner(ns: &str, name: &str) -> Owner {
    Owner::new(GROUP_OWNER_KIND, ns, name)
}

fn api(sg: &SecurityGroup, ctx: &Ctx) -> Api<SecurityGroup> {
    Api::namespaced(ctx.client.clone(), &sg.namespace().unwrap_or_default())
}

fn previous(sg: &SecurityGroup) -> Vec<Condition> {
    sg.status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

/// Writes the group's status: `Ready` from `outcome`, the Port_Group it
/// has (if any) and its member count.
async fn report(ctx: &Ctx, sg: &SecurityGroup, outcome: Result<String, &SgRefusal>) -> Result<()> {
    let pg_name =
        naming::security_group_port_group(&sg.namespace().unwrap_or_default(), &sg.name_any());
    let pg = ctx.view.port_group(&pg_name);
    let generation = sg.metadata.generation;
    let prev = previous(sg);
    let ready = match outcome {
        Ok(msg) => status::ready(&prev, true, PROGRAMMED, msg, generation),
        Err(r) => r.condition(&prev, READY, generation),
    };
    let st = SecurityGroupStatus {
        conditions: vec![ready],
        observed_generation: generation,
        members: pg.as_ref().map(|p| p.ports.len() as i64),
        port_group: pg.map(|p| p.name),
    };
    status::report_by(
        &api(sg, ctx),
        &sg.name_any(),
        sg.status.as_ref(),
        &st,
        Clone::clone,
    )
    .await?;
    Ok(())
}

/// Pods of `ns` whose annotation names group `name`.
pub fn pods_naming(
    ctx: &Ctx,
    ns: &str,
    name: &str,
) -> Vec<ObjectRef<k8s_openapi::api::core::v1::Pod>> {
    ctx.pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .filter(|p| {
            decide::requested(p.annotations()).is_some_and(|v| {
                v.split(',')
                    .map(str::trim)
                    .any(|e| e == name || e.split_once('/').is_some_and(|(_, n)| n == name))
            })
        })
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// Reconciles SecurityGroups.
pub struct GroupReconciler;

#[async_trait::async_trait]
impl Reconcile for GroupReconciler {
    type Object = SecurityGroup;
    type Context = Ctx;
    const KIND: &'static str = "SecurityGroup";

    async fn apply(sg: &SecurityGroup, ctx: &Ctx) -> Result<Action> {
        ctx.caches_ready().await;
        let ns = sg.namespace().unwrap_or_default();
        let name = sg.name_any();
        let owner = owner(&ns, &name);
        let pg_name = naming::security_group_port_group(&ns, &name);
        let existed = ctx.view.port_group(&pg_name).is_some();
        let mut refusal = None;
        let mut pending = Vec::new();
        let mut acl_count = 0;
        write::write(ctx, || {
            let groups = decide::groups_of(&ns, &ctx.groups.state());
            let cached = ctx.view.port_group(&pg_name);
            // Only a new group chooses a slot among its namespace's.
            let siblings = match &cached {
                None => ctx.view.groups_of(&ns),
                Some(_) => Vec::new(),
            };
            let accepted = match decide::validate(&ns, sg, &groups, cached.as_ref(), &siblings) {
                Ok(a) => a,
                Err(r) => {
                    refusal = Some(r);
                    return plan::Planned::default();
                }
            };
            // A remote group's address set exists once its Port_Group does:
            // until then the group is created without rules (its members
            // so far fall to the default deny), never with a rule OVN
            // would skip.
            pending = accepted
                .remotes
                .iter()
                .filter(|r| **r != name)
                .filter(|r| {
                    ctx.view
                        .port_group(&naming::security_group_port_group(&ns, r))
                        .is_none()
                })
                .cloned()
                .collect();
            acl_count = accepted.rows.acls.len();
            let acls = pending.is_empty().then_some(accepted.rows.acls);
            plan::group(
                &owner,
                accepted.rows.port_group,
                acls,
                cached.as_ref(),
                &ctx.view.acls(&owner.id()),
                Some(Siblings {
                    key: (SG_NAMESPACE, &ns),
                    cached: &siblings,
                }),
            )
        })
        .await?;
        if let Some(r) = refusal {
            r.announce(&ctx.rt, sg, &previous(sg), READY, "Program")
                .await;
            report(ctx, sg, Err(&r)).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        if !existed && ctx.view.port_group(&pg_name).is_some() {
            // Pods that named the group before it had a Port_Group join now.
            for p in pods_naming(ctx, &ns, &name) {
                let _ = ctx.pod_nudge.send(p);
            }
        }
        if !pending.is_empty() {
            return Err(Error::Dependency(format!(
                "the Port_Group of remote group(s) {} of {ns}/{name}",
                pending.join(", ")
            )));
        }
        report(
            ctx,
            sg,
            Ok(format!("{acl_count} ACL(s) on Port_Group {pg_name}")),
        )
        .await?;
        Ok(Action::requeue(Duration::from_secs(300)))
    }

    async fn cleanup(sg: &SecurityGroup, ctx: &Ctx) -> Result<Action> {
        ctx.caches_ready().await;
        let ns = sg.namespace().unwrap_or_default();
        let name = sg.name_any();
        let owner = owner(&ns, &name);
        let pg_name = naming::security_group_port_group(&ns, &name);
        let members = ctx.view.port_group(&pg_name).map_or(0, |p| p.ports.len());
        let referrers: Vec<String> = ctx
            .groups
            .state()
            .iter()
            .filter(|g| g.metadata.namespace.as_deref() == Some(&ns) && g.name_any() != name)
            .filter(|g| g.metadata.deletion_timestamp.is_none())
            .filter(|g| build::remote_groups(&g.spec).contains(&name))
            .map(|g| g.name_any())
            .collect();
        if members > 0 || !referrers.is_empty() {
            // Deleting it now would open its members (or the ACLs naming
            // it would be skipped by OVN): wait until nothing uses it.
            let r = SgRefusal::new(
                SgReason::InUse,
                format!(
                    "deletion waits for {members} member pod(s) to leave (remove the group from their {SECURITY_GROUPS} annotation) and for groups [{}] to stop naming it",
                    referrers.join(", ")
                ),
            );
            r.announce(&ctx.rt, sg, &previous(sg), READY, "Delete")
                .await;
            report(ctx, sg, Err(&r)).await?;
            return Err(Error::Dependency(format!("{ns}/{name} to be unused")));
        }
        write::write(ctx, || {
            plan::remove(
                &owner,
                ctx.view.port_group(&pg_name).as_ref(),
                &ctx.view.acls(&owner.id()),
            )
        })
        .await?;
        tracing::info!(namespace = %ns, group = %name, "removed the group's Port_Group and ACLs");
        Ok(Action::await_change())
    }
}
