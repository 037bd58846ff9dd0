//! Elasticsearch sink settings, and the index name template.

use coro_core::config::{did_you_mean, toml, ConfigError, SinkSpec};
use coro_core::Record;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `type = "elasticsearch"`: records into Elasticsearch with `_bulk`, one outcome per
/// bulk item.
///
/// ```toml
/// [[adapter.sink]]
/// type = "elasticsearch"
/// urls = ["http://127.0.0.1:9200"]
/// model = "nodes"
/// index = "choria-nodes"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Elasticsearch nodes, `http://` or `https://` URLs, e.g.
    /// `["https://es1.example.net:9200"]`. Required, at least one; requests go round
    /// robin.
    pub urls: Vec<String>,
    /// What a document is: `events` (default; one document per record, created once
    /// with the record's idempotency key as `_id`) or `nodes` (one document per node
    /// identity, built from registration, newest registration wins).
    #[serde(default)]
    pub model: Model,
    /// The index name template. Required. Placeholders: `{agent}`, `{collective}`
    /// (`none` when the record has none, as replies do), `{kind}`, and the date of the
    /// record's Choria time (UTC): `{date}` (`%Y.%m.%d`) or `%Y`, `%m`, `%d`, `%H`. Values
    /// are lower-cased and characters Elasticsearch forbids become `_`. E.g.
    /// `choria-nodes`, `choria-replies-{agent}-%Y.%m.%d`.
    pub index: String,
    /// Basic authentication user; needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password.
    #[serde(default)]
    pub password: Option<String>,
    /// An API key as Elasticsearch returns it in `encoded` (base64 of `id:key`); sent as
    /// `Authorization: ApiKey ...`. Not together with `username`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// PEM file with the CA certificate(s) that signed the servers' certificates, for
    /// `https://` URLs with a private CA. Without it the system's web roots are used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Most records in one `_bulk` request. Default 1000, at least 1. A sink call larger
    /// than this (see `[adapter.pipeline] batch.max_records`) is split.
    #[serde(default = "default_bulk_max_records")]
    pub bulk_max_records: usize,
    /// Most NDJSON bytes in one `_bulk` request (before gzip): a request only exceeds it
    /// when one document alone does. Default 5 MiB, at least 1 (keep it well under the
    /// server's `http.max_content_length`, 100 MiB by default).
    #[serde(default = "default_bulk_max_bytes")]
    pub bulk_max_bytes: usize,
    /// Gzip `_bulk` bodies (`Content-Encoding: gzip`). Default false.
    #[serde(default)]
    pub gzip: bool,
    /// Most `_bulk` requests in flight at once, over every call of this sink. Default 4,
    /// at least 1.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long one request may take. Default 30 s.
    #[serde(
        default = "default_request_timeout",
        with = "coro_core::config::duration"
    )]
    pub request_timeout: Duration,
    /// Install (or replace) the index template at start. Default true. Without it the
    /// template must exist already: `coro validate --online` says whether it does.
    #[serde(default = "crate::config::default_true")]
    pub install_template: bool,
    /// The index template's name. Default `coro-` and the index template's fixed prefix,
    /// e.g. `coro-choria-nodes`.
    #[serde(default)]
    pub template_name: Option<String>,
    /// The index template's priority; templates whose patterns overlap need different
    /// priorities. Default 200 (above the built-in `logs-*-*` at 100).
    #[serde(default = "default_template_priority")]
    pub template_priority: u32,
    /// `index.number_of_shards` of new indices; default Elasticsearch's.
    #[serde(default)]
    pub number_of_shards: Option<u32>,
    /// `index.number_of_replicas` of new indices; default Elasticsearch's (1). A single
    /// node cluster is green only with 0.
    #[serde(default)]
    pub number_of_replicas: Option<u32>,
    /// `events` only: `index` names a data stream; the template declares it. Default
    /// false.
    #[serde(default)]
    pub data_stream: bool,
    /// `events` only: how a JSON body is mapped: `object` (default; dynamic mapping,
    /// typed fields, conflicts between agents are rejected items) or `flattened` (every
    /// leaf a keyword, never a conflict, no numeric ranges).
    #[serde(default)]
    pub body: BodyMapping,
    /// `nodes` only: mark nodes whose `last_seen` is older than this as `stale = true`,
    /// checked every `stale_check_interval`; e.g. `"15m"` (three 300 s registration
    /// intervals). Default: no marking (the silent-nodes query works without it).
    #[serde(default, with = "optional_duration")]
    pub stale_after: Option<Duration>,
    /// How often the `stale_after` marking runs. Default 60 s.
    #[serde(
        default = "default_stale_check_interval",
        with = "coro_core::config::duration"
    )]
    pub stale_check_interval: Duration,
}

/// What an Elasticsearch document is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// One document per record: RPC replies, requests, lifecycle events, history.
    #[default]
    Events,
    /// One document per node, from its registration.
    Nodes,
}

impl Model {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Events => "events",
            Model::Nodes => "nodes",
        }
    }
}

/// How an `events` document's JSON body is mapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyMapping {
    /// Dynamic object mapping.
    #[default]
    Object,
    /// One `flattened` field.
    Flattened,
}

const fn default_bulk_max_records() -> usize {
    1000
}
const fn default_bulk_max_bytes() -> usize {
    5 * 1024 * 1024
}
const fn default_concurrency() -> usize {
    4
}
const fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
const fn default_template_priority() -> u32 {
    200
}
const fn default_stale_check_interval() -> Duration {
    Duration::from_secs(60)
}

/// `Option<Duration>` as `"15m"`-style text.
mod optional_duration {
    use serde::Deserializer;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        coro_core::config::duration::deserialize(d).map(Some)
    }
}

/// The `{placeholders}` an index template may use (besides `%Y`, `%m`, `%d`, `%H`).
pub const PLACEHOLDERS: [&str; 4] = ["agent", "collective", "kind", "date"];

/// What `{collective}` becomes for a record without a sub-collective.
pub const NO_COLLECTIVE: &str = "none";

/// A piece of an index name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Agent,
    Collective,
    Kind,
    /// `{date}`: `%Y.%m.%d`.
    Date,
    Year,
    Month,
    Day,
    Hour,
    /// `{anything else}`, without the braces.
    Unknown(String),
}

impl Piece {
    fn is_time(&self) -> bool {
        matches!(
            self,
            Piece::Date | Piece::Year | Piece::Month | Piece::Day | Piece::Hour
        )
    }
}

/// A parsed index name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTemplate {
    pieces: Vec<Piece>,
}

impl IndexTemplate {
    /// Parses `template`; unknown `{placeholders}` are kept for [`ElasticsearchConfig::check`]
    /// to report. A `{` without `}` and a `%` not followed by `Y`, `m`, `d` or `H` are text.
    pub fn parse(template: &str) -> IndexTemplate {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            let (piece, len) = match c {
                '%' => match rest.as_bytes().get(1) {
                    Some(b'Y') => (Some(Piece::Year), 2),
                    Some(b'm') => (Some(Piece::Month), 2),
                    Some(b'd') => (Some(Piece::Day), 2),
                    Some(b'H') => (Some(Piece::Hour), 2),
                    _ => (None, 1),
                },
                '{' => match rest[1..].find('}') {
                    Some(end) => {
                        let name = &rest[1..=end];
                        let piece = match name {
                            "agent" => Piece::Agent,
                            "collective" => Piece::Collective,
                            "kind" => Piece::Kind,
                            "date" => Piece::Date,
                            other => Piece::Unknown(other.to_string()),
                        };
                        (Some(piece), end + 2)
                    }
                    None => (None, 1),
                },
                c => (None, c.len_utf8()),
            };
            match piece {
                Some(p) => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(p);
                }
                None => text.push_str(&rest[..len]),
            }
            rest = &rest[len..];
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        IndexTemplate { pieces }
    }

    pub(crate) fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Whether the name is the same for every record (no placeholders).
    pub fn is_fixed(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    /// Whether the name depends on the record's time.
    pub fn is_dated(&self) -> bool {
        self.pieces.iter().any(Piece::is_time)
    }

    /// The index pattern that covers every name the template makes, which the index
    /// template is installed for: each placeholder becomes `*` (adjacent ones one `*`),
    /// so `choria-{agent}-%Y.%m.%d` gives `choria-*-*.*.*`.
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                _ if out.ends_with('*') => {}
                _ => out.push('*'),
            }
        }
        out
    }

    /// The text before the first placeholder.
    pub fn prefix(&self) -> &str {
        match self.pieces.first() {
            Some(Piece::Text(t)) => t,
            _ => "",
        }
    }

    /// The index for `record`, whose Choria time is `time` (UTC).
    pub fn name_for(&self, record: &Record, time: Option<&time::OffsetDateTime>) -> String {
        let mut out = String::with_capacity(64);
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Agent => push_sanitized(&mut out, &record.agent),
                Piece::Collective => push_sanitized(
                    &mut out,
                    record.collective.as_deref().unwrap_or(NO_COLLECTIVE),
                ),
                Piece::Kind => out.push_str(record.kind.as_str()),
                Piece::Unknown(name) => {
                    // Rejected by `check`; kept verbatim if it gets here anyway.
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
                time_piece => {
                    let Some(t) = time else {
                        out.push_str("unknown");
                        continue;
                    };
                    use std::fmt::Write;
                    let _ = match time_piece {
                        Piece::Date => {
                            write!(out, "{:04}.{:02}.{:02}", t.year(), t.month() as u8, t.day())
                        }
                        Piece::Year => write!(out, "{:04}", t.year()),
                        Piece::Month => write!(out, "{:02}", t.month() as u8),
                        Piece::Day => write!(out, "{:02}", t.day()),
                        _ => write!(out, "{:02}", t.hour()),
                    };
                }
            }
        }
        out
    }
}

/// Appends `value` as an index name part: lower case; `_` for what Elasticsearch
/// forbids in names (`\ / * ? " < > | , #`, space, `:`) and for a leading `-`, `_`, `+`.
fn push_sanitized(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    for c in value.chars() {
        let c = c.to_ascii_lowercase();
        let bad = matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ' ' | ':'
        ) || c.is_whitespace()
            || c.is_uppercase();
        out.push(if bad { '_' } else { c });
    }
}

/// Why an index name text is not allowed, if it is not.
fn check_index_text(text: &str) -> Result<(), String> {
    if let Some(c) = text.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ' ' | ':'
        )
    }) {
        return Err(format!("index names cannot contain `{c}`"));
    }
    if text.chars().any(char::is_uppercase) {
        return Err("index names must be lower case".into());
    }
    Ok(())
}

impl ElasticsearchConfig {
    /// Examples for the required keys, for hints.
    pub(crate) const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("urls", "urls = [\"http://127.0.0.1:9200\"]"),
        ("index", "index = \"choria-nodes\""),
    ];

    /// The parsed index name template.
    pub fn index_template(&self) -> IndexTemplate {
        IndexTemplate::parse(&self.index)
    }

    /// The index template's name: `template_name`, or `coro-` and the index name's
    /// fixed prefix (trailing `-`, `_`, `.` trimmed).
    pub fn template_name(&self) -> String {
        if let Some(name) = &self.template_name {
            return name.clone();
        }
        let template = self.index_template();
        let prefix = template
            .prefix()
            .trim_end_matches(['-', '_', '.'])
            .to_string();
        if prefix.is_empty() {
            format!("coro-{}", self.model.as_str())
        } else {
            format!("coro-{prefix}")
        }
    }

    /// The problems serde cannot see, each at the line of its key in `spec`.
    pub fn check(&self, spec: &SinkSpec) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let hint =
            |key: &str, value: toml::Value| format!("write e.g. {}", spec.example(key, value));
        if self.urls.is_empty() {
            errors.push(
                spec.error("urls", "needs at least one URL")
                    .with_hint(format!("write e.g. {}", Self::EXAMPLES[0].1)),
            );
        }
        for url in &self.urls {
            if let Err(why) = check_url(url) {
                errors.push(
                    spec.error("urls", why)
                        .with_hint("use http:// or https:// URLs, e.g. http://127.0.0.1:9200"),
                );
            }
        }
        errors.extend(self.check_index(spec));
        match (&self.username, &self.password, &self.api_key) {
            (Some(_), None, _) => errors.push(
                spec.error("username", "needs `password` too")
                    .with_hint(format!(
                        "write e.g. {}",
                        spec.example("password", "changeme")
                    )),
            ),
            (None, Some(_), _) => errors.push(
                spec.error("password", "needs `username` too")
                    .with_hint(format!(
                        "write e.g. {}",
                        spec.example("username", "elastic")
                    )),
            ),
            (Some(_), Some(_), Some(_)) => errors.push(
                spec.error(
                    "api_key",
                    "use either `api_key` or `username` and `password`, not both",
                )
                .with_hint("remove one of them"),
            ),
            _ => {}
        }
        if self
            .api_key
            .as_deref()
            .is_some_and(|k| !k.is_empty() && !k.bytes().all(|b| b.is_ascii_graphic()))
        {
            errors.push(
                spec.error(
                    "api_key",
                    "must be printable, without spaces or line breaks",
                )
                .with_hint("write the `encoded` value (base64), or `id:key`"),
            );
        }
        if self.api_key.as_deref().is_some_and(str::is_empty) {
            errors.push(spec.error("api_key", "must not be empty").with_hint(
                "write the `encoded` value Elasticsearch returned when the key was created",
            ));
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            errors.push(
                spec.error("ca_file", "must not be empty")
                    .with_hint(hint("ca_file", toml::Value::from("/etc/coro/es-ca.pem"))),
            );
        }
        for (key, value, default) in [
            (
                "bulk_max_records",
                self.bulk_max_records,
                default_bulk_max_records(),
            ),
            (
                "bulk_max_bytes",
                self.bulk_max_bytes,
                default_bulk_max_bytes(),
            ),
            ("concurrency", self.concurrency, default_concurrency()),
        ] {
            if value == 0 {
                errors.push(
                    spec.error(key, "must be at least 1")
                        .with_hint(hint(key, toml::Value::from(default as i64))),
                );
            }
        }
        if self.request_timeout.is_zero() {
            errors.push(
                spec.error("request_timeout", "must be longer than 0s")
                    .with_hint(hint("request_timeout", toml::Value::from("30s"))),
            );
        }
        if let Some(name) = &self.template_name {
            if name.is_empty() || check_index_text(name).is_err() {
                errors.push(
                    spec.error("template_name", "must be a non-empty lower-case name without `\\ / * ? \" < > | , # :` or spaces")
                        .with_hint(hint("template_name", toml::Value::from("coro-choria-nodes"))),
                );
            }
        }
        if self.model == Model::Nodes {
            if self.data_stream {
                errors.push(
                    spec.error("data_stream", "only the `events` model can write to a data stream: `nodes` replaces documents, which data streams do not allow")
                        .with_hint("remove `data_stream`, or use model = \"events\""),
                );
            }
            if self.body != BodyMapping::Object {
                errors.push(
                    spec.error("body", "applies to the `events` model only; `nodes` always maps facts as `flattened`")
                        .with_hint("remove `body`"),
                );
            }
        }
        if self.model == Model::Events && self.stale_after.is_some() {
            errors.push(
                spec.error("stale_after", "applies to the `nodes` model only")
                    .with_hint("remove `stale_after`, or use model = \"nodes\""),
            );
        }
        if self.stale_after.is_some_and(|d| d.is_zero()) {
            errors.push(
                spec.error("stale_after", "must be longer than 0s")
                    .with_hint(hint("stale_after", toml::Value::from("15m"))),
            );
        }
        if self.stale_check_interval.is_zero() {
            errors.push(
                spec.error("stale_check_interval", "must be longer than 0s")
                    .with_hint(hint("stale_check_interval", toml::Value::from("60s"))),
            );
        }
        errors
    }

    fn check_index(&self, spec: &SinkSpec) -> Option<ConfigError> {
        let example = || format!("write e.g. {}", spec.example("index", "choria-nodes"));
        if self.index.is_empty() {
            return Some(
                spec.error("index", "must not be empty")
                    .with_hint(example()),
            );
        }
        let template = self.index_template();
        for piece in template.pieces() {
            match piece {
                Piece::Unknown(name) => {
                    let hint = match did_you_mean(name, PLACEHOLDERS) {
                        Some(best) => format!("did you mean `{{{best}}}`?"),
                        None => "known placeholders: {agent}, {collective}, {kind}, {date}, %Y, %m, %d, %H".to_string(),
                    };
                    return Some(
                        spec.error("index", format!("unknown placeholder `{{{name}}}`"))
                            .with_hint(hint),
                    );
                }
                Piece::Text(t) => {
                    if let Err(why) = check_index_text(t) {
                        return Some(spec.error("index", why).with_hint(example()));
                    }
                }
                _ => {}
            }
        }
        let first = template.prefix();
        if template
            .pieces()
            .first()
            .is_some_and(|p| !matches!(p, Piece::Text(_)))
            || first.starts_with(['-', '_', '+', '.'])
        {
            return Some(
                spec.error(
                    "index",
                    "index names must start with fixed text not beginning with `-`, `_`, `+` or `.`",
                )
                .with_hint(format!(
                    "write e.g. {}",
                    spec.example("index", "choria-replies-{agent}")
                )),
            );
        }
        if self.data_stream && !template.is_fixed() {
            return Some(
                spec.error("index", "a data stream name must be fixed text: the data stream does the time-based rollover")
                    .with_hint(format!("write e.g. {}", spec.example("index", "logs-choria-replies"))),
            );
        }
        None
    }
}

/// Why `url` is not an http(s) URL Elasticsearch can be reached at, if it is not.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{url}` is not a URL (no scheme)"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "`{url}` is not an Elasticsearch URL (scheme `{scheme}`)"
        ));
    }
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    elasticsearch::http::Url::parse(url)
        .map(|_| ())
        .map_err(|e| format!("`{url}` is not a valid URL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coro_core::protocol::Version;
    use coro_core::Kind;

    fn record(agent: &str, collective: Option<&str>) -> Record {
        Record {
            subject: "x".into(),
            version: Version::V1,
            kind: Kind::Reply,
            sender: "node1".into(),
            request_id: "r".into(),
            agent: agent.into(),
            collective: collective.map(str::to_string),
            time_ns: 1_700_000_001_000_000_000,
            body: bytes::Bytes::new(),
            raw: bytes::Bytes::new(),
        }
    }

    fn time() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_700_000_001).unwrap()
    }

    #[test]
    fn names_from_templates() {
        let r = record("RPC Util", Some("Mcollective"));
        let t = time();
        let name = |s: &str| IndexTemplate::parse(s).name_for(&r, Some(&t));
        assert_eq!(name("choria-nodes"), "choria-nodes");
        assert_eq!(name("choria-%Y.%m.%d"), "choria-2023.11.14");
        assert_eq!(name("choria-{date}"), "choria-2023.11.14");
        assert_eq!(
            name("c-{agent}-{collective}-{kind}-%H"),
            "c-rpc_util-mcollective-reply-22"
        );
        assert_eq!(name("c-{collective}"), "c-mcollective");
        assert_eq!(
            IndexTemplate::parse("c-{collective}").name_for(&record("a", None), None),
            "c-none"
        );
        assert_eq!(name("100%x-{y"), "100%x-{y");
    }

    #[test]
    fn patterns_and_prefixes() {
        let t = IndexTemplate::parse("choria-replies-{agent}-%Y.%m.%d");
        assert_eq!(t.pattern(), "choria-replies-*-*.*.*");
        assert_eq!(t.prefix(), "choria-replies-");
        assert!(t.is_dated() && !t.is_fixed());
        let t = IndexTemplate::parse("choria-nodes");
        assert_eq!(t.pattern(), "choria-nodes");
        assert!(t.is_fixed() && !t.is_dated());
        assert_eq!(IndexTemplate::parse("a-{agent}{kind}").pattern(), "a-*");
    }

    fn errors(options: &str) -> String {
        let doc = format!(
            "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
             servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n[[adapter.sink]]\n\
             type = \"elasticsearch\"\n{options}"
        );
        let spec = coro_core::config::parse(std::path::Path::new("adapters.toml"), &doc)
            .unwrap()
            .adapters
            .remove(0)
            .sinks
            .remove(0);
        match crate::config::SinkConfig::check_spec(&spec) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn config_errors_name_the_key_and_what_to_write() {
        assert_eq!(
            errors("index = \"n\""),
            "adapters.toml:7:1: adapter \"a\": sink \"elasticsearch\": missing required key `urls`; \
             write e.g. urls = [\"http://127.0.0.1:9200\"]"
        );
        assert_eq!(
            errors("urls = [\"nats://h:4222\"]\nindex = \"n\""),
            "adapters.toml:9:1: adapter \"a\": sink \"elasticsearch\": urls: `nats://h:4222` is not an \
             Elasticsearch URL (scheme `nats`); use http:// or https:// URLs, e.g. http://127.0.0.1:9200"
        );
        assert_eq!(
            errors("urls = [\"http://h:9200\"]\nindex = \"c-{agnt}\""),
            "adapters.toml:10:1: adapter \"a\": sink \"elasticsearch\": index: unknown placeholder \
             `{agnt}`; did you mean `{agent}`?"
        );
        assert!(errors("urls = [\"http://h:9200\"]\nindex = \"Choria\"")
            .contains("index names must be lower case"));
        assert!(errors("urls = [\"http://h:9200\"]\nindex = \"{agent}\"")
            .contains("must start with fixed text"));
        assert!(
            errors("urls = [\"http://h:9200\"]\nindex = \"n\"\nmodel = \"node\"")
                .contains("model: unknown value `node`; did you mean `nodes`?")
        );
        assert!(errors(
            "urls = [\"http://h:9200\"]\nindex = \"n\"\nmodel = \"nodes\"\ndata_stream = true"
        )
        .contains("data_stream: only the `events` model"));
        assert!(
            errors("urls = [\"http://h:9200\"]\nindex = \"n\"\nstale_after = \"15m\"")
                .contains("stale_after: applies to the `nodes` model only")
        );
        assert!(
            errors("urls = [\"http://h:9200\"]\nindex = \"n\"\nusername = \"u\"")
                .contains("username: needs `password` too")
        );
        assert!(
            errors("urls = [\"http://h:9200\"]\nindex = \"n\"\nbulk_max_records = 0").contains(
                "bulk_max_records: must be at least 1; write e.g. bulk_max_records = 1000"
            )
        );
        assert!(
            errors("urls = [\"http://h:9200\"]\nindex = \"n\"\nbulk_size = 5")
                .contains("unknown key `bulk_size`")
        );
    }

    #[test]
    fn template_names() {
        let spec = |index: &str, model: Model| ElasticsearchConfig {
            urls: vec!["http://h:9200".into()],
            model,
            index: index.into(),
            username: None,
            password: None,
            api_key: None,
            ca_file: None,
            bulk_max_records: 1,
            bulk_max_bytes: 1,
            gzip: false,
            concurrency: 1,
            request_timeout: Duration::from_secs(1),
            install_template: true,
            template_name: None,
            template_priority: 200,
            number_of_shards: None,
            number_of_replicas: None,
            data_stream: false,
            body: BodyMapping::Object,
            stale_after: None,
            stale_check_interval: Duration::from_secs(60),
        };
        assert_eq!(
            spec("choria-nodes", Model::Nodes).template_name(),
            "coro-choria-nodes"
        );
        assert_eq!(
            spec("choria-replies-{agent}", Model::Events).template_name(),
            "coro-choria-replies"
        );
    }

    /// The README's walk-through config and sink reference stay valid.
    #[test]
    fn readme_examples_validate() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let section = &readme[readme
            .find("## Elasticsearch")
            .expect("an Elasticsearch section")..];
        let walk = section
            .split_once("<<'TOML'\n")
            .and_then(|(_, b)| b.split_once("TOML\n"))
            .map(|(b, _)| b)
            .expect("the walk-through's es.toml");
        let (config, sinks) = crate::config::parse(std::path::Path::new("es.toml"), walk)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.adapters.len(), 1);
        assert!(
            matches!(&sinks[0].sinks[0].1, crate::config::SinkConfig::Elasticsearch(c) if c.model == Model::Nodes)
        );
        let reference = section
            .split_once("```toml\n")
            .and_then(|(_, b)| b.split_once("```"))
            .map(|(b, _)| b)
            .expect("the sink reference");
        let doc = format!(
            "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
             servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n{reference}"
        );
        // Every key once: the reference shows both kinds of credentials and both models'
        // keys, which one sink may not combine; drop those and check the rest.
        let doc = doc
            .lines()
            .filter(|l| {
                !l.starts_with("username") && !l.starts_with("password") && !l.starts_with("stale_")
            })
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = crate::config::parse(std::path::Path::new("reference.toml"), &doc) {
            panic!("{e}");
        }
    }
}
