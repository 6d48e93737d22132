//! Drift repair: the owned chains (and jumps) read back from
//! `iptables-save` must match what was last applied; if not, re-apply. The
//! same for the accounting chains of the filter table.

use crate::apply::Applier;

/// Outcome of one drift check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriftReport {
    /// iptables differed and was re-applied.
    pub repaired_rules: bool,
    /// EIP addresses that were missing and re-added.
    pub readded_addrs: Vec<std::net::Ipv4Addr>,
}

/// Compares the live owned chains with the last apply; re-applies on a
/// mismatch. Nothing to do before the first apply.
pub fn check(a: &mut Applier) -> Result<DriftReport, String> {
    let mut rep = DriftReport::default();
    let Some(last) = &a.last else {
        return Ok(rep);
    };
    let live = a.ipt.owned_snapshot().map_err(|e| e.to_string())?;
    if live != last.expected {
        tracing::warn!(
            live = live.rule_count(),
            expected = last.expected.rule_count(),
            "owned nat chains drifted; re-applying"
        );
        let state = last.state.clone();
        a.jumps_ok = false;
        let r = a.apply(&state, true);
        if let Some(e) = r.error {
            return Err(e);
        }
        rep.repaired_rules = true;
        // If iptables prints our rules differently from how we render them,
        // compare with what it prints from now on instead of looping.
        let again = a.ipt.owned_snapshot().map_err(|e| e.to_string())?;
        if let Some(l) = &mut a.last
            && again != l.expected
        {
            tracing::warn!("iptables-save differs from the rendered rules; using its form");
            l.expected = again;
        }
    }
    // The accounting rules (filter table), rewritten alone: the counters
    // of rules that are still there are carried over.
    if let (Some(acct), Some(last)) = (&a.acct, &a.last) {
        let live = a.ipt.owned_filter_snapshot().map_err(|e| e.to_string())?;
        if live != acct.expected {
            tracing::warn!(
                live = live.rule_count(),
                expected = acct.expected.rule_count(),
                "accounting chains drifted; re-applying"
            );
            let state = last.state.clone();
            a.acct = None;
            a.apply_acct(&state, None, &Default::default())?;
            rep.repaired_rules = true;
            let again = a.ipt.owned_filter_snapshot().map_err(|e| e.to_string())?;
            if let Some(acct) = &mut a.acct
                && again != acct.expected
            {
                tracing::warn!(
                    "iptables-save differs from the rendered accounting rules; using its form"
                );
                acct.expected = again;
            }
        }
    }
    rep.readded_addrs = a.recheck_addrs()?;
    Ok(rep)
}
