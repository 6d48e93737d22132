//! The network service: every Vpc becomes an OVN logical router with its
//! routes and policies, every Subnet a logical switch on it with an address
//! pool, and every pod on the pod network a port with an address, announced
//! to the CNI through annotations.
//!
//! Each kind reads top to bottom as dereference -> validate (pure) ->
//! allocate (IPAM) -> build the desired OVN rows (pure) -> apply (one
//! owner-scoped OVN transaction) -> status.

pub mod context;
pub mod default_network;
pub mod gc;
pub mod names;
pub mod pod;
pub mod reasons;
pub mod report;
pub mod service;
pub mod subnet;
pub mod vpc;

pub use context::Ctx;
pub use service::Network;
pub use vpcnet_runtime::{Error, Result};
