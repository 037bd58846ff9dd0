//! An example Coro sink plugin written with `coro-plugin-sdk`: appends one JSON line
//! per record to a file.
//!
//! ```toml
//! [[adapter.sink]]
//! type = "plugin"
//! path = "target/release/libcoro_plugin_jsonl.so"
//! encoding = "choria_streams"     # what `data` is; default the raw body
//! config = { path = "/var/lib/coro/replies.jsonl", fsync = true }
//! ```
//!
//! Each line is `{"subject", "sender", "requestid", "idempotency_key", "agent",
//! "kind", "time_ns", "data"}`, with `data` embedded as JSON when it is JSON and as a
//! string otherwise. Data that is not UTF-8 is rejected (to the dead letter). A batch
//! is answered delivered once it is written and, with `fsync = true` (the default),
//! on the disk.

use coro_plugin_sdk::{export_sink, Error, Outcome, RecordRef, Sink, Value};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// The plugin's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The file to append to; its directory must exist.
    path: PathBuf,
    /// Sync each batch to the disk before answering delivered. Default true.
    #[serde(default = "yes")]
    fsync: bool,
}

fn yes() -> bool {
    true
}

impl Config {
    fn parse(config: &Value) -> Result<Config, String> {
        Config::deserialize(config).map_err(|e| format!("jsonl plugin config: {e}"))
    }
}

/// The sink: an open file.
pub struct JsonLines {
    file: File,
    config: Config,
}

#[derive(Serialize)]
struct Line<'a> {
    subject: &'a str,
    sender: &'a str,
    requestid: &'a str,
    idempotency_key: &'a str,
    agent: &'a str,
    kind: &'a str,
    time_ns: i64,
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

impl JsonLines {
    /// The line for `record`, or why it cannot have one.
    fn line(record: &RecordRef<'_>) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(record.data).map_err(|e| {
            format!("jsonl plugin: data is not UTF-8 ({e}); choose another encoding")
        })?;
        let data = match serde_json::from_str::<&RawValue>(text) {
            Ok(json) => Data::Json(json),
            Err(_) => Data::Text(text),
        };
        let line = Line {
            subject: record.subject,
            sender: record.sender,
            requestid: record.request_id,
            idempotency_key: record.idempotency_key,
            agent: record.agent,
            kind: record.kind.map_or("unknown", |k| k.as_str()),
            time_ns: record.time_ns,
            data,
        };
        let mut out = serde_json::to_vec(&line).map_err(|e| format!("jsonl plugin: {e}"))?;
        out.push(b'\n');
        Ok(out)
    }
}

impl Sink for JsonLines {
    fn check(config: &Value) -> Result<(), String> {
        Config::parse(config).map(drop)
    }

    fn new(config: Value) -> Result<Self, String> {
        let config = Config::parse(&config)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| format!("{}: {e}", config.path.display()))?;
        Ok(JsonLines { file, config })
    }

    fn send(&mut self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, Error> {
        let mut buffer = Vec::new();
        let outcomes = records
            .iter()
            .map(|r| match Self::line(r) {
                Ok(line) => {
                    buffer.extend_from_slice(&line);
                    Outcome::Delivered
                }
                Err(reason) => Outcome::reject(reason),
            })
            .collect();
        // One write per batch; a failed write or sync is worth retrying (a full disk
        // may get room).
        let io = |e: std::io::Error| Error::Retry(format!("{}: {e}", self.config.path.display()));
        self.file.write_all(&buffer).map_err(io)?;
        if self.config.fsync {
            self.file.sync_data().map_err(io)?;
        }
        Ok(outcomes)
    }

    fn flush(&mut self) -> Result<(), String> {
        self.file
            .sync_all()
            .map_err(|e| format!("{}: {e}", self.config.path.display()))
    }
}

export_sink!(JsonLines);

#[cfg(test)]
mod tests {
    use super::*;
    use coro_plugin_sdk::Kind;

    fn record<'a>(data: &'a [u8], id: &'a str) -> RecordRef<'a> {
        RecordRef {
            data,
            subject: "s.x",
            sender: "node1",
            request_id: id,
            idempotency_key: "node1.1.7",
            agent: "rpcutil",
            kind: Some(Kind::Reply),
            protocol_version: 1,
            time_ns: 7,
        }
    }

    #[test]
    fn writes_lines_and_rejects_binary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let config = serde_json::json!({ "path": path, "fsync": false });
        JsonLines::check(&config).unwrap();
        let mut sink = JsonLines::new(config).unwrap();
        let outcomes = sink
            .send(&[
                record(br#"{"a":1}"#, "1"),
                record(b"plain", "2"),
                record(&[0xff, 0xfe], "3"),
            ])
            .unwrap();
        assert_eq!(outcomes[..2], [Outcome::Delivered, Outcome::Delivered]);
        assert!(matches!(&outcomes[2], Outcome::Reject { reason } if reason.contains("not UTF-8")));
        sink.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"subject\":\"s.x\",\"sender\":\"node1\",\"requestid\":\"1\",\"idempotency_key\":\"node1.1.7\",\"agent\":\"rpcutil\",\"kind\":\"reply\",\"time_ns\":7,\"data\":{\"a\":1}}\n\
             {\"subject\":\"s.x\",\"sender\":\"node1\",\"requestid\":\"2\",\"idempotency_key\":\"node1.1.7\",\"agent\":\"rpcutil\",\"kind\":\"reply\",\"time_ns\":7,\"data\":\"plain\"}\n"
        );
    }

    #[test]
    fn config_errors() {
        assert!(JsonLines::check(&serde_json::json!({}))
            .unwrap_err()
            .contains("missing field `path`"));
        assert!(
            JsonLines::check(&serde_json::json!({"path": "/x", "fsinc": true}))
                .unwrap_err()
                .contains("unknown field `fsinc`")
        );
    }
}
