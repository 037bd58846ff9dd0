//! Core NATS ingest, as Choria's adapters do it: a queue subscription
//! (`nats_ingest_<name>`) per worker and a bounded queue (`queue_len` messages taken but
//! not yet settled, shared by the workers); each worker keeps its messages in flight
//! together so batches can fill.
//!
//! Core NATS is at-most-once: a message is gone once the server handed it over. When the
//! queue is full, reading waits up to `block_for` (backpressure that slows the NATS
//! connection) and then drops, counting each drop by reason; a slow consumer reported by
//! the server is counted too. What is in the queue when the process dies is lost.

use super::metrics::AdapterMetrics;
use super::route::Route;
use coro_core::config::adapters::NatsIngest;
use coro_core::pipeline::Incoming;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};

/// Runs until `stop` turns true, then waits for what is in flight.
pub async fn run(
    config: NatsIngest,
    client: async_nats::Client,
    route: Route,
    metrics: AdapterMetrics,
    identity: Arc<str>,
    stop: watch::Receiver<bool>,
) {
    let adapter = route.adapter().to_string();
    // The queue is a budget of messages taken but not yet settled; each holds one permit
    // until it is done.
    let limit = config.queue_len.max(1);
    let queue = Arc::new(Semaphore::new(limit));
    let queue_name = format!("{adapter}.0");
    metrics
        .queue_capacity
        .with_label_values(&[queue_name.as_str(), &*identity])
        .set(limit as i64);
    let depth = metrics
        .queue_length
        .with_label_values(&[queue_name.as_str(), &*identity]);

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
            Reader {
                route: route.clone(),
                queue: queue.clone(),
                block_for: config.block_for,
                dropped: metrics.dropped.with_label_values(&[&adapter, "queue_full"]),
                in_flight: metrics.in_flight.with_label_values(&[&adapter]),
                depth: depth.clone(),
                worker,
            },
            stop.clone(),
        )));
    }
    tracing::info!(
        adapter,
        subject = config.subject,
        group = config.queue_group,
        "core NATS ingest started"
    );
    for reader in readers {
        let _ = reader.await;
    }
    // Every permit back means every message settled.
    let _ = queue.acquire_many(limit as u32).await;
    depth.set(0);
    tracing::info!(adapter, "core NATS ingest stopped");
}

/// What one subscriber needs to hand messages on.
struct Reader {
    route: Route,
    queue: Arc<Semaphore>,
    block_for: std::time::Duration,
    dropped: prometheus::IntCounter,
    in_flight: prometheus::IntGauge,
    depth: prometheus::IntGauge,
    worker: usize,
}

/// One queue subscriber: keeps its messages in flight inside its own task (ten
/// subscribers spread the decoding over the cores without a task per message). When the
/// queue is full it waits up to `block_for` for room (slowing the connection down), then
/// drops the message and counts it.
async fn read(
    mut subscription: async_nats::Subscriber,
    r: Reader,
    mut stop: watch::Receiver<bool>,
) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        let msg = tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
            msg = subscription.next() => match msg {
                Some(m) => m,
                None => break,
            },
            _ = stop.changed() => break,
        };
        let permit = match r.queue.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                // Wait for room, settling our own messages meanwhile (they hold permits).
                let deadline = tokio::time::sleep(r.block_for);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        p = r.queue.clone().acquire_owned() => break p.ok(),
                        Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                        () = &mut deadline => break None,
                    }
                }
            }
        };
        let Some(permit) = permit else {
            r.dropped.inc();
            continue;
        };
        let incoming = Incoming {
            subject: msg.subject.to_string(),
            payload: msg.payload,
        };
        let (in_flight_gauge, depth) = (r.in_flight.clone(), r.depth.clone());
        in_flight_gauge.inc();
        depth.inc();
        // Handed to the pipelines now, in arrival order.
        let delivered = r.route.deliver(incoming, r.worker);
        in_flight.push(async move {
            // Core NATS cannot redeliver: the disposition only feeds metrics.
            delivered.await;
            in_flight_gauge.dec();
            depth.dec();
            drop(permit);
        });
    }
    // Stop taking messages: the server gives them to other members of the group.
    let _ = subscription.unsubscribe().await;
    while in_flight.next().await.is_some() {}
    tracing::debug!(
        adapter = r.route.adapter(),
        worker = r.worker,
        "subscriber stopped"
    );
}
