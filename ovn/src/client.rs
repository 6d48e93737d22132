//! The reconnecting OVSDB client.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::monitor::{Monitor, MonitorRequest, MonitorState};
use crate::ops::{Txn, TxnResult};
use crate::rpc::{Conn, Notify};
use crate::schema::DatabaseSchema;
use crate::transport::Target;

/// Tunables of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long a request may wait for a connection plus its reply.
    pub request_timeout: Duration,
    /// Send `echo` after this much silence and drop the connection if the
    /// server does not answer within the same time; `None` disables probes.
    pub inactivity_probe: Option<Duration>,
    /// First reconnection delay; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
    /// A compiled-in model the server must stay compatible with: checked at
    /// connect and again after every reconnection (the server may have been
    /// upgraded meanwhile); while it does not match, requests fail with
    /// [`Error::SchemaMismatch`].
    pub required_schema: Option<Arc<DatabaseSchema>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(30),
            inactivity_probe: Some(Duration::from_secs(5)),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(4),
            required_schema: None,
        }
    }
}

type Monitors = Arc<Mutex<BTreeMap<String, Arc<MonitorState>>>>;

/// How one `transact` ended, as told to a [`TransactObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactOutcome {
    /// The server committed it.
    Committed,
    /// It failed: an operation's error, the connection, a timeout.
    Failed,
    /// Its future was dropped before the reply (cancelled on the server).
    Cancelled,
}

/// Told, once per [`Client::transact`], how long it took and how it ended
/// (e.g. to export a latency histogram; the client itself keeps no metrics).
pub type TransactObserver = Arc<dyn Fn(Duration, TransactOutcome) + Send + Sync>;

/// Reports one transaction to the observer when dropped, however it ended.
struct Observed {
    observer: Option<TransactObserver>,
    started: std::time::Instant,
    outcome: TransactOutcome,
}

impl Drop for Observed {
    fn drop(&mut self) {
        if let Some(f) = self.observer.take() {
            f(self.started.elapsed(), self.outcome);
        }
    }
}

struct Inner {
    /// The remotes (several: members of one clustered database).
    targets: Vec<Target>,
    /// Index in `targets` of the remote of the current connection.
    current: AtomicUsize,
    opts: ClientOptions,
    conn: watch::Sender<Option<Arc<Conn>>>,
    monitors: Monitors,
    next_monitor: AtomicU64,
    schemas: Mutex<HashMap<String, Arc<DatabaseSchema>>>,
    connects: AtomicU64,
    /// Why the last reconnection was refused, if it was (db, reason).
    refused: Mutex<Option<(String, String)>>,
    /// Told about every `transact`.
    observer: Mutex<Option<TransactObserver>>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection to one OVSDB server that reconnects by itself. Cheap to clone;
/// the connection closes when the last clone (and last [`Monitor`]) is dropped.
///
/// Requests are sent once: if the connection drops while one is in flight,
/// it fails with [`Error::Disconnected`] (the caller decides whether to retry;
/// an idempotent reconciler simply runs again). Requests made while
/// reconnecting wait for the new connection up to the request timeout.
/// A `transact` whose future is dropped, or that times out, is cancelled
/// on the server with `cancel`.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _supervisor: Arc<AbortOnDrop>,
}

fn notify_handler(monitors: Monitors) -> Notify {
    Arc::new(move |method: &str, params: &Value| {
        if method != "update2" && method != "update3" {
            tracing::debug!(method, "ignoring OVSDB notification");
            return;
        }
        let Some(p) = params.as_array() else { return };
        let Some(id) = p.first().and_then(Value::as_str) else {
            return;
        };
        let state = monitors.lock().unwrap().get(id).cloned();
        if let Some(state) = state
            && let Err(e) = state.apply_notification(method, p)
        {
            tracing::error!(error = %e, monitor = id, "cannot apply monitor update");
        }
    })
}

impl Client {
    /// Connect to `unix:<path>` or `tcp:<host>:<port>` with default options;
    /// several remotes (the members of a clustered database) are separated
    /// by commas, and the client keeps to their leader (see `remotes`).
    pub async fn connect(target: &str) -> Result<Client> {
        Self::connect_with(target, ClientOptions::default()).await
    }

    /// Connect; the first connection must succeed, later drops are healed.
    pub async fn connect_with(target: &str, opts: ClientOptions) -> Result<Client> {
        let targets = crate::remotes::parse(target)?;
        let monitors: Monitors = Arc::default();
        let (conn, current) = crate::remotes::connect_round(
            &targets,
            0,
            &notify_handler(monitors.clone()),
            opts.inactivity_probe,
            opts.request_timeout,
            true,
        )
        .await
        .map_err(|why| Error::Io {
            target: target.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, why),
        })?;
        let inner = Arc::new(Inner {
            targets,
            current: AtomicUsize::new(current),
            opts,
            conn: watch::channel(Some(conn)).0,
            monitors,
            next_monitor: AtomicU64::new(1),
            schemas: Mutex::default(),
            connects: AtomicU64::new(1),
            refused: Mutex::new(None),
            observer: Mutex::new(None),
        });
        let sup = tokio::spawn(supervise(inner.clone()));
        let client = Client {
            inner,
            _supervisor: Arc::new(AbortOnDrop(sup)),
        };
        if let Some(model) = &client.inner.opts.required_schema {
            client.check_schema(model).await?;
        }
        Ok(client)
    }

    /// The remote of the current (or last) connection.
    pub fn remote(&self) -> String {
        self.inner.targets[self.inner.current.load(Ordering::Relaxed)].to_string()
    }

    /// Number of successful connections so far (1 + reconnections).
    pub fn connections(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// True while a connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner
            .conn
            .borrow()
            .as_ref()
            .is_some_and(|c| !c.is_closed())
    }

    /// Drop the current connection (a reconnection follows), e.g. after
    /// learning out of band that the server moved.
    pub fn reconnect(&self) {
        if let Some(c) = self.inner.conn.borrow().as_ref() {
            c.close();
        }
    }

    async fn conn(&self, deadline: tokio::time::Instant, method: &str) -> Result<Arc<Conn>> {
        let mut rx = self.inner.conn.subscribe();
        let wait = rx.wait_for(|c| c.as_ref().is_some_and(|c| !c.is_closed()));
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(c)) => Ok(c.clone().expect("checked above")),
            Ok(Err(_)) => Err(Error::Disconnected),
            Err(_) => match self.inner.refused.lock().unwrap().clone() {
                Some((db, reason)) => Err(Error::SchemaMismatch { db, reason }),
                None => Err(Error::Timeout {
                    method: method.into(),
                    timeout: self.inner.opts.request_timeout,
                }),
            },
        }
    }

    /// Send any JSON-RPC request and return its `result`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + self.inner.opts.request_timeout;
        let conn = self.conn(deadline, method).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        conn.request(method, params, left, None).await
    }

    /// `echo`: a round trip that proves the server is responsive.
    pub async fn echo(&self) -> Result<()> {
        self.call("echo", json!(["ping"])).await.map(|_| ())
    }

    /// `list_dbs`.
    pub async fn list_dbs(&self) -> Result<Vec<String>> {
        let v = self.call("list_dbs", json!([])).await?;
        serde_json::from_value(v).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// `get_schema`, cached per database.
    pub async fn get_schema(&self, db: &str) -> Result<Arc<DatabaseSchema>> {
        if let Some(s) = self.inner.schemas.lock().unwrap().get(db) {
            return Ok(s.clone());
        }
        let v = self.call("get_schema", json!([db])).await?;
        let s = Arc::new(DatabaseSchema::from_json(&v)?);
        self.inner
            .schemas
            .lock()
            .unwrap()
            .insert(db.to_string(), s.clone());
        Ok(s)
    }

    /// Check the server's schema for `model.name` against a compiled-in model.
    pub async fn check_schema(&self, model: &DatabaseSchema) -> Result<()> {
        let dbs = self.list_dbs().await?;
        if !dbs.contains(&model.name) {
            return Err(Error::SchemaMismatch {
                db: model.name.clone(),
                reason: format!("server serves only {dbs:?}"),
            });
        }
        self.get_schema(&model.name).await?.check_compatible(model)
    }

    /// Tells `observer` about every later `transact` of this client and its
    /// clones (replacing any observer set before).
    pub fn observe_transactions(&self, observer: TransactObserver) {
        *self.inner.observer.lock().unwrap() = Some(observer);
    }

    /// `transact`: all operations succeed or none is applied.
    pub async fn transact(&self, txn: Txn) -> Result<TxnResult> {
        let mut observed = Observed {
            observer: self.inner.observer.lock().unwrap().clone(),
            started: std::time::Instant::now(),
            outcome: TransactOutcome::Cancelled,
        };
        let (db, ops, names) = txn.into_parts();
        let mut params = Vec::with_capacity(ops.len() + 1);
        params.push(json!(db));
        params.extend(ops.iter().cloned());
        let result = match self.call("transact", Value::Array(params)).await {
            Ok(reply) => TxnResult::from_reply(&ops, reply, names),
            Err(e) => Err(e),
        };
        observed.outcome = if result.is_ok() {
            TransactOutcome::Committed
        } else {
            TransactOutcome::Failed
        };
        result
    }

    /// `lock`: true if granted now (otherwise the server queues the request).
    pub async fn lock(&self, id: &str) -> Result<bool> {
        let v = self.call("lock", json!([id])).await?;
        Ok(v.get("locked").and_then(Value::as_bool).unwrap_or(false))
    }

    /// `steal`: take the lock from whoever holds it.
    pub async fn steal(&self, id: &str) -> Result<()> {
        self.call("steal", json!([id])).await.map(|_| ())
    }

    /// `unlock`.
    pub async fn unlock(&self, id: &str) -> Result<()> {
        self.call("unlock", json!([id])).await.map(|_| ())
    }

    /// Start a monitor over `requests` in `db` and wait for its initial contents.
    pub async fn monitor(&self, db: &str, requests: Vec<MonitorRequest>) -> Result<Monitor> {
        let schema = self.get_schema(db).await?;
        for r in &requests {
            if !schema.tables.contains_key(&r.table) {
                return Err(Error::Invalid(format!("{db} has no table {}", r.table)));
            }
        }
        let id = format!(
            "m{}",
            self.inner.next_monitor.fetch_add(1, Ordering::Relaxed)
        );
        let state = Arc::new(MonitorState::new(
            id.clone(),
            db.to_string(),
            schema,
            requests,
        ));
        self.inner
            .monitors
            .lock()
            .unwrap()
            .insert(id.clone(), state.clone());
        let deadline = tokio::time::Instant::now() + self.inner.opts.request_timeout;
        let res = async {
            let conn = self.conn(deadline, "monitor_cond_since").await?;
            // A reconnection that raced with us may already have sent it
            // (it registers before publishing the connection).
            if state.subscribed_on.load(Ordering::Relaxed) == conn.id {
                return Ok(Value::Null);
            }
            let st = state.clone();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            conn.request(
                "monitor_cond_since",
                state.since_params(),
                left,
                Some(Box::new(move |r| st.apply_since_reply(r))),
            )
            .await?;
            state.subscribed_on.store(conn.id, Ordering::Relaxed);
            Ok(Value::Null)
        }
        .await;
        match res {
            // A drop during the initial load is healed by the reconnection,
            // which re-sends every registered monitor.
            Ok(_) | Err(Error::Disconnected) => Ok(Monitor {
                state,
                client: self.clone(),
            }),
            Err(e) => {
                self.unregister_monitor(&id);
                Err(e)
            }
        }
    }

    /// Forget a monitor; true if it was registered.
    pub(crate) fn unregister_monitor(&self, id: &str) -> bool {
        self.inner.monitors.lock().unwrap().remove(id).is_some()
    }
}

/// Waits for the connection to drop, then reconnects with exponential
/// backoff and re-establishes every monitor before publishing the new
/// connection, so callers see either the old cache or a resumed one.
async fn supervise(inner: Arc<Inner>) {
    loop {
        let Some(conn) = inner.conn.borrow().clone() else {
            return;
        };
        conn.closed().await;
        inner.conn.send_replace(None);
        drop(conn);
        let lost = inner.current.load(Ordering::Relaxed);
        tracing::warn!(remote = %inner.targets[lost], "OVSDB connection lost; reconnecting");
        inner.schemas.lock().unwrap().clear();
        let mut delay = inner.opts.backoff_min;
        // Start after the remote that failed (a killed leader is not tried
        // first); a round that finds no leader is followed by one that
        // settles for a follower.
        let mut start = (lost + 1) % inner.targets.len();
        let mut settle = false;
        loop {
            let notify = notify_handler(inner.monitors.clone());
            let round = crate::remotes::connect_round(
                &inner.targets,
                start,
                &notify,
                inner.opts.inactivity_probe,
                inner.opts.request_timeout,
                settle,
            )
            .await;
            match round {
                Ok((c, i)) => match resubscribe(&inner, &c).await {
                    Ok(()) => {
                        *inner.refused.lock().unwrap() = None;
                        inner.current.store(i, Ordering::Relaxed);
                        inner.connects.fetch_add(1, Ordering::Relaxed);
                        inner.conn.send_replace(Some(c));
                        tracing::info!(remote = %inner.targets[i], "OVSDB connection re-established");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "re-establishing the session failed");
                        if let Error::SchemaMismatch { db, reason } = &e {
                            *inner.refused.lock().unwrap() = Some((db.clone(), reason.clone()));
                        }
                        c.close();
                        start = (i + 1) % inner.targets.len();
                    }
                },
                Err(why) => {
                    tracing::debug!(%why, "reconnect round failed");
                    settle = !settle;
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(inner.opts.backoff_max);
        }
    }
}

async fn resubscribe(inner: &Inner, conn: &Conn) -> Result<()> {
    // A socket that accepts is not yet a server that answers (it may be
    // stopped, or still loading its database).
    let probe = inner
        .opts
        .inactivity_probe
        .unwrap_or(inner.opts.request_timeout);
    conn.request("echo", json!(["hello"]), probe, None).await?;
    if let Some(model) = &inner.opts.required_schema {
        let t = inner.opts.request_timeout;
        let dbs: Vec<String> =
            serde_json::from_value(conn.request("list_dbs", json!([]), t, None).await?)
                .unwrap_or_default();
        if !dbs.contains(&model.name) {
            return Err(Error::SchemaMismatch {
                db: model.name.clone(),
                reason: format!("server serves only {dbs:?}"),
            });
        }
        let s = DatabaseSchema::from_json(
            &conn
                .request("get_schema", json!([model.name]), t, None)
                .await?,
        )?;
        s.check_compatible(model)?;
    }
    let states: Vec<Arc<MonitorState>> = inner.monitors.lock().unwrap().values().cloned().collect();
    for st in states {
        let s = st.clone();
        conn.request(
            "monitor_cond_since",
            st.since_params(),
            inner.opts.request_timeout,
            Some(Box::new(move |r| s.apply_since_reply(r))),
        )
        .await?;
        st.subscribed_on.store(conn.id, Ordering::Relaxed);
    }
    Ok(())
}
