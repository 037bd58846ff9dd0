//! Kinesis sink metrics, next to the `coro_sink_*` family every sink has.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `coro_kinesis_record_errors_total` | adapter, sink, error, outcome | records not accepted, by Kinesis error code (`ProvisionedThroughputExceededException`, `InternalFailure`, `RecordTooLarge`, a request error, ...) and what became of them (`retry`, `reject`) |
//! | `coro_kinesis_request_seconds` | adapter, sink | histogram of `PutRecords` call times |
//! | `coro_kinesis_requests_total` | adapter, sink | `PutRecords` calls made |

pub use crate::request_metrics::SinkMetrics;
use crate::request_metrics::{Names, RequestMetrics};

/// The Kinesis sink's metric names.
#[derive(Debug)]
pub struct KinesisNames;

impl Names for KinesisNames {
    const ERRORS: (&'static str, &'static str) = (
        "coro_kinesis_record_errors_total",
        "Records Kinesis did not accept, by error code and outcome",
    );
    const SECONDS: (&'static str, &'static str) =
        ("coro_kinesis_request_seconds", "PutRecords call times");
    const REQUESTS: (&'static str, &'static str) =
        ("coro_kinesis_requests_total", "PutRecords calls made");
}

/// The metric families, registered once per registry.
pub type KinesisMetrics = RequestMetrics<KinesisNames>;
