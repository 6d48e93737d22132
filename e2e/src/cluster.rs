//! Workload helpers over `kubectl`: apply manifests, wait for pods, exec into
//! them, and delete everything a test created even when it fails.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vpcnet_api::contract::{DEFAULT_NAMESPACE, annotations, labels};

use crate::kubectl::{Kubectl, Output};

/// The test workload: answers any TCP connection on 8080 with
/// `client=<addr>:<port> server=<hostname> port=8080`; has ping and curl.
pub const TESTAPP_IMAGE: &str = "docker.io/local/vpcnet-testapp:latest";

impl Kubectl {
    /// `kubectl apply -f -` with `yaml` on stdin.
    pub fn apply_yaml(&self, yaml: &str) -> Output {
        let mut child = Command::new(self.binary())
            .env("KUBECONFIG", self.kubeconfig())
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("writing manifest");
        let out = child.wait_with_output().expect("kubectl finishes");
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Applies `yaml`, panicking with kubectl's message on failure.
    pub fn must_apply(&self, yaml: &str) {
        let out = self.apply_yaml(yaml);
        assert!(out.ok, "apply failed: {}\n{yaml}", out.stderr);
    }

    /// Waits until every named pod of `ns` is Ready.
    pub fn wait_ready(&self, ns: &str, pods: &[&str], timeout: Duration) {
        let mut args = vec![
            "wait".to_string(),
            "-n".into(),
            ns.into(),
            "--for=condition=Ready".into(),
            format!("--timeout={}s", timeout.as_secs()),
        ];
        args.extend(pods.iter().map(|p| format!("pod/{p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        if !out.ok {
            let describe = self.run(&["describe", "pods", "-n", ns]);
            panic!(
                "pods {pods:?} in {ns} not Ready: {}\n{}",
                out.stderr, describe.stdout
            );
        }
    }

    /// Waits until every one of `names` of `kind` (in `ns`, for a
    /// namespaced kind) has condition `cond` True; on timeout panics with
    /// kubectl's message and the objects as they stand.
    pub fn wait_condition(
        &self,
        kind: &str,
        ns: Option<&str>,
        names: &[&str],
        cond: &str,
        timeout: Duration,
    ) {
        let mut args = vec![
            "wait".to_string(),
            format!("--for=condition={cond}"),
            format!("--timeout={}s", timeout.as_secs()),
        ];
        if let Some(ns) = ns {
            args.extend(["-n".into(), ns.into()]);
        }
        args.extend(names.iter().map(|n| format!("{kind}/{n}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        if !out.ok {
            let mut get = vec!["get", kind, "-o", "yaml"];
            get.extend(names.iter().copied());
            if let Some(ns) = ns {
                get.extend(["-n", ns]);
            }
            panic!(
                "{kind} {names:?} not {cond}: {}\n{}",
                out.stderr,
                self.run(&get).stdout
            );
        }
    }

    /// `curl -s` of `url` from inside pod `ns/pod`, giving up after 3 s:
    /// the trimmed body, or curl's complaint.
    pub fn curl_from(&self, ns: &str, pod: &str, url: &str) -> Result<String, String> {
        let out = self.exec(ns, pod, &["curl", "-s", "--max-time", "3", url]);
        if out.ok {
            Ok(out.stdout.trim().to_string())
        } else {
            Err(out.stderr)
        }
    }

    /// Whether pod `ns/pod` gets an answer to two pings of `ip` (1 s each).
    pub fn ping_from(&self, ns: &str, pod: &str, ip: &str) -> bool {
        self.exec(ns, pod, &["ping", "-c", "2", "-W", "1", ip]).ok
    }

    /// `kubectl exec -n ns pod -- cmd...`.
    pub fn exec(&self, ns: &str, pod: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", "-n", ns, pod, "--"];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// One jsonpath field of an object.
    pub fn field(&self, kind: &str, ns: Option<&str>, name: &str, jsonpath: &str) -> String {
        let jp = format!("jsonpath={jsonpath}");
        let mut args = vec!["get", kind, name, "-o", jp.as_str()];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        self.ok(&args).trim().to_string()
    }

    /// The address vpcnet gave a pod.
    pub fn pod_ip(&self, ns: &str, pod: &str) -> String {
        self.field(
            "pod",
            Some(ns),
            pod,
            &format!(
                "{{.metadata.annotations.{}}}",
                jsonpath_key(annotations::IP_ADDRESS)
            ),
        )
    }

    /// The operator's `/metrics` (classic text format), through the API
    /// server's proxy to its pod.
    pub fn operator_metrics(&self) -> String {
        let pod = self.ok(&[
            "-n",
            OPERATOR_NS,
            "get",
            "pods",
            "-l",
            &operator_selector(),
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]);
        self.ok(&[
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/{OPERATOR_NS}/pods/{}:{OPERATOR_METRICS_PORT}/proxy/metrics",
                pod.trim()
            ),
        ])
    }

    /// The value of the sample `series` (name and labels, as exported) in
    /// the exposition `text`, if there is one.
    pub fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
    }

    /// Polls `f` until it returns true or `timeout` passes.
    pub fn eventually(&self, timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// The namespace the box deploys the operator in (`config/base`).
pub const OPERATOR_NS: &str = DEFAULT_NAMESPACE;

/// The port of the operator's `/metrics` on the box
/// (`config/box/operator-box.yaml`).
pub const OPERATOR_METRICS_PORT: u16 = 8380;

/// Label selector of the operator's pods (`config/base`).
pub fn operator_selector() -> String {
    format!("{}=vpcnet-operator", labels::APP_NAME)
}

/// `key` as one segment of a kubectl jsonpath (its dots escaped).
pub fn jsonpath_key(key: &str) -> String {
    key.replace('.', "\\.")
}

/// A pod manifest of the test workload, optionally with a fixed address.
pub fn testapp_pod(ns: &str, name: &str, fixed_ip: Option<&str>) -> String {
    let ann = fixed_ip
        .map(|ip| {
            format!(
                "\n  annotations:\n    {}: \"{ip}\"",
                annotations::IP_ADDRESS
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}{ann}\n  labels:\n    app: testapp\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {TESTAPP_IMAGE}\n    imagePullPolicy: Never\n"
    )
}

/// `pod` (a manifest of [`testapp_pod`]'s shape) bound to `node`, past the
/// scheduler.
pub fn on_node(pod: &str, node: &str) -> String {
    assert!(
        pod.contains("\nspec:\n"),
        "a pod manifest with a spec: {pod}"
    );
    pod.replacen("\nspec:\n", &format!("\nspec:\n  nodeName: {node}\n"), 1)
}

/// Deletes what a test created when dropped (also on panic), in reverse order.
pub struct Cleanup {
    k: Kubectl,
    items: Vec<Vec<String>>,
}

impl Cleanup {
    /// A cleanup list using `k`.
    pub fn new(k: &Kubectl) -> Self {
        Self {
            k: k.clone(),
            items: Vec::new(),
        }
    }

    /// Remember `kind name [-n ns]` for deletion.
    pub fn add(&mut self, kind: &str, ns: Option<&str>, name: &str) {
        let mut v = vec![kind.to_string(), name.to_string()];
        if let Some(ns) = ns {
            v.extend(["-n".to_string(), ns.to_string()]);
        }
        self.items.push(v);
    }

    /// Deletes everything now, waiting for it to be gone.
    pub fn run_now(&mut self) {
        for item in self.items.drain(..).rev() {
            let mut args: Vec<&str> = vec![
                "delete",
                "--ignore-not-found",
                "--wait=true",
                "--timeout=90s",
            ];
            args.extend(item.iter().map(String::as_str));
            let out = self.k.run(&args);
            if !out.ok {
                eprintln!("cleanup of {item:?} failed: {}", out.stderr);
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run_now();
    }
}
