//! The shared runtime of the vpcnet operator. It owns the process
//! singletons — the leader lease, the in-memory IPAM, the OVN Northbound
//! connection and its monitor, one watch per Kubernetes kind — and drives
//! the services that plug into it through [`Service`].
//!
//! A service (network, NAT, later load balancers, DNS, security groups) is a
//! crate of its own that depends on this one and never on another service:
//! services share facts only through the API (status fields) or through the
//! ownership of OVN rows.

pub mod api_server;
pub mod applier;
pub mod driver;
pub mod error;
pub mod gc;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod ovn_view;
pub mod pools;
pub mod rebuild;
pub mod refusal;
pub mod run;
pub mod runtime;
pub mod seal_key;
pub mod service;
pub mod status;
pub mod telemetry;
pub mod workqueue;

pub use error::{Error, Result};
pub use runtime::Runtime;
pub use service::Service;
pub use vpcnet_ipam as ipam;
