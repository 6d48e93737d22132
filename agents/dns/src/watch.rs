//! Where zone documents come from: the one ConfigMap the operator writes
//! (`--zone`), or a file (`--zone-file`, tests and debugging).
//!
//! The ConfigMap is watched with a field selector on its name, so the server
//! needs `get`/`list`/`watch` on that one object only (an RBAC rule with
//! `resourceNames: [<name>]` allows a list or watch that selects
//! `metadata.name=<name>`). A deleted ConfigMap or a document that does not
//! parse leaves the zone in force: serving the last good zone beats serving
//! nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use vpcnet_api::contract::dns::ZONE_KEY;

use crate::answer::{Answerer, Forwarder};

/// `<namespace>/<name>` of the zone ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::str::FromStr for ConfigMapRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(ConfigMapRef {
                    namespace: ns.into(),
                    name: name.into(),
                })
            }
            _ => Err(format!("{s:?}: expected <namespace>/<name>")),
        }
    }
}

fn load<F: Forwarder>(answerer: &Answerer<F>, what: &str, json: &[u8]) {
    match answerer.load(json) {
        Ok(generation) => {
            let records = answerer.zone().map_or(0, |z| z.records());
            tracing::info!(generation, records, "zone loaded from {what}");
        }
        Err(e) => tracing::error!("zone from {what} refused, the zone in force stays: {e}"),
    }
}

/// Follows the ConfigMap until the process ends.
pub async fn configmap<F: Forwarder>(
    client: Client,
    cm: ConfigMapRef,
    answerer: Arc<Answerer<F>>,
) -> anyhow::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, &cm.namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", cm.name));
    let what = format!("configmap {}/{}", cm.namespace, cm.name);
    let mut last: Option<String> = None;
    let mut events = watcher(api, cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(obj) => {
                let Some(json) = obj.data.as_ref().and_then(|d| d.get(ZONE_KEY)) else {
                    tracing::warn!("{what} has no {ZONE_KEY}; the zone in force stays");
                    continue;
                };
                // A relist re-delivers the same object: no new generation
                // for the same document.
                if last.as_deref() == Some(json) {
                    continue;
                }
                load(&answerer, &what, json.as_bytes());
                last = Some(json.clone());
            }
            Err(e) => tracing::warn!("watching {what}: {e}"),
        }
    }
    anyhow::bail!("the watch of {what} ended")
}

/// Polls the file and loads it whenever its content changes.
pub async fn file<F: Forwarder>(
    path: PathBuf,
    every: Duration,
    answerer: Arc<Answerer<F>>,
) -> anyhow::Result<()> {
    let what = format!("file {}", path.display());
    let mut last: Option<Vec<u8>> = None;
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        match read(&path).await {
            Ok(b) if last.as_ref() != Some(&b) => {
                load(&answerer, &what, &b);
                last = Some(b);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{what}: {e}"),
        }
    }
}

async fn read(p: &Path) -> std::io::Result<Vec<u8>> {
    tokio::fs::read(p).await
}
