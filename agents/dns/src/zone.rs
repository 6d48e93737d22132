//! The zone document turned into an index of records, and the authoritative
//! answers it gives. Pure: no I/O, no clock.
//!
//! Names the index serves, under `<domain>`:
//! - `<domain>`: SOA; `svc.<domain>` and `<ns>.svc.<domain>` for each of the
//!   document's namespaces exist with no records (NODATA);
//! - `<svc>.<ns>.svc.<domain>`: A/AAAA of the ClusterIPs, or for a headless
//!   Service of its ready endpoints;
//! - `<hostname>.<svc>.<ns>.svc.<domain>` (an endpoint with a hostname) and
//!   `<a-b-c-d>.<svc>.<ns>.svc.<domain>` (without one; IPv6 with `:` → `-`):
//!   the endpoint's addresses, ready endpoints only;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV of each named port
//!   (target the Service name, or each ready endpoint's name when headless),
//!   with the targets' addresses in the additional section;
//! - PTR of every ClusterIP and every ready headless endpoint address.
//!
//! Every other name under `<domain>` (another tenant's namespace, `pod.`
//! names, which are not served) gets NXDOMAIN with the apex SOA: the answer
//! depends on nothing but the question, so it is the same for a namespace of
//! another VPC as for one that does not exist. Reverse names of addresses not
//! in the document are NXDOMAIN when inside a `reverseZones` range and
//! forwarded otherwise (see [`Zone::lookup`]).
//!
//! An entry whose names would not be DNS names (a dot in a Service name, a
//! label over 63 bytes) is left out and reported in [`Zone::skipped`]; the
//! rest of the document is served.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use ipnet::IpNet;
use vpcnet_api::dns_zone::{ZoneDocument, ZoneError};

use crate::answer::Answer;

/// SRV priority and weight of every record (one target per Service, or
/// endpoints of equal standing).
const SRV_PRIORITY: u16 = 0;
const SRV_WEIGHT: u16 = 100;

/// The data of one name, compact: records are built when asked for (a
/// hickory `Record` is 272 bytes; an address is 4 or 16).
#[derive(Default, Debug)]
struct Node {
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    /// (port, target) of each SRV record; every target is a name of the
    /// index, whose addresses are the additional section.
    srv: Vec<(u16, Name)>,
}

impl Node {
    fn count(&self) -> usize {
        self.a.len() + self.aaaa.len() + self.srv.len()
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// A loaded zone: immutable once built; a new document builds a new one.
#[derive(Debug)]
pub struct Zone {
    /// Counts loads in this process (1 for the first document).
    pub generation: u64,
    /// Forwarding targets, in order.
    pub upstreams: Vec<std::net::SocketAddr>,
    domain: Name,
    soa: Record,
    /// SOA records for negative answers to reverse names (`in-addr.arpa.`,
    /// `ip6.arpa.`): one shape for every reverse name answered here.
    soa_v4_arpa: Record,
    soa_v6_arpa: Record,
    /// Every existing name under `domain` (names with no records too).
    nodes: HashMap<Name, Node>,
    /// PTR targets by reverse name.
    ptr: HashMap<Name, Vec<Name>>,
    /// Reverse names inside `reverse_zones` that have PTR names below them.
    reverse_ents: HashSet<Name>,
    reverse_zones: Vec<IpNet>,
    ttl: u32,
    records: usize,
    /// Entries of the document left out, with the reason.
    pub skipped: Vec<String>,
}

/// What the zone says about a question.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// Answered here.
    Answer(Answer),
    /// Not a name of this zone: forward it.
    Forward,
}

impl Zone {
    /// Builds the index. Services of namespaces not in `namespaces` are left
    /// out, whatever the operator sent.
    pub fn build(doc: &ZoneDocument, generation: u64) -> Result<Zone, ZoneError> {
        let domain = Name::from_ascii(doc.domain.trim_end_matches('.'))
            .and_then(|n| n.append_domain(&Name::root()))
            .map_err(|e| ZoneError(format!("domain {:?}: {e}", doc.domain)))?
            .to_lowercase();
        if domain.is_root() {
            return Err(ZoneError("domain must not be the root".into()));
        }
        let ttl = doc.ttl();
        let upstreams = doc.upstream_addrs()?;
        let serial = serial(doc);
        let soa = soa_record(&domain, &domain, serial, ttl)?;
        let mut z = Zone {
            generation,
            upstreams,
            soa_v4_arpa: soa_record(&name("in-addr.arpa.")?, &domain, serial, ttl)?,
            soa_v6_arpa: soa_record(&name("ip6.arpa.")?, &domain, serial, ttl)?,
            soa,
            nodes: HashMap::new(),
            ptr: HashMap::new(),
            reverse_ents: HashSet::new(),
            reverse_zones: doc.reverse_zones.iter().map(IpNet::trunc).collect(),
            ttl,
            records: 1,
            skipped: Vec::new(),
            domain: domain.clone(),
        };
        let svc_root = child(&domain, "svc")?;
        z.nodes.entry(domain.clone()).or_default();
        z.nodes.entry(svc_root.clone()).or_default();
        // One entry that cannot be a DNS name is left out with a reason;
        // refusing the whole document would freeze the tenant's zone.
        let mut namespaces: HashSet<&str> = HashSet::new();
        for ns in &doc.namespaces {
            match child(&svc_root, ns) {
                Ok(n) => {
                    z.nodes.entry(n).or_default();
                    namespaces.insert(ns.as_str());
                }
                Err(e) => z.skipped.push(format!("namespace {ns:?}: {e}")),
            }
        }
        for s in &doc.services {
            if !namespaces.contains(s.namespace.as_str()) {
                continue;
            }
            if let Err(e) = check_names(&svc_root, s) {
                z.skipped
                    .push(format!("service {}/{}: {e}", s.namespace, s.name));
                continue;
            }
            let svc_name = child(&child(&svc_root, &s.namespace)?, &s.name)?;
            z.nodes.entry(svc_name.clone()).or_default();
            // The names SRV records point to.
            let mut targets: Vec<Name> = Vec::new();
            if s.is_headless() {
                for ep in s.endpoints.iter().filter(|e| e.ready) {
                    let mut by_name: Vec<(Name, Vec<IpAddr>)> = Vec::new();
                    match &ep.hostname {
                        Some(h) => by_name.push((child(&svc_name, h)?, ep.addresses.clone())),
                        None => {
                            for ip in &ep.addresses {
                                by_name.push((child(&svc_name, &dashed(*ip))?, vec![*ip]));
                            }
                        }
                    }
                    for (n, ips) in by_name {
                        for ip in &ips {
                            z.add_address(&svc_name, *ip);
                            z.add_address(&n, *ip);
                            z.add_ptr(*ip, &n);
                        }
                        targets.push(n);
                    }
                }
            } else {
                for ip in &s.cluster_ips {
                    z.add_address(&svc_name, *ip);
                    z.add_ptr(*ip, &svc_name);
                }
                targets.push(svc_name.clone());
            }
            for p in &s.ports {
                let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let proto = child(&svc_name, &format!("_{}", p.protocol.srv_label()))?;
                let srv_name = child(&proto, &format!("_{pname}"))?;
                z.nodes.entry(proto).or_default();
                let node = z.nodes.entry(srv_name.clone()).or_default();
                for t in &targets {
                    push_unique(&mut node.srv, (p.port, t.clone()));
                }
            }
        }
        z.records += z.nodes.values().map(Node::count).sum::<usize>()
            + z.ptr.values().map(Vec::len).sum::<usize>();
        Ok(z)
    }

    fn add_address(&mut self, owner: &Name, ip: IpAddr) {
        let node = self.nodes.entry(owner.clone()).or_default();
        match ip {
            IpAddr::V4(v4) => push_unique(&mut node.a, v4),
            IpAddr::V6(v6) => push_unique(&mut node.aaaa, v6),
        }
    }

    fn add_ptr(&mut self, ip: IpAddr, target: &Name) {
        let rev = Name::from(ip).to_lowercase();
        push_unique(self.ptr.entry(rev.clone()).or_default(), target.clone());
        // The ancestors inside a reverse zone exist (NODATA, not NXDOMAIN:
        // an NXDOMAIN would tell a cache that nothing exists below them).
        let mut n = rev.base_name();
        while n.num_labels() > 2 {
            if self.in_reverse_zone(&n) {
                self.reverse_ents.insert(n.clone());
            }
            n = n.base_name();
        }
    }

    /// Whether a reverse name (a full address or a prefix of one) lies inside
    /// one of the document's reverse ranges.
    fn in_reverse_zone(&self, name: &Name) -> bool {
        match name.parse_arpa_name() {
            Ok(net) => self
                .reverse_zones
                .iter()
                .any(|z| z.prefix_len() <= net.prefix_len() && z.contains(&net.network())),
            Err(_) => false,
        }
    }

    /// Records served (the SOA included).
    pub fn records(&self) -> usize {
        self.records
    }

    /// The domain, as a lowercase FQDN.
    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// The authoritative answer to a question, or [`Lookup::Forward`] for
    /// names this zone does not own. `name` must be fully qualified.
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        if self.domain.zone_of(name) {
            return Lookup::Answer(self.forward_lookup(name, qtype));
        }
        self.reverse_lookup(name, qtype)
            .map_or(Lookup::Forward, Lookup::Answer)
    }

    /// The records of type `qtype` (A, AAAA, SRV; ANY: all three) at `owner`.
    fn push_records(&self, owner: &Name, node: &Node, qtype: RecordType, out: &mut Vec<Record>) {
        let any = qtype == RecordType::ANY;
        if any || qtype == RecordType::A {
            out.extend(
                node.a
                    .iter()
                    .map(|ip| record(owner, self.ttl, RData::A(A(*ip)))),
            );
        }
        if any || qtype == RecordType::AAAA {
            out.extend(
                node.aaaa
                    .iter()
                    .map(|ip| record(owner, self.ttl, RData::AAAA(AAAA(*ip)))),
            );
        }
        if any || qtype == RecordType::SRV {
            out.extend(node.srv.iter().map(|(port, target)| {
                let srv = SRV::new(SRV_PRIORITY, SRV_WEIGHT, *port, target.clone());
                record(owner, self.ttl, RData::SRV(srv))
            }));
        }
    }

    fn forward_lookup(&self, name: &Name, qtype: RecordType) -> Answer {
        let Some((owner, node)) = self.nodes.get_key_value(name) else {
            return self.negative(ResponseCode::NXDomain, &self.soa);
        };
        let mut answers = Vec::new();
        self.push_records(owner, node, qtype, &mut answers);
        if *name == self.domain && matches!(qtype, RecordType::SOA | RecordType::ANY) {
            answers.push(self.soa.clone());
        }
        if answers.is_empty() {
            return self.negative(ResponseCode::NoError, &self.soa);
        }
        // The SRV targets' addresses, once per target.
        let mut additionals = Vec::new();
        if matches!(qtype, RecordType::SRV | RecordType::ANY) {
            let mut seen: Vec<&Name> = Vec::new();
            for (_, t) in &node.srv {
                if seen.contains(&t) {
                    continue;
                }
                seen.push(t);
                if let Some((tname, tnode)) = self.nodes.get_key_value(t) {
                    self.push_records(tname, tnode, RecordType::A, &mut additionals);
                    self.push_records(tname, tnode, RecordType::AAAA, &mut additionals);
                }
            }
        }
        Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authorities: Vec::new(),
            additionals,
        }
    }

    fn reverse_lookup(&self, name: &Name, qtype: RecordType) -> Option<Answer> {
        let soa = if self.soa_v4_arpa.name.zone_of(name) {
            &self.soa_v4_arpa
        } else if self.soa_v6_arpa.name.zone_of(name) {
            &self.soa_v6_arpa
        } else {
            return None;
        };
        if let Some((owner, targets)) = self.ptr.get_key_value(name) {
            if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                return Some(Answer {
                    rcode: ResponseCode::NoError,
                    authoritative: true,
                    answers: targets
                        .iter()
                        .map(|t| record(owner, self.ttl, RData::PTR(PTR(t.clone()))))
                        .collect(),
                    authorities: Vec::new(),
                    additionals: Vec::new(),
                });
            }
            return Some(self.negative(ResponseCode::NoError, soa));
        }
        if self.reverse_ents.contains(name) {
            return Some(self.negative(ResponseCode::NoError, soa));
        }
        if self.in_reverse_zone(name) {
            return Some(self.negative(ResponseCode::NXDomain, soa));
        }
        None
    }

    fn negative(&self, rcode: ResponseCode, soa: &Record) -> Answer {
        Answer {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![soa.clone()],
            additionals: Vec::new(),
        }
    }
}

/// Every name a Service would add is a valid DNS name.
fn check_names(svc_root: &Name, s: &vpcnet_api::dns_zone::ZoneService) -> Result<(), ZoneError> {
    let svc = child(&child(svc_root, &s.namespace)?, &s.name)?;
    for ep in &s.endpoints {
        match &ep.hostname {
            Some(h) => drop(child(&svc, h)?),
            None => {
                for ip in &ep.addresses {
                    child(&svc, &dashed(*ip))?;
                }
            }
        }
    }
    for p in &s.ports {
        if let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let proto = child(&svc, &format!("_{}", p.protocol.srv_label()))?;
            child(&proto, &format!("_{pname}"))?;
        }
    }
    Ok(())
}

fn name(s: &str) -> Result<Name, ZoneError> {
    Name::from_ascii(s).map_err(|e| ZoneError(format!("{s:?}: {e}")))
}

/// `label.parent`, lowercase; refuses a label that is not one DNS label
/// (a dot in a Service name would otherwise plant records under another name).
fn child(parent: &Name, label: &str) -> Result<Name, ZoneError> {
    if label.is_empty() || label.contains('.') {
        return Err(ZoneError(format!("{label:?} is not a DNS label")));
    }
    parent
        .prepend_label(label.to_ascii_lowercase())
        .map_err(|e| ZoneError(format!("{label:?}.{parent}: {e}")))
}

/// `10.0.1.7` → `10-0-1-7`, `fd00::1` → `fd00--1` (the Kubernetes DNS form).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn record(owner: &Name, ttl: u32, data: RData) -> Record {
    let mut r = Record::from_rdata(owner.clone(), ttl, data);
    r.dns_class = DNSClass::IN;
    r
}

fn soa_record(apex: &Name, domain: &Name, serial: u32, ttl: u32) -> Result<Record, ZoneError> {
    // mname/rname as CoreDNS has them; nothing resolves them and nothing
    // needs to.
    let under = |l: &str| {
        name(l)?
            .append_domain(domain)
            .map_err(|e| ZoneError(format!("{l}.{domain}: {e}")))
    };
    let soa = SOA::new(
        under("ns.dns")?,
        under("hostmaster")?,
        serial,
        7200,
        1800,
        86400,
        ttl,
    );
    Ok(record(apex, ttl, RData::SOA(soa)))
}

/// The SOA serial: a hash of the document, so that every replica serving the
/// same document gives the same SOA (a per-process counter would differ).
fn serial(doc: &ZoneDocument) -> u32 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in doc.to_json().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
pub(crate) mod tests;
