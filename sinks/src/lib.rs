//! Coro sinks: one module per destination, each with the same shape (`config`,
//! `service`, and `encode` where the wire format needs one), plus the output
//! [`encoding`]s they share.
// Only `plugin` may use unsafe code: calling into plugin libraries needs it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod blackhole;
pub mod config;
pub mod elasticsearch;
pub mod encoding;
pub mod file;
pub mod jetstream;
pub mod kafka;
pub mod kinesis;
pub mod nats;
pub mod plugin;
pub mod pubsub;
pub mod request_metrics;
