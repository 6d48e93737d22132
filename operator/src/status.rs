//! Writing `status` with server-side apply, as the operator's field manager:
//! only the fields (and condition types) we send are ours.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::names::MANAGER;

/// Applies `status` to the object `name`.
pub async fn apply<K>(api: &Api<K>, name: &str, status: Value) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// A `Ready` condition stamped now, carrying over the transition time of
/// `previous` when the status is unchanged.
pub fn ready(
    previous: &[Condition],
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    let mut conds = previous.to_vec();
    vpcnet_api::condition::set(
        &mut conds,
        vpcnet_api::condition::new(
            vpcnet_api::condition::READY,
            ok,
            reason,
            message,
            generation,
        ),
    );
    vpcnet_api::condition::find(&conds, vpcnet_api::condition::READY)
        .cloned()
        .expect("just set")
}

/// A condition of `type_` stamped now, carrying over the transition time of
/// the same type in `previous` when the status is unchanged.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    let mut conds = previous.to_vec();
    vpcnet_api::condition::set(
        &mut conds,
        vpcnet_api::condition::new(type_, ok, reason, message, generation),
    );
    vpcnet_api::condition::find(&conds, type_)
        .cloned()
        .expect("just set")
}
