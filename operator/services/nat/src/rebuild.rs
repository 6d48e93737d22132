//! The NAT service's part of the address state at start: each gateway's
//! external address (its status is the platform admin's and ours) and each
//! EIP address that carries the operator's seal. A tenant with a broad role
//! can write its EIPs' status; without the seal that takes no address.

use kube::ResourceExt;
use vpcnet_api::seal::SealKey;
use vpcnet_api::{IptablesEIP, VpcNatGateway};
use vpcnet_runtime::rebuild::{Claim, Source};

/// The claims of gateways and EIPs, and how many EIP claims were refused
/// (pure).
pub fn claims(
    gateways: &[VpcNatGateway],
    eips: &[IptablesEIP],
    key: &SealKey,
    external_subnet: &str,
) -> (Vec<Claim>, usize) {
    let mut out = Vec::new();
    let mut untrusted = 0;
    for gw in gateways {
        if let Some(ip) = gw
            .status
            .as_ref()
            .and_then(|s| s.external_ip.as_ref())
            .and_then(|i| i.parse().ok())
        {
            out.push(Claim {
                source: Source::Status,
                subnet: crate::gateway::external_subnet(gw, external_subnet),
                holder: crate::gateway::external_holder(&gw.name_any()),
                ip,
            });
        }
        // Two replicas: replica 1's external address ...
        if gw.spec.replicas == 2
            && let Some(ip) = gw
                .status
                .as_ref()
                .and_then(|s| s.external_ips.get(1))
                .and_then(|i| i.parse().ok())
        {
            out.push(Claim {
                source: Source::Status,
                subnet: crate::gateway::external_subnet(gw, external_subnet),
                holder: crate::gateway::second_external_holder(&gw.name_any()),
                ip,
            });
        }
        // ... and the shared LAN address are the gateway's own.
        if gw.spec.replicas == 2
            && crate::gateway::accepted(gw)
            && let Ok(ip) = gw.spec.lan_ip.parse()
        {
            out.push(Claim {
                source: Source::Status,
                subnet: gw.spec.subnet.clone(),
                holder: crate::gateway::external_holder(&gw.name_any()),
                ip,
            });
        }
    }
    for eip in eips {
        if eip.status.as_ref().and_then(|s| s.ip.as_ref()).is_none() {
            continue;
        }
        let Some((ip, gw_name)) = crate::sealed::eip(key, eip) else {
            tracing::warn!(namespace = %eip.namespace().unwrap_or_default(), eip = %eip.name_any(), "EIP status has an address without the operator's seal; ignored");
            untrusted += 1;
            continue;
        };
        let gw = gateways.iter().find(|g| g.name_any() == gw_name);
        out.push(Claim {
            source: Source::Status,
            subnet: crate::eip::external_subnet(eip, gw, external_subnet),
            holder: crate::eip::holder(&eip.namespace().unwrap_or_default(), &eip.name_any()),
            ip,
        });
    }
    (out, untrusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcnet_api::seal::Decision;
    use vpcnet_api::{IptablesEIPSpec, IptablesEIPStatus};

    fn eip(ns: &str, name: &str, ip: &str, key: Option<&SealKey>) -> IptablesEIP {
        let mut e = IptablesEIP::new(
            name,
            IptablesEIPSpec {
                nat_gw_dp: "gw-b".into(),
                ..Default::default()
            },
        );
        e.metadata.namespace = Some(ns.into());
        e.metadata.uid = Some(format!("{ns}-{name}"));
        let seal = key.map(|k| k.seal(&Decision::eip(&e, "gw-b", ip)));
        e.status = Some(IptablesEIPStatus {
            ip: Some(ip.into()),
            nat_gw_dp: Some("gw-b".into()),
            seal,
            ..Default::default()
        });
        e
    }

    #[test]
    fn only_sealed_eip_addresses_are_claimed() {
        let key = SealKey::new(&[9u8; 32]).unwrap();
        let other = SealKey::new(&[7u8; 32]).unwrap();
        let mut copied = eip("a", "copy", "172.16.3.50", Some(&key));
        // A seal copied from b's EIP onto a's: it names another object.
        copied.status = eip("b", "eb", "172.16.3.50", Some(&key)).status;
        let eips = vec![
            eip("b", "eb", "172.16.3.50", Some(&key)),
            // a writes an address into its own EIP's status: no seal.
            eip("a", "ea", "172.16.3.51", None),
            eip("a", "forged", "172.16.3.52", Some(&other)),
            copied,
        ];
        let (claims, untrusted) = claims(&[], &eips, &key, "ext");
        assert_eq!(untrusted, 3, "{claims:?}");
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].holder.to_string(), "eip/b/eb");
        assert_eq!(claims[0].subnet, "ext");
        assert_eq!(claims[0].source, Source::Status);
    }
}
