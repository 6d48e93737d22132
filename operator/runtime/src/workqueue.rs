//! controller-runtime's workqueue metrics for kube's controllers.
//!
//! kube's `Controller` keeps its scheduler to itself, so each kind's queue
//! is modelled from the outside, with the rules both queues follow:
//! every trigger (a watched object, one a mapper names, a nudge) is an
//! *add*; an object *waits* from its first add until its reconcile starts,
//! and adds while it waits merge into that one entry; an add while the
//! object is being reconciled makes it wait again (it runs once more when
//! the current run ends). A timed requeue (after an error or an
//! `Action::requeue`) is kept inside kube's scheduler and is not an add
//! here; a requeue after an error is a *retry*.
//!
//! Services wrap what triggers their controllers with [`WorkQueue::objects`],
//! [`WorkQueue::mapper`] and [`WorkQueue::refs`]; the driver marks each
//! reconcile's start and end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Labels of every `workqueue_*` metric: controller-runtime names the
/// queue after its controller and gives both labels the same value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// The queue's name: the reconciled kind.
    pub name: String,
    /// The controller: the reconciled kind.
    pub controller: String,
}

impl QueueLabel {
    fn of(kind: &str) -> Self {
        Self {
            name: kind.into(),
            controller: kind.into(),
        }
    }
}

/// client-go's workqueue latency buckets: 10 ns to 10 s, by factors of ten.
const LATENCY_BUCKETS: [f64; 10] = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0];

/// What one kind's queue holds now.
#[derive(Default, Debug)]
struct QueueState {
    /// Objects triggered and not yet started, since their first add.
    waiting: HashMap<String, Instant>,
    /// Objects being reconciled, since their start.
    running: HashMap<String, Instant>,
}

/// The queues of every controller of the process and their metrics.
#[derive(Debug)]
pub struct WorkQueues {
    adds: Family<QueueLabel, Counter>,
    retries: Family<QueueLabel, Counter>,
    queue_duration: Family<QueueLabel, Histogram>,
    work_duration: Family<QueueLabel, Histogram>,
    states: Mutex<HashMap<&'static str, Arc<Mutex<QueueState>>>>,
}

impl Default for WorkQueues {
    fn default() -> Self {
        let histogram = || Histogram::new(LATENCY_BUCKETS);
        Self {
            adds: Family::default(),
            retries: Family::default(),
            queue_duration: Family::new_with_constructor(histogram),
            work_duration: Family::new_with_constructor(histogram),
            states: Mutex::default(),
        }
    }
}

impl WorkQueues {
    /// The queue of `kind`'s controller.
    pub fn queue(self: &Arc<Self>, kind: &'static str) -> WorkQueue {
        let state = self
            .states
            .lock()
            .expect("queues")
            .entry(kind)
            .or_default()
            .clone();
        WorkQueue {
            kind,
            state,
            queues: self.clone(),
        }
    }

    /// The queues' state as gauges, as of now: `(label, depth, unfinished
    /// seconds, longest running seconds)`, sorted by kind.
    fn gauges(&self) -> Vec<(QueueLabel, i64, f64, f64)> {
        let now = Instant::now();
        let mut out: Vec<_> = self
            .states
            .lock()
            .expect("queues")
            .iter()
            .map(|(kind, state)| {
                let s = state.lock().expect("queue");
                let running = s
                    .running
                    .values()
                    .map(|t| now.duration_since(*t).as_secs_f64());
                let (sum, max) =
                    running.fold((0.0, 0.0_f64), |(sum, max), d| (sum + d, max.max(d)));
                (
                    QueueLabel::of(kind),
                    i64::try_from(s.waiting.len()).unwrap_or(i64::MAX),
                    sum,
                    max,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }
}

impl Collector for WorkQueues {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families: [(&str, &str, &dyn EncodeMetric); 4] = [
            (
                "workqueue_adds",
                "Total number of adds handled by workqueue",
                &self.adds,
            ),
            (
                "workqueue_retries",
                "Total number of retries handled by workqueue",
                &self.retries,
            ),
            (
                "workqueue_queue_duration_seconds",
                "How long in seconds an item stays in workqueue before being requested",
                &self.queue_duration,
            ),
            (
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes",
                &self.work_duration,
            ),
        ];
        for (name, help, metric) in families {
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let depth = Family::<QueueLabel, Gauge>::default();
        let unfinished = Family::<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let longest = Family::<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (label, waiting, sum, max) in self.gauges() {
            depth.get_or_create(&label).set(waiting);
            unfinished.get_or_create(&label).set(sum);
            longest.get_or_create(&label).set(max);
        }
        depth.encode(encoder.encode_descriptor(
            "workqueue_depth",
            "Current depth of workqueue",
            None,
            depth.metric_type(),
        )?)?;
        unfinished.encode(encoder.encode_descriptor(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
            None,
            unfinished.metric_type(),
        )?)?;
        longest.encode(encoder.encode_descriptor(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running",
            None,
            longest.metric_type(),
        )?)
    }
}

/// One controller's queue: wraps its triggers, and is told by the driver
/// when reconciles start and end.
#[derive(Clone)]
pub struct WorkQueue {
    kind: &'static str,
    state: Arc<Mutex<QueueState>>,
    queues: Arc<WorkQueues>,
}

/// The key of an object in its queue.
fn key<K: Resource>(r: &ObjectRef<K>) -> String {
    format!("{}/{}", r.namespace.as_deref().unwrap_or(""), r.name)
}

impl WorkQueue {
    fn label(&self) -> QueueLabel {
        QueueLabel::of(self.kind)
    }

    /// `object` was triggered.
    pub fn add<K: Resource>(&self, object: &ObjectRef<K>) {
        self.queues.adds.get_or_create(&self.label()).inc();
        self.state
            .lock()
            .expect("queue")
            .waiting
            .entry(key(object))
            .or_insert_with(Instant::now);
    }

    /// The reconcile of `object` starts: it leaves the queue.
    pub fn started<K: Resource>(&self, object: &ObjectRef<K>) {
        let k = key(object);
        let mut s = self.state.lock().expect("queue");
        let now = Instant::now();
        if let Some(since) = s.waiting.remove(&k) {
            self.queues
                .queue_duration
                .get_or_create(&self.label())
                .observe(now.duration_since(since).as_secs_f64());
        }
        s.running.insert(k, now);
    }

    /// The reconcile of `object` ended (however it ended).
    pub fn finished<K: Resource>(&self, object: &ObjectRef<K>) {
        let since = self
            .state
            .lock()
            .expect("queue")
            .running
            .remove(&key(object));
        if let Some(since) = since {
            self.queues
                .work_duration
                .get_or_create(&self.label())
                .observe(since.elapsed().as_secs_f64());
        }
    }

    /// A failed reconcile of the kind was requeued.
    pub fn retried(&self) {
        self.queues.retries.get_or_create(&self.label()).inc();
    }

    /// `object` was triggered but is gone before its reconcile: it leaves
    /// the queue without a run.
    pub fn forget<K: Resource>(&self, object: &ObjectRef<K>) {
        self.state
            .lock()
            .expect("queue")
            .waiting
            .remove(&key(object));
    }

    /// The controller's own objects as triggers (for
    /// `Controller::for_shared_stream`), each counted as an add.
    pub fn objects<K, S>(&self, stream: S) -> impl Stream<Item = Arc<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Send + Sync + 'static,
        S: Stream<Item = Arc<K>> + Send + 'static,
    {
        let q = self.clone();
        stream.inspect(move |o| q.add(&ObjectRef::from_obj(o.as_ref())))
    }

    /// A mapper (for `watches_shared_stream`) whose every result is counted
    /// as an add.
    pub fn mapper<O, K, I>(
        &self,
        map: impl Fn(Arc<O>) -> I + Send + Sync + 'static,
    ) -> impl Fn(Arc<O>) -> Vec<ObjectRef<K>> + Send + Sync + 'static
    where
        K: Resource,
        I: IntoIterator<Item = ObjectRef<K>>,
    {
        let q = self.clone();
        move |o| {
            let refs: Vec<ObjectRef<K>> = map(o).into_iter().collect();
            for r in &refs {
                q.add(r);
            }
            refs
        }
    }

    /// Object references as triggers (for `Controller::reconcile_on`), each
    /// counted as an add.
    pub fn refs<K, S>(&self, stream: S) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: Resource + 'static,
        S: Stream<Item = ObjectRef<K>> + Send + 'static,
    {
        let q = self.clone();
        stream.inspect(move |r| q.add(r))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn cm(name: &str) -> ObjectRef<ConfigMap> {
        ObjectRef::new(name).within("t")
    }

    fn rendered(queues: WorkQueues) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(queues));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }

    #[test]
    fn adds_merge_while_waiting_and_the_wait_ends_at_the_start() {
        let queues = Arc::new(WorkQueues::default());
        let q = queues.queue("ConfigMap");
        // Three triggers of a, one of b: two objects wait.
        q.add(&cm("a"));
        q.add(&cm("a"));
        q.add(&cm("b"));
        q.add(&cm("a"));
        assert_eq!(queues.gauges()[0].1, 2);
        q.started(&cm("a"));
        // Triggered again while running: waits again.
        q.add(&cm("a"));
        assert_eq!(queues.gauges()[0].1, 2, "b waits, and a once more");
        let running = queues.gauges()[0].3;
        assert!(running >= 0.0, "a runs");
        q.finished(&cm("a"));
        q.retried();
        // b is deleted before its run.
        q.forget(&cm("b"));
        q.started(&cm("a"));
        q.finished(&cm("a"));
        assert_eq!(queues.gauges()[0].1, 0);
        drop(q);
        let text = rendered(Arc::try_unwrap(queues).unwrap());
        for line in [
            r#"workqueue_adds_total{name="ConfigMap",controller="ConfigMap"} 5"#,
            r#"workqueue_retries_total{name="ConfigMap",controller="ConfigMap"} 1"#,
            r#"workqueue_queue_duration_seconds_count{name="ConfigMap",controller="ConfigMap"} 2"#,
            r#"workqueue_work_duration_seconds_count{name="ConfigMap",controller="ConfigMap"} 2"#,
            r#"workqueue_depth{name="ConfigMap",controller="ConfigMap"} 0"#,
            r#"workqueue_unfinished_work_seconds{name="ConfigMap",controller="ConfigMap"} 0.0"#,
            r#"workqueue_longest_running_processor_seconds{name="ConfigMap",controller="ConfigMap"} 0.0"#,
        ] {
            has(&text, line);
        }
    }

    #[test]
    fn running_reconciles_count_as_unfinished_work() {
        let queues = Arc::new(WorkQueues::default());
        let q = queues.queue("ConfigMap");
        q.add(&cm("a"));
        q.started(&cm("a"));
        q.started(&cm("b"));
        std::thread::sleep(std::time::Duration::from_millis(30));
        let (_, depth, sum, max) = queues.gauges().remove(0);
        assert_eq!(depth, 0);
        assert!(
            max >= 0.03 && sum >= 2.0 * 0.03 - 1e-3 && sum >= max,
            "{sum} {max}"
        );
    }

    #[tokio::test]
    async fn wrapped_triggers_count_as_adds() {
        let queues = Arc::new(WorkQueues::default());
        let q = queues.queue("ConfigMap");
        let mut o = ConfigMap::default();
        o.metadata.name = Some("a".into());
        o.metadata.namespace = Some("t".into());
        let objects: Vec<_> = q
            .objects(futures::stream::iter([Arc::new(o.clone())]))
            .collect()
            .await;
        assert_eq!(objects.len(), 1);
        let map = q.mapper(|_: Arc<ConfigMap>| [cm("x"), cm("y")]);
        assert_eq!(map(Arc::new(o)).len(), 2);
        let refs: Vec<_> = q.refs(futures::stream::iter([cm("z")])).collect().await;
        assert_eq!(refs.len(), 1);
        assert_eq!(queues.gauges()[0].1, 4, "a, x, y and z wait");
    }
}
