//! The `transact` operations of RFC 7047 §5.2 and a builder for transactions.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::datum::Uuid;
use crate::error::{Error, Result};
use crate::table::{Row, Table};

/// One clause of a `where`: `[column, function, value]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond(pub Value);

impl Cond {
    /// `column function value`, with `function` one of `<`, `<=`, `==`,
    /// `!=`, `>=`, `>`, `includes`, `excludes`.
    pub fn new(column: &str, function: &str, value: impl Into<Value>) -> Self {
        Cond(json!([column, function, value.into()]))
    }
    /// `column == value`.
    pub fn eq(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "==", value)
    }
    /// `column != value`.
    pub fn ne(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "!=", value)
    }
    /// `column` includes every element of `value`.
    pub fn includes(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "includes", value)
    }
    /// `column` includes no element of `value`.
    pub fn excludes(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "excludes", value)
    }
    /// The row whose `_uuid` is `uuid`.
    pub fn uuid(uuid: &Uuid) -> Self {
        Self::eq("_uuid", uuid.to_json())
    }
}

/// One mutation: `[column, mutator, value]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation(pub Value);

impl Mutation {
    /// `mutator` is one of `+=`, `-=`, `*=`, `/=`, `%=`, `insert`, `delete`.
    pub fn new(column: &str, mutator: &str, value: impl Into<Value>) -> Self {
        Mutation(json!([column, mutator, value.into()]))
    }
    /// Add elements (or map pairs) to a set (or map) column.
    pub fn insert(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "insert", value)
    }
    /// Remove elements (or keys, or pairs) from a set (or map) column.
    pub fn delete(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "delete", value)
    }
    /// `column += value`.
    pub fn add(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "+=", value)
    }
    /// `column -= value`.
    pub fn sub(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "-=", value)
    }
    /// `column *= value`.
    pub fn mul(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "*=", value)
    }
    /// `column /= value`.
    pub fn div(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "/=", value)
    }
    /// `column %= value`.
    pub fn rem(column: &str, value: impl Into<Value>) -> Self {
        Self::new(column, "%=", value)
    }
}

/// The `until` of a `wait` operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitUntil {
    /// Wait until the selected rows equal the given rows.
    Equal,
    /// Wait until the selected rows differ from the given rows.
    NotEqual,
}

fn is_empty_collection(v: &Value) -> bool {
    matches!(v.as_array().map(Vec::as_slice), Some([Value::String(t), Value::Array(items)]) if (t == "set" || t == "map") && items.is_empty())
}

fn conds(w: &[Cond]) -> Value {
    Value::Array(w.iter().map(|c| c.0.clone()).collect())
}

/// A transaction under construction. Every method appends one operation and
/// returns its index into [`TxnResult::results`]; inserts return the
/// [`Uuid::Named`] that later operations (and typed rows) can reference.
#[derive(Clone, Debug)]
pub struct Txn {
    db: String,
    ops: Vec<Value>,
    names: HashMap<String, usize>,
    next_name: u64,
}

impl Txn {
    /// An empty transaction on database `db`.
    pub fn new(db: impl Into<String>) -> Self {
        Txn {
            db: db.into(),
            ops: Vec::new(),
            names: HashMap::new(),
            next_name: 0,
        }
    }

    /// A transaction on OVN_Northbound.
    pub fn nb() -> Self {
        Self::new(crate::nb::SCHEMA_NAME)
    }

    /// The database this transaction is for.
    pub fn db(&self) -> &str {
        &self.db
    }
    /// Number of operations so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// True if no operation was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The operations as sent on the wire.
    pub fn ops(&self) -> &[Value] {
        &self.ops
    }

    fn push(&mut self, op: Value) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// A fresh uuid-name, unique within this transaction.
    pub fn fresh_name(&mut self) -> String {
        self.next_name += 1;
        // An unusual prefix keeps clear of names callers choose.
        format!("vpcnet_row{}", self.next_name)
    }

    /// `insert` with a generated `uuid-name`.
    pub fn insert(&mut self, table: &str, row: Row) -> Uuid {
        let name = self.fresh_name();
        self.insert_named(table, row, &name)
    }

    /// `insert` with the given `uuid-name`.
    pub fn insert_named(&mut self, table: &str, row: Row, uuid_name: &str) -> Uuid {
        let i =
            self.push(json!({"op": "insert", "table": table, "row": row, "uuid-name": uuid_name}));
        self.names.insert(uuid_name.to_string(), i);
        Uuid::Named(uuid_name.to_string())
    }

    /// Insert a typed row (its `uuid` is ignored). Empty sets and maps are
    /// left out: the server fills in defaults, and a smaller request is
    /// parsed faster.
    pub fn insert_row<T: Table>(&mut self, row: &T) -> Uuid {
        let mut r = row.to_row();
        r.retain(|_, v| !is_empty_collection(v));
        self.insert(T::TABLE, r)
    }

    /// `select`; `columns: None` selects all.
    pub fn select(&mut self, table: &str, w: &[Cond], columns: Option<&[&str]>) -> usize {
        let mut op = json!({"op": "select", "table": table, "where": conds(w)});
        if let Some(c) = columns {
            op["columns"] = json!(c);
        }
        self.push(op)
    }

    /// `select` every row of a typed table; decode with [`TxnResult::rows`].
    pub fn select_all<T: Table>(&mut self) -> usize {
        self.select(T::TABLE, &[], None)
    }

    /// `update` the rows matching `w` with the columns in `row`.
    pub fn update(&mut self, table: &str, w: &[Cond], row: Row) -> usize {
        self.push(json!({"op": "update", "table": table, "where": conds(w), "row": row}))
    }

    /// Update the given columns of a typed row, identified by its `uuid`.
    pub fn update_row<T: Table>(&mut self, row: &T, columns: &[&str]) -> usize {
        let mut full = row.to_row();
        full.retain(|k, _| columns.contains(&k.as_str()));
        self.update(T::TABLE, &[Cond::uuid(row.uuid())], full)
    }

    /// `mutate` the rows matching `w`.
    pub fn mutate(&mut self, table: &str, w: &[Cond], mutations: &[Mutation]) -> usize {
        let m: Vec<Value> = mutations.iter().map(|m| m.0.clone()).collect();
        self.push(json!({"op": "mutate", "table": table, "where": conds(w), "mutations": m}))
    }

    /// `delete` the rows matching `w`.
    pub fn delete(&mut self, table: &str, w: &[Cond]) -> usize {
        self.push(json!({"op": "delete", "table": table, "where": conds(w)}))
    }

    /// `wait` until the `columns` of the rows matching `w` are (or are not)
    /// exactly `rows`; `timeout_ms: Some(0)` fails at once instead of waiting.
    pub fn wait(
        &mut self,
        table: &str,
        w: &[Cond],
        columns: &[&str],
        until: WaitUntil,
        rows: Vec<Row>,
        timeout_ms: Option<u64>,
    ) -> usize {
        let mut op = json!({
            "op": "wait", "table": table, "where": conds(w), "columns": columns,
            "until": match until { WaitUntil::Equal => "==", WaitUntil::NotEqual => "!=" },
            "rows": rows,
        });
        if let Some(t) = timeout_ms {
            op["timeout"] = json!(t);
        }
        self.push(op)
    }

    /// `commit`: with `durable` the reply waits until the change is on disk.
    pub fn commit(&mut self, durable: bool) -> usize {
        self.push(json!({"op": "commit", "durable": durable}))
    }

    /// `abort`: the transaction fails and nothing is applied.
    pub fn abort(&mut self) -> usize {
        self.push(json!({"op": "abort"}))
    }

    /// `comment`: recorded in the database log.
    pub fn comment(&mut self, text: &str) -> usize {
        self.push(json!({"op": "comment", "comment": text}))
    }

    /// `assert`: fails with `not owner` unless this client holds `lock` (an
    /// OVSDB id: letters, digits and `_`).
    pub fn assert(&mut self, lock: &str) -> usize {
        self.push(json!({"op": "assert", "lock": lock}))
    }

    pub(crate) fn into_parts(self) -> (String, Vec<Value>, HashMap<String, usize>) {
        (self.db, self.ops, self.names)
    }
}

/// The result of one operation.
#[derive(Clone, Debug, PartialEq)]
pub struct OpResult(pub Value);

impl OpResult {
    /// The UUID of an inserted row.
    pub fn uuid(&self) -> Option<Uuid> {
        crate::datum::Atom::from_json(self.0.get("uuid")?).ok()
    }
    /// The rows of a `select`.
    pub fn rows(&self) -> &[Value] {
        self.0
            .get("rows")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    /// The row count of `update`, `mutate` and `delete`.
    pub fn count(&self) -> Option<u64> {
        self.0.get("count").and_then(Value::as_u64)
    }
}

/// The results of a successful transaction, one per operation.
#[derive(Clone, Debug)]
pub struct TxnResult {
    /// One result per operation, in order.
    pub results: Vec<OpResult>,
    names: HashMap<String, usize>,
}

impl TxnResult {
    /// The real UUID given to a row inserted as `named`.
    pub fn uuid(&self, named: &Uuid) -> Option<Uuid> {
        match named {
            Uuid::Real(_) => Some(named.clone()),
            Uuid::Named(n) => self.results.get(*self.names.get(n)?)?.uuid(),
        }
    }

    /// Decode the rows of the `select` at operation `op`.
    pub fn rows<T: Table>(&self, op: usize) -> Result<Vec<T>> {
        let r = self
            .results
            .get(op)
            .ok_or_else(|| Error::Invalid(format!("no operation {op}")))?;
        r.rows()
            .iter()
            .map(|v| {
                T::from_row(
                    v.as_object()
                        .ok_or_else(|| Error::decode("row", v.to_string()))?,
                )
            })
            .collect()
    }

    /// Untyped rows of the `select` at operation `op`.
    pub fn raw_rows(&self, op: usize) -> Vec<Row> {
        self.results
            .get(op)
            .map(|r| {
                r.rows()
                    .iter()
                    .filter_map(|v| v.as_object().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Turn the raw reply into a result, or the first error it reports.
    pub(crate) fn from_reply(
        ops: &[Value],
        reply: Value,
        names: HashMap<String, usize>,
    ) -> Result<Self> {
        let arr = match reply {
            Value::Array(a) => a,
            other => {
                return Err(Error::Protocol(format!(
                    "transact reply is not an array: {other}"
                )));
            }
        };
        for (i, r) in arr.iter().enumerate() {
            if let Some(err) = r.get("error").and_then(Value::as_str) {
                let op_index = (i < ops.len()).then_some(i);
                return Err(Error::Transaction {
                    op_index,
                    op: op_index
                        .and_then(|i| ops[i].get("op"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    error: err.to_string(),
                    details: r.get("details").and_then(Value::as_str).map(str::to_string),
                });
            }
        }
        if arr.len() < ops.len() {
            return Err(Error::Protocol(format!(
                "{} results for {} operations",
                arr.len(),
                ops.len()
            )));
        }
        Ok(TxnResult {
            results: arr.into_iter().map(OpResult).collect(),
            names,
        })
    }
}
