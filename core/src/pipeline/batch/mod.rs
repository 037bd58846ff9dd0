//! Batch: gathers single records into [`Batch`]es for the sink, by count, by bytes and by
//! time, and hands each record its own outcome back.
//!
//! A background task (started when the layer is applied, so inside a Tokio runtime)
//! owns the sink. A batch is sent when it holds `max_records` records or `max_bytes` of
//! bodies, or `timeout` after its first record arrived. Several batches may be in
//! flight; the layers below (concurrency limit) decide how many. When every handle to
//! the batcher is dropped, the task sends what it holds and stops: that is the drain.

use crate::sink::{Batch, Outcome, SinkError};
use crate::Record;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tower::{Layer, Service, ServiceExt};

/// When to send a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records in one batch. Default 100.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Most body bytes in one batch; the record that crosses it is the last. Default 1 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Longest a record waits for its batch to fill. Default 100 ms.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
}

const fn default_max_records() -> usize {
    100
}
const fn default_max_bytes() -> usize {
    1024 * 1024
}
const fn default_timeout() -> Duration {
    Duration::from_millis(100)
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            timeout: default_timeout(),
        }
    }
}

/// Builds [`Batcher`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchLayer {
    config: BatchConfig,
}

impl BatchLayer {
    /// A batch layer sending batches as `config` says.
    pub fn new(config: BatchConfig) -> Self {
        BatchLayer { config }
    }
}

impl<S> Layer<S> for BatchLayer
where
    S: Service<Batch, Response = Vec<Outcome>, Error = SinkError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Service = Batcher;

    fn layer(&self, inner: S) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, inner, self.config));
        Batcher { tx }
    }
}

type Item = (Record, oneshot::Sender<Outcome>);

/// The record-side handle of a batching task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Item>,
}

impl Service<Record> for Batcher {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // No room to wait for: what is in flight is bounded by ingest (its queue, or
        // JetStream's `max_ack_pending`), each record holding its place until answered.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, record: Record) -> Self::Future {
        // Queued here, not in the future: records reach batches in the order of the
        // calls, however their futures are polled later.
        let (done, outcome) = oneshot::channel();
        let sent = self.tx.send((record, done));
        Box::pin(async move {
            if sent.is_err() {
                return Ok(Outcome::retry("the pipeline is shutting down"));
            }
            Ok(outcome
                .await
                .unwrap_or_else(|_| Outcome::retry("the sink task stopped before answering")))
        })
    }
}

async fn run<S>(mut rx: mpsc::UnboundedReceiver<Item>, mut sink: S, config: BatchConfig)
where
    S: Service<Batch, Response = Vec<Outcome>, Error = SinkError> + Send + 'static,
    S::Future: Send + 'static,
{
    while let Some(first) = rx.recv().await {
        let mut bytes = first.0.body.len();
        let mut items = vec![first];
        let deadline = tokio::time::sleep(config.timeout);
        tokio::pin!(deadline);
        while items.len() < config.max_records && bytes < config.max_bytes {
            tokio::select! {
                biased;
                item = rx.recv() => match item {
                    Some(item) => {
                        bytes += item.0.body.len();
                        items.push(item);
                    }
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        send(&mut sink, items).await;
    }
}

/// Calls the sink once it is ready and answers every record when it returns, without
/// waiting here, so the next batch can start filling.
async fn send<S>(sink: &mut S, items: Vec<Item>)
where
    S: Service<Batch, Response = Vec<Outcome>, Error = SinkError> + Send + 'static,
    S::Future: Send + 'static,
{
    let (records, answers): (Vec<Record>, Vec<oneshot::Sender<Outcome>>) =
        items.into_iter().unzip();
    let call = match sink.ready().await {
        Ok(ready) => ready.call(Batch::new(records)),
        Err(e) => return answer(answers, Err(e)),
    };
    tokio::spawn(async move { answer(answers, call.await) });
}

fn answer(answers: Vec<oneshot::Sender<Outcome>>, result: Result<Vec<Outcome>, SinkError>) {
    let n = answers.len();
    let outcomes = match result {
        Ok(outcomes) if outcomes.len() == n => outcomes,
        Ok(outcomes) => vec![
            Outcome::retry(format!(
                "the sink answered {} outcomes for {n} records",
                outcomes.len()
            ));
            n
        ],
        Err(e) => vec![e.outcome(); n],
    };
    for (done, outcome) in answers.into_iter().zip(outcomes) {
        // A caller that went away no longer needs its answer.
        let _ = done.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::record;
    use std::sync::{Arc, Mutex};

    /// A sink that records batch sizes and rejects records whose id is odd.
    fn sink(
        sizes: Arc<Mutex<Vec<usize>>>,
    ) -> impl Service<Batch, Response = Vec<Outcome>, Error = SinkError, Future = impl Send>
           + Send
           + 'static {
        tower::service_fn(move |batch: Batch| {
            sizes.lock().unwrap().push(batch.len());
            let out = batch
                .records
                .iter()
                .map(|r| match r.request_id.parse::<usize>().unwrap_or(0) % 2 {
                    0 => Outcome::Delivered,
                    _ => Outcome::reject("odd"),
                })
                .collect();
            async move { Ok(out) }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn batches_by_count_and_answers_each_record() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let config = BatchConfig {
            max_records: 4,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(60),
        };
        let batcher = BatchLayer::new(config).layer(sink(sizes.clone()));
        let calls = (0..8).map(|i| batcher.clone().oneshot(record(i, "x")));
        let outcomes = futures::future::join_all(calls).await;
        for (i, o) in outcomes.into_iter().enumerate() {
            let want = if i % 2 == 0 {
                Outcome::Delivered
            } else {
                Outcome::reject("odd")
            };
            assert_eq!(o.unwrap(), want);
        }
        assert_eq!(*sizes.lock().unwrap(), [4, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_by_bytes_and_by_time() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let config = BatchConfig {
            max_records: 100,
            max_bytes: 10,
            timeout: Duration::from_millis(50),
        };
        let batcher = BatchLayer::new(config).layer(sink(sizes.clone()));
        // 4 + 4 + 4 bytes: the third crosses 10 bytes and closes the batch.
        let calls = (0..3).map(|i| batcher.clone().oneshot(record(i * 2, "abcd")));
        futures::future::join_all(calls).await;
        assert_eq!(*sizes.lock().unwrap(), [3]);
        // A lone record goes out when the timeout passes.
        let start = tokio::time::Instant::now();
        batcher.clone().oneshot(record(0, "x")).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(*sizes.lock().unwrap(), [3, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn records_are_batched_in_call_order_however_polled() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let seen = seen.clone();
            tower::service_fn(move |batch: Batch| {
                let mut seen = seen.lock().unwrap();
                seen.extend(batch.records.iter().map(|r| r.request_id.clone()));
                let out = vec![Outcome::Delivered; batch.len()];
                async move { Ok::<_, SinkError>(out) }
            })
        };
        let config = BatchConfig {
            max_records: 4,
            max_bytes: 1 << 20,
            timeout: Duration::from_millis(10),
        };
        let mut batcher = BatchLayer::new(config).layer(sink);
        let mut calls = Vec::new();
        for i in 0..10 {
            batcher.ready().await.unwrap();
            calls.push(batcher.call(record(i, "x")));
        }
        // Polled last to first, as concurrent ingest may: the order stays the calls'.
        calls.reverse();
        for o in futures::future::join_all(calls).await {
            assert_eq!(o.unwrap(), Outcome::Delivered);
        }
        let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(*seen.lock().unwrap(), want);
    }

    #[tokio::test]
    async fn sink_errors_become_outcomes() {
        let failing = tower::service_fn(|_b: Batch| async {
            Err::<Vec<Outcome>, _>(SinkError::Retriable("down".into()))
        });
        let batcher = BatchLayer::new(BatchConfig {
            timeout: Duration::from_millis(1),
            ..Default::default()
        })
        .layer(failing);
        assert_eq!(
            batcher.oneshot(record(0, "x")).await.unwrap(),
            Outcome::retry("down")
        );
    }
}
