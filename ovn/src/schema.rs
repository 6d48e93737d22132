//! Database schemas (RFC 7047 §3.2) as returned by `get_schema`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};

/// A parsed database schema; only what the client needs is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseSchema {
    /// Database name, e.g. `OVN_Northbound`.
    pub name: String,
    /// Schema version `x.y.z`.
    pub version: String,
    /// Tables by name.
    pub tables: BTreeMap<String, TableSchema>,
}

#[derive(Clone, Debug, PartialEq)]
/// One table of a schema.
pub struct TableSchema {
    /// Columns by name, `_uuid` and `_version` included.
    pub columns: BTreeMap<String, ColumnType>,
    /// Root tables' rows live without being referenced.
    pub is_root: bool,
    /// Sets of columns whose values are unique across rows.
    pub indexes: Vec<Vec<String>>,
}

/// The type of a column: a key base type, an optional value type (maps) and
/// the cardinality bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnType {
    /// Type of the elements (or map keys).
    pub key: BaseType,
    /// Type of map values; `None` for scalars and sets.
    pub value: Option<BaseType>,
    /// Minimum number of elements.
    pub min: u64,
    /// `None` means "unlimited".
    pub max: Option<u64>,
    /// False if the column cannot change after insert.
    pub mutable: bool,
}

#[derive(Clone, Debug, PartialEq)]
/// An atomic type with its constraints.
pub struct BaseType {
    /// `integer`, `real`, `boolean`, `string` or `uuid`.
    pub atomic: String,
    /// The table a `uuid` refers to, if any.
    pub ref_table: Option<String>,
    /// `strong` unless the schema says `weak`.
    pub ref_strong: bool,
    /// The allowed values when the schema declares an `enum`.
    pub enumeration: Option<Vec<Value>>,
}

impl ColumnType {
    /// Exactly one value: not a set.
    pub fn is_scalar(&self) -> bool {
        self.value.is_none() && self.min == 1 && self.max == Some(1)
    }
    /// At most one value (`min 0, max 1`).
    pub fn is_optional(&self) -> bool {
        self.value.is_none() && self.min == 0 && self.max == Some(1)
    }
    /// A map column.
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }
    /// A set column (neither scalar nor map).
    pub fn is_set(&self) -> bool {
        self.value.is_none() && !self.is_scalar()
    }
}

fn base_type(v: &Value) -> Result<BaseType> {
    match v {
        Value::String(s) => Ok(BaseType {
            atomic: s.clone(),
            ref_table: None,
            ref_strong: true,
            enumeration: None,
        }),
        Value::Object(o) => Ok(BaseType {
            atomic: o
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::decode("base type", v.to_string()))?
                .to_string(),
            ref_table: o
                .get("refTable")
                .and_then(Value::as_str)
                .map(str::to_string),
            ref_strong: o.get("refType").and_then(Value::as_str) != Some("weak"),
            enumeration: o
                .get("enum")
                .map(|e| crate::datum::set_elements(e).into_iter().cloned().collect()),
        }),
        _ => Err(Error::decode("base type", v.to_string())),
    }
}

fn column_type(v: &Value, mutable: bool) -> Result<ColumnType> {
    match v {
        Value::String(_) => Ok(ColumnType {
            key: base_type(v)?,
            value: None,
            min: 1,
            max: Some(1),
            mutable,
        }),
        Value::Object(o) => Ok(ColumnType {
            key: base_type(
                o.get("key")
                    .ok_or_else(|| Error::decode("column type", v.to_string()))?,
            )?,
            value: o.get("value").map(base_type).transpose()?,
            min: o.get("min").and_then(Value::as_u64).unwrap_or(1),
            max: match o.get("max") {
                None => Some(1),
                Some(Value::String(s)) if s == "unlimited" => None,
                Some(m) => Some(
                    m.as_u64()
                        .ok_or_else(|| Error::decode("max", m.to_string()))?,
                ),
            },
            mutable,
        }),
        _ => Err(Error::decode("column type", v.to_string())),
    }
}

impl DatabaseSchema {
    /// Parse the JSON schema object of `get_schema` or an `.ovsschema` file.
    pub fn from_json(v: &Value) -> Result<Self> {
        let bad = |what: &str| Error::decode("schema", what.to_string());
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no name"))?;
        let version = v.get("version").and_then(Value::as_str).unwrap_or("0.0.0");
        let mut tables = BTreeMap::new();
        for (tname, t) in v
            .get("tables")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no tables"))?
        {
            let mut columns = BTreeMap::new();
            for (cname, c) in t
                .get("columns")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("no columns"))?
            {
                let mutable = c.get("mutable").and_then(Value::as_bool).unwrap_or(true);
                let ty = column_type(c.get("type").ok_or_else(|| bad("no type"))?, mutable)?;
                columns.insert(cname.clone(), ty);
            }
            // Every table has these two implicit columns.
            for implicit in ["_uuid", "_version"] {
                columns.insert(
                    implicit.to_string(),
                    ColumnType {
                        key: base_type(&Value::String("uuid".into()))?,
                        value: None,
                        min: 1,
                        max: Some(1),
                        mutable: false,
                    },
                );
            }
            let indexes = t
                .get("indexes")
                .and_then(Value::as_array)
                .map(|ix| {
                    ix.iter()
                        .filter_map(Value::as_array)
                        .map(|cols| {
                            cols.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            tables.insert(
                tname.clone(),
                TableSchema {
                    columns,
                    is_root: t.get("isRoot").and_then(Value::as_bool).unwrap_or(false),
                    indexes,
                },
            );
        }
        Ok(DatabaseSchema {
            name: name.to_string(),
            version: version.to_string(),
            tables,
        })
    }

    /// The type of `table.column`, if both exist.
    pub fn column(&self, table: &str, column: &str) -> Option<&ColumnType> {
        self.tables.get(table)?.columns.get(column)
    }

    /// `(major, minor, patch)` of the schema version.
    pub fn version_tuple(&self) -> (u64, u64, u64) {
        parse_version(&self.version)
    }

    /// Every `(table, column)` holding strong references to rows of `target`.
    pub fn strong_referrers(&self, target: &str) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        for (t, ts) in &self.tables {
            for (c, ct) in &ts.columns {
                for base in std::iter::once(&ct.key).chain(ct.value.as_ref()) {
                    if base.ref_strong && base.ref_table.as_deref() == Some(target) {
                        out.push((t.as_str(), c.as_str()));
                    }
                }
            }
        }
        out
    }

    /// Check that a server schema (`self`) serves every table and column of
    /// `model` with the same type. Extra server tables, columns and a newer
    /// minor version are fine (RFC 7047 clients ignore what they do not know);
    /// a different major version or a missing/changed column is not.
    pub fn check_compatible(&self, model: &DatabaseSchema) -> Result<()> {
        let mismatch = |reason: String| Error::SchemaMismatch {
            db: model.name.clone(),
            reason,
        };
        if self.name != model.name {
            return Err(mismatch(format!("server database is {}", self.name)));
        }
        let (smaj, smin, _) = self.version_tuple();
        let (mmaj, mmin, _) = model.version_tuple();
        if smaj != mmaj || smin < mmin {
            return Err(mismatch(format!(
                "server schema version {} is incompatible with the compiled-in {}",
                self.version, model.version
            )));
        }
        for (t, ts) in &model.tables {
            let Some(st) = self.tables.get(t) else {
                return Err(mismatch(format!("server has no table {t}")));
            };
            for (c, ct) in &ts.columns {
                match st.columns.get(c) {
                    None => return Err(mismatch(format!("server has no column {t}.{c}"))),
                    Some(sc)
                        if sc.key.atomic != ct.key.atomic
                            || sc.value.as_ref().map(|v| &v.atomic)
                                != ct.value.as_ref().map(|v| &v.atomic)
                            || sc.is_scalar() != ct.is_scalar()
                            || sc.is_optional() != ct.is_optional() =>
                    {
                        return Err(mismatch(format!(
                            "column {t}.{c} has a different type on the server"
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// Parse `x.y.z` leniently; missing parts are 0.
pub fn parse_version(v: &str) -> (u64, u64, u64) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}
