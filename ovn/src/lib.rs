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
//!
//! ```no_run
//! use ovn::nb::{self, LogicalSwitch, LogicalSwitchPort, logical_switch};
//! use ovn::owner::{Desired, Owner, ensure_owned};
//! use ovn::{MonitorRequest, Uuid};
//! # async fn demo() -> ovn::Result<()> {
//! // Fails with Error::SchemaMismatch if the server's NB schema is incompatible.
//! let client = nb::connect("unix:/var/run/ovn/ovnnb_db.sock").await?;
//! let owner = Owner::cluster("Subnet", "net1").with_vpc("vpc1");
//! ensure_owned(&client, &owner, vec![
//!     Desired::new(&LogicalSwitch { name: "net1".into(), ..Default::default() }).named("ls"),
//!     Desired::new(&LogicalSwitchPort { name: "pod1.ns1".into(), ..Default::default() })
//!         .child_of(logical_switch::TABLE, logical_switch::PORTS, Uuid::named("ls")),
//! ])
//! .await?;
//! let cache = client.monitor(nb::SCHEMA_NAME, vec![MonitorRequest::of::<LogicalSwitchPort>()]).await?;
//! let ports: Vec<LogicalSwitchPort> = cache.get()?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
pub mod datum;
mod error;
mod monitor;
pub mod nb;
pub mod ops;
pub mod owner;
mod remotes;
mod rpc;
pub mod schema;
mod table;
mod transport;

pub use client::{Client, ClientOptions, TransactObserver, TransactOutcome};
pub use datum::Uuid;
pub use error::{Error, Result};
pub use monitor::{Monitor, MonitorRequest};
pub use ops::{Cond, Mutation, OpResult, Txn, TxnResult};
pub use owner::{Desired, Owner};
pub use schema::DatabaseSchema;
pub use table::{Row, Table};
