//! Everything the operator creates in Kubernetes for an object (a gateway's
//! StatefulSet, ServiceAccount, RBAC, ConfigMap; later Deployments and
//! Services) goes through one applier: each child is a typed object built
//! by a pure function, labelled with the uid of the object that wants it,
//! applied by server-side apply as the operator's field manager, and every
//! labelled child of a kind that is no longer desired is deleted. A child
//! dropped from the desired set does not live on until its owner goes.

use std::collections::BTreeSet;
use std::fmt::Debug;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vpcnet_api::contract::{OPERATOR_MANAGER, labels};

use crate::kinds::ScopeApi;

/// The label naming the kind of the object that wants a child.
pub const OWNER_KIND_LABEL: &str = "vpcnet.io/owner-kind";
/// The label holding the uid of the object that wants a child (a uid fits a
/// label value; a name may not).
pub const OWNER_UID_LABEL: &str = "vpcnet.io/owner-uid";

/// Applies the children of one owner.
pub struct KubeApplier {
    client: Client,
    owner_kind: String,
    owner_uid: String,
    applied: BTreeSet<(String, Option<String>, String)>,
}

impl KubeApplier {
    /// An applier for the children of the object of `kind` with `uid`.
    pub fn new(client: Client, kind: &str, uid: &str) -> Self {
        Self {
            client,
            owner_kind: kind.to_string(),
            owner_uid: uid.to_string(),
            applied: BTreeSet::new(),
        }
    }

    /// The label selector of this owner's children.
    pub fn selector(&self) -> String {
        format!("{OWNER_UID_LABEL}={}", self.owner_uid)
    }

    /// Labels `obj` as this owner's (pure).
    pub fn label<K: Resource>(&self, obj: &mut K) {
        let l = obj.meta_mut().labels.get_or_insert_with(Default::default);
        l.insert(OWNER_KIND_LABEL.into(), self.owner_kind.clone());
        l.insert(OWNER_UID_LABEL.into(), self.owner_uid.clone());
        l.entry(labels::APP_NAME.into())
            .or_insert_with(|| "vpcnet".into());
    }

    /// Applies `obj` (labelled first) and remembers it as desired.
    pub async fn apply<K>(&mut self, mut obj: K) -> kube::Result<K>
    where
        K: Resource<DynamicType = (), Scope: ScopeApi>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        self.label(&mut obj);
        let name = obj.name_any();
        let ns = obj.namespace();
        let api: Api<K> = K::Scope::api(self.client.clone(), ns.as_deref());
        // The patch names its kind: typed objects serialize without it.
        let mut body = serde_json::to_value(&obj).map_err(kube::Error::SerdeError)?;
        body["apiVersion"] = K::api_version(&()).into();
        body["kind"] = K::kind(&()).into();
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(OPERATOR_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await?;
        self.applied.insert((K::kind(&()).to_string(), ns, name));
        Ok(applied)
    }

    /// Deletes every child of kind `K` (in `namespace`, or cluster-wide for
    /// cluster-scoped kinds) labelled as this owner's that was not applied
    /// through this applier; returns the names deleted.
    pub async fn prune<K>(&self, namespace: Option<&str>) -> kube::Result<Vec<String>>
    where
        K: Resource<DynamicType = (), Scope: ScopeApi> + Clone + Debug + DeserializeOwned,
    {
        let api: Api<K> = K::Scope::api(self.client.clone(), namespace);
        let mut gone = Vec::new();
        for o in api
            .list(&ListParams::default().labels(&self.selector()))
            .await?
        {
            let key = (K::kind(&()).to_string(), o.namespace(), o.name_any());
            if self.applied.contains(&key) {
                continue;
            }
            let api: Api<K> = K::Scope::api(self.client.clone(), o.namespace().as_deref());
            match api.delete(&o.name_any(), &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            tracing::info!(kind = K::kind(&()).as_ref(), name = %o.name_any(), owner = %self.owner_uid, "deleted a child no longer desired");
            gone.push(o.name_any());
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn children_are_labelled_with_their_owner_and_keep_their_own_labels() {
        let client =
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let a = KubeApplier::new(client, "VpcNatGateway", "0f6c-uid");
        let mut cm = k8s_openapi::api::core::v1::ConfigMap::default();
        cm.metadata.labels =
            Some([(labels::APP_NAME.to_string(), "vpcnet-natgw".to_string())].into());
        a.label(&mut cm);
        let l = cm.metadata.labels.unwrap();
        assert_eq!(l[OWNER_UID_LABEL], "0f6c-uid");
        assert_eq!(l[OWNER_KIND_LABEL], "VpcNatGateway");
        assert_eq!(l[labels::APP_NAME], "vpcnet-natgw");
        assert_eq!(a.selector(), "vpcnet.io/owner-uid=0f6c-uid");
    }
}
