//! Pub/Sub sink metrics, next to the `coro_sink_*` family every sink has.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `coro_pubsub_publish_errors_total` | adapter, sink, error, outcome | messages not published, by gRPC status (`NotFound`, `PermissionDenied`, `Unavailable`, `OrderingKeyPaused`, `MessageTooLarge`, ...) and what became of them (`retry`, `reject`) |
//! | `coro_pubsub_publish_seconds` | adapter, sink | histogram of the time from publishing a batch to its last result |
//! | `coro_pubsub_batches_total` | adapter, sink | batches published |

use coro_core::sink::Outcome;
use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The metric families, registered once per registry.
#[derive(Debug, Clone)]
pub struct PubSubMetrics {
    errors: IntCounterVec,
    seconds: HistogramVec,
    requests: IntCounterVec,
}

impl PubSubMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = PubSubMetrics::unregistered()?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.seconds.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        Ok(m)
    }

    /// The families, registered nowhere (tests, benchmarks).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let labels = &["adapter", "sink"];
        Ok(PubSubMetrics {
            errors: IntCounterVec::new(
                Opts::new(
                    "coro_pubsub_publish_errors_total",
                    "Messages Pub/Sub did not accept, by status and outcome",
                ),
                &["adapter", "sink", "error", "outcome"],
            )?,
            seconds: HistogramVec::new(
                HistogramOpts::new(
                    "coro_pubsub_publish_seconds",
                    "Time from publishing a batch to its last result",
                )
                .buckets(exponential_buckets(0.0005, 2.0, 18)?),
                labels,
            )?,
            requests: IntCounterVec::new(
                Opts::new("coro_pubsub_batches_total", "Batches published"),
                labels,
            )?,
        })
    }

    /// The metrics of one sink of one adapter.
    pub fn for_sink(&self, adapter: &str, sink: &str) -> SinkMetrics {
        let labels = [adapter, sink];
        SinkMetrics {
            errors: self.errors.clone(),
            seconds: self.seconds.with_label_values(&labels),
            requests: self.requests.with_label_values(&labels),
            adapter: adapter.to_string(),
            sink: sink.to_string(),
        }
    }
}

/// One sink's metrics with their labels bound.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    errors: IntCounterVec,
    pub(crate) seconds: prometheus::Histogram,
    pub(crate) requests: prometheus::IntCounter,
    adapter: String,
    sink: String,
}

impl SinkMetrics {
    /// Counts a record that was not accepted: its error code and what became of it.
    pub(crate) fn error(&self, code: &str, outcome: &Outcome) {
        let outcome = match outcome {
            Outcome::Reject { .. } => "reject",
            _ => "retry",
        };
        self.errors
            .with_label_values(&[self.adapter.as_str(), self.sink.as_str(), code, outcome])
            .inc();
    }
}
