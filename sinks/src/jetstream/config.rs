//! JetStream sink settings.

use crate::encoding::Encoding;
use coro_core::Record;
use serde::Deserialize;
use std::time::Duration;

/// `type = "jetstream"`: publish to a subject a JetStream stream captures, awaiting
/// the PubAck.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStreamConfig {
    /// NATS servers, e.g. `["nats://127.0.0.1:4222"]`.
    pub servers: Vec<String>,
    /// Subject template: `%s` (Choria's form) or `{sender}` is the sender identity;
    /// `{agent}`, `{collective}` and `{kind}` are replaced too.
    pub subject: String,
    /// How each record is written. Default `choria_streams`.
    #[serde(default)]
    pub encoding: Encoding,
    /// The stream expected to capture the subject (checked by `coro validate --online`).
    #[serde(default)]
    pub stream: Option<String>,
    /// PubAcks awaited at once. Default 256.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long to wait for a PubAck. Default 5 s.
    #[serde(default = "default_ack_timeout", with = "coro_core::config::duration")]
    pub ack_timeout: Duration,
}

const fn default_max_in_flight() -> usize {
    256
}

const fn default_ack_timeout() -> Duration {
    Duration::from_secs(5)
}

impl JetStreamConfig {
    /// The subject for `record`.
    pub fn subject_for(&self, record: &Record) -> String {
        self.subject
            .replace("%s", &record.sender)
            .replace("{sender}", &record.sender)
            .replace("{agent}", &record.agent)
            .replace(
                "{collective}",
                record.collective.as_deref().unwrap_or("none"),
            )
            .replace("{kind}", record.kind.as_str())
    }
}
