//! `vpcnet-natgw`: the agent inside a NAT gateway pod. It computes the whole
//! NAT table of its gateway from the API (`desired`), renders it as
//! `iptables-restore` input for its own chains (`render`) and applies it
//! atomically, keeping EIP addresses, conntrack and drift in line (`apply`);
//! counting rules give each rule's traffic as metrics (`acct`).

pub mod acct;
pub mod addrs;
pub mod apply;
pub mod conntrack;
pub mod desired;
pub mod drift;
pub mod garp;
pub mod ha;
pub mod http;
pub mod iptables;
pub mod k8s;
pub mod model;
pub mod netns;
pub mod render;
pub mod routes;
pub mod snapshot;
pub mod snapshot_store;
pub mod uptime;
