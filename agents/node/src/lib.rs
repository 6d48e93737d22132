//! `vpcnet-node`: what each node must do for the tenants' traffic that no
//! central component can, because the state lives in the node's own
//! datapath.
//!
//! Today that is one job. OVN (23.03) load balancers keep a conntrack entry
//! per UDP flow; when a backend leaves a Service, OVN removes it from the
//! `Load_Balancer` row but leaves the entries, and a client that keeps
//! sending from the same port (a DNS resolver, a game, a syslog sender)
//! stays pinned to the backend that is gone for as long as it keeps
//! sending. OVN 23.06 added `options:ct_flush`; until then this agent
//! watches the UDP load balancers vpcnet owns and deletes, from the node's
//! Open vSwitch conntrack, every entry to a VIP whose backend is no longer
//! one of that VIP's backends (or whose VIP is gone).

pub mod conntrack;
pub mod flusher;
pub mod stale;
pub mod unixctl;
pub mod vips;
