//! The nodes service: what the operator runs on every node, the CNI
//! DaemonSet (the plugin's installer and the per-node agent `vpcnet-node`).
//!
//! The operator creates it itself, from its own settings and in its own
//! namespace, so that an install that can only ship Deployments (an OLM
//! bundle) still gets its nodes wired: the DaemonSet is applied at start,
//! re-applied whenever it changes or disappears, and never left to drift.

pub mod daemonset;
pub mod service;

pub use daemonset::Settings;
pub use service::Nodes;
