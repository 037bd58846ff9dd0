//! Publish to a Google Cloud Pub/Sub topic with Google's official client
//! (`google-cloud-pubsub`), answering each record from its publish result.
//!
//! `config` has the settings (`type = "pubsub"`), `service` is the tower service,
//! `online` is `coro validate --online`, `metrics` the sink's own Prometheus metrics.

pub mod config;
pub mod metrics;
pub mod online;
pub mod service;

pub use metrics::PubSubMetrics;
pub use online::check_online;
pub use service::PubSubSink;

/// The Pub/Sub client the sink is built on, for callers that need the lower level
/// (tests, benchmarks) without a version of their own.
pub use google_cloud_pubsub;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod throttling_proxy;
