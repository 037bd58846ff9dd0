//! Pub/Sub sink settings and their checks.

use crate::encoding::Encoding;
use crate::kinesis::config::check_key_template;
use coro_core::config::{ConfigError, SinkSpec};
use serde::Deserialize;
use std::time::Duration;

/// Largest message Pub/Sub accepts (data, attributes and ordering key), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 10_000_000;
/// Most messages the client sends in one Publish request.
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// `type = "pubsub"`: publish each record to a Google Cloud Pub/Sub topic, answering
/// Delivered only once Pub/Sub returned its message id.
///
/// ```toml
/// [[adapter.sink]]
/// type = "pubsub"
/// project = "my-project"
/// topic = "choria-replies"
/// # ordering_key = "{sender}"       # default: the sender; "" for no ordering key
/// # ordered = true                  # keep each key's order through retries
/// # encoding = "choria_streams"     # or "record", "raw"
/// # endpoint = "https://europe-west1-pubsub.googleapis.com"   # a regional endpoint
/// ```
///
/// Each message carries the attributes `choria_sender`, `choria_requestid`,
/// `choria_agent`, `choria_collective` (when the record has one), `choria_protocol`,
/// `choria_time` (RFC3339, nanoseconds), `choria_kind` and `coro_idempotency_key`.
/// Credentials come from the standard Google chain (`GOOGLE_APPLICATION_CREDENTIALS`,
/// gcloud's application default credentials, the metadata server). With
/// `PUBSUB_EMULATOR_HOST` set (and no `endpoint`), the sink talks plain gRPC to the
/// emulator there without credentials, as Google's other clients do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubConfig {
    /// The Google Cloud project id, e.g. `"my-project"`. Required.
    pub project: String,
    /// The topic id within the project, e.g. `"choria-replies"`. Required.
    pub topic: String,
    /// Ordering key template: `{sender}`, `{requestid}`, `{agent}`, `{collective}`,
    /// `{kind}` and text. Default `"{sender}"`: one node's records are delivered in
    /// order to subscriptions with message ordering on. `""` sends no ordering key.
    #[serde(default = "default_ordering_key")]
    pub ordering_key: String,
    /// Keep each ordering key's messages in order through failures too: the pipeline
    /// hands over one batch at a time and sends a failed message again before anything
    /// after it. Default true (it applies only with an ordering key); `false` lets
    /// batches overlap, for throughput, and a message retried after a failure can then
    /// land after later ones of its key.
    #[serde(default = "crate::config::default_true")]
    pub ordered: bool,
    /// How each record is written: `choria_streams` (default), `record` or `raw`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Endpoint override, e.g. a regional endpoint. Default: Google's global endpoint,
    /// or the emulator at `PUBSUB_EMULATOR_HOST`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Most messages per Publish request, 1 to 1000. Default 100.
    #[serde(default = "default_batch_messages")]
    pub batch_messages: usize,
    /// Most bytes per Publish request, up to 10000000. Default 1000000.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// How long the client waits to fill a Publish request. Default 5ms.
    #[serde(default = "default_linger", with = "coro_core::config::duration")]
    pub linger: Duration,
    /// Largest message (data, attributes, ordering key) before it is rejected to the
    /// dead letter unsent. Default and most 10000000.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long the client may try to publish a message (its own retries of
    /// transient errors included) before the record is answered "retry" and the
    /// pipeline's retry takes over. A batch waits at most twice this for its results.
    /// Default 10s; keep twice it below the adapter's `[adapter.pipeline] timeout`.
    #[serde(default = "default_timeout", with = "coro_core::config::duration")]
    pub timeout: Duration,
}

fn default_ordering_key() -> String {
    "{sender}".into()
}
const fn default_batch_messages() -> usize {
    100
}
const fn default_batch_bytes() -> usize {
    1_000_000
}
const fn default_linger() -> Duration {
    Duration::from_millis(5)
}
const fn default_max_message_bytes() -> usize {
    MAX_MESSAGE_BYTES
}
const fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl PubSubConfig {
    /// Examples for the required keys, for hints.
    pub(crate) const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("project", "project = \"my-project\""),
        ("topic", "topic = \"choria-replies\""),
    ];

    /// A config with defaults for everything but the project and topic.
    pub fn new(project: impl Into<String>, topic: impl Into<String>) -> Self {
        PubSubConfig {
            project: project.into(),
            topic: topic.into(),
            ordering_key: default_ordering_key(),
            ordered: true,
            encoding: Encoding::default(),
            endpoint: None,
            batch_messages: default_batch_messages(),
            batch_bytes: default_batch_bytes(),
            linger: default_linger(),
            max_message_bytes: default_max_message_bytes(),
            timeout: default_timeout(),
        }
    }

    /// The topic's full name, `projects/{project}/topics/{topic}`.
    pub fn topic_name(&self) -> String {
        format!("projects/{}/topics/{}", self.project, self.topic)
    }

    /// The problems serde cannot see, each at the line of its key in `spec`.
    pub fn check(&self, spec: &SinkSpec) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let project_ok = (6..=30).contains(&self.project.len())
            && self.project.starts_with(|c: char| c.is_ascii_lowercase())
            && self.project.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == ':'
            });
        if !project_ok {
            errors.push(
                spec.error("project", format!("`{}` is not a Google Cloud project id (6 to 30 of a-z, 0-9, `-`, starting with a letter)", self.project))
                    .with_hint(format!("write e.g. {}", Self::EXAMPLES[0].1)),
            );
        }
        let topic_ok = (3..=255).contains(&self.topic.len())
            && self.topic.starts_with(|c: char| c.is_ascii_alphabetic())
            && !self.topic.starts_with("goog")
            && self
                .topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c));
        if !topic_ok {
            errors.push(
                spec.error("topic", format!("`{}` is not a Pub/Sub topic id (3 to 255 of letters, digits, `-_.~+%`, starting with a letter, not with `goog`; the id only, not projects/.../topics/...)", self.topic))
                    .with_hint(format!("write e.g. {}", Self::EXAMPLES[1].1)),
            );
        }
        errors.extend(check_key_template(
            spec,
            "ordering_key",
            &self.ordering_key,
            "ordering_key = \"{sender}\"",
        ));
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                errors.push(
                    spec.error("endpoint", format!("`{endpoint}` is not an http(s) URL"))
                        .with_hint(
                            "write e.g. endpoint = \"https://europe-west1-pubsub.googleapis.com\"",
                        ),
                );
            }
        }
        let mut range = |key: &str, value: usize, max: usize, example: usize| {
            if value == 0 || value > max {
                errors.push(
                    spec.error(key, format!("must be 1 to {max} (the Pub/Sub limit)"))
                        .with_hint(format!("write e.g. {}", spec.example(key, example as i64))),
                );
            }
        };
        range(
            "batch_messages",
            self.batch_messages,
            MAX_BATCH_MESSAGES,
            100,
        );
        range(
            "batch_bytes",
            self.batch_bytes,
            MAX_MESSAGE_BYTES,
            1_000_000,
        );
        range(
            "max_message_bytes",
            self.max_message_bytes,
            MAX_MESSAGE_BYTES,
            MAX_MESSAGE_BYTES,
        );
        if self.timeout.is_zero() {
            errors.push(
                spec.error("timeout", "must be more than 0")
                    .with_hint(format!("write e.g. {}", spec.example("timeout", "10s"))),
            );
        }
        errors
    }
}
