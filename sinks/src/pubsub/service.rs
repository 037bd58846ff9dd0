//! The Pub/Sub sink: hands each record of a batch to the client's batching
//! [`Publisher`] as a message with the Choria attributes and an ordering key, then
//! answers each record from its publish result.
//!
//! Outcomes: a message id is Delivered; `NOT_FOUND`, `PERMISSION_DENIED`,
//! `INVALID_ARGUMENT`, `FAILED_PRECONDITION` and `OUT_OF_RANGE` are Rejected to the
//! dead letter; anything else (unavailable, deadline, throttling, shutdown, a paused
//! ordering key) is Retried. A record larger than `max_message_bytes` is Rejected
//! unsent. When a message with an ordering key fails, the client pauses that key (so
//! later messages of the batch cannot overtake it); the sink resumes the key once
//! the batch has all its results, and the pipeline sends the failed ones again.

use super::config::PubSubConfig;
use super::metrics::SinkMetrics;
use crate::encoding;
use crate::kafka::encode::Template;
use coro_core::protocol::output::rfc3339_nano;
use coro_core::sink::{Batch, Outcome, SinkError};
use coro_core::Record;
use futures::future::BoxFuture;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::retry_policy::RetryableErrors;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Why the sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// The client could not be built (credentials, endpoint).
    #[error("pubsub client for {topic}: {reason}")]
    Client {
        /// The topic's full name.
        topic: String,
        /// The client's error.
        reason: String,
    },
    /// The ordering key template did not parse (checked at config load).
    #[error("ordering_key: unknown placeholder `{{{0}}}`")]
    Template(String),
}

/// The endpoint and whether to go without credentials: `endpoint`, else the emulator
/// at `PUBSUB_EMULATOR_HOST` (plain gRPC, no credentials), else Google's.
pub(crate) fn endpoint(config: &PubSubConfig) -> (Option<String>, bool) {
    if let Some(e) = &config.endpoint {
        return (Some(e.clone()), false);
    }
    match std::env::var("PUBSUB_EMULATOR_HOST") {
        Ok(host) if !host.is_empty() => (Some(format!("http://{host}")), true),
        _ => (None, false),
    }
}

/// The Choria attribute names the sink writes.
pub mod attribute {
    /// The sender identity.
    pub const SENDER: &str = "choria_sender";
    /// The request id.
    pub const REQUEST_ID: &str = "choria_requestid";
    /// The agent.
    pub const AGENT: &str = "choria_agent";
    /// The sub-collective; absent when the record has none.
    pub const COLLECTIVE: &str = "choria_collective";
    /// The protocol version, `1` or `2`.
    pub const PROTOCOL: &str = "choria_protocol";
    /// The Choria time, RFC3339 with nanoseconds.
    pub const TIME: &str = "choria_time";
    /// The record kind.
    pub const KIND: &str = "choria_kind";
    /// Coro's idempotency key (sender, request id, time), for de-duplication.
    pub const IDEMPOTENCY_KEY: &str = "coro_idempotency_key";
}

/// The Pub/Sub sink service; clones share the publisher.
#[derive(Clone)]
pub struct PubSubSink {
    inner: Arc<Inner>,
}

struct Inner {
    config: PubSubConfig,
    publisher: Publisher,
    ordering_key: Option<Template>,
    metrics: Option<SinkMetrics>,
}

impl std::fmt::Debug for PubSubSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubSink")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// A publisher for `config`'s topic with its batching settings.
pub async fn publisher(config: &PubSubConfig) -> Result<Publisher, PubSubError> {
    publisher_at(config, endpoint(config)).await
}

/// A publisher for `config`'s topic at `(endpoint, anonymous)`, as from [`endpoint`].
pub(crate) async fn publisher_at(
    config: &PubSubConfig,
    (endpoint, anonymous): (Option<String>, bool),
) -> Result<Publisher, PubSubError> {
    let topic = config.topic_name();
    let mut builder = Publisher::builder(topic.clone())
        .set_message_count_threshold(config.batch_messages.min(u32::MAX as usize) as u32)
        .set_byte_threshold(config.batch_bytes.min(u32::MAX as usize) as u32)
        .set_delay_threshold(config.linger)
        // The client's default retries transient errors for 10 minutes, on its own:
        // a message the sink has given up on (and the pipeline sends again) would go
        // out later anyway, twice and out of order. Bounded by the sink's timeout, the
        // client answers every message within it, so one retry loop (the pipeline's)
        // decides what is sent again.
        .with_retry_policy(RetryableErrors.with_time_limit(config.timeout));
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if anonymous {
        builder = builder
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
    }
    builder.build().await.map_err(|e| PubSubError::Client {
        topic,
        reason: e.to_string(),
    })
}

impl PubSubSink {
    /// A sink publishing as `config` says. Builds the client (credentials from the
    /// Google chain, or none for the emulator); nothing is published yet.
    pub async fn connect(
        config: PubSubConfig,
        metrics: Option<SinkMetrics>,
    ) -> Result<Self, PubSubError> {
        let at = endpoint(&config);
        Self::connect_at(config, metrics, at).await
    }

    /// [`Self::connect`] at `(endpoint, anonymous)` rather than the configured one:
    /// tests point one sink at a proxy without changing `PUBSUB_EMULATOR_HOST`, which
    /// the other tests of the process share.
    pub(crate) async fn connect_at(
        config: PubSubConfig,
        metrics: Option<SinkMetrics>,
        at: (Option<String>, bool),
    ) -> Result<Self, PubSubError> {
        let ordering_key = match config.ordering_key.as_str() {
            "" => None,
            t => Some(Template::parse(t).map_err(|e| PubSubError::Template(e.0))?),
        };
        let publisher = publisher_at(&config, at).await?;
        Ok(PubSubSink {
            inner: Arc::new(Inner {
                config,
                publisher,
                ordering_key,
                metrics,
            }),
        })
    }
}

impl tower::Service<Batch> for PubSubSink {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        // Handed to the publisher here, not in the future: the client keeps each
        // ordering key's messages in the order they were given, so batches keep theirs.
        let inner = self.inner.clone();
        let pending = inner.enqueue(&batch);
        Box::pin(async move { Ok(inner.results(pending).await) })
    }
}

/// The message for `record`: data in `encoding`, the Choria attributes, and the
/// ordering key from `ordering_key` (none when it renders empty).
pub fn message(
    record: &Record,
    encoding: encoding::Encoding,
    ordering_key: Option<&Template>,
) -> Result<Message, encoding::EncodeError> {
    let data = encoding::encode(record, encoding)?;
    let mut attributes = vec![
        (attribute::SENDER, record.sender.clone()),
        (attribute::REQUEST_ID, record.request_id.clone()),
        (attribute::AGENT, record.agent.clone()),
        (
            attribute::PROTOCOL,
            record.version.number().min(2).to_string(),
        ),
        (attribute::KIND, record.kind.as_str().to_string()),
        (attribute::IDEMPOTENCY_KEY, record.idempotency_key()),
    ];
    if let Some(c) = &record.collective {
        attributes.push((attribute::COLLECTIVE, c.clone()));
    }
    if let Ok(time) = rfc3339_nano(record.time_ns) {
        attributes.push((attribute::TIME, time));
    }
    // Pub/Sub refuses empty attribute values only in some clients; leave them out.
    attributes.retain(|(_, v)| !v.is_empty());
    let mut msg = Message::new().set_data(data).set_attributes(attributes);
    if let Some(t) = ordering_key {
        let key = t.render(record);
        if !key.is_empty() {
            msg = msg.set_ordering_key(key);
        }
    }
    Ok(msg)
}

/// The size Pub/Sub counts for `msg`: data, attributes and ordering key.
fn size(msg: &Message) -> usize {
    msg.data.len()
        + msg.ordering_key.len()
        + msg
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// The status name and outcome for a failed publish.
pub fn outcome_of(error: &PublishError) -> (String, Outcome) {
    match error {
        PublishError::Rpc(e) => {
            // Out of retry time, the client wraps the last error: name that one's
            // status (e.g. RESOURCE_EXHAUSTED), not just "RPC".
            let last = || {
                std::error::Error::source(e.as_ref())?
                    .downcast_ref::<google_cloud_gax::error::Error>()
            };
            let code = e
                .status()
                .or_else(|| last().and_then(|l| l.status()))
                .map(|s| s.code);
            let name = code.map_or("RPC", |c| c.name()).to_string();
            let reason = format!("pubsub: {e}");
            let reject = !e.is_exhausted()
                && matches!(
                    code.map(|c| c.name()),
                    Some(
                        "NOT_FOUND"
                            | "PERMISSION_DENIED"
                            | "INVALID_ARGUMENT"
                            | "FAILED_PRECONDITION"
                            | "OUT_OF_RANGE"
                    )
                );
            let outcome = match reject {
                true => Outcome::reject(reason),
                false => Outcome::retry(reason),
            };
            (name, outcome)
        }
        PublishError::OrderingKeyPaused => (
            "ORDERING_KEY_PAUSED".into(),
            Outcome::retry(
                "pubsub: publishing is paused for the ordering key after an earlier failure",
            ),
        ),
        other => (
            "SHUTDOWN".into(),
            Outcome::retry(format!("pubsub: {other}")),
        ),
    }
}

/// A batch handed to the publisher, waiting for its results.
struct Pending {
    started: Instant,
    outcomes: Vec<Option<Outcome>>,
    futures: Vec<(usize, String, google_cloud_pubsub::publisher::PublishFuture)>,
}

impl Inner {
    /// Hands each record to the publisher: the outcomes known already (rejected
    /// unsent), and the futures of the others.
    fn enqueue(&self, batch: &Batch) -> Pending {
        let started = Instant::now();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut futures = Vec::with_capacity(batch.len());
        for (i, record) in batch.records.iter().enumerate() {
            match message(record, self.config.encoding, self.ordering_key.as_ref()) {
                Ok(msg) if size(&msg) > self.config.max_message_bytes => {
                    self.failed(
                        &mut outcomes[i],
                        "MessageTooLarge",
                        Outcome::reject(format!(
                            "pubsub: message of {} bytes (data, attributes, ordering key) is over the limit of {} bytes",
                            size(&msg),
                            self.config.max_message_bytes
                        )),
                    );
                }
                Ok(msg) => {
                    let key = msg.ordering_key.clone();
                    futures.push((i, key, self.publisher.publish(msg)));
                }
                Err(e) => self.failed(
                    &mut outcomes[i],
                    "Encoding",
                    Outcome::reject(format!("pubsub: {e}")),
                ),
            }
        }
        Pending {
            started,
            outcomes,
            futures,
        }
    }

    /// Waits for every result of `pending`.
    async fn results(&self, pending: Pending) -> Vec<Outcome> {
        let Pending {
            started,
            mut outcomes,
            futures,
        } = pending;
        // The client answers within `timeout` of sending; a message may first wait
        // for the one ahead of it on its ordering key, hence the margin. Past this the
        // client is stuck, and the records are retried by the pipeline.
        let wait = self.config.timeout * 2 + self.config.linger;
        let deadline = tokio::time::Instant::now() + wait;
        let mut paused = BTreeSet::new();
        for (i, key, future) in futures {
            let (name, outcome) = match tokio::time::timeout_at(deadline, future).await {
                Ok(Ok(_id)) => {
                    outcomes[i] = Some(Outcome::Delivered);
                    continue;
                }
                Ok(Err(e)) => outcome_of(&e),
                Err(_) => (
                    "DEADLINE".to_string(),
                    Outcome::retry(format!("pubsub: no publish result within {wait:?}")),
                ),
            };
            if !key.is_empty() {
                paused.insert(key);
            }
            self.failed(&mut outcomes[i], &name, outcome);
        }
        // The client paused these keys so nothing overtakes the failed messages; they
        // are now all answered (retried by the pipeline), so publishing may go on.
        for key in paused {
            tracing::debug!(topic = %self.config.topic, key, "pubsub: resuming ordering key");
            self.publisher.resume_publish(key);
        }
        if let Some(m) = &self.metrics {
            m.requests.inc();
            m.seconds.observe(started.elapsed().as_secs_f64());
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::retry("pubsub: record was not published")))
            .collect()
    }

    fn failed(&self, slot: &mut Option<Outcome>, code: &str, outcome: Outcome) {
        if let Outcome::Reject { reason } | Outcome::Retry { reason, .. } = &outcome {
            tracing::debug!(topic = %self.config.topic, code, "pubsub: {reason}");
        }
        if let Some(m) = &self.metrics {
            m.error(code, &outcome);
        }
        *slot = Some(outcome);
    }
}
