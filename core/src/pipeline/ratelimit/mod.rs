//! Rate limit: at most so many records per second reach the sink, whatever the batch
//! sizes. A token bucket holding one second's worth lets short bursts through.

use crate::sink::{Batch, Outcome, SinkError};
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// Limits records per second.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimitLayer {
    /// At most `per_second` records each second (at least 1).
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        RateLimitLayer {
            bucket: Arc::new(Mutex::new(Bucket {
                rate,
                tokens: rate,
                at: Instant::now(),
            })),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes `n` tokens, going into debt if need be, and says how long to wait until
    /// the debt is paid. Debt keeps large batches fair without starving them.
    fn take(&mut self, n: usize) -> Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.at = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// The rate limit service; see [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<Mutex<Bucket>>,
}

impl<S> Service<Batch> for RateLimit<S>
where
    S: Service<Batch, Response = Vec<Outcome>, Error = SinkError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        // Readiness of the sink is awaited after the wait, in the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let wait = match self.bucket.lock() {
            Ok(mut bucket) => bucket.take(batch.len()),
            Err(poisoned) => poisoned.into_inner().take(batch.len()),
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            inner.oneshot(batch).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::record;

    #[tokio::test(start_paused = true)]
    async fn spreads_records_over_time() {
        let sink = tower::service_fn(|b: Batch| async move {
            Ok::<_, SinkError>(vec![Outcome::Delivered; b.len()])
        });
        let svc = RateLimitLayer::new(100).layer(sink);
        let start = Instant::now();
        for _ in 0..5 {
            let batch = Batch::new((0..100).map(|i| record(i, "")).collect());
            svc.clone().oneshot(batch).await.unwrap();
        }
        // 500 records at 100/s with a 100-record burst allowance: 4 seconds.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_millis(4100),
            "{took:?}"
        );
    }
}
