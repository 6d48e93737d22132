use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::MessageType;
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData};

use super::*;

/// Answers `*.example.` A with 192.0.2.1 (TTL 60), `nx.example.` NXDOMAIN
/// (SOA minimum 30), fails when `down`; counts calls.
#[derive(Default)]
struct Fake {
    calls: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
    /// When set, every forward waits for a permit here first.
    gate: Option<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl Forwarder for Arc<Fake> {
    async fn forward(&self, up: &[SocketAddr], q: &Query) -> Result<Message, ForwardError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(g) = &self.gate {
            g.acquire().await.unwrap().forget();
        }
        if up.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(ForwardError::AllFailed("down".into()));
        }
        let mut m = Message::new(1, MessageType::Response, hickory_proto::op::OpCode::Query);
        m.add_query(q.clone());
        if q.name().to_ascii().starts_with("nx.") {
            m.metadata.response_code = ResponseCode::NXDomain;
            let soa = SOA::new(q.name().clone(), q.name().clone(), 1, 1, 1, 1, 30);
            m.add_authority(Record::from_rdata(
                Name::from_ascii("example.").unwrap(),
                300,
                RData::SOA(soa),
            ));
        } else {
            m.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        Ok(m)
    }
}

#[derive(Clone)]
struct Manual(Arc<Mutex<Instant>>);
impl Clock for Manual {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

fn setup() -> (Arc<Fake>, Manual, Arc<Metrics>, Answerer<Arc<Fake>, Manual>) {
    let fake = Arc::new(Fake::default());
    let clock = Manual(Arc::new(Mutex::new(Instant::now())));
    let metrics = Arc::new(Metrics::default());
    let a = Answerer::with_clock(fake.clone(), clock.clone(), 100, 3600, metrics.clone());
    (fake, clock, metrics, a)
}

fn doc_json() -> Vec<u8> {
    crate::zone::tests::doc().to_json().into_bytes()
}

fn q(name: &str, t: RecordType) -> Query {
    Query::query(Name::from_ascii(name).unwrap(), t)
}

#[tokio::test]
async fn servfail_until_a_zone_is_loaded() {
    let (fake, _, _, a) = setup();
    assert_eq!(a.generation(), 0);
    let (ans, src) = a
        .answer(&q("web.a1.svc.cluster.local.", RecordType::A))
        .await;
    assert_eq!((ans.rcode, src), (ResponseCode::ServFail, Source::Failure));
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
    assert_eq!(a.load(&doc_json()).unwrap(), 1);
    let (ans, src) = a
        .answer(&q("web.a1.svc.cluster.local.", RecordType::A))
        .await;
    assert_eq!((ans.rcode, src), (ResponseCode::NoError, Source::Zone));
}

#[tokio::test]
async fn the_zone_answers_without_forwarding_even_nxdomain() {
    let (fake, _, _, a) = setup();
    a.load(&doc_json()).unwrap();
    for name in [
        "web.b.svc.cluster.local.",
        "nope.cluster.local.",
        "99.0.96.10.in-addr.arpa.",
    ] {
        let (ans, src) = a.answer(&q(name, RecordType::A)).await;
        assert_eq!(
            (ans.rcode, src),
            (ResponseCode::NXDomain, Source::Zone),
            "{name}"
        );
    }
    // A relative name is taken as fully qualified.
    let mut rel = q("web.a1.svc.cluster.local.", RecordType::A);
    let mut n = rel.name().clone();
    n.set_fqdn(false);
    rel.set_name(n);
    assert_eq!(a.answer(&rel).await.1, Source::Zone);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn forwarded_answers_are_cached_positive_and_negative() {
    let (fake, clock, metrics, a) = setup();
    a.load(&doc_json()).unwrap();
    let www = q("www.example.", RecordType::A);
    assert_eq!(a.answer(&www).await.1, Source::Upstream);
    let (ans, src) = a.answer(&www).await;
    assert_eq!(src, Source::Cache);
    assert!(!ans.authoritative);
    let nx = q("nx.example.", RecordType::A);
    assert_eq!(a.answer(&nx).await.1, Source::Upstream);
    assert_eq!(a.answer(&nx).await, (a.answer(&nx).await.0, Source::Cache));
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    assert_eq!(metrics.cache_hits.get(), 3);
    assert_eq!(metrics.cache_misses.get(), 2);
    // The negative entry lives 30 s (SOA minimum), the positive 60 s.
    *clock.0.lock().unwrap() += Duration::from_secs(30);
    assert_eq!(a.answer(&nx).await.1, Source::Upstream);
    let (ans, src) = a.answer(&www).await;
    assert_eq!((src, ans.answers[0].ttl), (Source::Cache, 30));
    *clock.0.lock().unwrap() += Duration::from_secs(30);
    assert_eq!(a.answer(&www).await.1, Source::Upstream);
}

#[tokio::test]
async fn servfail_when_upstreams_fail_or_there_are_none_and_failures_are_not_cached() {
    let (fake, _, _, a) = setup();
    a.load(&doc_json()).unwrap();
    fake.down.store(true, Ordering::SeqCst);
    let www = q("www.example.", RecordType::A);
    assert_eq!(a.answer(&www).await.0.rcode, ResponseCode::ServFail);
    fake.down.store(false, Ordering::SeqCst);
    assert_eq!(
        a.answer(&www).await.1,
        Source::Upstream,
        "SERVFAIL was not cached"
    );
    // Cached answers outlive the upstream.
    fake.down.store(true, Ordering::SeqCst);
    assert_eq!(a.answer(&www).await.1, Source::Cache);
    // No upstream in the document.
    let mut d = crate::zone::tests::doc();
    d.upstreams.clear();
    a.load(d.to_json().as_bytes()).unwrap();
    fake.down.store(false, Ordering::SeqCst);
    let (ans, _) = a.answer(&q("other.example.", RecordType::A)).await;
    assert_eq!(ans.rcode, ResponseCode::ServFail);
}

#[tokio::test]
async fn transfers_and_other_classes_are_refused() {
    let (_, _, _, a) = setup();
    a.load(&doc_json()).unwrap();
    let axfr = q("cluster.local.", RecordType::AXFR);
    assert_eq!(a.answer(&axfr).await.0.rcode, ResponseCode::Refused);
    let mut ch = q("version.bind.", RecordType::TXT);
    ch.set_query_class(DNSClass::CH);
    assert_eq!(a.answer(&ch).await.0.rcode, ResponseCode::Refused);
}

#[tokio::test]
async fn a_reload_swaps_the_zone_whole_and_a_bad_document_keeps_the_old() {
    let (_, _, metrics, a) = setup();
    a.load(&doc_json()).unwrap();
    let held = a.zone().unwrap();
    let mut d = crate::zone::tests::doc();
    d.services.retain(|s| s.name != "web");
    assert_eq!(a.load(d.to_json().as_bytes()).unwrap(), 2);
    let web = q("web.a1.svc.cluster.local.", RecordType::A);
    assert_eq!(a.answer(&web).await.0.rcode, ResponseCode::NXDomain);
    // A query that took the old zone still sees all of it.
    assert!(matches!(
        held.lookup(web.name(), RecordType::A),
        Lookup::Answer(Answer {
            rcode: ResponseCode::NoError,
            ..
        })
    ));
    assert!(a.load(b"{not json").is_err());
    assert!(
        a.load(br#"{"version":2,"domain":"cluster.local"}"#)
            .is_err()
    );
    assert_eq!(a.generation(), 2);
    assert_eq!(metrics.zone_load_errors.get(), 2);
    assert_eq!(metrics.zone_generation.get(), 2);
    assert_eq!(a.answer(&web).await.0.rcode, ResponseCode::NXDomain);
}

#[tokio::test]
async fn one_forward_serves_every_client_asking_the_same_name_meanwhile() {
    let fake = Arc::new(Fake {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..Fake::default()
    });
    let a = Arc::new(Answerer::new(
        fake.clone(),
        100,
        3600,
        Arc::new(Metrics::default()),
    ));
    a.load(&doc_json()).unwrap();
    let asks: Vec<_> = (0..10)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.answer(&q("www.example.", RecordType::A)).await })
        })
        .collect();
    // All ten are waiting on one forward.
    while a
        .in_flight
        .lock()
        .unwrap()
        .get(&Key {
            name: Name::from_ascii("www.example.").unwrap(),
            qtype: RecordType::A,
            qclass: DNSClass::IN,
        })
        .is_none_or(|w| w.len() < 9)
    {
        tokio::task::yield_now().await;
    }
    fake.gate.as_ref().unwrap().add_permits(1);
    for t in asks {
        let (ans, src) = t.await.unwrap();
        assert_eq!((ans.rcode, src), (ResponseCode::NoError, Source::Upstream));
        assert_eq!(ans.answers.len(), 1);
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    assert!(a.in_flight.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_cancelled_forward_leaves_nobody_waiting() {
    let fake = Arc::new(Fake {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..Fake::default()
    });
    let a = Arc::new(Answerer::new(
        fake.clone(),
        100,
        3600,
        Arc::new(Metrics::default()),
    ));
    a.load(&doc_json()).unwrap();
    let spawn = || {
        let a = a.clone();
        tokio::spawn(async move { a.answer(&q("www.example.", RecordType::A)).await })
    };
    let leader = spawn();
    while fake.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let follower = spawn();
    while a.in_flight.lock().unwrap().values().all(Vec::is_empty) {
        tokio::task::yield_now().await;
    }
    leader.abort();
    let (ans, _) = follower.await.unwrap();
    assert_eq!(ans.rcode, ResponseCode::ServFail, "told, not left hanging");
    // The next asker forwards anew.
    fake.gate.as_ref().unwrap().add_permits(1);
    assert_eq!(spawn().await.unwrap().1, Source::Upstream);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}
