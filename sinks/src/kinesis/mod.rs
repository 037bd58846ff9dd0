//! Put records to an Amazon Kinesis data stream with `aws-sdk-kinesis`, answering each
//! record from its `PutRecords` result entry.
//!
//! `config` has the settings (`type = "kinesis"`), `service` is the tower service
//! (splitting batches within the service limits and mapping `FailedRecords` onto
//! outcomes), `online` is `coro validate --online`, `metrics` the sink's own
//! Prometheus metrics.

pub mod config;
pub mod metrics;
pub mod online;
pub mod service;

pub use metrics::KinesisMetrics;
pub use online::check_online;
pub use service::KinesisSink;

/// The AWS SDK the sink is built on, for callers that need the lower level (tests,
/// benchmarks) without a version of their own.
pub use aws_sdk_kinesis;

#[cfg(test)]
mod test_streams;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod throttling_proxy;
