//! The blackhole sink: answers Delivered for everything and keeps nothing. For
//! benchmarks and for measuring the pipeline without a destination.

use coro_core::sink::{Batch, Outcome, SinkError};
use futures::future::{self, Ready};
use std::task::{Context, Poll};

/// The blackhole sink service. The pipeline's metrics count what it swallows.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlackholeSink;

impl BlackholeSink {
    /// A new blackhole.
    pub fn new() -> Self {
        BlackholeSink
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
        future::ready(Ok(vec![Outcome::Delivered; batch.len()]))
    }
}
