//! Rebuilding address state at start. Nothing is allocated before this has
//! run, so a restart never hands out an address twice.
//!
//! Every service reports the pools it defines and the addresses it finds
//! held, each with where it found it. Claims are taken in order of trust,
//! and the first holder of an address keeps it: OVN rows we wrote, then
//! status we wrote (and sealed), then what a tenant can write (pod
//! annotations), honoured only where the service itself would have put it.

use std::net::Ipv4Addr;

use vpcnet_ipam::{Holder, Ipam};

/// Where a claim came from, in order of trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// An OVN row we wrote.
    Port,
    /// A status we wrote (and sealed).
    Status,
    /// A pod's annotations.
    Pod,
}

/// One address to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Where it came from.
    pub source: Source,
    /// The subnet's pool.
    pub subnet: String,
    /// The IPAM holder.
    pub holder: Holder,
    /// The address.
    pub ip: Ipv4Addr,
}

/// A pool to create before any claim is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Subnet name.
    pub subnet: String,
    /// Its CIDR.
    pub cidr: String,
    /// Its router's address (never handed out).
    pub gateway: Option<String>,
    /// Addresses never handed out.
    pub exclude: Vec<String>,
}

/// What the services found.
#[derive(Debug, Default)]
pub struct Found {
    /// Pools.
    pub pools: Vec<PoolSpec>,
    /// Claims, in any order.
    pub claims: Vec<Claim>,
    /// Claims a service refused (a forged annotation, an unsealed status).
    pub untrusted: usize,
}

/// What the rebuild did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Pools created.
    pub pools: usize,
    /// Addresses taken from OVN rows.
    pub from_ports: usize,
    /// Addresses taken from (sealed) status.
    pub from_status: usize,
    /// Addresses taken from pod annotations only.
    pub from_pods: usize,
    /// Addresses claimed by two holders (kept by the first; logged).
    pub conflicts: usize,
    /// Claims the services refused.
    pub untrusted: usize,
}

/// Loads `found` into `ipam` (pure).
pub fn load(ipam: &mut Ipam, mut found: Found) -> Rebuilt {
    let mut out = Rebuilt {
        untrusted: found.untrusted,
        ..Default::default()
    };
    for p in &found.pools {
        match ipam.upsert(&p.subnet, &p.cidr, p.gateway.as_deref(), &p.exclude) {
            Ok(()) => out.pools += 1,
            // Refused again (with an Event) by the Subnet's reconcile.
            Err(e) => tracing::warn!(subnet = %p.subnet, error = %e, "pool not created"),
        }
    }
    // Stable: within a source, the order found.
    found.claims.sort_by_key(|c| c.source);
    for c in found.claims {
        let Ok(pool) = ipam.pool_mut(&c.subnet) else {
            continue;
        };
        match pool.holder_of(c.ip) {
            Some(h) if *h == c.holder => {}
            Some(other) => {
                tracing::error!(ip = %c.ip, holder = %c.holder, %other, source = ?c.source, "address claimed twice; keeping the more trusted, earlier holder");
                out.conflicts += 1;
            }
            None if pool.get(&c.holder).is_some() => {}
            None => {
                pool.force(&c.holder, c.ip);
                match c.source {
                    Source::Port => out.from_ports += 1,
                    Source::Status => out.from_status += 1,
                    Source::Pod => out.from_pods += 1,
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(source: Source, holder: Holder, ip: &str) -> Claim {
        Claim {
            source,
            subnet: "s".into(),
            holder,
            ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn the_more_trusted_claim_wins_whatever_the_order_found() {
        let mut ipam = Ipam::default();
        let found = Found {
            pools: vec![PoolSpec {
                subnet: "s".into(),
                cidr: "10.0.1.0/24".into(),
                gateway: Some("10.0.1.1".into()),
                exclude: vec![],
            }],
            claims: vec![
                claim(Source::Pod, Holder::pod("a", "forged"), "10.0.1.7"),
                claim(Source::Port, Holder::pod("b", "web"), "10.0.1.7"),
                claim(Source::Pod, Holder::pod("a", "honest"), "10.0.1.9"),
            ],
            untrusted: 2,
        };
        let out = load(&mut ipam, found);
        assert_eq!(
            out,
            Rebuilt {
                pools: 1,
                from_ports: 1,
                from_pods: 1,
                conflicts: 1,
                untrusted: 2,
                ..Default::default()
            }
        );
        let pool = ipam.pool("s").unwrap();
        assert_eq!(
            pool.holder_of("10.0.1.7".parse().unwrap()),
            Some(&Holder::pod("b", "web"))
        );
    }
}
