//! Core NATS ingest, as Choria's adapters do it: a queue subscription
//! (`nats_ingest_<name>`) per worker, a bounded queue, and a dispatcher that keeps many
//! messages in flight so batches can fill.
//!
//! Core NATS is at-most-once: a message is gone once the server handed it over. When the
//! queue is full, reading waits up to `block_for` (backpressure that slows the NATS
//! connection) and then drops, counting each drop by reason; a slow consumer reported by
//! the server is counted too. What is in the queue when the process dies is lost.

use super::metrics::AdapterMetrics;
use super::route::Route;
use coro_core::config::adapters::NatsIngest;
use coro_core::pipeline::Incoming;
use futures::stream::StreamExt;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Semaphore};

/// Runs until `stop` turns true, then drains the queue and what is in flight.
pub async fn run(
    config: NatsIngest,
    client: async_nats::Client,
    route: Route,
    metrics: AdapterMetrics,
    identity: Arc<str>,
    mut stop: watch::Receiver<bool>,
) {
    let adapter = route.adapter().to_string();
    let (tx, mut rx) = mpsc::channel::<(Incoming, usize)>(config.queue_len.max(1));
    let queue_name = format!("{adapter}.0");
    metrics
        .queue_capacity
        .with_label_values(&[queue_name.as_str(), &*identity])
        .set(config.queue_len as i64);

    let mut readers = Vec::new();
    for worker in 0..config.workers.max(1) {
        let subscription = match client
            .queue_subscribe(config.subject.clone(), config.queue_group.clone())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(adapter, "subscribing to {}: {e}", config.subject);
                continue;
            }
        };
        readers.push(tokio::spawn(read(
            subscription,
            tx.clone(),
            config.block_for,
            metrics.clone(),
            adapter.clone(),
            stop.clone(),
            worker,
        )));
    }
    drop(tx);
    tracing::info!(
        adapter,
        subject = config.subject,
        group = config.queue_group,
        "core NATS ingest started"
    );

    // The queue holds at most queue_len; in flight at most as many again, so batches
    // of that size can form. Each message is its own task, so decoding runs on every
    // core.
    let limit = config.queue_len.max(1);
    let permits = Arc::new(Semaphore::new(limit));
    let gauge = metrics.in_flight.with_label_values(&[&adapter]);
    let depth = metrics
        .queue_length
        .with_label_values(&[queue_name.as_str(), &*identity]);
    loop {
        depth.set(rx.len() as i64);
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (msg, worker) = tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => m,
                None => break,
            },
            _ = stop.changed() => continue,
        };
        let route = route.clone();
        let gauge = gauge.clone();
        gauge.inc();
        tokio::spawn(async move {
            // Core NATS cannot redeliver: the disposition only feeds metrics.
            route.deliver(msg, worker).await;
            gauge.dec();
            drop(permit);
        });
    }
    // Every permit back means every message settled.
    let _ = permits.acquire_many(limit as u32).await;
    for reader in readers {
        let _ = reader.await;
    }
    tracing::info!(adapter, "core NATS ingest stopped");
}

/// One queue subscriber: moves messages into the shared queue until told to stop.
async fn read(
    mut subscription: async_nats::Subscriber,
    tx: mpsc::Sender<(Incoming, usize)>,
    block_for: std::time::Duration,
    metrics: AdapterMetrics,
    adapter: String,
    mut stop: watch::Receiver<bool>,
    worker: usize,
) {
    let dropped = metrics.dropped.with_label_values(&[&adapter, "queue_full"]);
    loop {
        let msg = tokio::select! {
            msg = subscription.next() => match msg {
                Some(m) => m,
                None => break,
            },
            _ = stop.changed() => break,
        };
        let incoming = Incoming {
            subject: msg.subject.to_string(),
            payload: msg.payload,
        };
        match tx.try_send((incoming, worker)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(incoming)) => {
                if tokio::time::timeout(block_for, tx.send(incoming))
                    .await
                    .is_err()
                {
                    dropped.inc();
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
    }
    // Stop taking messages: the server gives them to other members of the group.
    let _ = subscription.unsubscribe().await;
    tracing::debug!(adapter, worker, "subscriber stopped");
}
