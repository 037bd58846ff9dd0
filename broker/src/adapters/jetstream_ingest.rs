//! JetStream ingest: a durable pull consumer with explicit acks. At-least-once end to
//! end: a message is acknowledged only after every sink of its route delivered it (or
//! it went to the dead letter); a retry is a NAK with the delay asked for; a long wait
//! sends in-progress acks so the server does not redeliver early. When sinks stall, the
//! in-flight window fills and ingest stops pulling: backpressure, not loss.
//!
//! After a crash, what was in flight is redelivered once `ack_wait` passes, so
//! duplicates are bounded by the in-flight window (`max_ack_pending`); sinks de-duplicate
//! with the record's idempotency key where they can (JetStream `Nats-Msg-Id`).
//!
//! Messages are handed to the pipelines in the order pulled and settled each in its
//! own task, so records keep the stream's order (a redelivered message excepted).

use super::metrics::AdapterMetrics;
use super::route::{Disposition, Route};
use async_nats::jetstream::consumer::{pull, Consumer};
use async_nats::jetstream::AckKind;
use coro_core::config::adapters::JetStreamIngest;
use coro_core::pipeline::Incoming;
use futures::stream::StreamExt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Why ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The stream is missing or unreachable.
    #[error("stream {stream}: {source}")]
    Stream {
        /// The stream name.
        stream: String,
        /// What went wrong.
        source: async_nats::jetstream::context::GetStreamError,
    },
    /// The consumer could not be created or bound.
    #[error("consumer {consumer}: {reason}")]
    Consumer {
        /// The durable name.
        consumer: String,
        /// What went wrong.
        reason: String,
    },
}

/// The bound consumer and its message stream.
pub struct Bound {
    consumer: Consumer<pull::Config>,
    messages: pull::Stream,
}

/// Binds (creating when missing) the durable consumer and opens its message stream.
pub async fn consumer(
    config: &JetStreamIngest,
    client: async_nats::Client,
) -> Result<Bound, StartError> {
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|source| StartError::Stream {
            stream: config.stream.clone(),
            source,
        })?;
    let consumer_error = |reason: String| StartError::Consumer {
        consumer: config.consumer.clone(),
        reason,
    };
    let consumer: Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &config.consumer,
            pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: i64::try_from(config.max_ack_pending).unwrap_or(i64::MAX),
                filter_subject: config.subject.clone().unwrap_or_default(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| consumer_error(e.to_string()))?;
    let messages = consumer
        .stream()
        .max_messages_per_batch(config.fetch_batch.max(1))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| consumer_error(e.to_string()))?;
    Ok(Bound { consumer, messages })
}

/// Reports the consumer's lag (messages in the stream not yet delivered to us) every
/// few seconds until `stop` turns true.
async fn report_lag(
    mut consumer: Consumer<pull::Config>,
    gauge: prometheus::IntGauge,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if let Ok(info) = consumer.info().await {
            gauge.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
        }
        tokio::select! {
            () = tokio::time::sleep(LAG_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How often consumer lag is read from the server.
const LAG_INTERVAL: Duration = Duration::from_secs(2);

/// Pulls and settles messages until `stop` turns true, then settles what is in flight.
pub async fn run(
    config: JetStreamIngest,
    bound: Bound,
    route: Route,
    metrics: AdapterMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let adapter = route.adapter().to_string();
    let Bound {
        consumer,
        mut messages,
    } = bound;
    let lag = tokio::spawn(report_lag(
        consumer,
        metrics.consumer_pending.with_label_values(&[&adapter]),
        stop.clone(),
    ));
    let limit = config.max_ack_pending.max(1);
    let gauge = metrics.in_flight.with_label_values(&[&adapter]);
    let redeliveries = metrics.redeliveries.with_label_values(&[&adapter]);
    let permits = std::sync::Arc::new(Semaphore::new(limit));
    let name: std::sync::Arc<str> = route.adapter().into();
    tracing::info!(
        adapter,
        stream = config.stream,
        consumer = config.consumer,
        "JetStream ingest started"
    );
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let msg = tokio::select! {
            msg = messages.next() => match msg {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    tracing::warn!(adapter, "pulling from {}: {e}", config.stream);
                    continue;
                }
                None => break,
            },
            _ = stop.changed() => break,
        };
        if msg.info().is_ok_and(|i| i.delivered > 1) {
            redeliveries.inc();
        }
        let gauge = gauge.clone();
        gauge.inc();
        let ack_wait = config.ack_wait;
        // Handed to the pipelines here, in the order pulled; settled in its own task.
        let incoming = Incoming {
            subject: msg.subject.to_string(),
            payload: msg.payload.clone(),
        };
        let delivered = route.deliver(incoming, 0);
        let name = name.clone();
        tokio::spawn(async move {
            settle(msg, delivered, &name, ack_wait).await;
            gauge.dec();
            drop(permit);
        });
    }
    // Stop pulling. Messages already pulled but not started are handed back with a NAK,
    // so the server redelivers them now rather than after ack_wait.
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(Duration::from_millis(20), messages.next()).await
    {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
    }
    drop(messages);
    let _ = permits.acquire_many(limit as u32).await;
    gauge.set(0);
    let _ = lag.await;
    tracing::info!(adapter, "JetStream ingest stopped");
}

/// Waits for a message's delivery and acks or naks it, keeping it alive with progress
/// acks meanwhile.
async fn settle(
    msg: async_nats::jetstream::Message,
    deliver: impl Future<Output = Disposition>,
    adapter: &str,
    ack_wait: Duration,
) {
    tokio::pin!(deliver);
    let keepalive = (ack_wait / 2).max(Duration::from_millis(100));
    let disposition = loop {
        tokio::select! {
            d = &mut deliver => break d,
            () = tokio::time::sleep(keepalive) => {
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        }
    };
    let result = match disposition {
        Disposition::Ack => msg.ack().await,
        Disposition::Retry { after } => msg.ack_with(AckKind::Nak(after)).await,
    };
    if let Err(e) = result {
        // The server redelivers an unacknowledged message after ack_wait.
        tracing::warn!(adapter, "settling a message: {e}");
    }
}
