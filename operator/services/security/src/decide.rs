//! Decisions (pure): whether a group can be programmed and in which slot;
//! which groups a pod is a member of.

use std::collections::{BTreeMap, BTreeSet};

use ovn::nb::PortGroup;
use vpcnet_api::SecurityGroup;
use vpcnet_api::contract::external_ids::SG_SLOT;

use crate::build::{self, GroupRows};
use crate::layout;
use crate::reasons::{SgReason, SgRefusal};

/// The groups of one namespace as a decision sees them: name -> whether
/// it is live (not being deleted).
pub type Groups = BTreeMap<String, bool>;

/// The groups a pod's annotations ask for: ours, else Kube-OVN's spelling.
pub fn requested(annotations: &BTreeMap<String, String>) -> Option<&str> {
    use vpcnet_api::contract::annotations::{KUBE_OVN_SECURITY_GROUPS, SECURITY_GROUPS};
    annotations
        .get(SECURITY_GROUPS)
        .or_else(|| annotations.get(KUBE_OVN_SECURITY_GROUPS))
        .map(String::as_str)
}

/// The groups of `ns` among `all`.
pub fn groups_of(ns: &str, all: &[std::sync::Arc<SecurityGroup>]) -> Groups {
    all.iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(ns))
        .map(|g| {
            (
                g.metadata.name.clone().unwrap_or_default(),
                g.metadata.deletion_timestamp.is_none(),
            )
        })
        .collect()
}

/// The slot recorded on a group's Port_Group.
pub fn slot_of(pg: &PortGroup) -> Option<u16> {
    pg.external_ids
        .get(SG_SLOT)
        .and_then(|s| s.parse().ok())
        .filter(|s| *s < layout::SLOTS)
}

/// A group that can be programmed: its slot and rows.
#[derive(Debug)]
pub struct Accepted {
    /// Its priority slot.
    pub slot: u16,
    /// Its Port_Group and ACLs.
    pub rows: GroupRows,
    /// The groups its rules name as remote groups.
    pub remotes: BTreeSet<String>,
}

/// Validates group `sg` of namespace `ns` against the namespace's groups
/// `groups`, its cached Port_Group `pg` and the cached Port_Groups of the
/// namespace `siblings` (whose slots are taken).
pub fn validate(
    ns: &str,
    sg: &SecurityGroup,
    groups: &Groups,
    pg: Option<&PortGroup>,
    siblings: &[PortGroup],
) -> Result<Accepted, SgRefusal> {
    let name = sg.metadata.name.clone().unwrap_or_default();
    let remotes = build::remote_groups(&sg.spec);
    let missing: Vec<&String> = remotes
        .iter()
        .filter(|r| **r != name && groups.get(*r) != Some(&true))
        .collect();
    if !missing.is_empty() {
        return Err(SgRefusal::new(
            SgReason::RemoteGroupNotFound,
            format!(
                "remoteSecurityGroup {} is not a SecurityGroup of namespace {ns}; create it or fix the rule (nothing of this change is programmed)",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let slot = match pg.and_then(slot_of) {
        Some(s) => s,
        None => layout::free_slot(
            siblings
                .iter()
                .filter(|s| pg.is_none_or(|p| p.uuid != s.uuid))
                .filter_map(slot_of),
        )
        .ok_or_else(|| {
            SgRefusal::new(
                SgReason::TooManyGroups,
                format!(
                    "namespace {ns} already has {} SecurityGroups, the most whose rules can be ordered without ties; delete one",
                    layout::SLOTS
                ),
            )
        })?,
    };
    let rows = build::group_rows(ns, &name, &sg.spec, slot)
        .map_err(|e| SgRefusal::new(SgReason::InvalidRule, e.0))?;
    Ok(Accepted {
        slot,
        rows,
        remotes,
    })
}

/// The groups pod annotation `value` asks for, for a pod of `ns`: every
/// entry a live group of `ns` (`ns/name` is accepted for the pod's own
/// namespace). Anything else refuses the whole annotation, so the pod keeps
/// its previous groups: never silently more open, never silently closed.
pub fn membership(
    ns: &str,
    value: Option<&str>,
    groups: &Groups,
) -> Result<BTreeSet<String>, SgRefusal> {
    let mut out = BTreeSet::new();
    for entry in value.unwrap_or_default().split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let name = match entry.split_once('/') {
            Some((other, _)) if other != ns => {
                return Err(SgRefusal::new(
                    SgReason::ForeignSecurityGroup,
                    format!(
                        "{entry}: a pod may only join SecurityGroups of its own namespace {ns}; its groups are unchanged"
                    ),
                ));
            }
            Some((_, name)) => name,
            None => entry,
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Err(SgRefusal::new(
                SgReason::InvalidAnnotation,
                format!("{entry:?} is not a SecurityGroup name; its groups are unchanged"),
            ));
        }
        if groups.get(name) != Some(&true) {
            return Err(SgRefusal::new(
                SgReason::SecurityGroupNotFound,
                format!(
                    "SecurityGroup {ns}/{name} does not exist or is being deleted; the pod's groups are unchanged"
                ),
            ));
        }
        out.insert(name.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use vpcnet_api::SecurityGroupSpec;
    use vpcnet_api::security_group::{RemoteType, SgPolicy, SgProtocol, SgRule};

    use super::*;

    fn groups(live: &[&str], dying: &[&str]) -> Groups {
        live.iter()
            .map(|g| (g.to_string(), true))
            .chain(dying.iter().map(|g| (g.to_string(), false)))
            .collect()
    }

    fn sg(name: &str, remote: Option<&str>) -> SecurityGroup {
        let mut spec = SecurityGroupSpec::default();
        if let Some(r) = remote {
            spec.ingress_rules.push(SgRule {
                protocol: SgProtocol::Tcp,
                priority: 10,
                remote_type: RemoteType::SecurityGroup,
                remote_security_group: Some(r.into()),
                policy: SgPolicy::Allow,
                ..Default::default()
            });
        }
        let mut g = SecurityGroup::new(name, spec);
        g.metadata.namespace = Some("t".into());
        g
    }

    fn pg_with_slot(uuid: &str, slot: u16) -> PortGroup {
        PortGroup {
            uuid: ovn::Uuid::Real(uuid.into()),
            external_ids: BTreeMap::from([(SG_SLOT.to_string(), slot.to_string())]),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_joins_live_groups_of_its_own_namespace_only() {
        let g = groups(&["sg-a", "sg-b"], &["old"]);
        assert_eq!(
            membership("t", Some(" sg-a, sg-b ,"), &g).unwrap(),
            BTreeSet::from(["sg-a".to_string(), "sg-b".to_string()])
        );
        assert_eq!(membership("t", Some("t/sg-a"), &g).unwrap().len(), 1);
        assert!(membership("t", None, &g).unwrap().is_empty());
        let foreign = membership("t", Some("sg-a,other/sg-a"), &g).unwrap_err();
        assert_eq!(foreign.reason, SgReason::ForeignSecurityGroup);
        assert_eq!(
            membership("t", Some("sg-a,nope"), &g).unwrap_err().reason,
            SgReason::SecurityGroupNotFound
        );
        assert_eq!(
            membership("t", Some("old"), &g).unwrap_err().reason,
            SgReason::SecurityGroupNotFound,
            "a group being deleted takes no new members"
        );
        assert_eq!(
            membership("t", Some("Bad_Name"), &g).unwrap_err().reason,
            SgReason::InvalidAnnotation
        );
    }

    #[test]
    fn ours_wins_over_kube_ovns_spelling_which_is_read_alone() {
        let kube_ovn = BTreeMap::from([(
            "ovn.kubernetes.io/security_groups".to_string(),
            "a".to_string(),
        )]);
        assert_eq!(requested(&kube_ovn), Some("a"));
        let mut both = kube_ovn.clone();
        both.insert("vpcnet.io/security_groups".into(), "b".into());
        assert_eq!(requested(&both), Some("b"));
        assert_eq!(requested(&BTreeMap::new()), None);
    }

    #[test]
    fn a_rule_naming_a_missing_or_dying_group_is_refused_but_itself_is_fine() {
        let g = groups(&["web", "db"], &["old"]);
        assert!(validate("t", &sg("db", Some("web")), &g, None, &[]).is_ok());
        assert!(validate("t", &sg("db", Some("db")), &g, None, &[]).is_ok());
        for r in ["nope", "old"] {
            let e = validate("t", &sg("db", Some(r)), &g, None, &[]).unwrap_err();
            assert_eq!(e.reason, SgReason::RemoteGroupNotFound);
        }
    }

    #[test]
    fn a_group_keeps_its_slot_and_a_new_one_takes_the_smallest_free() {
        let g = groups(&["a"], &[]);
        let sibs = [pg_with_slot("x", 0), pg_with_slot("y", 2)];
        assert_eq!(
            validate("t", &sg("a", None), &g, None, &sibs).unwrap().slot,
            1
        );
        let mine = pg_with_slot("y", 2);
        assert_eq!(
            validate("t", &sg("a", None), &g, Some(&mine), &sibs)
                .unwrap()
                .slot,
            2
        );
        let full: Vec<PortGroup> = (0..layout::SLOTS)
            .map(|s| pg_with_slot(&format!("u{s}"), s))
            .collect();
        assert_eq!(
            validate("t", &sg("a", None), &g, None, &full)
                .unwrap_err()
                .reason,
            SgReason::TooManyGroups
        );
    }
}
