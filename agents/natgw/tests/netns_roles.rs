//! Two replicas' roles in real network namespaces: the standby has every
//! rule but no address; the active's addresses carry a kernel lifetime, so
//! they go by themselves when its agent stops refreshing them (dies).

mod common;

use std::time::{Duration, Instant};

use common::*;
use vpcnet_natgw::apply::{ApplyConfig, Worker};
use vpcnet_natgw::desired::Inputs;

const VIP: &str = "10.0.1.250";

fn inputs() -> Inputs {
    Inputs {
        vpc_namespaces: vec!["t".into()],
        eips: vec![eip("t", "e2", GW, Some("172.16.3.11"))],
        snats: vec![],
        dnats: vec![dnat(
            "t",
            "web",
            "e2",
            "8888",
            "10.0.1.2",
            Some("80"),
            false,
            false,
        )],
        fips: vec![],
    }
}

fn addrs(t: &Topo) -> String {
    nsx(&t.gw, &["ip", "-4", "-o", "addr", "show"])
}

fn holds(t: &Topo) -> (bool, bool) {
    let a = addrs(t);
    (
        a.contains("172.16.3.11/24"),
        a.contains(&format!("{VIP}/24")),
    )
}

#[test]
fn the_standby_has_the_rules_and_the_active_addresses_die_with_its_agent() {
    let t = Topo::new();
    let cfg = ApplyConfig {
        iptables: "iptables-nft".into(),
        lan_vip: Some(VIP.parse().unwrap()),
        addr_lifetime: Some(1),
        ..Default::default()
    };
    let w = Worker::spawn(Some(t.gw.clone()), cfg).expect("worker");
    let facts = w.call_blocking(|a| a.facts(GW)).expect("facts");
    let st = desired_sealed(Some(facts), GW, &inputs());
    let rep = w.call_blocking(move |a| a.apply(&st, false));
    assert!(rep.error.is_none(), "{:?}", rep.error);
    // Standby: the DNAT rule is there, the EIP and the shared LAN address not.
    let rules = w.call_blocking(|a| a.iptables().owned_snapshot().unwrap());
    assert!(
        format!("{rules:?}").contains("172.16.3.11"),
        "standby keeps the rules: {rules:?}"
    );
    assert_eq!(holds(&t), (false, false), "{}", addrs(&t));
    let _web = Listener::start(&t.pod, "10.0.1.2", 80, 1);
    assert!(
        connect(&t.ext, "172.16.3.11", 8888, None).is_err(),
        "nobody answers for the EIP"
    );

    // Active: both addresses, and traffic through the EIP.
    let r = w.call_blocking(|a| a.set_role(true));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(holds(&t), (true, true), "{}", addrs(&t));
    assert_eq!(
        connect(&t.ext, "172.16.3.11", 8888, None).as_deref(),
        Ok("hi")
    );

    // Refreshed, they stay past their lifetime ...
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(2600) {
        assert_eq!(w.call_blocking(|a| a.refresh_addresses()), Ok(2));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(holds(&t), (true, true), "refreshed: {}", addrs(&t));
    // ... and without a refresh (a dead agent) the kernel takes them away.
    let t1 = Instant::now();
    while holds(&t) != (false, false) {
        assert!(
            t1.elapsed() < Duration::from_secs(4),
            "still there: {}",
            addrs(&t)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone_after = t1.elapsed();
    println!(
        "unrefreshed addresses gone after {} ms",
        gone_after.as_millis()
    );
    assert!(gone_after <= Duration::from_millis(1600), "{gone_after:?}");

    // Stepping down removes them at once; the rules stay.
    w.call_blocking(|a| a.set_role(true));
    assert_eq!(holds(&t), (true, true));
    let r = w.call_blocking(|a| a.set_role(false));
    assert_eq!(holds(&t), (false, false), "{}", addrs(&t));
    assert!(
        r.removed.iter().any(|a| a.to_string() == "172.16.3.11"),
        "{:?}",
        r.removed
    );
    let again = w.call_blocking(|a| a.iptables().owned_snapshot().unwrap());
    assert_eq!(again, rules, "the rules are untouched by the roles");
    // A drift check on the standby adds nothing back.
    let d = w.call_blocking(vpcnet_natgw::drift::check).unwrap();
    assert!(d.readded_addrs.is_empty(), "{d:?}");
    assert_eq!(holds(&t), (false, false));
}
