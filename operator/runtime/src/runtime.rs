//! The process singletons every service shares.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use vpcnet_api::contract::OPERATOR_MANAGER;
use vpcnet_api::seal::SealKey;

use crate::kinds::Kinds;
use crate::metrics::Metrics;
use crate::ovn_view::OvnView;
use crate::pools::SharedIpam;

/// What one operator process holds once it leads.
pub struct Runtime {
    /// Kubernetes client.
    pub client: Client,
    /// OVN Northbound client.
    pub nb: ovn::Client,
    /// Routers and switches by name.
    pub ovn: OvnView,
    /// Address pools of all subnets; only a service's `allocate` step and
    /// the rebuild at start touch it. Exported as `vpcnet_ipam_addresses`.
    pub ipam: SharedIpam,
    /// One watch per kind.
    pub kinds: Kinds,
    /// Event publisher.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The operator's own namespace (its workloads run here).
    pub namespace: String,
    /// Seals the operator's decisions (and checks the agents' reports).
    pub seal: SealKey,
    shutdown: Shutdown,
}

/// Resolves once shutdown has begun.
pub type ShutdownSignal = Shared<BoxFuture<'static, ()>>;

/// A one-way switch from running to shutting down.
pub struct Shutdown {
    signal: ShutdownSignal,
    stop: std::sync::Mutex<Option<futures::channel::oneshot::Sender<()>>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        Self {
            signal: rx.map(|_| ()).boxed().shared(),
            stop: std::sync::Mutex::new(Some(tx)),
        }
    }
}

impl Shutdown {
    /// Resolves once [`Shutdown::begin`] has been called.
    pub fn signal(&self) -> ShutdownSignal {
        self.signal.clone()
    }

    /// Begins shutdown (idempotent).
    pub fn begin(&self) {
        if let Some(tx) = self.stop.lock().expect("stop").take() {
            let _ = tx.send(());
        }
    }
}

impl Runtime {
    /// A runtime over connections already made.
    pub fn new(
        client: Client,
        nb: ovn::Client,
        ovn: OvnView,
        namespace: String,
        seal: SealKey,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            recorder: recorder(&client),
            kinds: Kinds::new(client.clone()),
            client,
            nb,
            ovn,
            ipam: SharedIpam::new(metrics.clone()),
            metrics,
            namespace,
            seal,
            shutdown: Shutdown::default(),
        }
    }

    /// Resolves once shutdown has begun: controllers stop taking work and
    /// finish what they are doing.
    pub fn shutting_down(&self) -> ShutdownSignal {
        self.shutdown.signal()
    }

    /// Begins shutdown.
    pub fn shut_down(&self) {
        self.shutdown.begin();
    }

    /// Publishes an Event on `obj`; failures are logged, never fatal.
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(object = %obj.name_any(), error = %e, "publishing event failed");
        }
    }
}

/// A recorder identifying this controller.
fn recorder(client: &Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: OPERATOR_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// Anything that carries the runtime (a service's context).
pub trait HasRuntime: Send + Sync + 'static {
    /// The runtime.
    fn rt(&self) -> &Runtime;
}

/// Makes a service's context struct (with a field `rt: Arc<Runtime>`) read
/// as the runtime: `ctx.client`, `ctx.ipam`, `ctx.event(..)`.
#[macro_export]
macro_rules! service_context {
    ($ctx:ty) => {
        impl ::std::ops::Deref for $ctx {
            type Target = $crate::Runtime;

            fn deref(&self) -> &$crate::Runtime {
                &self.rt
            }
        }

        impl $crate::runtime::HasRuntime for $ctx {
            fn rt(&self) -> &$crate::Runtime {
                &self.rt
            }
        }
    };
}

/// What the reconcile driver needs of a context.
pub trait Driven: Send + Sync + 'static {
    /// The Kubernetes client (for the finalizer).
    fn client(&self) -> &Client;
    /// Where reconciles are counted and timed.
    fn metrics(&self) -> &Arc<Metrics>;
    /// Resolves once shutdown has begun.
    fn shutting_down(&self) -> ShutdownSignal;
}

impl<T: HasRuntime> Driven for T {
    fn client(&self) -> &Client {
        &self.rt().client
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.rt().metrics
    }

    fn shutting_down(&self) -> ShutdownSignal {
        self.rt().shutting_down()
    }
}
