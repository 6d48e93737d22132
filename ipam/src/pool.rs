//! One subnet's address pool: the CIDR minus network/broadcast, the gateway
//! and `excludeIps`, handing out addresses to named holders.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::{Holder, IpamError};

/// Addresses of one IPv4 subnet.
#[derive(Clone, Debug)]
pub struct Pool {
    net: Ipv4Net,
    first: u32,
    last: u32,
    /// Inclusive ranges never handed out (gateway, excludeIps).
    reserved: Vec<(u32, u32)>,
    used: BTreeMap<u32, Holder>,
    by_holder: HashMap<Holder, u32>,
    /// Next address to try, so a released address is not reused at once
    /// (stale conntrack and ARP entries of the previous holder age out).
    cursor: u32,
}

impl Pool {
    /// A pool over `cidr` without `gateway` and the `exclude` entries
    /// (`a.b.c.d` or `first..last`).
    pub fn new(cidr: &str, gateway: Option<&str>, exclude: &[String]) -> Result<Self, IpamError> {
        let net: Ipv4Net = cidr
            .parse()
            .map_err(|_| IpamError::BadCidr(cidr.to_string()))?;
        let (first, last) = if net.prefix_len() >= 31 {
            (u32::from(net.network()), u32::from(net.broadcast()))
        } else {
            (u32::from(net.network()) + 1, u32::from(net.broadcast()) - 1)
        };
        let mut reserved = Vec::new();
        if let Some(gw) = gateway {
            let gw: Ipv4Addr = gw
                .parse()
                .map_err(|_| IpamError::BadAddress(gw.to_string()))?;
            reserved.push((u32::from(gw), u32::from(gw)));
        }
        for entry in exclude {
            reserved.push(parse_range(entry)?);
        }
        Ok(Self {
            net,
            first,
            last,
            reserved,
            used: BTreeMap::new(),
            by_holder: HashMap::new(),
            cursor: first,
        })
    }

    /// The subnet's network.
    pub fn net(&self) -> Ipv4Net {
        self.net
    }

    /// The address `holder` has, if any.
    pub fn get(&self, holder: &Holder) -> Option<Ipv4Addr> {
        self.by_holder.get(holder).map(|&a| Ipv4Addr::from(a))
    }

    /// Who holds `ip`.
    pub fn holder_of(&self, ip: Ipv4Addr) -> Option<&Holder> {
        self.used.get(&u32::from(ip))
    }

    /// An address for `holder`: the one it already has, else the next free one.
    pub fn allocate(&mut self, holder: &Holder) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = self.get(holder) {
            return Ok(ip);
        }
        let span = u64::from(self.last - self.first) + 1;
        let mut candidate = self.cursor.clamp(self.first, self.last);
        for _ in 0..span {
            if !self.used.contains_key(&candidate) && !self.is_reserved(candidate) {
                self.take(holder, candidate);
                self.cursor = if candidate == self.last {
                    self.first
                } else {
                    candidate + 1
                };
                return Ok(Ipv4Addr::from(candidate));
            }
            candidate = if candidate == self.last {
                self.first
            } else {
                candidate + 1
            };
        }
        Err(IpamError::Exhausted(self.net.to_string()))
    }

    /// Gives `holder` exactly `ip`, or says why not. Idempotent for the same holder.
    pub fn allocate_fixed(&mut self, holder: &Holder, ip: Ipv4Addr) -> Result<Ipv4Addr, IpamError> {
        let a = u32::from(ip);
        if !self.net.contains(&ip) || a < self.first || a > self.last {
            return Err(IpamError::OutOfRange {
                ip: ip.to_string(),
                cidr: self.net.to_string(),
            });
        }
        if self.is_reserved(a) {
            return Err(IpamError::Reserved(ip.to_string()));
        }
        match self.used.get(&a) {
            Some(h) if h == holder => return Ok(ip),
            Some(h) => {
                return Err(IpamError::InUse {
                    ip: ip.to_string(),
                    holder: h.clone(),
                });
            }
            None => {}
        }
        if let Some(old) = self.by_holder.get(holder).copied() {
            self.used.remove(&old);
        }
        self.take(holder, a);
        Ok(ip)
    }

    /// Frees `holder`'s address; returns it.
    pub fn release(&mut self, holder: &Holder) -> Option<Ipv4Addr> {
        let a = self.by_holder.remove(holder)?;
        self.used.remove(&a);
        Some(Ipv4Addr::from(a))
    }

    /// Addresses handed out.
    pub fn using(&self) -> u64 {
        self.used.len() as u64
    }

    /// Addresses still free.
    pub fn available(&self) -> u64 {
        let total = u64::from(self.last - self.first) + 1;
        let reserved: u64 = self.reserved_in_range();
        let used_unreserved = self.used.keys().filter(|&&a| !self.is_reserved(a)).count() as u64;
        total
            .saturating_sub(reserved)
            .saturating_sub(used_unreserved)
    }

    /// Every `(holder, address)`.
    pub fn holders(&self) -> impl Iterator<Item = (&Holder, Ipv4Addr)> {
        self.by_holder.iter().map(|(h, &a)| (h, Ipv4Addr::from(a)))
    }

    /// Records `holder` at `ip` without checks (state read back from the
    /// cluster must be represented even if it breaks today's rules).
    pub fn force(&mut self, holder: &Holder, ip: Ipv4Addr) {
        if let Some(old) = self.by_holder.remove(holder) {
            self.used.remove(&old);
        }
        self.take(holder, u32::from(ip));
    }

    fn take(&mut self, holder: &Holder, a: u32) {
        self.used.insert(a, holder.clone());
        self.by_holder.insert(holder.clone(), a);
    }

    fn is_reserved(&self, a: u32) -> bool {
        self.reserved.iter().any(|&(lo, hi)| a >= lo && a <= hi)
    }

    /// Distinct reserved addresses inside the allocatable range.
    fn reserved_in_range(&self) -> u64 {
        let mut ranges: Vec<(u32, u32)> = self
            .reserved
            .iter()
            .filter_map(|&(lo, hi)| {
                let (lo, hi) = (lo.max(self.first), hi.min(self.last));
                (lo <= hi).then_some((lo, hi))
            })
            .collect();
        ranges.sort_unstable();
        let mut count = 0u64;
        let mut covered_to: Option<u32> = None;
        for (lo, hi) in ranges {
            let start = match covered_to {
                Some(c) if c >= hi => continue,
                Some(c) if c >= lo => c + 1,
                _ => lo,
            };
            count += u64::from(hi - start) + 1;
            covered_to = Some(hi);
        }
        count
    }
}

/// `a.b.c.d` or `first..last` as an inclusive range.
fn parse_range(entry: &str) -> Result<(u32, u32), IpamError> {
    let parse = |s: &str| -> Result<u32, IpamError> {
        s.trim()
            .parse::<Ipv4Addr>()
            .map(u32::from)
            .map_err(|_| IpamError::BadAddress(entry.to_string()))
    };
    match entry.split_once("..") {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo > hi {
                return Err(IpamError::BadAddress(entry.to_string()));
            }
            Ok((lo, hi))
        }
        None => {
            let a = parse(entry)?;
            Ok((a, a))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str) -> Holder {
        Holder::pod("t", name)
    }

    fn pool() -> Pool {
        Pool::new(
            "10.0.1.0/24",
            Some("10.0.1.1"),
            &["10.0.1.2..10.0.1.10".into(), "10.0.1.200".into()],
        )
        .unwrap()
    }

    #[test]
    fn skips_network_gateway_and_excludes() {
        let mut p = pool();
        assert_eq!(p.allocate(&h("a")).unwrap(), Ipv4Addr::new(10, 0, 1, 11));
        assert_eq!(p.allocate(&h("b")).unwrap(), Ipv4Addr::new(10, 0, 1, 12));
        assert_eq!(
            p.allocate(&h("a")).unwrap(),
            Ipv4Addr::new(10, 0, 1, 11),
            "idempotent per holder"
        );
        // 254 usable - gateway - 9 excluded - 1 excluded = 243; 2 used.
        assert_eq!(p.available(), 241);
        assert_eq!(p.using(), 2);
    }

    #[test]
    fn fixed_addresses_are_checked() {
        let mut p = pool();
        assert_eq!(
            p.allocate_fixed(&h("a"), "10.0.1.50".parse().unwrap())
                .unwrap(),
            Ipv4Addr::new(10, 0, 1, 50)
        );
        assert!(
            matches!(p.allocate_fixed(&h("b"), "10.0.1.50".parse().unwrap()), Err(IpamError::InUse { holder, .. }) if holder == h("a"))
        );
        assert!(matches!(
            p.allocate_fixed(&h("b"), "10.0.1.1".parse().unwrap()),
            Err(IpamError::Reserved(_))
        ));
        assert!(matches!(
            p.allocate_fixed(&h("b"), "10.0.1.5".parse().unwrap()),
            Err(IpamError::Reserved(_))
        ));
        assert!(matches!(
            p.allocate_fixed(&h("b"), "10.0.2.5".parse().unwrap()),
            Err(IpamError::OutOfRange { .. })
        ));
        assert!(matches!(
            p.allocate_fixed(&h("b"), "10.0.1.255".parse().unwrap()),
            Err(IpamError::OutOfRange { .. })
        ));
        assert_eq!(
            p.allocate_fixed(&h("a"), "10.0.1.50".parse().unwrap())
                .unwrap(),
            Ipv4Addr::new(10, 0, 1, 50)
        );
    }

    #[test]
    fn released_addresses_are_not_reused_at_once() {
        let mut p = pool();
        let a = p.allocate(&h("a")).unwrap();
        p.release(&h("a"));
        let b = p.allocate(&h("b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(p.holder_of(b), Some(&h("b")));
        assert_eq!(p.holder_of(a), None);
    }

    #[test]
    fn exhaustion_is_an_error_and_wraps_around() {
        let mut p = Pool::new("10.0.0.0/29", Some("10.0.0.1"), &[]).unwrap();
        let got: Vec<_> = (0..5)
            .map(|i| p.allocate(&h(&format!("h{i}"))).unwrap())
            .collect();
        assert_eq!(got.len(), 5);
        assert!(matches!(p.allocate(&h("h5")), Err(IpamError::Exhausted(_))));
        p.release(&h("h2"));
        assert_eq!(
            p.allocate(&h("h5")).unwrap(),
            got[2],
            "wraps around to the freed address"
        );
        assert_eq!(p.available(), 0);
    }

    #[test]
    fn many_holders_get_unique_addresses() {
        let mut p = Pool::new("10.16.0.0/16", Some("10.16.0.1"), &[]).unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            assert!(seen.insert(p.allocate(&h(&format!("pod{i}"))).unwrap()));
        }
        for i in (0..5000).step_by(2) {
            p.release(&h(&format!("pod{i}")));
        }
        for i in 5000..7000 {
            let ip = p.allocate(&h(&format!("pod{i}"))).unwrap();
            assert_eq!(p.holder_of(ip), Some(&h(&format!("pod{i}"))));
        }
        assert_eq!(p.using(), 4500);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Pool::new("10.0.0.0/33", None, &[]).is_err());
        assert!(Pool::new("10.0.0.0/24", Some("x"), &[]).is_err());
        assert!(Pool::new("10.0.0.0/24", None, &["10.0.0.9..10.0.0.2".into()]).is_err());
    }
}
