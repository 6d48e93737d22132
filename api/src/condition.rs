//! `metav1.Condition` helpers used by every controller.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition every kind reports: is the object fully programmed.
pub const READY: &str = "Ready";

/// Inserts or updates `cond` by type. `lastTransitionTime` only moves when the
/// status value changes, as the Kubernetes API conventions require.
pub fn set(conditions: &mut Vec<Condition>, mut cond: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            if existing.status == cond.status {
                cond.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = cond;
        }
        None => conditions.push(cond),
    }
}

/// Builds a condition stamped now.
pub fn new(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the `Ready` condition is `True`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    find(conditions, READY).is_some_and(|c| c.status == "True")
}

/// A kind whose status carries conditions: every kind of this API.
pub trait Conditioned {
    /// The current conditions; empty before the first status write.
    fn conditions(&self) -> &[Condition];
}

macro_rules! conditioned {
    ($($kind:ty),+ $(,)?) => {$(
        impl Conditioned for $kind {
            fn conditions(&self) -> &[Condition] {
                self.status
                    .as_ref()
                    .map(|s| s.conditions.as_slice())
                    .unwrap_or_default()
            }
        }
    )+};
}

conditioned!(
    crate::IptablesDnatRule,
    crate::IptablesEIP,
    crate::IptablesFIPRule,
    crate::IptablesSnatRule,
    crate::SecurityGroup,
    crate::Subnet,
    crate::SwitchLBRule,
    crate::Vip,
    crate::Vpc,
    crate::VpcDns,
    crate::VpcNatGateway,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let mut conds = vec![];
        let first = new(READY, false, "Pending", "waiting", Some(1));
        let t0 = first.last_transition_time.clone();
        set(&mut conds, first);
        std::thread::sleep(std::time::Duration::from_millis(5));
        set(
            &mut conds,
            new(READY, false, "StillPending", "still waiting", Some(2)),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, t0);
        assert_eq!(conds[0].reason, "StillPending");
        assert_eq!(conds[0].observed_generation, Some(2));
        set(&mut conds, new(READY, true, "Programmed", "done", Some(2)));
        assert_ne!(conds[0].last_transition_time, t0);
        assert!(is_ready(&conds));
    }

    #[test]
    fn other_types_are_appended() {
        let mut conds = vec![new(READY, true, "Ok", "", None)];
        set(&mut conds, new("Degraded", false, "Ok", "", None));
        assert_eq!(conds.len(), 2);
        assert!(find(&conds, "Degraded").is_some());
    }
}
