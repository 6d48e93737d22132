//! Helpers for end-to-end tests against a running cluster-in-a-box
//! (`cargo xtask box up`). Tests drive the cluster with the real `kubectl`,
//! exactly as a user would.

pub mod cluster;
pub mod corpus;
pub mod external;
pub mod ha;
pub mod kubectl;
pub mod natgw;
pub mod node;
pub mod olm;
pub mod other_install;
pub mod ovn_rows;
pub mod tenant;
pub mod web;

use std::path::PathBuf;

/// The box's constants: `e2e/box/box.env`, which its scripts source.
pub use vpcnet_test_support::box_env;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e lives in the repository")
        .to_path_buf()
}

/// Where the box keeps its state (`VPCNET_BOX_DIR`, else box.env's default).
pub fn box_dir() -> PathBuf {
    box_env::box_dir()
}
