//! `KubeApplier` against the box's real API server: children it applied are
//! labelled with their owner; a child dropped from the desired set is
//! deleted by `prune`; objects of other owners, or of none, are left alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use vpcnet_runtime::applier::{KubeApplier, OWNER_UID_LABEL};
use vpcnet_test_support::box_env::kubeconfig;

const NS: &str = "default";

async fn client() -> kube::Client {
    let path = kubeconfig();
    assert!(
        path.exists(),
        "{} missing: start the box with `cargo xtask box up`",
        path.display()
    );
    let kc = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("client")
}

fn cm(name: &str, data: &str) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.metadata.namespace = Some(NS.into());
    c.data = Some(BTreeMap::from([("v".to_string(), data.to_string())]));
    c
}

/// Deletes every ConfigMap of the test, also when it fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // Drop cannot await: a thread with its own runtime and its own
        // client (a client's worker lives on the runtime that made it,
        // which is blocked here).
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move {
                    let api: Api<ConfigMap> = Api::namespaced(client().await, NS);
                    if let Ok(list) = api.list(&ListParams::default()).await {
                        for c in list.items.iter().filter(|c| {
                            c.metadata
                                .name
                                .as_deref()
                                .unwrap_or_default()
                                .starts_with(&prefix)
                        }) {
                            let _ = api
                                .delete(
                                    c.metadata.name.as_deref().unwrap(),
                                    &DeleteParams::default(),
                                )
                                .await;
                        }
                    }
                })
        })
        .join();
    }
}

#[tokio::test]
async fn a_child_no_longer_desired_is_deleted_and_nothing_else() {
    let client = client().await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let prefix = format!("applier-test-{}-{nanos:x}", std::process::id());
    let _cleanup = Cleanup(prefix.clone());
    let uid = format!("uid-{nanos:x}");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);

    // Round one: two children.
    let mut first = KubeApplier::new(client.clone(), "Test", &uid);
    let a = first.apply(cm(&format!("{prefix}-a"), "1")).await.unwrap();
    first.apply(cm(&format!("{prefix}-b"), "1")).await.unwrap();
    assert_eq!(a.metadata.labels.unwrap()[OWNER_UID_LABEL], uid);
    assert!(first.prune::<ConfigMap>(Some(NS)).await.unwrap().is_empty());

    // Another owner's child and an unlabelled object of the same kind.
    let mut other = KubeApplier::new(client.clone(), "Test", &format!("{uid}-other"));
    other
        .apply(cm(&format!("{prefix}-other"), "1"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm(&format!("{prefix}-mine"), "1"))
        .await
        .unwrap();

    // Round two: only `a` is desired, with new content.
    let mut second = KubeApplier::new(client.clone(), "Test", &uid);
    second.apply(cm(&format!("{prefix}-a"), "2")).await.unwrap();
    let gone = second.prune::<ConfigMap>(Some(NS)).await.unwrap();
    assert_eq!(gone, vec![format!("{prefix}-b")]);

    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(
        left,
        vec![
            format!("{prefix}-a"),
            format!("{prefix}-mine"),
            format!("{prefix}-other")
        ]
    );
    let a = api.get(&format!("{prefix}-a")).await.unwrap();
    assert_eq!(a.data.unwrap()["v"], "2");
}
