//! Reading `adapters.toml`: the TOML is parsed with spans, the structural keys are
//! walked by hand (so every problem is found, not just the first), and the leaf tables
//! are deserialized with serde.

use super::adapters::{
    default_queue_group, AdapterConfig, AdaptersConfig, HttpSettings, IngestConfig,
    JetStreamIngest, NatsIngest, Origin, Origins, SinkSpec,
};
use super::error::{
    rewrite_serde_message, unknown_hint, ConfigError, ConfigErrors, LineIndex, Location,
};
use crate::pipeline::PipelineSettings;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

type Value<'i> = Spanned<DeValue<'i>>;

const ROOT_KEYS: [&str; 2] = ["http", "adapter"];
const ADAPTER_KEYS: [&str; 5] = ["name", "ingest", "pipeline", "sink", "dead_letter"];

/// Reads `text` (the contents of `file`) as an adapters configuration, with the semantic
/// checks (sink options are the sinks crate's). Returns what could be read (none when
/// the TOML itself is invalid; adapters without a name or ingest are left out) and
/// every problem found.
pub(crate) fn read(file: &Path, text: &str) -> (Option<AdaptersConfig>, ConfigErrors) {
    let lines = LineIndex::new(file, text);
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let mut errors = ConfigErrors::default();
        for e in syntax {
            let at = lines.location(e.span().map_or(0, |s| s.start));
            let message = e.message().trim_end().replace('\n', "; ");
            errors.push(ConfigError::at(&at, "", format!("invalid TOML: {message}")));
        }
        return (None, errors);
    }
    let mut reader = Reader {
        lines,
        errors: ConfigErrors::default(),
        names: Default::default(),
    };
    let mut http = None;
    let mut adapters = Vec::new();
    let mut saw_adapter = false;
    for (k, v) in doc.get_ref().iter() {
        match k.get_ref().as_ref() {
            "http" => http = reader.de::<HttpSettings>(v, "http"),
            "adapter" => {
                saw_adapter = true;
                match v.get_ref() {
                    DeValue::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if let Some(a) = reader.adapter(i, item) {
                                adapters.push(a);
                            }
                        }
                    }
                    _ => reader.error(
                        k.span(),
                        "adapter",
                        "must be a list of tables",
                        Some("write each adapter as an [[adapter]] table".into()),
                    ),
                }
            }
            other => reader.error(
                k.span(),
                "",
                format!("unknown key `{other}`"),
                Some(unknown_hint(other, ROOT_KEYS)),
            ),
        }
    }
    if !saw_adapter {
        reader.errors.push(
            ConfigError::new(file, "", "no adapters configured")
                .with_hint("add an [[adapter]] table"),
        );
    }
    let config = AdaptersConfig {
        file: file.to_path_buf(),
        http: http.unwrap_or_default(),
        adapters,
    };
    reader.errors.extend(super::checks::check(&config));
    (Some(config), reader.errors)
}

struct Reader<'a> {
    lines: LineIndex<'a>,
    errors: ConfigErrors,
    /// Adapter names seen so far, with the line of each.
    names: std::collections::BTreeMap<String, usize>,
}

/// A sink as read, before its name is settled.
struct RawSink {
    kind: String,
    name: Option<String>,
    options: toml::Table,
    location: Location,
    /// Where `type`, `name` and each option were written.
    keys: Vec<(String, Location)>,
}

impl Reader<'_> {
    fn loc(&self, span: Range<usize>) -> Location {
        self.lines.location(span.start)
    }

    fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let at = self.loc(span);
        self.errors
            .push(ConfigError::at(&at, key, message).with_hint_opt(hint));
    }

    /// `value` as `T`; on failure every error is recorded under `key` and `None`
    /// returned.
    fn de<T: DeserializeOwned>(&mut self, value: &Value<'_>, key: &str) -> Option<T> {
        de_all(value, |e, path| self.serde_error(value, key, e, path))
    }

    /// Records a serde error about `path` (within `value`) under `key`.
    fn serde_error(
        &mut self,
        value: &Value<'_>,
        key: &str,
        e: &toml::de::Error,
        mut path: Vec<String>,
    ) {
        let rewritten = rewrite_serde_message(e.message());
        let offset = e.span().map_or(value.span().start, |s| s.start);
        if rewritten.unknown_key {
            path.pop();
        }
        let key = path.iter().fold(key.to_string(), |k, p| join(&k, p));
        let hint = rewritten.hint.or_else(|| {
            let missing = rewritten.message.strip_prefix("missing required key `")?;
            example(missing.trim_end_matches('`')).map(|e| format!("write e.g. {e}"))
        });
        self.error(offset..offset, key, rewritten.message, hint);
    }

    fn adapter(&mut self, i: usize, item: &Value<'_>) -> Option<AdapterConfig> {
        let location = self.loc(item.span());
        let DeValue::Table(table) = item.get_ref() else {
            self.error(
                item.span(),
                format!("adapter[{i}]"),
                "must be a table",
                Some("write each adapter as an [[adapter]] table".into()),
            );
            return None;
        };
        let name = match table.get("name") {
            Some(v) => match v.get_ref().as_str() {
                Some(s) => {
                    let line = self.loc(v.span()).line;
                    if let Some(first) = self.names.get(s) {
                        let hint =
                            format!("adapter names must be unique; the first is at line {first}");
                        self.error(
                            v.span(),
                            format!("adapter {s:?}.name"),
                            format!("duplicate adapter name `{s}`"),
                            Some(hint),
                        );
                    } else {
                        self.names.insert(s.to_string(), line);
                    }
                    Some(s.to_string())
                }
                None => {
                    self.error(
                        v.span(),
                        format!("adapter[{i}].name"),
                        format!("must be a string, not {}", v.get_ref().type_str()),
                        Some("write e.g. name = \"registration\"".into()),
                    );
                    None
                }
            },
            None => {
                self.error(
                    item.span(),
                    format!("adapter[{i}]"),
                    "missing required key `name`",
                    Some("write e.g. name = \"registration\"".into()),
                );
                None
            }
        };
        let key = match &name {
            Some(n) => format!("adapter {n:?}"),
            None => format!("adapter[{i}]"),
        };
        // A sink that could not be read is left out, and `no sinks` not said on top.
        let mut sink_failed = false;
        let mut origins = Origins::default();
        origins.insert("", Origin::new(location.clone(), key.clone(), ""));
        let mut ingest = None;
        let mut ingest_seen = false;
        let mut pipeline = PipelineSettings::default();
        let mut raw_sinks = Vec::new();
        let mut raw_dead_letter = None;
        for (k, v) in table.iter() {
            let k_str: &str = k.get_ref();
            match k_str {
                "name" => {
                    let at = self.loc(k.span());
                    origins.insert("name", Origin::new(at, format!("{key}.name"), "name"));
                }
                "ingest" => {
                    ingest_seen = true;
                    ingest = self.ingest(&key, name.as_deref(), v, &mut origins);
                }
                "pipeline" => {
                    let at = self.loc(k.span());
                    let pkey = format!("{key}.pipeline");
                    origins.insert("pipeline", Origin::new(at, pkey.clone(), "pipeline"));
                    self.record_origins(&mut origins, "pipeline", &pkey, v);
                    // On errors the defaults stand in, so the other checks still run.
                    if let Some(p) = self.de::<PipelineSettings>(v, &pkey) {
                        pipeline = p;
                    }
                }
                "sink" => {
                    let at = self.loc(k.span());
                    origins.insert("sink", Origin::new(at, format!("{key}.sink"), "sink"));
                    match v.get_ref() {
                        DeValue::Array(items) => {
                            for (j, item) in items.iter().enumerate() {
                                let skey = format!("{key}: sink[{j}]");
                                match self.raw_sink(&skey, item) {
                                    Some(s) => raw_sinks.push(s),
                                    None => sink_failed = true,
                                }
                            }
                        }
                        DeValue::Table(_) => match self.raw_sink(&format!("{key}: sink"), v) {
                            Some(s) => raw_sinks.push(s),
                            None => sink_failed = true,
                        },
                        _ => {
                            self.error(
                                v.span(),
                                format!("{key}.sink"),
                                format!("must be a table, not {}", v.get_ref().type_str()),
                                Some("write each sink as an [[adapter.sink]] table".into()),
                            );
                            sink_failed = true;
                        }
                    }
                }
                "dead_letter" => {
                    let at = self.loc(k.span());
                    let dkey = format!("{key}.dead_letter");
                    origins.insert("dead_letter", Origin::new(at, dkey, "dead_letter"));
                    match self.raw_sink(&format!("{key}: dead_letter"), v) {
                        Some(s) => raw_dead_letter = Some(s),
                        None => sink_failed = true,
                    }
                }
                other => self.error(
                    k.span(),
                    key.clone(),
                    format!("unknown key `{other}`"),
                    Some(unknown_hint(other, ADAPTER_KEYS)),
                ),
            }
        }
        if !ingest_seen {
            self.error(
                item.span(),
                key.clone(),
                "missing required key `ingest`",
                Some(
                    "add an [adapter.ingest] table with type = \"nats\" or type = \"jetstream\""
                        .into(),
                ),
            );
        }
        if raw_sinks.is_empty() && !sink_failed {
            self.error(
                item.span(),
                format!("{key}.sink"),
                "no sinks: every adapter needs at least one",
                Some("add an [[adapter.sink]] table, e.g. with type = \"jetstream\"".into()),
            );
        }
        let sinks = settle_sink_names(&key, "sink", raw_sinks);
        let dead_letter =
            raw_dead_letter.map(|raw| settle_sink_names(&key, "dead_letter", vec![raw]).remove(0));
        match (name, ingest) {
            (Some(name), Some(ingest)) => Some(AdapterConfig {
                name,
                ingest,
                pipeline,
                sinks,
                dead_letter,
                origins,
            }),
            _ => None,
        }
    }

    fn ingest(
        &mut self,
        key: &str,
        adapter: Option<&str>,
        v: &Value<'_>,
        origins: &mut Origins,
    ) -> Option<IngestConfig> {
        let ikey = format!("{key}.ingest");
        let DeValue::Table(table) = v.get_ref() else {
            self.error(
                v.span(),
                ikey,
                format!("must be a table, not {}", v.get_ref().type_str()),
                Some("write an [adapter.ingest] table".into()),
            );
            return None;
        };
        origins.insert(
            "ingest",
            Origin::new(self.loc(v.span()), ikey.clone(), "ingest"),
        );
        self.record_origins(origins, "ingest", &ikey, v);
        let kind = match table.get("type") {
            None => {
                self.error(
                    v.span(),
                    ikey,
                    "missing required key `type`",
                    Some(
                        "write type = \"nats\" (core NATS, at-most-once) or type = \
                         \"jetstream\" (durable consumer, at-least-once)"
                            .into(),
                    ),
                );
                return None;
            }
            Some(t) => match t.get_ref().as_str() {
                Some(s) if IngestConfig::TYPES.contains(&s) => s.to_string(),
                Some(s) => {
                    self.error(
                        t.span(),
                        format!("{ikey}.type"),
                        format!("unknown ingest type `{s}`"),
                        Some(unknown_hint(s, IngestConfig::TYPES)),
                    );
                    return None;
                }
                None => {
                    self.error(
                        t.span(),
                        format!("{ikey}.type"),
                        format!("must be a string, not {}", t.get_ref().type_str()),
                        Some("write type = \"nats\" or type = \"jetstream\"".into()),
                    );
                    return None;
                }
            },
        };
        let mut rest = table.clone();
        rest.remove("type");
        let rest = Spanned::new(v.span(), DeValue::Table(rest));
        if kind == "nats" {
            let mut nats = self.de::<NatsIngest>(&rest, &ikey)?;
            if nats.queue_group.is_empty() {
                nats.queue_group = default_queue_group(adapter.unwrap_or_default());
            }
            Some(IngestConfig::Nats(nats))
        } else {
            self.de::<JetStreamIngest>(&rest, &ikey)
                .map(IngestConfig::JetStream)
        }
    }

    fn raw_sink(&mut self, key: &str, v: &Value<'_>) -> Option<RawSink> {
        let DeValue::Table(table) = v.get_ref() else {
            self.error(
                v.span(),
                key,
                format!("must be a table, not {}", v.get_ref().type_str()),
                None,
            );
            return None;
        };
        let location = self.loc(v.span());
        let mut ok = true;
        let mut kind = None;
        let mut name = None;
        let mut options = toml::Table::new();
        let mut keys = Vec::new();
        for (k, value) in table.iter() {
            let k_str: &str = k.get_ref();
            keys.push((k_str.to_string(), self.loc(k.span())));
            match k_str {
                "type" | "name" => match value.get_ref().as_str() {
                    Some(s) if k_str == "type" => kind = Some(s.to_string()),
                    Some(s) => name = Some(s.to_string()),
                    None => {
                        self.error(
                            value.span(),
                            format!("{key}: {k_str}"),
                            format!("must be a string, not {}", value.get_ref().type_str()),
                            None,
                        );
                        ok = false;
                    }
                },
                _ => match toml::Value::deserialize(value.clone().into_deserializer()) {
                    Ok(tv) => {
                        options.insert(k_str.to_string(), tv);
                    }
                    Err(e) => {
                        self.serde_error(value, &format!("{key}: {k_str}"), &e, Vec::new());
                        ok = false;
                    }
                },
            }
        }
        if kind.is_none() && !table.contains_key("type") {
            self.error(
                v.span(),
                key,
                "missing required key `type`",
                Some("write e.g. type = \"jetstream\"".into()),
            );
            ok = false;
        }
        Some(RawSink {
            kind: kind.filter(|_| ok)?,
            name,
            options,
            location,
            keys,
        })
    }

    /// Records where every key under `value` was written: `rel.k` keyed `key.k`.
    fn record_origins(&self, origins: &mut Origins, rel: &str, key: &str, value: &Value<'_>) {
        if let DeValue::Table(t) = value.get_ref() {
            for (k, v) in t.iter() {
                let k_str: &str = k.get_ref();
                let (r, kk) = (format!("{rel}.{k_str}"), format!("{key}.{k_str}"));
                origins.insert(
                    r.clone(),
                    Origin::new(self.loc(k.span()), kk.clone(), k_str),
                );
                self.record_origins(origins, &r, &kk, v);
            }
        }
    }
}

/// Gives every sink its name: the explicit ones as written, the others their type, made
/// unique with `_2`, `_3`.
fn settle_sink_names(adapter_key: &str, role: &str, raw: Vec<RawSink>) -> Vec<SinkSpec> {
    let mut taken: Vec<String> = raw.iter().filter_map(|r| r.name.clone()).collect();
    raw.into_iter()
        .map(|r| {
            let name = match r.name {
                Some(n) => n,
                None => {
                    let mut candidate = r.kind.clone();
                    let mut n = 2;
                    while taken.contains(&candidate) {
                        candidate = format!("{}_{n}", r.kind);
                        n += 1;
                    }
                    taken.push(candidate.clone());
                    candidate
                }
            };
            let key = format!("{adapter_key}: {role} {name:?}");
            let mut origins = Origins::default();
            origins.insert("", Origin::new(r.location.clone(), key.clone(), ""));
            for (k, at) in r.keys {
                origins.insert(k.clone(), Origin::new(at, format!("{key}: {k}"), k));
            }
            SinkSpec {
                kind: r.kind,
                name,
                options: r.options,
                location: r.location,
                key,
                origins,
            }
        })
        .collect()
}

/// Examples for required keys, for hints.
fn example(key: &str) -> Option<&'static str> {
    Some(match key {
        "servers" => "servers = [\"nats://127.0.0.1:4222\"]",
        "subject" => "subject = \"*.broadcast.agent.registration\"",
        "stream" => "stream = \"CHORIA_REGISTRATION\"",
        "consumer" => "consumer = \"coro_registration\"",
        _ => return None,
    })
}

fn join(key: &str, segment: &str) -> String {
    if key.is_empty() {
        segment.to_string()
    } else if segment.starts_with('[') {
        format!("{key}{segment}")
    } else {
        format!("{key}.{segment}")
    }
}

/// `value` as `T`, reporting every error rather than only the first: after each error
/// the key it is about is taken out and the rest tried again (a key taken out is then
/// not reported missing). `report` gets each error and the path of keys it is about
/// within `value`. `None` when there was any error.
pub(crate) fn de_all<T: DeserializeOwned>(
    value: &Value<'_>,
    mut report: impl FnMut(&toml::de::Error, Vec<String>),
) -> Option<T> {
    let mut current = value.clone();
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut failed = false;
    loop {
        let e = match T::deserialize(current.clone().into_deserializer()) {
            Ok(v) => return (!failed).then_some(v),
            Err(e) => e,
        };
        failed = true;
        let offset = e.span().map_or(current.span().start, |s| s.start);
        let path = match current.get_ref() {
            // An error about the value as a whole (a missing key) has its span.
            _ if e.span().is_none_or(|s| s == current.span()) => Vec::new(),
            DeValue::Table(t) => key_path(t, offset),
            _ => Vec::new(),
        };
        if let Some(field) = e.message().strip_prefix("missing field `") {
            let mut full = path.clone();
            full.push(field.trim_end_matches('`').to_string());
            if !removed.contains(&full) {
                report(&e, path);
            }
            return None;
        }
        if e.message().starts_with("unknown field `") {
            // `subjet` (did you mean `subject`?) is all there is to say: `subject` is not
            // then reported missing as well.
            if let Some(hint) = rewrite_serde_message(e.message()).hint {
                if let Some(best) = hint.strip_prefix("did you mean `") {
                    let mut full = path[..path.len().saturating_sub(1)].to_vec();
                    full.push(best.trim_end_matches("`?").to_string());
                    removed.push(full);
                }
            }
        }
        report(&e, path.clone());
        let DeValue::Table(table) = current.get_mut() else {
            return None;
        };
        match remove_path(table, &path) {
            Some(gone) => removed.push(gone),
            None => return None,
        }
    }
}

/// Takes the key at `path` out of `table` (the whole array when the path goes into
/// one); returns the path of what was taken out.
fn remove_path(table: &mut DeTable<'_>, path: &[String]) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let nested = match table.get_mut(first.as_str()) {
        Some(v) if !rest.is_empty() && !rest[0].starts_with('[') => match v.get_mut() {
            DeValue::Table(t) => Some(t),
            _ => None,
        },
        Some(_) => None,
        None => return None,
    };
    match nested {
        Some(t) => {
            let mut gone = remove_path(t, rest)?;
            gone.insert(0, first.clone());
            Some(gone)
        }
        None => {
            table.remove(first.as_str());
            Some(vec![first.clone()])
        }
    }
}

/// The path of keys (`["batch", "max_records"]`, `["subjects", "[1]"]`) to what byte
/// `offset` of the source is in, within `table`.
pub(crate) fn key_path(table: &DeTable<'_>, offset: usize) -> Vec<String> {
    for (k, v) in table.iter() {
        let name: &str = k.get_ref();
        if k.span().contains(&offset) {
            return vec![name.to_string()];
        }
        if let Some(mut sub) = value_path(v, offset) {
            sub.insert(0, name.to_string());
            return sub;
        }
    }
    Vec::new()
}

/// The path within `v` to `offset`, if `v` holds it.
fn value_path(v: &Value<'_>, offset: usize) -> Option<Vec<String>> {
    match v.get_ref() {
        DeValue::Table(t) => {
            let sub = key_path(t, offset);
            if !sub.is_empty() {
                return Some(sub);
            }
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(mut sub) = value_path(item, offset) {
                    sub.insert(0, format!("[{i}]"));
                    return Some(sub);
                }
            }
        }
        _ => {}
    }
    v.span().contains(&offset).then(Vec::new)
}
