//! The hickory-server wiring: requests in, [`Answerer`] answers out, with the
//! framing rules of the wire (EDNS, truncation over UDP).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use crate::answer::{Answer, Answerer, Forwarder};
use crate::metrics::{Metrics, TransportLabel};

/// The largest UDP response sent, whatever a client advertises (the DNS flag
/// day 2020 value). A larger answer goes out truncated (TC) and the client
/// retries over TCP.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;

/// The request handler.
pub struct Handler<F: Forwarder> {
    /// Answers.
    pub answerer: Arc<Answerer<F>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Cap of UDP responses, see [`DEFAULT_MAX_UDP_PAYLOAD`].
    pub max_udp_payload: u16,
}

#[async_trait::async_trait]
impl<F: Forwarder> RequestHandler for Handler<F> {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let transport = match request.protocol() {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            _ => "other",
        };
        self.metrics
            .queries
            .get_or_create(&TransportLabel { transport })
            .inc();

        // EDNS: answer in kind. The payload size of the response OPT is what
        // hickory truncates a UDP response at: the client's size, at least
        // 512 (RFC 6891 §6.2.5), at most ours.
        let edns = request.edns.as_ref().map(|e| {
            let mut r = Edns::new();
            r.set_max_payload(e.max_payload().clamp(512, self.max_udp_payload.max(512)));
            r
        });
        let answer = if request.metadata.op_code != OpCode::Query {
            Answer::code(ResponseCode::NotImp)
        } else if request.queries.queries().len() != 1 {
            Answer::code(ResponseCode::FormErr)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Answer::code(ResponseCode::BADVERS)
        } else {
            self.answerer
                .answer(request.queries.queries()[0].original())
                .await
                .0
        };

        let mut md = Metadata::response_from_request(&request.metadata);
        md.authoritative = answer.authoritative;
        md.recursion_available = true;
        md.response_code = answer.rcode;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let response = builder.build(
            md,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => {
                self.metrics.response(info.response_code);
                info
            }
            Err(e) => {
                tracing::warn!(%e, "sending a response");
                md.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: md,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// A UDP socket and a TCP listener on one address. Port 0 picks a port free
/// for both (tests, benchmarks).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?));
    }
    let mut last = None;
    for _ in 0..32 {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried"))
}

/// Idle TCP connections are closed after this.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// A server on the sockets.
pub fn server<F: Forwarder>(
    handler: Handler<F>,
    udp: UdpSocket,
    tcp: TcpListener,
) -> hickory_server::Server<Handler<F>> {
    let mut s = hickory_server::Server::new(handler);
    s.register_socket(udp);
    s.register_listener(tcp, TCP_TIMEOUT, 64);
    s
}
