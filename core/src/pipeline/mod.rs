//! The adapter pipeline: one tower layer per concern, each in its own folder.
//!
//! ```text
//! Incoming ─decode─> Record ═fan-out═> per sink: ─filter─> ─transform─> ─batch─> Batch
//!     ─metrics─> ─retry─> ─timeout─> ─concurrency─> ─rate limit─> Sink
//! ```
//!
//! Order matters, as in `tower::ServiceBuilder`: the first layer named is the outermost.
//! `metrics` sits outside `retry` so it counts the final outcome of each record once and
//! every retry separately; `timeout` sits inside `retry` so a slow attempt is retried;
//! `concurrency` and `rate limit` sit next to the sink, bounding what reaches it.
//!
//! A sink that keeps order ([`Order::Kept`]) gets one batch at a time instead, with the
//! limit outside `retry`: `─metrics─> ─concurrency (1)─> ─retry─> ─timeout─> ─rate
//! limit─> Sink`, so a record sent again goes before anything handed over after it.
//!
//! Every layer answers one [`Outcome`](crate::sink::Outcome) per record; nothing is
//! dropped silently: undecodable input is rejected (for the dead letter), filtered
//! records are answered `Filtered`, and records that exhaust their retries are rejected
//! with the last reason.

pub mod batch;
pub mod decode;
pub mod filter;
pub mod metrics;
pub mod ratelimit;
pub mod retry;
pub mod timeout;
pub mod transform;

use bytes::Bytes;

/// A message as ingest received it: the subject and the payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The NATS subject.
    pub subject: String,
    /// The payload, exactly as received.
    pub payload: Bytes,
}

/// Concurrency limiting is tower's own layer; it bounds the sink calls in flight.
pub use tower::limit::ConcurrencyLimitLayer;

use crate::protocol::Limits;
use crate::sink::{Batch, Outcome, SinkError};
use crate::Record;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

/// The per-sink pipeline settings of an adapter (its `[adapter.pipeline]` table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// Largest payload accepted, in bytes. Default 8 MiB.
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// Largest gunzip output (registration `zcontent`), in bytes. Default 64 MiB.
    #[serde(default = "default_max_gunzip")]
    pub max_gunzip: usize,
    /// Which records to keep.
    #[serde(default)]
    pub filter: filter::FilterRules,
    /// How to reshape bodies.
    #[serde(default)]
    pub transform: transform::TransformRules,
    /// When to send a batch.
    #[serde(default)]
    pub batch: batch::BatchConfig,
    /// How to retry.
    #[serde(default)]
    pub retry: retry::RetryPolicy,
    /// Longest one sink call may take. Default 30 s.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// Most sink calls in flight at once. Default 4. A sink that keeps order
    /// ([`Order::Kept`]) has one.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Most records per second into the sink; none means no limit.
    #[serde(default)]
    pub rate_limit: Option<u32>,
}

const fn default_max_payload() -> usize {
    Limits::DEFAULT.max_payload
}
const fn default_max_gunzip() -> usize {
    Limits::DEFAULT.max_gunzip
}
const fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
const fn default_concurrency() -> usize {
    4
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            max_payload: default_max_payload(),
            max_gunzip: default_max_gunzip(),
            filter: Default::default(),
            transform: Default::default(),
            batch: Default::default(),
            retry: Default::default(),
            timeout: default_timeout(),
            concurrency: default_concurrency(),
            rate_limit: None,
        }
    }
}

impl PipelineSettings {
    /// The decode limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_payload: self.max_payload,
            max_gunzip: self.max_gunzip,
        }
    }
}

/// A whole pipeline for one sink: records in, one outcome per record out.
pub type PipelineService = BoxCloneSyncService<Record, Outcome, Infallible>;

/// Whether a sink's records must keep the order they were handed over in, across
/// batches and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Up to `concurrency` batches in flight; a record that is retried goes again after
    /// its backoff, so it can land after records handed over later.
    #[default]
    Any,
    /// One batch at a time, in the order handed over, retries included: nothing after
    /// a failed record is sent until it is delivered or given up. For sinks that keep
    /// a key's records in order (Kinesis shards, Pub/Sub ordering keys) and should keep
    /// it through outages and throttling. `concurrency` does not apply.
    Kept,
}

/// Assembles the record layers in the documented order around `sink` (decoding happens
/// once per message, before the fan-out to sinks, with [`decode::DecodeLayer`]), with
/// the sink calls in flight as `order` says. Must be called inside a Tokio runtime: the
/// batcher starts a task.
pub fn build<S>(
    settings: &PipelineSettings,
    sink: S,
    metrics: metrics::SinkMetrics,
    order: Order,
) -> PipelineService
where
    S: Service<Batch, Response = Vec<Outcome>, Error = SinkError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let transform = transform::TransformRules {
        limits: settings.limits(),
        ..settings.transform.clone()
    };
    let retry = retry::RetryLayer::new(settings.retry, Some(metrics.retries()));
    let to_sink = ServiceBuilder::new()
        .layer(metrics::MetricsLayer::new(metrics.clone()))
        .option_layer((order == Order::Kept).then(|| ConcurrencyLimitLayer::new(1)))
        .layer(retry)
        .layer(timeout::TimeoutLayer::new(settings.timeout))
        .option_layer(
            (order == Order::Any).then(|| ConcurrencyLimitLayer::new(settings.concurrency.max(1))),
        )
        .option_layer(settings.rate_limit.map(ratelimit::RateLimitLayer::new))
        .service(sink);
    let batcher = tower::Layer::layer(&batch::BatchLayer::new(settings.batch), to_sink);
    let records = ServiceBuilder::new()
        .layer(filter::FilterLayer::new(settings.filter.clone()))
        .layer(transform::TransformLayer::new(transform))
        .service(batcher);
    BoxCloneSyncService::new(records)
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::protocol::Version;
    use crate::{Kind, Record};

    /// A reply record with request id `id` and `body`.
    pub(crate) fn record(id: usize, body: &str) -> Record {
        Record {
            subject: "s".into(),
            version: Version::V1,
            kind: Kind::Reply,
            sender: "n".into(),
            request_id: id.to_string(),
            agent: "a".into(),
            collective: None,
            time_ns: 0,
            body: bytes::Bytes::from(body.to_string()),
            raw: bytes::Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    /// Records ids in the order the sink took them; the first call asks to retry all.
    fn sink(
        taken: Arc<Mutex<Vec<usize>>>,
    ) -> impl Service<Batch, Response = Vec<Outcome>, Error = SinkError, Future = impl Send>
           + Clone
           + Send
           + Sync
           + 'static {
        let calls = Arc::new(Mutex::new(0usize));
        tower::service_fn(move |batch: Batch| {
            let first = {
                let mut calls = calls.lock().unwrap();
                *calls += 1;
                *calls == 1
            };
            let outcomes = if first {
                vec![Outcome::retry("throttled"); batch.len()]
            } else {
                let mut taken = taken.lock().unwrap();
                taken.extend(
                    batch
                        .records
                        .iter()
                        .map(|r| r.request_id.parse::<usize>().unwrap()),
                );
                vec![Outcome::Delivered; batch.len()]
            };
            async move { Ok(outcomes) }
        })
    }

    /// The order 40 records handed over in order reach a sink whose first call fails.
    async fn taken(order: Order) -> Vec<usize> {
        let settings = PipelineSettings {
            batch: batch::BatchConfig {
                max_records: 10,
                max_bytes: 1 << 20,
                timeout: Duration::from_millis(1),
            },
            retry: retry::RetryPolicy {
                max_attempts: None,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(50),
            },
            ..PipelineSettings::default()
        };
        let metrics = metrics::PipelineMetrics::register(&prometheus::Registry::new())
            .unwrap()
            .for_sink("a", "s");
        let taken = Arc::new(Mutex::new(Vec::new()));
        let service = build(&settings, sink(taken.clone()), metrics, order);
        let calls = (0..40).map(|i| service.clone().oneshot(test_support::record(i, "x")));
        for outcome in futures::future::join_all(calls).await {
            assert_eq!(outcome, Ok(Outcome::Delivered));
        }
        let taken = taken.lock().unwrap().clone();
        taken
    }

    #[tokio::test(start_paused = true)]
    async fn kept_order_sends_a_retried_batch_before_later_ones() {
        assert_eq!(taken(Order::Kept).await, (0..40).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn any_order_lets_later_batches_pass_a_retried_one() {
        let taken = taken(Order::Any).await;
        let mut sorted = taken.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..40).collect::<Vec<_>>(), "each once");
        assert_eq!(taken[..30], (10..40).collect::<Vec<_>>(), "{taken:?}");
    }
}
