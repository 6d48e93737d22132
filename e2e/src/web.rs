//! The `web` Deployment of the Service and load-balancer suites: the test
//! app behind label `app=web`, Ready by an `httpGet` probe (which the
//! kubelet sends over the probe path), and what the suites ask of it.

use std::time::Duration;

use crate::cluster::TESTAPP_IMAGE;
use crate::kubectl::Kubectl;

/// How long pods may take to run or go.
pub const SETTLE: Duration = Duration::from_secs(180);

/// The Deployment `web` of `replicas` pods in `ns`.
pub fn deployment(ns: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\n\
         spec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    \
         metadata: {{labels: {{app: web}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      \
         containers:\n      - name: app\n        image: {TESTAPP_IMAGE}\n        imagePullPolicy: Never\n        \
         readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 2}}\n"
    )
}

/// `(name, VPC address)` of the running, not terminating, pods of `web`.
pub fn pods(k: &Kubectl, ns: &str) -> Vec<(String, String)> {
    k.ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app=web",
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.annotations.vpcnet\\.io/ip_address} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ])
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 2).then(|| (f[0].to_string(), f[1].to_string()))
    })
    .collect()
}

/// Scales `web` to `n` and waits until exactly `n` of its pods run.
pub fn scale(k: &Kubectl, ns: &str, n: u32) {
    k.ok(&[
        "scale",
        "-n",
        ns,
        "deployment/web",
        &format!("--replicas={n}"),
    ]);
    k.eventually(SETTLE, &format!("{n} web pods running in {ns}"), || {
        pods(k, ns).len() == n as usize
    });
}

/// Waits until `web` is Available.
pub fn wait_available(k: &Kubectl, ns: &str) {
    let out = k.run(&[
        "wait",
        "-n",
        ns,
        "--for=condition=Available",
        "deployment/web",
        &format!("--timeout={}s", SETTLE.as_secs()),
    ]);
    assert!(out.ok, "deployment web in {ns} available: {}", out.stderr);
}
