//! The JetStream sink: publishes each record and waits for its PubAck, so Delivered
//! means the stream stored it. `Nats-Msg-Id` is the record's idempotency key, so a
//! redelivered message is de-duplicated by the stream's duplicate window.

use super::config::JetStreamConfig;
use super::encode;
use coro_core::sink::{Batch, Outcome, SinkError};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The JetStream sink service; clones share the connection.
#[derive(Clone)]
pub struct JetStreamSink {
    js: async_nats::jetstream::Context,
    config: Arc<JetStreamConfig>,
}

impl std::fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSink")
            .field("config", &self.config)
            .finish()
    }
}

impl JetStreamSink {
    /// Connects to the servers in `config`; `name` names the NATS connection.
    pub async fn connect(config: JetStreamConfig, name: &str) -> Result<Self, SinkError> {
        let servers = crate::nats::servers(&config.servers).map_err(SinkError::Fatal)?;
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .map_err(|e| {
                SinkError::Retriable(format!("connecting to {:?}: {e}", config.servers))
            })?;
        Ok(Self::with_client(client, config))
    }

    /// A sink on an existing connection.
    pub fn with_client(client: async_nats::Client, config: JetStreamConfig) -> Self {
        let js = async_nats::jetstream::context::ContextBuilder::new()
            .ack_timeout(config.ack_timeout)
            .timeout(config.ack_timeout)
            .build(client);
        JetStreamSink {
            js,
            config: Arc::new(config),
        }
    }
}

impl tower::Service<Batch> for JetStreamSink {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let js = self.js.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let mut outcomes = vec![Outcome::Delivered; batch.len()];
            let mut acks = Vec::new();
            // Publish a window of records, then collect their PubAcks, so at most
            // max_in_flight are unacknowledged at once.
            for (start, chunk) in batch
                .records
                .chunks(config.max_in_flight.max(1))
                .enumerate()
            {
                acks.clear();
                for (offset, record) in chunk.iter().enumerate() {
                    let index = start * config.max_in_flight.max(1) + offset;
                    let message = match encode::message(record, &config) {
                        Ok(m) => m,
                        Err(e) => {
                            outcomes[index] = Outcome::reject(format!("encode: {e}"));
                            continue;
                        }
                    };
                    match js.send_publish(message.subject, message.publish).await {
                        Ok(ack) => acks.push((index, ack)),
                        Err(e) => outcomes[index] = publish_outcome(&e),
                    }
                }
                for (index, ack) in acks.drain(..) {
                    if let Err(e) = ack.await {
                        outcomes[index] = publish_outcome(&e);
                    }
                }
            }
            Ok(outcomes)
        })
    }
}

/// A message that is too large will never fit; everything else (no stream yet, timeouts,
/// a lost connection) may work later.
fn publish_outcome(e: &async_nats::jetstream::context::PublishError) -> Outcome {
    use async_nats::jetstream::context::PublishErrorKind;
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => Outcome::reject(format!("jetstream: {e}")),
        _ => Outcome::retry(format!("jetstream: {e}")),
    }
}
