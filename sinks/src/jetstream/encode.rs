//! Record to JetStream message: subject from the template, body in the chosen
//! encoding, `Nats-Msg-Id` from the idempotency key.

use super::config::JetStreamConfig;
use crate::encoding::{self, EncodeError};
use async_nats::jetstream::message::PublishMessage;
use coro_core::Record;

/// A message ready to publish.
pub struct Message {
    /// Where it goes.
    pub subject: String,
    /// Payload and headers.
    pub publish: PublishMessage,
}

/// Builds the message for `record`.
pub fn message(record: &Record, config: &JetStreamConfig) -> Result<Message, EncodeError> {
    let payload = encoding::encode(record, config.encoding)?;
    Ok(Message {
        subject: config.subject_for(record),
        publish: PublishMessage::build()
            .payload(payload.into())
            .message_id(record.idempotency_key()),
    })
}
