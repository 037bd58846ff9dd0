//! Kafka sink metrics, next to the `coro_sink_*` family every sink has.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `coro_kafka_delivery_errors_total` | adapter, sink, error, outcome | failed produce calls and delivery reports by librdkafka error code (`MessageSizeTooLarge`, `MessageTimedOut`, ...) and what became of the record (`retry`, `reject`) |
//! | `coro_kafka_delivery_seconds` | adapter, sink | histogram of the time from enqueueing a batch to its last delivery report |
//! | `coro_kafka_in_flight_records` | adapter, sink | records librdkafka holds (queued, or sent and not yet acknowledged), as of the last batch |
//! | `coro_kafka_producer_restarts_total` | adapter, sink | producers replaced after a fatal error |

use coro_core::sink::Outcome;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use rdkafka::error::KafkaError;

/// The metric families, registered once per registry.
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    errors: IntCounterVec,
    seconds: HistogramVec,
    in_flight: IntGaugeVec,
    restarts: IntCounterVec,
}

impl KafkaMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = KafkaMetrics::unregistered()?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.seconds.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.restarts.clone()))?;
        Ok(m)
    }

    /// The families, registered nowhere (tests, benchmarks).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let labels = &["adapter", "sink"];
        Ok(KafkaMetrics {
            errors: IntCounterVec::new(
                Opts::new(
                    "coro_kafka_delivery_errors_total",
                    "Failed Kafka produce calls and delivery reports by error and outcome",
                ),
                &["adapter", "sink", "error", "outcome"],
            )?,
            seconds: HistogramVec::new(
                HistogramOpts::new(
                    "coro_kafka_delivery_seconds",
                    "Time from enqueueing a batch to its last Kafka delivery report",
                )
                .buckets(exponential_buckets(0.0005, 2.0, 18)?),
                labels,
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "coro_kafka_in_flight_records",
                    "Records librdkafka holds: queued, or sent and not yet acknowledged",
                ),
                labels,
            )?,
            restarts: IntCounterVec::new(
                Opts::new(
                    "coro_kafka_producer_restarts_total",
                    "Kafka producers replaced after a fatal error",
                ),
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
            in_flight: self.in_flight.with_label_values(&labels),
            restarts: self.restarts.with_label_values(&labels),
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
    pub(crate) in_flight: prometheus::IntGauge,
    pub(crate) restarts: prometheus::IntCounter,
    adapter: String,
    sink: String,
}

impl SinkMetrics {
    /// Counts a failed record: its error and what became of it.
    pub(crate) fn error(&self, error: &KafkaError, outcome: &Outcome) {
        let code = error
            .rdkafka_error_code()
            .map_or_else(|| "client".to_string(), |c| format!("{c:?}"));
        let outcome = match outcome {
            Outcome::Reject { .. } => "reject",
            _ => "retry",
        };
        self.errors
            .with_label_values(&[self.adapter.as_str(), self.sink.as_str(), &code, outcome])
            .inc();
    }
}
