//! The sink contract: a tower `Service` over a [`Batch`] that answers one [`Outcome`]
//! per record, in the order the records came.
//!
//! Every destination maps its own partial failures onto outcomes: Elasticsearch bulk
//! items, Kinesis `FailedRecords`, Kafka delivery reports, Pub/Sub per-message results,
//! JetStream PubAcks. The retry layer then resends only the records that asked for it,
//! and ingest acknowledges only what was delivered or dead-lettered.

use crate::Record;
use std::time::Duration;

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination has it durably.
    Delivered,
    /// Not now: send it again, no sooner than `after` when the destination said so.
    Retry {
        /// A wait the destination asked for (e.g. a 429's Retry-After).
        after: Option<Duration>,
        /// Why, for logs and the dead letter once retries run out.
        reason: String,
    },
    /// Never: the destination refused this record; it goes to the dead-letter sink.
    Reject {
        /// Why, for logs and the dead letter.
        reason: String,
    },
    /// A filter left this record out on purpose; nothing to deliver, nothing to retry.
    /// Sinks never answer this; the filter layer does.
    Filtered,
}

impl Outcome {
    /// A retry with no wait asked for.
    pub fn retry(reason: impl Into<String>) -> Outcome {
        Outcome::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    /// A rejection.
    pub fn reject(reason: impl Into<String>) -> Outcome {
        Outcome::Reject {
            reason: reason.into(),
        }
    }
}

/// Records for one call of a sink, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The records.
    pub records: Vec<Record>,
}

impl Batch {
    /// A batch of `records`.
    pub fn new(records: Vec<Record>) -> Batch {
        Batch { records }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Payload bytes: the sum of the records' body sizes.
    pub fn body_bytes(&self) -> usize {
        self.records.iter().map(|r| r.body.len()).sum()
    }
}

/// A failure of the whole call rather than of single records (connection lost,
/// request timed out, credentials refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again: every record in the batch becomes [`Outcome::Retry`].
    #[error("{0}")]
    Retriable(String),
    /// Not worth trying again: every record becomes [`Outcome::Reject`].
    #[error("{0}")]
    Fatal(String),
}

impl SinkError {
    /// The outcome each record of the failed batch gets.
    pub fn outcome(&self) -> Outcome {
        match self {
            SinkError::Retriable(reason) => Outcome::retry(reason.clone()),
            SinkError::Fatal(reason) => Outcome::reject(reason.clone()),
        }
    }
}

/// A sink: a tower `Service` from a batch to one outcome per record. Implemented for
/// every service of that shape.
pub trait Sink:
    tower::Service<Batch, Response = Vec<Outcome>, Error = SinkError> + Send + 'static
{
}

impl<S> Sink for S where
    S: tower::Service<Batch, Response = Vec<Outcome>, Error = SinkError> + Send + 'static
{
}
