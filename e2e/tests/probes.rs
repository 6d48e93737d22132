//! The kubelet's probes reach pods of any VPC on the real node, over each
//! pod's probe address: two pods with the same VPC address on one node are
//! each probed on their own; a failing liveness probe restarts, a failing
//! readiness probe takes the pod out of its Service; and nothing but the
//! kubelet — no other process of the node, no pod of any VPC — connects
//! over that path.

use std::time::Duration;

use vpcnet_e2e::cluster::{Cleanup, TESTAPP_IMAGE, on_node, testapp_pod};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::node;

const READY: Duration = Duration::from_secs(180);
const PROBE_CIDR_PREFIX: &str = "100.64.0.";

fn tenant(k: &Kubectl, c: &mut Cleanup, name: &str) {
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Vpc\nmetadata: {{name: {name}}}\nspec: {{namespaces: [{name}]}}\n---\n\
         apiVersion: vpcnet.io/v1\nkind: Subnet\nmetadata: {{name: {name}-net}}\nspec: {{vpc: {name}, cidrBlock: 10.0.1.0/24, namespaces: [{name}]}}\n"
    ));
    c.add("vpc", None, name);
    c.add("subnet", None, &format!("{name}-net"));
    c.add("namespace", None, name);
}

/// A pod of the test app at `ip` whose container runs `script` (sh) and
/// carries the probes `probes` (YAML lines at container level).
fn probed_pod(
    ns: &str,
    name: &str,
    ip: Option<&str>,
    labels: &str,
    script: &str,
    probes: &str,
) -> String {
    let ann = ip
        .map(|ip| format!("\n  annotations: {{vpcnet.io/ip_address: \"{ip}\"}}"))
        .unwrap_or_default();
    // Probe addresses are unique per node: the suite's claims about them
    // (one address per pod, nothing else reaches it) hold on one node.
    let node = node::first();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}{ann}\n  labels: {{{labels}}}\n\
         spec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {TESTAPP_IMAGE}\n    \
         imagePullPolicy: Never\n    command: [/bin/sh, -c, '{script}']\n{probes}"
    )
}

fn ready(k: &Kubectl, ns: &str, pod: &str) -> bool {
    k.field(
        "pod",
        Some(ns),
        pod,
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    ) == "True"
}

fn pod_ip(k: &Kubectl, ns: &str, pod: &str) -> String {
    k.field("pod", Some(ns), pod, "{.status.podIP}")
}

fn curl(k: &Kubectl, ns: &str, pod: &str, url: &str) -> bool {
    k.exec(ns, pod, &["curl", "-s", "--max-time", "2", url]).ok
}

#[test]
fn probes_reach_same_address_pods_apart_and_nothing_else_uses_their_path() {
    let k = Kubectl::for_box();
    let mut c = Cleanup::new(&k);
    let (a, b) = ("e2e-proba", "e2e-probb");
    tenant(&k, &mut c, a);
    tenant(&k, &mut c, b);
    let readiness = "    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}\n";
    // Both at 10.0.1.50 on the one node; only a's listens where the probe looks.
    k.must_apply(&probed_pod(
        a,
        "twin",
        Some("10.0.1.50"),
        "app: twin",
        "exec testapp 8080",
        readiness,
    ));
    k.must_apply(&probed_pod(
        b,
        "twin",
        Some("10.0.1.50"),
        "app: twin",
        "exec testapp 8081",
        readiness,
    ));
    k.must_apply(&on_node(&testapp_pod(b, "client", None), &node::first()));
    k.wait_ready(a, &["twin"], READY);
    k.wait_ready(b, &["client"], READY);
    assert_eq!(k.pod_ip(a, "twin"), "10.0.1.50");
    assert_eq!(k.pod_ip(b, "twin"), "10.0.1.50");
    let (pa, pb) = (pod_ip(&k, a, "twin"), pod_ip(&k, b, "twin"));
    assert!(
        pa.starts_with(PROBE_CIDR_PREFIX) && pb.starts_with(PROBE_CIDR_PREFIX),
        "{pa} {pb}"
    );
    assert_ne!(pa, pb, "each pod has its own probe address");
    // b's twin keeps failing its probe while a's passes.
    std::thread::sleep(Duration::from_secs(8));
    assert!(ready(&k, a, "twin"), "a's twin is probed on its own");
    assert!(
        !ready(&k, b, "twin"),
        "b's twin (same address, nothing on 8080) is not Ready"
    );
    let events = k.ok(&[
        "get",
        "events",
        "-n",
        b,
        "--field-selector=involvedObject.name=twin",
    ]);
    assert!(events.contains("Readiness probe failed"), "{events}");

    // Nothing but the kubelet uses the path: not another process of the node,
    // not a pod of another VPC, not a pod of the same VPC.
    let url = format!("http://{pa}:8080/");
    let from_node = node::exec(&["curl", "-s", "--max-time", "2", &url]);
    assert!(
        !from_node.ok,
        "a node process other than the kubelet reaches {url}: {}",
        from_node.stdout
    );
    assert!(
        !curl(&k, b, "client", &url),
        "a pod of another VPC reaches {url}"
    );
    k.must_apply(&on_node(&testapp_pod(a, "neighbour", None), &node::first()));
    k.wait_ready(a, &["neighbour"], READY);
    assert!(
        !curl(&k, a, "neighbour", &url),
        "a pod of the same VPC reaches {url}"
    );
    assert!(
        curl(&k, a, "neighbour", "http://10.0.1.50:8080/"),
        "the VPC address still works"
    );

    // Liveness: once the probed process dies, the container is restarted.
    let live =
        "    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 2}\n";
    k.must_apply(&probed_pod(
        a,
        "mortal",
        None,
        "app: mortal",
        "testapp 8080 & echo $! >/tmp/live.pid; exec testapp 8081",
        live,
    ));
    k.wait_ready(a, &["mortal"], READY);
    let restarts = || {
        k.field(
            "pod",
            Some(a),
            "mortal",
            "{.status.containerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .unwrap_or(0)
    };
    assert_eq!(restarts(), 0);
    k.exec(a, "mortal", &["sh", "-c", "kill $(cat /tmp/live.pid)"]);
    k.eventually(
        Duration::from_secs(60),
        "the failing liveness probe restarts the container",
        || restarts() >= 1,
    );

    // Readiness: a pod whose probe starts failing leaves its Service.
    let flaky_probe =
        "    readinessProbe: {tcpSocket: {port: 8081}, periodSeconds: 1, failureThreshold: 1}\n";
    k.must_apply(&probed_pod(
        a,
        "flaky",
        None,
        "app: flaky",
        "testapp 8081 & echo $! >/tmp/ready.pid; exec testapp 8080",
        flaky_probe,
    ));
    k.must_apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: flaky, namespace: {a}}}\n\
         spec: {{selector: {{app: flaky}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
    ));
    k.wait_ready(a, &["flaky"], READY);
    let svc = k.field("service", Some(a), "flaky", "{.spec.clusterIP}");
    let svc_url = format!("http://{svc}:80/");
    k.eventually(
        Duration::from_secs(30),
        "the Service reaches the ready pod",
        || curl(&k, a, "neighbour", &svc_url),
    );
    k.exec(a, "flaky", &["sh", "-c", "kill $(cat /tmp/ready.pid)"]);
    k.eventually(
        Duration::from_secs(30),
        "the unready pod leaves its Service",
        || !ready(&k, a, "flaky") && !curl(&k, a, "neighbour", &svc_url),
    );
}
