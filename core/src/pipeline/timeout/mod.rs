//! Timeout: a sink call that takes longer than the limit fails as a whole with a
//! retriable error, so the retry layer above sends it again.

use crate::sink::{Batch, Outcome, SinkError};
use futures::future::BoxFuture;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// Bounds each sink call.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Fails calls that take longer than `limit`.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The timeout service; see [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Batch> for Timeout<S>
where
    S: Service<Batch, Response = Vec<Outcome>, Error = SinkError>,
    S::Future: Send + 'static,
{
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let limit = self.limit;
        let call = self.inner.call(batch);
        Box::pin(async move {
            tokio::time::timeout(limit, call)
                .await
                .unwrap_or_else(|_| Err(SinkError::Retriable(format!("timed out after {limit:?}"))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn slow_calls_fail_retriably() {
        let slow = tower::service_fn(|_b: Batch| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, SinkError>(vec![])
        });
        let svc = TimeoutLayer::new(Duration::from_secs(1)).layer(slow);
        assert_eq!(
            svc.oneshot(Batch::default()).await,
            Err(SinkError::Retriable("timed out after 1s".into()))
        );
    }
}
