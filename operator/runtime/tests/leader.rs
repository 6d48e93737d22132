//! The leader Lease against the box's real API server: one candidate leads,
//! the other waits; a release hands over at once; a leader that stops
//! renewing is taken over after the lease duration, and then learns it lost.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use vpcnet_runtime::leader::{Candidate, Lost};

use vpcnet_test_support::box_env::kubeconfig;
const NS: &str = "default";
const DURATION: Duration = Duration::from_secs(3);

/// Deletes the test's Lease, also when the test fails.
struct LeaseGuard(String);

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig())
            .args(["delete", "lease", "-n", NS, &self.0, "--ignore-not-found"])
            .status();
    }
}

async fn api() -> Api<Lease> {
    assert!(
        kubeconfig().exists(),
        "{} missing: start the box with `bash e2e/box/up.sh`",
        kubeconfig().display()
    );
    let kc = kube::config::Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    Api::namespaced(kube::Client::try_from(cfg).expect("client"), NS)
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("leader-test-{}-{nanos:x}", std::process::id())
}

async fn holder(api: &Api<Lease>, name: &str) -> Option<String> {
    api.get(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn one_leads_a_release_hands_over_and_a_silent_leader_is_taken_over() {
    let api = api().await;
    let name = unique_name();
    let _guard = LeaseGuard(name.clone());
    let mut a = Candidate::new(api.clone(), &name, "a", DURATION);
    let mut b = Candidate::new(api.clone(), &name, "b", DURATION);

    // The first to come creates the lease and leads; the second waits.
    assert!(a.try_lead().await.unwrap(), "a creates and takes the lease");
    assert!(!b.try_lead().await.unwrap(), "b must not lead beside a");
    assert_eq!(b.holder(), Some("a"));
    assert!(a.try_lead().await.unwrap(), "a renews");
    let transitions = |l: Lease| l.spec.and_then(|s| s.lease_transitions);
    assert_eq!(transitions(api.get(&name).await.unwrap()), Some(0));

    // A clean shutdown hands over without waiting for expiry.
    a.release().await;
    assert_eq!(holder(&api, &name).await, None);
    assert!(
        b.try_lead().await.unwrap(),
        "b takes a released lease at once"
    );
    assert_eq!(holder(&api, &name).await.as_deref(), Some("b"));
    assert_eq!(transitions(api.get(&name).await.unwrap()), Some(1));

    // b goes silent. a may take over only after the record has stood
    // unchanged for the lease duration on a's own clock.
    let started = Instant::now();
    let mut a = Candidate::new(api.clone(), &name, "a", DURATION);
    while !a.try_lead().await.unwrap() {
        assert!(
            started.elapsed() < DURATION * 3,
            "a never took over a silent lease"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() >= DURATION,
        "a took over after {:?}, before the lease ran out",
        started.elapsed()
    );
    assert_eq!(holder(&api, &name).await.as_deref(), Some("a"));

    // b, resuming, learns it lost instead of reconciling on.
    match tokio::time::timeout(DURATION * 2, b.hold()).await {
        Ok(Lost::TakenOver(_, by)) => assert_eq!(by, "a"),
        other => panic!("b should learn that a took over, got {other:?}"),
    }
}
