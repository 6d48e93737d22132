//! `vpcnet-dns`: one VPC's DNS server.
//!
//! # Tenant DNS (agent)
//!
//! Each VPC runs its own `vpcnet-dns` servers. A server is authoritative for
//! the cluster domain (`cluster.local`) **for its VPC's namespaces only**, and
//! forwards every other name to the VPC's upstreams, with a cache.
//!
//! **What it knows.** It reads one [`ZoneDocument`] (`vpcnet_api::dns_zone`):
//! the JSON under `zone.json` of one ConfigMap the operator writes in the DNS
//! pods' namespace (`--zone <namespace>/<name>`, env `VPCNET_DNS_ZONE`). The
//! document holds the VPC's namespaces, their Services (ClusterIPs, ports,
//! headless endpoints), the upstreams and the reverse ranges. The server's
//! ServiceAccount may `get`/`list`/`watch` that one ConfigMap
//! (`resourceNames`) and nothing else: **its credentials cannot list any
//! Service anywhere**, so a bug or a compromise of a tenant's DNS server
//! reveals nothing of another tenant. The operator, which sees every
//! Service, decides what goes in each VPC's document.
//!
//! **What it answers** (see [`zone`]): `<svc>.<ns>.svc.<domain>` A/AAAA (the
//! ClusterIPs; a headless Service: its ready endpoints),
//! `<hostname>.<svc>.<ns>.svc.<domain>` and `<a-b-c-d>.<svc>.<ns>.svc.<domain>`
//! for headless endpoints, SRV `_<port>._<proto>.<svc>.<ns>.svc.<domain>` for
//! named ports, PTR for ClusterIPs and headless endpoint addresses. Any other
//! name under the domain, among them every name of a namespace outside the
//! VPC, gets NXDOMAIN with the zone's SOA: the same response, byte for byte
//! apart from the question, as for a name that exists nowhere, so a tenant
//! cannot tell another tenant's namespace from a missing one. Pod records
//! (`<ip>.<ns>.pod.<domain>`) and ExternalName Services are not served. A
//! reverse name of an address not in the document is NXDOMAIN when the
//! address is in one of the document's `reverseZones` (the operator lists the
//! Service range and the VPC's subnets, so cluster addresses never reach an
//! upstream that might know other tenants' names), and is forwarded otherwise.
//!
//! **Forwarding** goes to the document's upstreams in order (next one on
//! timeout, SERVFAIL or REFUSED; one that could not be reached is tried last
//! for 30 s), over UDP and over TCP when truncated; no
//! upstream or all failing gives SERVFAIL. Clients asking one uncached name
//! at once share one exchange, and the exchanges in flight are bounded. The cache honours TTLs, caches
//! negative answers for the SOA minimum (RFC 2308), and is bounded.
//!
//! **Wire**: UDP and TCP on `--listen` (default `0.0.0.0:53`), EDNS(0) (a UDP
//! response is cut at the client's advertised size, at most 1232 bytes, with
//! TC set so the client retries over TCP). **Reload**: a new document builds a
//! new zone that replaces the old one atomically; a query in flight sees one
//! or the other. **HTTP** on `--metrics` (default `0.0.0.0:9153`): `/healthz`,
//! `/readyz` (200 once a document is loaded), `/metrics` (see [`metrics`]).
//! SIGTERM stops accepting and lets queries in flight finish.
//!
//! [`ZoneDocument`]: vpcnet_api::dns_zone::ZoneDocument

pub mod answer;
pub mod cache;
pub mod forward;
pub mod http;
pub mod metrics;
pub mod server;
pub mod watch;
pub mod zone;
