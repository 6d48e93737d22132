//! Reads and writes the gateway's [`Snapshot`] in its ConfigMap. The
//! operator creates the ConfigMap with the gateway's other objects (and
//! deletes it with them); the agent may only get and patch that one object.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::k8s::FIELD_MANAGER;
use crate::model::NatState;
use crate::snapshot::{SNAPSHOT_KEY, Snapshot};

/// The snapshot ConfigMap of one gateway.
pub struct SnapshotStore {
    api: Api<ConfigMap>,
    name: String,
    gateway: String,
    /// What the ConfigMap holds as far as we know: not written again.
    last: Option<Vec<u8>>,
}

impl SnapshotStore {
    /// The ConfigMap `namespace/name` of gateway `gateway`.
    pub fn new(client: Client, namespace: &str, name: &str, gateway: &str) -> Self {
        SnapshotStore {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            gateway: gateway.to_string(),
            last: None,
        }
    }

    /// The stored snapshot, if there is a usable one; why not is logged.
    pub async fn load(&mut self) -> Option<Snapshot> {
        let cm = match self.api.get_opt(&self.name).await {
            Ok(Some(cm)) => cm,
            Ok(None) => {
                tracing::warn!(configmap = %self.name, "no snapshot ConfigMap: rules come back once the API is listed");
                return None;
            }
            Err(e) => {
                tracing::warn!(configmap = %self.name, "reading the snapshot: {e}");
                return None;
            }
        };
        let Some(bytes) = cm.binary_data.and_then(|mut d| d.remove(SNAPSHOT_KEY)) else {
            tracing::info!(configmap = %self.name, "no snapshot yet (first start of this gateway)");
            return None;
        };
        let bytes = bytes.0;
        match Snapshot::decode(&bytes, &self.gateway) {
            Ok(s) => {
                self.last = Some(bytes);
                Some(s)
            }
            Err(e) => {
                tracing::warn!(configmap = %self.name, "snapshot not used: {e}");
                None
            }
        }
    }

    /// Stores what `state` programs, unless the ConfigMap already holds it.
    pub async fn save(&mut self, state: &NatState) {
        let bytes = match Snapshot::of(&self.gateway, state).encode() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(configmap = %self.name, "snapshot not written: {e}");
                return;
            }
        };
        if self.last.as_ref() == Some(&bytes) {
            return;
        }
        let patch = serde_json::json!({"binaryData": {SNAPSHOT_KEY: ByteString(bytes.clone())}});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self.api.patch(&self.name, &pp, &Patch::Merge(&patch)).await {
            Ok(_) => self.last = Some(bytes),
            Err(e) => tracing::warn!(configmap = %self.name, "writing the snapshot: {e}"),
        }
    }
}
