//! Traces of reconciles reach a real OTLP/gRPC receiver: a TraceService
//! served here on loopback receives, through the operator's own telemetry
//! setup ([`telemetry::init`]) and its graceful shutdown, the span the
//! driver opened for one reconcile run by the driver itself, with the
//! kind, namespace, name, result and trace id; and that trace id is the
//! exemplar of the reconcile's duration.
//!
//! Its own test binary: `init` installs the process-wide subscriber.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use vpcnet_runtime::driver::{Reconcile, drive};
use vpcnet_runtime::metrics::Metrics;
use vpcnet_runtime::runtime::{Driven, Shutdown, ShutdownSignal};
use vpcnet_runtime::{Result, telemetry};

/// A received span with its resource's attributes.
type Received = (BTreeMap<String, String>, Span);

/// What the receiver got.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

#[async_trait::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.got.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = attributes(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push((resource.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

struct Ctx {
    client: kube::Client,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    done: AtomicUsize,
}

impl Driven for Ctx {
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

struct Quick;

#[async_trait::async_trait]
impl Reconcile for Quick {
    type Object = ConfigMap;
    type Context = Ctx;
    const KIND: &'static str = "ConfigMap";
    const CLEANS_UP: bool = false;

    async fn apply(_cm: &ConfigMap, ctx: &Ctx) -> Result<Action> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        ctx.done.fetch_add(1, Ordering::SeqCst);
        Ok(Action::await_change())
    }
}

fn cm(name: &str) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.metadata.namespace = Some("tenant-a".into());
    c
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciles_span_reaches_an_otlp_receiver_and_its_trace_id_is_the_exemplar() {
    // The receiver.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    // The operator's setup, pointed at it.
    let telemetry = telemetry::init(Some(&format!("http://{addr}"))).expect("telemetry");
    assert!(telemetry.exporting());

    // One reconcile through the driver. A client that is never called: the
    // reconciler has no finalizer.
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let ctx = Arc::new(Ctx {
        client,
        metrics: Arc::new(Metrics::default()),
        shutdown: Shutdown::default(),
        done: AtomicUsize::new(0),
    });
    let (store, mut writer) = reflector::store::<ConfigMap>();
    let (tx, rx) = futures::channel::mpsc::unbounded::<Arc<ConfigMap>>();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitApply(cm("web")));
    writer.apply_watcher_event(&Event::InitDone);
    let driving = tokio::spawn(drive::<Quick>(
        Controller::for_shared_stream(rx, store),
        ctx.clone(),
    ));
    tx.unbounded_send(Arc::new(cm("web"))).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while ctx.done.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the reconcile runs");
    ctx.shutdown.begin();
    tokio::time::timeout(Duration::from_secs(10), driving)
        .await
        .expect("drive returns after shutdown")
        .unwrap();
    // What the operator does at the end of its graceful shutdown.
    tokio::time::timeout(Duration::from_secs(20), telemetry.shutdown())
        .await
        .expect("the exporter flushes and stops");

    let got = receiver.got.lock().unwrap().clone();
    let reconciles: Vec<_> = got.iter().filter(|(_, s)| s.name == "reconcile").collect();
    assert_eq!(
        reconciles.len(),
        1,
        "one reconcile span; received {:?}",
        got.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    let (resource, span) = reconciles[0];
    assert_eq!(
        resource.get("service.name").map(String::as_str),
        Some(telemetry::SERVICE_NAME),
        "{resource:?}"
    );
    let attrs = attributes(&span.attributes);
    for (key, value) in [
        ("kind", "ConfigMap"),
        ("namespace", "tenant-a"),
        ("name", "web"),
        ("result", "success"),
    ] {
        assert_eq!(
            attrs.get(key).map(String::as_str),
            Some(value),
            "{key} in {attrs:?}"
        );
    }
    let trace_id = hex(&span.trace_id);
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    assert_ne!(trace_id, "0".repeat(32));
    assert_eq!(
        attrs.get("trace_id"),
        Some(&trace_id),
        "the span records its own trace id"
    );
    assert!(
        span.end_time_unix_nano - span.start_time_unix_nano >= 30_000_000,
        "the span covers the reconcile (30 ms)"
    );

    // The same id is the exemplar of the reconcile's duration.
    let metrics = ctx.metrics.render_openmetrics();
    let exemplars: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("controller_runtime_reconcile_time_seconds_bucket"))
        .filter_map(|l| l.split_once(" # {trace_id=\"").map(|(_, e)| e))
        .filter_map(|e| e.split_once('"').map(|(id, _)| id))
        .collect();
    assert_eq!(exemplars, [trace_id.as_str()], "{metrics}");
    serving.abort();
}
