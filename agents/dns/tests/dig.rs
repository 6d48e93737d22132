//! `vpcnet-dns` processes on loopback, asked by `dig` over UDP and TCP.

mod common;

use std::time::{Duration, Instant};

use common::{Dns, dig_at, flags_of, status_of, write_zone};
use serde_json::{Value, json};

/// Tenant A's zone: namespace `a`; `b` is another tenant's and its Service
/// (wrongly present) must not be served.
fn tenant(upstreams: &[String]) -> Value {
    let big: Vec<Value> = (0..100)
        .map(|i| json!({"addresses": [format!("10.0.2.{}", i + 1)], "ready": true}))
        .collect();
    json!({
        "version": 1,
        "domain": "cluster.local",
        "upstreams": upstreams,
        "namespaces": ["a"],
        "reverseZones": ["10.96.0.0/12", "10.0.0.0/16"],
        "services": [
            {"namespace": "a", "name": "web", "clusterIps": ["10.96.0.20", "fd00::20"],
             "ports": [{"name": "http", "protocol": "TCP", "port": 80}]},
            {"namespace": "a", "name": "db", "clusterIps": [],
             "ports": [{"name": "pg", "port": 5432}],
             "endpoints": [{"addresses": ["10.0.1.7"], "hostname": "db-0", "ready": true},
                           {"addresses": ["10.0.1.8"], "ready": true},
                           {"addresses": ["10.0.1.9"], "hostname": "db-2", "ready": false}]},
            {"namespace": "a", "name": "big", "clusterIps": [], "endpoints": big},
            {"namespace": "b", "name": "web", "clusterIps": ["10.96.0.30"]}
        ]
    })
}

/// The upstream: another vpcnet-dns, authoritative for `example.test`.
fn upstream_zone() -> Value {
    json!({
        "version": 1, "domain": "example.test", "namespaces": ["up"], "ttl": 300,
        "services": [{"namespace": "up", "name": "www", "clusterIps": ["192.0.2.80"]},
                     {"namespace": "up", "name": "other", "clusterIps": ["192.0.2.81"]}]
    })
}

#[test]
fn a_aaaa_srv_ptr_over_udp_and_tcp() {
    let d = Dns::ready(&tenant(&[]).to_string(), &[]);
    for tcp in [false, true] {
        let t = if tcp { "+tcp" } else { "+notcp" };
        assert_eq!(
            d.short(&[t, "web.a.svc.cluster.local", "A"]),
            ["10.96.0.20"]
        );
        assert_eq!(
            d.short(&[t, "web.a.svc.cluster.local", "AAAA"]),
            ["fd00::20"]
        );
        assert_eq!(
            d.short(&[t, "_http._tcp.web.a.svc.cluster.local", "SRV"]),
            ["0 100 80 web.a.svc.cluster.local."]
        );
        assert_eq!(
            d.short(&[t, "-x", "10.96.0.20"]),
            ["web.a.svc.cluster.local."]
        );
        assert_eq!(
            d.short(&[t, "-x", "fd00::20"]),
            ["web.a.svc.cluster.local."]
        );
        // Headless: the ready endpoints, by Service name and by hostname.
        assert_eq!(
            d.short(&[t, "db.a.svc.cluster.local"]),
            ["10.0.1.7", "10.0.1.8"]
        );
        assert_eq!(d.short(&[t, "db-0.db.a.svc.cluster.local"]), ["10.0.1.7"]);
        assert_eq!(
            d.short(&[t, "_pg._tcp.db.a.svc.cluster.local", "SRV"]),
            [
                "0 100 5432 10-0-1-8.db.a.svc.cluster.local.",
                "0 100 5432 db-0.db.a.svc.cluster.local."
            ]
        );
        assert_eq!(
            d.short(&[t, "-x", "10.0.1.7"]),
            ["db-0.db.a.svc.cluster.local."]
        );
    }
    let full = d.dig(&["web.a.svc.cluster.local"]);
    assert!(flags_of(&full).contains(&"aa".to_string()), "{full}");
    assert!(
        full.contains("EDNS: version: 0"),
        "EDNS answered in kind: {full}"
    );
    assert!(d.metric("vpcnet_dns_queries_total{transport=\"udp\"}") >= 9.0);
    assert!(d.metric("vpcnet_dns_queries_total{transport=\"tcp\"}") >= 9.0);
    assert!(d.metric("vpcnet_dns_responses_total{rcode=\"NOERROR\"}") >= 18.0);
}

/// The response without what differs by question: the id, the question and
/// the timing lines.
fn shape(dig_out: &str, qname: &str) -> String {
    dig_out
        .lines()
        .filter(|l| {
            !l.starts_with(";; Query time") && !l.starts_with(";; WHEN") && !l.starts_with("; <<>>")
        })
        .map(|l| {
            let l = l.replace(qname, "QNAME");
            match l.split_once(", id: ") {
                Some((a, _)) => a.to_string(),
                None => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn another_tenants_namespace_is_nxdomain_like_a_missing_one() {
    let d = Dns::ready(&tenant(&[]).to_string(), &[]);
    // The same length of name both ways, so that sizes match too.
    for (foreign, missing) in [
        ("web.b.svc.cluster.local", "web.z.svc.cluster.local"),
        ("b.svc.cluster.local", "z.svc.cluster.local"),
    ] {
        for t in ["A", "SRV", "ANY"] {
            let f = d.dig(&[foreign, t]);
            let m = d.dig(&[missing, t]);
            assert_eq!(status_of(&f), "NXDOMAIN", "{f}");
            assert!(f.contains("IN\tSOA"), "SOA in authority: {f}");
            assert_eq!(shape(&f, foreign), shape(&m, missing));
        }
    }
    // And a reverse name of the other tenant's address like a free one.
    let f = d.dig(&["-x", "10.96.0.30"]);
    let m = d.dig(&["-x", "10.96.0.99"]);
    assert_eq!(status_of(&f), "NXDOMAIN");
    assert_eq!(shape(&f, "30.0.96.10"), shape(&m, "99.0.96.10"));
}

#[test]
fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let d = Dns::ready(&tenant(&[]).to_string(), &[]);
    let udp = d.dig(&["+bufsize=512", "+ignore", "big.a.svc.cluster.local"]);
    assert!(flags_of(&udp).contains(&"tc".to_string()), "{udp}");
    let size: usize = udp
        .split("MSG SIZE  rcvd: ")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap();
    assert!(size <= 512, "{size}");
    // Without EDNS the limit is 512 too.
    let plain = d.dig(&["+noedns", "+ignore", "big.a.svc.cluster.local"]);
    assert!(flags_of(&plain).contains(&"tc".to_string()), "{plain}");
    // dig retries over TCP by itself without +ignore; and +tcp directly.
    assert_eq!(
        d.short(&["+bufsize=512", "big.a.svc.cluster.local"]).len(),
        100
    );
    let tcp = d.dig(&["+tcp", "big.a.svc.cluster.local"]);
    assert!(!flags_of(&tcp).contains(&"tc".to_string()), "{tcp}");
    assert_eq!(d.short(&["+tcp", "big.a.svc.cluster.local"]).len(), 100);
    // A client's larger buffer is honoured up to our 1232 bytes: 100 A
    // records (~1.6 kB) still do not fit.
    let big = d.dig(&["+bufsize=4096", "+ignore", "big.a.svc.cluster.local"]);
    assert!(flags_of(&big).contains(&"tc".to_string()), "{big}");
    assert!(big.contains("udp: 1232"), "{big}");
}

#[test]
fn forwarding_caching_failover_and_servfail() {
    let mut up = Dns::ready(&upstream_zone().to_string(), &["--lameduck-ms", "0"]);
    // A dead upstream first: the next one is tried.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let zone = tenant(&[dead, up.dns.to_string()]).to_string();
    let d = Dns::ready(&zone, &["--upstream-timeout-ms", "300"]);
    assert_eq!(d.short(&["www.up.svc.example.test"]), ["192.0.2.80"]);
    let ans = d.dig(&["www.up.svc.example.test"]);
    assert!(
        !flags_of(&ans).contains(&"aa".to_string()),
        "forwarded, not ours: {ans}"
    );
    assert!(flags_of(&ans).contains(&"ra".to_string()));
    assert_eq!(d.status(&["nope.example.test"]), "NXDOMAIN");
    assert_eq!(d.status(&["+tcp", "nope.example.test"]), "NXDOMAIN");
    assert!(d.metric("vpcnet_dns_cache_hits_total") >= 2.0);
    assert_eq!(d.metric("vpcnet_dns_cache_misses_total"), 2.0);
    assert_eq!(
        d.metric("vpcnet_dns_upstream_errors_total"),
        1.0,
        "the dead one, once: then it is tried last"
    );
    assert!(d.metric("vpcnet_dns_upstream_duration_seconds_count") >= 2.0);
    // The upstream answered each name once.
    assert_eq!(
        up.metric("vpcnet_dns_queries_total{transport=\"udp\"}"),
        2.0
    );

    // Upstream gone: cached answers (positive and negative) still come,
    // an uncached name gets SERVFAIL.
    up.terminate(Duration::from_secs(5));
    assert_eq!(d.short(&["www.up.svc.example.test"]), ["192.0.2.80"]);
    assert_eq!(d.status(&["nope.example.test"]), "NXDOMAIN");
    assert_eq!(d.status(&["other.up.svc.example.test"]), "SERVFAIL");
    // The zone does not depend on any upstream.
    assert_eq!(d.short(&["web.a.svc.cluster.local"]), ["10.96.0.20"]);
}

#[test]
fn no_upstream_is_servfail() {
    let d = Dns::ready(&tenant(&[]).to_string(), &[]);
    assert_eq!(d.status(&["www.example.com"]), "SERVFAIL");
    // A reverse name outside every reverse zone is forwarded, so SERVFAIL.
    assert_eq!(d.status(&["-x", "192.0.2.1"]), "SERVFAIL");
    assert!(d.metric("vpcnet_dns_responses_total{rcode=\"SERVFAIL\"}") >= 2.0);
}

#[test]
fn a_new_document_is_served_within_two_seconds() {
    let d = Dns::ready(&tenant(&[]).to_string(), &[]);
    assert_eq!(d.metric("vpcnet_dns_zone_generation"), 1.0);
    let mut z = tenant(&[]);
    z["services"][0]["clusterIps"] = json!(["10.96.0.21"]);
    z["services"]
        .as_array_mut()
        .unwrap()
        .push(json!({"namespace": "a", "name": "new", "clusterIps": ["10.96.0.40"]}));
    let t = Instant::now();
    write_zone(&d.zone_path(), &z.to_string());
    while d.short(&["new.a.svc.cluster.local"]) != ["10.96.0.40"] {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "not reloaded:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(d.short(&["web.a.svc.cluster.local", "A"]), ["10.96.0.21"]);
    assert_eq!(d.metric("vpcnet_dns_zone_generation"), 2.0);
    // A broken document keeps the zone in force.
    write_zone(&d.zone_path(), "{\"version\": 1, ");
    let t = Instant::now();
    while d.metric("vpcnet_dns_zone_load_errors_total") < 1.0 {
        assert!(t.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(d.short(&["new.a.svc.cluster.local"]), ["10.96.0.40"]);
    assert_eq!(d.http_get("/readyz").0, 200);
}

#[test]
fn ready_only_after_the_first_document_and_sigterm_exits_cleanly() {
    let mut d = Dns::start("", &["--lameduck-ms", "1500"]);
    assert_eq!(d.http_get("/healthz").0, 200);
    assert_eq!(d.http_get("/readyz").0, 503);
    // The kubelet's exec probe says the same.
    let probe = |path: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vpcnet-dns"))
            .args(["probe", path, &d.http.port().to_string()])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(probe("/healthz"));
    assert!(!probe("/readyz"));
    assert_eq!(d.status(&["web.a.svc.cluster.local"]), "SERVFAIL");
    write_zone(&d.zone_path(), &tenant(&[]).to_string());
    d.wait_ready();
    assert!(probe("/readyz"));
    assert_eq!(d.short(&["web.a.svc.cluster.local"]), ["10.96.0.20"]);
    let m = d.http_get("/metrics").1;
    for name in [
        "vpcnet_dns_queries_total",
        "vpcnet_dns_responses_total",
        "vpcnet_dns_cache_hits_total",
        "vpcnet_dns_cache_misses_total",
        "vpcnet_dns_cache_entries",
        "vpcnet_dns_upstream_duration_seconds",
        "vpcnet_dns_upstream_errors_total",
        "vpcnet_dns_forwards_refused_total",
        "vpcnet_dns_zone_records",
        "vpcnet_dns_zone_generation",
        "vpcnet_dns_zone_load_errors_total",
    ] {
        assert!(
            m.contains(&format!("# TYPE {name}")) || m.contains(&format!("\n{name}")),
            "{name} in\n{m}"
        );
    }
    assert!(d.metric("vpcnet_dns_zone_records") > 100.0);
    let server = d.dns;
    // SIGTERM: not ready, still answering through the lame-duck period.
    d.signal_term();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.http_get("/readyz").0, 503);
    assert_eq!(d.short(&["web.a.svc.cluster.local"]), ["10.96.0.20"]);
    assert_eq!(
        d.short(&["+tcp", "web.a.svc.cluster.local"]),
        ["10.96.0.20"]
    );
    let st = d.wait_exit(Duration::from_secs(5));
    assert!(st.success(), "{st:?}");
    // Nothing answers any more.
    assert_eq!(
        status_of(&dig_at(server, &["+time=1", "web.a.svc.cluster.local"])),
        "NO ANSWER"
    );
}

#[test]
fn forwarding_is_bounded_and_beyond_the_bound_is_servfail() {
    let up = Dns::ready(&upstream_zone().to_string(), &["--lameduck-ms", "0"]);
    let zone = tenant(&[up.dns.to_string()]).to_string();
    let d = Dns::ready(&zone, &["--max-forwards", "0"]);
    assert_eq!(d.status(&["www.up.svc.example.test"]), "SERVFAIL");
    assert_eq!(d.metric("vpcnet_dns_forwards_refused_total"), 1.0);
    assert_eq!(
        up.metric("vpcnet_dns_queries_total{transport=\"udp\"}"),
        0.0
    );
    // The zone needs no forwarding.
    assert_eq!(d.short(&["web.a.svc.cluster.local"]), ["10.96.0.20"]);
}
