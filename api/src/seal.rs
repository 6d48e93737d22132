//! Seals: the operator's decisions in a form no tenant can forge.
//!
//! Tenants own their EIPs and rules, and a role that grants `*` on
//! `vpcnet.io` also grants their `/status`. So a status field alone cannot
//! tell the NAT agent "the operator accepted this": the agent programs an
//! object only when its status carries a seal, an HMAC-SHA256 over the
//! decision (kind, namespace, name, uid, generation, gateway, address) keyed
//! by a Secret in the operator's namespace. The uid and generation are set by
//! the API server, so a seal is worthless on another object, on another spec
//! of the same object, and for another address; copying one gains nothing.
//! The agent seals what it reports (`Programmed`) the same way, so `Ready`
//! cannot be derived from anything a tenant can write either.

use kube::Resource;
use ring::hmac;

/// Secret (in the operator's namespace) holding the key, and its data key.
pub const SECRET_NAME: &str = "vpcnet-seal-key";
/// Data key of the Secret.
pub const SECRET_KEY: &str = "key";
/// Environment variable through which the NAT agent gets the key.
pub const AGENT_ENV: &str = crate::contract::agent_env::SEAL_KEY;
/// Bytes of a generated key.
pub const KEY_LEN: usize = 32;

/// What a seal vouches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The operator accepted the object (an EIP's address, a rule's verdict).
    Accepted,
    /// The agent programmed it.
    Programmed,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Accepted => "accepted",
            Purpose::Programmed => "programmed",
        }
    }
}

/// One decision about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Accepted or programmed.
    pub purpose: Purpose,
    /// The object's kind (`IptablesEIP`, `IptablesDnatRule`, ...).
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid (set by the API server).
    pub uid: String,
    /// The generation decided on; `None` where the decision outlives spec
    /// changes (an EIP's address).
    pub generation: Option<i64>,
    /// The NAT gateway that is to carry it.
    pub gateway: String,
    /// The external address involved.
    pub ip: String,
}

impl Decision {
    /// The decision `purpose` about `obj` (its kind, namespace, name and
    /// uid), for `generation`, on `gateway`, at `ip`.
    pub fn about<K: Resource<DynamicType = ()>>(
        purpose: Purpose,
        obj: &K,
        generation: Option<i64>,
        gateway: &str,
        ip: &str,
    ) -> Self {
        let m = obj.meta();
        Self {
            purpose,
            kind: K::kind(&()).into_owned(),
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            generation,
            gateway: gateway.to_string(),
            ip: ip.to_string(),
        }
    }

    /// An EIP's address on `gateway`: not tied to a generation, so a change
    /// of labels or annotations never takes the address down.
    pub fn eip(eip: &crate::IptablesEIP, gateway: &str, ip: &str) -> Self {
        Self::about(Purpose::Accepted, eip, None, gateway, ip)
    }

    /// A Vip's address on its subnet (the subnet stands where an EIP has its
    /// gateway): not tied to a generation, like an EIP's.
    pub fn vip(vip: &crate::Vip, subnet: &str, ip: &str) -> Self {
        Self::about(Purpose::Accepted, vip, None, subnet, ip)
    }

    /// A rule's acceptance, for its current generation.
    pub fn rule<K: Resource<DynamicType = ()>>(rule: &K, gateway: &str, ip: &str) -> Self {
        Self::about(Purpose::Accepted, rule, rule.meta().generation, gateway, ip)
    }

    /// The agent's report that `obj` is programmed, for its current generation.
    pub fn programmed<K: Resource<DynamicType = ()>>(obj: &K, gateway: &str, ip: &str) -> Self {
        Self::about(Purpose::Programmed, obj, obj.meta().generation, gateway, ip)
    }
}

impl Decision {
    /// Unambiguous bytes: every field length-prefixed, so no two decisions
    /// share an encoding.
    fn encode(&self) -> Vec<u8> {
        let generation = self.generation.map(|g| g.to_string()).unwrap_or_default();
        let mut out = Vec::with_capacity(128);
        for part in [
            self.purpose.tag(),
            &self.kind,
            &self.namespace,
            &self.name,
            &self.uid,
            &generation,
            &self.gateway,
            &self.ip,
        ] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// The key that makes and checks seals.
#[derive(Clone)]
pub struct SealKey(hmac::Key);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// A key that cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct BadKey(pub String);

impl std::fmt::Display for BadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadKey {}

impl SealKey {
    /// A key from its bytes; shorter than 16 bytes is refused.
    pub fn new(bytes: &[u8]) -> Result<Self, BadKey> {
        if bytes.len() < 16 {
            return Err(BadKey(format!(
                "seal key has {} bytes, at least 16 are needed",
                bytes.len()
            )));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// Fresh random key bytes.
    pub fn generate() -> Result<Vec<u8>, BadKey> {
        use ring::rand::SecureRandom;
        let mut bytes = vec![0u8; KEY_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| BadKey("no randomness for a seal key".into()))?;
        Ok(bytes)
    }

    /// The seal of `d`, as lowercase hex.
    pub fn seal(&self, d: &Decision) -> String {
        hmac::sign(&self.0, &d.encode())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A short name of this key that reveals nothing of it: pods that use
    /// the key carry it, so a new key rolls them.
    pub fn id(&self) -> String {
        hmac::sign(&self.0, b"vpcnet seal key id").as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `seal` is the seal of `d` (compared in constant time).
    pub fn verify(&self, d: &Decision, seal: &str) -> bool {
        let Some(tag) = from_hex(seal) else {
            return false;
        };
        hmac::verify(&self.0, &d.encode(), &tag).is_ok()
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Decision {
        Decision {
            purpose: Purpose::Accepted,
            kind: "IptablesDnatRule".into(),
            namespace: "a".into(),
            name: "web".into(),
            uid: "u-1".into(),
            generation: Some(2),
            gateway: "gw-a".into(),
            ip: "172.16.3.10".into(),
        }
    }

    #[test]
    fn a_seal_verifies_only_its_own_decision() {
        let key = SealKey::new(&SealKey::generate().unwrap()).unwrap();
        let seal = key.seal(&d());
        assert_eq!(seal.len(), 64);
        assert!(key.verify(&d(), &seal));
        let others = [
            Decision {
                purpose: Purpose::Programmed,
                ..d()
            },
            Decision {
                kind: "IptablesFIPRule".into(),
                ..d()
            },
            Decision {
                namespace: "b".into(),
                ..d()
            },
            Decision {
                name: "web2".into(),
                ..d()
            },
            Decision {
                uid: "u-2".into(),
                ..d()
            },
            Decision {
                generation: Some(3),
                ..d()
            },
            Decision {
                generation: None,
                ..d()
            },
            Decision {
                gateway: "gw-b".into(),
                ..d()
            },
            Decision {
                ip: "172.16.3.11".into(),
                ..d()
            },
        ];
        for other in others {
            assert!(!key.verify(&other, &seal), "{other:?} must not verify");
        }
        // Fields cannot be shifted into each other.
        let a = Decision {
            namespace: "ab".into(),
            name: "c".into(),
            ..d()
        };
        let b = Decision {
            namespace: "a".into(),
            name: "bc".into(),
            ..d()
        };
        assert_ne!(key.seal(&a), key.seal(&b));
    }

    #[test]
    fn another_key_or_garbage_never_verifies() {
        let k1 = SealKey::new(&[1u8; 32]).unwrap();
        let k2 = SealKey::new(&[2u8; 32]).unwrap();
        let seal = k1.seal(&d());
        assert!(!k2.verify(&d(), &seal));
        for junk in ["", "zz", "abc", &seal[..62], "\u{e9}"] {
            assert!(!k1.verify(&d(), junk), "{junk:?}");
        }
        assert!(SealKey::new(b"short").is_err());
        assert_ne!(k1.id(), k2.id());
        assert_eq!(k1.id(), SealKey::new(&[1u8; 32]).unwrap().id());
    }

    #[test]
    fn decisions_name_the_object_they_are_about() {
        let mut eip = crate::IptablesEIP::new("e", Default::default());
        eip.metadata.namespace = Some("a".into());
        eip.metadata.uid = Some("u".into());
        eip.metadata.generation = Some(4);
        let d = Decision::eip(&eip, "gw", "172.16.3.9");
        assert_eq!(
            (d.kind.as_str(), d.namespace.as_str(), d.generation),
            ("IptablesEIP", "a", None)
        );
        let p = Decision::programmed(&eip, "gw", "172.16.3.9");
        assert_eq!((p.purpose, p.generation), (Purpose::Programmed, Some(4)));
    }
}
