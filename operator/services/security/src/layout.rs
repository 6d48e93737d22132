//! Where every ACL of ours sits in OVN's one priority space (pure).
//!
//! OVN 23.03 has no ACL tiers: every ACL on a switch, of every Port_Group,
//! is ordered by its priority alone, and two ACLs of one priority whose
//! matches overlap are evaluated in an undefined order. Only groups of one
//! namespace can share a pod (a pod joins groups of its own namespace), so
//! the layout makes every ACL of a namespace's groups distinct in priority
//! within its direction:
//!
//! | OVN priority | what |
//! |---|---|
//! | [`BASE_GATEWAY`], [`BASE_ND`] | a member's own gateway, neighbour discovery (base group of its subnet) |
//! | [`RULE_TOP`] − rank | rules: rank = (priority − 1) · 2·[`SLOTS`] + (allow ? [`SLOTS`] : 0) + slot |
//! | the same with priority [`SAME_GROUP_RULE`] | `allowSameGroupTraffic`: after every explicit rule |
//! | [`DEFAULT_DROP`] | everything else to or from a member (base group) |
//!
//! A smaller rule priority so wins over a larger one whichever group each
//! rule is in; at equal priority a drop wins over an allow; and each group
//! of a namespace has a slot of its own (recorded on its Port_Group), so
//! no two groups' rules share a priority. A group's rules of one priority,
//! direction and verdict are one ACL (their matches or-ed): no two ACLs of
//! a group share a priority either.

use vpcnet_api::security_group::SgPolicy;

/// Groups one namespace may have: the width of a priority's band.
pub const SLOTS: u16 = 64;

/// The largest rule priority the API admits.
pub const MAX_RULE_PRIORITY: u16 = 200;

/// The rule priority `allowSameGroupTraffic` is evaluated at: after every
/// explicit rule of every group of the pod.
pub const SAME_GROUP_RULE: u16 = MAX_RULE_PRIORITY + 1;

/// The OVN priority of rank 0 (priority 1, drop, slot 0).
pub const RULE_TOP: i64 = 31999;

/// Traffic between a member and its own subnet gateway.
pub const BASE_GATEWAY: i64 = 32001;

/// IPv6 neighbour discovery of a member (ARP is not IP: never dropped).
pub const BASE_ND: i64 = 32000;

/// Anything else to or from a member: dropped.
pub const DEFAULT_DROP: i64 = 1000;

/// The OVN priority of a rule of priority `priority` (1..=201), verdict
/// `policy`, in the group of slot `slot`.
pub fn rule_priority(priority: u16, policy: SgPolicy, slot: u16) -> i64 {
    debug_assert!((1..=SAME_GROUP_RULE).contains(&priority) && slot < SLOTS);
    let verdict = match policy {
        SgPolicy::Drop => 0,
        SgPolicy::Allow => i64::from(SLOTS),
    };
    let rank = i64::from(priority - 1) * 2 * i64::from(SLOTS) + verdict + i64::from(slot);
    RULE_TOP - rank
}

/// The OVN priority of a group's same-group allow.
pub fn same_group_priority(slot: u16) -> i64 {
    rule_priority(SAME_GROUP_RULE, SgPolicy::Allow, slot)
}

/// A rule priority as the API gives it, clamped into 1..=200 (admission
/// already refuses anything else).
pub fn clamp(priority: i32) -> u16 {
    priority.clamp(1, i32::from(MAX_RULE_PRIORITY)) as u16
}

/// The smallest slot not in `used`, if any is left.
pub fn free_slot(used: impl IntoIterator<Item = u16>) -> Option<u16> {
    let used: std::collections::BTreeSet<u16> = used.into_iter().collect();
    (0..SLOTS).find(|s| !used.contains(s))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_rule_priority_verdict_and_slot_has_a_priority_of_its_own_between_the_base_bands() {
        let mut seen = BTreeMap::new();
        for p in 1..=SAME_GROUP_RULE {
            for v in [SgPolicy::Drop, SgPolicy::Allow] {
                for s in 0..SLOTS {
                    let o = rule_priority(p, v, s);
                    assert!(o > DEFAULT_DROP && o < BASE_ND, "{p} {v:?} {s}: {o}");
                    assert!(o <= 32767);
                    if let Some(prev) = seen.insert(o, (p, v, s)) {
                        panic!("{o} for both {prev:?} and {:?}", (p, v, s));
                    }
                }
            }
        }
    }

    #[test]
    fn a_smaller_priority_wins_whatever_the_verdict_or_slot_and_a_drop_wins_a_tie() {
        for s in [0, 1, SLOTS - 1] {
            for t in [0, 1, SLOTS - 1] {
                // Priority 10 beats 11 in any group, either verdict.
                assert!(
                    rule_priority(10, SgPolicy::Allow, s) > rule_priority(11, SgPolicy::Drop, t)
                );
                assert!(
                    rule_priority(10, SgPolicy::Drop, s) > rule_priority(11, SgPolicy::Allow, t)
                );
                // Equal priority: every group's drop above every group's allow.
                assert!(
                    rule_priority(10, SgPolicy::Drop, s) > rule_priority(10, SgPolicy::Allow, t)
                );
            }
        }
        assert!(rule_priority(200, SgPolicy::Allow, SLOTS - 1) > same_group_priority(0));
    }

    #[test]
    fn slots_are_handed_out_smallest_first_and_run_out() {
        assert_eq!(free_slot([]), Some(0));
        assert_eq!(free_slot([0, 1, 3]), Some(2));
        assert_eq!(free_slot(0..SLOTS), None);
    }
}
