//! The data adapter configuration: what `adapters.toml` holds (and what a Choria
//! `broker.conf` adapter section maps to).
//!
//! ```toml
//! [http]                                   # optional
//! listen = "127.0.0.1:8222"
//!
//! [[adapter]]
//! name = "registration"
//!
//! [adapter.ingest]
//! type = "nats"
//! servers = ["nats://127.0.0.1:4222"]
//! subject = "*.broadcast.agent.registration"
//! protocol = "request"
//!
//! [[adapter.sink]]
//! type = "jetstream"
//! servers = ["nats://127.0.0.1:4222"]
//! subject = "choria.registration.%s"
//! ```
//!
//! The doc comments on the fields below are the user documentation of each key.

use super::error::{ConfigError, ConfigErrors, Location};
use crate::pipeline::PipelineSettings;
use crate::Kind;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// A whole adapters configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptersConfig {
    /// The file it was loaded from.
    pub file: PathBuf,
    /// The `[http]` table: metrics and health endpoints.
    pub http: HttpSettings,
    /// The `[[adapter]]` tables, in file order.
    pub adapters: Vec<AdapterConfig>,
}

/// The `[http]` table: where `/metrics`, `/healthz` and `/readyz` are served, and how
/// the daemon stops.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to serve `/metrics`, `/healthz` and `/readyz` on. Default
    /// `127.0.0.1:8222`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The `identity` label of the Choria adapter metrics. Default: the host name (as
    /// `uname -n` says), else `coro`.
    #[serde(default = "default_identity")]
    pub identity: String,
    /// How long SIGTERM waits for batches in flight before giving up. Default 30 s.
    #[serde(default = "default_drain_timeout", with = "super::duration")]
    pub drain_timeout: Duration,
}

const fn default_listen() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8222))
}

const fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The host name, as `uname -n` gives it: `/proc/sys/kernel/hostname`, `/etc/hostname`
/// or `$HOSTNAME`; `coro` when none says.
pub fn default_identity() -> String {
    let from_file = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "coro".to_string())
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: default_listen(),
            identity: default_identity(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

/// One `[[adapter]]`: an ingest, the pipeline settings, and the sinks every record
/// fans out to.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    /// Unique name, `[A-Za-z0-9_-]+`. Used in metric labels and the default queue group.
    pub name: String,
    /// Where messages come from (`[adapter.ingest]`).
    pub ingest: IngestConfig,
    /// The per-sink pipeline settings (`[adapter.pipeline]`).
    pub pipeline: PipelineSettings,
    /// The sinks (`[[adapter.sink]]`), one or more; every record goes to each.
    pub sinks: Vec<SinkSpec>,
    /// Where rejected records go (`[adapter.dead_letter]`), if anywhere.
    pub dead_letter: Option<SinkSpec>,
    /// Where each setting was written, for error messages.
    pub origins: Origins,
}

impl AdapterConfig {
    /// An error about setting `rel` (e.g. `ingest.workers`), at the place it was written.
    pub fn error(&self, rel: &str, message: impl Into<String>) -> ConfigError {
        self.origins.error(rel, message)
    }
}

/// Which Choria messages an ingest accepts; the others are rejected (to the dead
/// letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Requests only (registration is a request).
    Request,
    /// Replies only.
    Reply,
    /// Anything that decodes.
    #[default]
    Any,
}

impl Protocol {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Request => "request",
            Protocol::Reply => "reply",
            Protocol::Any => "any",
        }
    }

    /// Whether a record of `kind` is accepted: `request` takes requests and
    /// registration, `reply` takes replies, `any` takes everything.
    pub fn accepts(self, kind: Kind) -> bool {
        match self {
            Protocol::Request => matches!(kind, Kind::Request | Kind::Registration),
            Protocol::Reply => kind == Kind::Reply,
            Protocol::Any => true,
        }
    }
}

/// `[adapter.ingest]`: where an adapter's messages come from, chosen by `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestConfig {
    /// `type = "nats"`: a core NATS queue subscription, at-most-once.
    Nats(NatsIngest),
    /// `type = "jetstream"`: a durable pull consumer, at-least-once.
    JetStream(JetStreamIngest),
}

impl IngestConfig {
    /// The known `type` values.
    pub const TYPES: [&'static str; 2] = ["nats", "jetstream"];

    /// The `type`: `nats` or `jetstream`.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestConfig::Nats(_) => "nats",
            IngestConfig::JetStream(_) => "jetstream",
        }
    }

    /// The NATS servers.
    pub fn servers(&self) -> &[String] {
        match self {
            IngestConfig::Nats(n) => &n.servers,
            IngestConfig::JetStream(j) => &j.servers,
        }
    }

    /// The subject subscribed to (NATS) or the filter subject (JetStream), if any.
    pub fn subject(&self) -> Option<&str> {
        match self {
            IngestConfig::Nats(n) => Some(&n.subject),
            IngestConfig::JetStream(j) => j.subject.as_deref(),
        }
    }

    /// Which messages are accepted.
    pub fn protocol(&self) -> Protocol {
        match self {
            IngestConfig::Nats(n) => n.protocol,
            IngestConfig::JetStream(j) => j.protocol,
        }
    }
}

/// `type = "nats"`: subscribe with a queue group on core NATS. At-most-once: what is in
/// the queue when the process dies is lost, as with Choria's own adapters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsIngest {
    /// NATS servers, `nats://` or `tls://` URLs. Required, at least one.
    pub servers: Vec<String>,
    /// Subject to subscribe to; wildcards allowed. Required.
    pub subject: String,
    /// Queue group shared by the workers (and by other brokers running the same
    /// adapter). Default `nats_ingest_<adapter name>`, as Choria's; empty means the
    /// default.
    #[serde(default)]
    pub queue_group: String,
    /// Subscriptions (NATS connections) feeding the queue. Default 10, at least 1.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Capacity of the bounded queue between ingest and the pipeline. Default 1000, at
    /// least 1.
    #[serde(default = "default_queue_len")]
    pub queue_len: usize,
    /// How long a message may wait for room in a full queue before it is dropped (and
    /// counted). Default 1 s; `0s` drops at once, as Choria does.
    #[serde(default = "default_block_for", with = "super::duration")]
    pub block_for: Duration,
    /// Which Choria messages to accept: `request`, `reply` or `any` (default).
    #[serde(default)]
    pub protocol: Protocol,
}

/// `type = "jetstream"`: a durable pull consumer on a JetStream stream. At-least-once:
/// a message is acknowledged only once every sink has it (or the dead letter does).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStreamIngest {
    /// NATS servers, `nats://` or `tls://` URLs. Required, at least one.
    pub servers: Vec<String>,
    /// The stream to consume. Required.
    pub stream: String,
    /// The durable consumer name. Required.
    pub consumer: String,
    /// Filter subject within the stream; none means the whole stream.
    #[serde(default)]
    pub subject: Option<String>,
    /// Messages fetched per pull. Default 100, at least 1.
    #[serde(default = "default_fetch_batch")]
    pub fetch_batch: usize,
    /// Most unacknowledged messages outstanding. Default 1000, at least 1.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: usize,
    /// How long the server waits for an ack before redelivering. Default 30 s.
    #[serde(default = "default_ack_wait", with = "super::duration")]
    pub ack_wait: Duration,
    /// Which Choria messages to accept: `request`, `reply` or `any` (default).
    #[serde(default)]
    pub protocol: Protocol,
}

const fn default_workers() -> usize {
    10
}
const fn default_queue_len() -> usize {
    1000
}
const fn default_block_for() -> Duration {
    Duration::from_secs(1)
}
const fn default_fetch_batch() -> usize {
    100
}
const fn default_max_ack_pending() -> usize {
    1000
}
const fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

impl NatsIngest {
    /// Defaults for everything but the servers and subject; the queue group is
    /// `nats_ingest_<adapter>`.
    pub fn new(adapter: &str, servers: Vec<String>, subject: impl Into<String>) -> Self {
        NatsIngest {
            servers,
            subject: subject.into(),
            queue_group: default_queue_group(adapter),
            workers: default_workers(),
            queue_len: default_queue_len(),
            block_for: default_block_for(),
            protocol: Protocol::default(),
        }
    }
}

/// Choria's queue group for an adapter: `nats_ingest_<name>`.
pub fn default_queue_group(adapter: &str) -> String {
    format!("nats_ingest_{adapter}")
}

/// One `[[adapter.sink]]` (or the `[adapter.dead_letter]`), before the sinks crate
/// gives it a type: the `type`, the `name`, and every other key as written.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// The `type` key: `jetstream`, `file`, `blackhole`, ...
    pub kind: String,
    /// The `name` key; default the type, made unique within the adapter by a suffix
    /// (`file`, `file_2`, `file_3`).
    pub name: String,
    /// Every key but `type` and `name`.
    pub options: toml::Table,
    /// Where the sink's table starts.
    pub location: Location,
    /// How errors name this sink, e.g. `adapter "registration": sink "file"`.
    pub key: String,
    /// Where each option was written, by option name.
    pub origins: Origins,
}

impl SinkSpec {
    /// A sink spec that was not read from a file (tests, defaults): every origin is
    /// `location`.
    pub fn new(kind: impl Into<String>, options: toml::Table, location: Location) -> Self {
        let kind = kind.into();
        let key = format!("sink \"{kind}\"");
        let mut origins = Origins::default();
        origins.insert("", Origin::new(location.clone(), key.clone(), ""));
        SinkSpec {
            name: kind.clone(),
            kind,
            options,
            location,
            key,
            origins,
        }
    }

    /// The options as `T` (a sink's config struct), or the first problem: see
    /// [`SinkSpec::options_all`].
    // Config errors are made once, at load time; their size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.options_all().map_err(|errors| {
            errors
                .into_iter()
                .next()
                .unwrap_or_else(|| self.error("", "invalid options"))
        })
    }

    /// The options as `T` (a sink's config struct). Serde's errors become
    /// [`ConfigError`]s at the key they are about (or at the sink's table), unknown keys
    /// answered with the closest known one; every error is reported, not just the
    /// first.
    pub fn options_all<T: DeserializeOwned>(&self) -> Result<T, ConfigErrors> {
        // Deserializing from parsed text (rather than from the table) gives spans, so
        // an error can be traced back to the key it is about.
        let text = toml::to_string(&self.options)
            .map_err(|e| self.error("", format!("invalid options: {e}")))?;
        let doc = toml::de::DeTable::parse(&text)
            .map_err(|e| self.error("", format!("invalid options: {}", e.message())))?;
        let span = doc.span();
        let value = toml::Spanned::new(span, toml::de::DeValue::Table(doc.into_inner()));
        let mut errors = ConfigErrors::default();
        let typed = super::toml_file::de_all(&value, |e, path| {
            let rewritten = super::error::rewrite_serde_message(e.message());
            let error = match path.first() {
                // Unknown keys: at the key itself, named by the sink.
                Some(first) if rewritten.unknown_key => {
                    let at = self
                        .origins
                        .get_exact(first)
                        .map_or(&self.location, |o| &o.location);
                    ConfigError::at(at, self.key.clone(), rewritten.message)
                }
                Some(first) => self.error(first, rewritten.message),
                None => self.error("", rewritten.message),
            };
            errors.push(error.with_hint_opt(rewritten.hint));
        });
        match typed {
            Some(t) => Ok(t),
            None if errors.is_empty() => Err(self.error("", "invalid options").into()),
            None => Err(errors),
        }
    }

    /// An error about option `rel` (e.g. `subject`), at the place it was written, or at
    /// the sink's table (keyed `<sink key>: <rel>`) when it was not written.
    pub fn error(&self, rel: &str, message: impl Into<String>) -> ConfigError {
        match self.origins.get_exact(rel) {
            Some(o) => ConfigError::at(&o.location, o.key.clone(), message),
            None if rel.is_empty() => ConfigError::at(&self.location, self.key.clone(), message),
            None => ConfigError::at(&self.location, format!("{}: {rel}", self.key), message),
        }
    }

    /// How to write option `rel` in this file, for hints (`subject`, or a Choria key).
    pub fn written(&self, rel: &str) -> String {
        self.origins.written(rel)
    }

    /// Option `rel` set to `value` as one writes it in this file, for hints: see
    /// [`Origins::example`].
    pub fn example(&self, rel: &str, value: impl Into<toml::Value>) -> String {
        self.origins.example(rel, value)
    }
}

/// Where a setting was written, and how errors and hints name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, line and column.
    pub location: Location,
    /// How errors name the setting: `adapter "registration".ingest.workers`, or a
    /// Choria key such as `plugin.choria.adapter.registration.ingest.workers`.
    pub key: String,
    /// The key as one writes it in that file, for hints (`workers`, or the whole Choria
    /// key). Empty for tables.
    pub written: String,
    /// Whether the file is a Choria config (values unquoted) rather than TOML.
    pub choria: bool,
}

impl Origin {
    /// A setting in a TOML file.
    pub fn new(location: Location, key: impl Into<String>, written: impl Into<String>) -> Self {
        Origin {
            location,
            key: key.into(),
            written: written.into(),
            choria: false,
        }
    }

    /// A setting in a Choria config file, named and written as `key`.
    pub fn choria(location: Location, key: impl Into<String>) -> Self {
        let key = key.into();
        Origin {
            location,
            written: key.clone(),
            key,
            choria: true,
        }
    }
}

/// Where each setting of an adapter (or sink) was written, by relative dotted path
/// (`""` for the table itself, `name`, `ingest.workers`, `pipeline.batch.max_records`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(BTreeMap<String, Origin>);

impl Origins {
    /// Records where `rel` was written.
    pub fn insert(&mut self, rel: impl Into<String>, origin: Origin) {
        self.0.insert(rel.into(), origin);
    }

    /// Where exactly `rel` was written, if it was.
    pub fn get_exact(&self, rel: &str) -> Option<&Origin> {
        self.0.get(rel)
    }

    /// Where `rel` was written, or else its nearest enclosing table (`ingest.workers`,
    /// then `ingest`, then `""`).
    pub fn get(&self, rel: &str) -> Option<&Origin> {
        let mut rel = rel;
        loop {
            if let Some(o) = self.0.get(rel) {
                return Some(o);
            }
            if rel.is_empty() {
                return None;
            }
            rel = match rel.rfind(['.', '[']) {
                Some(i) => &rel[..i],
                None => "",
            };
        }
    }

    /// How to write `rel` in this file (`workers`, or a Choria key), for hints.
    pub fn written(&self, rel: &str) -> String {
        match self.0.get(rel) {
            Some(o) if !o.written.is_empty() => o.written.clone(),
            _ => rel.rsplit('.').next().unwrap_or(rel).to_string(),
        }
    }

    /// `rel` set to `value` as one writes it in this file, for hints: `workers = 10`,
    /// `subject = "a.b"`, or in a Choria config `plugin.choria.adapter.x.ingest.topic =
    /// a.b` (values unquoted).
    pub fn example(&self, rel: &str, value: impl Into<toml::Value>) -> String {
        let value = value.into();
        let choria = self.get(rel).is_some_and(|o| o.choria);
        let written = self.written(rel);
        if choria {
            format!("{written} = {}", choria_value(&value))
        } else {
            format!("{written} = {value}")
        }
    }

    /// An error about `rel`, at the place it was written. When it was not written, the
    /// error is at its nearest enclosing table, keyed by that table's key and the rest
    /// of `rel` (`adapter "x".ingest` + `workers`).
    pub fn error(&self, rel: &str, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        if let Some(o) = self.0.get(rel) {
            return ConfigError::at(&o.location, o.key.clone(), message);
        }
        let mut parent = rel;
        loop {
            parent = match parent.rfind(['.', '[']) {
                Some(i) => &parent[..i],
                None if parent.is_empty() => break,
                None => "",
            };
            if let Some(o) = self.0.get(parent) {
                let rest = rel[parent.len()..].trim_start_matches('.');
                let key = if o.key.is_empty() {
                    rest.to_string()
                } else {
                    format!("{}.{rest}", o.key)
                };
                return ConfigError::at(&o.location, key, message);
            }
        }
        ConfigError::new(PathBuf::new(), rel.to_string(), message)
    }

    /// Every recorded path and origin.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Origin)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// A value as a Choria config writes it: unquoted, lists comma separated.
fn choria_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items
            .iter()
            .map(choria_value)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}
