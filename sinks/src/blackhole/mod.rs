//! Swallow everything: for benchmarks.

pub mod config;
pub mod service;

pub use service::BlackholeSink;
