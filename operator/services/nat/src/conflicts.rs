//! Which NAT rules may share an EIP: a pure judgement over every rule that
//! names the EIP, so every reconcile of any rule reaches the same verdict.
//! Of two conflicting rules the older one (creation time, then kind/name)
//! keeps working and the younger is refused.

use vpcnet_api::dnat::L4Protocol;

/// What a rule wants from its EIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Use {
    /// Source NAT for a range.
    Snat,
    /// Destination NAT of `proto` ports `lo..=hi`.
    Dnat {
        /// Protocol.
        proto: L4Protocol,
        /// First external port.
        lo: u16,
        /// Last external port.
        hi: u16,
        /// May share the port with other shared rules.
        shared: bool,
    },
    /// The whole EIP, both directions.
    Fip,
}

/// A rule as the judgement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleUse {
    /// `snat/<name>`, `dnat/<name>` or `fip/<name>` (same namespace as the EIP).
    pub key: String,
    /// Sort key: older first.
    pub age: (Option<i64>, String),
    /// What it wants.
    pub what: Use,
}

/// Parses `"8888"` or `"8000-8010"`.
pub fn port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b && a > 0).then_some((a, b))
        }
        None => s.parse().ok().filter(|&p| p > 0).map(|p| (p, p)),
    }
}

fn clash(a: &Use, b: &Use) -> Option<String> {
    match (a, b) {
        (Use::Fip, Use::Fip) => Some("the EIP is already a floating IP of another rule".into()),
        (Use::Fip, _) | (_, Use::Fip) => {
            Some("a floating IP needs an EIP no other rule uses".into())
        }
        (
            Use::Dnat {
                proto: p1,
                lo: l1,
                hi: h1,
                shared: s1,
            },
            Use::Dnat {
                proto: p2,
                lo: l2,
                hi: h2,
                shared: s2,
            },
        ) => {
            let overlap = p1 == p2 && l1 <= h2 && l2 <= h1;
            if !overlap {
                None
            } else if !(*s1 && *s2) {
                Some(format!("{p1:?} port {l2}-{h2} of the EIP is already forwarded (mark both rules shared to spread it)").to_lowercase())
            } else if (l1, h1) != (l2, h2) {
                // Shared rules are spread over one chain per range; an
                // overlapping but different range would never match.
                Some(format!(
                    "shared rules on one port must forward exactly the same range: {} ports {l1}-{h1} are already shared as one range",
                    format!("{p1:?}").to_lowercase()
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Verdict for `me`: `Err(reason)` if a rule that keeps working conflicts
/// with it. Rules are taken oldest first and each is kept unless it clashes
/// with one already kept, so a refused rule never blocks a younger one. The
/// oldest kept rule it clashes with is named, whatever the order of `all` (a
/// cache's order), so the reason does not change between reconciles.
pub fn judge(me: &RuleUse, all: &[RuleUse]) -> Result<(), String> {
    let mut older: Vec<&RuleUse> = all
        .iter()
        .filter(|o| o.key != me.key && o.age < me.age)
        .collect();
    older.sort_by(|a, b| a.age.cmp(&b.age));
    let mut kept: Vec<&RuleUse> = Vec::new();
    for o in older {
        if kept.iter().all(|k| clash(&k.what, &o.what).is_none()) {
            kept.push(o);
        }
    }
    match kept
        .iter()
        .find_map(|k| clash(&k.what, &me.what).map(|why| (k, why)))
    {
        Some((other, why)) => Err(format!("conflicts with {}: {why}", other.key)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, age: i64, what: Use) -> RuleUse {
        RuleUse {
            key: key.into(),
            age: (Some(age), key.into()),
            what,
        }
    }
    fn dnat(lo: u16, hi: u16, shared: bool) -> Use {
        Use::Dnat {
            proto: L4Protocol::Tcp,
            lo,
            hi,
            shared,
        }
    }

    #[test]
    fn same_port_twice_is_refused_unless_both_shared() {
        let a = r("dnat/a", 1, dnat(8888, 8888, false));
        let b = r("dnat/b", 2, dnat(8888, 8888, false));
        assert!(
            judge(&a, &[a.clone(), b.clone()]).is_ok(),
            "the older rule keeps working"
        );
        assert!(
            judge(&b, &[a.clone(), b.clone()])
                .unwrap_err()
                .contains("dnat/a")
        );
        let a = r("dnat/a", 1, dnat(8888, 8888, true));
        let b = r("dnat/b", 2, dnat(8888, 8888, true));
        assert!(judge(&b, &[a, b.clone()]).is_ok());
    }

    #[test]
    fn ranges_overlap_and_protocols_separate() {
        let a = r("dnat/a", 1, dnat(8000, 8010, false));
        let b = r("dnat/b", 2, dnat(8010, 8020, false));
        let c = r(
            "dnat/c",
            3,
            Use::Dnat {
                proto: L4Protocol::Udp,
                lo: 8000,
                hi: 8010,
                shared: false,
            },
        );
        assert!(judge(&b, &[a.clone(), b.clone()]).is_err());
        assert!(judge(&c, &[a, c.clone()]).is_ok());
    }

    #[test]
    fn fip_needs_the_eip_alone() {
        let s = r("snat/s", 1, Use::Snat);
        let f = r("fip/f", 2, Use::Fip);
        let g = r("fip/g", 3, Use::Fip);
        assert!(
            judge(&f, &[s.clone(), f.clone()])
                .unwrap_err()
                .contains("snat/s")
        );
        assert!(
            judge(&g, &[f.clone(), g.clone()])
                .unwrap_err()
                .contains("fip/f")
        );
        let d = r("dnat/d", 4, dnat(80, 80, false));
        assert!(
            judge(&d, &[f, d.clone()]).is_err(),
            "no DNAT on a FIP's EIP"
        );
        assert!(
            judge(&r("snat/t", 5, Use::Snat), &[s, r("snat/t", 5, Use::Snat)]).is_ok(),
            "SNATs share an EIP"
        );
    }

    #[test]
    fn the_oldest_conflict_is_named_whatever_the_order() {
        // Same creation second: the name breaks the tie.
        let first = RuleUse {
            key: "fip/f-first".into(),
            age: (Some(1), "fip/f-first".into()),
            what: Use::Fip,
        };
        let outside = RuleUse {
            key: "fip/f-outside".into(),
            age: (Some(1), "fip/f-outside".into()),
            what: Use::Fip,
        };
        let twice = r("fip/f-twice", 2, Use::Fip);
        let d = r("dnat/d", 3, dnat(80, 80, false));
        for all in [
            vec![first.clone(), outside.clone(), twice.clone(), d.clone()],
            vec![d.clone(), twice.clone(), outside.clone(), first.clone()],
        ] {
            assert!(judge(&twice, &all).unwrap_err().contains("fip/f-first"));
            assert!(judge(&d, &all).unwrap_err().contains("fip/f-first"));
        }
    }

    #[test]
    fn ports_parse() {
        assert_eq!(port_range("8888"), Some((8888, 8888)));
        assert_eq!(port_range("8000-8010"), Some((8000, 8010)));
        assert_eq!(port_range("0"), None);
        assert_eq!(port_range("9-8"), None);
    }

    #[test]
    fn a_refused_rule_blocks_nobody() {
        // fip/f is refused (a DNAT is older), so the younger DNAT on another
        // port is not blocked by it.
        let d1 = r("dnat/d1", 1, dnat(80, 80, false));
        let f = r("fip/f", 2, Use::Fip);
        let d2 = r("dnat/d2", 3, dnat(443, 443, false));
        let all = [d1.clone(), f.clone(), d2.clone()];
        assert!(judge(&f, &all).is_err());
        assert!(judge(&d2, &all).is_ok(), "{:?}", judge(&d2, &all));
    }

    #[test]
    fn shared_rules_must_share_the_same_range() {
        let a = r("dnat/a", 1, dnat(9000, 9010, true));
        let same = r("dnat/b", 2, dnat(9000, 9010, true));
        let overlapping = r("dnat/c", 3, dnat(9005, 9020, true));
        let all = [a.clone(), same.clone(), overlapping.clone()];
        assert!(judge(&same, &all).is_ok());
        let why = judge(&overlapping, &all).unwrap_err();
        assert!(why.contains("exactly the same range"), "{why}");
    }
}
