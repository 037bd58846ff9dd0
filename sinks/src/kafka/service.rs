//! The Kafka sink: enqueues each record with librdkafka and answers each one from its
//! delivery report, so Delivered means the broker acknowledged it (with `acks = "all"`,
//! every in-sync replica has it). The idempotent producer (on by default) keeps
//! librdkafka's own retries free of duplicates and in order.
//!
//! Delivery reports become outcomes as [`outcome_of`] says: a record the broker can
//! never take (too large, unknown topic, not authorized, invalid) is rejected to the
//! dead letter with the Kafka error; anything that may work later (queue full, broker
//! down, timeouts, not enough replicas) is retried by the pipeline.

use super::config::KafkaConfig;
use super::encode::{self, Template};
use super::metrics::SinkMetrics;
use coro_core::sink::{Batch, Outcome, SinkError};
use futures::future::BoxFuture;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientContext;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The librdkafka producer of one sink, with the context that logs for it.
pub type KafkaProducer = FutureProducer<SinkContext>;

/// Routes librdkafka's logs and errors into `tracing`, named by the sink.
#[derive(Debug, Clone)]
pub struct SinkContext {
    sink: Arc<str>,
}

impl SinkContext {
    /// A context for the client named `sink`.
    pub fn new(sink: &str) -> Self {
        SinkContext { sink: sink.into() }
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let sink = &*self.sink;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(sink, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(sink, facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(sink, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(sink, facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Broker connections come and go (the records wait and are retried); only a
        // fatal error needs attention beyond that, and the sink replaces the producer.
        let sink = &*self.sink;
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => tracing::error!(sink, "kafka: {error}: {reason}"),
            _ => tracing::warn!(sink, "kafka: {error}: {reason}"),
        }
    }
}

/// The Kafka sink service; clones share the producer.
#[derive(Clone)]
pub struct KafkaSink {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    name: String,
    topic: Template,
    key: Option<Template>,
    /// The producer in use; replaced when it is stuck (see [`KafkaSink::replace`]).
    producer: RwLock<Current>,
    /// Kafka-specific metrics, when the sink runs in an adapter.
    metrics: Option<SinkMetrics>,
}

/// The producer in use, its generation, and when it started. The generation makes
/// sure only the first of many concurrent batches that saw it stuck replaces it.
struct Current {
    generation: u64,
    producer: KafkaProducer,
    since: Instant,
}

/// Why a producer is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stuck {
    /// Records timed out, or the broker disowned the producer id.
    Failing,
    /// librdkafka raised a fatal error: the producer refuses everything from now on.
    Fatal,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The librdkafka client config for `config`, named `client_id`.
pub fn client_config(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (k, v) in config.properties(client_id) {
        cc.set(k, v);
    }
    if config.librdkafka.contains_key("debug") {
        // Asked for librdkafka's debug contexts: let them through.
        cc.set_log_level(RDKafkaLogLevel::Debug);
    }
    cc
}

impl KafkaSink {
    /// A sink producing as `config` says; `name` names the client (`client.id`) and its
    /// logs, e.g. `coro.<adapter>.<sink>`. Nothing connects yet: librdkafka connects
    /// in the background and records wait for it (up to `message_timeout`).
    pub fn new(config: KafkaConfig, name: &str) -> Result<Self, SinkError> {
        KafkaSink::build(config, name, None)
    }

    /// [`new`](Self::new), counting into `metrics` (see [`super::metrics`]).
    pub fn with_metrics(
        config: KafkaConfig,
        name: &str,
        metrics: SinkMetrics,
    ) -> Result<Self, SinkError> {
        KafkaSink::build(config, name, Some(metrics))
    }

    fn build(
        config: KafkaConfig,
        name: &str,
        metrics: Option<SinkMetrics>,
    ) -> Result<Self, SinkError> {
        let topic = config.topic_template().map_err(SinkError::Fatal)?;
        let key = config.key_template().map_err(SinkError::Fatal)?;
        let producer = producer(&config, name)?;
        Ok(KafkaSink {
            inner: Arc::new(Inner {
                config,
                name: name.to_string(),
                topic,
                key,
                producer: RwLock::new(Current {
                    generation: 0,
                    producer,
                    since: Instant::now(),
                }),
                metrics,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// The current producer, for metadata queries and tests.
    pub fn producer(&self) -> KafkaProducer {
        self.current().1
    }

    fn current(&self) -> (u64, KafkaProducer) {
        let guard = self
            .inner
            .producer
            .read()
            .unwrap_or_else(|p| p.into_inner());
        (guard.generation, guard.producer.clone())
    }

    /// Replaces the producer of generation `seen` with a new one (a new producer id),
    /// when it hit a fatal error, or when its records keep failing and it is older than
    /// `message_timeout`. The second covers a broker that lost or expired the producer's
    /// state (a restart without it, as tansu's memory storage does): librdkafka keeps
    /// bumping the epoch of a producer id the broker no longer knows, and every record
    /// would time out for good. Records still queued in the old producer finish there
    /// (delivered, or failed and retried through the new one).
    fn replace(&self, seen: u64, why: Stuck) {
        let old = {
            let mut guard = self
                .inner
                .producer
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if guard.generation != seen
                || (why == Stuck::Failing
                    && guard.since.elapsed() < self.inner.config.message_timeout)
            {
                return;
            }
            match producer(&self.inner.config, &self.inner.name) {
                Ok(p) => {
                    tracing::warn!(
                        sink = self.inner.name,
                        "kafka: the producer {}; started a new one",
                        match why {
                            Stuck::Fatal => "hit a fatal error",
                            Stuck::Failing => "keeps failing",
                        }
                    );
                    if let Some(m) = &self.inner.metrics {
                        m.restarts.inc();
                    }
                    std::mem::replace(
                        &mut *guard,
                        Current {
                            generation: seen + 1,
                            producer: p,
                            since: Instant::now(),
                        },
                    )
                }
                Err(e) => {
                    tracing::error!(sink = self.inner.name, "kafka: new producer: {e}");
                    return;
                }
            }
        };
        // Dropping a producer flushes and joins its thread: not on an async worker.
        tokio::task::spawn_blocking(move || drop(old.producer));
    }

    /// Waits up to `timeout` for every record librdkafka still holds to be delivered
    /// (or to fail): what `coro run` does on shutdown within the drain deadline. Records
    /// still queued after it are purged when the sink is dropped; their batches were
    /// never answered Delivered, so JetStream ingest sends them again later.
    pub async fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| SinkError::Retriable(format!("kafka flush: {e}")))?
            .map_err(|e| SinkError::Retriable(format!("kafka flush: {e}")))
    }

    /// Records librdkafka holds: queued, or sent and awaiting acknowledgement.
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.producer().in_flight_count()).unwrap_or(0)
    }
}

fn producer(config: &KafkaConfig, name: &str) -> Result<KafkaProducer, SinkError> {
    client_config(config, name)
        .create_with_context(SinkContext::new(name))
        .map_err(|e| SinkError::Fatal(format!("kafka producer: {e}")))
}

impl tower::Service<Batch> for KafkaSink {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        // Records are enqueued here, not in the future, so batches reach librdkafka in
        // the order they were called and one key's records keep their order.
        let (generation, producer) = self.current();
        let inner = &self.inner;
        let started = Instant::now();
        let mut outcomes = vec![Outcome::Delivered; batch.len()];
        let mut pending: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(batch.len());
        // Once enqueueing fails in a way that may pass (queue full), the rest of the
        // batch is not enqueued either: retrying only the one record would put it behind
        // its successors.
        let mut held_back: Option<Outcome> = None;
        // One value buffer for the batch: librdkafka copies each value when enqueued.
        let mut scratch = encode::Scratch::default();
        for (i, record) in batch.records.iter().enumerate() {
            if let Some(outcome) = &held_back {
                outcomes[i] = outcome.clone();
                continue;
            }
            let message = match encode::message_in(
                record,
                &inner.config,
                &inner.topic,
                inner.key.as_ref(),
                &mut scratch,
            ) {
                Ok(m) => m,
                Err(e) => {
                    outcomes[i] = Outcome::reject(e.to_string());
                    continue;
                }
            };
            let mut fr: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&message.topic).payload(message.payload);
            if let Some(key) = &message.key {
                fr = fr.key(key.as_ref());
            }
            if let Some(headers) = message.headers {
                fr = fr.headers(headers);
            }
            match producer.send_result(fr) {
                Ok(delivery) => pending.push((i, delivery)),
                Err((e, _)) => {
                    let outcome = outcome_of(&e);
                    if let Some(m) = &inner.metrics {
                        m.error(&e, &outcome);
                    }
                    if matches!(outcome, Outcome::Retry { .. }) {
                        held_back = Some(outcome.clone());
                    }
                    outcomes[i] = outcome;
                }
            }
        }
        let sink = self.clone();
        Box::pin(async move {
            let mut stuck = None;
            for (i, delivery) in pending {
                outcomes[i] = match delivery.await {
                    Ok(Ok(_)) => Outcome::Delivered,
                    Ok(Err((e, _))) => {
                        stuck = stuck.max(stuck_by(&e));
                        let outcome = outcome_of(&e);
                        if let Some(m) = &sink.inner.metrics {
                            m.error(&e, &outcome);
                        }
                        outcome
                    }
                    // The producer was dropped with the record queued.
                    Err(_) => Outcome::retry("kafka: the producer closed before delivery"),
                };
            }
            if let Some(m) = &sink.inner.metrics {
                m.seconds.observe(started.elapsed().as_secs_f64());
                m.in_flight.set(i64::from(producer.in_flight_count()));
            }
            if producer.client().fatal_error().is_some() {
                stuck = Some(Stuck::Fatal);
            }
            if let Some(why) = stuck {
                sink.replace(generation, why);
            }
            if sink.current().0 != generation {
                // The last handle on a replaced producer may be this one.
                tokio::task::spawn_blocking(move || drop(producer));
            }
            Ok(outcomes)
        })
    }
}

/// Whether a delivery error says the producer itself is stuck.
fn stuck_by(error: &KafkaError) -> Option<Stuck> {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code()? {
        C::Fatal => Some(Stuck::Fatal),
        C::MessageTimedOut
        | C::UnknownProducerId
        | C::OutOfOrderSequenceNumber
        | C::InvalidProducerEpoch => Some(Stuck::Failing),
        _ => None,
    }
}

/// The outcome of a failed produce or delivery.
///
/// | Kafka error | outcome |
/// |---|---|
/// | message too large (`MSG_SIZE_TOO_LARGE`, `INVALID_MSG_SIZE`, `MESSAGE_BATCH_TOO_LARGE`) | Reject |
/// | unknown topic or partition (librdkafka waited `topic.metadata.propagation.max.ms` for it; auto-creation off) | Reject |
/// | not authorized (topic, cluster, transactional id) | Reject |
/// | invalid topic, invalid record, invalid timestamp, policy violation, unsupported compression or format | Reject |
/// | anything else: queue full, broker transport failure, all brokers down, timed out, not enough replicas, leader moves, authentication, a fatal producer error (the producer is replaced) | Retry |
pub fn outcome_of(error: &KafkaError) -> Outcome {
    match error.rdkafka_error_code() {
        Some(code) if permanent(code) => Outcome::reject(format!("kafka: {error}")),
        _ => Outcome::retry(format!("kafka: {error}")),
    }
}

/// Errors that sending the same record again cannot fix.
pub fn permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            | C::UnknownTopic
            | C::UnknownTopicOrPartition
            | C::UnknownPartition
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::InvalidTopic
            | C::InvalidRecord
            | C::InvalidTimestamp
            | C::PolicyViolation
            | C::UnsupportedCompressionType
            | C::UnsupportedForMessageFormat
            | C::InvalidRequiredAcks
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(code: RDKafkaErrorCode) -> Outcome {
        outcome_of(&KafkaError::MessageProduction(code))
    }

    #[test]
    fn delivery_errors_become_outcomes() {
        use RDKafkaErrorCode as C;
        for code in [
            C::MessageSizeTooLarge,
            C::UnknownTopicOrPartition,
            C::UnknownTopic,
            C::TopicAuthorizationFailed,
            C::ClusterAuthorizationFailed,
            C::InvalidRecord,
        ] {
            assert!(matches!(produce(code), Outcome::Reject { .. }), "{code:?}");
        }
        for code in [
            C::QueueFull,
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::MessageTimedOut,
            C::RequestTimedOut,
            C::NotEnoughReplicas,
            C::NotEnoughReplicasAfterAppend,
            C::LeaderNotAvailable,
            C::NotLeaderForPartition,
            C::NetworkException,
            C::Authentication,
            C::Fatal,
            C::PurgeQueue,
            C::PurgeInflight,
            C::OutOfOrderSequenceNumber,
        ] {
            assert!(matches!(produce(code), Outcome::Retry { .. }), "{code:?}");
        }
        assert_eq!(
            produce(C::MessageSizeTooLarge),
            Outcome::reject(
                "kafka: Message production error: MessageSizeTooLarge (Broker: Message size too large)"
            )
        );
    }
}
