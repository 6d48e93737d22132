//! The zone document: what the operator hands a VPC's DNS servers.
//!
//! The operator (which may read every Service) computes, for one VPC, the
//! records its DNS servers may serve and writes them as JSON under
//! [`crate::contract::dns::ZONE_KEY`] of one ConfigMap in the DNS pods'
//! namespace. The server reads that ConfigMap and nothing else, so its
//! credentials never see another tenant's Services: isolation is decided here,
//! by what the document contains, not by the server filtering a wider view.
//!
//! ```json
//! {"version": 1, "domain": "cluster.local", "upstreams": ["172.16.0.1", "172.16.0.2:5353"],
//!  "namespaces": ["team-a"], "reverseZones": ["10.96.0.0/12", "10.0.0.0/16"],
//!  "services": [
//!   {"namespace": "team-a", "name": "web", "clusterIps": ["10.96.0.20"],
//!    "ports": [{"name": "http", "protocol": "TCP", "port": 80}]},
//!   {"namespace": "team-a", "name": "db", "clusterIps": [],
//!    "ports": [{"name": "pg", "port": 5432}],
//!    "endpoints": [{"addresses": ["10.0.1.7"], "hostname": "db-0", "ready": true}]}]}
//! ```

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The only version this code reads and writes. A reader refuses any other:
/// a server that half-understood a newer document could answer for names it
/// should not.
pub const VERSION: u32 = 1;

/// The cluster domain when a VpcDns names none.
pub const DEFAULT_DOMAIN: &str = "cluster.local";

/// Default TTL (seconds) of every record served, and the negative TTL (the
/// SOA minimum). Short, so a Service change is seen by caches within seconds.
pub const DEFAULT_TTL: u32 = 5;

/// One VPC's zone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ZoneDocument {
    /// Format version, [`VERSION`].
    #[serde(default = "version")]
    pub version: u32,
    /// The cluster domain the server is authoritative for, e.g. `cluster.local`
    /// (no trailing dot needed).
    pub domain: String,
    /// Resolvers for every name outside `domain`, tried in order: `ip`,
    /// `ip:port` or `[ipv6]:port`; the port defaults to 53. Empty: such names
    /// get SERVFAIL.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// The VPC's namespaces. A name under `<ns>.svc.<domain>` for any other
    /// namespace is answered exactly like a name that does not exist.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Services of those namespaces (entries of other namespaces are ignored).
    #[serde(default)]
    pub services: Vec<ZoneService>,
    /// Address ranges whose reverse names (`in-addr.arpa`, `ip6.arpa`) are
    /// answered here: a reverse name of an address in one of them that is not
    /// in the document gets NXDOMAIN instead of being forwarded, so that the
    /// upstream (which may know every tenant's addresses) is never asked.
    /// List the cluster's Service range and the VPC's subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reverse_zones: Vec<IpNet>,
    /// TTL of the records served and of negative answers; default [`DEFAULT_TTL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

fn version() -> u32 {
    VERSION
}

impl Default for ZoneDocument {
    /// An empty zone of [`DEFAULT_DOMAIN`], version [`VERSION`].
    fn default() -> Self {
        ZoneDocument {
            version: VERSION,
            domain: DEFAULT_DOMAIN.into(),
            upstreams: Vec::new(),
            namespaces: Vec::new(),
            services: Vec::new(),
            reverse_zones: Vec::new(),
            ttl: None,
        }
    }
}

/// A Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ZoneService {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.clusterIPs`; empty for a headless Service.
    #[serde(default)]
    pub cluster_ips: Vec<IpAddr>,
    /// Its ports (for a headless Service: the endpoints' ports). Named ones
    /// get SRV records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ZonePort>,
    /// The endpoints; read only for headless Services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<ZoneEndpoint>,
}

impl ZoneService {
    /// No ClusterIP: the name resolves to the ready endpoints.
    pub fn is_headless(&self) -> bool {
        self.cluster_ips.is_empty()
    }
}

/// A Service port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ZonePort {
    /// The port's name; unnamed ports have no SRV record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its protocol, default TCP.
    #[serde(default)]
    pub protocol: ZoneProtocol,
    /// The port number.
    pub port: u16,
}

/// A port's protocol, spelled as in Kubernetes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ZoneProtocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl ZoneProtocol {
    /// The SRV label, without its `_`.
    pub fn srv_label(self) -> &'static str {
        match self {
            ZoneProtocol::Tcp => "tcp",
            ZoneProtocol::Udp => "udp",
            ZoneProtocol::Sctp => "sctp",
        }
    }
}

/// An endpoint of a headless Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ZoneEndpoint {
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// `<hostname>.<svc>.<ns>.svc.<domain>` resolves to `addresses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Only ready endpoints are served; absent means ready, as in an
    /// EndpointSlice.
    #[serde(default = "ready")]
    pub ready: bool,
}

fn ready() -> bool {
    true
}

impl Default for ZoneEndpoint {
    /// No address, no hostname, ready (as when `ready` is absent).
    fn default() -> Self {
        ZoneEndpoint {
            addresses: Vec::new(),
            hostname: None,
            ready: true,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError(pub String);

impl std::fmt::Display for ZoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ZoneError {}

impl ZoneDocument {
    /// Parses and checks a document (the version and the upstreams; names are
    /// checked by whoever builds records from them).
    pub fn from_json(bytes: &[u8]) -> Result<ZoneDocument, ZoneError> {
        let doc: ZoneDocument =
            serde_json::from_slice(bytes).map_err(|e| ZoneError(format!("zone document: {e}")))?;
        if doc.version != VERSION {
            return Err(ZoneError(format!(
                "zone document version {} (this server reads {VERSION})",
                doc.version
            )));
        }
        doc.upstream_addrs()?;
        Ok(doc)
    }

    /// The document as JSON, as the operator writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a zone document always serializes")
    }

    /// `upstreams` as socket addresses.
    pub fn upstream_addrs(&self) -> Result<Vec<SocketAddr>, ZoneError> {
        self.upstreams.iter().map(|u| parse_upstream(u)).collect()
    }

    /// The TTL in effect.
    pub fn ttl(&self) -> u32 {
        self.ttl.unwrap_or(DEFAULT_TTL)
    }
}

/// `ip`, `ip:port` or `[ipv6]:port`; the port defaults to 53.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, ZoneError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| ZoneError(format!("upstream {s:?}: not ip or ip:port")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example() {
        let doc = ZoneDocument::from_json(
            br#"{"domain":"cluster.local","upstreams":["172.16.0.1","172.16.0.2:5353","::1","[fd00::1]:54"],
                "namespaces":["a"],"services":[{"namespace":"a","name":"db","clusterIps":[],
                "ports":[{"name":"pg","port":5432}],"endpoints":[{"addresses":["10.0.1.7"]}]}]}"#,
        )
        .unwrap();
        assert_eq!(doc.version, VERSION);
        assert_eq!(
            doc.upstream_addrs().unwrap(),
            vec![
                "172.16.0.1:53".parse().unwrap(),
                "172.16.0.2:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "[fd00::1]:54".parse().unwrap()
            ]
        );
        let s = &doc.services[0];
        assert!(s.is_headless());
        assert_eq!(s.ports[0].protocol, ZoneProtocol::Tcp);
        assert!(s.endpoints[0].ready, "absent means ready");
        assert_eq!(doc.ttl(), DEFAULT_TTL);
        // Round trip through the operator's writer.
        assert_eq!(
            ZoneDocument::from_json(doc.to_json().as_bytes()).unwrap(),
            doc
        );
    }

    #[test]
    fn refuses_other_versions_and_bad_upstreams() {
        assert!(ZoneDocument::from_json(br#"{"version":2,"domain":"x"}"#).is_err());
        assert!(ZoneDocument::from_json(br#"{"domain":"x","upstreams":["dns.google"]}"#).is_err());
        assert!(
            ZoneDocument::from_json(br#"{"domain":"x","services":[{"namespace":"a","name":"b","clusterIps":["None"]}]}"#)
                .is_err(),
            "headless is an empty list, not the string None"
        );
    }

    #[test]
    fn defaults_match_what_an_absent_field_means() {
        let d = ZoneDocument::default();
        assert_eq!(
            ZoneDocument::from_json(br#"{"domain":"cluster.local"}"#).unwrap(),
            d
        );
        let e: ZoneEndpoint = serde_json::from_str(r#"{"addresses":[]}"#).unwrap();
        assert_eq!(e, ZoneEndpoint::default());
    }

    #[test]
    fn field_names_are_camel_case() {
        let doc = ZoneDocument {
            version: VERSION,
            domain: "cluster.local".into(),
            upstreams: vec![],
            namespaces: vec!["a".into()],
            services: vec![ZoneService {
                namespace: "a".into(),
                name: "s".into(),
                cluster_ips: vec!["10.96.0.1".parse().unwrap()],
                ports: vec![ZonePort {
                    name: Some("p".into()),
                    protocol: ZoneProtocol::Udp,
                    port: 53,
                }],
                endpoints: vec![],
            }],
            reverse_zones: vec!["10.96.0.0/12".parse().unwrap()],
            ttl: None,
        };
        let j = doc.to_json();
        for k in [
            "\"clusterIps\"",
            "\"reverseZones\"",
            "\"UDP\"",
            "\"version\":1",
        ] {
            assert!(j.contains(k), "{k} in {j}");
        }
    }
}
