//! Which conntrack entries are stale: the pure decision of the flusher.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::conntrack::{Entry, UDP};
use crate::vips::VipMap;

/// VIPs of `old` that `new` no longer has (their Service or rule is gone).
pub fn gone(old: &VipMap, new: &VipMap) -> BTreeSet<SocketAddr> {
    old.keys()
        .filter(|v| !new.contains_key(v))
        .copied()
        .collect()
}

/// The UDP entries of `entries` that point at a VIP and will never reach a
/// backend it serves:
/// - to a VIP of `vips`, answered by an address that is not one of its
///   backends (the backend left, or the entry was made before the VIP had
///   any and was never translated);
/// - to a VIP of `gone`, translated to some backend (an untranslated entry
///   to an address that is no VIP any more is ordinary traffic).
pub fn stale<'a>(
    entries: &'a [Entry],
    vips: &VipMap,
    gone: &BTreeSet<SocketAddr>,
) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| e.proto == UDP)
        .filter(|e| match vips.get(&e.orig_dst) {
            Some(backends) => !backends.contains(&e.reply_src),
            None => gone.contains(&e.orig_dst) && e.reply_src != e.orig_dst,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn entry(proto: u8, dst: &str, reply: &str) -> Entry {
        Entry {
            proto,
            zone: 3,
            orig_src: sa("10.0.0.2:40000"),
            orig_dst: sa(dst),
            reply_src: sa(reply),
        }
    }

    fn map(pairs: &[(&str, &[&str])]) -> VipMap {
        pairs
            .iter()
            .map(|(v, bs)| (sa(v), bs.iter().map(|b| sa(b)).collect()))
            .collect()
    }

    #[test]
    fn an_entry_to_a_backend_that_left_is_stale_and_one_to_a_live_backend_is_not() {
        let vips = map(&[("10.96.0.10:53", &["10.0.0.6:53"])]);
        let entries = [
            entry(UDP, "10.96.0.10:53", "10.0.0.5:53"),
            entry(UDP, "10.96.0.10:53", "10.0.0.6:53"),
        ];
        assert_eq!(stale(&entries, &vips, &BTreeSet::new()), [&entries[0]]);
    }

    #[test]
    fn an_untranslated_entry_to_a_vip_is_stale_once_the_vip_exists() {
        // Sent before the Service had a row: never translated, so it would
        // go on to the bare VIP address for as long as the client sends.
        let vips = map(&[("10.96.0.10:53", &["10.0.0.6:53"])]);
        let entries = [entry(UDP, "10.96.0.10:53", "10.96.0.10:53")];
        assert_eq!(stale(&entries, &vips, &BTreeSet::new()).len(), 1);
    }

    #[test]
    fn entries_of_a_removed_vip_are_stale_only_when_translated() {
        let old = map(&[("10.96.0.10:53", &["10.0.0.5:53"])]);
        let new = VipMap::new();
        let g = gone(&old, &new);
        assert_eq!(g, [sa("10.96.0.10:53")].into());
        let entries = [
            entry(UDP, "10.96.0.10:53", "10.0.0.5:53"),
            entry(UDP, "10.96.0.10:53", "10.96.0.10:53"),
        ];
        assert_eq!(stale(&entries, &new, &g), [&entries[0]]);
    }

    #[test]
    fn tcp_and_other_destinations_are_never_touched() {
        let vips = map(&[("10.96.0.10:53", &["10.0.0.6:53"])]);
        let entries = [
            entry(6, "10.96.0.10:53", "10.0.0.5:53"),
            entry(UDP, "10.0.0.9:53", "10.0.0.9:53"),
            entry(UDP, "10.96.0.10:54", "10.0.0.5:54"),
        ];
        assert!(stale(&entries, &vips, &BTreeSet::new()).is_empty());
    }
}
