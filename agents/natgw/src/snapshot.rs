//! The gateway's last applied NAT state, kept in a ConfigMap so that a
//! recreated gateway pod (on any node) puts its rules back before it has
//! listed the API: listing 10,000 rules costs the API server more than a
//! second, reading one small object does not. The lists then correct
//! whatever changed while the gateway was away.
//!
//! Format: gzip-compressed JSON of [`Snapshot`], in the ConfigMap's
//! `binaryData[SNAPSHOT_KEY]`. A snapshot of another format version or of
//! another gateway is ignored, never half-used.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::Ipv4Addr;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::model::{Dnat, DnatGroup, Fip, GatewayFacts, NatState, ObjKey, Snat};

/// Key of the snapshot in the ConfigMap's `binaryData`.
pub const SNAPSHOT_KEY: &str = "state.json.gz";
/// Bumped whenever [`Snapshot`] changes shape.
pub const FORMAT_VERSION: u32 = 1;
/// Largest snapshot written: a ConfigMap holds at most 1 MiB in all.
pub const MAX_BYTES: usize = 900 * 1024;

/// What was programmed, without the facts of the pod that programmed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// The VpcNatGateway it belongs to.
    pub gateway: String,
    /// EIP addresses with their owner.
    pub eips: Vec<(Ipv4Addr, ObjKey)>,
    /// SNAT rules in programmed order.
    pub snats: Vec<Snat>,
    /// Floating IPs.
    pub fips: Vec<Fip>,
    /// DNAT groups with their backends (a list: JSON keys are strings).
    pub dnats: Vec<(DnatGroup, Vec<Dnat>)>,
}

/// Why a stored snapshot is not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not gzip or not JSON of the expected shape.
    #[error("snapshot is unreadable: {0}")]
    Unreadable(String),
    /// Written by an agent with another format.
    #[error("snapshot has format version {found}, this agent reads {FORMAT_VERSION}")]
    Version {
        /// The stored version.
        found: u32,
    },
    /// Written for another gateway.
    #[error("snapshot belongs to gateway {found}, not {expected}")]
    Gateway {
        /// The stored gateway.
        found: String,
        /// This agent's gateway.
        expected: String,
    },
    /// Too large for a ConfigMap.
    #[error("snapshot is {0} bytes compressed, over the {MAX_BYTES}-byte limit")]
    TooLarge(usize),
}

impl Snapshot {
    /// The programmed part of `state` (skipped objects are not programmed).
    pub fn of(gateway: &str, state: &NatState) -> Self {
        Snapshot {
            version: FORMAT_VERSION,
            gateway: gateway.to_string(),
            eips: state.eips.iter().map(|(ip, k)| (*ip, k.clone())).collect(),
            snats: state.snats.clone(),
            fips: state.fips.clone(),
            dnats: state.dnats.iter().map(|(g, d)| (*g, d.clone())).collect(),
        }
    }

    /// The state to apply on a gateway whose pod has `facts`.
    pub fn into_state(self, facts: GatewayFacts) -> NatState {
        NatState {
            facts: Some(facts),
            eips: self.eips.into_iter().collect(),
            snats: self.snats,
            fips: self.fips,
            dnats: self.dnats.into_iter().collect::<BTreeMap<_, _>>(),
            skipped: BTreeMap::new(),
        }
    }

    /// Gzip-compressed JSON, refused when over [`MAX_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, SnapshotError> {
        let json =
            serde_json::to_vec(self).map_err(|e| SnapshotError::Unreadable(e.to_string()))?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&json)
            .and_then(|()| gz.finish())
            .map_err(|e| SnapshotError::Unreadable(e.to_string()))
            .and_then(|bytes| {
                if bytes.len() > MAX_BYTES {
                    Err(SnapshotError::TooLarge(bytes.len()))
                } else {
                    Ok(bytes)
                }
            })
    }

    /// Reads a snapshot written by [`Snapshot::encode`] for `gateway`.
    pub fn decode(bytes: &[u8], gateway: &str) -> Result<Self, SnapshotError> {
        let mut json = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| SnapshotError::Unreadable(e.to_string()))?;
        // The version first: a newer shape would fail to parse as ours.
        #[derive(Deserialize)]
        struct Header {
            version: u32,
            gateway: String,
        }
        let h: Header =
            serde_json::from_slice(&json).map_err(|e| SnapshotError::Unreadable(e.to_string()))?;
        if h.version != FORMAT_VERSION {
            return Err(SnapshotError::Version { found: h.version });
        }
        if h.gateway != gateway {
            return Err(SnapshotError::Gateway {
                found: h.gateway,
                expected: gateway.to_string(),
            });
        }
        serde_json::from_slice(&json).map_err(|e| SnapshotError::Unreadable(e.to_string()))
    }

    /// Number of rule objects (SNAT, DNAT, FIP) in the snapshot.
    pub fn rule_count(&self) -> usize {
        self.snats.len() + self.fips.len() + self.dnats.iter().map(|(_, d)| d.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, PortRange, Proto};

    fn facts(lan: &str) -> GatewayFacts {
        GatewayFacts {
            name: "gw".into(),
            lan_iface: "eth0".into(),
            lan_ip: lan.parse().unwrap(),
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            ext_iface: "net1".into(),
            random_fully: true,
        }
    }

    /// A gateway with `n` DNAT rules on two EIPs, one SNAT, one FIP and a skip.
    fn state(n: u16) -> NatState {
        let eip1: Ipv4Addr = "172.16.3.10".parse().unwrap();
        let eip2: Ipv4Addr = "172.16.3.11".parse().unwrap();
        let mut st = NatState {
            facts: Some(facts("10.0.255.254")),
            ..NatState::default()
        };
        st.eips.insert(eip1, ObjKey::new(Kind::Eip, "t", "e1"));
        st.eips.insert(eip2, ObjKey::new(Kind::Eip, "t", "e2"));
        st.snats.push(Snat {
            key: ObjKey::new(Kind::Snat, "t", "s"),
            cidr: "10.0.1.0/24".parse().unwrap(),
            eip: eip1,
        });
        st.fips.push(Fip {
            key: ObjKey::new(Kind::Fip, "t", "f"),
            eip: "172.16.3.12".parse().unwrap(),
            internal: "10.0.1.7".parse().unwrap(),
        });
        for i in 0..n {
            let ext = PortRange::parse(&(1000 + i).to_string()).unwrap();
            let g = DnatGroup {
                eip: eip2,
                proto: Proto::Tcp,
                ext,
            };
            st.dnats.insert(
                g,
                vec![Dnat {
                    key: ObjKey::new(Kind::Dnat, "t", &format!("d{i}")),
                    eip: eip2,
                    proto: Proto::Tcp,
                    ext,
                    internal: "10.0.1.8".parse().unwrap(),
                    int_port: PortRange::parse("80").unwrap(),
                }],
            );
        }
        st.skipped.insert(
            ObjKey::new(Kind::Dnat, "t", "pending"),
            crate::model::Skip {
                reason: "NotAccepted".into(),
                message: "waiting".into(),
            },
        );
        st
    }

    #[test]
    fn round_trip_gives_back_what_was_programmed_with_the_new_pods_facts() {
        let st = state(50);
        let bytes = Snapshot::of("gw", &st).encode().unwrap();
        let back = Snapshot::decode(&bytes, "gw").unwrap();
        assert_eq!(back.rule_count(), 52);
        let restored = back.into_state(facts("10.0.255.253"));
        assert_eq!(restored.eips, st.eips);
        assert_eq!(restored.snats, st.snats);
        assert_eq!(restored.fips, st.fips);
        assert_eq!(restored.dnats, st.dnats);
        // Skips are not programmed, so not restored; facts are the new pod's.
        assert!(restored.skipped.is_empty());
        assert_eq!(
            restored.facts.unwrap().lan_ip,
            "10.0.255.253".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn ten_thousand_rules_fit_a_configmap() {
        let bytes = Snapshot::of("gw", &state(10_000)).encode().unwrap();
        assert!(bytes.len() < MAX_BYTES / 4, "{} bytes", bytes.len());
    }

    #[test]
    fn another_gateway_version_or_garbage_is_refused() {
        let mut snap = Snapshot::of("gw", &state(3));
        let bytes = snap.encode().unwrap();
        assert!(matches!(
            Snapshot::decode(&bytes, "other"),
            Err(SnapshotError::Gateway { .. })
        ));
        snap.version = FORMAT_VERSION + 1;
        assert!(matches!(
            Snapshot::decode(&snap.encode().unwrap(), "gw"),
            Err(SnapshotError::Version { found }) if found == FORMAT_VERSION + 1
        ));
        assert!(matches!(
            Snapshot::decode(b"not gzip", "gw"),
            Err(SnapshotError::Unreadable(_))
        ));
        assert!(matches!(
            Snapshot::decode(&bytes[..bytes.len() / 2], "gw"),
            Err(SnapshotError::Unreadable(_))
        ));
    }
}
