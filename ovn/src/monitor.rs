//! Monitor caches fed by `monitor_cond_since` / `update3` (and `update2`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::client::Client;
use crate::datum;
use crate::error::{Error, Result};
use crate::ops::Cond;
use crate::schema::DatabaseSchema;
use crate::table::{Row, Table};

/// What to monitor in one table: all columns unless narrowed, all rows
/// unless a condition is given (`monitor_cond`).
#[derive(Clone, Debug)]
pub struct MonitorRequest {
    /// Table name.
    pub table: String,
    /// Columns to monitor; `None` = all.
    pub columns: Option<Vec<String>>,
    /// Rows to monitor (`where` clauses, ANDed); `None` = all.
    pub conditions: Option<Vec<Cond>>,
}

impl MonitorRequest {
    /// Every row and column of `table`.
    pub fn table(table: &str) -> Self {
        MonitorRequest {
            table: table.to_string(),
            columns: None,
            conditions: None,
        }
    }
    /// Every row and column of a typed table.
    pub fn of<T: Table>() -> Self {
        Self::table(T::TABLE)
    }
    /// Monitor only these columns.
    pub fn columns(mut self, columns: &[&str]) -> Self {
        self.columns = Some(columns.iter().map(|c| c.to_string()).collect());
        self
    }
    /// Monitor only rows matching all `conditions`.
    pub fn conditions(mut self, conditions: Vec<Cond>) -> Self {
        self.conditions = Some(conditions);
        self
    }

    fn to_json(&self) -> Value {
        let mut r = json!({});
        if let Some(c) = &self.columns {
            r["columns"] = json!(c);
        }
        if let Some(w) = &self.conditions {
            r["where"] = Value::Array(w.iter().map(|c| c.0.clone()).collect());
        }
        json!([r])
    }
}

/// Table name -> `_uuid` -> row (with `_uuid` as a column).
pub type Tables = HashMap<String, HashMap<String, Row>>;

#[derive(Default)]
struct Data {
    tables: Tables,
    last_txn_id: Option<String>,
}

pub(crate) struct MonitorState {
    pub(crate) id: String,
    pub(crate) db: String,
    schema: Arc<DatabaseSchema>,
    requests: Vec<MonitorRequest>,
    data: RwLock<Data>,
    generation: watch::Sender<u64>,
    full_loads: AtomicU64,
    resumes: AtomicU64,
    /// The connection this monitor was last established on.
    pub(crate) subscribed_on: AtomicU64,
}

impl MonitorState {
    pub(crate) fn new(
        id: String,
        db: String,
        schema: Arc<DatabaseSchema>,
        requests: Vec<MonitorRequest>,
    ) -> Self {
        let mut data = Data::default();
        for r in &requests {
            data.tables.entry(r.table.clone()).or_default();
        }
        MonitorState {
            id,
            db,
            schema,
            requests,
            data: RwLock::new(data),
            generation: watch::channel(0).0,
            full_loads: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            subscribed_on: AtomicU64::new(0),
        }
    }

    /// Params of `monitor_cond_since`, resuming from the last transaction seen.
    pub(crate) fn since_params(&self) -> Value {
        let requests: serde_json::Map<String, Value> = self
            .requests
            .iter()
            .map(|r| (r.table.clone(), r.to_json()))
            .collect();
        // The all-zero ID asks for everything (the first load).
        let last = self
            .data
            .read()
            .unwrap()
            .last_txn_id
            .clone()
            .unwrap_or_else(|| crate::Uuid::NIL.to_string());
        json!([self.db, self.id, requests, last])
    }

    /// Apply a `monitor_cond_since` reply: `[found, last-txn-id, updates]`.
    pub(crate) fn apply_since_reply(&self, reply: &Value) -> Result<()> {
        let (found, last, updates) = match reply.as_array().map(Vec::as_slice) {
            Some([f, l, u]) => (
                f.as_bool().unwrap_or(false),
                l.as_str().map(str::to_string),
                u,
            ),
            _ => {
                return Err(Error::Protocol(format!(
                    "bad monitor_cond_since reply: {reply}"
                )));
            }
        };
        let mut d = self.data.write().unwrap();
        if found {
            self.resumes.fetch_add(1, Ordering::Relaxed);
        } else {
            // The server could not resume from our transaction: what it sends
            // is the full contents, so forget everything we had.
            self.full_loads.fetch_add(1, Ordering::Relaxed);
            for t in d.tables.values_mut() {
                t.clear();
            }
        }
        self.apply(&mut d, updates)?;
        d.last_txn_id = last;
        drop(d);
        self.bump();
        Ok(())
    }

    /// Apply an `update3` (`[id, last-txn-id, updates]`) or `update2`
    /// (`[id, updates]`) notification addressed to this monitor.
    pub(crate) fn apply_notification(&self, method: &str, params: &[Value]) -> Result<()> {
        let mut d = self.data.write().unwrap();
        match (method, params) {
            ("update3", [_, last, updates]) => {
                self.apply(&mut d, updates)?;
                d.last_txn_id = last.as_str().map(str::to_string);
            }
            ("update2", [_, updates]) => self.apply(&mut d, updates)?,
            _ => return Err(Error::Protocol(format!("unexpected {method} notification"))),
        }
        drop(d);
        self.bump();
        Ok(())
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The columns monitored in `table`: the requested ones, else all.
    fn columns_of(&self, table: &str) -> Vec<&String> {
        match self
            .requests
            .iter()
            .find(|r| r.table == table)
            .and_then(|r| r.columns.as_ref())
        {
            Some(cols) => cols.iter().collect(),
            None => self
                .schema
                .tables
                .get(table)
                .map(|t| t.columns.keys().filter(|c| !c.starts_with('_')).collect())
                .unwrap_or_default(),
        }
    }

    /// The default datum of every monitored column of `table`.
    fn defaults(&self, table: &str) -> Vec<(String, Value)> {
        let Some(ts) = self.schema.tables.get(table) else {
            return Vec::new();
        };
        self.columns_of(table)
            .into_iter()
            .filter_map(|c| Some((c.clone(), datum::default_datum(ts.columns.get(c)?))))
            .collect()
    }

    /// Apply `table-updates2` (ovsdb-server(7)).
    fn apply(&self, d: &mut Data, updates: &Value) -> Result<()> {
        let Some(updates) = updates.as_object() else {
            return Ok(());
        };
        for (table, rows) in updates {
            let tschema = self.schema.tables.get(table);
            let cache = d.tables.entry(table.clone()).or_default();
            let Some(rows) = rows.as_object() else {
                continue;
            };
            for (uuid, change) in rows {
                let Some((kind, body)) = change.as_object().and_then(|o| o.iter().next()) else {
                    continue;
                };
                match kind.as_str() {
                    "initial" | "insert" => {
                        // Like update2 itself, the cache leaves out columns at
                        // their default value: most are, and that keeps it small.
                        let mut row = body.as_object().cloned().unwrap_or_default();
                        row.insert("_uuid".into(), json!(["uuid", uuid]));
                        cache.insert(uuid.clone(), row);
                    }
                    "modify" => {
                        let Some(row) = cache.get_mut(uuid) else {
                            return Err(Error::Protocol(format!(
                                "modify of unknown row {table} {uuid}"
                            )));
                        };
                        for (col, diff) in body.as_object().into_iter().flatten() {
                            let Some(ty) = tschema.and_then(|t| t.columns.get(col)) else {
                                row.insert(col.clone(), diff.clone());
                                continue;
                            };
                            let default = datum::default_datum(ty);
                            let new = datum::apply_diff(row.get(col).unwrap_or(&default), diff, ty);
                            if new == default {
                                row.remove(col);
                            } else {
                                row.insert(col.clone(), new);
                            }
                        }
                    }
                    "delete" => {
                        cache.remove(uuid);
                    }
                    other => return Err(Error::Protocol(format!("unknown update2 kind {other}"))),
                }
            }
        }
        Ok(())
    }
}

fn with_defaults(row: &Row, defaults: &[(String, Value)]) -> Row {
    let mut r = row.clone();
    for (c, d) in defaults {
        if !r.contains_key(c) {
            r.insert(c.clone(), d.clone());
        }
    }
    r
}

/// A live, self-healing replica of some tables. It follows reconnections
/// (resuming with `monitor_cond_since` from the last transaction seen) until
/// [`Monitor::cancel`] or until the client and all monitors are dropped.
pub struct Monitor {
    pub(crate) state: Arc<MonitorState>,
    pub(crate) client: Client,
}

impl Monitor {
    /// Run `f` over the cached tables (read-locked; keep it short). Rows
    /// there hold only the columns that differ from their default value;
    /// [`Monitor::rows`] and [`Monitor::get`] return complete rows.
    pub fn with<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(&self.state.data.read().unwrap().tables)
    }

    /// A copy of every cached row of `table`, with every monitored column.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        let defaults = self.state.defaults(table);
        self.with(|t| {
            t.get(table)
                .map(|m| m.values().map(|r| with_defaults(r, &defaults)).collect())
                .unwrap_or_default()
        })
    }

    /// One cached row by `_uuid`, with every monitored column.
    pub fn row(&self, table: &str, uuid: &str) -> Option<Row> {
        let defaults = self.state.defaults(table);
        self.with(|t| t.get(table)?.get(uuid).map(|r| with_defaults(r, &defaults)))
    }

    /// Every cached row of a typed table.
    pub fn get<T: Table>(&self) -> Result<Vec<T>> {
        self.with(|t| {
            t.get(T::TABLE)
                .map(|m| m.values().map(T::from_row).collect())
                .unwrap_or(Ok(Vec::new()))
        })
    }

    /// Number of cached rows of `table`.
    pub fn len(&self, table: &str) -> usize {
        self.with(|t| t.get(table).map_or(0, HashMap::len))
    }

    /// The last transaction ID the cache reflects (clustered databases only).
    pub fn last_txn_id(&self) -> Option<String> {
        self.state.data.read().unwrap().last_txn_id.clone()
    }

    /// How often the server sent the full contents (first load, or a resume
    /// it could not serve from its history).
    pub fn full_loads(&self) -> u64 {
        self.state.full_loads.load(Ordering::Relaxed)
    }

    /// How often the cache was resumed from its last transaction ID with
    /// only the missed changes sent.
    pub fn resumes(&self) -> u64 {
        self.state.resumes.load(Ordering::Relaxed)
    }

    /// Wait until `pred` holds over the cache, re-checking after every update.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Tables) -> bool,
    ) -> Result<()> {
        let mut rx = self.state.generation.subscribe();
        let fut = async {
            loop {
                if self.with(&mut pred) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Error::Timeout {
                method: "monitor wait".into(),
                timeout,
            })
    }

    /// Stop the monitor on the server (`monitor_cancel`) and drop the cache.
    pub async fn cancel(self) -> Result<()> {
        self.client.unregister_monitor(&self.state.id);
        self.client
            .call("monitor_cancel", json!([self.state.id]))
            .await
            .map(|_| ())
    }
}

impl Drop for Monitor {
    /// A dropped monitor stops being fed at once and is cancelled on the
    /// server in the background, so it costs nothing afterwards.
    fn drop(&mut self) {
        if self.client.unregister_monitor(&self.state.id)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (client, id) = (self.client.clone(), self.state.id.clone());
            rt.spawn(async move {
                let _ = client.call("monitor_cancel", json!([id])).await;
            });
        }
    }
}
