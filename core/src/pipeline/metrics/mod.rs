//! Metrics: what every sink did, in one family of Prometheus metrics for all sinks, so
//! one dashboard works for each of them.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `coro_sink_records_total` | adapter, sink, outcome | records by final outcome |
//! | `coro_sink_retries_total` | adapter, sink | records sent again |
//! | `coro_sink_batch_records` | adapter, sink | histogram of batch sizes |
//! | `coro_sink_batch_bytes` | adapter, sink | histogram of batch body bytes |
//! | `coro_sink_call_seconds` | adapter, sink | histogram of sink call time, retries included |
//! | `coro_end_to_end_latency_seconds` | adapter, sink | Choria message time to delivery |

use crate::sink::{Batch, Outcome, SinkError};
use futures::future::BoxFuture;
use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tower::{Layer, Service};

/// The metric families, registered once per registry.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    records: IntCounterVec,
    retries: IntCounterVec,
    batch_records: HistogramVec,
    batch_bytes: HistogramVec,
    call_seconds: HistogramVec,
    latency: HistogramVec,
}

impl PipelineMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["adapter", "sink"];
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        };
        let m = PipelineMetrics {
            records: IntCounterVec::new(
                Opts::new(
                    "coro_sink_records_total",
                    "Records by final outcome at each sink",
                ),
                &["adapter", "sink", "outcome"],
            )?,
            retries: IntCounterVec::new(
                Opts::new("coro_sink_retries_total", "Records sent to a sink again"),
                labels,
            )?,
            batch_records: histogram(
                "coro_sink_batch_records",
                "Records per sink call",
                exponential_buckets(1.0, 2.0, 12)?,
            )?,
            batch_bytes: histogram(
                "coro_sink_batch_bytes",
                "Body bytes per sink call",
                exponential_buckets(256.0, 4.0, 10)?,
            )?,
            call_seconds: histogram(
                "coro_sink_call_seconds",
                "Time for a sink call to finish, retries included",
                exponential_buckets(0.0005, 2.0, 18)?,
            )?,
            latency: histogram(
                "coro_end_to_end_latency_seconds",
                "From the Choria message time to delivery at the sink",
                exponential_buckets(0.001, 2.0, 20)?,
            )?,
        };
        registry.register(Box::new(m.records.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.batch_records.clone()))?;
        registry.register(Box::new(m.batch_bytes.clone()))?;
        registry.register(Box::new(m.call_seconds.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        Ok(m)
    }

    /// The metrics of one sink of one adapter.
    pub fn for_sink(&self, adapter: &str, sink: &str) -> SinkMetrics {
        let labels = [adapter, sink];
        SinkMetrics {
            outcome: ["delivered", "retry", "rejected", "filtered"]
                .map(|o| self.records.with_label_values(&[adapter, sink, o])),
            retries: self.retries.with_label_values(&labels),
            batch_records: self.batch_records.with_label_values(&labels),
            batch_bytes: self.batch_bytes.with_label_values(&labels),
            call_seconds: self.call_seconds.with_label_values(&labels),
            latency: self.latency.with_label_values(&labels),
        }
    }
}

/// One sink's metrics with their labels bound.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    outcome: [prometheus::IntCounter; 4],
    retries: prometheus::IntCounter,
    batch_records: prometheus::Histogram,
    batch_bytes: prometheus::Histogram,
    call_seconds: prometheus::Histogram,
    latency: prometheus::Histogram,
}

impl SinkMetrics {
    /// The counter for the retry layer.
    pub fn retries(&self) -> prometheus::IntCounter {
        self.retries.clone()
    }

    /// Counts one record's outcome.
    pub fn count(&self, outcome: &Outcome) {
        let i = match outcome {
            Outcome::Delivered => 0,
            Outcome::Retry { .. } => 1,
            Outcome::Reject { .. } => 2,
            Outcome::Filtered => 3,
        };
        self.outcome[i].inc();
    }
}

/// Records [`SinkMetrics`] around the layers below it.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: SinkMetrics,
}

impl MetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: SinkMetrics) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The metrics service; see [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    metrics: SinkMetrics,
}

impl<S> Service<Batch> for Metrics<S>
where
    S: Service<Batch, Response = Vec<Outcome>, Error = SinkError>,
    S::Future: Send + 'static,
{
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let m = self.metrics.clone();
        m.batch_records.observe(batch.len() as f64);
        m.batch_bytes.observe(batch.body_bytes() as f64);
        let times: Vec<i128> = batch.records.iter().map(|r| r.time_ns).collect();
        let started = Instant::now();
        let call = self.inner.call(batch);
        Box::pin(async move {
            let result = call.await;
            m.call_seconds.observe(started.elapsed().as_secs_f64());
            let now_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128);
            match &result {
                Ok(outcomes) => {
                    for (outcome, time_ns) in outcomes.iter().zip(&times) {
                        m.count(outcome);
                        if *outcome == Outcome::Delivered && *time_ns > 0 {
                            m.latency.observe((now_ns - time_ns).max(0) as f64 / 1e9);
                        }
                    }
                }
                Err(e) => {
                    for _ in &times {
                        m.count(&e.outcome());
                    }
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::record;
    use tower::ServiceExt;

    #[tokio::test]
    async fn counts_outcomes_and_sizes() {
        let registry = Registry::new();
        let metrics = PipelineMetrics::register(&registry).unwrap();
        let sink = tower::service_fn(|b: Batch| async move {
            Ok::<_, SinkError>(
                b.records
                    .iter()
                    .map(|r| {
                        if r.request_id == "1" {
                            Outcome::reject("no")
                        } else {
                            Outcome::Delivered
                        }
                    })
                    .collect(),
            )
        });
        let svc = MetricsLayer::new(metrics.for_sink("reg", "js")).layer(sink);
        svc.oneshot(Batch::new(vec![
            record(0, "ab"),
            record(1, "cd"),
            record(2, ""),
        ]))
        .await
        .unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(
                r#"coro_sink_records_total{adapter="reg",outcome="delivered",sink="js"} 2"#
            ),
            "{text}"
        );
        assert!(text
            .contains(r#"coro_sink_records_total{adapter="reg",outcome="rejected",sink="js"} 1"#));
        assert!(text.contains(r#"coro_sink_batch_records_sum{adapter="reg",sink="js"} 3"#));
        assert!(text.contains(r#"coro_sink_batch_bytes_sum{adapter="reg",sink="js"} 4"#));
    }
}
