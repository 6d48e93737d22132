//! ClusterIP Services inside VPCs on the real node, with no kube-proxy: the
//! lb service's OVN load balancers carry real connections to the ready
//! pods of the Service's own VPC only, refuse at once when there are none,
//! and leave no row behind.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vpcnet_e2e::cluster::{Cleanup, OPERATOR_NS, operator_selector, testapp_pod};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::{ovn_rows, web};

const READY: Duration = Duration::from_secs(180);
const CONVERGE: Duration = Duration::from_secs(30);

/// Namespace + Vpc + Subnet for one tenant, registered for cleanup.
fn tenant(k: &Kubectl, c: &mut Cleanup, name: &str, cidr: &str) {
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {name}}}\nspec: {{namespaces: [{name}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {name}-net}}\nspec: {{vpc: {name}, cidrBlock: {cidr}, namespaces: [{name}]}}\n"
    ));
    c.add("vpc", None, name);
    c.add("subnet", None, &format!("{name}-net"));
    c.add("namespace", None, name);
}

/// The `web` Deployment and a ClusterIP Service `web` (80 -> 8080) in
/// front of it.
fn web(k: &Kubectl, ns: &str, replicas: u32) {
    k.must_apply(&format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n\
         spec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n",
        web::deployment(ns, replicas)
    ));
}

fn cluster_ip(k: &Kubectl, ns: &str, svc: &str) -> String {
    k.field("service", Some(ns), svc, "{.spec.clusterIP}")
}

/// Names of the running, not terminating, pods of `web`.
fn web_pods(k: &Kubectl, ns: &str) -> BTreeSet<String> {
    web::pods(k, ns).into_iter().map(|(n, _)| n).collect()
}

/// One connection from `pod` to `ip:port`: the answering server's name, or
/// curl's exit code and how long it took to fail.
fn connect(
    k: &Kubectl,
    ns: &str,
    pod: &str,
    ip: &str,
    port: u16,
) -> Result<String, (String, Duration)> {
    let url = format!("http://{ip}:{port}/");
    let started = Instant::now();
    let out = k.exec(ns, pod, &["curl", "-s", "-S", "--max-time", "3", &url]);
    if !out.ok {
        return Err((out.stderr, started.elapsed()));
    }
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("server="))
        .map(str::to_string)
        .ok_or((format!("no server in {:?}", out.stdout), started.elapsed()))
}

/// Whether curl's error says the connection was refused (exit code 7, which
/// curl words "Connection refused" or "Couldn't connect to server").
fn refused(err: &str) -> bool {
    err.contains("curl: (7)") && !err.contains("No route")
}

/// The servers answering `n` connections to `ip:80`.
fn servers(k: &Kubectl, ns: &str, client: &str, ip: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| connect(k, ns, client, ip, 80).ok())
        .collect()
}

#[test]
fn a_cluster_ip_balances_over_ready_pods_follows_scale_and_refuses_when_empty() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let ns = "e2e-svc";
    tenant(&k, &mut c, ns, "10.0.1.0/24");
    web(&k, ns, 3);
    k.must_apply(&testapp_pod(ns, "client", None));
    k.wait_ready(ns, &["client"], READY);
    web::wait_available(&k, ns);
    let ip = cluster_ip(&k, ns, "web");
    assert!(ip.starts_with("10.96."), "a cluster address: {ip}");

    // All three backends answer, each a pod of the Deployment.
    let pods = web_pods(&k, ns);
    k.eventually(CONVERGE, "all 3 backends answer on the ClusterIP", || {
        servers(&k, ns, "client", &ip, 12) == pods
    });

    // Scale down to 1: no request goes to a removed pod.
    web::scale(&k, ns, 1);
    let left = web_pods(&k, ns);
    k.eventually(CONVERGE, "only the remaining pod answers", || {
        servers(&k, ns, "client", &ip, 3) == left
    });
    let seen = servers(&k, ns, "client", &ip, 10);
    assert_eq!(
        seen, left,
        "10 requests after scale-down reach only {left:?}"
    );

    // Scale to 0: refused at once, not a timeout.
    web::scale(&k, ns, 0);
    k.eventually(CONVERGE, "the empty Service refuses", || {
        connect(&k, ns, "client", &ip, 80).is_err_and(|(e, _)| refused(&e))
    });
    let (err, took) = connect(&k, ns, "client", &ip, 80).expect_err("no backend");
    assert!(refused(&err), "refused, not {err}");
    assert!(
        took < Duration::from_secs(2),
        "refused at once, took {took:?}"
    );

    // Back to 2: traffic returns.
    web::scale(&k, ns, 2);
    let back = web_pods(&k, ns);
    k.eventually(CONVERGE, "the new pods answer", || {
        servers(&k, ns, "client", &ip, 10) == back
    });

    // One row, owned by the Service, in the VPC's group; gone with the Service.
    let owner = format!("Service/{ns}/web");
    assert_eq!(
        ovn_rows::owners().get(&owner),
        Some(&1),
        "one row per protocol"
    );
    assert!(
        ovn_rows::lb_group_members(ns).contains(&owner),
        "the Service's row is a member of its VPC's group"
    );
    k.ok(&["delete", "service", "-n", ns, "web"]);
    k.eventually(CONVERGE, "the Service's row is deleted", || {
        !ovn_rows::owners().contains_key(&owner)
    });
}

#[test]
fn two_vpcs_with_the_same_cidr_and_service_names_reach_only_their_own_pods() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let (x, y) = ("e2e-svx", "e2e-svy");
    tenant(&k, &mut c, x, "10.0.1.0/24");
    tenant(&k, &mut c, y, "10.0.1.0/24");
    for ns in [x, y] {
        web(&k, ns, 2);
        // The same address in both VPCs, for the clients too.
        k.must_apply(&testapp_pod(ns, "client", Some("10.0.1.100")));
    }
    for ns in [x, y] {
        k.wait_ready(ns, &["client"], READY);
        web::wait_available(&k, ns);
    }
    let (ip_x, ip_y) = (cluster_ip(&k, x, "web"), cluster_ip(&k, y, "web"));
    for (ns, ip) in [(x, &ip_x), (y, &ip_y)] {
        let pods = web_pods(&k, ns);
        k.eventually(
            CONVERGE,
            &format!("{ns}'s Service reaches its 2 pods"),
            || servers(&k, ns, "client", ip, 10) == pods,
        );
    }
    // The other tenant's ClusterIP does not exist inside a VPC.
    for (ns, other_ip) in [(x, &ip_y), (y, &ip_x)] {
        let got = connect(&k, ns, "client", other_ip, 80);
        assert!(
            got.is_err(),
            "{ns} must not reach the other VPC's Service: {got:?}"
        );
    }
    // Each VPC's group holds only its own Services.
    assert_eq!(
        ovn_rows::lb_group_members(x),
        vec![format!("Service/{x}/web")]
    );
    assert_eq!(
        ovn_rows::lb_group_members(y),
        vec![format!("Service/{y}/web")]
    );

    // A restarted operator writes nothing: the same rows stay.
    let before = ovn_rows::lb_rows();
    k.ok(&[
        "delete",
        "pod",
        "-n",
        OPERATOR_NS,
        "-l",
        &operator_selector(),
        "--wait=true",
    ]);
    k.ok(&[
        "wait",
        "-n",
        OPERATOR_NS,
        "--for=condition=Ready",
        "pod",
        "-l",
        &operator_selector(),
        "--timeout=120s",
    ]);
    // The new leader has reconciled every Service by the time it answers a
    // fresh change; make one and let it land.
    k.ok(&["scale", "-n", x, "deployment/web", "--replicas=1"]);
    k.eventually(CONVERGE, "the new operator follows a scale-down", || {
        servers(&k, x, "client", &ip_x, 4) == web_pods(&k, x) && web_pods(&k, x).len() == 1
    });
    let after = ovn_rows::lb_rows();
    let unchanged = |rows: &Vec<ovn_rows::LbRow>, ns: &str| -> Vec<ovn_rows::LbRow> {
        rows.iter()
            .filter(|r| r.owner.starts_with(&format!("Service/{ns}/")))
            .cloned()
            .collect()
    };
    assert_eq!(
        unchanged(&before, y),
        unchanged(&after, y),
        "tenant y's rows untouched across a restart"
    );
    assert_eq!(
        unchanged(&after, x).len(),
        1,
        "tenant x's Service still has exactly one row: {after:?}"
    );

    // Deleting everything leaves no row and no group of these VPCs.
    c.run_now();
    k.eventually(
        CONVERGE,
        "no load balancer or group of the deleted VPCs",
        || {
            let owners = ovn_rows::owners();
            !owners.keys().any(|o| o.contains(x) || o.contains(y))
                && !ovn_rows::lb_groups()
                    .iter()
                    .any(|g| g.ends_with(x) || g.ends_with(y))
        },
    );
}

#[test]
fn the_api_servers_service_is_refused_in_the_default_vpc_and_absent_elsewhere() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let ns = "e2e-svapi";
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
    ));
    c.add("namespace", None, ns);
    tenant(&k, &mut c, "e2e-svapi-t", "10.0.7.0/24");
    k.must_apply(&testapp_pod(ns, "client", None));
    k.must_apply(&testapp_pod("e2e-svapi-t", "client", None));
    k.wait_ready(ns, &["client"], READY);
    k.wait_ready("e2e-svapi-t", &["client"], READY);
    let api_ip = cluster_ip(&k, "default", "kubernetes");
    // Default VPC: the row exists without backends (the API server is on the
    // host, outside every VPC), so the connection is refused at once.
    k.eventually(
        CONVERGE,
        "kubernetes.default refuses in the default VPC",
        || {
            connect(&k, ns, "client", &api_ip, 443)
                .is_err_and(|(e, t)| refused(&e) && t < Duration::from_secs(2))
        },
    );
    // A tenant VPC has no such Service at all: no answer.
    let got = connect(&k, "e2e-svapi-t", "client", &api_ip, 443);
    assert!(
        got.as_ref().is_err_and(|(e, _)| !refused(e)),
        "a tenant VPC holds no row for the API server: {got:?}"
    );
}

/// Replies of one `testapp udp-ping` run: (unix ms, server name or `None`
/// for a timeout).
fn udp_log(k: &Kubectl, ns: &str, pod: &str) -> Vec<(u64, Option<String>)> {
    k.exec(ns, pod, &["cat", "/tmp/udp.log"])
        .stdout
        .lines()
        .filter_map(|l| {
            let (ms, rest) = l.split_once(' ')?;
            Some((
                ms.parse().ok()?,
                rest.strip_prefix("server=").map(str::to_string),
            ))
        })
        .collect()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_udp_flow_pinned_to_a_backend_that_leaves_moves_to_a_live_one() {
    // One socket sends a datagram every 100 ms, so its conntrack entry never
    // times out: without the node agent's flush it would stay on the
    // deleted (still terminating, still answering) pod for its whole grace
    // period, and then on nothing.
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let ns = "e2e-svc-udp";
    tenant(&k, &mut c, ns, "10.0.3.0/24");
    k.must_apply(&format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: dns, namespace: {ns}}}\n\
         spec:\n  selector: {{app: web}}\n  ports:\n  - {{name: dns, protocol: UDP, port: 53, targetPort: 8080}}\n",
        web::deployment(ns, 2)
    ));
    k.must_apply(&testapp_pod(ns, "client", None));
    k.wait_ready(ns, &["client"], READY);
    web::wait_available(&k, ns);
    let ip = cluster_ip(&k, ns, "dns");
    let pods = web_pods(&k, ns);
    k.eventually(CONVERGE, "the UDP Service has both backends in OVN", || {
        ovn_rows::lb_rows().iter().any(|r| {
            r.vips
                .get(&format!("{ip}:53"))
                .is_some_and(|b| b.split(',').count() == 2)
        })
    });

    let started = k.exec(
        ns,
        "client",
        &[
            "sh",
            "-c",
            &format!("nohup testapp udp-ping {ip} 53 100 60 >/tmp/udp.log 2>&1 &"),
        ],
    );
    assert!(started.ok, "udp-ping started: {}", started.stderr);
    let mut pinned = None;
    k.eventually(CONVERGE, "the flow is answered", || {
        pinned = udp_log(&k, ns, "client")
            .iter()
            .rev()
            .find_map(|(_, s)| s.clone());
        pinned.is_some()
    });
    let pinned = pinned.unwrap();
    assert!(pods.contains(&pinned), "{pinned} is a backend of {pods:?}");
    // The same socket stays on the same backend while nothing changes.
    std::thread::sleep(Duration::from_secs(1));
    let before: BTreeSet<_> = udp_log(&k, ns, "client")
        .into_iter()
        .filter_map(|(_, s)| s)
        .collect();
    assert_eq!(
        before,
        BTreeSet::from([pinned.clone()]),
        "one flow, one backend"
    );

    let deleted_at = unix_ms();
    k.ok(&["delete", "pod", "-n", ns, &pinned, "--wait=false"]);
    let mut moved = None;
    k.eventually(
        CONVERGE,
        "the flow is answered by the other backend",
        || {
            moved = udp_log(&k, ns, "client")
                .into_iter()
                .find(|(ms, s)| *ms > deleted_at && s.as_ref().is_some_and(|s| *s != pinned));
            moved.is_some()
        },
    );
    let (moved_at, to) = moved.unwrap();
    let took = Duration::from_millis(moved_at - deleted_at);
    println!(
        "UDP flow moved from {pinned} to {} {took:?} after the pod's deletion",
        to.unwrap()
    );
    assert!(
        took < Duration::from_secs(5),
        "moved within 5 s, took {took:?}"
    );
    // Once moved, the deleted pod (still in its grace period) gets nothing.
    std::thread::sleep(Duration::from_secs(1));
    let after_move: Vec<_> = udp_log(&k, ns, "client")
        .into_iter()
        .filter(|(ms, _)| *ms > moved_at)
        .collect();
    assert!(
        after_move
            .iter()
            .all(|(_, s)| s.as_deref() != Some(pinned.as_str())),
        "no reply from {pinned} after the move: {after_move:?}"
    );
}
