//! The vpcnet operator: reconcilers that turn `vpcnet.io/v1` objects and pods
//! into OVN Northbound rows, and the address management behind them.
//!
//! Each reconciler follows the same shape: dereference (read what the object
//! names) -> validate -> build the desired OVN rows (pure, tested without a
//! cluster) -> apply (one owner-scoped OVN transaction) -> update status.

pub mod context;
pub mod default_network;
pub mod error;
pub mod gc;
pub mod ipam;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod nat;
pub mod ovn_view;
pub mod pod;
pub mod seal_key;
pub mod status;
pub mod subnet;
pub mod vpc;

pub use context::Context;
pub use error::{Error, Result};
