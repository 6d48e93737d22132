//! NAT gateways and the tenant-owned NAT objects (EIPs, SNAT, DNAT, FIP).
//!
//! The operator decides (ownership, conflicts, addresses) and records the
//! decision in each object's `Accepted` condition and status; the
//! `vpcnet-natgw` agent in the gateway pod programs what is accepted and
//! reports `Programmed`. `Ready` is both.

pub mod conflicts;
pub mod context;
pub mod eip;
pub mod fairness;
pub mod gateway;
pub mod ownership;
pub mod reasons;
pub mod rebuild;
pub mod route;
pub mod rule_counts;
pub mod rules;
pub mod sealed;
pub mod service;
pub mod watches;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use vpcnet_api::condition;
pub use vpcnet_api::contract::conditions::{ACCEPTED, PROGRAMMED};
use vpcnet_runtime::status;
pub use vpcnet_runtime::{Error, Result};

pub use context::Ctx;

/// The condition types the operator writes on EIPs and rules (the agent
/// writes `Programmed`).
pub const OPERATOR_CONDITIONS: [&str; 2] = [ACCEPTED, condition::READY];

/// Of `conditions`, the operator's.
pub fn operator_conditions(conditions: &[Condition]) -> Vec<Condition> {
    status::conditions_of(conditions, &OPERATOR_CONDITIONS)
}
pub use service::Nat;

/// `Ready` from `Accepted` (ours, just computed) and `Programmed` (the
/// agent's, for the same generation). A `Programmed=True` counts only with
/// the agent's seal (`programmed_sealed`): the condition itself is writable by
/// anyone who may write the object's status.
pub fn ready(
    previous: &[Condition],
    accepted: &Condition,
    generation: Option<i64>,
    programmed_sealed: bool,
) -> Condition {
    let programmed = condition::find(previous, PROGRAMMED);
    let (ok, reason, message) = if accepted.status != "True" {
        (false, accepted.reason.clone(), accepted.message.clone())
    } else {
        match programmed {
            Some(p)
                if p.status == "True"
                    && p.observed_generation == generation
                    && programmed_sealed =>
            {
                (true, "Programmed".to_string(), p.message.clone())
            }
            Some(p) if p.status == "True" && p.observed_generation == generation => (
                false,
                "ProgrammedUnverified".to_string(),
                "Programmed=True carries no valid seal of the gateway agent".to_string(),
            ),
            Some(p) if p.status == "False" && p.observed_generation == generation => {
                (false, p.reason.clone(), p.message.clone())
            }
            _ => (
                false,
                "Programming".to_string(),
                "accepted; waiting for the NAT gateway to program it".to_string(),
            ),
        }
    };
    status::condition(previous, condition::READY, ok, &reason, message, generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(t: &str, ok: bool, reason: &str, gen_: i64) -> Condition {
        condition::new(t, ok, reason, "m", Some(gen_))
    }

    #[test]
    fn ready_needs_both_and_the_same_generation() {
        let acc = cond(ACCEPTED, true, "Accepted", 2);
        assert_eq!(ready(&[], &acc, Some(2), false).reason, "Programming");
        assert_eq!(
            ready(&[cond(PROGRAMMED, true, "Applied", 1)], &acc, Some(2), true).reason,
            "Programming",
            "stale agent report"
        );
        let r = ready(&[cond(PROGRAMMED, true, "Applied", 2)], &acc, Some(2), true);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "Programmed")
        );
        assert_eq!(
            ready(
                &[cond(PROGRAMMED, false, "ApplyFailed", 2)],
                &acc,
                Some(2),
                false
            )
            .reason,
            "ApplyFailed"
        );
        let refused = cond(ACCEPTED, false, "Forbidden", 2);
        assert_eq!(
            ready(
                &[cond(PROGRAMMED, true, "Applied", 2)],
                &refused,
                Some(2),
                true
            )
            .reason,
            "Forbidden"
        );
        assert_eq!(
            ready(
                &[cond(PROGRAMMED, true, "Applied", 2)],
                &acc,
                Some(2),
                false
            )
            .reason,
            "ProgrammedUnverified",
            "a Programmed condition anyone could have written"
        );
    }
}
