//! The blackhole sink: answers Delivered for everything and keeps nothing. For
//! benchmarks and for measuring the pipeline without a destination.

use coro_core::sink::{Batch, Outcome, SinkError};
use futures::future::{self, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The blackhole sink service; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct BlackholeSink {
    records: Arc<AtomicU64>,
}

impl BlackholeSink {
    /// A new blackhole.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records swallowed so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
}

impl tower::Service<Batch> for BlackholeSink {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = Ready<Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        self.records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        future::ready(Ok(vec![Outcome::Delivered; batch.len()]))
    }
}
