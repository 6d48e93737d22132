//! Generates the typed OVN_Northbound model from the checked-in schema so no
//! table or column name is typed by hand anywhere in the crate.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

const SCHEMA: &str = "schema/ovn-nb.ovsschema";

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

fn camel(table: &str) -> String {
    table
        .split('_')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

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

struct Base {
    atomic: String,
    enumeration: Vec<String>,
}

fn base(v: &Value) -> Base {
    match v {
        Value::String(s) => Base {
            atomic: s.clone(),
            enumeration: vec![],
        },
        Value::Object(o) => {
            let enumeration = match o.get("enum") {
                Some(Value::Array(a)) if a.first() == Some(&Value::String("set".into())) => a[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => vec![],
            };
            Base {
                atomic: o["type"].as_str().unwrap().to_string(),
                enumeration,
            }
        }
        _ => panic!("bad base type {v}"),
    }
}

fn rust_atom(b: &Base) -> &'static str {
    match b.atomic.as_str() {
        "integer" => "i64",
        "real" => "f64",
        "boolean" => "bool",
        "string" => "String",
        "uuid" => "Uuid",
        other => panic!("unknown atomic type {other}"),
    }
}

fn main() {
    println!("cargo:rerun-if-changed={SCHEMA}");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let schema_path = manifest.join(SCHEMA);
    let text = std::fs::read_to_string(&schema_path).expect("read schema");
    let schema: Value = serde_json::from_str(&text).expect("parse schema");

    let mut out = String::new();
    let w = &mut out;
    writeln!(w, "/// Name of the database the model was generated from.").unwrap();
    writeln!(
        w,
        "pub const SCHEMA_NAME: &str = {:?};",
        schema["name"].as_str().unwrap()
    )
    .unwrap();
    writeln!(w, "/// Version of the schema the model was generated from.").unwrap();
    writeln!(
        w,
        "pub const SCHEMA_VERSION: &str = {:?};",
        schema["version"].as_str().unwrap()
    )
    .unwrap();
    writeln!(w, "/// The schema file the model was generated from.").unwrap();
    writeln!(
        w,
        "pub const SCHEMA_JSON: &str = include_str!({:?});",
        schema_path.display().to_string()
    )
    .unwrap();

    let tables = schema["tables"].as_object().unwrap();
    writeln!(w, "/// Every table of the schema.").unwrap();
    writeln!(
        w,
        "pub const TABLES: &[&str] = &[{}];",
        tables
            .keys()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();

    for (tname, t) in tables {
        let sname = camel(tname);
        let mname = ident(&tname.to_ascii_lowercase());
        let columns = t["columns"].as_object().unwrap();
        let has_ext = columns
            .get("external_ids")
            .is_some_and(|c| c["type"].get("value").is_some());

        // Name constants.
        writeln!(w, "\n/// Table and column names of `{tname}`.").unwrap();
        writeln!(w, "pub mod {mname} {{").unwrap();
        writeln!(w, "    /// The table name.").unwrap();
        writeln!(w, "    pub const TABLE: &str = {tname:?};").unwrap();
        for (cname, c) in columns {
            let mut cu = upper(cname);
            if cu == "TABLE" || cu == "COLUMNS" {
                cu.push_str("_COLUMN");
            }
            writeln!(w, "    /// Column `{cname}`.").unwrap();
            writeln!(w, "    pub const {cu}: &str = {cname:?};").unwrap();
            let ty = &c["type"];
            let key = if ty.is_object() {
                base(&ty["key"])
            } else {
                base(ty)
            };
            if !key.enumeration.is_empty() {
                writeln!(w, "    /// Values allowed in `{cname}`.").unwrap();
                writeln!(w, "    pub mod {} {{", ident(cname)).unwrap();
                for e in &key.enumeration {
                    writeln!(w, "        pub const {}: &str = {e:?};", upper(e)).unwrap();
                }
                writeln!(w, "    }}").unwrap();
            }
        }
        writeln!(w, "    /// Every column, `_uuid` excluded.").unwrap();
        writeln!(
            w,
            "    pub const COLUMNS: &[&str] = &[{}];",
            columns
                .keys()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .unwrap();
        writeln!(w, "}}").unwrap();

        // Row struct.
        let mut fields = String::new();
        let mut to_row = String::new();
        let mut from_row = String::new();
        for (cname, c) in columns {
            let ty = &c["type"];
            let (key, value, min, max) = if let Some(o) = ty.as_object() {
                let min = o.get("min").and_then(Value::as_u64).unwrap_or(1);
                let max = match o.get("max") {
                    None => Some(1),
                    Some(Value::String(_)) => None,
                    Some(m) => m.as_u64(),
                };
                (base(&o["key"]), o.get("value").map(base), min, max)
            } else {
                (base(ty), None, 1, Some(1))
            };
            let k = rust_atom(&key);
            let (rty, enc, dec) = match (&value, min, max) {
                (Some(v), _, _) => {
                    let v = rust_atom(v);
                    (
                        format!("BTreeMap<{k}, {v}>"),
                        "map_to_json",
                        "map_from_json",
                    )
                }
                (None, 1, Some(1)) => (k.to_string(), "scalar_to_json", "scalar_from_json"),
                (None, 0, Some(1)) => (
                    format!("Option<{k}>"),
                    "optional_to_json",
                    "optional_from_json",
                ),
                (None, _, _) if k == "f64" => {
                    ("Vec<f64>".to_string(), "vec_to_json", "vec_from_json")
                }
                (None, _, _) => (format!("BTreeSet<{k}>"), "set_to_json", "set_from_json"),
            };
            let f = ident(cname);
            let doc = c.get("type").map(|t| t.to_string()).unwrap_or_default();
            writeln!(fields, "    /// `{cname}`: `{doc}`").unwrap();
            writeln!(fields, "    pub {f}: {rty},").unwrap();
            writeln!(
                to_row,
                "        row.insert({cname:?}.to_string(), datum::{enc}(&self.{f}));"
            )
            .unwrap();
            writeln!(from_row,
                "            {f}: match row.get({cname:?}) {{ Some(v) => datum::{dec}(v).map_err(|e| ctx(e, {cname:?}))?, None => Default::default() }},").unwrap();
        }
        writeln!(w, "\n/// A row of table `{tname}`.").unwrap();
        writeln!(w, "#[derive(Clone, Debug, Default, PartialEq)]").unwrap();
        writeln!(w, "pub struct {sname} {{").unwrap();
        writeln!(w, "    /// `_uuid`: nil for a row not yet written.").unwrap();
        writeln!(w, "    pub uuid: Uuid,").unwrap();
        w.push_str(&fields);
        writeln!(w, "}}").unwrap();

        writeln!(w, "impl Table for {sname} {{").unwrap();
        writeln!(w, "    const TABLE: &'static str = {mname}::TABLE;").unwrap();
        writeln!(
            w,
            "    const COLUMNS: &'static [&'static str] = {mname}::COLUMNS;"
        )
        .unwrap();
        writeln!(w, "    fn uuid(&self) -> &Uuid {{ &self.uuid }}").unwrap();
        writeln!(w, "    fn to_row(&self) -> Row {{").unwrap();
        writeln!(w, "        let mut row = Row::new();").unwrap();
        w.push_str(&to_row);
        writeln!(w, "        row").unwrap();
        writeln!(w, "    }}").unwrap();
        writeln!(w, "    fn from_row(row: &Row) -> Result<Self> {{").unwrap();
        writeln!(w, "        let ctx = |e: Error, c: &str| Error::decode(format!(\"{tname}.{{c}}\"), e.to_string());").unwrap();
        writeln!(w, "        Ok(Self {{").unwrap();
        writeln!(w, "            uuid: match row.get(\"_uuid\") {{ Some(v) => datum::scalar_from_json(v)?, None => Uuid::default() }},").unwrap();
        w.push_str(&from_row);
        writeln!(w, "        }})").unwrap();
        writeln!(w, "    }}").unwrap();
        if has_ext {
            writeln!(w, "    fn external_ids(&self) -> Option<&BTreeMap<String, String>> {{ Some(&self.external_ids) }}").unwrap();
            writeln!(w, "    fn external_ids_mut(&mut self) -> Option<&mut BTreeMap<String, String>> {{ Some(&mut self.external_ids) }}").unwrap();
        }
        writeln!(w, "}}").unwrap();
    }

    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("nb_model.rs");
    std::fs::write(dest, out).unwrap();
}
