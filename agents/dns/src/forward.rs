//! Forwarding to upstream resolvers over UDP (TCP when the answer is
//! truncated), trying them in order.
//!
//! Each exchange uses a fresh socket on a random port and a random ID, and
//! accepts only a response from the upstream's address (a connected socket)
//! with that ID and the same question: a spoofed answer must guess both.
//!
//! An upstream that timed out or could not be reached is tried last for
//! [`PENALTY`], so a dead first upstream does not cost every cache miss a
//! timeout. A SERVFAIL or REFUSED moves on to the next upstream for that
//! question only: it may be the name's fault, not the server's.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::answer::{ForwardError, Forwarder};
use crate::metrics::Metrics;

/// The EDNS payload size asked of upstreams (the DNS flag day 2020 value:
/// no fragmentation on common paths).
pub const UPSTREAM_PAYLOAD: u16 = 1232;

/// Forwarded questions in flight at most, by default. Each holds a socket
/// for up to a timeout per upstream: unbounded, a flood of names nobody
/// caches would run the process out of file descriptors.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// How long an unreachable upstream is tried last.
pub const PENALTY: Duration = Duration::from_secs(30);

/// The forwarder of the running server.
pub struct NetForwarder {
    /// Time allowed for one upstream before the next is tried.
    timeout: Duration,
    /// Where latencies and errors are counted.
    metrics: Arc<Metrics>,
    /// Upstreams that failed to answer, and until when they are tried last.
    down: Mutex<HashMap<SocketAddr, Instant>>,
    in_flight: tokio::sync::Semaphore,
}

impl NetForwarder {
    /// A forwarder allowing `timeout` to each upstream and `max_in_flight`
    /// questions at once (beyond: SERVFAIL at once).
    pub fn new(timeout: Duration, max_in_flight: usize, metrics: Arc<Metrics>) -> Self {
        NetForwarder {
            timeout,
            metrics,
            down: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(max_in_flight),
        }
    }

    fn mark(&self, up: SocketAddr, reachable: bool) {
        let mut down = self.down.lock().expect("down lock");
        if reachable {
            down.remove(&up);
        } else {
            down.insert(up, Instant::now() + PENALTY);
        }
    }
}

/// The order to try `upstreams` in: the document's, except that those down
/// (until a time after `now`) come last, in the document's order too.
pub fn order(
    upstreams: &[SocketAddr],
    down: &HashMap<SocketAddr, Instant>,
    now: Instant,
) -> Vec<SocketAddr> {
    let is_down = |u: &SocketAddr| down.get(u).is_some_and(|until| *until > now);
    let (mut up, dead): (Vec<_>, Vec<_>) = upstreams.iter().partition(|u| !is_down(u));
    up.extend(dead);
    up
}

#[async_trait::async_trait]
impl Forwarder for NetForwarder {
    async fn forward(
        &self,
        upstreams: &[SocketAddr],
        query: &Query,
    ) -> Result<Message, ForwardError> {
        if upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            self.metrics.forwards_refused.inc();
            return Err(ForwardError::Busy);
        };
        let mut last = String::new();
        let ordered = order(
            upstreams,
            &self.down.lock().expect("down lock"),
            Instant::now(),
        );
        for up in &ordered {
            let t = Instant::now();
            let r = tokio::time::timeout(self.timeout, exchange(*up, query)).await;
            self.metrics
                .upstream_duration
                .observe(t.elapsed().as_secs_f64());
            self.mark(*up, matches!(r, Ok(Ok(_))));
            match r {
                // A server failure is the upstream's, not the name's: the
                // next upstream may do better.
                Ok(Ok(m))
                    if !matches!(
                        m.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
                    ) =>
                {
                    return Ok(m);
                }
                Ok(Ok(m)) => last = format!("{up}: {}", m.metadata.response_code),
                Ok(Err(e)) => last = format!("{up}: {e}"),
                Err(_) => last = format!("{up}: timed out after {:?}", self.timeout),
            }
            self.metrics.upstream_errors.inc();
            tracing::debug!("upstream failed: {last}");
        }
        Err(ForwardError::AllFailed(last))
    }
}

/// The query sent upstream: recursion desired, our EDNS size, a random ID.
fn request(query: &Query) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_PAYLOAD);
    m.set_edns(edns);
    m
}

/// Whether `resp` answers `req`.
fn matches(req: &Message, resp: &Message) -> bool {
    resp.metadata.id == req.metadata.id
        && resp.metadata.message_type == MessageType::Response
        && resp.queries.len() == 1
        && resp.queries[0].name() == req.queries[0].name()
        && resp.queries[0].query_type() == req.queries[0].query_type()
        && resp.queries[0].query_class() == req.queries[0].query_class()
}

/// One exchange with one upstream: UDP, then TCP if the answer was truncated.
pub async fn exchange(up: SocketAddr, query: &Query) -> std::io::Result<Message> {
    let req = request(query);
    let m = udp(up, &req).await?;
    if m.metadata.truncation {
        return tcp(up, &request(query)).await;
    }
    Ok(m)
}

fn bad(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

async fn udp(up: SocketAddr, req: &Message) -> std::io::Result<Message> {
    let local: SocketAddr = if up.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(&req.to_vec().map_err(bad)?).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Garbage or a stale answer is skipped, not fatal: keep listening
        // until the real one or the caller's timeout.
        match Message::from_vec(&buf[..n]) {
            Ok(m) if matches(req, &m) => return Ok(m),
            Ok(_) => tracing::debug!(%up, "mismatched response ignored"),
            Err(e) => tracing::debug!(%up, %e, "malformed response ignored"),
        }
    }
}

async fn tcp(up: SocketAddr, req: &Message) -> std::io::Result<Message> {
    let mut s = TcpStream::connect(up).await?;
    let body = req.to_vec().map_err(bad)?;
    let len = u16::try_from(body.len()).map_err(bad)?;
    let mut framed = Vec::with_capacity(body.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&body);
    s.write_all(&framed).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await?;
    let m = Message::from_vec(&buf).map_err(bad)?;
    if !matches(req, &m) {
        return Err(bad("response does not match the query"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_down_are_tried_last_until_their_penalty_ends() {
        let ups: Vec<SocketAddr> = ["10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let now = Instant::now();
        let mut down = HashMap::new();
        assert_eq!(order(&ups, &down, now), ups);
        down.insert(ups[0], now + PENALTY);
        down.insert(ups[1], now + PENALTY);
        assert_eq!(order(&ups, &down, now), vec![ups[2], ups[0], ups[1]]);
        assert_eq!(order(&ups, &down, now + PENALTY), ups, "penalty over");
    }
}
