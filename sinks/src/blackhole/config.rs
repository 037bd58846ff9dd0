//! Blackhole sink settings: there are none.

use serde::Deserialize;

/// `type = "blackhole"`: swallows every record (answering Delivered); for benchmarks
/// and for trying an ingest out. Takes no options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}
