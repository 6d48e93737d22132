//! The trait every typed row implements.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde_json::{Map, Value};

use crate::datum::Uuid;
use crate::error::{Error, Result};

/// An untyped row: column name to OVSDB JSON datum.
pub type Row = Map<String, Value>;

/// A typed row of one table, generated from a schema.
pub trait Table: Sized + Clone + Debug + Default + PartialEq {
    /// The table name.
    const TABLE: &'static str;
    /// Every column except `_uuid` and `_version`.
    const COLUMNS: &'static [&'static str];

    /// `_uuid` of the row (nil for a row not yet written).
    fn uuid(&self) -> &Uuid;
    /// All columns as OVSDB JSON, `_uuid` excluded: what `insert` takes.
    fn to_row(&self) -> Row;
    /// Decode a row; absent columns take their default (empty) value, so
    /// partial selects and monitors with a column subset decode too.
    fn from_row(row: &Row) -> Result<Self>;
    /// The `external_ids` column, for tables that have one.
    fn external_ids(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
    /// Mutable `external_ids`, for tables that have one.
    fn external_ids_mut(&mut self) -> Option<&mut BTreeMap<String, String>> {
        None
    }
}

/// Decodes column `column` of a `table` row with `decode`; an absent column
/// takes its default, so partial selects and column-subset monitors decode.
pub(crate) fn decode_column<T: Default>(
    row: &Row,
    table: &str,
    column: &str,
    decode: impl FnOnce(&Value) -> Result<T>,
) -> Result<T> {
    match row.get(column) {
        Some(v) => decode(v).map_err(|e| Error::decode(format!("{table}.{column}"), e.to_string())),
        None => Ok(T::default()),
    }
}
