//! One watch per Kubernetes kind for the whole process, shared by every
//! controller and mapper that needs the kind.
//!
//! kube's own shared reflectors (`reflect_shared`) do not pass deletions on
//! to subscribers, and a subscriber whose object is deleted before it reads
//! it stops being polled; here each kind has one watcher feeding one store,
//! and every subscriber gets every change, deletions included, on a channel
//! of its own (unbounded: a slow controller must not stall the watch of a
//! kind another controller needs).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// A change of one object, as a subscriber sees it.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// Created or updated (or listed at start).
    Applied(Arc<K>),
    /// Deleted; its last state.
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object, whichever change it was.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
}

/// A kind the process watches: its store and its subscribers.
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// The kind's cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every change from now on; if the cache already holds its first full
    /// list, its current objects first (so subscribing late misses nothing).
    pub fn changes(&self) -> impl Stream<Item = Change<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subs = self.subscribers.lock().expect("subscriber list");
        if self.store.wait_until_ready().now_or_never().is_some() {
            for o in self.store.state() {
                let _ = tx.send(Change::Applied(o));
            }
        }
        subs.push(tx);
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    }

    /// The objects of every change (deleted ones included): the trigger
    /// streams of `Controller::for_shared_stream` and `watches_shared_stream`.
    pub fn objects(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.changes().map(|c| c.object().clone())
    }

    /// Waits until the cache holds its first full list. (A parked
    /// `wait_until_ready` was not woken reliably, so this polls.)
    pub async fn ready(&self) {
        wait_ready(&self.store).await;
    }
}

/// Waits until a store holds its first full list.
pub async fn wait_ready<K: Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) {
    while store.wait_until_ready().now_or_never().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What a kind needs to be watched and reconciled.
pub trait Kind:
    Resource<DynamicType = (), Scope: ScopeApi>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = (), Scope: ScopeApi>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Builds the `Api` of a kind for its scope, so generic code can reach
/// cluster-scoped and namespaced kinds alike.
pub trait ScopeApi {
    /// The kind's `Api` in `namespace` (ignored for cluster-scoped kinds).
    fn api<K: Resource<DynamicType = (), Scope = Self>>(
        client: Client,
        namespace: Option<&str>,
    ) -> Api<K>
    where
        Self: Sized;
}

impl ScopeApi for k8s_openapi::NamespaceResourceScope {
    fn api<K: Resource<DynamicType = (), Scope = Self>>(
        client: Client,
        namespace: Option<&str>,
    ) -> Api<K> {
        match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }
}

impl ScopeApi for k8s_openapi::ClusterResourceScope {
    fn api<K: Resource<DynamicType = (), Scope = Self>>(
        client: Client,
        _namespace: Option<&str>,
    ) -> Api<K> {
        Api::all(client)
    }
}

/// Every kind's [`Shared`], keyed by its type and namespace scope.
type Registry = HashMap<(TypeId, Option<String>), Box<dyn Any + Send + Sync>>;

type Start = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Every kind the process watches, by type and namespace scope.
pub struct Kinds {
    client: Client,
    kinds: Mutex<Registry>,
    pending: Mutex<Vec<(String, Start)>>,
    started: Mutex<Vec<String>>,
}

impl Kinds {
    /// No kinds yet.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            kinds: Mutex::default(),
            pending: Mutex::default(),
            started: Mutex::default(),
        }
    }

    /// The cluster-wide watch of `K`, created on first use.
    pub fn all<K: Kind>(&self) -> Shared<K> {
        self.get(None, watcher::Config::default())
    }

    /// The watch of `K` in `namespace`, created on first use.
    pub fn namespaced<K>(&self, namespace: &str) -> Shared<K>
    where
        K: Kind + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        self.get(Some(namespace.to_string()), watcher::Config::default())
    }

    fn get<K: Kind>(&self, namespace: Option<String>, config: watcher::Config) -> Shared<K> {
        let key = (TypeId::of::<K>(), namespace.clone());
        let mut kinds = self.kinds.lock().expect("kinds");
        if let Some(s) = kinds.get(&key) {
            return s
                .downcast_ref::<Shared<K>>()
                .expect("keyed by type")
                .clone();
        }
        let (store, writer) = reflector::store::<K>();
        let shared = Shared {
            store,
            subscribers: Arc::default(),
        };
        kinds.insert(key, Box::new(shared.clone()));
        let api: Api<K> = K::Scope::api(self.client.clone(), namespace.as_deref());
        let label = match &namespace {
            Some(ns) => format!("{}/{ns}", K::kind(&())),
            None => K::kind(&()).to_string(),
        };
        let subscribers = shared.subscribers.clone();
        let start: Start = Box::new(move || pump(api, config, writer, subscribers).boxed());
        if self.started.lock().expect("started").is_empty() {
            self.pending.lock().expect("pending").push((label, start));
        } else {
            // Asked for after the start: watched at once.
            self.started.lock().expect("started").push(label);
            tokio::spawn(start());
        }
        shared
    }

    /// Starts every watch asked for so far (and any asked for later);
    /// returns the kinds watched.
    pub fn start(&self) -> Vec<String> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending"));
        let mut started = self.started.lock().expect("started");
        for (label, start) in pending {
            started.push(label);
            tokio::spawn(start());
        }
        started.clone()
    }

    /// The kinds watched: one watch stream each.
    pub fn watched(&self) -> Vec<String> {
        self.started.lock().expect("started").clone()
    }
}

/// Feeds one watch into the store and on to every subscriber.
async fn pump<K: Kind>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: reflector::store::Writer<K>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>>,
) {
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listing: Vec<Arc<K>> = Vec::new();
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                continue;
            }
        };
        writer.apply_watcher_event(&ev);
        let changes: Vec<Change<K>> = match ev {
            watcher::Event::Apply(o) => vec![Change::Applied(Arc::new(o))],
            watcher::Event::Delete(o) => vec![Change::Deleted(Arc::new(o))],
            watcher::Event::Init => {
                listing.clear();
                Vec::new()
            }
            watcher::Event::InitApply(o) => {
                listing.push(Arc::new(o));
                Vec::new()
            }
            // Objects gone during a relist are dropped from the store here;
            // their owners' periodic repair (GC) covers what they left.
            watcher::Event::InitDone => std::mem::take(&mut listing)
                .into_iter()
                .map(Change::Applied)
                .collect(),
        };
        if changes.is_empty() {
            continue;
        }
        let mut subs = subscribers.lock().expect("subscriber list");
        subs.retain(|tx| changes.iter().all(|c| tx.send(c.clone()).is_ok()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_its_object_whichever_it_is() {
        let o = Arc::new(k8s_openapi::api::core::v1::ConfigMap::default());
        assert!(Arc::ptr_eq(Change::Applied(o.clone()).object(), &o));
        assert!(Arc::ptr_eq(Change::Deleted(o.clone()).object(), &o));
    }
}
