use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, Query};
use vpcnet_api::dns_zone::{ZoneEndpoint, ZonePort, ZoneProtocol, ZoneService};

use super::*;

fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(name: Option<&str>, protocol: ZoneProtocol, port: u16) -> ZonePort {
    ZonePort {
        name: name.map(String::from),
        protocol,
        port,
    }
}

fn ep(addrs: &[&str], hostname: Option<&str>, ready: bool) -> ZoneEndpoint {
    ZoneEndpoint {
        addresses: addrs.iter().map(|a| ip(a)).collect(),
        hostname: hostname.map(String::from),
        ready,
    }
}

/// Tenant A owns `a1` and `a2`; `b` belongs to another VPC (its Service is in
/// the document by mistake and must not be served).
pub(crate) fn doc() -> ZoneDocument {
    ZoneDocument {
        version: 1,
        domain: "cluster.local".into(),
        upstreams: vec!["192.0.2.53".into()],
        namespaces: vec!["a1".into(), "a2".into()],
        reverse_zones: vec![
            "10.96.0.0/12".parse().unwrap(),
            "10.0.0.0/16".parse().unwrap(),
        ],
        ttl: None,
        services: vec![
            ZoneService {
                namespace: "a1".into(),
                name: "web".into(),
                cluster_ips: vec![ip("10.96.0.20"), ip("fd00::20")],
                ports: vec![
                    port(Some("http"), ZoneProtocol::Tcp, 80),
                    port(Some("dns"), ZoneProtocol::Udp, 53),
                    port(None, ZoneProtocol::Tcp, 8080),
                ],
                endpoints: vec![],
            },
            ZoneService {
                namespace: "a1".into(),
                name: "db".into(),
                cluster_ips: vec![],
                ports: vec![port(Some("pg"), ZoneProtocol::Tcp, 5432)],
                endpoints: vec![
                    ep(&["10.0.1.7"], Some("db-0"), true),
                    ep(&["10.0.1.8", "fd00::1:8"], None, true),
                    ep(&["10.0.1.9"], Some("db-2"), false),
                ],
            },
            ZoneService {
                namespace: "b".into(),
                name: "web".into(),
                cluster_ips: vec![ip("10.96.0.30")],
                ports: vec![],
                endpoints: vec![],
            },
        ],
    }
}

fn zone() -> Zone {
    Zone::build(&doc(), 1).unwrap()
}

fn answer(z: &Zone, name: &str, t: RecordType) -> Answer {
    match z.lookup(&n(name), t) {
        Lookup::Answer(a) => a,
        Lookup::Forward => panic!("{name} {t} forwarded"),
    }
}

fn rdatas(a: &Answer) -> Vec<String> {
    let mut v: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

fn is_nxdomain_with_soa(a: &Answer, apex: &str) {
    assert_eq!(a.rcode, ResponseCode::NXDomain, "{a:?}");
    assert!(a.authoritative);
    assert!(a.answers.is_empty());
    assert_eq!(a.authorities.len(), 1);
    assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(a.authorities[0].name, n(apex));
}

fn is_nodata(a: &Answer) {
    assert_eq!(a.rcode, ResponseCode::NoError, "{a:?}");
    assert!(a.answers.is_empty());
    assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn a_and_aaaa_of_a_cluster_ip_service() {
    let z = zone();
    let a = answer(&z, "web.a1.svc.cluster.local.", RecordType::A);
    assert_eq!(rdatas(&a), vec!["10.96.0.20"]);
    assert!(a.authoritative);
    assert_eq!(a.answers[0].ttl, 5);
    let a = answer(&z, "WEB.A1.Svc.Cluster.Local.", RecordType::AAAA);
    assert_eq!(rdatas(&a), vec!["fd00::20"], "names are case-insensitive");
    let any = answer(&z, "web.a1.svc.cluster.local.", RecordType::ANY);
    assert_eq!(any.answers.len(), 2);
}

#[test]
fn headless_names_are_the_ready_endpoints() {
    let z = zone();
    let a = answer(&z, "db.a1.svc.cluster.local.", RecordType::A);
    assert_eq!(
        rdatas(&a),
        vec!["10.0.1.7", "10.0.1.8"],
        "10.0.1.9 is not ready"
    );
    let a = answer(&z, "db.a1.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(rdatas(&a), vec!["fd00::1:8"]);
    let a = answer(&z, "db-0.db.a1.svc.cluster.local.", RecordType::A);
    assert_eq!(rdatas(&a), vec!["10.0.1.7"]);
    // Without a hostname: one name per address, dashed.
    let a = answer(&z, "10-0-1-8.db.a1.svc.cluster.local.", RecordType::A);
    assert_eq!(rdatas(&a), vec!["10.0.1.8"]);
    let a = answer(&z, "fd00--1-8.db.a1.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(rdatas(&a), vec!["fd00::1:8"]);
    is_nxdomain_with_soa(
        &answer(&z, "db-2.db.a1.svc.cluster.local.", RecordType::A),
        "cluster.local.",
    );
}

#[test]
fn srv_for_named_ports_with_glue() {
    let z = zone();
    let a = answer(&z, "_http._tcp.web.a1.svc.cluster.local.", RecordType::SRV);
    assert_eq!(rdatas(&a), vec!["0 100 80 web.a1.svc.cluster.local."]);
    let mut glue: Vec<String> = a.additionals.iter().map(|r| r.data.to_string()).collect();
    glue.sort();
    assert_eq!(glue, vec!["10.96.0.20", "fd00::20"]);
    let a = answer(&z, "_dns._udp.web.a1.svc.cluster.local.", RecordType::SRV);
    assert_eq!(rdatas(&a), vec!["0 100 53 web.a1.svc.cluster.local."]);
    // The protocol is part of the name.
    is_nxdomain_with_soa(
        &answer(&z, "_http._udp.web.a1.svc.cluster.local.", RecordType::SRV),
        "cluster.local.",
    );
    // The intermediate name exists, with no records.
    is_nodata(&answer(
        &z,
        "_tcp.web.a1.svc.cluster.local.",
        RecordType::SRV,
    ));
    // Headless: one target per ready endpoint name.
    let a = answer(&z, "_pg._tcp.db.a1.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        rdatas(&a),
        vec![
            "0 100 5432 10-0-1-8.db.a1.svc.cluster.local.",
            "0 100 5432 db-0.db.a1.svc.cluster.local.",
            "0 100 5432 fd00--1-8.db.a1.svc.cluster.local.",
        ]
    );
    assert_eq!(a.additionals.len(), 3);
}

#[test]
fn ptr_for_cluster_ips_and_endpoints_in_the_document() {
    let z = zone();
    let a = answer(&z, "20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdatas(&a), vec!["web.a1.svc.cluster.local."]);
    let a = answer(&z, "7.1.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdatas(&a), vec!["db-0.db.a1.svc.cluster.local."]);
    let v6 = Name::from(ip("fd00::1:8"));
    let a = answer(&z, &v6.to_ascii(), RecordType::PTR);
    assert_eq!(rdatas(&a), vec!["fd00--1-8.db.a1.svc.cluster.local."]);
    let v6 = Name::from(ip("fd00::20"));
    assert_eq!(
        rdatas(&answer(&z, &v6.to_ascii(), RecordType::PTR)),
        vec!["web.a1.svc.cluster.local."]
    );
    // An address of the document asked for another type: NODATA.
    is_nodata(&answer(&z, "20.0.96.10.in-addr.arpa.", RecordType::A));
}

#[test]
fn reverse_names_not_in_the_document() {
    let z = zone();
    // The other tenant's Service address, and a free one, inside a reverse
    // zone: NXDOMAIN, the same both ways.
    let other = answer(&z, "30.0.96.10.in-addr.arpa.", RecordType::PTR);
    let free = answer(&z, "99.0.96.10.in-addr.arpa.", RecordType::PTR);
    is_nxdomain_with_soa(&other, "in-addr.arpa.");
    assert_eq!(other, free);
    // Not-ready endpoints have no PTR.
    is_nxdomain_with_soa(
        &answer(&z, "9.1.0.10.in-addr.arpa.", RecordType::PTR),
        "in-addr.arpa.",
    );
    // A name above document addresses, inside a reverse zone: exists.
    is_nodata(&answer(&z, "1.0.10.in-addr.arpa.", RecordType::PTR));
    // A prefix inside a reverse zone with nothing below: NXDOMAIN.
    is_nxdomain_with_soa(
        &answer(&z, "200.0.10.in-addr.arpa.", RecordType::PTR),
        "in-addr.arpa.",
    );
    // Outside every reverse zone: forwarded.
    assert_eq!(
        z.lookup(&n("8.8.8.8.in-addr.arpa."), RecordType::PTR),
        Lookup::Forward
    );
    assert_eq!(
        z.lookup(&n("10.in-addr.arpa."), RecordType::PTR),
        Lookup::Forward
    );
    assert_eq!(
        z.lookup(&Name::from(ip("2001:db8::1")), RecordType::PTR),
        Lookup::Forward
    );
}

#[test]
fn names_outside_the_domain_are_forwarded() {
    let z = zone();
    for name in ["example.com.", "local.", "cluster.local.example.", "svc."] {
        assert_eq!(z.lookup(&n(name), RecordType::A), Lookup::Forward, "{name}");
    }
}

#[test]
fn the_apex_and_the_namespaces_exist() {
    let z = zone();
    let soa = answer(&z, "cluster.local.", RecordType::SOA);
    assert_eq!(soa.answers.len(), 1);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    is_nodata(&answer(&z, "cluster.local.", RecordType::A));
    is_nodata(&answer(&z, "svc.cluster.local.", RecordType::A));
    is_nodata(&answer(&z, "a2.svc.cluster.local.", RecordType::A));
    is_nodata(&answer(&z, "web.a1.svc.cluster.local.", RecordType::TXT));
    // Pod records are not served.
    is_nxdomain_with_soa(
        &answer(&z, "10-0-1-7.a1.pod.cluster.local.", RecordType::A),
        "cluster.local.",
    );
}

/// The whole response for `name`, as a client would receive it.
fn wire(z: &Zone, name: &str, t: RecordType) -> Message {
    let a = answer(z, name, t);
    let mut md = Metadata::new(7, MessageType::Response, OpCode::Query);
    md.authoritative = a.authoritative;
    md.response_code = a.rcode;
    let mut m = Message::new(7, MessageType::Response, OpCode::Query);
    m.metadata = md;
    m.add_query(Query::query(n(name), t));
    m.add_answers(a.answers);
    m.add_authorities(a.authorities);
    m.add_additionals(a.additionals);
    Message::from_vec(&m.to_vec().unwrap()).unwrap()
}

#[test]
fn another_tenants_namespace_looks_exactly_like_a_missing_one() {
    let z = zone();
    let probes = [
        // A Service of namespace b (another VPC), present in the document.
        ("web.b.svc.cluster.local.", "web.zz.svc.cluster.local."),
        ("b.svc.cluster.local.", "zz.svc.cluster.local."),
        (
            "_http._tcp.web.b.svc.cluster.local.",
            "_http._tcp.web.zz.svc.cluster.local.",
        ),
        ("x.web.b.svc.cluster.local.", "x.web.zz.svc.cluster.local."),
    ];
    for (foreign, missing) in probes {
        for t in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::ANY,
        ] {
            let f = wire(&z, foreign, t);
            let mut m = wire(&z, missing, t);
            assert_eq!(f.metadata.response_code, ResponseCode::NXDomain);
            // Identical but for the question.
            m.queries = f.queries.clone();
            assert_eq!(f, m, "{foreign} vs {missing} {t}");
            assert_eq!(f.to_vec().unwrap(), m.to_vec().unwrap());
        }
    }
}

#[test]
fn only_the_documents_namespaces_are_indexed() {
    let z = zone();
    assert!(!z.nodes.keys().any(|k| k.to_ascii().contains(".b.svc")));
    assert!(
        !z.ptr
            .values()
            .flatten()
            .any(|t| t.to_ascii().contains(".b.svc"))
    );
    // SOA; web A, AAAA, 2 SRV; db 2 A + 1 AAAA; 3 endpoint names; 3 pg SRV;
    // 5 PTR.
    assert_eq!(z.records(), 1 + 4 + 3 + 3 + 3 + 5);
}

#[test]
fn an_entry_that_is_no_dns_name_is_left_out_alone() {
    let mut d = doc();
    // A dot would plant a name elsewhere (here: over db's records).
    d.services[0].name = "x.db".into();
    d.services.push(ZoneService {
        namespace: "a1".into(),
        name: "y".into(),
        cluster_ips: vec![ip("10.96.0.50")],
        ports: vec![port(Some(&"p".repeat(70)), ZoneProtocol::Tcp, 1)],
        endpoints: vec![],
    });
    d.namespaces.push("bad.ns".into());
    let z = Zone::build(&d, 1).unwrap();
    assert_eq!(z.skipped.len(), 3, "{:?}", z.skipped);
    for gone in ["x.db.a1.svc.cluster.local.", "y.a1.svc.cluster.local."] {
        is_nxdomain_with_soa(&answer(&z, gone, RecordType::A), "cluster.local.");
    }
    assert_eq!(
        rdatas(&answer(&z, "db.a1.svc.cluster.local.", RecordType::A)),
        vec!["10.0.1.7", "10.0.1.8"],
        "the rest is served"
    );
}

#[test]
fn bad_domains_are_refused() {
    let mut d = doc();
    d.domain = ".".into();
    assert!(Zone::build(&d, 1).is_err());
    let mut d = doc();
    d.domain = "cluster.local.".into();
    assert_eq!(Zone::build(&d, 1).unwrap().domain(), &n("cluster.local."));
}

#[test]
fn the_soa_depends_only_on_the_document() {
    let (a, b) = (zone(), Zone::build(&doc(), 9).unwrap());
    assert_eq!(a.soa, b.soa, "replicas serving one document agree");
    let mut d = doc();
    d.services.pop();
    let c = Zone::build(&d, 1).unwrap();
    assert_ne!(a.soa, c.soa, "a new document, a new serial");
    let RData::SOA(soa) = &a.soa.data else {
        panic!()
    };
    assert_eq!(soa.minimum, 5, "negative TTL");
}
