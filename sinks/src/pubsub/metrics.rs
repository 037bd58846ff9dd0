//! Pub/Sub sink metrics, next to the `coro_sink_*` family every sink has.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `coro_pubsub_publish_errors_total` | adapter, sink, error, outcome | messages not published, by gRPC status (`NotFound`, `PermissionDenied`, `Unavailable`, `OrderingKeyPaused`, `MessageTooLarge`, ...) and what became of them (`retry`, `reject`) |
//! | `coro_pubsub_publish_seconds` | adapter, sink | histogram of the time from publishing a batch to its last result |
//! | `coro_pubsub_batches_total` | adapter, sink | batches published |

pub use crate::request_metrics::SinkMetrics;
use crate::request_metrics::{Names, RequestMetrics};

/// The Pub/Sub sink's metric names.
#[derive(Debug)]
pub struct PubSubNames;

impl Names for PubSubNames {
    const ERRORS: (&'static str, &'static str) = (
        "coro_pubsub_publish_errors_total",
        "Messages Pub/Sub did not accept, by status and outcome",
    );
    const SECONDS: (&'static str, &'static str) = (
        "coro_pubsub_publish_seconds",
        "Time from publishing a batch to its last result",
    );
    const REQUESTS: (&'static str, &'static str) =
        ("coro_pubsub_batches_total", "Batches published");
}

/// The metric families, registered once per registry.
pub type PubSubMetrics = RequestMetrics<PubSubNames>;
