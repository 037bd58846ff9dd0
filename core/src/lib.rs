//! Coro core: the Choria protocol codec ([`protocol`]), the [`Record`] that flows
//! through pipelines, and Go-compatible JSON output ([`gojson`]).
//!
//! Nothing here does I/O; the daemon and the sinks live in other crates.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod gojson;
pub mod pipeline;
pub mod plugin;
pub mod protocol;
pub mod record;
pub mod sink;

pub use record::{Kind, Record};
