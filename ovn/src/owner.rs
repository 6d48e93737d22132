//! The ownership convention and idempotent reconciliation of owned rows.
//!
//! Every row vpcnet creates carries `external_ids:vpcnet.io/owner` =
//! `<kind>/<namespace>/<name>` (namespace empty for cluster-scoped owners) and,
//! when known, `vpcnet.io/vpc`. "What does X own" is then a query, so a
//! reconciler states the rows it wants with [`ensure_owned`] and garbage
//! collection after a crash is [`delete_owned`].

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use crate::client::Client;
use crate::datum::{self, Uuid};
use crate::error::{Error, Result};
use crate::ops::{Cond, Mutation, Txn, WaitUntil};
use crate::schema::{DatabaseSchema, TableSchema};
use crate::table::{Row, Table};

/// `external_ids` key naming the owner of a row.
pub const OWNER_KEY: &str = "vpcnet.io/owner";
/// `external_ids` key naming the VPC a row belongs to.
pub const VPC_KEY: &str = "vpcnet.io/vpc";
/// Optional `external_ids` key that identifies a row among its owner's rows
/// of the same table, for tables without a natural key.
pub const KEY_KEY: &str = "vpcnet.io/key";

/// The column the ownership keys live in: every owned table has it, under
/// this name.
pub const EXTERNAL_IDS: &str = "external_ids";

/// The value of `key` in a raw row's `external_ids`, as a monitor caches it
/// (`["map", [[k, v], ...]]`), without decoding the whole row.
pub fn external_id<'a>(row: &'a Row, key: &str) -> Option<&'a str> {
    row.get(EXTERNAL_IDS)?
        .get(1)?
        .as_array()?
        .iter()
        .find(|p| p.get(0).and_then(Value::as_str) == Some(key))?
        .get(1)?
        .as_str()
}

/// A cached row with its `_uuid` column put back (a monitor keys its rows by
/// uuid and leaves the column out), so `Table::from_row` reads it.
pub fn with_uuid(uuid: &str, row: &Row) -> Row {
    let mut r = row.clone();
    r.insert("_uuid".into(), Uuid::Real(uuid.into()).to_json());
    r
}

/// Columns that OVN's own daemons write (ovn-northd, ovn-controller):
/// [`ensure_owned`] sets them on insert if asked but never "corrects" them.
pub const SERVER_WRITTEN: &[(&str, &str)] = {
    use crate::nb::*;
    &[
        (logical_switch_port::TABLE, logical_switch_port::UP),
        (
            logical_switch_port::TABLE,
            logical_switch_port::DYNAMIC_ADDRESSES,
        ),
        (logical_switch_port::TABLE, logical_switch_port::TAG),
        (nb_global::TABLE, nb_global::NB_CFG),
        (nb_global::TABLE, nb_global::NB_CFG_TIMESTAMP),
        (nb_global::TABLE, nb_global::SB_CFG),
        (nb_global::TABLE, nb_global::SB_CFG_TIMESTAMP),
        (nb_global::TABLE, nb_global::HV_CFG),
        (nb_global::TABLE, nb_global::HV_CFG_TIMESTAMP),
        (bfd::TABLE, bfd::STATUS),
        (connection::TABLE, connection::STATUS),
        (connection::TABLE, connection::IS_CONNECTED),
    ]
};

/// The Kubernetes object a row belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Kubernetes kind, e.g. `Vpc`.
    pub kind: String,
    /// Namespace; empty for cluster-scoped kinds.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The VPC to record in `vpcnet.io/vpc`, if any.
    pub vpc: Option<String>,
}

impl Owner {
    /// A namespaced owner.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Owner {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            vpc: None,
        }
    }
    /// A cluster-scoped owner (empty namespace).
    pub fn cluster(kind: &str, name: &str) -> Self {
        Self::new(kind, "", name)
    }
    /// Also stamp `vpcnet.io/vpc` on the rows.
    pub fn with_vpc(mut self, vpc: &str) -> Self {
        self.vpc = Some(vpc.into());
        self
    }
    /// The `vpcnet.io/owner` value.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
    /// The `where` clause matching this owner's rows.
    pub fn condition(&self) -> Cond {
        Cond::includes(
            EXTERNAL_IDS,
            datum::str_map([(OWNER_KEY, self.id().as_str())]),
        )
    }
    /// Add the ownership keys to a row's `external_ids`.
    pub fn stamp(&self, ids: &mut BTreeMap<String, String>) {
        ids.insert(OWNER_KEY.into(), self.id());
        if let Some(v) = &self.vpc {
            ids.insert(VPC_KEY.into(), v.clone());
        }
    }
}

/// One row an owner wants to exist.
#[derive(Clone, Debug)]
pub struct Desired {
    table: String,
    row: Row,
    name: Option<String>,
    parent: Option<(String, String, Uuid)>,
    manage: Vec<String>,
}

impl Desired {
    /// Want `row` (its `uuid` is ignored).
    pub fn new<T: Table>(row: &T) -> Self {
        Desired {
            table: T::TABLE.into(),
            row: row.to_row(),
            name: None,
            parent: None,
            manage: Vec::new(),
        }
    }

    /// An untyped row of `table`.
    pub fn raw(table: &str, row: Row) -> Self {
        Desired {
            table: table.into(),
            row,
            name: None,
            parent: None,
            manage: Vec::new(),
        }
    }

    /// Let other desired rows refer to this one as `Uuid::named(name)`,
    /// whether it is created now or exists already.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Attach the row to `parent` by its reference column `column` (needed
    /// for non-root tables such as Logical_Switch_Port, which OVSDB deletes
    /// when nothing refers to them). `parent` may be a [`Uuid::Named`]
    /// desired row.
    pub fn child_of(mut self, parent_table: &str, column: &str, parent: Uuid) -> Self {
        self.parent = Some((parent_table.into(), column.into(), parent));
        self
    }

    /// Also keep the reference column `column` equal to the desired value.
    /// Reference columns are left alone by default because children attached
    /// with [`Desired::child_of`] live in them.
    pub fn manage(mut self, column: &str) -> Self {
        self.manage.push(column.into());
        self
    }
}

impl<T: Table> From<T> for Desired {
    fn from(row: T) -> Self {
        Desired::new(&row)
    }
}

/// What [`ensure_owned`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnsureReport {
    /// Rows inserted.
    pub created: usize,
    /// Rows whose columns were updated.
    pub updated: usize,
    /// Rows deleted (with their references detached).
    pub deleted: usize,
    /// Real UUIDs of the desired rows given a name with [`Desired::named`].
    pub uuids: HashMap<String, Uuid>,
}

fn has_external_ids(t: &TableSchema) -> bool {
    t.columns.get(EXTERNAL_IDS).is_some_and(|c| c.is_map())
}

fn is_ref(t: &TableSchema, col: &str) -> bool {
    t.columns.get(col).is_some_and(|c| {
        c.key.atomic == "uuid" || c.value.as_ref().is_some_and(|v| v.atomic == "uuid")
    })
}

fn norm(t: &TableSchema, col: &str, v: &Value) -> Value {
    match t.columns.get(col) {
        Some(ty) => datum::normalize(v, ty),
        None => v.clone(),
    }
}

fn external_ids(row: &Row) -> BTreeMap<String, String> {
    row.get(EXTERNAL_IDS)
        .and_then(|v| datum::map_from_json(v).ok())
        .unwrap_or_default()
}

/// Identity of a row among one owner's rows of a table: an explicit
/// `vpcnet.io/key`, else the table's first index, else a non-empty `name`,
/// else the whole content (such rows are replaced rather than updated).
fn row_key(t: &TableSchema, row: &Row) -> String {
    if let Some(k) = external_ids(row).get(KEY_KEY) {
        return format!("k:{k}");
    }
    if let Some(ix) = t.indexes.first() {
        let vals: Vec<Value> = ix
            .iter()
            .map(|c| row.get(c).map(|v| norm(t, c, v)).unwrap_or(Value::Null))
            .collect();
        return format!("i:{}", Value::Array(vals));
    }
    if let Some(Value::String(n)) = row.get("name")
        && !n.is_empty()
        && t.columns.get("name").is_some_and(|c| c.is_scalar())
    {
        return format!("n:{n}");
    }
    let content: BTreeMap<&String, Value> = row
        .iter()
        .filter(|(c, _)| !c.starts_with('_') && !is_ref(t, c))
        .map(|(c, v)| (c, norm(t, c, v)))
        .collect();
    format!("c:{}", serde_json::to_string(&content).unwrap_or_default())
}

/// Replace `["named-uuid", n]` by `["uuid", real]` for rows that already exist.
fn resolve(v: &mut Value, existing: &HashMap<String, Uuid>) {
    match v {
        Value::Array(a) => {
            if let [Value::String(tag), Value::String(n)] = a.as_slice()
                && tag == "named-uuid"
                && let Some(u) = existing.get(n)
            {
                *v = u.to_json();
                return;
            }
            a.iter_mut().for_each(|x| resolve(x, existing));
        }
        Value::Object(o) => o.values_mut().for_each(|x| resolve(x, existing)),
        _ => {}
    }
}

fn row_uuid(row: &Row) -> Result<Uuid> {
    datum::scalar_from_json(
        row.get("_uuid")
            .ok_or_else(|| Error::decode("row", "no _uuid"))?,
    )
}

/// Read every row of `owner` in `db`, table by table, in one transaction.
pub async fn list_owned_in(
    client: &Client,
    db: &str,
    owner: &Owner,
) -> Result<BTreeMap<String, Vec<Row>>> {
    let schema = client.get_schema(db).await?;
    let tables: Vec<&String> = schema
        .tables
        .iter()
        .filter(|(_, t)| has_external_ids(t))
        .map(|(n, _)| n)
        .collect();
    let mut txn = Txn::new(db);
    for t in &tables {
        txn.select(t, &[owner.condition()], None);
    }
    let res = client.transact(txn).await?;
    Ok(tables
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), res.raw_rows(i)))
        .collect())
}

/// Every OVN_Northbound row of `owner`, by table.
pub async fn list_owned(client: &Client, owner: &Owner) -> Result<BTreeMap<String, Vec<Row>>> {
    list_owned_in(client, crate::nb::SCHEMA_NAME, owner).await
}

/// Append the operations deleting `uuid` from `table`: first detach it from
/// every strong reference (a referenced row cannot be deleted), then delete.
fn delete_ops(txn: &mut Txn, schema: &DatabaseSchema, table: &str, uuid: &Uuid) {
    for (pt, pc) in schema.strong_referrers(table) {
        let set = datum::set_of([uuid.to_json()]);
        if schema.column(pt, pc).is_some_and(|c| c.is_map()) {
            continue;
        }
        txn.mutate(
            pt,
            &[Cond::includes(pc, set.clone())],
            &[Mutation::delete(pc, set)],
        );
    }
    txn.delete(table, &[Cond::uuid(uuid)]);
}

/// Delete every OVN_Northbound row of `owner` in one transaction; returns how many.
pub async fn delete_owned(client: &Client, owner: &Owner) -> Result<usize> {
    ensure_owned(client, owner, Vec::new())
        .await
        .map(|r| r.deleted)
}

/// Make `owner`'s rows in OVN_Northbound exactly `desired`: see [`ensure_owned_in`].
pub async fn ensure_owned(
    client: &Client,
    owner: &Owner,
    desired: Vec<Desired>,
) -> Result<EnsureReport> {
    ensure_owned_in(client, crate::nb::SCHEMA_NAME, owner, desired).await
}

/// Make `owner`'s rows in `db` exactly `desired`, in one transaction: create
/// what is missing (linking children to their parents), update columns that
/// differ (except references, unless [`Desired::manage`]d, and
/// [`SERVER_WRITTEN`] columns), delete rows of the owner that are not desired. Running it twice
/// changes nothing the second time. The transaction carries `wait`
/// operations on the owner's row set, so a concurrent writer makes it fail
/// and it is re-planned (up to three times) instead of duplicating rows.
pub async fn ensure_owned_in(
    client: &Client,
    db: &str,
    owner: &Owner,
    desired: Vec<Desired>,
) -> Result<EnsureReport> {
    let schema = client.get_schema(db).await?;
    for d in &desired {
        let t = schema
            .tables
            .get(&d.table)
            .ok_or_else(|| Error::Invalid(format!("no table {}", d.table)))?;
        if !has_external_ids(t) {
            return Err(Error::Invalid(format!(
                "table {} has no external_ids to record an owner",
                d.table
            )));
        }
    }
    for _attempt in 0..3 {
        let current = list_owned_in(client, db, owner).await?;
        let (txn, mut report, names) = plan(&schema, db, owner, &desired, &current)?;
        let Some(txn) = txn else { return Ok(report) };
        let wait_ops = txn.ops().iter().take_while(|o| o["op"] == "wait").count();
        match client.transact(txn).await {
            Ok(res) => {
                for (name, u) in names {
                    if let Some(real) = res.uuid(&u) {
                        report.uuids.insert(name, real);
                    }
                }
                return Ok(report);
            }
            Err(Error::Transaction {
                op_index: Some(i), ..
            }) if i < wait_ops => {
                tracing::debug!(owner = %owner.id(), "owned rows changed underneath; re-planning");
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(owner.id()))
}

type Plan = (Option<Txn>, EnsureReport, Vec<(String, Uuid)>);

fn plan(
    schema: &DatabaseSchema,
    db: &str,
    owner: &Owner,
    desired: &[Desired],
    current: &BTreeMap<String, Vec<Row>>,
) -> Result<Plan> {
    let mut report = EnsureReport::default();
    let mut txn = Txn::new(db);

    // Guard: the owner's rows of every table we touch are what we read.
    let mut touched: Vec<&str> = desired.iter().map(|d| d.table.as_str()).collect();
    touched.extend(
        current
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(t, _)| t.as_str()),
    );
    touched.sort();
    touched.dedup();
    for t in &touched {
        let rows: Vec<Row> = current
            .get(*t)
            .into_iter()
            .flatten()
            .filter_map(|r| {
                r.get("_uuid")
                    .map(|u| Row::from_iter([("_uuid".to_string(), u.clone())]))
            })
            .collect();
        txn.wait(
            t,
            &[owner.condition()],
            &["_uuid"],
            WaitUntil::Equal,
            rows,
            Some(0),
        );
    }
    let guard_ops = txn.len();

    // Match desired rows to current ones by key.
    let mut by_key: HashMap<(&str, String), Vec<&Row>> = HashMap::new();
    for (t, rows) in current {
        let ts = &schema.tables[t];
        for r in rows {
            by_key
                .entry((t.as_str(), row_key(ts, r)))
                .or_default()
                .push(r);
        }
    }
    let mut rows: Vec<Row> = Vec::with_capacity(desired.len());
    let mut matched: Vec<Option<&Row>> = Vec::with_capacity(desired.len());
    let mut existing: HashMap<String, Uuid> = HashMap::new();
    let mut kept: HashSet<String> = HashSet::new();
    for d in desired {
        let ts = &schema.tables[&d.table];
        let mut row = d.row.clone();
        let mut ids = external_ids(&row);
        owner.stamp(&mut ids);
        row.insert(EXTERNAL_IDS.into(), datum::map_to_json(&ids));
        let hit = by_key
            .get_mut(&(d.table.as_str(), row_key(ts, &row)))
            .and_then(|v| v.pop());
        if let Some(h) = hit {
            let u = row_uuid(h)?;
            kept.insert(u.as_str().to_string());
            if let Some(n) = &d.name {
                existing.insert(n.clone(), u);
            }
        }
        rows.push(row);
        matched.push(hit);
    }

    let mut names = Vec::new();
    for ((d, mut row), hit) in desired.iter().zip(rows).zip(matched) {
        let ts = &schema.tables[&d.table];
        let mut v = Value::Object(std::mem::take(&mut row));
        resolve(&mut v, &existing);
        let Value::Object(row) = v else {
            unreachable!()
        };
        match hit {
            Some(cur) => {
                let changed: Row = row
                    .iter()
                    .filter(|(c, _)| !is_ref(ts, c) || d.manage.iter().any(|m| m == *c))
                    .filter(|(c, _)| !SERVER_WRITTEN.contains(&(d.table.as_str(), c.as_str())))
                    .filter(|(c, v)| cur.get(*c).map(|cv| norm(ts, c, cv)) != Some(norm(ts, c, v)))
                    .map(|(c, v)| (c.clone(), v.clone()))
                    .collect();
                if !changed.is_empty() {
                    txn.update(&d.table, &[Cond::uuid(&row_uuid(cur)?)], changed);
                    report.updated += 1;
                }
                if let Some(n) = &d.name {
                    names.push((n.clone(), existing[n].clone()));
                }
            }
            None => {
                let name = d.name.clone().unwrap_or_else(|| txn.fresh_name());
                let u = txn.insert_named(&d.table, row, &name);
                if let Some((pt, pc, target)) = &d.parent {
                    let mut target = target.to_json();
                    resolve(&mut target, &existing);
                    let set = datum::set_of([u.to_json()]);
                    txn.mutate(
                        pt,
                        &[Cond::new("_uuid", "==", target)],
                        &[Mutation::insert(pc, set)],
                    );
                }
                if d.name.is_some() {
                    names.push((name, u));
                }
                report.created += 1;
            }
        }
    }

    for (t, rows) in current {
        for r in rows {
            let u = row_uuid(r)?;
            if !kept.contains(u.as_str()) {
                delete_ops(&mut txn, schema, t, &u);
                report.deleted += 1;
            }
        }
    }

    if txn.len() == guard_ops {
        for (n, u) in names {
            report.uuids.insert(n, u);
        }
        return Ok((None, report, Vec::new()));
    }
    txn.comment(&format!("vpcnet: ensure {}", owner.id()));
    Ok((Some(txn), report, names))
}

/// Stamp a typed row with `owner` (for callers building their own transactions).
pub fn owned<T: Table>(owner: &Owner, mut row: T) -> T {
    if let Some(ids) = row.external_ids_mut() {
        owner.stamp(ids);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_external_id_and_the_uuid_are_read_from_a_cached_row() {
        let mut row = Row::new();
        row.insert(
            EXTERNAL_IDS.into(),
            json!(["map", [[OWNER_KEY, "Service/a/b"], [VPC_KEY, "v"]]]),
        );
        assert_eq!(external_id(&row, VPC_KEY), Some("v"));
        assert_eq!(external_id(&row, "nope"), None);
        assert_eq!(external_id(&Row::new(), VPC_KEY), None);
        let full = with_uuid("6f1c0a38-0000-4000-8000-000000000001", &row);
        assert_eq!(
            full["_uuid"],
            json!(["uuid", "6f1c0a38-0000-4000-8000-000000000001"])
        );
        assert_eq!(full[EXTERNAL_IDS], row[EXTERNAL_IDS]);
    }
}
