//! Where a message goes once ingest has it: decoded once, fanned out to every sink's
//! pipeline, and settled: acknowledged when every sink delivered it (or it went to the
//! dead letter), retried when any sink asked for it.

use super::metrics::AdapterMetrics;
use coro_core::config::adapters::Protocol;
use coro_core::pipeline::decode::{Decode, DecodeLayer};
use coro_core::pipeline::{Incoming, PipelineService};
use coro_core::protocol::Limits;
use coro_core::sink::Outcome;
use coro_core::Record;
use futures::future::{self, BoxFuture};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service, ServiceExt};

/// What ingest should do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Every sink has it, or it is in the dead letter, or it was dropped on purpose.
    Ack,
    /// Some sink asked for it again.
    Retry {
        /// A wait the sink asked for.
        after: Option<Duration>,
    },
}

/// Sends a record to every sink's pipeline and combines their outcomes.
#[derive(Clone)]
pub struct FanOut {
    sinks: Arc<[(String, PipelineService)]>,
    accept: Protocol,
}

impl Service<Record> for FanOut {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The pipelines take every record at once (ingest bounds what is in flight).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, record: Record) -> Self::Future {
        if !self.accept.accepts(record.kind) {
            let outcome = Outcome::reject(format!(
                "protocol: this adapter takes {} messages, got a {} message",
                self.accept.as_str(),
                record.kind.as_str()
            ));
            return Box::pin(future::ready(Ok(outcome)));
        }
        let sinks = self.sinks.clone();
        if let [(_, pipeline)] = &sinks[..] {
            // One sink, the common case: no copy, no join.
            let call = submit(pipeline, record);
            return Box::pin(async move { Ok(combine([(&sinks[0].0, call.await)])) });
        }
        // Every sink but the last gets a copy; the last takes the record itself.
        let last = sinks.len().saturating_sub(1);
        let mut record = Some(record);
        let calls: Vec<_> = sinks
            .iter()
            .enumerate()
            .filter_map(|(i, (_, pipeline))| {
                let r = if i == last {
                    record.take()?
                } else {
                    record.clone()?
                };
                Some(submit(pipeline, r))
            })
            .collect();
        Box::pin(async move {
            let outcomes = future::join_all(calls).await;
            Ok(combine(sinks.iter().map(|(name, _)| name).zip(outcomes)))
        })
    }
}

/// Hands `record` to `pipeline` now, not when the answer is first awaited, so records
/// are queued into each sink's batches in the order ingest handed them over, however
/// their futures are polled later.
fn submit(pipeline: &PipelineService, record: Record) -> impl Future<Output = Outcome> {
    // Always ready: no layer before the batcher waits, and it queues every record.
    let call = pipeline.clone().call(record);
    async move { call.await.unwrap_or_else(|e| match e {}) }
}

/// The outcome of a message from its sinks' outcomes: any retry asks to retry (with the
/// longest wait asked for); otherwise any rejection rejects it, naming the sinks;
/// otherwise it is delivered if some sink took it, and filtered if none wanted it.
fn combine<'a>(outcomes: impl IntoIterator<Item = (&'a String, Outcome)>) -> Outcome {
    let mut retry: Option<Option<Duration>> = None;
    let mut rejects = Vec::new();
    let mut delivered = false;
    for (name, outcome) in outcomes {
        match outcome {
            Outcome::Delivered => delivered = true,
            Outcome::Filtered => {}
            Outcome::Retry { after, .. } => {
                retry = Some(match (retry.flatten(), after) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                })
            }
            Outcome::Reject { reason } => rejects.push(format!("sink {name}: {reason}")),
        }
    }
    if let Some(after) = retry {
        Outcome::Retry {
            after,
            reason: "a sink asked to retry".into(),
        }
    } else if !rejects.is_empty() {
        Outcome::reject(rejects.join("; "))
    } else if delivered {
        Outcome::Delivered
    } else {
        Outcome::Filtered
    }
}

/// One adapter's route: decode, fan out, dead letter, metrics.
#[derive(Clone)]
pub struct Route {
    adapter: Arc<str>,
    decode: Decode<FanOut>,
    dead_letter: Option<PipelineService>,
    metrics: AdapterMetrics,
    workers: Arc<[WorkerMetrics]>,
    log: Arc<RateLimitedLog>,
}

/// Choria's per-worker series (`name = <adapter>.<worker>`), looked up once.
struct WorkerMetrics {
    received_in: prometheus::IntCounter,
    received_out: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    time: prometheus::Histogram,
    errors_in: prometheus::IntCounter,
    errors_out: prometheus::IntCounter,
}

impl WorkerMetrics {
    fn new(metrics: &AdapterMetrics, adapter: &str, worker: usize, identity: &str) -> Self {
        let name = format!("{adapter}.{worker}");
        let input = [name.as_str(), "input", identity];
        let output = [name.as_str(), "output", identity];
        WorkerMetrics {
            received_in: metrics.received.with_label_values(&input),
            received_out: metrics.received.with_label_values(&output),
            bytes: metrics.bytes.with_label_values(&input),
            time: metrics.time.with_label_values(&input),
            errors_in: metrics.errors.with_label_values(&input),
            errors_out: metrics.errors.with_label_values(&output),
        }
    }
}

impl Route {
    /// A route for `adapter` into `sinks`, with an optional dead-letter pipeline;
    /// `workers` ingest workers report Choria's per-worker metrics.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        adapter: &str,
        identity: &str,
        workers: usize,
        limits: Limits,
        accept: Protocol,
        sinks: Vec<(String, PipelineService)>,
        dead_letter: Option<PipelineService>,
        metrics: AdapterMetrics,
    ) -> Self {
        let fan_out = FanOut {
            sinks: sinks.into(),
            accept,
        };
        Route {
            adapter: adapter.into(),
            decode: DecodeLayer::new(limits).layer(fan_out),
            dead_letter,
            workers: (0..workers.max(1))
                .map(|w| WorkerMetrics::new(&metrics, adapter, w, identity))
                .collect(),
            metrics,
            log: Arc::new(RateLimitedLog::new(Duration::from_secs(5))),
        }
    }

    /// The adapter's name.
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Delivers one message and says how to settle it. `worker` labels the Choria
    /// metrics (`<adapter>.<worker>`). The message is decoded and handed to the sinks'
    /// pipelines here, before the future is first polled: call this in the order the
    /// messages arrived and their records keep that order.
    pub fn deliver(
        &self,
        msg: Incoming,
        worker: usize,
    ) -> impl Future<Output = Disposition> + Send + 'static {
        let started = Instant::now();
        let w = worker % self.workers.len();
        self.workers[w].received_in.inc();
        self.workers[w].bytes.inc_by(msg.payload.len() as u64);
        // Decode and fan-out are always ready (see `FanOut::poll_ready`).
        let outcome = self.decode.clone().call(msg.clone());
        let route = self.clone();
        async move {
            let outcome = outcome.await.unwrap_or_else(|e| match e {});
            let w = &route.workers[w];
            let disposition = match outcome {
                Outcome::Delivered => {
                    w.received_out.inc();
                    Disposition::Ack
                }
                Outcome::Filtered => Disposition::Ack,
                Outcome::Retry { after, .. } => Disposition::Retry { after },
                Outcome::Reject { reason } => {
                    if reason.starts_with("decode:") || reason.starts_with("protocol:") {
                        w.errors_in.inc();
                    } else {
                        w.errors_out.inc();
                    }
                    route.dead_letter(&msg, &reason).await
                }
            };
            w.time.observe(started.elapsed().as_secs_f64());
            disposition
        }
    }

    /// Sends a rejected message to the dead letter; without one it is logged, counted
    /// and acknowledged (retrying a message every sink refuses would stall the adapter).
    async fn dead_letter(&self, msg: &Incoming, reason: &str) -> Disposition {
        let sink = reason
            .strip_prefix("sink ")
            .and_then(|rest| rest.split(':').next())
            .unwrap_or("");
        self.log.warn(&self.adapter, &msg.subject, reason);
        let Some(dead_letter) = &self.dead_letter else {
            self.metrics
                .dropped
                .with_label_values(&[&self.adapter, "rejected"])
                .inc();
            return Disposition::Ack;
        };
        let record = match coro_core::protocol::decode(&msg.payload) {
            Ok(m) => Some(Record::from_message(&msg.subject, m, msg.payload.clone())),
            Err(_) => None,
        };
        let letter = Record::dead_letter(
            &self.adapter,
            sink,
            reason,
            &msg.subject,
            &msg.payload,
            record.as_ref(),
        );
        match dead_letter
            .clone()
            .oneshot(letter)
            .await
            .unwrap_or_else(|e| match e {})
        {
            Outcome::Delivered | Outcome::Filtered => {
                self.metrics
                    .dead_letters
                    .with_label_values(&[&self.adapter, sink])
                    .inc();
                Disposition::Ack
            }
            Outcome::Retry { after, .. } => Disposition::Retry { after },
            Outcome::Reject { reason } => {
                // Losing a message silently is worse than stalling: keep it for later.
                self.log.warn(
                    &self.adapter,
                    &msg.subject,
                    &format!("dead letter refused: {reason}"),
                );
                Disposition::Retry {
                    after: Some(Duration::from_secs(5)),
                }
            }
        }
    }
}

/// Logs at most once per period per adapter, with a count of what was held back, so
/// a flood of bad input cannot flood the log.
pub struct RateLimitedLog {
    period: Duration,
    last: std::sync::Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    /// A log that speaks at most once per `period`.
    pub fn new(period: Duration) -> Self {
        RateLimitedLog {
            period,
            last: std::sync::Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs a warning unless one was logged within the period.
    pub fn warn(&self, adapter: &str, subject: &str, reason: &str) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < self.period) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            adapter,
            subject,
            suppressed,
            "message not delivered: {reason}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combining_sink_outcomes() {
        let (a, b) = ("a".to_string(), "b".to_string());
        let retry = |after| Outcome::Retry {
            after,
            reason: "busy".into(),
        };
        assert_eq!(
            combine([(&a, Outcome::Delivered), (&b, Outcome::Filtered)]),
            Outcome::Delivered
        );
        assert_eq!(
            combine([(&a, Outcome::Filtered), (&b, Outcome::Filtered)]),
            Outcome::Filtered
        );
        assert_eq!(
            combine([(&a, Outcome::reject("no")), (&b, Outcome::reject("never"))]),
            Outcome::reject("sink a: no; sink b: never")
        );
        // A retry wins over a rejection (the message comes again), with the longest wait.
        let out = combine([
            (&a, retry(Some(Duration::from_secs(1)))),
            (&b, Outcome::reject("no")),
            (&b, retry(Some(Duration::from_secs(3)))),
        ]);
        assert!(
            matches!(out, Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3))
        );
    }
}
