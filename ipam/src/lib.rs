//! Address management for every subnet: pure, rebuilt from the API server at
//! start, so a restart never hands out an address twice.

mod holder;
mod pool;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub use holder::Holder;
pub use pool::Pool;

/// Why an address could not be given.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IpamError {
    /// The CIDR does not parse (or is not IPv4).
    #[error("{0} is not an IPv4 CIDR")]
    BadCidr(String),
    /// An address or range does not parse.
    #[error("{0} is not an IPv4 address or range")]
    BadAddress(String),
    /// Every address is taken.
    #[error("subnet {0} has no free address")]
    Exhausted(String),
    /// A fixed address outside the subnet.
    #[error("{ip} is outside {cidr}")]
    OutOfRange {
        /// Requested address.
        ip: String,
        /// The subnet.
        cidr: String,
    },
    /// A fixed address that is the gateway or excluded.
    #[error("{0} is reserved (gateway or excludeIps)")]
    Reserved(String),
    /// A fixed address someone else holds (the holder is for the log: a
    /// tenant is told only that it is in use).
    #[error("{ip} is already in use")]
    InUse {
        /// Requested address.
        ip: String,
        /// Its holder.
        holder: Holder,
    },
    /// No pool for the subnet.
    #[error("subnet {0} is not known to IPAM")]
    UnknownSubnet(String),
}

impl IpamError {
    /// The error as the requester in `namespace` should read it: a holder
    /// in its own namespace is named, anyone else's is not (who holds an
    /// address elsewhere is another tenant's business; the log has it).
    pub fn for_namespace(&self, namespace: &str) -> String {
        match self {
            IpamError::InUse { ip, holder } if holder.namespace() == Some(namespace) => {
                format!(
                    "{ip} is already in use by {} {} of this namespace",
                    holder.kind(),
                    holder.name()
                )
            }
            _ => self.to_string(),
        }
    }
}

/// The pools of all subnets, by subnet name.
#[derive(Debug, Default)]
pub struct Ipam {
    pools: BTreeMap<String, Pool>,
}

impl Ipam {
    /// Creates or refreshes the pool of `subnet`, keeping current holders
    /// whose addresses are still valid in the new shape.
    pub fn upsert(
        &mut self,
        subnet: &str,
        cidr: &str,
        gateway: Option<&str>,
        exclude: &[String],
    ) -> Result<(), IpamError> {
        let mut fresh = Pool::new(cidr, gateway, exclude)?;
        if let Some(old) = self.pools.get(subnet)
            && old.net() == fresh.net()
        {
            let holders: Vec<(Holder, Ipv4Addr)> =
                old.holders().map(|(h, a)| (h.clone(), a)).collect();
            for (holder, ip) in holders {
                // An address that became excluded stays with its holder
                // until released; exclusion only affects new allocations.
                if fresh.allocate_fixed(&holder, ip).is_err() {
                    fresh.force(&holder, ip);
                }
            }
        }
        self.pools.insert(subnet.to_string(), fresh);
        Ok(())
    }

    /// Drops a subnet's pool.
    pub fn remove(&mut self, subnet: &str) {
        self.pools.remove(subnet);
    }

    /// The subnets that have a pool, by name.
    pub fn subnets(&self) -> impl Iterator<Item = &str> {
        self.pools.keys().map(String::as_str)
    }

    /// The pool of `subnet`.
    pub fn pool(&self, subnet: &str) -> Option<&Pool> {
        self.pools.get(subnet)
    }

    /// The pool of `subnet`, mutable.
    pub fn pool_mut(&mut self, subnet: &str) -> Result<&mut Pool, IpamError> {
        self.pools
            .get_mut(subnet)
            .ok_or_else(|| IpamError::UnknownSubnet(subnet.to_string()))
    }

    /// Addresses in use, by subnet: what a Subnet's status counts.
    pub fn usage(&self) -> BTreeMap<String, u64> {
        self.pools
            .iter()
            .map(|(name, p)| (name.clone(), p.using()))
            .collect()
    }

    /// Every holder, in any pool.
    pub fn holders(&self) -> std::collections::BTreeSet<Holder> {
        self.pools
            .values()
            .flat_map(|p| p.holders().map(|(h, _)| h.clone()))
            .collect()
    }

    /// Releases `holder` in every pool.
    pub fn release_everywhere(&mut self, holder: &Holder) {
        for p in self.pools.values_mut() {
            p.release(holder);
        }
    }
}

/// The MAC address derived from an IPv4 address (`0a:58:` + the address),
/// stable across restarts without any stored state.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_holders_of_the_own_namespace_are_named() {
        let e = IpamError::InUse {
            ip: "10.0.1.5".into(),
            holder: Holder::pod("a", "web"),
        };
        assert_eq!(
            e.for_namespace("a"),
            "10.0.1.5 is already in use by pod web of this namespace"
        );
        assert_eq!(e.for_namespace("b"), "10.0.1.5 is already in use");
        let gw = IpamError::InUse {
            ip: "172.16.3.9".into(),
            holder: Holder::nat_gateway("gw-b"),
        };
        assert_eq!(gw.for_namespace("gw-b"), "172.16.3.9 is already in use");
    }

    #[test]
    fn upsert_keeps_holders() {
        let mut ipam = Ipam::default();
        ipam.upsert("s", "10.0.1.0/24", Some("10.0.1.1"), &[])
            .unwrap();
        let a = ipam
            .pool_mut("s")
            .unwrap()
            .allocate(&Holder::pod("t", "a"))
            .unwrap();
        ipam.upsert("s", "10.0.1.0/24", Some("10.0.1.1"), &[a.to_string()])
            .unwrap();
        assert_eq!(
            ipam.pool("s").unwrap().get(&Holder::pod("t", "a")),
            Some(a),
            "holder keeps a newly excluded address"
        );
        let b = ipam
            .pool_mut("s")
            .unwrap()
            .allocate(&Holder::pod("t", "b"))
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn mac_is_derived_from_ip() {
        assert_eq!(mac_for(Ipv4Addr::new(10, 0, 1, 5)), "0a:58:0a:00:01:05");
    }
}
