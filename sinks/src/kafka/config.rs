//! Kafka sink settings: the typed keys, the librdkafka passthrough, and the checks.

use super::encode::{topic_char, Field, Template, MAX_TOPIC_LEN};
use crate::encoding::Encoding;
use coro_core::config::{did_you_mean, unknown_hint, ConfigError, SinkSpec};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// `type = "kafka"`: produce each record to a Kafka topic (librdkafka), answering
/// Delivered only once the broker acknowledged it (its delivery report).
///
/// ```toml
/// [[adapter.sink]]
/// type = "kafka"
/// brokers = ["127.0.0.1:9092"]
/// topic = "choria.replies"
/// # key = "{sender}"               # default: request id for replies, else the sender
/// # encoding = "choria_streams"     # or "record", "raw"
/// # compression = "lz4"             # none, gzip, snappy, lz4, zstd
///
/// # Any librdkafka producer property, e.g. SASL over TLS:
/// [adapter.sink.librdkafka]
/// "security.protocol" = "SASL_SSL"
/// "sasl.mechanisms" = "SCRAM-SHA-512"
/// "sasl.username" = "coro"
/// "sasl.password" = "secret"
/// "ssl.ca.location" = "/etc/coro/kafka-ca.pem"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`, e.g. `["127.0.0.1:9092"]`. Required, at least
    /// one (librdkafka `bootstrap.servers`).
    pub brokers: Vec<String>,
    /// Topic template. Required. Fixed (`"choria.replies"`) or with placeholders:
    /// `{agent}`, `{collective}` (`none` for records without one, as replies), `{sender}`,
    /// `{kind}`, `{requestid}`. Characters Kafka does not allow in topic names that come
    /// from a placeholder's value become `_`.
    pub topic: String,
    /// Message key template, with the same placeholders as `topic`. Default: the
    /// request id for replies (one request's replies stay together) and the sender for
    /// everything else (one node's registration stays in order). `""` sends no key
    /// (the producer spreads records over partitions).
    #[serde(default)]
    pub key: Option<String>,
    /// How each record is written: `choria_streams` (default), `record` or `raw`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Write the Choria metadata as Kafka headers (`choria.sender`, `choria.requestid`,
    /// `choria.agent`, `choria.collective`, `choria.protocol`, `choria.time`,
    /// `choria.kind`, `coro.idempotency_key`). Default true.
    #[serde(default = "crate::config::default_true")]
    pub headers: bool,
    /// Compression of record batches: `none`, `gzip`, `snappy`, `lz4` (default) or
    /// `zstd` (librdkafka `compression.type`).
    #[serde(default)]
    pub compression: Compression,
    /// Acknowledgements the broker gives before a record counts as delivered: `all`
    /// (default: every in-sync replica), `1` (the leader) or `0` (none: delivery is not
    /// confirmed at all). librdkafka `acks`.
    #[serde(default)]
    pub acks: Acks,
    /// The idempotent producer: no duplicates or reordering from the producer's own
    /// retries. Default true; needs `acks = "all"` (librdkafka `enable.idempotence`).
    #[serde(default = "crate::config::default_true")]
    pub idempotence: bool,
    /// How long the producer waits to fill a batch. Default 5 ms (librdkafka
    /// `linger.ms`).
    #[serde(default = "default_linger", with = "coro_core::config::duration")]
    pub linger: Duration,
    /// Most bytes in one batch to a partition. Default 1000000 (librdkafka
    /// `batch.size`).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Largest message accepted; a larger record is rejected to the dead letter at
    /// once. Default 1000000, as the broker's own default (librdkafka
    /// `message.max.bytes`).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long librdkafka keeps trying to deliver a record (retrying on its own)
    /// before it reports failure, which becomes a retry of the pipeline. Default 20 s;
    /// keep it below the adapter's `[adapter.pipeline] timeout` (librdkafka
    /// `message.timeout.ms`).
    #[serde(
        default = "default_message_timeout",
        with = "coro_core::config::duration"
    )]
    pub message_timeout: Duration,
    /// Any other librdkafka producer property, as `"name" = value`: SASL
    /// (`security.protocol`, `sasl.mechanisms`, `sasl.username`, `sasl.password`), TLS
    /// (`ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`), `retries`,
    /// `allow.auto.create.topics`, ... Checked against librdkafka when the config is
    /// loaded. Properties that have a key above must be set there.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, Property>,
}

/// A librdkafka property value: a string, number or boolean, passed on as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property(pub String);

impl<'de> Deserialize<'de> for Property {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Property;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean (a librdkafka property value)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Batch compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4: cheap on CPU, supported everywhere.
    #[default]
    Lz4,
    /// zstd (Kafka 2.1 and later).
    Zstd,
}

impl Compression {
    /// The librdkafka `compression.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Broker acknowledgements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Acks {
    /// Every in-sync replica.
    #[default]
    #[serde(rename = "all")]
    All,
    /// The partition leader only.
    #[serde(rename = "1")]
    Leader,
    /// None: fire and forget.
    #[serde(rename = "0")]
    None,
}

impl Acks {
    /// The librdkafka `acks` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

const fn default_linger() -> Duration {
    Duration::from_millis(5)
}
const fn default_batch_bytes() -> usize {
    1_000_000
}
const fn default_max_message_bytes() -> usize {
    1_000_000
}
const fn default_message_timeout() -> Duration {
    Duration::from_secs(20)
}

/// librdkafka properties that a typed key sets, with that key (and aliases
/// librdkafka accepts for them).
const MANAGED: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("enable.idempotence", "idempotence"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("linger.ms", "linger"),
    ("queue.buffering.max.ms", "linger"),
    ("batch.size", "batch_bytes"),
    ("message.max.bytes", "max_message_bytes"),
    ("message.timeout.ms", "message_timeout"),
    ("delivery.timeout.ms", "message_timeout"),
];

/// librdkafka properties the sink cannot work with.
const REFUSED: &[(&str, &str)] = &[
    (
        "transactional.id",
        "the sink does not use transactions; the idempotent producer already keeps its retries free of duplicates",
    ),
    (
        "client.id",
        "coro names the client after the adapter and sink, so broker logs and quotas can tell them apart",
    ),
];

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: Vec::new(),
            topic: String::new(),
            key: None,
            encoding: Encoding::default(),
            headers: true,
            compression: Compression::default(),
            acks: Acks::default(),
            idempotence: true,
            linger: default_linger(),
            batch_bytes: default_batch_bytes(),
            max_message_bytes: default_max_message_bytes(),
            message_timeout: default_message_timeout(),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Examples for the required keys, for hints.
    pub(crate) const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("brokers", "brokers = [\"127.0.0.1:9092\"]"),
        ("topic", "topic = \"choria.replies\""),
    ];

    /// A config with defaults for everything but the brokers and topic.
    pub fn new(brokers: Vec<String>, topic: impl Into<String>) -> Self {
        KafkaConfig {
            brokers,
            topic: topic.into(),
            ..KafkaConfig::default()
        }
    }

    /// Every librdkafka producer property the sink sets: the typed keys, then the
    /// passthrough. `client_id` names the client.
    pub fn properties(&self, client_id: &str) -> Vec<(String, String)> {
        let ms = |d: Duration| d.as_millis().to_string();
        let mut out: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.brokers.join(",")),
            ("client.id".into(), client_id.to_string()),
            ("enable.idempotence".into(), self.idempotence.to_string()),
            ("acks".into(), self.acks.as_str().into()),
            ("compression.type".into(), self.compression.as_str().into()),
            ("linger.ms".into(), ms(self.linger)),
            ("batch.size".into(), self.batch_bytes.to_string()),
            (
                "message.max.bytes".into(),
                self.max_message_bytes.to_string(),
            ),
            ("message.timeout.ms".into(), ms(self.message_timeout)),
            // librdkafka waits this long for a topic it does not know to appear before
            // failing its records with "unknown topic"; its default (30 s) is longer
            // than the message timeout, which would turn a missing topic into endless
            // retries instead of a dead letter.
            (
                "topic.metadata.propagation.max.ms".into(),
                ms(self.message_timeout / 2),
            ),
        ];
        out.extend(
            self.librdkafka
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone())),
        );
        out
    }

    /// The parsed topic template (checked by [`check`](Self::check)).
    pub fn topic_template(&self) -> Result<Template, String> {
        Template::parse(&self.topic).map_err(|e| format!("unknown placeholder `{{{}}}`", e.0))
    }

    /// The parsed key template, `None` for the default key.
    pub fn key_template(&self) -> Result<Option<Template>, String> {
        self.key
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|e| format!("unknown placeholder `{{{}}}`", e.0))
    }

    /// Whether the sink itself asks the broker to create missing topics (librdkafka's
    /// `allow.auto.create.topics`, true for producers unless set to false).
    pub fn asks_to_create_topics(&self) -> bool {
        self.librdkafka
            .get("allow.auto.create.topics")
            .is_none_or(|v| v.0 != "false")
    }

    /// The problems serde cannot see, each at the line of its key in `spec`.
    pub fn check(&self, spec: &SinkSpec) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.brokers.is_empty() {
            errors.push(
                spec.error("brokers", "needs at least one broker")
                    .with_hint(format!("write e.g. {}", Self::EXAMPLES[0].1)),
            );
        }
        for broker in &self.brokers {
            if let Err(why) = check_broker(broker) {
                errors
                    .push(spec.error("brokers", why).with_hint(
                        "write host:port, e.g. brokers = [\"kafka1.example.net:9092\"]",
                    ));
            }
        }
        errors.extend(check_template(spec, "topic", &self.topic, true));
        if let Some(key) = &self.key {
            errors.extend(check_template(spec, "key", key, false));
        }
        if self.idempotence && self.acks != Acks::All {
            errors.push(
                spec.error(
                    "acks",
                    format!(
                        "acks = \"{}\" does not go with the idempotent producer, which needs every in-sync replica's acknowledgement",
                        self.acks.as_str()
                    ),
                )
                .with_hint("write acks = \"all\", or idempotence = false to give up its guarantees"),
            );
        }
        if self.linger > Duration::from_secs(900) {
            errors.push(
                spec.error("linger", "must be at most 15m (librdkafka's limit)")
                    .with_hint(format!("write e.g. {}", spec.example("linger", "5ms"))),
            );
        }
        if self.batch_bytes == 0 {
            errors.push(
                spec.error("batch_bytes", "must be at least 1")
                    .with_hint(format!(
                        "write e.g. {}",
                        spec.example("batch_bytes", default_batch_bytes() as i64)
                    )),
            );
        }
        if self.max_message_bytes < 1000 {
            errors.push(
                spec.error(
                    "max_message_bytes",
                    "must be at least 1000 (librdkafka's limit)",
                )
                .with_hint(format!(
                    "write e.g. {}",
                    spec.example("max_message_bytes", default_max_message_bytes() as i64)
                )),
            );
        }
        if self.message_timeout < Duration::from_millis(2) {
            errors.push(
                spec.error("message_timeout", "must be at least 2ms")
                    .with_hint(format!(
                        "write e.g. {}",
                        spec.example("message_timeout", "20s")
                    )),
            );
        }
        errors.extend(self.check_librdkafka(spec));
        errors
    }

    /// Passthrough properties: not one a typed key sets, and one librdkafka knows with
    /// a value it takes (asked of librdkafka itself, without connecting).
    fn check_librdkafka(&self, spec: &SinkSpec) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (name, value) in &self.librdkafka {
            let at = |message: String| spec.error("librdkafka", message);
            if let Some((_, key)) = MANAGED.iter().find(|(p, _)| p == name) {
                errors.push(
                    at(format!("`{name}` is set by the sink's `{key}` key")).with_hint(format!(
                        "remove it from [librdkafka] and write {key} = ... in the sink"
                    )),
                );
                continue;
            }
            if let Some((_, why)) = REFUSED.iter().find(|(p, _)| p == name) {
                errors.push(at(format!("`{name}` cannot be set: {why}")));
                continue;
            }
            let mut probe = rdkafka::ClientConfig::new();
            probe.set(name, &value.0);
            if let Err(e) = probe.create_native_config() {
                let message = match e {
                    rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => description,
                    other => other.to_string(),
                };
                errors.push(
                    at(format!("`{name}` = {:?}: {message}", value.0)).with_hint(
                        "see librdkafka's CONFIGURATION.md for the producer properties and their values",
                    ),
                );
            }
        }
        errors
    }
}

/// Every Kafka sink of `adapter` must give up (`message_timeout`) before the pipeline's
/// `timeout` does: otherwise the pipeline retries a batch whose records librdkafka still
/// holds, and they may be written twice.
pub fn check_timeouts(adapter: &coro_core::config::AdapterConfig) -> Vec<ConfigError> {
    let limit = adapter.pipeline.timeout;
    adapter
        .sinks
        .iter()
        .chain(adapter.dead_letter.as_ref())
        .filter(|spec| spec.kind == "kafka")
        .filter_map(|spec| {
            let config = spec.options::<KafkaConfig>().ok()?;
            (config.message_timeout >= limit).then(|| {
                let shorter = limit.mul_f64(2.0 / 3.0);
                // Whole seconds read better in a hint, when there are any.
                let shorter = if shorter >= Duration::from_secs(1) {
                    Duration::from_secs(shorter.as_secs())
                } else {
                    Duration::from_millis(shorter.as_millis().max(2) as u64)
                };
                spec.error(
                    "message_timeout",
                    format!(
                        "{} is not shorter than the adapter's pipeline timeout ({}): the pipeline would send records again that librdkafka still holds",
                        human(config.message_timeout),
                        human(limit)
                    ),
                )
                .with_hint(format!(
                    "write e.g. {}, or raise [adapter.pipeline] timeout",
                    spec.example("message_timeout", human(shorter))
                ))
            })
        })
        .collect()
}

/// A duration as config files write it: `20s`, `1500ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `host:port`, as librdkafka takes bootstrap servers.
fn check_broker(broker: &str) -> Result<(), String> {
    if broker.contains("://") {
        return Err(format!(
            "`{broker}` has a scheme; brokers are host:port (TLS and SASL are set with security.protocol in [librdkafka])"
        ));
    }
    let (host, port) = match broker.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
        None => return Err(format!("`{broker}` has no port")),
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == ',')
    {
        return Err(format!("`{broker}` has no valid host"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!("`{broker}` has an invalid port `{port}`"));
    }
    Ok(())
}

/// Placeholders known, and for topics, text Kafka accepts.
fn check_template(spec: &SinkSpec, key: &str, text: &str, topic: bool) -> Option<ConfigError> {
    let example = if topic {
        "topic = \"choria.replies\" or topic = \"choria.{agent}.{collective}\""
    } else {
        "key = \"{sender}\""
    };
    let template = match Template::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let name = e.0;
            let hint = match did_you_mean(&name, Field::NAMES) {
                Some(best) => format!("did you mean `{{{best}}}`?"),
                None => unknown_hint(&name, Field::NAMES).replace('`', ""),
            };
            return Some(
                spec.error(key, format!("unknown placeholder `{{{name}}}`"))
                    .with_hint(hint),
            );
        }
    };
    if !topic {
        return None;
    }
    let bad = template
        .text()
        .flat_map(str::chars)
        .find(|c| !topic_char(*c));
    let message = match (template.fixed(), bad) {
        (_, Some(c)) => format!(
            "{text:?} has `{c}`; Kafka topic names have only letters, digits, `.`, `_` and `-`"
        ),
        (Some(""), _) => "must not be empty".to_string(),
        (Some("." | ".."), _) => format!("{text:?} is not a valid topic name"),
        (Some(t), _) if t.len() > MAX_TOPIC_LEN => {
            format!("is longer than Kafka's {MAX_TOPIC_LEN} characters")
        }
        _ => return None,
    };
    Some(
        spec.error(key, message)
            .with_hint(format!("write e.g. {example}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::spec;
    use crate::config::SinkConfig;
    use std::path::Path;

    fn typed(text: &str) -> Result<KafkaConfig, String> {
        match SinkConfig::check_spec(&spec(text)) {
            Ok(SinkConfig::Kafka(c)) => Ok(c),
            Ok(other) => Err(format!("not kafka: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    const BASE: &str = "type = \"kafka\"\nbrokers = [\"127.0.0.1:9092\"]\n";

    #[test]
    fn defaults() {
        let c = typed(&format!("{BASE}topic = \"choria.replies\"")).unwrap();
        assert_eq!(
            c,
            KafkaConfig::new(vec!["127.0.0.1:9092".into()], "choria.replies")
        );
        let p = c.properties("coro-a-kafka");
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("enable.idempotence"), Some("true"));
        assert_eq!(get("acks"), Some("all"));
        assert_eq!(get("compression.type"), Some("lz4"));
        assert_eq!(get("linger.ms"), Some("5"));
        assert_eq!(get("message.timeout.ms"), Some("20000"));
        assert_eq!(get("topic.metadata.propagation.max.ms"), Some("10000"));
        assert!(c.asks_to_create_topics());
    }

    #[test]
    fn passthrough_values_of_any_scalar_type() {
        let c = typed(&format!(
            "{BASE}topic = \"t\"\n[adapter.sink.librdkafka]\n\"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"retries\" = 5\n\"allow.auto.create.topics\" = false"
        ))
        .unwrap();
        assert_eq!(c.librdkafka["retries"], Property("5".into()));
        assert!(!c.asks_to_create_topics());
        let p = c.properties("x");
        assert!(p.contains(&("security.protocol".into(), "SASL_SSL".into())));
    }

    #[test]
    fn errors_name_the_key_and_what_to_write() {
        assert_eq!(
            typed("type = \"kafka\"\ntopic = \"t\"").unwrap_err(),
            "adapters.toml:7:1: adapter \"a\": sink \"kafka\": missing required key `brokers`; \
             write e.g. brokers = [\"127.0.0.1:9092\"]"
        );
        assert_eq!(
            typed(&format!("{BASE}topic = \"choria.{{agnt}}\"")).unwrap_err(),
            "adapters.toml:10:1: adapter \"a\": sink \"kafka\": topic: unknown placeholder \
             `{agnt}`; did you mean `{agent}`?"
        );
        assert_eq!(
            typed(&format!("{BASE}topic = \"choria/replies\"")).unwrap_err(),
            "adapters.toml:10:1: adapter \"a\": sink \"kafka\": topic: \"choria/replies\" has \
             `/`; Kafka topic names have only letters, digits, `.`, `_` and `-`; write e.g. \
             topic = \"choria.replies\" or topic = \"choria.{agent}.{collective}\""
        );
        assert_eq!(
            typed("type = \"kafka\"\nbrokers = [\"kafka://h:9092\"]\ntopic = \"t\"").unwrap_err(),
            "adapters.toml:9:1: adapter \"a\": sink \"kafka\": brokers: `kafka://h:9092` has a \
             scheme; brokers are host:port (TLS and SASL are set with security.protocol in \
             [librdkafka]); write host:port, e.g. brokers = [\"kafka1.example.net:9092\"]"
        );
        assert_eq!(
            typed(&format!("{BASE}topic = \"t\"\nacks = \"1\"")).unwrap_err(),
            "adapters.toml:11:1: adapter \"a\": sink \"kafka\": acks: acks = \"1\" does not go \
             with the idempotent producer, which needs every in-sync replica's acknowledgement; \
             write acks = \"all\", or idempotence = false to give up its guarantees"
        );
        assert!(typed(&format!(
            "{BASE}topic = \"t\"\nacks = \"1\"\nidempotence = false"
        ))
        .is_ok());
        let e = typed(&format!("{BASE}topic = \"t\"\ncompression = \"brotli\"")).unwrap_err();
        assert!(e.contains("compression"), "{e}");
        assert!(e.contains("lz4"), "{e}");
    }

    #[test]
    fn message_timeout_below_the_pipeline_timeout() {
        let doc = "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
                   servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n\
                   [adapter.pipeline]\ntimeout = \"10s\"\n[[adapter.sink]]\n\
                   type = \"kafka\"\nbrokers = [\"h:9092\"]\ntopic = \"t\"\n";
        let e = crate::config::parse(Path::new("adapters.toml"), doc)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "adapters.toml:9:1: adapter \"a\": sink \"kafka\": message_timeout: 20s is not \
             shorter than the adapter's pipeline timeout (10s): the pipeline would send records \
             again that librdkafka still holds; write e.g. message_timeout = \"6s\", or \
             raise [adapter.pipeline] timeout"
        );
        let ok = doc.replace(
            "topic = \"t\"\n",
            "topic = \"t\"\nmessage_timeout = \"5s\"\n",
        );
        assert!(crate::config::parse(Path::new("adapters.toml"), &ok).is_ok());
    }

    #[test]
    fn passthrough_is_checked_by_librdkafka() {
        let e = typed(&format!(
            "{BASE}topic = \"t\"\n[adapter.sink.librdkafka]\n\"sasl.mechanism\" = \"PLAIN\"\n\
             \"linger.ms\" = 10\n\"compression.level\" = \"high\"\n\"transactional.id\" = \"x\""
        ))
        .unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(
            e.contains("`linger.ms` is set by the sink's `linger` key; remove it from [librdkafka] and write linger = ... in the sink"),
            "{e}"
        );
        assert!(
            e.contains("`compression.level` = \"high\": Invalid value for configuration property"),
            "{e}"
        );
        assert!(e.contains("`transactional.id` cannot be set"), "{e}");
        // sasl.mechanism is librdkafka's alias of sasl.mechanisms: accepted.
        assert!(!e.contains("sasl.mechanism"), "{e}");
        let e = typed(&format!(
            "{BASE}topic = \"t\"\n[adapter.sink.librdkafka]\n\"no.such.property\" = 1"
        ))
        .unwrap_err();
        assert!(
            e.contains("`no.such.property` = \"1\": No such configuration property"),
            "{e}"
        );
    }
}
