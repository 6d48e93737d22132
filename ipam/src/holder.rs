//! Who holds an address. Typed, so a holder is never parsed back out of a
//! string and two kinds can never spell the same key.

use std::fmt;

/// The holder of one address in one pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    /// A pod's address on its subnet.
    Pod {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
    },
    /// An IptablesEIP's external address.
    Eip {
        /// Namespace.
        namespace: String,
        /// EIP name.
        name: String,
    },
    /// A NAT gateway's own external (`net1`) address.
    NatGateway {
        /// Gateway name (cluster-scoped).
        name: String,
    },
    /// A Vip's reserved address on its subnet.
    Vip {
        /// Namespace.
        namespace: String,
        /// Vip name.
        name: String,
    },
}

impl Holder {
    /// A pod.
    pub fn pod(namespace: &str, name: &str) -> Self {
        Holder::Pod {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// An EIP.
    pub fn eip(namespace: &str, name: &str) -> Self {
        Holder::Eip {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A Vip.
    pub fn vip(namespace: &str, name: &str) -> Self {
        Holder::Vip {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A NAT gateway's external address.
    pub fn nat_gateway(name: &str) -> Self {
        Holder::NatGateway { name: name.into() }
    }

    /// The namespace of a namespaced holder.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Holder::Pod { namespace, .. }
            | Holder::Eip { namespace, .. }
            | Holder::Vip { namespace, .. } => Some(namespace),
            Holder::NatGateway { .. } => None,
        }
    }

    /// The holder's kind, as a tenant reads it.
    pub fn kind(&self) -> &'static str {
        match self {
            Holder::Pod { .. } => "pod",
            Holder::Eip { .. } => "eip",
            Holder::NatGateway { .. } => "natgw",
            Holder::Vip { .. } => "vip",
        }
    }

    /// The holder's object name.
    pub fn name(&self) -> &str {
        match self {
            Holder::Pod { name, .. }
            | Holder::Eip { name, .. }
            | Holder::Vip { name, .. }
            | Holder::NatGateway { name } => name,
        }
    }
}

/// `pod/ns/name`, `eip/ns/name`, `natgw/name`: the form logs have always used.
impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace() {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind(), self.name()),
            None => write!(f, "{}/{}", self.kind(), self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_never_share_a_key() {
        assert_ne!(Holder::pod("a", "x"), Holder::eip("a", "x"));
        assert_eq!(Holder::pod("a", "x").to_string(), "pod/a/x");
        assert_eq!(Holder::eip("a", "x").to_string(), "eip/a/x");
        assert_eq!(Holder::nat_gateway("g").to_string(), "natgw/g");
        assert_ne!(Holder::vip("a", "x"), Holder::eip("a", "x"));
        assert_eq!(Holder::vip("a", "x").to_string(), "vip/a/x");
    }
}
