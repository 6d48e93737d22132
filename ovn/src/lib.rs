//! An OVSDB (RFC 7047) client with monitor caches, automatic reconnection and
//! a typed model of OVN_Northbound.
//!
//! * [`Client`] speaks JSON-RPC over `unix:<path>` or `tcp:<host>:<port>`:
//!   `list_dbs`, `get_schema`, `transact` (built with [`Txn`]), `lock`,
//!   `monitor_cond_since` into a [`Monitor`] cache, `monitor_cancel`, and
//!   `cancel` (sent for a `transact` whose caller gave up).
//! * [`nb`] holds one generated struct per Northbound table; [`Txn`] accepts
//!   them directly ([`Txn::insert_row`]).
//! * [`owner`] implements the ownership convention
//!   (`external_ids:vpcnet.io/owner`) and idempotent `ensure_owned`.

mod client;
pub mod datum;
mod error;
mod monitor;
pub mod nb;
pub mod ops;
pub mod owner;
mod rpc;
pub mod schema;
mod table;
mod transport;

pub use client::{Client, ClientOptions};
pub use datum::Uuid;
pub use error::{Error, Result};
pub use monitor::{Monitor, MonitorRequest};
pub use ops::{Cond, Mutation, OpResult, Txn, TxnResult};
pub use owner::{Desired, Owner};
pub use schema::DatabaseSchema;
pub use table::{Row, Table};
