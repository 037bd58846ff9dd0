//! Produce to Kafka with librdkafka, answering each record from its delivery report.
//!
//! `config` has the settings (`type = "kafka"`), `encode` turns a record into a topic,
//! key, value and headers, `service` is the tower service, and `read` reads back what
//! the sink wrote (for `coro replies` and tests); `online` is `coro validate --online`,
//! `metrics` the sink's own Prometheus metrics.

pub mod config;
pub mod encode;
pub mod metrics;
pub mod online;
pub mod read;
pub mod service;

pub use metrics::KafkaMetrics;
pub use online::check_online;
pub use service::KafkaSink;

/// The Kafka client library the sink is built on, for callers that need the lower
/// level (tests, benchmarks, admin tasks) without a version of their own.
pub use rdkafka;

#[cfg(test)]
mod tests;
