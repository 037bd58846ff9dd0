//! Adapter metrics: Choria's names and labels (PROTOCOL.md §5.4), so existing
//! dashboards keep working, and Coro's own under `coro_`.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The adapter metric families.
#[derive(Debug, Clone)]
pub struct AdapterMetrics {
    /// `choria_adapter_received_msgs{name,role,identity}`
    pub received: IntCounterVec,
    /// `choria_adapter_errors{name,role,identity}`
    pub errors: IntCounterVec,
    /// `choria_adapter_bytes{name,role,identity}`
    pub bytes: IntCounterVec,
    /// `choria_adapter_time{name,role,identity}`: a histogram here (the Go broker exports
    /// a summary); `_sum` and `_count` mean the same.
    pub time: HistogramVec,
    /// `choria_adapter_queue_length{name,identity}`
    pub queue_length: IntGaugeVec,
    /// `choria_adapter_queue_capacity{name,identity}`
    pub queue_capacity: IntGaugeVec,
    /// `coro_ingest_dropped_total{adapter,reason}`: core NATS drops by reason.
    pub dropped: IntCounterVec,
    /// `coro_dead_letters_total{adapter,sink}`
    pub dead_letters: IntCounterVec,
    /// `coro_ingest_in_flight{adapter}`: messages taken but not yet settled.
    pub in_flight: IntGaugeVec,
    /// `coro_consumer_pending{adapter}`: JetStream messages not yet delivered to us.
    pub consumer_pending: IntGaugeVec,
    /// `coro_ingest_redeliveries_total{adapter}`: JetStream messages seen again.
    pub redeliveries: IntCounterVec,
}

impl AdapterMetrics {
    /// Creates and registers the families.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let role = &["name", "role", "identity"];
        let m = AdapterMetrics {
            received: IntCounterVec::new(
                Opts::new(
                    "choria_adapter_received_msgs",
                    "Messages received by the adapter",
                ),
                role,
            )?,
            errors: IntCounterVec::new(Opts::new("choria_adapter_errors", "Adapter errors"), role)?,
            bytes: IntCounterVec::new(
                Opts::new(
                    "choria_adapter_bytes",
                    "Payload bytes received by the adapter",
                ),
                role,
            )?,
            time: HistogramVec::new(
                HistogramOpts::new("choria_adapter_time", "Time to process a message")
                    .buckets(prometheus::exponential_buckets(0.0001, 2.0, 20)?),
                role,
            )?,
            queue_length: IntGaugeVec::new(
                Opts::new(
                    "choria_adapter_queue_length",
                    "Messages waiting in the adapter queue",
                ),
                &["name", "identity"],
            )?,
            queue_capacity: IntGaugeVec::new(
                Opts::new("choria_adapter_queue_capacity", "Size of the adapter queue"),
                &["name", "identity"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "coro_ingest_dropped_total",
                    "Messages dropped by core NATS ingest, by reason",
                ),
                &["adapter", "reason"],
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "coro_dead_letters_total",
                    "Messages sent to the dead-letter sink",
                ),
                &["adapter", "sink"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new(
                    "coro_ingest_in_flight",
                    "Messages taken and not yet settled",
                ),
                &["adapter"],
            )?,
            consumer_pending: IntGaugeVec::new(
                Opts::new(
                    "coro_consumer_pending",
                    "JetStream messages waiting for this consumer",
                ),
                &["adapter"],
            )?,
            redeliveries: IntCounterVec::new(
                Opts::new(
                    "coro_ingest_redeliveries_total",
                    "JetStream messages delivered more than once",
                ),
                &["adapter"],
            )?,
        };
        registry.register(Box::new(m.received.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.time.clone()))?;
        registry.register(Box::new(m.queue_length.clone()))?;
        registry.register(Box::new(m.queue_capacity.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.dead_letters.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.consumer_pending.clone()))?;
        registry.register(Box::new(m.redeliveries.clone()))?;
        Ok(m)
    }
}
