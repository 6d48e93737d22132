//! OVSDB atoms and datums (RFC 7047 §5.1) and their Rust counterparts.
//!
//! Scalars map to plain Rust types, optional columns (`min 0, max 1`) to
//! `Option<T>`, sets to `BTreeSet<T>` and maps to `BTreeMap<K, V>`, so that
//! two rows compare equal exactly when OVSDB would consider them equal.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::schema::ColumnType;

/// A row reference: either a real UUID chosen by the server, or a
/// `uuid-name` that refers to a row inserted earlier in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Uuid {
    /// A UUID assigned by the server.
    Real(String),
    /// A `uuid-name` of a row inserted in the same transaction.
    Named(String),
}

impl Uuid {
    /// The all-zero UUID, used for rows not yet written.
    pub const NIL: &'static str = "00000000-0000-0000-0000-000000000000";

    /// A reference to the row inserted with `uuid-name` `name` in the same transaction.
    pub fn named(name: impl Into<String>) -> Self {
        Uuid::Named(name.into())
    }

    /// The UUID text (or the uuid-name for [`Uuid::Named`]).
    pub fn as_str(&self) -> &str {
        match self {
            Uuid::Real(s) | Uuid::Named(s) => s,
        }
    }

    /// True for the placeholder UUID of a row that has not been written.
    pub fn is_nil(&self) -> bool {
        matches!(self, Uuid::Real(s) if s == Self::NIL)
    }

    /// The OVSDB JSON form: `["uuid", ..]` or `["named-uuid", ..]`.
    pub fn to_json(&self) -> Value {
        match self {
            Uuid::Real(s) => json!(["uuid", s]),
            Uuid::Named(s) => json!(["named-uuid", s]),
        }
    }
}

impl Default for Uuid {
    fn default() -> Self {
        Uuid::Real(Self::NIL.to_string())
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Conversion of a single OVSDB atom.
pub trait Atom: Sized {
    /// Encode as an OVSDB atom.
    fn to_json(&self) -> Value;
    /// Decode an OVSDB atom.
    fn from_json(v: &Value) -> Result<Self>;
}

impl Atom for i64 {
    fn to_json(&self) -> Value {
        json!(self)
    }
    fn from_json(v: &Value) -> Result<Self> {
        v.as_i64()
            .ok_or_else(|| Error::decode("integer", v.to_string()))
    }
}

impl Atom for f64 {
    fn to_json(&self) -> Value {
        json!(self)
    }
    fn from_json(v: &Value) -> Result<Self> {
        v.as_f64()
            .ok_or_else(|| Error::decode("real", v.to_string()))
    }
}

impl Atom for bool {
    fn to_json(&self) -> Value {
        json!(self)
    }
    fn from_json(v: &Value) -> Result<Self> {
        v.as_bool()
            .ok_or_else(|| Error::decode("boolean", v.to_string()))
    }
}

impl Atom for String {
    fn to_json(&self) -> Value {
        json!(self)
    }
    fn from_json(v: &Value) -> Result<Self> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::decode("string", v.to_string()))
    }
}

impl Atom for Uuid {
    fn to_json(&self) -> Value {
        Uuid::to_json(self)
    }
    fn from_json(v: &Value) -> Result<Self> {
        match v.as_array().map(Vec::as_slice) {
            Some([Value::String(tag), Value::String(s)]) if tag == "uuid" => {
                Ok(Uuid::Real(s.clone()))
            }
            Some([Value::String(tag), Value::String(s)]) if tag == "named-uuid" => {
                Ok(Uuid::Named(s.clone()))
            }
            _ => Err(Error::decode("uuid", v.to_string())),
        }
    }
}

/// The elements of a set datum, accepting both `["set", [...]]` and the
/// bare-atom shorthand for one element.
pub fn set_elements(v: &Value) -> Vec<&Value> {
    match v.as_array().map(Vec::as_slice) {
        Some([Value::String(tag), Value::Array(items)]) if tag == "set" => items.iter().collect(),
        _ => vec![v],
    }
}

/// The pairs of a map datum `["map", [[k, v], ...]]`.
pub fn map_pairs(v: &Value) -> Result<Vec<(&Value, &Value)>> {
    match v.as_array().map(Vec::as_slice) {
        Some([Value::String(tag), Value::Array(items)]) if tag == "map" => items
            .iter()
            .map(|p| match p.as_array().map(Vec::as_slice) {
                Some([k, v]) => Ok((k, v)),
                _ => Err(Error::decode("map pair", p.to_string())),
            })
            .collect(),
        _ => Err(Error::decode("map", v.to_string())),
    }
}

/// Encode a scalar (`min 1, max 1`) column.
pub fn scalar_to_json<T: Atom>(v: &T) -> Value {
    v.to_json()
}

/// Decode a scalar column.
pub fn scalar_from_json<T: Atom>(v: &Value) -> Result<T> {
    T::from_json(v)
}

/// Encode an optional (`min 0, max 1`) column.
pub fn optional_to_json<T: Atom>(v: &Option<T>) -> Value {
    match v {
        Some(x) => json!(["set", [x.to_json()]]),
        None => json!(["set", []]),
    }
}

/// Decode an optional column.
pub fn optional_from_json<T: Atom>(v: &Value) -> Result<Option<T>> {
    match set_elements(v).as_slice() {
        [] => Ok(None),
        [x] => Ok(Some(T::from_json(x)?)),
        _ => Err(Error::decode("optional value", v.to_string())),
    }
}

/// Encode a set column.
pub fn set_to_json<T: Atom>(v: &BTreeSet<T>) -> Value {
    json!(["set", v.iter().map(Atom::to_json).collect::<Vec<_>>()])
}

/// Decode a set column.
pub fn set_from_json<T: Atom + Ord>(v: &Value) -> Result<BTreeSet<T>> {
    set_elements(v).into_iter().map(T::from_json).collect()
}

/// Sets of reals cannot be `BTreeSet` (f64 is not `Ord`).
pub fn vec_to_json<T: Atom>(v: &[T]) -> Value {
    json!(["set", v.iter().map(Atom::to_json).collect::<Vec<_>>()])
}

/// Decode a set of reals.
pub fn vec_from_json<T: Atom>(v: &Value) -> Result<Vec<T>> {
    set_elements(v).into_iter().map(T::from_json).collect()
}

/// Encode a map column.
pub fn map_to_json<K: Atom, V: Atom>(m: &BTreeMap<K, V>) -> Value {
    json!([
        "map",
        m.iter()
            .map(|(k, v)| json!([k.to_json(), v.to_json()]))
            .collect::<Vec<_>>()
    ])
}

/// Decode a map column.
pub fn map_from_json<K: Atom + Ord, V: Atom>(v: &Value) -> Result<BTreeMap<K, V>> {
    map_pairs(v)?
        .into_iter()
        .map(|(k, v)| Ok((K::from_json(k)?, V::from_json(v)?)))
        .collect()
}

/// A string-to-string map datum, the shape of every `external_ids` column.
pub fn str_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    json!([
        "map",
        pairs
            .into_iter()
            .map(|(k, v)| json!([k, v]))
            .collect::<Vec<_>>()
    ])
}

/// A set datum holding the given atoms.
pub fn set_of(items: impl IntoIterator<Item = Value>) -> Value {
    json!(["set", items.into_iter().collect::<Vec<_>>()])
}

/// Canonical form of a datum of type `ty`, so that equal datums compare equal
/// as JSON whichever of the RFC's equivalent encodings each side used.
pub fn normalize(v: &Value, ty: &ColumnType) -> Value {
    if ty.is_map() {
        let mut pairs: Vec<(&Value, &Value)> = map_pairs(v).unwrap_or_default();
        pairs.sort_by_key(|(k, _)| k.to_string());
        json!([
            "map",
            pairs
                .into_iter()
                .map(|(k, v)| json!([k, v]))
                .collect::<Vec<_>>()
        ])
    } else if ty.is_scalar() {
        v.clone()
    } else {
        let mut items: Vec<&Value> = set_elements(v);
        items.sort_by_key(|x| x.to_string());
        items.dedup();
        json!(["set", items])
    }
}

/// Apply an `update2` "modify" diff for one column to the old datum
/// (ovsdb-server(7)): columns holding at most one value (scalars and
/// optionals) carry the new value; for larger sets the diff is the symmetric
/// difference; for maps a new key is added, a pair equal to the old one is
/// removed and a key with another value is replaced.
pub fn apply_diff(old: &Value, diff: &Value, ty: &ColumnType) -> Value {
    if ty.is_map() {
        let mut m: Vec<(Value, Value)> = map_pairs(old)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in map_pairs(diff).unwrap_or_default() {
            match m.iter().position(|(ok, _)| ok == k) {
                Some(i) if &m[i].1 == v => {
                    m.remove(i);
                }
                Some(i) => m[i].1 = v.clone(),
                None => m.push((k.clone(), v.clone())),
            }
        }
        json!([
            "map",
            m.into_iter()
                .map(|(k, v)| json!([k, v]))
                .collect::<Vec<_>>()
        ])
    } else if ty.max == Some(1) {
        diff.clone()
    } else {
        let mut s: Vec<Value> = set_elements(old).into_iter().cloned().collect();
        for x in set_elements(diff) {
            match s.iter().position(|o| o == x) {
                Some(i) => {
                    s.remove(i);
                }
                None => s.push(x.clone()),
            }
        }
        json!(["set", s])
    }
}

/// The default datum of a column type (RFC 7047 §5.1), which `update2`
/// leaves out of inserted rows.
pub fn default_datum(ty: &ColumnType) -> Value {
    if ty.is_map() {
        json!(["map", []])
    } else if ty.min == 0 || !ty.is_scalar() {
        json!(["set", []])
    } else {
        match ty.key.atomic.as_str() {
            "integer" => json!(0),
            "real" => json!(0.0),
            "boolean" => json!(false),
            "uuid" => json!(["uuid", Uuid::NIL]),
            _ => json!(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::BaseType;

    fn ty(min: u64, max: Option<u64>, map: bool) -> ColumnType {
        let b = BaseType {
            atomic: "string".into(),
            ref_table: None,
            ref_strong: true,
            enumeration: None,
        };
        ColumnType {
            key: b.clone(),
            value: map.then_some(b),
            min,
            max,
            mutable: true,
        }
    }

    #[test]
    fn update2_diffs() {
        let set = ty(0, None, false);
        assert_eq!(
            normalize(
                &apply_diff(
                    &json!(["set", ["a", "b"]]),
                    &json!(["set", ["b", "c"]]),
                    &set
                ),
                &set
            ),
            json!(["set", ["a", "c"]])
        );
        // A one-element set may come as a bare atom.
        assert_eq!(
            apply_diff(&json!("a"), &json!("a"), &set),
            json!(["set", []])
        );
        let map = ty(0, None, true);
        let old = json!(["map", [["k1", "v1"], ["k2", "v2"]]]);
        let diff = json!(["map", [["k1", "v1"], ["k2", "x"], ["k3", "v3"]]]);
        assert_eq!(
            normalize(&apply_diff(&old, &diff, &map), &map),
            json!(["map", [["k2", "x"], ["k3", "v3"]]])
        );
        // Optional columns carry the new value, not a difference.
        let opt = ty(0, Some(1), false);
        assert_eq!(apply_diff(&json!("a"), &json!("b"), &opt), json!("b"));
    }

    #[test]
    fn typed_round_trip() {
        let m: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert_eq!(
            map_from_json::<String, String>(&map_to_json(&m)).unwrap(),
            m
        );
        assert_eq!(
            optional_from_json::<i64>(&json!(["set", []])).unwrap(),
            None
        );
        assert_eq!(optional_from_json::<i64>(&json!(5)).unwrap(), Some(5));
        let u = Uuid::Real("x".into());
        assert_eq!(
            set_from_json::<Uuid>(&json!(["uuid", "x"])).unwrap(),
            [u].into()
        );
        assert!(optional_from_json::<i64>(&json!(["set", [1, 2]])).is_err());
    }
}
