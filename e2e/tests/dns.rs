//! Per-tenant DNS on the real node: every pod asks the kubelet's
//! `clusterDNS` address and reaches its own VPC's `vpcnet-dns` servers,
//! which answer for the VPC's namespaces only and forward the rest to the
//! external host's resolver. Real clients (dig, and glibc's resolver behind
//! curl and getent) in real pods.

use std::time::{Duration, Instant};

use vpcnet_e2e::cluster::{Cleanup, OPERATOR_NS, testapp_pod};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::{ovn_rows, web};

const READY: Duration = Duration::from_secs(180);
const CONVERGE: Duration = Duration::from_secs(60);
const CLUSTER_DNS: &str = "10.96.0.10";

/// Namespace + Vpc + Subnet + VpcDns for one tenant, registered for cleanup.
fn tenant(k: &Kubectl, c: &mut Cleanup, name: &str, cidr: &str) {
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {name}}}\nspec: {{namespaces: [{name}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {name}-net}}\nspec: {{vpc: {name}, cidrBlock: {cidr}, namespaces: [{name}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcDns\nmetadata: {{name: {name}}}\nspec: {{vpc: {name}, subnet: {name}-net, replicas: 2}}\n"
    ));
    c.add("vpc", None, name);
    c.add("subnet", None, &format!("{name}-net"));
    c.add("namespace", None, name);
    c.add("vpcdns", None, name);
}

/// `web` (a Deployment behind a ClusterIP Service, port `http` 80 -> 8080)
/// and `db`, a headless Service over the same pods.
fn services(k: &Kubectl, ns: &str, replicas: u32) {
    k.must_apply(&format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n\
         spec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: {ns}}}\n\
         spec:\n  clusterIP: None\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 8080}}\n",
        web::deployment(ns, replicas)
    ));
}

/// `dig` in `pod`: (status, answers). `args` are dig's, e.g. `+search web`.
fn dig(k: &Kubectl, ns: &str, pod: &str, args: &[&str]) -> (String, Vec<String>) {
    let mut cmd = vec![
        "dig",
        "+tries=2",
        "+timeout=1",
        "+noall",
        "+comments",
        "+answer",
    ];
    cmd.extend_from_slice(args);
    let out = k.exec(ns, pod, &cmd);
    let status = out
        .stdout
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("NO-ANSWER")
        .to_string();
    let answers = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5).then(|| f[4..].join(" "))
        })
        .collect();
    (status, answers)
}

fn a(k: &Kubectl, ns: &str, pod: &str, args: &[&str]) -> Vec<String> {
    let mut v = dig(k, ns, pod, args).1;
    v.sort();
    v
}

fn ready_vpcdns(k: &Kubectl, name: &str) {
    k.eventually(READY, &format!("VpcDns {name} Ready"), || {
        k.field(
            "vpcdns",
            None,
            name,
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
}

fn reason(k: &Kubectl, name: &str) -> String {
    k.field(
        "vpcdns",
        None,
        name,
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
    )
}

#[test]
fn each_vpc_resolves_its_own_names_only_at_the_cluster_dns_address() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let (na, nb) = ("e2e-dns-a", "e2e-dns-b");
    // Two tenants with the same range and the same Service names.
    tenant(&k, &mut c, na, "10.0.1.0/24");
    tenant(&k, &mut c, nb, "10.0.1.0/24");
    services(&k, na, 2);
    services(&k, nb, 1);
    k.must_apply(&testapp_pod(na, "client", None));
    k.must_apply(&testapp_pod(nb, "client", None));
    k.wait_ready(na, &["client"], READY);
    k.wait_ready(nb, &["client"], READY);
    web::wait_available(&k, na);
    web::wait_available(&k, nb);
    ready_vpcdns(&k, na);
    ready_vpcdns(&k, nb);
    assert_eq!(k.field("vpcdns", None, na, "{.status.vip}"), CLUSTER_DNS);

    // The kubelet gave every pod the same resolver.
    let conf = k.exec(na, "client", &["cat", "/etc/resolv.conf"]).stdout;
    assert!(
        conf.contains(&format!("nameserver {CLUSTER_DNS}")),
        "{conf}"
    );
    assert!(
        conf.contains(&format!("search {na}.svc.cluster.local")),
        "{conf}"
    );

    let ip_a = k.field("service", Some(na), "web", "{.spec.clusterIP}");
    let ip_b = k.field("service", Some(nb), "web", "{.spec.clusterIP}");
    assert_ne!(ip_a, ip_b);
    let fqdn_a = format!("web.{na}.svc.cluster.local");
    k.eventually(CONVERGE, "tenant a resolves its web", || {
        a(&k, na, "client", &["+search", "web"]) == vec![ip_a.clone()]
    });
    // Through the search path, each spelling.
    for name in ["web", &format!("web.{na}"), &format!("web.{na}.svc")] {
        assert_eq!(
            a(&k, na, "client", &["+search", name]),
            vec![ip_a.clone()],
            "{name}"
        );
    }
    let getent = k.exec(na, "client", &["getent", "hosts", &format!("web.{na}")]);
    assert!(getent.stdout.starts_with(&ip_a), "glibc: {getent:?}");
    assert_eq!(a(&k, na, "client", &[&fqdn_a]), vec![ip_a.clone()]);
    // Tenant b's pods get their own web for the same name.
    k.eventually(CONVERGE, "tenant b resolves its own web", || {
        a(&k, nb, "client", &["+search", "web"]) == vec![ip_b.clone()]
    });

    // Headless: the ready pods' VPC addresses.
    let mut pod_ips: Vec<String> = web::pods(&k, na)
        .into_iter()
        .map(|(p, _)| {
            k.field(
                "pod",
                Some(na),
                &p,
                "{.metadata.annotations.vpcnet\\.io/ip_address}",
            )
        })
        .collect();
    pod_ips.sort();
    k.eventually(
        CONVERGE,
        "the headless Service resolves to its pods",
        || a(&k, na, "client", &[&format!("db.{na}.svc.cluster.local")]) == pod_ips,
    );
    // SRV for a named port; PTR for a Service address.
    let srv = a(
        &k,
        na,
        "client",
        &["SRV", &format!("_http._tcp.web.{na}.svc.cluster.local")],
    );
    assert_eq!(srv, vec![format!("0 100 80 {fqdn_a}.")], "SRV");
    let ptr = a(&k, na, "client", &["-x", &ip_a]);
    assert_eq!(ptr, vec![format!("{fqdn_a}.")], "PTR");
    // By name, end to end.
    let curl = k.exec(
        na,
        "client",
        &["curl", "-s", "-S", "--max-time", "3", "http://web/"],
    );
    assert!(
        curl.ok && curl.stdout.contains("server="),
        "curl http://web/: {curl:?}"
    );

    // Tenant b's names do not exist for tenant a: the same answer as a name
    // that never existed.
    for (name, what) in [
        (format!("web.{nb}.svc.cluster.local"), "b's Service"),
        (format!("db.{nb}.svc.cluster.local"), "b's headless Service"),
        (
            format!("nothing.{na}.svc.cluster.local"),
            "a name that does not exist",
        ),
    ] {
        let (status, answers) = dig(&k, na, "client", &[&name]);
        assert_eq!(status, "NXDOMAIN", "{what}: {name}");
        assert!(answers.is_empty(), "{what}: {answers:?}");
    }
    // A name outside the cluster: through the upstream (the external host).
    assert_eq!(
        a(&k, na, "client", &["www.example.test"]),
        vec![vpcnet_e2e::external::host_ip().to_string()],
        "forwarded to the external host's resolver"
    );

    // A Service created after the pod: resolvable within 2 s; deleted: gone
    // within 2 s.
    let late = format!("late.{na}.svc.cluster.local");
    let t0 = Instant::now();
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: {na}}}\n\
         spec:\n  selector: {{app: web}}\n  ports:\n  - {{port: 81, targetPort: 8080}}\n"
    ));
    let late_ip = k.field("service", Some(na), "late", "{.spec.clusterIP}");
    k.eventually(
        Duration::from_secs(2),
        "a new Service resolves within 2 s",
        || a(&k, na, "client", &[&late]) == vec![late_ip.clone()],
    );
    let appeared = t0.elapsed();
    let t1 = Instant::now();
    k.ok(&["delete", "service", "late", "-n", na, "--wait=false"]);
    k.eventually(
        Duration::from_secs(2),
        "a deleted Service is gone within 2 s",
        || dig(&k, na, "client", &[&late]).0 == "NXDOMAIN",
    );
    println!(
        "dns: a new Service answered {} ms after kubectl apply; a deleted one NXDOMAIN {} ms after kubectl delete",
        appeared.as_millis(),
        t1.elapsed().as_millis()
    );

    // One server killed: a client retrying within 1 s never sees a failure.
    let servers = k.ok(&[
        "get",
        "pods",
        "-n",
        OPERATOR_NS,
        "-l",
        &format!("vpcnet.io/vpc-dns={na}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let victim = servers
        .split_whitespace()
        .next()
        .expect("a server pod")
        .to_string();
    let script = format!(
        "fail=0; for i in $(seq 1 40); do r=$(dig +short +tries=2 +timeout=1 {fqdn_a}); \
         [ \"$r\" = \"{ip_a}\" ] || fail=$((fail+1)); sleep 0.1; done; echo fails=$fail"
    );
    let loop_k = k.clone();
    let querier = std::thread::spawn(move || loop_k.exec(na, "client", &["sh", "-c", &script]));
    std::thread::sleep(Duration::from_millis(500));
    k.ok(&["delete", "pod", "-n", OPERATOR_NS, &victim, "--wait=false"]);
    let out = querier.join().expect("the query loop");
    assert!(
        out.stdout.contains("fails=0"),
        "queries while {victim} went: {out:?}"
    );

    // Least privilege: a server's credentials read its zone and nothing else.
    let sa = format!("system:serviceaccount:{OPERATOR_NS}:vpc-dns-{na}");
    let can = |verb: &str, what: &str, ns: &str| {
        k.run(&["auth", "can-i", verb, what, "-n", ns, "--as", &sa])
            .stdout
            .trim()
            == "yes"
    };
    assert!(can(
        "get",
        &format!("configmap/vpc-dns-{na}-zone"),
        OPERATOR_NS
    ));
    assert!(!can(
        "get",
        &format!("configmap/vpc-dns-{nb}-zone"),
        OPERATOR_NS
    ));
    assert!(!can("list", "services", nb), "no Service of another tenant");
    assert!(
        !can("list", "services", na),
        "not even its own: the operator hands it the zone"
    );

    // Bad input: refused with a reason, nothing run.
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: VpcDns\nmetadata: {{name: e2e-dns-bad-vpc}}\nspec: {{vpc: e2e-dns-none, subnet: {na}-net}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: VpcDns\nmetadata: {{name: e2e-dns-bad-subnet}}\nspec: {{vpc: {na}, subnet: {nb}-net}}\n"
    ));
    c.add("vpcdns", None, "e2e-dns-bad-vpc");
    c.add("vpcdns", None, "e2e-dns-bad-subnet");
    k.eventually(CONVERGE, "unknown VPC and foreign subnet refused", || {
        reason(&k, "e2e-dns-bad-vpc") == "VpcNotFound"
            && reason(&k, "e2e-dns-bad-subnet") == "SubnetNotInVpc"
    });
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: VpcDns\nmetadata: {{name: e2e-dns-second}}\nspec: {{vpc: {na}, subnet: {na}-net}}\n"
    ));
    c.add("vpcdns", None, "e2e-dns-second");
    k.eventually(CONVERGE, "a second VpcDns for a VPC refused", || {
        reason(&k, "e2e-dns-second") == "VpcAlreadyServed"
    });
    let events = k.ok(&[
        "get",
        "events",
        "-A",
        "--field-selector",
        "involvedObject.name=e2e-dns-second",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("VpcAlreadyServed"), "an Event: {events}");
    for bad in ["e2e-dns-bad-vpc", "e2e-dns-second"] {
        let deps = k.ok(&[
            "get",
            "deployments",
            "-n",
            OPERATOR_NS,
            "-l",
            &format!("vpcnet.io/vpc-dns={bad}"),
            "-o",
            "name",
        ]);
        assert!(deps.trim().is_empty(), "{bad} runs nothing: {deps}");
    }

    // An egress-only SecurityGroup that allows DNS: its pod starts, reaches
    // its gateway and resolves; what it does not allow stays shut.
    k.must_apply(&format!(
        "apiVersion: vpcnet.io/v1\nkind: SecurityGroup\nmetadata: {{name: dns-only, namespace: {na}}}\n\
         spec:\n  egressRules:\n  - {{protocol: udp, portRangeMin: 53, portRangeMax: 53, remoteType: address, remoteAddress: \"{CLUSTER_DNS}/32\", priority: 10, policy: allow}}\n\
         ---\n{}",
        testapp_pod(na, "guarded", None).replace(
            "  labels:\n",
            "  annotations:\n    vpcnet.io/security_groups: dns-only\n  labels:\n"
        )
    ));
    k.wait_ready(na, &["guarded"], READY);
    let ping = k.exec(na, "guarded", &["ping", "-c", "1", "-W", "2", "10.0.1.1"]);
    assert!(
        ping.ok,
        "an egress-only group still reaches its gateway: {ping:?}"
    );
    k.eventually(
        CONVERGE,
        "an egress-only group resolves through the cluster DNS",
        || a(&k, na, "guarded", &["+search", "web"]) == vec![ip_a.clone()],
    );
    let shut = k.exec(
        na,
        "guarded",
        &["curl", "-s", "--max-time", "2", &format!("http://{ip_a}/")],
    );
    assert!(!shut.ok, "tcp/80 is not allowed: {shut:?}");
    k.ok(&["delete", "pod", "guarded", "-n", na, "--wait=true"]);
    k.ok(&[
        "delete",
        "securitygroup",
        "dns-only",
        "-n",
        na,
        "--wait=true",
    ]);

    // The default VPC has cluster DNS too (the operator's own VpcDns).
    assert_eq!(
        k.field(
            "vpcdns",
            None,
            "ovn-cluster",
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "True",
        "the default VPC's VpcDns serves"
    );

    // Deleting a tenant's VpcDns removes its rows; the other's stay.
    let rows_of = |owner: &str| {
        ovn_rows::lb_rows()
            .into_iter()
            .filter(|r| r.owner == owner)
            .map(|r| r.vips)
            .collect::<Vec<_>>()
    };
    let (owner_a, owner_b) = (format!("VpcDns//{na}"), format!("VpcDns//{nb}"));
    let rows_a = rows_of(&owner_a);
    assert_eq!(rows_a.len(), 2, "one udp and one tcp row: {rows_a:?}");
    assert!(
        rows_a
            .iter()
            .all(|v| v.contains_key(&format!("{CLUSTER_DNS}:53"))),
        "{rows_a:?}"
    );
    k.ok(&["delete", "vpcdns", na, "--wait=true", "--timeout=60s"]);
    k.eventually(CONVERGE, "a deleted VpcDns's rows go", || {
        rows_of(&owner_a).is_empty()
    });
    assert_eq!(rows_of(&owner_b).len(), 2, "b's rows untouched");
    c.run_now();
}

#[test]
fn the_default_vpc_resolves_cluster_names_for_pods_with_no_configuration() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let ns = "e2e-dns-default";
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
    ));
    c.add("namespace", None, ns);
    k.must_apply(&testapp_pod(ns, "client", None));
    k.wait_ready(ns, &["client"], READY);
    ready_vpcdns(&k, "ovn-cluster");
    k.eventually(
        CONVERGE,
        "kubernetes.default resolves in the default VPC",
        || a(&k, ns, "client", &["+search", "kubernetes.default"]) == vec!["10.96.0.1".to_string()],
    );
    // The resolver address is a Service holding the cluster DNS address.
    assert_eq!(
        k.field(
            "service",
            Some(OPERATOR_NS),
            "vpc-dns-ovn-cluster",
            "{.spec.clusterIP}"
        ),
        CLUSTER_DNS
    );
    assert_eq!(
        a(&k, ns, "client", &["www.example.test"]),
        vec![vpcnet_e2e::external::host_ip().to_string()]
    );
    c.run_now();
}
