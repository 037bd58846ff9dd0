//! Choria's own config files (`broker.conf`, `server.conf`): `key = value` lines, and
//! the adapter section of a broker's (`plugin.choria.adapter.<name>.*`) mapped onto the
//! same [`AdaptersConfig`] as `adapters.toml`.
//!
//! The format is Choria's: each line is trimmed; empty lines and lines starting with `#`
//! or `;` are comments; otherwise the key runs to the first `=`, the value is the rest
//! with the spaces around the `=` removed. A line without `=` or without a value is
//! ignored, as Choria does, and there are no comments after a value (`10 # default` is
//! the value). A key given twice keeps the last value.
//!
//! The mapping (`broker/adapter/ingest/ingest.go`, `broker/adapter/streams/*.go`):
//!
//! | Choria key | adapters.toml |
//! |---|---|
//! | `plugin.choria.adapters = a,b` | one `[[adapter]]` per name |
//! | `plugin.choria.adapter.<n>.type` | `jetstream` or `choria_streams`; `nats_stream` is an error |
//! | `.queue_len` (1000) | `ingest.queue_len`, with `ingest.block_for = "0s"`: a full queue drops |
//! | `.ingest.topic` (required) | `ingest.subject`, `ingest.type = "nats"`, queue group `nats_ingest_<n>` |
//! | `.ingest.protocol` (`reply`) | `ingest.protocol`: `request`, anything else `reply` |
//! | `.ingest.workers` (10) | `ingest.workers` |
//! | `plugin.choria.middleware_hosts` | `ingest.servers` (default `nats://localhost:4222`) |
//! | `.stream.topic` (`<n>`) | one `jetstream` sink: `subject` (`%s` is the sender), `encoding = "choria_streams"` |
//! | `.stream.servers` (the middleware) | the sink's `servers`; `nats://` added to bare `host:port` |
//! | `.stream.workers` (10) | `pipeline.concurrency` |
//! | `identity` | `http.identity` |
//! | `plugin.choria.stats_address` (`127.0.0.1`), `plugin.choria.stats_port` | `http.listen`; port 0 or unset keeps Coro's default 127.0.0.1:8222 |

use super::adapters::{
    default_queue_group, AdapterConfig, AdaptersConfig, HttpSettings, IngestConfig, NatsIngest,
    Origin, Origins, Protocol, SinkSpec,
};
use super::error::{did_you_mean, ConfigError, ConfigErrors, Location};
use crate::pipeline::PipelineSettings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings an adapter section may have, after `plugin.choria.adapter.<name>.`.
pub const ADAPTER_SETTINGS: [&str; 8] = [
    "type",
    "queue_len",
    "ingest.topic",
    "ingest.protocol",
    "ingest.workers",
    "stream.topic",
    "stream.workers",
    "stream.servers",
];

/// The NATS server used when nothing says: Choria's default middleware.
pub const DEFAULT_SERVER: &str = "nats://localhost:4222";

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoriaEntry {
    /// The value, verbatim.
    pub value: String,
    /// Where the key is written.
    pub location: Location,
}

/// A parsed Choria config file: every key with its value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoriaConfig {
    file: PathBuf,
    entries: BTreeMap<String, ChoriaEntry>,
}

impl ChoriaConfig {
    /// Parses `text`, the contents of `file`. Never fails: lines that are not
    /// `key = value` are ignored, as Choria ignores them.
    pub fn parse(file: impl Into<PathBuf>, text: &str) -> ChoriaConfig {
        let file = file.into();
        let mut entries = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            // Choria's `(.+?)\s*=\s*(.+)`: the key is at least one character.
            let Some(eq) = line
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == '=')
                .map(|(i, _)| i)
            else {
                continue;
            };
            let key = line[..eq].trim_end();
            let value = line[eq + 1..].trim_start();
            if value.is_empty() {
                continue;
            }
            let indent = raw.len() - raw.trim_start().len();
            let column = raw[..indent].chars().count() + 1;
            entries.insert(
                key.to_string(),
                ChoriaEntry {
                    value: value.to_string(),
                    location: Location::new(&file, i + 1, column),
                },
            );
        }
        ChoriaConfig { file, entries }
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|e| e.value.as_str())
    }

    /// The value of `key` and where it is written.
    pub fn entry(&self, key: &str) -> Option<&ChoriaEntry> {
        self.entries.get(key)
    }

    /// Every key, sorted.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &ChoriaEntry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The adapter section as an [`AdaptersConfig`], checked like `adapters.toml` is.
    /// Every error cites the line of the key it is about.
    pub fn to_adapters(&self) -> Result<AdaptersConfig, ConfigErrors> {
        let (config, errors) = self.read_adapters();
        errors.into_result(config)
    }

    /// The adapters that could be mapped completely, and every problem found.
    pub fn read_adapters(&self) -> (AdaptersConfig, ConfigErrors) {
        let mut errors = ConfigErrors::default();
        let list = self.entry("plugin.choria.adapters");
        let names: Vec<&str> = list
            .map(|e| {
                e.value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            let e = match list {
                Some(e) => {
                    ConfigError::at(&e.location, "plugin.choria.adapters", "lists no adapters")
                }
                None => ConfigError::new(
                    &self.file,
                    "plugin.choria.adapters",
                    "is not set: no adapters configured",
                ),
            };
            errors.push(e.with_hint("list them, e.g. plugin.choria.adapters = registration"));
        }
        let mut http = HttpSettings::default();
        if let Some(identity) = self.get("identity") {
            http.identity = identity.to_string();
        }
        if let Some(entry) = self.entry("plugin.choria.stats_port") {
            let address = self
                .get("plugin.choria.stats_address")
                .unwrap_or("127.0.0.1");
            match entry.value.parse::<u16>() {
                Ok(0) => {}
                Ok(port) => match if address.contains(':') {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                }
                .parse()
                {
                    Ok(listen) => http.listen = listen,
                    Err(_) => errors.push(
                        ConfigError::new(
                            &self.file,
                            "plugin.choria.stats_address",
                            format!("{address:?} is not an IP address"),
                        )
                        .with_hint("write e.g. plugin.choria.stats_address = 127.0.0.1"),
                    ),
                },
                Err(_) => errors.push(
                    ConfigError::at(
                        &entry.location,
                        "plugin.choria.stats_port",
                        format!("{:?} is not a port number", entry.value),
                    )
                    .with_hint("write e.g. plugin.choria.stats_port = 8222"),
                ),
            }
        }
        let mut adapters = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                if let Some(list) = list {
                    errors.push(
                        ConfigError::at(
                            &list.location,
                            "plugin.choria.adapters",
                            format!("lists `{name}` twice"),
                        )
                        .with_hint("adapter names must be unique"),
                    );
                }
                continue;
            }
            if let Some(a) = self.adapter(name, &mut errors) {
                adapters.push(a);
            }
        }
        let config = AdaptersConfig {
            file: self.file.clone(),
            http,
            adapters,
        };
        errors.extend(super::checks::check(&config));
        (config, errors)
    }

    fn adapter(&self, name: &str, errors: &mut ConfigErrors) -> Option<AdapterConfig> {
        let prefix = format!("plugin.choria.adapter.{name}.");
        let key = |s: &str| format!("{prefix}{s}");
        for (k, e) in self.entries.range(prefix.clone()..) {
            let Some(setting) = k.strip_prefix(&prefix) else {
                break;
            };
            if !ADAPTER_SETTINGS.contains(&setting) {
                let hint = match did_you_mean(setting, ADAPTER_SETTINGS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys: {}", ADAPTER_SETTINGS.join(", ")),
                };
                errors.push(
                    ConfigError::at(&e.location, k.clone(), format!("unknown key `{setting}`"))
                        .with_hint(hint),
                );
            }
        }

        let list_at = self
            .entry("plugin.choria.adapters")
            .map(|e| e.location.clone())
            .unwrap_or_else(|| Location::new(&self.file, 1, 1));
        let mut ok = true;
        let type_entry = self.entry(&key("type"));
        match type_entry.map(|e| e.value.as_str()) {
            Some("jetstream" | "choria_streams") => {}
            Some("nats_stream") => {
                errors.push(
                    ConfigError::at(
                        &type_entry.unwrap().location,
                        key("type"),
                        "`nats_stream` is deprecated upstream",
                    )
                    .with_hint("use jetstream"),
                );
                ok = false;
            }
            Some(other) => {
                errors.push(
                    ConfigError::at(
                        &type_entry.unwrap().location,
                        key("type"),
                        format!("unknown adapter type `{other}`"),
                    )
                    .with_hint(super::error::unknown_hint(
                        other,
                        ["jetstream", "choria_streams"],
                    )),
                );
                ok = false;
            }
            None => {
                errors.push(
                    ConfigError::at(&list_at, key("type"), "missing required key")
                        .with_hint(format!("write e.g. {} = jetstream", key("type"))),
                );
                ok = false;
            }
        }
        let at = type_entry.map_or(list_at.clone(), |e| e.location.clone());

        let mut origins = Origins::default();
        origins.insert(
            "",
            Origin::choria(at.clone(), key("").trim_end_matches('.')),
        );
        origins.insert("name", Origin::choria(list_at, "plugin.choria.adapters"));
        origins.insert("ingest", Origin::choria(at.clone(), key("ingest")));
        let mut record = |rel: &str, setting: &str| {
            if let Some(e) = self.entry(&key(setting)) {
                origins.insert(rel, Origin::choria(e.location.clone(), key(setting)));
            }
        };
        record("ingest.subject", "ingest.topic");
        record("ingest.protocol", "ingest.protocol");
        record("ingest.workers", "ingest.workers");
        record("ingest.queue_len", "queue_len");
        record("pipeline.concurrency", "stream.workers");

        let queue_len = self.number(&key("queue_len"), 1000, errors);
        let workers = self.number(&key("ingest.workers"), 10, errors);
        let concurrency = self.number(&key("stream.workers"), 10, errors);
        let topic = match self.get(&key("ingest.topic")) {
            Some(t) => Some(t.to_string()),
            None => {
                errors.push(
                    ConfigError::at(&at, key("ingest.topic"), "missing required key").with_hint(
                        format!(
                            "write e.g. {} = choria.broadcast.agent.registration",
                            key("ingest.topic")
                        ),
                    ),
                );
                None
            }
        };
        let protocol = match self.get(&key("ingest.protocol")) {
            Some("request") => Protocol::Request,
            _ => Protocol::Reply,
        };

        let middleware = self.entry("plugin.choria.middleware_hosts");
        let middleware_servers = middleware.map(|e| server_list(&e.value));
        let ingest_servers = middleware_servers
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_SERVER.to_string()]);
        match middleware {
            Some(e) => origins.insert(
                "ingest.servers",
                Origin::choria(e.location.clone(), "plugin.choria.middleware_hosts"),
            ),
            None => origins.insert("ingest.servers", Origin::choria(at.clone(), key("type"))),
        }

        let sink_key = key("stream");
        let mut sink_origins = Origins::default();
        sink_origins.insert("", Origin::choria(at.clone(), sink_key.clone()));
        for rel in ["type", "encoding"] {
            sink_origins.insert(rel, Origin::choria(at.clone(), key("type")));
        }
        let (sink_servers, servers_origin) = match (self.entry(&key("stream.servers")), middleware)
        {
            (Some(e), _) => (
                server_list(&e.value),
                Origin::choria(e.location.clone(), key("stream.servers")),
            ),
            (None, Some(e)) => (
                middleware_servers.unwrap_or_default(),
                Origin {
                    written: key("stream.servers"),
                    ..Origin::choria(e.location.clone(), "plugin.choria.middleware_hosts")
                },
            ),
            (None, None) => (
                vec![DEFAULT_SERVER.to_string()],
                Origin::choria(at.clone(), key("stream.servers")),
            ),
        };
        sink_origins.insert("servers", servers_origin);
        let subject = match self.entry(&key("stream.topic")) {
            Some(e) => {
                sink_origins.insert(
                    "subject",
                    Origin::choria(e.location.clone(), key("stream.topic")),
                );
                e.value.clone()
            }
            None => {
                sink_origins.insert("subject", Origin::choria(at.clone(), key("stream.topic")));
                name.to_string()
            }
        };
        let mut options = toml::Table::new();
        options.insert(
            "servers".into(),
            toml::Value::Array(sink_servers.into_iter().map(toml::Value::String).collect()),
        );
        options.insert("subject".into(), toml::Value::String(subject));
        options.insert(
            "encoding".into(),
            toml::Value::String("choria_streams".into()),
        );
        let sink = SinkSpec {
            kind: "jetstream".into(),
            name: "jetstream".into(),
            options,
            location: at,
            key: sink_key,
            origins: sink_origins,
        };

        let (Some(queue_len), Some(workers), Some(concurrency), Some(subject), true) =
            (queue_len, workers, concurrency, topic, ok)
        else {
            return None;
        };
        Some(AdapterConfig {
            name: name.to_string(),
            ingest: IngestConfig::Nats(NatsIngest {
                servers: ingest_servers,
                subject,
                queue_group: default_queue_group(name),
                workers,
                queue_len,
                block_for: Duration::ZERO,
                protocol,
            }),
            pipeline: PipelineSettings {
                concurrency,
                ..PipelineSettings::default()
            },
            sinks: vec![sink],
            dead_letter: None,
            origins,
        })
    }

    /// The whole number at `key`, `default` when unset; `None` (and an error) when the
    /// value is not a number.
    fn number(&self, key: &str, default: usize, errors: &mut ConfigErrors) -> Option<usize> {
        let Some(e) = self.entry(key) else {
            return Some(default);
        };
        match e.value.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                let mut hint = format!("write e.g. {key} = {default}");
                if e.value.contains('#') {
                    hint = format!("Choria config has no comments after a value; {hint}");
                }
                errors.push(
                    ConfigError::at(
                        &e.location,
                        key,
                        format!("`{}` is not a whole number", e.value),
                    )
                    .with_hint(hint),
                );
                None
            }
        }
    }
}

/// A comma list of `host:port` or URLs, as URLs (`nats://` added when there is no
/// scheme).
pub fn server_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s.to_string()
            } else {
                format!("nats://{s}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_choria() {
        let text = "# comment\n; also a comment\n  identity = node1 \nempty =\nno value here\n\
                    a=b=c\nplugin.choria.adapter.x.ingest.workers = 10 # default\nidentity = node2\n";
        let c = ChoriaConfig::parse("broker.conf", text);
        assert_eq!(c.get("identity"), Some("node2"));
        assert_eq!(
            c.entry("identity").unwrap().location,
            Location::new("broker.conf", 8, 1)
        );
        assert_eq!(c.get("empty"), None);
        assert_eq!(c.get("a"), Some("b=c"));
        assert_eq!(
            c.get("plugin.choria.adapter.x.ingest.workers"),
            Some("10 # default")
        );
        assert_eq!(c.entries().count(), 3);
    }

    #[test]
    fn server_lists() {
        assert_eq!(
            server_list("stan1:4222, tls://stan2:4222,,"),
            vec!["nats://stan1:4222", "tls://stan2:4222"]
        );
    }
}
