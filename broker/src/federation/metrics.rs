//! Federation metrics: Choria's names and labels (PROTOCOL.md §3.8,
//! `broker/federation/stats/stats.go`), Go's connector metrics
//! (`choria/connection.go`), and Coro's own under `coro_federation_`.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The federation metric families.
#[derive(Debug, Clone)]
pub struct FederationMetrics {
    /// `choria_federation_received_msgs{name,worker,connected_to,cluster,identity}`
    pub received: IntCounterVec,
    /// `choria_federation_published_msgs{...}`: once per target an egest published to.
    pub published: IntCounterVec,
    /// `choria_federation_errors{...}`
    pub errors: IntCounterVec,
    /// `choria_federation_time{...}`: a histogram here (Go exports a summary); `_sum`
    /// and `_count` mean the same.
    pub time: HistogramVec,
    /// `coro_federation_dropped_total{cluster,direction,reason}`: why messages were not
    /// forwarded (`invalid`, `not_federated`, `no_targets`, `no_reply_to`,
    /// `bad_target`, `bad_reply_to`, `too_many_targets`, `loop`, `rate_limited`,
    /// `slow_consumer`, `publish`).
    pub dropped: IntCounterVec,
    /// `coro_federation_connections{cluster,side,state}`: NATS connections per side
    /// (`federation`, `collective`) that are `up` or `down`.
    pub connections: IntGaugeVec,
    /// `choria_connector_initial_connection_attempts`
    pub connect_attempts: IntCounter,
    /// `choria_connector_reconnections`
    pub reconnections: IntCounter,
    /// `choria_connector_connection_closed`
    pub closed: IntCounter,
    /// `choria_connector_errors`
    pub connection_errors: IntCounter,
    /// `choria_connector_initial_connect_time` (a summary in Go)
    pub connect_time: Histogram,
}

/// The labels of Choria's federation metrics.
pub const LABELS: [&str; 5] = ["name", "worker", "connected_to", "cluster", "identity"];

impl FederationMetrics {
    /// Creates and registers the families.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = FederationMetrics {
            received: IntCounterVec::new(
                Opts::new(
                    "choria_federation_received_msgs",
                    "Number of messages received by a Federation Broker worker",
                ),
                &LABELS,
            )?,
            published: IntCounterVec::new(
                Opts::new(
                    "choria_federation_published_msgs",
                    "Number of messages published by a Federation Broker worker",
                ),
                &LABELS,
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "choria_federation_errors",
                    "Messages that could not be handled",
                ),
                &LABELS,
            )?,
            time: HistogramVec::new(
                HistogramOpts::new("choria_federation_time", "Time taken to process messages")
                    .buckets(prometheus::exponential_buckets(0.00001, 2.0, 20)?),
                &LABELS,
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "coro_federation_dropped_total",
                    "Messages the federation broker did not forward, by reason",
                ),
                &["cluster", "direction", "reason"],
            )?,
            connections: IntGaugeVec::new(
                Opts::new(
                    "coro_federation_connections",
                    "Federation broker NATS connections per side and state",
                ),
                &["cluster", "side", "state"],
            )?,
            connect_attempts: IntCounter::new(
                "choria_connector_initial_connection_attempts",
                "How many connection attempts were made before a connection was established",
            )?,
            reconnections: IntCounter::new(
                "choria_connector_reconnections",
                "Number of times the connector reconnected to the middleware",
            )?,
            closed: IntCounter::new(
                "choria_connector_connection_closed",
                "Number of times the connection was closed",
            )?,
            connection_errors: IntCounter::new(
                "choria_connector_errors",
                "Number of times the connection encountered an error",
            )?,
            connect_time: Histogram::with_opts(
                HistogramOpts::new(
                    "choria_connector_initial_connect_time",
                    "How long it took to establish the initial connection",
                )
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
            )?,
        };
        registry.register(Box::new(m.received.clone()))?;
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.time.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.connect_attempts.clone()))?;
        registry.register(Box::new(m.reconnections.clone()))?;
        registry.register(Box::new(m.closed.clone()))?;
        registry.register(Box::new(m.connection_errors.clone()))?;
        registry.register(Box::new(m.connect_time.clone()))?;
        Ok(m)
    }
}

/// One worker's series, looked up once.
#[derive(Clone)]
pub(crate) struct WorkerMetrics {
    pub received: IntCounter,
    /// Egest workers only, as in Go.
    pub published: Option<IntCounter>,
    pub errors: IntCounter,
    pub time: Histogram,
}

impl WorkerMetrics {
    pub(crate) fn new(
        m: &FederationMetrics,
        name: &str,
        worker: usize,
        connected_to: &str,
        cluster: &str,
        identity: &str,
    ) -> Self {
        let worker = worker.to_string();
        let labels = [name, worker.as_str(), connected_to, cluster, identity];
        WorkerMetrics {
            received: m.received.with_label_values(&labels),
            published: (name == "nats_egest").then(|| m.published.with_label_values(&labels)),
            errors: m.errors.with_label_values(&labels),
            time: m.time.with_label_values(&labels),
        }
    }
}
