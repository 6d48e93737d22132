//! The gateway pod's routing: it is the VPC's way out, so its default route
//! leaves through the external leg (`net1`), while the VPC's own subnets are
//! reached through the LAN leg (`eth0`) via the VPC router. The pod network
//! plugin gives eth0 a default route first; this replaces it.

use std::net::Ipv4Addr;
use std::process::Command;

use ipnet::Ipv4Net;

/// The routes the gateway needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// External network gateway (default route), if known.
    pub external_gateway: Option<Ipv4Addr>,
    /// External interface.
    pub ext_iface: String,
    /// The VPC router's address on the LAN subnet.
    pub lan_gateway: Option<Ipv4Addr>,
    /// LAN interface.
    pub lan_iface: String,
    /// All subnets of the VPC.
    pub vpc_cidrs: Vec<Ipv4Net>,
}

/// `ip route` argument lists that realise `plan` (pure; the connected LAN
/// subnet needs no route and gets none).
pub fn commands(plan: &Plan, lan_net: Option<Ipv4Net>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if let Some(gw) = plan.external_gateway {
        out.push(vec![
            "route".into(),
            "replace".into(),
            "default".into(),
            "via".into(),
            gw.to_string(),
            "dev".into(),
            plan.ext_iface.clone(),
        ]);
    }
    if let Some(gw) = plan.lan_gateway {
        for cidr in &plan.vpc_cidrs {
            if Some(*cidr) == lan_net {
                continue;
            }
            out.push(vec![
                "route".into(),
                "replace".into(),
                cidr.to_string(),
                "via".into(),
                gw.to_string(),
                "dev".into(),
                plan.lan_iface.clone(),
            ]);
        }
    }
    out
}

/// Applies `plan` with `ip` in the current network namespace.
pub fn ensure(plan: &Plan, lan_net: Option<Ipv4Net>) -> Result<(), String> {
    for args in commands(plan, lan_net) {
        let out = Command::new("ip")
            .args(&args)
            .output()
            .map_err(|e| format!("running ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_via_external_and_vpc_subnets_via_lan() {
        let plan = Plan {
            external_gateway: Some("172.16.3.2".parse().unwrap()),
            ext_iface: "net1".into(),
            lan_gateway: Some("10.0.1.1".parse().unwrap()),
            lan_iface: "eth0".into(),
            vpc_cidrs: vec![
                "10.0.1.0/24".parse().unwrap(),
                "10.0.2.0/24".parse().unwrap(),
            ],
        };
        let cmds: Vec<String> = commands(&plan, Some("10.0.1.0/24".parse().unwrap()))
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            cmds,
            vec![
                "route replace default via 172.16.3.2 dev net1",
                "route replace 10.0.2.0/24 via 10.0.1.1 dev eth0"
            ]
        );
    }

    #[test]
    fn nothing_without_gateways() {
        let plan = Plan {
            external_gateway: None,
            ext_iface: "net1".into(),
            lan_gateway: None,
            lan_iface: "eth0".into(),
            vpc_cidrs: vec![],
        };
        assert!(commands(&plan, None).is_empty());
    }
}
