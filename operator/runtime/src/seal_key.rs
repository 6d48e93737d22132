//! The operator's seal key: a Secret in its own namespace, created with a
//! random key on first start and read on every later one. Gateway agents get
//! it through their environment; tenants can read no Secret there.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use vpcnet_api::seal::{self, SealKey};

use crate::{Error, Result};

/// Reads the key, creating it first if it does not exist.
pub async fn ensure(client: &kube::Client, namespace: &str) -> Result<SealKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        if let Some(s) = api.get_opt(seal::SECRET_NAME).await? {
            let bytes = s
                .data
                .as_ref()
                .and_then(|d| d.get(seal::SECRET_KEY))
                .map(|b| b.0.clone())
                .unwrap_or_default();
            return SealKey::new(&bytes).map_err(|e| {
                Error::Dependency(format!("Secret {namespace}/{}: {e}", seal::SECRET_NAME))
            });
        }
        // Hex, so the agent can take it from an environment variable.
        let key: String = SealKey::generate()
            .map_err(|e| Error::Dependency(e.to_string()))?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(seal::SECRET_NAME.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/part-of".to_string(),
                    "vpcnet".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                seal::SECRET_KEY.to_string(),
                ByteString(key.into_bytes()),
            )])),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => tracing::info!(secret = seal::SECRET_NAME, "created the seal key"),
            // Created meanwhile by an earlier leader: read that one.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Dependency(format!(
        "Secret {namespace}/{} could not be read or created",
        seal::SECRET_NAME
    )))
}
