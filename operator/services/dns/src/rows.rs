//! Writes a tenant VPC's resolver load balancers into OVN: the rows owned
//! by the VpcDns (one transaction, created or updated in place), then one
//! reference from each of the VPC's switches (their `load_balancer`
//! column, which no other service writes: the lb service's rows reach the
//! switches through the VPC's Load_Balancer_Group). Every reference to a
//! load balancer is weak, so deleting the rows detaches them everywhere.

use ovn::nb::{LoadBalancer, LogicalSwitch, logical_switch};
use ovn::ops::{Cond, Mutation};
use ovn::owner::{Desired, ensure_owned};
use ovn::{Owner, Table, Txn, Uuid, datum};

use crate::{Ctx, Error, OWNER_KIND, Result};

/// The OVN owner of VpcDns `name`'s rows.
pub fn owner(name: &str) -> Owner {
    Owner::cluster(OWNER_KIND, name)
}

/// Makes VpcDns `name`'s rows exactly `rows` and referred to by each of
/// `switches` (logical switch names).
pub async fn converge(
    ctx: &Ctx,
    name: &str,
    vpc: &str,
    rows: Vec<LoadBalancer>,
    switches: &[String],
) -> Result<()> {
    let owner = owner(name).with_vpc(vpc);
    let names: Vec<String> = (0..rows.len()).map(|i| format!("lb{i}")).collect();
    let desired = rows
        .iter()
        .zip(&names)
        .map(|(r, n)| Desired::new(r).named(n))
        .collect();
    let report = ensure_owned(&ctx.rt.nb, &owner, desired).await?;
    let lbs: Vec<Uuid> = names
        .iter()
        .filter_map(|n| report.uuids.get(n).cloned())
        .collect();
    if lbs.len() != rows.len() {
        return Err(Error::Dependency(format!(
            "the load balancers of VpcDns {name} in the NB database"
        )));
    }
    let mut txn = Txn::nb();
    for ls in switches {
        let uuid = ctx
            .rt
            .ovn
            .switch(ls)
            .ok_or_else(|| Error::Dependency(format!("logical switch {ls}")))?;
        // Inserting into a set is idempotent: a switch that already refers
        // to the rows is unchanged.
        txn.mutate(
            LogicalSwitch::TABLE,
            &[Cond::uuid(&uuid)],
            &[Mutation::insert(
                logical_switch::LOAD_BALANCER,
                datum::set_of(lbs.iter().map(Uuid::to_json)),
            )],
        );
    }
    if !txn.is_empty() {
        txn.comment(&format!(
            "vpcnet: resolver of VpcDns {name} on its VPC's switches"
        ));
        ctx.rt.nb.transact(txn).await?;
    }
    if report.created + report.updated + report.deleted > 0 {
        tracing::info!(
            vpcdns = name,
            vpc,
            created = report.created,
            updated = report.updated,
            deleted = report.deleted,
            "resolver load balancers converged"
        );
    }
    Ok(())
}

/// Removes VpcDns `name`'s rows (and so every reference to them).
pub async fn remove(ctx: &Ctx, name: &str) -> Result<usize> {
    Ok(ovn::owner::delete_owned(&ctx.rt.nb, &owner(name)).await?)
}
