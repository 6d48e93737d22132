//! Generates the typed OVN_Northbound model of the `ovn` crate
//! (`ovn/src/nb_model.rs`) from its OVSDB schema, so no table, column or
//! enumerated value is typed by hand there.
//!
//! The model is checked in rather than built by a build script so that it can
//! be read, reviewed and searched like any other source; `cargo xtask
//! nb-model` rewrites it and a test of the `ovn` crate fails when it is stale.
//!
//! Per table the model has a module (`logical_router` for
//! `Logical_Router`) with the table name (`TABLE`), one constant per column,
//! `COLUMNS`, and one enum per column whose string values the schema
//! enumerates; and a struct (`LogicalRouter`) implementing `ovn::Table`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The schema the model is generated from, relative to the `ovn` crate.
pub const SCHEMA_PATH: &str = "schema/ovn-nb.ovsschema";
/// The generated model, relative to the `ovn` crate.
pub const MODEL_PATH: &str = "src/nb_model.rs";

/// Reads `<ovn_dir>/schema/ovn-nb.ovsschema` and writes the model to
/// `<ovn_dir>/src/nb_model.rs`; returns the path written.
pub fn write(ovn_dir: &Path) -> Result<PathBuf, String> {
    let schema_path = ovn_dir.join(SCHEMA_PATH);
    let schema = std::fs::read_to_string(&schema_path)
        .map_err(|e| format!("reading {}: {e}", schema_path.display()))?;
    let model = generate(&schema)?;
    let model_path = ovn_dir.join(MODEL_PATH);
    std::fs::write(&model_path, model)
        .map_err(|e| format!("writing {}: {e}", model_path.display()))?;
    Ok(model_path)
}

/// The model for the schema `schema_json` (the text of an `.ovsschema`
/// file), formatted by `rustfmt` (`$RUSTFMT` if set) exactly as `cargo fmt`
/// leaves it: the text `ovn/src/nb_model.rs` must hold.
pub fn generate(schema_json: &str) -> Result<String, String> {
    let schema: Value =
        serde_json::from_str(schema_json).map_err(|e| format!("parsing the schema: {e}"))?;
    rustfmt(&render(&schema)?)
}

/// Formats Rust source with `rustfmt` for edition 2024, the workspace's.
pub fn rustfmt(source: &str) -> Result<String, String> {
    let program = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    let mut child = Command::new(&program)
        .args(["--edition", "2024"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.to_string_lossy()))?;
    // rustfmt reads all of its input before it writes anything.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(source.as_bytes())
        .map_err(|e| format!("feeding rustfmt: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for rustfmt: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustfmt failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("rustfmt output: {e}"))
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// `Logical_Router_Port` → `LogicalRouterPort`, `from-lport` → `FromLport`.
fn camel(name: &str) -> String {
    let s: String = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect();
    match s.chars().next() {
        None => "Empty".to_string(),
        Some(c) if c.is_ascii_digit() => format!("V{s}"),
        // `Self` is the only capitalised keyword.
        Some(_) if s == "Self" => "Self_".to_string(),
        Some(_) => s,
    }
}

/// A field or module name: `type` → `r#type`.
fn ident(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if KEYWORDS.contains(&s.as_str()) {
        format!("r#{s}")
    } else {
        s
    }
}

/// A constant name: `external_ids` → `EXTERNAL_IDS`.
fn upper(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

/// JSON with object keys sorted, so the text does not depend on whether
/// `serde_json` preserves the file's order (a feature other crates of the
/// workspace may turn on).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let sorted: BTreeMap<&String, &Value> = o.iter().collect();
            let items: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), canonical(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn sorted_keys(o: &serde_json::Map<String, Value>) -> Vec<&String> {
    let mut keys: Vec<&String> = o.keys().collect();
    keys.sort();
    keys
}

fn bad(what: &str, v: &Value) -> String {
    format!("unexpected {what} in the schema: {}", canonical(v))
}

/// A base type (RFC 7047 §3.2): the atomic type and, for strings, the
/// enumerated values.
struct Base {
    atomic: String,
    enumeration: Vec<String>,
}

fn base(v: &Value) -> Result<Base, String> {
    match v {
        Value::String(s) => Ok(Base {
            atomic: s.clone(),
            enumeration: vec![],
        }),
        Value::Object(o) => {
            let atomic = o
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("base type", v))?
                .to_string();
            // An enum is `["set", [..]]` or a single atom; only string
            // enums become Rust enums, others keep their atomic type.
            let enumeration = match o.get("enum") {
                Some(Value::Array(a)) if a.first().and_then(Value::as_str) == Some("set") => a
                    .get(1)
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("enum", v))?
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => vec![],
            };
            let enumeration = if atomic == "string" {
                enumeration
            } else {
                vec![]
            };
            Ok(Base {
                atomic,
                enumeration,
            })
        }
        _ => Err(bad("base type", v)),
    }
}

fn atom(b: &Base) -> Result<&'static str, String> {
    Ok(match b.atomic.as_str() {
        "integer" => "i64",
        "real" => "f64",
        "boolean" => "bool",
        "string" => "String",
        "uuid" => "Uuid",
        other => return Err(format!("unknown atomic type {other}")),
    })
}

/// One column of a table, with the Rust names and types it maps to.
struct Column {
    name: String,
    /// The schema's type, for the field's documentation.
    doc: String,
    /// Constant in the table module.
    constant: String,
    field: String,
    /// Field type, seen from the model's top level.
    rust: String,
    encode: &'static str,
    decode: &'static str,
    /// `(enum name, values)` for the key and value, when enumerated.
    enums: Vec<(String, Vec<String>)>,
}

fn column(module: &str, name: &str, c: &Value) -> Result<Column, String> {
    let ty = c.get("type").ok_or_else(|| bad("column", c))?;
    let (key, value, min, max) = match ty {
        Value::Object(o) => {
            let min = o.get("min").and_then(Value::as_u64).unwrap_or(1);
            let max = match o.get("max") {
                None => Some(1),
                Some(Value::String(s)) if s == "unlimited" => None,
                Some(m) => Some(m.as_u64().ok_or_else(|| bad("max", m))?),
            };
            let key = base(o.get("key").ok_or_else(|| bad("column type", ty))?)?;
            (key, o.get("value").map(base).transpose()?, min, max)
        }
        _ => (base(ty)?, None, 1, Some(1)),
    };
    let mut enums = Vec::new();
    // An enumerated key and value of one map would need two names.
    let both =
        !key.enumeration.is_empty() && value.as_ref().is_some_and(|v| !v.enumeration.is_empty());
    let mut rust_of = |b: &Base, suffix: &str| -> Result<String, String> {
        if b.enumeration.is_empty() {
            return Ok(atom(b)?.to_string());
        }
        let name = format!("{}{}", camel(name), if both { suffix } else { "" });
        enums.push((name.clone(), b.enumeration.clone()));
        Ok(format!("{module}::{name}"))
    };
    let k = rust_of(&key, "Key")?;
    let (rust, encode, decode) = match (&value, min, max) {
        (Some(v), _, _) => (
            format!("BTreeMap<{k}, {}>", rust_of(v, "Value")?),
            "map_to_json",
            "map_from_json",
        ),
        (None, 1, Some(1)) => (k, "scalar_to_json", "scalar_from_json"),
        (None, 0, Some(1)) => (
            format!("Option<{k}>"),
            "optional_to_json",
            "optional_from_json",
        ),
        // Reals are not `Ord`.
        (None, _, _) if k == "f64" => (format!("Vec<{k}>"), "vec_to_json", "vec_from_json"),
        (None, _, _) => (format!("BTreeSet<{k}>"), "set_to_json", "set_from_json"),
    };
    let mut constant = upper(name);
    if constant == "TABLE" || constant == "COLUMNS" {
        constant.push_str("_COLUMN");
    }
    Ok(Column {
        name: name.to_string(),
        doc: canonical(ty),
        constant,
        field: ident(name),
        rust,
        encode,
        decode,
        enums,
    })
}

/// The enum of the values of column `column` of `table`.
fn write_enum(
    w: &mut String,
    table: &str,
    column: &str,
    name: &str,
    values: &[String],
) -> Result<(), String> {
    let variants: Vec<String> = values.iter().map(|v| camel(v)).collect();
    let mut seen = variants.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != variants.len() {
        return Err(format!(
            "values of {table}.{column} map to the same variant name: {values:?}"
        ));
    }
    let what = format!("{table}.{column}");
    writeln!(w, "/// A value of column `{column}`.").unwrap();
    writeln!(w, "///").unwrap();
    writeln!(
        w,
        "/// The default is the first value the schema lists: OVSDB gives an\n\
         /// enumerated column no default of its own."
    )
    .unwrap();
    writeln!(
        w,
        "#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]\n\
         #[derive(serde::Serialize, serde::Deserialize)]"
    )
    .unwrap();
    writeln!(w, "pub enum {name} {{").unwrap();
    for (i, (v, var)) in values.iter().zip(&variants).enumerate() {
        writeln!(w, "/// `{v}`").unwrap();
        if i == 0 {
            writeln!(w, "#[default]").unwrap();
        }
        writeln!(w, "#[serde(rename = {v:?})]").unwrap();
        writeln!(w, "{var},").unwrap();
    }
    writeln!(w, "}}\n").unwrap();

    writeln!(w, "impl {name} {{").unwrap();
    writeln!(w, "/// Every value, in the schema's order.").unwrap();
    let all: Vec<String> = variants.iter().map(|v| format!("Self::{v}")).collect();
    writeln!(w, "pub const ALL: &'static [Self] = &[{}];", all.join(", ")).unwrap();
    writeln!(w, "/// The value as OVSDB spells it.").unwrap();
    writeln!(w, "pub const fn as_str(self) -> &'static str {{").unwrap();
    writeln!(w, "match self {{").unwrap();
    for (v, var) in values.iter().zip(&variants) {
        writeln!(w, "Self::{var} => {v:?},").unwrap();
    }
    writeln!(w, "}}").unwrap();
    writeln!(w, "}}").unwrap();
    writeln!(w, "}}\n").unwrap();

    writeln!(w, "impl std::fmt::Display for {name} {{").unwrap();
    writeln!(
        w,
        "fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{"
    )
    .unwrap();
    writeln!(w, "f.write_str(self.as_str())").unwrap();
    writeln!(w, "}}").unwrap();
    writeln!(w, "}}\n").unwrap();

    writeln!(w, "impl std::str::FromStr for {name} {{").unwrap();
    writeln!(w, "type Err = crate::Error;").unwrap();
    writeln!(w, "fn from_str(s: &str) -> crate::Result<Self> {{").unwrap();
    writeln!(
        w,
        "Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| \
         crate::Error::decode({what:?}, format!(\"{{s:?}} is not a value the schema allows\")))"
    )
    .unwrap();
    writeln!(w, "}}").unwrap();
    writeln!(w, "}}\n").unwrap();

    writeln!(w, "impl crate::datum::Atom for {name} {{").unwrap();
    writeln!(w, "fn to_json(&self) -> serde_json::Value {{").unwrap();
    writeln!(w, "serde_json::Value::from(self.as_str())").unwrap();
    writeln!(w, "}}").unwrap();
    writeln!(
        w,
        "fn from_json(v: &serde_json::Value) -> crate::Result<Self> {{"
    )
    .unwrap();
    writeln!(
        w,
        "v.as_str().ok_or_else(|| crate::Error::decode({what:?}, v.to_string()))?.parse()"
    )
    .unwrap();
    writeln!(w, "}}").unwrap();
    writeln!(w, "}}").unwrap();
    Ok(())
}

/// The model's source, unformatted.
fn render(schema: &Value) -> Result<String, String> {
    let name = schema
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("schema", schema))?;
    let version = schema
        .get("version")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("schema", schema))?;
    let tables = schema
        .get("tables")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("schema", schema))?;

    let mut out = String::new();
    let w = &mut out;
    writeln!(
        w,
        "// The typed model of {name} {version}, generated by `cargo xtask nb-model` from\n\
         // `ovn/schema/ovn-nb.ovsschema`; do not edit.\n"
    )
    .unwrap();
    writeln!(w, "use std::collections::{{BTreeMap, BTreeSet}};\n").unwrap();
    writeln!(w, "use crate::datum::{{self, Uuid}};").unwrap();
    writeln!(w, "use crate::error::Result;").unwrap();
    writeln!(w, "use crate::table::{{Row, Table, decode_column}};\n").unwrap();
    writeln!(w, "/// Name of the database the model was generated from.").unwrap();
    writeln!(w, "pub const SCHEMA_NAME: &str = {name:?};").unwrap();
    writeln!(w, "/// Version of the schema the model was generated from.").unwrap();
    writeln!(w, "pub const SCHEMA_VERSION: &str = {version:?};").unwrap();

    let names = sorted_keys(tables);
    let module = |t: &str| ident(&t.to_ascii_lowercase());
    writeln!(w, "/// Every table of the schema.").unwrap();
    let all: Vec<String> = names
        .iter()
        .map(|t| format!("{}::TABLE", module(t)))
        .collect();
    writeln!(w, "pub const TABLES: &[&str] = &[{}];", all.join(", ")).unwrap();

    for tname in names {
        let t = &tables[tname];
        let sname = camel(tname);
        let mname = module(tname);
        let cols = t
            .get("columns")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("table", t))?;
        let columns = sorted_keys(cols)
            .into_iter()
            .map(|c| column(&mname, c, &cols[c]))
            .collect::<Result<Vec<_>, _>>()?;
        let has_ext = columns
            .iter()
            .any(|c| c.name == "external_ids" && c.rust == "BTreeMap<String, String>");

        writeln!(
            w,
            "\n/// Table and column names of `{tname}`, and the values of its enumerated columns."
        )
        .unwrap();
        writeln!(w, "pub mod {mname} {{").unwrap();
        writeln!(w, "/// The table name.").unwrap();
        writeln!(w, "pub const TABLE: &str = {tname:?};").unwrap();
        for c in &columns {
            writeln!(w, "/// Column `{}`.", c.name).unwrap();
            writeln!(w, "pub const {}: &str = {:?};", c.constant, c.name).unwrap();
        }
        writeln!(w, "/// Every column, `_uuid` excluded.").unwrap();
        let consts: Vec<&str> = columns.iter().map(|c| c.constant.as_str()).collect();
        writeln!(w, "pub const COLUMNS: &[&str] = &[{}];", consts.join(", ")).unwrap();
        for c in &columns {
            for (ename, values) in &c.enums {
                writeln!(w).unwrap();
                write_enum(w, tname, &c.name, ename, values)?;
            }
        }
        writeln!(w, "}}").unwrap();

        writeln!(w, "\n/// A row of table `{tname}`.").unwrap();
        writeln!(w, "#[derive(Clone, Debug, Default, PartialEq)]").unwrap();
        writeln!(w, "pub struct {sname} {{").unwrap();
        writeln!(w, "/// `_uuid`: nil for a row not yet written.").unwrap();
        writeln!(w, "pub uuid: Uuid,").unwrap();
        for c in &columns {
            writeln!(w, "/// `{}`: `{}`", c.name, c.doc).unwrap();
            writeln!(w, "pub {}: {},", c.field, c.rust).unwrap();
        }
        writeln!(w, "}}\n").unwrap();

        writeln!(w, "impl Table for {sname} {{").unwrap();
        writeln!(w, "const TABLE: &'static str = {mname}::TABLE;").unwrap();
        writeln!(
            w,
            "const COLUMNS: &'static [&'static str] = {mname}::COLUMNS;"
        )
        .unwrap();
        writeln!(w, "fn uuid(&self) -> &Uuid {{ &self.uuid }}").unwrap();
        writeln!(w, "fn to_row(&self) -> Row {{").unwrap();
        writeln!(w, "let mut row = Row::new();").unwrap();
        for c in &columns {
            writeln!(
                w,
                "row.insert({mname}::{}.to_string(), datum::{}(&self.{}));",
                c.constant, c.encode, c.field
            )
            .unwrap();
        }
        writeln!(w, "row").unwrap();
        writeln!(w, "}}").unwrap();
        writeln!(w, "fn from_row(row: &Row) -> Result<Self> {{").unwrap();
        writeln!(w, "let t = {mname}::TABLE;").unwrap();
        writeln!(w, "Ok(Self {{").unwrap();
        writeln!(
            w,
            "uuid: decode_column(row, t, \"_uuid\", datum::scalar_from_json)?,"
        )
        .unwrap();
        for c in &columns {
            writeln!(
                w,
                "{}: decode_column(row, t, {mname}::{}, datum::{})?,",
                c.field, c.constant, c.decode
            )
            .unwrap();
        }
        writeln!(w, "}})").unwrap();
        writeln!(w, "}}").unwrap();
        if has_ext {
            writeln!(w, "fn external_ids(&self) -> Option<&BTreeMap<String, String>> {{ Some(&self.external_ids) }}").unwrap();
            writeln!(w, "fn external_ids_mut(&mut self) -> Option<&mut BTreeMap<String, String>> {{ Some(&mut self.external_ids) }}").unwrap();
        }
        writeln!(w, "}}").unwrap();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            camel("Logical_Router_Static_Route"),
            "LogicalRouterStaticRoute"
        );
        assert_eq!(camel("ACL"), "Acl");
        assert_eq!(camel("from-lport"), "FromLport");
        assert_eq!(camel("dnat_and_snat"), "DnatAndSnat");
        assert_eq!(camel("6in4"), "V6in4");
        assert_eq!(ident("type"), "r#type");
        assert_eq!(upper("external_ids"), "EXTERNAL_IDS");
    }

    #[test]
    fn enumerated_columns_become_enums() {
        let c = column(
            "acl",
            "severity",
            &serde_json::json!({"type": {"key": {"type": "string",
                "enum": ["set", ["alert", "info"]]}, "min": 0, "max": 1}}),
        )
        .unwrap();
        assert_eq!(c.rust, "Option<acl::Severity>");
        assert_eq!(
            c.enums,
            vec![(
                "Severity".to_string(),
                vec!["alert".to_string(), "info".to_string()]
            )]
        );
        // Integer enums keep their atomic type.
        let c = column(
            "t",
            "n",
            &serde_json::json!({"type": {"key": {"type": "integer", "enum": ["set", [1, 2]]}}}),
        )
        .unwrap();
        assert_eq!((c.rust.as_str(), c.enums.len()), ("i64", 0));
    }
}
