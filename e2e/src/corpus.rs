//! The bad-input corpus: manifests the API server must refuse at admission.
//!
//! Each file starts with comment headers:
//! - `# expect: <text>` (one or more): every text must appear in the error;
//!   the first names the offending field's path;
//! - `# setup: <sample file>` (optional): a file of `config/samples/` applied
//!   first, so the manifest is an update of an existing object (immutability).

use std::path::{Path, PathBuf};

/// One corpus case.
#[derive(Debug)]
pub struct Case {
    /// The manifest.
    pub path: PathBuf,
    /// Texts the rejection message must contain.
    pub expect: Vec<String>,
    /// Sample applied before the manifest.
    pub setup: Option<String>,
}

/// Reads every case of a corpus directory, sorted by file name.
pub fn load(dir: &Path) -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    paths.into_iter().map(|p| parse(&p)).collect()
}

fn parse(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).expect("corpus file is readable");
    let mut expect = Vec::new();
    let mut setup = None;
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(v) = line.strip_prefix("# expect:") {
            expect.push(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("# setup:") {
            setup = Some(v.trim().to_string());
        }
    }
    assert!(
        !expect.is_empty(),
        "{} has no `# expect:` header",
        path.display()
    );
    Case {
        path: path.to_path_buf(),
        expect,
        setup,
    }
}
