//! Coro sinks: one module per destination, each with the same shape (`config`,
//! `service`, and `encode` where the wire format needs one), plus the output
//! [`encoding`]s they share.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blackhole;
pub mod config;
pub mod encoding;
pub mod file;
pub mod jetstream;
pub mod nats;
