//! The checked-in `crds/` must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let files = vpcnet_api::crds::rendered();
    assert_eq!(files.len(), 11, "one CRD per kind");
    let mut stale = Vec::new();
    for (name, body) in &files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if on_disk == *body => {}
            Ok(_) => stale.push(format!("{name} differs")),
            Err(e) => stale.push(format!("{name}: {e}")),
        }
    }
    let extra: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml") && !files.iter().any(|(f, _)| f == n))
        .collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "crds/ is out of date, run `cargo xtask crds`: stale {stale:?}, not generated {extra:?}"
    );
}
