//! One JSON-RPC 1.0 connection: request/response matching, `echo`
//! answering, keepalive probes and notification dispatch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::transport::{Framer, Reader, Target, Writer};

/// Runs in the reader task on a successful reply, before the caller is
/// woken, so that state derived from a reply (a monitor's initial contents)
/// is in place before any later notification is processed.
pub(crate) type OnReply = Box<dyn FnOnce(&Value) -> Result<()> + Send>;

/// Receives server notifications (`update2`, `update3`, `locked`, ...), in order.
pub(crate) type Notify = Arc<dyn Fn(&str, &Value) + Send + Sync>;

struct Pending {
    method: String,
    tx: oneshot::Sender<Result<Value>>,
    on_reply: Option<OnReply>,
}

struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    closed: watch::Sender<bool>,
    /// Milliseconds since `epoch` of the last message received.
    last_rx: AtomicU64,
    epoch: Instant,
}

impl Shared {
    fn close(&self) {
        self.closed.send_replace(true);
        // In-flight requests fail now rather than hang; they are never
        // re-sent, since the server may already have applied them.
        let drained: Vec<Pending> = self
            .pending
            .lock()
            .unwrap()
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in drained {
            let _ = p.tx.send(Err(Error::Disconnected));
        }
    }
}

/// A live connection. Dropping it closes the socket and stops its tasks.
pub(crate) struct Conn {
    /// Unique per process, to tell connections apart.
    pub(crate) id: u64,
    out: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.close();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Conn {
    pub(crate) async fn connect(
        target: &Target,
        notify: Notify,
        probe: Option<Duration>,
    ) -> std::io::Result<Arc<Conn>> {
        let (reader, writer) = target.connect().await?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: watch::channel(false).0,
            last_rx: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let (out, out_rx) = mpsc::unbounded_channel();
        let mut tasks = vec![
            tokio::spawn(write_loop(writer, out_rx, shared.clone())),
            tokio::spawn(read_loop(reader, out.clone(), shared.clone(), notify)),
        ];
        let conn_probe = probe.map(|p| (p, out.clone(), shared.clone()));
        if let Some((interval, out, shared)) = conn_probe {
            tasks.push(tokio::spawn(probe_loop(interval, out, shared)));
        }
        static IDS: AtomicU64 = AtomicU64::new(1);
        Ok(Arc::new(Conn {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            out,
            shared,
            tasks,
        }))
    }

    /// Send a request and wait for its reply, at most `timeout`.
    ///
    /// If the reply has not arrived when this future is dropped or times
    /// out, a `transact` is cancelled on the server (RFC 7047 §4.1.4), so a
    /// transaction blocked in a `wait` is not applied after its caller gave up.
    pub(crate) async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        on_reply: Option<OnReply>,
    ) -> Result<Value> {
        let (id, rx) = send_request(&self.out, &self.shared, method, params, on_reply)?;
        let mut guard = CancelOnDrop {
            conn: self,
            id,
            armed: method == "transact",
        };
        let r = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => {
                guard.armed = false;
                r
            }
            Ok(Err(_)) => {
                guard.armed = false;
                Err(Error::Disconnected)
            }
            Err(_) => Err(Error::Timeout {
                method: method.to_string(),
                timeout,
            }),
        };
        drop(guard);
        r
    }

    /// Send a JSON-RPC notification (no reply expected).
    pub(crate) fn notify(&self, method: &str, params: Value) -> Result<()> {
        let bytes = serde_json::to_vec(&json!({"id": null, "method": method, "params": params}))
            .map_err(|e| Error::Protocol(e.to_string()))?;
        self.out.send(bytes).map_err(|_| Error::Disconnected)
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Resolves once the connection is closed, for whatever reason.
    pub(crate) async fn closed(&self) {
        wait_closed(&mut self.shared.closed.subscribe()).await;
    }

    pub(crate) fn close(&self) {
        self.shared.close();
    }
}

struct CancelOnDrop<'a> {
    conn: &'a Conn,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self
            .conn
            .shared
            .pending
            .lock()
            .unwrap()
            .remove(&self.id)
            .is_some()
            && self.armed
        {
            let _ = self.conn.notify("cancel", json!([self.id]));
        }
    }
}

async fn wait_closed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

fn send_request(
    out: &mpsc::UnboundedSender<Vec<u8>>,
    shared: &Shared,
    method: &str,
    params: Value,
    on_reply: Option<OnReply>,
) -> Result<(u64, oneshot::Receiver<Result<Value>>)> {
    if *shared.closed.borrow() {
        return Err(Error::Disconnected);
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    shared.pending.lock().unwrap().insert(
        id,
        Pending {
            method: method.to_string(),
            tx,
            on_reply,
        },
    );
    let msg = serde_json::to_vec(&json!({"id": id, "method": method, "params": params}))
        .map_err(|e| Error::Protocol(e.to_string()))?;
    if out.send(msg).is_err() {
        shared.pending.lock().unwrap().remove(&id);
        return Err(Error::Disconnected);
    }
    Ok((id, rx))
}

async fn write_loop(mut w: Writer, mut rx: mpsc::UnboundedReceiver<Vec<u8>>, shared: Arc<Shared>) {
    let mut closed = shared.closed.subscribe();
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(mut msg) = msg else { break };
                // Coalesce whatever is queued into one write.
                while let Ok(more) = rx.try_recv() {
                    msg.extend_from_slice(&more);
                }
                if let Err(e) = w.write_all(&msg).await {
                    tracing::debug!(error = %e, "OVSDB write failed");
                    break;
                }
            }
            _ = wait_closed(&mut closed) => break,
        }
    }
    shared.close();
    let _ = w.shutdown().await;
}

async fn read_loop(
    mut r: Reader,
    out: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    notify: Notify,
) {
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut closed = shared.closed.subscribe();
    'outer: loop {
        let n = tokio::select! {
            n = r.read(&mut buf) => n,
            _ = wait_closed(&mut closed) => break,
        };
        match n {
            Ok(0) => break,
            Ok(n) => framer.push(&buf[..n]),
            Err(e) => {
                tracing::debug!(error = %e, "OVSDB read failed");
                break;
            }
        }
        shared
            .last_rx
            .store(shared.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        loop {
            match framer.next_message() {
                Ok(Some(msg)) => {
                    if let Err(e) = dispatch(msg, &out, &shared, &notify) {
                        tracing::warn!(error = %e, "dropping OVSDB connection");
                        break 'outer;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "dropping OVSDB connection");
                    break 'outer;
                }
            }
        }
    }
    shared.close();
}

fn dispatch(
    msg: Value,
    out: &mpsc::UnboundedSender<Vec<u8>>,
    shared: &Shared,
    notify: &Notify,
) -> Result<()> {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    if let Some(method) = msg.get("method").and_then(Value::as_str) {
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        if method == "echo" && !id.is_null() {
            let reply = json!({"id": id, "result": params, "error": null});
            let _ = out.send(serde_json::to_vec(&reply).unwrap_or_default());
        } else if id.is_null() {
            notify(method, &params);
        } else {
            let reply = json!({"id": id, "result": null, "error": {"error": "unknown method"}});
            let _ = out.send(serde_json::to_vec(&reply).unwrap_or_default());
        }
        return Ok(());
    }
    let Some(id) = id.as_u64() else {
        return Err(Error::Protocol(format!(
            "reply without a request id: {msg}"
        )));
    };
    let Some(p) = shared.pending.lock().unwrap().remove(&id) else {
        // A reply to a request that already timed out.
        return Ok(());
    };
    let result = match msg.get("error") {
        Some(err) if !err.is_null() => Err(Error::from_rpc(&p.method, err)),
        _ => {
            let result = msg.get("result").cloned().unwrap_or(Value::Null);
            match p.on_reply {
                Some(f) => f(&result).map(|()| result),
                None => Ok(result),
            }
        }
    };
    let _ = p.tx.send(result);
    Ok(())
}

/// Inactivity probe: like ovsdb-server's own, an `echo` is sent only after
/// `interval` without traffic, and a connection that cannot answer it within
/// another `interval` is dropped so reconnection can start.
async fn probe_loop(interval: Duration, out: mpsc::UnboundedSender<Vec<u8>>, shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(interval).await;
        let idle =
            shared.epoch.elapsed().as_millis() as u64 - shared.last_rx.load(Ordering::Relaxed);
        if idle < interval.as_millis() as u64 {
            continue;
        }
        let Ok((id, rx)) = send_request(&out, &shared, "echo", json!(["keepalive"]), None) else {
            return;
        };
        match tokio::time::timeout(interval, rx).await {
            Ok(Ok(Ok(_))) => {}
            Ok(_) => return,
            Err(_) => {
                shared.pending.lock().unwrap().remove(&id);
                tracing::warn!("OVSDB server did not answer echo; closing connection");
                shared.close();
                return;
            }
        }
    }
}
