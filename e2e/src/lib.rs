//! Helpers for end-to-end tests against a running cluster-in-a-box
//! (`cargo xtask box up`). Tests drive the cluster with the real `kubectl`,
//! exactly as a user would.

pub mod cluster;
pub mod corpus;
pub mod external;
pub mod kubectl;
pub mod natgw;
pub mod ovn_rows;
pub mod tenant;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e lives in the repository")
        .to_path_buf()
}

/// Where the box keeps its state (same default as `e2e/box/lib.sh`).
pub fn box_dir() -> PathBuf {
    std::env::var_os("VPCNET_BOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/vpcnet-box"))
}
