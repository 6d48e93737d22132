//! The checked-in `src/nb_model.rs` must be exactly what the generator makes
//! of `schema/ovn-nb.ovsschema`.

use std::path::Path;

#[test]
fn checked_in_nb_model_matches_the_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = std::fs::read_to_string(dir.join(ovn_codegen::SCHEMA_PATH)).expect("schema");
    let generated = ovn_codegen::generate(&schema).expect("the generator runs (rustfmt installed)");
    let on_disk = std::fs::read_to_string(dir.join(ovn_codegen::MODEL_PATH)).expect("model");
    assert!(
        on_disk == generated,
        "{} is out of date, run `cargo xtask nb-model`; first differing line: {:?}",
        ovn_codegen::MODEL_PATH,
        on_disk
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("{}: {a:?} on disk, {b:?} generated", i + 1))
            .unwrap_or_else(|| "one is a prefix of the other".to_string())
    );
}
