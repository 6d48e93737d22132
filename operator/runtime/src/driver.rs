//! The one reconcile driver: finalizer, a span and a timer per reconcile,
//! the retry policy and the logging of results, the same for every kind.
//!
//! A service describes a kind by implementing [`Reconcile`] and hands a
//! controller to [`drive`]; it never repeats this plumbing.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, Span};
use vpcnet_api::contract::FINALIZER;

use crate::kinds::ScopeApi;
use crate::metrics::{Metrics, Outcome};
use crate::runtime::Driven;
use crate::workqueue::WorkQueue;
use crate::{Error, Result};

/// How one kind is reconciled.
#[async_trait::async_trait]
pub trait Reconcile: Send + Sync + 'static {
    /// The kind.
    type Object: Resource<DynamicType = (), Scope: ScopeApi>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static;
    /// The service's context.
    type Context: Driven;
    /// The kind's name in logs and metrics.
    const KIND: &'static str;
    /// Whether deletion waits for [`Reconcile::cleanup`] (through the
    /// finalizer).
    const CLEANS_UP: bool = true;

    /// Waits for whatever bounds this kind's reconciles (a per-tenant share,
    /// say) before any API call; the returned permit is held until the
    /// reconcile ends.
    async fn admit(_obj: &Self::Object, _ctx: &Self::Context) -> Option<Box<dyn Send>> {
        None
    }

    /// Brings the world in line with the object.
    async fn apply(obj: &Self::Object, ctx: &Self::Context) -> Result<Action>;

    /// Removes what the object had, before it goes.
    async fn cleanup(_obj: &Self::Object, _ctx: &Self::Context) -> Result<Action> {
        Ok(Action::await_change())
    }
}

/// The span of one reconcile: `reconcile{kind,namespace,name}`, with
/// `result` recorded as it ends and, when traces are exported, `trace_id`
/// (the same id is the exemplar of its duration).
pub fn reconcile_span(kind: &'static str, namespace: &str, name: &str) -> Span {
    let span = tracing::info_span!(
        "reconcile",
        kind,
        namespace,
        name,
        result = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(id) = trace_id(&span) {
        span.record("trace_id", id.as_str());
    }
    span
}

/// The OpenTelemetry trace id of `span` (32 hex digits), if it is exported.
pub fn trace_id(span: &Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Counts one reconcile when dropped, however it ended: one that panicked
/// or was cancelled before [`ReconcileTimer::ended`] counts as an error.
pub struct ReconcileTimer {
    kind: &'static str,
    started: Instant,
    metrics: Arc<Metrics>,
    outcome: Outcome,
    span: Option<Span>,
    trace_id: Option<String>,
}

impl ReconcileTimer {
    /// Starts timing a reconcile of `kind`.
    pub fn start(kind: &'static str, metrics: Arc<Metrics>) -> Self {
        metrics.started(kind);
        Self {
            kind,
            started: Instant::now(),
            metrics,
            outcome: Outcome::Error,
            span: None,
            trace_id: None,
        }
    }

    /// Records the result on `span` (the reconcile's, from
    /// [`reconcile_span`]) and its trace id as the duration's exemplar.
    pub fn traced(mut self, span: &Span) -> Self {
        self.trace_id = trace_id(span);
        self.span = Some(span.clone());
        self
    }

    /// Records how the reconcile ended.
    pub fn ended(&mut self, result: &Result<Action>) {
        self.outcome = match result {
            Ok(a) if *a == Action::await_change() => Outcome::Success,
            Ok(_) => Outcome::RequeueAfter,
            Err(_) => Outcome::Error,
        };
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        if let Some(span) = &self.span {
            span.record("result", self.outcome.label());
            if self.outcome == Outcome::Error {
                span.record("otel.status_code", "error");
            }
        }
        self.metrics.observe(
            self.kind,
            self.outcome,
            self.started.elapsed().as_secs_f64(),
            self.trace_id.take(),
        );
    }
}

/// The work queue of `R`'s controller: wrap its triggers with it
/// ([`WorkQueue::objects`], [`WorkQueue::mapper`], [`WorkQueue::refs`]).
pub fn queue_of<R: Reconcile>(ctx: &R::Context) -> WorkQueue {
    ctx.metrics().queues.queue(R::KIND)
}

/// A reconcile in its kind's [`WorkQueue`]: started when made, finished
/// when dropped, however the reconcile ended.
struct Running<K: Resource> {
    queue: WorkQueue,
    object: ObjectRef<K>,
}

impl<K: Resource> Running<K> {
    fn start(queue: WorkQueue, object: ObjectRef<K>) -> Self {
        queue.started(&object);
        Self { queue, object }
    }
}

impl<K: Resource> Drop for Running<K> {
    fn drop(&mut self) {
        self.queue.finished(&self.object);
    }
}

/// The retry delay after `err`: things another object will soon provide
/// are retried sooner.
pub fn retry_after(err: &Error) -> Duration {
    Duration::from_secs(if matches!(err, Error::Dependency(_)) {
        2
    } else {
        5
    })
}

async fn reconcile<R: Reconcile>(obj: Arc<R::Object>, ctx: Arc<R::Context>) -> Result<Action> {
    let span = reconcile_span(
        R::KIND,
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    );
    let mut timer = ReconcileTimer::start(R::KIND, ctx.metrics().clone()).traced(&span);
    let _running = Running::start(
        ctx.metrics().queues.queue(R::KIND),
        ObjectRef::from_obj(obj.as_ref()),
    );
    let result = async {
        let _permit = R::admit(&obj, &ctx).await;
        if !R::CLEANS_UP {
            return R::apply(&obj, &ctx).await;
        }
        let ns = obj.namespace();
        let api: Api<R::Object> =
            <<R::Object as Resource>::Scope as ScopeApi>::api(ctx.client().clone(), ns.as_deref());
        finalizer(&api, FINALIZER, obj, |ev| async {
            match ev {
                Finalizer::Apply(o) => R::apply(&o, &ctx).await,
                Finalizer::Cleanup(o) => R::cleanup(&o, &ctx).await,
            }
        })
        .await
        .map_err(Error::from)
    }
    .instrument(span.clone())
    .await;
    timer.ended(&result);
    result
}

fn error_policy<R: Reconcile>(obj: Arc<R::Object>, err: &Error, ctx: Arc<R::Context>) -> Action {
    tracing::warn!(kind = R::KIND, namespace = obj.namespace().unwrap_or_default(), name = %obj.name_any(), error = %err, "reconcile failed; retrying");
    ctx.metrics().failed(R::KIND, err);
    ctx.metrics().queues.queue(R::KIND).retried();
    Action::requeue(retry_after(err))
}

/// Runs `controller` with `R` until the runtime shuts down; reconciles in
/// flight then finish before this returns.
pub async fn drive<R: Reconcile>(controller: Controller<R::Object>, ctx: Arc<R::Context>) {
    let shutdown = ctx.shutting_down();
    let queue = ctx.metrics().queues.queue(R::KIND);
    let queue = &queue;
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<R>, error_policy::<R>, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, action)) => {
                    tracing::debug!(kind = R::KIND, object = %obj, ?action, "reconciled")
                }
                // Logged and counted by the error policy already.
                Err(ControllerError::ReconcilerFailed(..)) => {}
                // Deleted between the trigger and the run: nothing to do.
                Err(ControllerError::ObjectNotFound(obj)) => {
                    queue.forget(&obj);
                    tracing::debug!(kind = R::KIND, object = %obj, "gone before its reconcile")
                }
                Err(e) => tracing::warn!(kind = R::KIND, error = %e, "controller error"),
            }
        })
        .await;
    tracing::info!(kind = R::KIND, "controller stopped");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::runtime::{Shutdown, ShutdownSignal};

    struct Slow {
        client: kube::Client,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        started: AtomicUsize,
        finished: AtomicUsize,
    }

    impl Driven for Slow {
        fn client(&self) -> &kube::Client {
            &self.client
        }
        fn metrics(&self) -> &Arc<Metrics> {
            &self.metrics
        }
        fn shutting_down(&self) -> ShutdownSignal {
            self.shutdown.signal()
        }
    }

    struct SlowReconciler;

    #[async_trait::async_trait]
    impl Reconcile for SlowReconciler {
        type Object = ConfigMap;
        type Context = Slow;
        const KIND: &'static str = "ConfigMap";
        const CLEANS_UP: bool = false;

        async fn apply(_cm: &ConfigMap, ctx: &Slow) -> Result<Action> {
            ctx.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(400)).await;
            ctx.finished.fetch_add(1, Ordering::SeqCst);
            Ok(Action::await_change())
        }
    }

    fn cm(name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("t".into());
        c
    }

    #[test]
    fn without_an_exporter_a_reconcile_has_no_trace_id_and_no_exemplar() {
        // No OpenTelemetry layer in this process (see tests/otlp.rs for one).
        let metrics = Arc::new(Metrics::default());
        let span = reconcile_span("Vpc", "", "v1");
        assert_eq!(trace_id(&span), None);
        let mut timer = ReconcileTimer::start("Vpc", metrics.clone()).traced(&span);
        timer.ended(&Ok(Action::await_change()));
        drop(timer);
        let text = metrics.render_openmetrics();
        assert!(
            text.contains(
                r#"controller_runtime_reconcile_total{controller="Vpc",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("trace_id"), "{text}");
    }

    #[tokio::test]
    async fn shutdown_waits_for_reconciles_in_flight_and_starts_no_new_ones() {
        // A client that is never called: the reconciler has no finalizer.
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let ctx = Arc::new(Slow {
            client,
            metrics: Arc::new(Metrics::default()),
            shutdown: Shutdown::default(),
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        });
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let (tx, rx) = futures::channel::mpsc::unbounded::<Arc<ConfigMap>>();
        // A full first list: the controller waits for its store to be ready.
        writer.apply_watcher_event(&Event::Init);
        for name in ["a", "b"] {
            writer.apply_watcher_event(&Event::InitApply(cm(name)));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let driving = tokio::spawn(drive::<SlowReconciler>(
            Controller::for_shared_stream(rx, store),
            ctx.clone(),
        ));
        tx.unbounded_send(Arc::new(cm("a"))).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while ctx.started.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the first reconcile starts");
        ctx.shutdown.begin();
        // Triggered after shutdown began: must not start.
        let _ = tx.unbounded_send(Arc::new(cm("b")));
        tokio::time::timeout(Duration::from_secs(5), driving)
            .await
            .expect("drive returns after shutdown")
            .unwrap();
        assert_eq!(
            ctx.finished.load(Ordering::SeqCst),
            1,
            "the reconcile in flight finished"
        );
        assert_eq!(ctx.started.load(Ordering::SeqCst), 1, "nothing new started");
    }
}
