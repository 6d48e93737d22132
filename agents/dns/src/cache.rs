//! The cache of forwarded answers. Pure: the time comes from a [`Clock`].
//!
//! - Positive answers live for the smallest TTL of their answer records.
//! - Negative answers (NXDOMAIN, or NOERROR with no answer) live for the SOA
//!   in their authority section: `min(SOA TTL, SOA minimum)` (RFC 2308 §5);
//!   without an SOA they are not cached (RFC 2308 §5: SHOULD NOT).
//! - Both are capped by `max_ttl`; other rcodes (SERVFAIL...) are not cached.
//! - A hit returns the records with their TTLs lowered by the time spent in
//!   the cache, so downstream caches do not extend a lifetime.
//! - The size is bounded: when full, expired entries go first, then the ones
//!   closest to expiry (which have the least left to give).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::answer::Answer;

/// Where the cache reads the time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The question an answer is cached under. `Name` compares and hashes
/// case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Question name.
    pub name: Name,
    /// Question type.
    pub qtype: RecordType,
    /// Question class.
    pub qclass: DNSClass,
}

struct Entry {
    answer: Answer,
    stored: Instant,
    expires: Instant,
    /// Tie-breaker of the expiry index.
    seq: u64,
}

/// A bounded TTL cache.
pub struct Cache<C: Clock = SystemClock> {
    clock: C,
    capacity: usize,
    max_ttl: u32,
    entries: HashMap<Key, Entry>,
    /// (expiry, seq) of every entry, for eviction in expiry order.
    by_expiry: BTreeSet<(Instant, u64, Key)>,
    seq: u64,
}

impl<C: Clock> Cache<C> {
    /// A cache of at most `capacity` answers, none kept longer than `max_ttl` seconds.
    pub fn new(clock: C, capacity: usize, max_ttl: u32) -> Self {
        Cache {
            clock,
            capacity,
            max_ttl,
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
            seq: 0,
        }
    }

    /// Entries held (expired ones not yet evicted included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached answer with TTLs aged, or `None` (an expired entry is dropped).
    pub fn get(&mut self, key: &Key) -> Option<Answer> {
        let now = self.clock.now();
        let e = self.entries.get(key)?;
        if now >= e.expires {
            self.remove(key);
            return None;
        }
        let age = u32::try_from(now.duration_since(e.stored).as_secs()).unwrap_or(u32::MAX);
        let mut a = e.answer.clone();
        for r in a
            .answers
            .iter_mut()
            .chain(a.authorities.iter_mut())
            .chain(a.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(a)
    }

    /// Stores `answer` if it may be cached; returns whether it was.
    pub fn insert(&mut self, key: Key, answer: &Answer) -> bool {
        let Some(ttl) = cache_ttl(answer) else {
            return false;
        };
        let ttl = ttl.min(self.max_ttl);
        if ttl == 0 || self.capacity == 0 {
            return false;
        }
        let now = self.clock.now();
        self.remove(&key);
        if self.entries.len() >= self.capacity {
            self.evict(now);
        }
        self.seq += 1;
        let expires = now + Duration::from_secs(u64::from(ttl));
        // Every record leaves the cache at the entry's expiry, so none may
        // claim to live longer (the cap and the minimum apply to all).
        let mut stored = answer.clone();
        for r in stored
            .answers
            .iter_mut()
            .chain(stored.authorities.iter_mut())
            .chain(stored.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(ttl);
        }
        self.by_expiry.insert((expires, self.seq, key.clone()));
        self.entries.insert(
            key,
            Entry {
                answer: stored,
                stored: now,
                expires,
                seq: self.seq,
            },
        );
        true
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.by_expiry.remove(&(e.expires, e.seq, key.clone()));
        }
    }

    /// Makes room for one entry: every expired one, or else the one
    /// expiring first.
    fn evict(&mut self, now: Instant) {
        let mut freed = false;
        while let Some((exp, _, key)) = self.by_expiry.first().cloned() {
            if exp > now && freed {
                break;
            }
            self.remove(&key);
            freed = true;
            if exp > now {
                break;
            }
        }
    }
}

/// How long an answer may be cached, if at all.
pub fn cache_ttl(a: &Answer) -> Option<u32> {
    let soa_min = || {
        a.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })
    };
    match a.rcode {
        ResponseCode::NXDomain => soa_min(),
        ResponseCode::NoError if a.answers.is_empty() => soa_min(),
        ResponseCode::NoError => a.answers.iter().map(|r| r.ttl).min(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    #[derive(Clone)]
    struct Manual(Arc<Mutex<Instant>>);
    impl Manual {
        fn new() -> Self {
            Manual(Arc::new(Mutex::new(Instant::now())))
        }
        fn advance(&self, secs: u64) {
            *self.0.lock().unwrap() += Duration::from_secs(secs);
        }
    }
    impl Clock for Manual {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn key(n: &str) -> Key {
        Key {
            name: Name::from_ascii(n).unwrap(),
            qtype: RecordType::A,
            qclass: DNSClass::IN,
        }
    }

    fn positive(n: &str, ttls: &[u32]) -> Answer {
        Answer {
            rcode: ResponseCode::NoError,
            authoritative: false,
            answers: ttls
                .iter()
                .map(|t| {
                    Record::from_rdata(
                        Name::from_ascii(n).unwrap(),
                        *t,
                        RData::A(A::new(192, 0, 2, 1)),
                    )
                })
                .collect(),
            authorities: vec![],
            additionals: vec![],
        }
    }

    fn negative(rcode: ResponseCode, soa_ttl: u32, minimum: u32) -> Answer {
        let soa = SOA::new(
            Name::from_ascii("ns.example.").unwrap(),
            Name::from_ascii("h.example.").unwrap(),
            1,
            1,
            1,
            1,
            minimum,
        );
        Answer {
            rcode,
            authoritative: false,
            answers: vec![],
            authorities: vec![Record::from_rdata(
                Name::from_ascii("example.").unwrap(),
                soa_ttl,
                RData::SOA(soa),
            )],
            additionals: vec![],
        }
    }

    #[test]
    fn positive_answers_expire_at_their_smallest_ttl_and_age() {
        let clock = Manual::new();
        let mut c = Cache::new(clock.clone(), 10, 3600);
        assert!(c.insert(key("a.example."), &positive("a.example.", &[30, 10])));
        clock.advance(4);
        let hit = c.get(&key("A.EXAMPLE.")).expect("case-insensitive hit");
        assert_eq!(
            hit.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(),
            vec![6, 6],
            "capped at the entry's life, then aged by 4 s"
        );
        clock.advance(6);
        assert!(c.get(&key("a.example.")).is_none(), "expired at 10 s");
        assert!(c.is_empty(), "an expired entry is dropped on read");
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum() {
        let clock = Manual::new();
        let mut c = Cache::new(clock.clone(), 10, 3600);
        // min(SOA TTL 300, minimum 20) = 20 (RFC 2308 §5).
        assert!(c.insert(
            key("nx.example."),
            &negative(ResponseCode::NXDomain, 300, 20)
        ));
        // NODATA the same way; and the SOA TTL when it is the smaller.
        let mut k = key("nodata.example.");
        k.qtype = RecordType::AAAA;
        assert!(c.insert(k.clone(), &negative(ResponseCode::NoError, 8, 60)));
        clock.advance(19);
        let hit = c.get(&key("nx.example.")).unwrap();
        assert_eq!(hit.rcode, ResponseCode::NXDomain);
        assert_eq!(hit.authorities[0].ttl, 1);
        assert!(c.get(&k).is_none(), "NODATA expired at 8 s");
        clock.advance(1);
        assert!(c.get(&key("nx.example.")).is_none());
    }

    #[test]
    fn what_is_not_cached() {
        let mut c = Cache::new(Manual::new(), 10, 3600);
        let mut no_soa = negative(ResponseCode::NXDomain, 1, 1);
        no_soa.authorities.clear();
        assert!(!c.insert(key("a."), &no_soa), "negative without SOA");
        assert!(!c.insert(key("b."), &negative(ResponseCode::ServFail, 60, 60)));
        assert!(!c.insert(key("c."), &positive("c.", &[0])), "TTL 0");
        assert!(c.is_empty());
    }

    #[test]
    fn max_ttl_caps_the_life() {
        let clock = Manual::new();
        let mut c = Cache::new(clock.clone(), 10, 60);
        c.insert(key("a."), &positive("a.", &[86400]));
        assert_eq!(c.get(&key("a.")).unwrap().answers[0].ttl, 60);
        clock.advance(60);
        assert!(c.get(&key("a.")).is_none());
    }

    #[test]
    fn the_size_is_bounded_and_the_soonest_to_expire_goes_first() {
        let clock = Manual::new();
        let mut c = Cache::new(clock.clone(), 3, 3600);
        c.insert(key("long."), &positive("long.", &[1000]));
        c.insert(key("short."), &positive("short.", &[10]));
        c.insert(key("mid."), &positive("mid.", &[100]));
        c.insert(key("new."), &positive("new.", &[500]));
        assert_eq!(c.len(), 3);
        assert!(
            c.get(&key("short.")).is_none(),
            "evicted: closest to expiry"
        );
        for k in ["long.", "mid.", "new."] {
            assert!(c.get(&key(k)).is_some(), "{k}");
        }
        // Expired entries are evicted before live ones, all of them at once.
        clock.advance(200);
        c.insert(key("x."), &positive("x.", &[1000]));
        assert_eq!(c.len(), 3, "mid expired and made room");
        for n in 0..1000 {
            c.insert(key(&format!("n{n}.")), &positive("n.", &[10_000]));
            assert!(c.len() <= 3);
        }
        assert_eq!(c.entries.len(), c.by_expiry.len(), "index in step");
    }

    #[test]
    fn a_reinsert_replaces() {
        let mut c = Cache::new(Manual::new(), 2, 3600);
        c.insert(key("a."), &positive("a.", &[10]));
        c.insert(key("a."), &positive("a.", &[20]));
        assert_eq!(c.len(), 1);
        assert_eq!(c.by_expiry.len(), 1);
        assert_eq!(c.get(&key("a.")).unwrap().answers[0].ttl, 20);
    }
}
