//! Writing `status` with server-side apply, as the operator's field manager:
//! only the fields (and condition types) we send are ours.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use vpcnet_api::contract::OPERATOR_MANAGER as MANAGER;

/// A status type written by more than one writer (the operator and an
/// agent, say): each writer owns some fields and some condition types.
pub trait OwnedStatus: Serialize + Sized {
    /// The part of `self` (a status as read) that this writer owns: its
    /// fields, and its condition types only.
    fn owned_part(&self) -> Self;
}

/// Of `conditions`, those of the given `types` (a writer's own).
pub fn conditions_of(conditions: &[Condition], types: &[&str]) -> Vec<Condition> {
    conditions
        .iter()
        .filter(|c| types.contains(&c.type_.as_str()))
        .cloned()
        .collect()
}

/// Whether `current`'s owned part already says exactly `desired`: nothing
/// to write. Conditions are compared by type, whatever their order.
pub fn says<S: OwnedStatus>(current: Option<&S>, desired: &S) -> bool {
    says_by(current, desired, S::owned_part)
}

/// [`says`] with the owned part given by `owned` (for status types of
/// another crate).
pub fn says_by<S: Serialize>(current: Option<&S>, desired: &S, owned: impl Fn(&S) -> S) -> bool {
    fn norm(mut v: Value) -> Value {
        if let Some(conds) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            conds.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
        }
        v
    }
    let Some(current) = current else {
        return false;
    };
    let have = serde_json::to_value(owned(current)).unwrap_or(Value::Null);
    let want = serde_json::to_value(desired).unwrap_or(Value::Null);
    norm(have) == norm(want)
}

/// Writes `desired` as the object's status unless `current` already says
/// it; returns whether it wrote. Fields left out of `desired` that this
/// writer set before are removed by the apply (server-side apply drops what
/// a manager no longer sends).
pub async fn report<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    desired: &S,
) -> kube::Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: OwnedStatus,
{
    report_by(api, name, current, desired, S::owned_part).await
}

/// [`report`] with the owned part given by `owned` (for status types of
/// another crate).
pub async fn report_by<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    desired: &S,
    owned: impl Fn(&S) -> S,
) -> kube::Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    if says_by(current, desired, owned) {
        return Ok(false);
    }
    apply(
        api,
        name,
        serde_json::to_value(desired).unwrap_or(Value::Null),
    )
    .await?;
    Ok(true)
}

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
    condition(
        previous,
        vpcnet_api::condition::READY,
        ok,
        reason,
        message,
        generation,
    )
}

/// Whether a refusal is news worth an Event: the condition of `type_` does
/// not yet say `reason` for this `generation`. Reconciles repeat; Events
/// should not.
pub fn is_news(previous: &[Condition], type_: &str, reason: &str, generation: Option<i64>) -> bool {
    vpcnet_api::condition::find(previous, type_)
        .is_none_or(|c| c.reason != reason || c.observed_generation != generation)
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

#[cfg(test)]
mod says_tests {
    use super::*;
    use vpcnet_api::nat_rule_status::NatRuleStatus;

    impl OwnedStatus for NatRuleStatus {
        fn owned_part(&self) -> Self {
            NatRuleStatus {
                programmed_seal: None,
                conditions: self
                    .conditions
                    .iter()
                    .filter(|c| c.type_ != "Programmed")
                    .cloned()
                    .collect(),
                ..self.clone()
            }
        }
    }

    fn c(t: &str, reason: &str) -> Condition {
        vpcnet_api::condition::new(t, true, reason, "m", Some(1))
    }

    #[test]
    fn only_the_owned_part_is_compared_and_a_dropped_field_is_news() {
        let current = NatRuleStatus {
            conditions: vec![
                c("Ready", "Ok"),
                c("Programmed", "Applied"),
                c("Accepted", "Accepted"),
            ],
            observed_generation: Some(1),
            v4ip: Some("172.16.3.10".into()),
            programmed_seal: Some("agent's".into()),
            ..Default::default()
        };
        let mut desired = NatRuleStatus {
            conditions: vec![c("Accepted", "Accepted"), c("Ready", "Ok")],
            observed_generation: Some(1),
            v4ip: Some("172.16.3.10".into()),
            ..Default::default()
        };
        // The agent's condition and seal are not ours; the order is not news.
        assert!(says(Some(&current), &desired));
        desired.v4ip = None;
        assert!(
            !says(Some(&current), &desired),
            "clearing an owned field is a write"
        );
        assert!(!says(None, &desired));
    }
}

#[cfg(test)]
mod is_news_tests {
    use super::{condition, is_news};

    #[test]
    fn a_repeated_refusal_is_not_news_but_a_new_reason_or_generation_is() {
        let prev = vec![condition(&[], "Accepted", false, "Forbidden", "m", Some(2))];
        assert!(!is_news(&prev, "Accepted", "Forbidden", Some(2)));
        assert!(is_news(&prev, "Accepted", "IPConflict", Some(2)));
        assert!(is_news(&prev, "Accepted", "Forbidden", Some(3)));
        assert!(is_news(&prev, "Ready", "Forbidden", Some(2)));
        assert!(is_news(&[], "Accepted", "Forbidden", Some(2)));
    }
}
