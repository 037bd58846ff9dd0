//! Elasticsearch sink metrics, next to the `coro_sink_*` family every sink has.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `coro_elasticsearch_bulk_requests_total` | adapter, sink, result | `_bulk` requests: `ok`, `item_errors` (some items failed), `failed` (the whole request) |
//! | `coro_elasticsearch_bulk_seconds` | adapter, sink | histogram of `_bulk` request time |
//! | `coro_elasticsearch_duplicates_total` | adapter, sink | `events` items answered 409 on `create`: already stored, counted Delivered |
//! | `coro_elasticsearch_superseded_total` | adapter, sink | `nodes` items answered 409: the stored registration is as new or newer, counted Delivered |
//! | `coro_elasticsearch_item_errors_total` | adapter, sink, status, type | failed items by HTTP status and Elasticsearch error type (429/5xx retried, other 4xx rejected) |
//! | `coro_elasticsearch_stale_marked_total` | adapter, sink | nodes the `stale_after` job marked stale |

use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The metric families, registered once per registry.
#[derive(Debug, Clone)]
pub struct ElasticsearchMetrics {
    requests: IntCounterVec,
    seconds: HistogramVec,
    duplicates: IntCounterVec,
    superseded: IntCounterVec,
    item_errors: IntCounterVec,
    stale: IntCounterVec,
}

impl ElasticsearchMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = ElasticsearchMetrics::unregistered()?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.seconds.clone()))?;
        registry.register(Box::new(m.duplicates.clone()))?;
        registry.register(Box::new(m.superseded.clone()))?;
        registry.register(Box::new(m.item_errors.clone()))?;
        registry.register(Box::new(m.stale.clone()))?;
        Ok(m)
    }

    /// The families, registered nowhere (tests, benchmarks).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let labels = &["adapter", "sink"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        Ok(ElasticsearchMetrics {
            requests: counter(
                "coro_elasticsearch_bulk_requests_total",
                "Elasticsearch _bulk requests by result: ok, item_errors, failed",
                &["adapter", "sink", "result"],
            )?,
            seconds: HistogramVec::new(
                HistogramOpts::new(
                    "coro_elasticsearch_bulk_seconds",
                    "Time for one Elasticsearch _bulk request",
                )
                .buckets(exponential_buckets(0.001, 2.0, 16)?),
                labels,
            )?,
            duplicates: counter(
                "coro_elasticsearch_duplicates_total",
                "Event documents Elasticsearch already had (409 on create), counted delivered",
                labels,
            )?,
            superseded: counter(
                "coro_elasticsearch_superseded_total",
                "Registrations older than the stored node document (409), counted delivered",
                labels,
            )?,
            item_errors: counter(
                "coro_elasticsearch_item_errors_total",
                "Failed _bulk items by HTTP status and Elasticsearch error type",
                &["adapter", "sink", "status", "type"],
            )?,
            stale: counter(
                "coro_elasticsearch_stale_marked_total",
                "Node documents marked stale by the stale_after job",
                labels,
            )?,
        })
    }

    /// The metrics of one sink of one adapter.
    pub fn for_sink(&self, adapter: &str, sink: &str) -> SinkMetrics {
        let labels = [adapter, sink];
        SinkMetrics {
            requests: ["ok", "item_errors", "failed"]
                .map(|r| self.requests.with_label_values(&[adapter, sink, r])),
            seconds: self.seconds.with_label_values(&labels),
            duplicates: self.duplicates.with_label_values(&labels),
            superseded: self.superseded.with_label_values(&labels),
            item_errors: self.item_errors.clone(),
            stale: self.stale.with_label_values(&labels),
            adapter: adapter.to_string(),
            sink: sink.to_string(),
        }
    }
}

/// One sink's metrics with their labels bound.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    requests: [prometheus::IntCounter; 3],
    pub(crate) seconds: prometheus::Histogram,
    pub(crate) duplicates: prometheus::IntCounter,
    pub(crate) superseded: prometheus::IntCounter,
    item_errors: IntCounterVec,
    pub(crate) stale: prometheus::IntCounter,
    adapter: String,
    sink: String,
}

/// How one `_bulk` request went.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BulkResult {
    Ok,
    ItemErrors,
    Failed,
}

impl SinkMetrics {
    pub(crate) fn request(&self, result: BulkResult) {
        self.requests[result as usize].inc();
    }

    pub(crate) fn item_error(&self, status: u16, kind: &str) {
        let status = status.to_string();
        self.item_errors
            .with_label_values(&[self.adapter.as_str(), self.sink.as_str(), &status, kind])
            .inc();
    }
}
