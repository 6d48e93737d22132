//! From a question to an answer: the zone first (authoritative), then the
//! cache, then the upstreams through a [`Forwarder`]. No sockets here: the
//! forwarder is a trait, so the whole decision is tested with a fake one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use tokio::sync::oneshot;
use vpcnet_api::dns_zone::{ZoneDocument, ZoneError};

use crate::cache::{Cache, Clock, Key, SystemClock};
use crate::metrics::Metrics;
use crate::zone::{Lookup, Zone};

/// The sections and code of a response, before it is framed for a client.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Response code.
    pub rcode: ResponseCode,
    /// Answered from the zone (the AA bit).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section (never an OPT record: EDNS is per hop).
    pub additionals: Vec<Record>,
}

impl Answer {
    /// An answer with no records.
    pub fn code(rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// The sections of an upstream's response.
    pub fn from_message(m: Message) -> Answer {
        Answer {
            rcode: m.metadata.response_code,
            authoritative: false,
            answers: m.answers,
            authorities: m.authorities,
            additionals: m.additionals,
        }
    }
}

/// Why forwarding gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No upstream in the document.
    #[error("no upstream configured")]
    NoUpstream,
    /// Too many questions already forwarded and unanswered.
    #[error("too many forwarded questions in flight")]
    Busy,
    /// Every upstream failed (timeout, refused, malformed, SERVFAIL...).
    #[error("every upstream failed; last: {0}")]
    AllFailed(String),
}

/// Asks upstream resolvers, in order, until one answers.
#[async_trait::async_trait]
pub trait Forwarder: Send + Sync + 'static {
    /// The upstream's response to `query` (any rcode but the failures that
    /// make it try the next upstream).
    async fn forward(
        &self,
        upstreams: &[SocketAddr],
        query: &Query,
    ) -> Result<Message, ForwardError>;
}

/// Where an answer came from (for metrics and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The zone.
    Zone,
    /// The cache.
    Cache,
    /// An upstream.
    Upstream,
    /// Nothing could answer (no zone yet, upstreams down, refused type).
    Failure,
}

/// The zone in force, the cache and the forwarder.
pub struct Answerer<F: Forwarder, C: Clock = SystemClock> {
    /// Swapped whole on reload: a query holds one `Arc` for its lifetime, so
    /// it sees either the old zone or the new one, never a mix.
    zone: ArcSwapOption<Zone>,
    cache: Mutex<Cache<C>>,
    /// Questions being forwarded, with who else waits for the answer: many
    /// clients asking one uncached name (a TTL just ran out) cost one
    /// upstream exchange, not one each.
    in_flight: Mutex<HashMap<Key, Vec<oneshot::Sender<Answer>>>>,
    forwarder: F,
    metrics: Arc<Metrics>,
}

/// Held by the one forwarding a question: dropping it (done or cancelled)
/// takes the waiters out, so a cancelled forward cannot leave them, or the
/// next asker, waiting forever (their receivers see the senders dropped).
struct Leader<'a> {
    in_flight: &'a Mutex<HashMap<Key, Vec<oneshot::Sender<Answer>>>>,
    key: Key,
}

impl Leader<'_> {
    fn finish(self, a: &Answer) {
        let waiters = self.take();
        for w in waiters {
            let _ = w.send(a.clone());
        }
    }

    fn take(&self) -> Vec<oneshot::Sender<Answer>> {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .remove(&self.key)
            .unwrap_or_default()
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

impl<F: Forwarder> Answerer<F, SystemClock> {
    /// With the system clock.
    pub fn new(forwarder: F, cache_size: usize, cache_max_ttl: u32, metrics: Arc<Metrics>) -> Self {
        Self::with_clock(forwarder, SystemClock, cache_size, cache_max_ttl, metrics)
    }
}

impl<F: Forwarder, C: Clock> Answerer<F, C> {
    /// With a given clock (tests).
    pub fn with_clock(
        forwarder: F,
        clock: C,
        cache_size: usize,
        cache_max_ttl: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        Answerer {
            zone: ArcSwapOption::empty(),
            cache: Mutex::new(Cache::new(clock, cache_size, cache_max_ttl)),
            in_flight: Mutex::new(HashMap::new()),
            forwarder,
            metrics,
        }
    }

    /// Parses a document and puts its zone in force; on error the zone in
    /// force stays. Returns the new generation.
    pub fn load(&self, json: &[u8]) -> Result<u64, ZoneError> {
        let r = ZoneDocument::from_json(json).and_then(|doc| {
            let generation = self.generation() + 1;
            Zone::build(&doc, generation)
        });
        match r {
            Ok(z) => {
                for why in &z.skipped {
                    tracing::warn!("zone document entry left out: {why}");
                }
                let generation = z.generation;
                self.metrics.zone_records.set(z.records() as i64);
                self.metrics.zone_generation.set(generation as i64);
                self.zone.store(Some(Arc::new(z)));
                Ok(generation)
            }
            Err(e) => {
                self.metrics.zone_load_errors.inc();
                Err(e)
            }
        }
    }

    /// Loads of this process so far; 0 until the first document.
    pub fn generation(&self) -> u64 {
        self.zone.load().as_ref().map_or(0, |z| z.generation)
    }

    /// The zone in force.
    pub fn zone(&self) -> Option<Arc<Zone>> {
        self.zone.load_full()
    }

    /// The answer to one question.
    pub async fn answer(&self, query: &Query) -> (Answer, Source) {
        let Some(zone) = self.zone.load_full() else {
            // Not loaded yet: the pod is not ready either, so clients should
            // not be here; SERVFAIL tells them to try another server.
            return (Answer::code(ResponseCode::ServFail), Source::Failure);
        };
        let qtype = query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return (Answer::code(ResponseCode::Refused), Source::Failure);
        }
        if query.query_class() != DNSClass::IN {
            return (Answer::code(ResponseCode::Refused), Source::Failure);
        }
        let mut name = query.name().clone();
        name.set_fqdn(true);
        if let Lookup::Answer(a) = zone.lookup(&name, qtype) {
            return (a, Source::Zone);
        }
        let key = Key {
            name,
            qtype,
            qclass: query.query_class(),
        };
        let hit = self.cache.lock().expect("cache lock").get(&key);
        if let Some(a) = hit {
            self.metrics.cache_hits.inc();
            return (a, Source::Cache);
        }
        self.metrics.cache_misses.inc();
        let waiting = {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            match in_flight.get_mut(&key) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    in_flight.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            return match rx.await {
                Ok(a) => (a, Source::Upstream),
                // The forward was cancelled.
                Err(_) => (Answer::code(ResponseCode::ServFail), Source::Failure),
            };
        }
        let leader = Leader {
            in_flight: &self.in_flight,
            key: key.clone(),
        };
        let (a, source) = match self.forwarder.forward(&zone.upstreams, query).await {
            Ok(m) => {
                let a = Answer::from_message(m);
                let mut cache = self.cache.lock().expect("cache lock");
                cache.insert(key, &a);
                self.metrics.cache_entries.set(cache.len() as i64);
                (a, Source::Upstream)
            }
            Err(e) => {
                tracing::debug!(%e, name = %query.name(), "forwarding failed");
                (Answer::code(ResponseCode::ServFail), Source::Failure)
            }
        };
        leader.finish(&a);
        (a, source)
    }
}

#[cfg(test)]
mod tests;
