//! Retry: sends a batch again, but only the records that asked for it, with exponential
//! backoff and jitter. Records still asking after the last attempt are rejected with
//! the last reason, so they reach the dead letter instead of being lost.
//!
//! With no attempt limit (the default) a sink that is down is retried for as long as it
//! takes; the batches in flight stay bounded, so ingest stops pulling: backpressure,
//! not data loss.

use crate::sink::{Batch, Outcome, SinkError};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; none means no limit. Default: no limit.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Wait before the second attempt. Default 100 ms.
    #[serde(default = "default_initial", with = "crate::config::duration")]
    pub initial_backoff: Duration,
    /// Longest wait between attempts. Default 30 s.
    #[serde(default = "default_max", with = "crate::config::duration")]
    pub max_backoff: Duration,
}

const fn default_initial() -> Duration {
    Duration::from_millis(100)
}
const fn default_max() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: None,
            initial_backoff: default_initial(),
            max_backoff: default_max(),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1): doubling from
    /// `initial_backoff`, capped at `max_backoff`, then a random point in its upper half
    /// so that many adapters do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        exp.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Applies a [`RetryPolicy`]; counts every resent record in `retries`.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
    retries: Option<prometheus::IntCounter>,
}

impl RetryLayer {
    /// A retry layer; `retries` (optional) counts resent records.
    pub fn new(policy: RetryPolicy, retries: Option<prometheus::IntCounter>) -> Self {
        RetryLayer { policy, retries }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            policy: self.policy,
            retries: self.retries.clone(),
        }
    }
}

/// The retry service; see [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
    retries: Option<prometheus::IntCounter>,
}

impl<S> Service<Batch> for Retry<S>
where
    S: Service<Batch, Response = Vec<Outcome>, Error = SinkError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        // The ready service answers the first attempt; a clone makes the later ones.
        let clone = self.inner.clone();
        let first = std::mem::replace(&mut self.inner, clone).call(batch.clone());
        let mut inner = self.inner.clone();
        let policy = self.policy;
        let retries = self.retries.clone();
        Box::pin(async move {
            let n = batch.len();
            let mut outcomes = vec![Outcome::retry("not sent"); n];
            let mut pending: Vec<usize> = (0..n).collect();
            let mut result = first.await;
            let mut attempt = 1u32;
            loop {
                let answers = match result {
                    Ok(answers) if answers.len() == pending.len() => answers,
                    Ok(answers) => vec![
                        Outcome::retry(format!(
                            "the sink answered {} outcomes for {} records",
                            answers.len(),
                            pending.len()
                        ));
                        pending.len()
                    ],
                    Err(e) => vec![e.outcome(); pending.len()],
                };
                let mut wait = Duration::ZERO;
                let mut again = Vec::new();
                for (index, answer) in pending.iter().copied().zip(answers) {
                    if let Outcome::Retry {
                        after: Some(after), ..
                    } = &answer
                    {
                        wait = wait.max(*after);
                    }
                    if matches!(answer, Outcome::Retry { .. }) {
                        again.push(index);
                    }
                    outcomes[index] = answer;
                }
                if again.is_empty() || policy.max_attempts.is_some_and(|max| attempt >= max) {
                    break;
                }
                tokio::time::sleep(wait.max(policy.backoff(attempt))).await;
                attempt += 1;
                if let Some(counter) = &retries {
                    counter.inc_by(again.len() as u64);
                }
                let resend = Batch::new(again.iter().map(|&i| batch.records[i].clone()).collect());
                pending = again;
                result = match inner.ready().await {
                    Ok(ready) => ready.call(resend).await,
                    Err(e) => Err(e),
                };
            }
            for outcome in &mut outcomes {
                if let Outcome::Retry { reason, .. } = outcome {
                    *outcome =
                        Outcome::reject(format!("gave up after {attempt} attempts: {reason}"));
                }
            }
            Ok(outcomes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::record;
    use std::sync::{Arc, Mutex};

    /// Fails each record with a retry until it has been seen `fails` times.
    #[derive(Clone)]
    struct Flaky {
        seen: Arc<Mutex<Vec<Vec<String>>>>,
        fails: usize,
    }

    impl Service<Batch> for Flaky {
        type Response = Vec<Outcome>;
        type Error = SinkError;
        type Future = futures::future::Ready<Result<Vec<Outcome>, SinkError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, batch: Batch) -> Self::Future {
            let mut seen = self.seen.lock().unwrap();
            seen.push(batch.records.iter().map(|r| r.request_id.clone()).collect());
            let out = batch
                .records
                .iter()
                .map(|r| {
                    let times = seen.iter().filter(|b| b.contains(&r.request_id)).count();
                    if r.request_id == "0" || times > self.fails {
                        Outcome::Delivered
                    } else {
                        Outcome::retry("busy")
                    }
                })
                .collect();
            futures::future::ready(Ok(out))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resends_only_what_asked() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let counter = prometheus::IntCounter::new("r", "r").unwrap();
        let svc = RetryLayer::new(RetryPolicy::default(), Some(counter.clone())).layer(Flaky {
            seen: seen.clone(),
            fails: 2,
        });
        let out = svc
            .oneshot(Batch::new(vec![
                record(0, ""),
                record(1, ""),
                record(2, ""),
            ]))
            .await
            .unwrap();
        assert_eq!(out, vec![Outcome::Delivered; 3]);
        assert_eq!(
            *seen.lock().unwrap(),
            [vec!["0", "1", "2"], vec!["1", "2"], vec!["1", "2"]]
        );
        assert_eq!(counter.get(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let policy = RetryPolicy {
            max_attempts: Some(2),
            ..Default::default()
        };
        let svc = RetryLayer::new(policy, None).layer(Flaky {
            seen: seen.clone(),
            fails: 5,
        });
        let out = svc
            .oneshot(Batch::new(vec![record(0, ""), record(1, "")]))
            .await
            .unwrap();
        assert_eq!(out[0], Outcome::Delivered);
        assert_eq!(out[1], Outcome::reject("gave up after 2 attempts: busy"));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: None,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            assert!(p.backoff(40) <= Duration::from_secs(1));
        }
    }
}
