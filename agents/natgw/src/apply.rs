//! The side effects: iptables, EIP addresses, gratuitous ARP, conntrack and
//! `ip_forward`, run from one dedicated thread (optionally inside another
//! network namespace) that owns an `Applier`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use rtnetlink::Handle;

use crate::acct::{self, Tally, nat_block_of, render_acct};
use crate::addrs;
use crate::conntrack;
use crate::garp;
use crate::iptables::{IptError, Iptables, Snapshot};
use crate::model::{GatewayFacts, NatState, ObjKey};
use crate::render::{changed_blocks, is_block_chain, render_lines, render_lines_with};

/// Static settings of the apply layer.
#[derive(Clone, Debug)]
pub struct ApplyConfig {
    /// iptables flavour: `iptables`, `iptables-nft` or `iptables-legacy`.
    pub iptables: String,
    /// VPC-side interface.
    pub lan_iface: String,
    /// External interface.
    pub ext_iface: String,
    /// `auto`, `on` or `off`.
    pub random_fully: String,
    /// Hairpin source ranges; empty = the LAN interface's subnet.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// Set `net.ipv4.ip_forward=1` on start.
    pub ip_forward: bool,
    /// Two replicas: the shared LAN address the active adds to `lan_iface`.
    pub lan_vip: Option<Ipv4Addr>,
    /// Two replicas: seconds after which the active's addresses expire
    /// unless refreshed (they must not outlive its agent).
    pub addr_lifetime: Option<u32>,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            iptables: "iptables".into(),
            lan_iface: "eth0".into(),
            ext_iface: "net1".into(),
            random_fully: "auto".into(),
            vpc_cidrs: Vec::new(),
            ip_forward: true,
            lan_vip: None,
            addr_lifetime: None,
        }
    }
}

/// Result of one apply.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    /// Per object: `Ok` when programmed, `Err(message)` otherwise.
    pub results: BTreeMap<ObjKey, Result<(), String>>,
    /// Whether `iptables-restore` ran (false: rendered text unchanged).
    pub restored: bool,
    /// A failure that affected everything (restore or netlink).
    pub error: Option<String>,
    /// Wall time.
    pub duration: Duration,
    /// Of which in `iptables-restore`.
    pub restore_time: Duration,
    /// From the start of the apply until the last `iptables-restore`
    /// committed: when the new rules took effect (the bookkeeping after it
    /// does not delay traffic).
    pub rules_live_after: Duration,
    /// EIPs added to the external interface.
    pub added_addrs: Vec<Ipv4Addr>,
    /// Non-fatal problems (gratuitous ARP, conntrack).
    pub warnings: Vec<String>,
}

pub(crate) struct Applied {
    pub(crate) state: NatState,
    /// The rendered rules of each owned chain other than the DNAT port
    /// blocks (before any exclusion): unchanged text -> not rewritten. The
    /// blocks are compared by their part of `state`, which is cheaper.
    pub(crate) chain_texts: BTreeMap<String, String>,
    /// Chains that lost a line to an exclusion: rewritten next time, so the
    /// excluded rule is retried and reported again.
    pub(crate) retry: BTreeSet<String>,
    /// What the owned chains should read back as.
    pub(crate) expected: Snapshot,
}

/// The accounting rules (`acct`) as last applied.
pub(crate) struct AcctApplied {
    /// The rules of `VPCNAT-ACCT` (the DNAT accounting chains are judged
    /// by the port blocks that changed, as in the nat table).
    acct_text: String,
    /// Accounting chains present.
    chains: BTreeSet<String>,
    /// What the owned filter chains should read back as.
    pub(crate) expected: Snapshot,
}

/// Owns the iptables and netlink state of one gateway namespace.
pub struct Applier {
    pub(crate) cfg: ApplyConfig,
    pub(crate) ipt: Iptables,
    rt: tokio::runtime::Runtime,
    nl: Handle,
    pub(crate) last: Option<Applied>,
    pub(crate) jumps_ok: bool,
    /// Owned chains known to exist (None: not read yet).
    chains: Option<BTreeSet<String>>,
    /// The accounting rules (None: rewrite them all next time).
    pub(crate) acct: Option<AcctApplied>,
    /// Counters of accounting rules gone, kept in their EIP's totals.
    retired: acct::Retired,
    /// Whether this replica holds the EIPs (and the shared LAN address):
    /// always with one replica; only the active one of two.
    pub(crate) holds_addresses: bool,
}

/// What a change of role did.
#[derive(Clone, Debug, Default)]
pub struct RoleReport {
    /// Addresses added (and announced).
    pub added: Vec<Ipv4Addr>,
    /// Addresses removed.
    pub removed: Vec<Ipv4Addr>,
    /// Non-fatal problems.
    pub warnings: Vec<String>,
}

impl Applier {
    /// Opens netlink in the calling thread's namespace and sets ip_forward.
    pub fn new(cfg: ApplyConfig) -> Result<Applier, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let nl = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok::<_, String>(handle)
        })?;
        if cfg.ip_forward {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| format!("ip_forward: {e}"))?;
        }
        Ok(Applier {
            holds_addresses: cfg_holds(&cfg),
            ipt: Iptables::new(cfg.iptables.clone()),
            cfg,
            rt,
            nl,
            last: None,
            jumps_ok: false,
            chains: None,
            acct: None,
            retired: acct::Retired::new(),
        })
    }

    /// The gateway's facts from its interfaces (`lan_iface`'s primary
    /// address) and iptables (`--random-fully`).
    pub fn facts(&self, gateway: &str) -> Result<GatewayFacts, String> {
        let lan = self
            .rt
            .block_on(addrs::link_info(&self.nl, &self.cfg.lan_iface))
            .map_err(|e| e.to_string())?;
        let p = lan
            .primary()
            .ok_or_else(|| format!("{} has no IPv4 address", self.cfg.lan_iface))?;
        let lan_net = Ipv4Net::new(p.ip, p.prefix)
            .map_err(|e| e.to_string())?
            .trunc();
        let random_fully = match self.cfg.random_fully.as_str() {
            "on" => true,
            "off" => false,
            _ => self.ipt.supports_random_fully(),
        };
        Ok(GatewayFacts {
            name: gateway.to_string(),
            lan_iface: self.cfg.lan_iface.clone(),
            lan_ip: p.ip,
            vpc_cidrs: if self.cfg.vpc_cidrs.is_empty() {
                vec![lan_net]
            } else {
                self.cfg.vpc_cidrs.clone()
            },
            ext_iface: self.cfg.ext_iface.clone(),
            random_fully,
        })
    }

    /// Programs `state`. Rewrites only the owned chains whose rendered
    /// rules changed since the last apply (all of them when `force`, after
    /// a failure, or at first). A rule iptables blames by line is left out
    /// and reported; the rest is applied.
    pub fn apply(&mut self, state: &NatState, force: bool) -> ApplyReport {
        let t0 = Instant::now();
        let mut rep = ApplyReport::default();
        let prev = self.last.as_ref().filter(|_| !force && self.jumps_ok);
        // Port blocks whose share of the state changed (None: all).
        let blocks = prev.map(|l| {
            let mut b = changed_blocks(&l.state, state);
            b.extend(l.retry.iter().filter(|c| is_block_chain(c)).cloned());
            b
        });
        let rendered = match &blocks {
            None => render_lines(state),
            Some(b) => render_lines_with(state, &|c| b.contains(c)),
        };
        // Blocks are judged by `blocks`; copying their lines would only
        // burden a cold start with 10,000 rules.
        let chain_texts = rendered.chain_texts_where(|c| !is_block_chain(c));
        let declare: BTreeSet<String> = rendered
            .chains
            .iter()
            .filter(|c| match (prev, &blocks) {
                (Some(l), Some(b)) => {
                    if is_block_chain(c) {
                        b.contains(*c)
                    } else {
                        l.retry.contains(*c) || l.chain_texts.get(*c) != chain_texts.get(*c)
                    }
                }
                _ => true,
            })
            .cloned()
            .collect();
        let wanted_chains: BTreeSet<&String> = rendered.chains.iter().collect();
        let mut retry = BTreeSet::new();
        let mut excluded: BTreeMap<ObjKey, String> = BTreeMap::new();
        let mut expected = self.last.as_ref().map(|l| l.expected.clone());
        let stale_known = self
            .chains
            .as_ref()
            .is_some_and(|known| known.iter().any(|c| !wanted_chains.contains(c)));
        if !declare.is_empty() || stale_known || self.chains.is_none() {
            if self.chains.is_none() {
                match self.ipt.owned_snapshot() {
                    Ok(s) => self.chains = Some(s.owned_chains().into_iter().collect()),
                    Err(e) => return self.fail(state, rep, e.to_string(), t0),
                }
            }
            let stale: Vec<String> = self
                .chains
                .as_ref()
                .expect("read above")
                .iter()
                .filter(|c| !wanted_chains.contains(*c))
                .cloned()
                .collect();
            let mut r = rendered.only(&declare);
            r.chains.extend(stale.iter().cloned());
            let extra: Vec<String> = stale.iter().map(|c| format!("-X {c}")).collect();
            let all_lines = std::mem::take(&mut r.lines);
            loop {
                r.lines = all_lines
                    .iter()
                    .filter(|l| l.owner.as_ref().is_none_or(|o| !excluded.contains_key(o)))
                    .cloned()
                    .collect();
                let t_restore = Instant::now();
                let restored = self.ipt.restore(&r.to_restore(&extra));
                rep.restore_time += t_restore.elapsed();
                match restored {
                    Ok(()) => break,
                    Err(IptError::Failed { stderr, line, .. }) => {
                        let owner = line
                            .and_then(|n| n.checked_sub(r.restore_line_of(0)))
                            .and_then(|i| r.lines.get(i))
                            .and_then(|l| l.owner.clone());
                        match owner {
                            Some(o) if excluded.len() < 64 => {
                                excluded.insert(o, stderr);
                            }
                            _ => return self.fail(state, rep, stderr, t0),
                        }
                    }
                    Err(e) => return self.fail(state, rep, e.to_string(), t0),
                }
            }
            rep.restored = true;
            rep.rules_live_after = t0.elapsed();
            if !self.jumps_ok {
                if let Err(e) = self.ipt.ensure_jumps() {
                    return self.fail(state, rep, e.to_string(), t0);
                }
                self.jumps_ok = true;
            }
            self.chains = Some(rendered.chains.iter().cloned().collect());
            for l in all_lines
                .iter()
                .filter(|l| l.owner.as_ref().is_some_and(|o| excluded.contains_key(o)))
            {
                retry.insert(l.chain().to_string());
            }
            let texts: Vec<String> = r.lines.iter().map(|l| l.text.clone()).collect();
            // Chains not rewritten keep what the last apply left in them.
            let mut e = match expected.take() {
                Some(e) if declare.len() < rendered.chains.len() => e,
                _ => Snapshot::default(),
            };
            e.chains
                .extend(Snapshot::expected(&r.chains, &texts).chains);
            for c in &stale {
                e.chains.remove(c);
            }
            expected = Some(e);
        }

        // Accounting: best effort, a failure leaves the NAT rules in force.
        if let Err(e) = self.apply_acct(state, blocks.as_ref(), &excluded) {
            rep.warnings.push(format!("accounting rules: {e}"));
        }

        // Addresses, announcements.
        let want = self.wanted_eips(state);
        let addr_err = match self.reconcile_eips(&want) {
            Ok(ch) => {
                self.announce(&ch.added, &mut rep.warnings);
                rep.added_addrs = ch.added;
                None
            }
            Err(e) => Some(e.to_string()),
        };

        // Conntrack of mappings that went away.
        if let Some(last) = &self.last {
            let args = conntrack::flush_args(&last.state, state);
            rep.warnings.extend(conntrack::flush(&args));
        }

        for (ip, k) in &state.eips {
            let r = match &addr_err {
                Some(e) => Err(format!("adding {ip} to {}: {e}", self.cfg.ext_iface)),
                None => Ok(()),
            };
            rep.results.insert(k.clone(), r);
        }
        for k in state.programmed_keys() {
            if k.kind == crate::model::Kind::Eip {
                continue;
            }
            let r = match excluded.get(&k) {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            };
            rep.results.insert(k, r);
        }
        self.last = Some(Applied {
            state: state.clone(),
            chain_texts,
            retry,
            expected: expected.unwrap_or_default(),
        });
        rep.duration = t0.elapsed();
        rep
    }

    fn fail(
        &mut self,
        state: &NatState,
        mut rep: ApplyReport,
        err: String,
        t0: Instant,
    ) -> ApplyReport {
        for k in state.programmed_keys() {
            rep.results.insert(k, Err(err.clone()));
        }
        rep.error = Some(err);
        rep.duration = t0.elapsed();
        // The next apply rewrites every chain (jumps_ok = false).
        self.jumps_ok = false;
        self.acct = None;
        rep
    }

    /// Programs the counting rules of `state` in the filter table (see
    /// `acct`), rewriting `VPCNAT-ACCT` when its rules changed and the DNAT
    /// accounting chains of the port blocks in `blocks` (all chains when
    /// `blocks` is `None` or nothing was applied yet). The rewritten rules
    /// take over the counters of the rules they replace, per owner and
    /// direction. Owners in `excluded` get no rules.
    pub(crate) fn apply_acct(
        &mut self,
        state: &NatState,
        blocks: Option<&BTreeSet<String>>,
        excluded: &BTreeMap<ObjKey, String>,
    ) -> Result<(), String> {
        // Until this succeeds, the next apply rewrites everything.
        let prev = self.acct.take();
        let incremental = match (&prev, blocks) {
            (Some(p), Some(b)) if excluded.is_empty() => Some((p, b)),
            _ => None,
        };
        let was_incremental = incremental.is_some();
        let skip = |o: &ObjKey| excluded.contains_key(o);
        let rendered = match incremental {
            Some((_, b)) => render_acct(
                state,
                &|c| nat_block_of(c).is_some_and(|d| b.contains(&d)),
                &skip,
            ),
            None => render_acct(state, &|_| true, &skip),
        };
        let acct_text: String = rendered
            .lines
            .iter()
            .filter(|l| l.chain() == acct::CHAIN_ACCT)
            .map(|l| format!("{}\n", l.text))
            .collect();
        let declare: BTreeSet<String> = rendered
            .chains
            .iter()
            .filter(|c| match incremental {
                Some((p, b)) => {
                    if **c == acct::CHAIN_ACCT {
                        p.acct_text != acct_text
                    } else {
                        nat_block_of(c).is_some_and(|d| b.contains(&d))
                    }
                }
                None => true,
            })
            .cloned()
            .collect();
        let wanted: BTreeSet<&String> = rendered.chains.iter().collect();
        if let Some(p) = &prev
            && declare.is_empty()
            && p.chains.iter().all(|c| wanted.contains(c))
        {
            self.acct = prev;
            return Ok(());
        }
        // The counters of the chains about to be rewritten or deleted: from
        // a listing of each when there are a few (a whole table dump costs
        // ~0.1 s at 10,000 DNAT rules), else from the dump.
        let full = || self.ipt.save_filter_counters().map_err(|e| e.to_string());
        let (known, dump) = match &prev {
            Some(p) => (p.chains.clone(), None),
            None => {
                let save = full()?;
                let live = Snapshot::parse_table(&save, "filter");
                (live.owned_chains().into_iter().collect(), Some(save))
            }
        };
        let stale: Vec<String> = known
            .iter()
            .filter(|c| !wanted.contains(*c))
            .cloned()
            .collect();
        let from: BTreeSet<String> = declare.iter().chain(&stale).cloned().collect();
        let save = match dump {
            Some(d) => d,
            None => {
                let existing: Vec<&String> = from.iter().filter(|c| known.contains(*c)).collect();
                let listed = if existing.len() <= 4 {
                    existing
                        .iter()
                        .map(|c| self.ipt.list_filter_chain(c))
                        .collect::<Result<Vec<String>, _>>()
                        .ok()
                } else {
                    None
                };
                match listed {
                    Some(l) => acct::listing_to_save(&l.concat()),
                    None => full()?,
                }
            }
        };
        let mut carry = acct::carry_from(&save, &from);
        // `self.last` is still the state these counters were counted for.
        let old = self.last.as_ref().map(|l| &l.state);
        let mut retired = self.retired.clone();
        acct::retire(&mut carry, old, state, false, &mut retired);
        let mut r = rendered.only(&declare);
        r.chains.extend(stale.iter().cloned());
        let extra: Vec<String> = stale.iter().map(|c| format!("-X {c}")).collect();
        let input = acct::restore_input(&r, &mut carry, &extra);
        acct::retire(&mut carry, old, state, true, &mut retired);
        self.ipt
            .restore_counters(&input)
            .map_err(|e| e.to_string())?;
        self.retired = retired;
        // Checking the jump costs a read of the whole table: only when
        // starting over (drift repair sees a jump gone).
        if !was_incremental {
            self.ipt.ensure_acct_jump().map_err(|e| e.to_string())?;
        }
        let mut expected = match prev {
            Some(p) if was_incremental => p.expected,
            _ => Snapshot::default(),
        };
        let (from_chain, jump) = Iptables::acct_jump_line();
        expected.chains.insert(from_chain, vec![jump]);
        for c in &declare {
            expected.chains.insert(c.clone(), Vec::new());
        }
        for l in &r.lines {
            if let Some(v) = expected.chains.get_mut(l.chain()) {
                v.push(l.text.clone());
            }
        }
        for c in &stale {
            expected.chains.remove(c);
        }
        let applied = AcctApplied {
            acct_text,
            chains: rendered.chains.iter().cloned().collect(),
            expected,
        };
        // A rule left out for an error is retried by a full rewrite.
        if excluded.is_empty() {
            self.acct = Some(applied);
        }
        Ok(())
    }

    /// The packet and byte counts of the last applied state's rules, read
    /// from the kernel now (see `acct`).
    pub fn counters(&self) -> Result<Tally, String> {
        let Some(last) = &self.last else {
            return Ok(Tally::default());
        };
        let save = self.ipt.save_filter_counters().map_err(|e| e.to_string())?;
        Ok(acct::tally(&save, &last.state, &self.retired))
    }

    /// Announces the external leg's own address(es) by gratuitous ARP. A
    /// successor pod (after its node was lost) has the same address on a
    /// new MAC, and the external network's neighbours still point at the
    /// dead one: without this its first packet, the one to the API server
    /// that fetches its snapshot, would get no reply.
    pub fn announce_external_leg(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        match self
            .rt
            .block_on(addrs::link_info(&self.nl, &self.cfg.ext_iface))
        {
            Ok(link) => {
                let own: Vec<Ipv4Addr> = link.addrs.iter().map(|a| a.ip).collect();
                self.announce(&own, &mut warnings);
            }
            Err(e) => warnings.push(format!("gratuitous ARP of the external leg: {e}")),
        }
        warnings
    }

    pub(crate) fn announce(&self, ips: &[Ipv4Addr], warnings: &mut Vec<String>) {
        if ips.is_empty() {
            return;
        }
        match self
            .rt
            .block_on(addrs::link_info(&self.nl, &self.cfg.ext_iface))
        {
            Ok(link) => {
                for ip in ips {
                    if let Err(e) = garp::announce(&self.cfg.ext_iface, link.index, link.mac, *ip) {
                        warnings.push(format!("gratuitous ARP for {ip}: {e}"));
                    }
                }
            }
            Err(e) => warnings.push(format!("gratuitous ARP: {e}")),
        }
    }

    /// Re-adds missing EIP addresses of the last applied state.
    pub(crate) fn recheck_addrs(&self) -> Result<Vec<Ipv4Addr>, String> {
        let Some(last) = &self.last else {
            return Ok(Vec::new());
        };
        let want = self.wanted_eips(&last.state);
        let ch = self.reconcile_eips(&want).map_err(|e| e.to_string())?;
        let mut w = Vec::new();
        self.announce(&ch.added, &mut w);
        let mut added = ch.added;
        added.extend(self.reconcile_lan_vip(&mut w));
        Ok(added)
    }

    /// Makes the external interface hold exactly `want` of the EIPs (with
    /// the configured lifetime).
    fn reconcile_eips(
        &self,
        want: &BTreeSet<Ipv4Addr>,
    ) -> Result<addrs::AddrChanges, addrs::AddrError> {
        self.rt.block_on(addrs::reconcile_with(
            &self.nl,
            &self.cfg.ext_iface,
            want,
            self.cfg.addr_lifetime,
        ))
    }

    /// The EIPs this replica should hold now: all of `state`'s, or none
    /// while it is the standby.
    fn wanted_eips(&self, state: &NatState) -> BTreeSet<Ipv4Addr> {
        if self.holds_addresses {
            state.eips.keys().copied().collect()
        } else {
            BTreeSet::new()
        }
    }

    /// Two replicas: the shared LAN address on `lan_iface` exactly while
    /// this one holds addresses; announced when added. What it added.
    fn reconcile_lan_vip(&self, warnings: &mut Vec<String>) -> Vec<Ipv4Addr> {
        let Some(vip) = self.cfg.lan_vip else {
            return Vec::new();
        };
        let want: BTreeSet<Ipv4Addr> = if self.holds_addresses {
            BTreeSet::from([vip])
        } else {
            BTreeSet::new()
        };
        let lan = &self.cfg.lan_iface;
        match self.rt.block_on(addrs::reconcile_with(
            &self.nl,
            lan,
            &want,
            self.cfg.addr_lifetime,
        )) {
            Ok(ch) => {
                if !ch.added.is_empty() {
                    match self.rt.block_on(addrs::link_info(&self.nl, lan)) {
                        Ok(link) => {
                            if let Err(e) = garp::announce(lan, link.index, link.mac, vip) {
                                warnings.push(format!("gratuitous ARP for {vip} on {lan}: {e}"));
                            }
                        }
                        Err(e) => warnings.push(format!("gratuitous ARP on {lan}: {e}")),
                    }
                }
                ch.added
            }
            Err(e) => {
                warnings.push(format!("shared LAN address {vip} on {lan}: {e}"));
                Vec::new()
            }
        }
    }

    /// Two replicas: becomes the one that holds the addresses (`true`:
    /// adds the EIPs and the shared LAN address and announces them) or
    /// gives them up (`false`: removes them). The rules stay as they are.
    pub fn set_role(&mut self, active: bool) -> RoleReport {
        self.holds_addresses = active;
        let mut rep = RoleReport::default();
        let want = self
            .last
            .as_ref()
            .map(|l| self.wanted_eips(&l.state))
            .unwrap_or_default();
        match self.reconcile_eips(&want) {
            Ok(ch) => {
                self.announce(&ch.added, &mut rep.warnings);
                rep.added = ch.added;
                rep.removed = ch.removed;
            }
            Err(e) => rep
                .warnings
                .push(format!("EIPs on {}: {e}", self.cfg.ext_iface)),
        }
        let mut w = Vec::new();
        rep.added.extend(self.reconcile_lan_vip(&mut w));
        rep.warnings.extend(w);
        if !active && let Some(vip) = self.cfg.lan_vip {
            rep.removed.push(vip);
        }
        rep
    }

    /// Restarts the lifetime of the addresses this replica holds (see
    /// [`ApplyConfig::addr_lifetime`]); how many.
    pub fn refresh_addresses(&self) -> Result<usize, String> {
        let (Some(l), true) = (self.cfg.addr_lifetime, self.holds_addresses) else {
            return Ok(0);
        };
        let mut n = 0;
        for iface in [&self.cfg.ext_iface, &self.cfg.lan_iface] {
            n += self
                .rt
                .block_on(addrs::refresh(&self.nl, iface, l))
                .map_err(|e| e.to_string())?;
        }
        Ok(n)
    }

    /// The iptables flavour in use.
    pub fn iptables(&self) -> &Iptables {
        &self.ipt
    }

    /// Runs an async netlink operation on this applier's handle.
    pub fn netlink<R>(&self, f: impl AsyncFnOnce(&Handle) -> R) -> R {
        self.rt.block_on(f(&self.nl))
    }
}

/// One replica holds its addresses from the start; of two, none until its
/// agent takes the Lease.
fn cfg_holds(cfg: &ApplyConfig) -> bool {
    cfg.lan_vip.is_none()
}

type Job = Box<dyn FnOnce(&mut Applier) + Send>;

/// A thread that owns the `Applier`, inside `netns` when given.
pub struct Worker {
    tx: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread; fails if the namespace or netlink cannot be opened.
    pub fn spawn(netns: Option<String>, cfg: ApplyConfig) -> Result<Worker, String> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("natgw-apply".into())
            .spawn(move || {
                if let Some(ns) = &netns
                    && let Err(e) = crate::netns::enter(ns)
                {
                    let _ = ready_tx.send(Err(format!("entering netns {ns}: {e}")));
                    return;
                }
                let mut a = match Applier::new(cfg) {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = rx.recv() {
                    job(&mut a);
                }
            })
            .map_err(|e| e.to_string())?;
        ready_rx
            .recv()
            .map_err(|_| "apply thread died".to_string())??;
        Ok(Worker { tx })
    }

    /// Runs `f` on the apply thread and waits (blocking).
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Applier) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Box::new(move |a| {
                let _ = tx.send(f(a));
            }))
            .expect("apply thread alive");
        rx.recv().expect("apply thread alive")
    }

    /// Runs `f` on the apply thread and awaits the result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Applier) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move |a| {
                let _ = tx.send(f(a));
            }))
            .expect("apply thread alive");
        rx.await.expect("apply thread alive")
    }
}
