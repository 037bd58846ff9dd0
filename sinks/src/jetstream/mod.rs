//! Publish to JetStream, awaiting each PubAck.

pub mod config;
pub mod encode;
pub mod service;

pub use service::JetStreamSink;

#[cfg(test)]
mod tests;
