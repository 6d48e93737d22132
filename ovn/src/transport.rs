//! Byte streams to an OVSDB server and the JSON message framing on top.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::error::{Error, Result};

pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Where the server listens, parsed from OVS's target syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Unix(String),
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix:{p}"),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl Target {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        if let Some(p) = s.strip_prefix("unix:") {
            if !p.is_empty() {
                return Ok(Target::Unix(p.to_string()));
            }
        } else if let Some(hp) = s.strip_prefix("tcp:") {
            // `tcp:[v6addr]:port` keeps its brackets, which tokio accepts.
            if hp
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Ok(Target::Tcp(hp.to_string()));
            }
        }
        Err(Error::InvalidTarget(s.to_string()))
    }

    pub(crate) async fn connect(&self) -> io::Result<(Reader, Writer)> {
        match self {
            Target::Unix(p) => {
                let (r, w) = UnixStream::connect(p).await?.into_split();
                Ok((Box::new(r), Box::new(w)))
            }
            Target::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                // Transactions are small request/response exchanges: Nagle only adds latency.
                s.set_nodelay(true)?;
                let (r, w) = s.into_split();
                Ok((Box::new(r), Box::new(w)))
            }
        }
    }
}

/// Splits a byte stream into JSON texts. OVSDB sends objects back to back
/// without delimiters, so we track brace depth outside strings; each
/// complete object is handed to serde_json once.
#[derive(Default)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned, with the scan state at that point.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escape: bool,
    start: Option<usize>,
}

impl Framer {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if the buffer holds one.
    pub(crate) fn next_message(&mut self) -> Result<Option<serde_json::Value>> {
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => {
                        if self.depth == 0 {
                            self.start = Some(i);
                        }
                        self.depth += 1;
                    }
                    b'}' | b']' => {
                        self.depth = self
                            .depth
                            .checked_sub(1)
                            .ok_or_else(|| Error::Protocol("unbalanced JSON from server".into()))?;
                        if self.depth == 0 {
                            let start = self.start.take().unwrap_or(0);
                            let msg = serde_json::from_slice(&self.buf[start..=i])
                                .map_err(|e| Error::Protocol(format!("bad JSON from server: {e}")));
                            self.buf.drain(..=i);
                            self.scanned = 0;
                            // A large reply (a monitor's initial contents) must not
                            // pin its buffer for the life of the connection.
                            if self.buf.capacity() > 1 << 20 && self.buf.len() < 1 << 16 {
                                self.buf.shrink_to(1 << 16);
                            }
                            return msg.map(Some);
                        }
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    _ if self.depth == 0 => {
                        return Err(Error::Protocol(format!(
                            "unexpected byte {b:#x} between JSON messages"
                        )));
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.scanned = i;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_concatenated_messages() {
        let mut f = Framer::default();
        f.push(br#"{"a":"}{\"x"} {"b":[1,"#);
        assert_eq!(f.next_message().unwrap().unwrap()["a"], "}{\"x");
        assert!(f.next_message().unwrap().is_none());
        f.push(b"2]}");
        assert_eq!(f.next_message().unwrap().unwrap()["b"][1], 2);
        assert!(f.next_message().unwrap().is_none());
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("unix:/a/b").unwrap(),
            Target::Unix("/a/b".into())
        );
        assert_eq!(
            Target::parse("tcp:127.0.0.1:6641").unwrap(),
            Target::Tcp("127.0.0.1:6641".into())
        );
        assert!(Target::parse("ssl:1.2.3.4:5").is_err());
        assert!(Target::parse("tcp:host").is_err());
    }
}
