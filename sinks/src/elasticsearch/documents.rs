//! The two document models: what one record becomes in Elasticsearch.
//!
//! **`events`**: one document per record, `_id` = the record's idempotency key, written
//! with `create` so a redelivered record is a 409 rather than a second document:
//!
//! ```json
//! {"@timestamp":"2023-11-14T22:13:21.1234Z","kind":"reply","sender":"node1.example.net",
//!  "request_id":"5b1d…","agent":"rpcutil","collective":"mcollective",
//!  "subject":"mcollective.reply.…","protocol_version":1,
//!  "body":{"statuscode":0,"statusmsg":"OK","data":{"pong":1700000001}}}
//! ```
//!
//! A body that is a JSON object goes in `body`; any other text in `body_text`; bytes
//! that are not UTF-8 in `body_base64`.
//!
//! **`nodes`**: one document per node, `_id` = the sender identity, built from its
//! registration (`inventory_content` or `file_content`, plain or gzip) and written with
//! `index` and external version = the Choria time in nanoseconds, so a registration
//! older than the stored one is refused (409) instead of overwriting it:
//!
//! ```json
//! {"identity":"node1.example.net","last_seen":"2023-11-14T22:13:20Z","stale":false,
//!  "registration":{"protocol":"choria:registration:inventorycontent:1",
//!                  "subject":"mcollective.broadcast.agent.registration",
//!                  "request_id":"…","collective":"mcollective","compressed":true},
//!  "collectives":["mcollective"],"classes":["role::web"],
//!  "agents":[{"name":"rpcutil","version":"0.29.4",…}],
//!  "facts":{"os":{"family":"Debian","release":{"major":"12"}},…},
//!  "status":{"identity":"node1.example.net","uptime":3600,…},
//!  "build_info":{"version":"0.29.4","sha":"…"},"machines":[]}
//! ```
//!
//! `file_content` registration gives `file: {path, mtime, updated}` and, when the file
//! is a JSON object, `facts` from it; other file content is kept in `file.content`
//! (stored, not indexed). An inventory part of the wrong JSON type (say `facts` that is
//! not an object) is left out and named in `registration.invalid_fields`, so the node
//! still shows up as seen.

use super::config::{BodyMapping, Model};
use coro_core::protocol::registration::Registration;
use coro_core::protocol::Limits;
use coro_core::{Kind, Record};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Why a record has no document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The `nodes` model needs registration.
    #[error("the nodes model indexes registration only, not a {0} record; filter with [adapter.pipeline.filter] kinds = [\"registration\"]")]
    NotRegistration(&'static str),
    /// The registration could not be read.
    #[error("registration: {0}")]
    Registration(String),
    /// The node has no identity to be its `_id`.
    #[error("registration without a sender identity")]
    NoIdentity,
    /// The Choria time cannot be a version or a date.
    #[error("Choria time {0} ns is out of range")]
    Time(i128),
}

/// The Choria time as RFC3339 (UTC, nanoseconds when there are any).
pub fn timestamp(time_ns: i128) -> Result<String, DocumentError> {
    coro_core::protocol::output::rfc3339_nano(time_ns).map_err(|_| DocumentError::Time(time_ns))
}

/// The `events` document for `record`, whose time is `timestamp`.
pub fn event(record: &Record, timestamp: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Event<'a> {
        #[serde(rename = "@timestamp")]
        timestamp: &'a str,
        kind: &'static str,
        sender: &'a str,
        request_id: &'a str,
        agent: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        collective: Option<&'a str>,
        subject: &'a str,
        protocol_version: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        body_text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        body_base64: Option<String>,
    }
    let text = std::str::from_utf8(&record.body).ok();
    let object = text.and_then(|t| {
        let raw: &RawValue = serde_json::from_str(t).ok()?;
        raw.get().starts_with('{').then_some(raw)
    });
    let doc = Event {
        timestamp,
        kind: record.kind.as_str(),
        sender: &record.sender,
        request_id: &record.request_id,
        agent: &record.agent,
        collective: record.collective.as_deref(),
        subject: &record.subject,
        protocol_version: record.version.number(),
        body: object,
        body_text: if object.is_none() { text } else { None },
        body_base64: text
            .is_none()
            .then(|| coro_core::protocol::b64_encode(&record.body)),
    };
    json_vec(&doc)
}

/// `InventoryData` (PROTOCOL.md §5.5), each part kept as the node sent it.
#[derive(Deserialize, Default)]
struct Inventory<'a> {
    #[serde(borrow, default)]
    agents: Option<&'a RawValue>,
    #[serde(borrow, default)]
    classes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    facts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    collectives: Option<&'a RawValue>,
    #[serde(borrow, default)]
    build_info: Option<&'a RawValue>,
    #[serde(borrow, default)]
    machines: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct RegistrationMeta<'a> {
    protocol: &'a str,
    subject: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    collective: Option<&'a str>,
    compressed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    invalid_fields: Vec<&'static str>,
}

#[derive(Serialize)]
struct FileMeta<'a> {
    path: &'a str,
    mtime: i64,
    updated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

#[derive(Serialize)]
struct Node<'a> {
    identity: &'a str,
    last_seen: &'a str,
    stale: bool,
    registration: RegistrationMeta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collectives: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agents: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    facts: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build_info: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    machines: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<FileMeta<'a>>,
}

/// The `nodes` document for a registration `record`, seen at `timestamp`.
pub fn node(record: &Record, timestamp: &str, limits: &Limits) -> Result<Vec<u8>, DocumentError> {
    if record.kind != Kind::Registration {
        return Err(DocumentError::NotRegistration(record.kind.as_str()));
    }
    if record.sender.is_empty() {
        return Err(DocumentError::NoIdentity);
    }
    let registration = Registration::decode(&record.body)
        .map_err(|e| DocumentError::Registration(e.to_string()))?;
    let content = registration
        .content(limits)
        .map_err(|e| DocumentError::Registration(e.to_string()))?;
    let mut invalid = Vec::new();
    let (protocol, inventory, file) = match &registration {
        Registration::InventoryContent(i) => {
            let inventory = serde_json::from_slice::<Inventory<'_>>(&content).map_err(|e| {
                DocumentError::Registration(format!("inventory is not a JSON object: {e}"))
            })?;
            (i.protocol.as_str(), inventory, None)
        }
        Registration::FileContent(f) => {
            // A JSON object file (a facts file) is searchable as facts; anything else is
            // kept as text.
            let facts = std::str::from_utf8(&content)
                .ok()
                .and_then(|t| serde_json::from_str::<&RawValue>(t).ok())
                .filter(|raw| raw.get().starts_with('{'));
            let text = match facts {
                Some(_) => None,
                None => Some(String::from_utf8_lossy(&content).into_owned()),
            };
            let file = FileMeta {
                path: &f.file,
                mtime: f.mtime,
                updated: f.updated,
                content: text,
            };
            let inventory = Inventory {
                facts,
                ..Inventory::default()
            };
            (f.protocol.as_str(), inventory, Some(file))
        }
    };
    let collectives = shape(&mut invalid, "collectives", inventory.collectives, '[');
    let classes = shape(&mut invalid, "classes", inventory.classes, '[');
    let agents = shape(&mut invalid, "agents", inventory.agents, '[');
    let facts = shape(&mut invalid, "facts", inventory.facts, '{');
    let status = shape(&mut invalid, "status", inventory.status, '{');
    let build_info = shape(&mut invalid, "build_info", inventory.build_info, '{');
    let machines = shape(&mut invalid, "machines", inventory.machines, '[');
    let doc = Node {
        identity: &record.sender,
        last_seen: timestamp,
        stale: false,
        registration: RegistrationMeta {
            protocol,
            subject: &record.subject,
            request_id: &record.request_id,
            collective: record.collective.as_deref(),
            compressed: registration.is_compressed(),
            invalid_fields: invalid,
        },
        collectives,
        classes,
        agents,
        facts,
        status,
        build_info,
        machines,
        file,
    };
    Ok(json_vec(&doc))
}

/// Plain JSON (Elasticsearch needs no Go-compatible escaping, and it costs).
fn json_vec<T: Serialize>(doc: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    // Serializing these structs of strings and raw JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, doc);
    out
}

/// `raw` when it is JSON of the expected shape (`open` is `{` or `[`); `null` is
/// absent; anything else is left out and named in `invalid`.
fn shape<'a>(
    invalid: &mut Vec<&'static str>,
    name: &'static str,
    raw: Option<&'a RawValue>,
    open: char,
) -> Option<&'a RawValue> {
    let raw = raw?;
    let text = raw.get();
    if text == "null" {
        return None;
    }
    if text.starts_with(open) {
        Some(raw)
    } else {
        invalid.push(name);
        None
    }
}

/// The document for `record` in `model`.
pub fn document(
    model: Model,
    record: &Record,
    timestamp: &str,
    limits: &Limits,
) -> Result<Vec<u8>, DocumentError> {
    match model {
        Model::Events => Ok(event(record, timestamp)),
        Model::Nodes => node(record, timestamp, limits),
    }
}

/// The mappings of `model`: explicit types for every field Coro writes, facts (and,
/// with [`BodyMapping::Flattened`], event bodies) as one `flattened` field so that no
/// fact adds a mapping field, and `dynamic: false` on node documents so that parts of a
/// registration Coro does not know are stored but never mapped.
pub fn mappings(model: Model, body: BodyMapping) -> serde_json::Value {
    use serde_json::json;
    let keyword = json!({"type": "keyword"});
    match model {
        Model::Events => {
            let body = match body {
                BodyMapping::Object => json!({"type": "object", "dynamic": true}),
                BodyMapping::Flattened => {
                    json!({"type": "flattened", "ignore_above": 4096, "depth_limit": 50})
                }
            };
            json!({
                "properties": {
                    "@timestamp": {"type": "date"},
                    "kind": keyword,
                    "sender": keyword,
                    "request_id": keyword,
                    "agent": keyword,
                    "collective": keyword,
                    "subject": keyword,
                    "protocol_version": {"type": "byte"},
                    "body": body,
                    "body_text": {"type": "text"},
                    "body_base64": {"type": "binary"}
                }
            })
        }
        Model::Nodes => json!({
            "dynamic": false,
            "properties": {
                "identity": keyword,
                "last_seen": {"type": "date"},
                "stale": {"type": "boolean"},
                "registration": {"properties": {
                    "protocol": keyword,
                    "subject": keyword,
                    "request_id": keyword,
                    "collective": keyword,
                    "compressed": {"type": "boolean"},
                    "invalid_fields": keyword
                }},
                "collectives": keyword,
                "classes": keyword,
                "agents": {"type": "nested", "dynamic": false, "properties": {
                    "name": keyword,
                    "version": {"type": "version"},
                    "provider": keyword
                }},
                "facts": {"type": "flattened", "ignore_above": 4096, "depth_limit": 50},
                "status": {"dynamic": false, "properties": {
                    "identity": keyword,
                    "uptime": {"type": "long"},
                    "connected_server": keyword,
                    "last_message": {"type": "date", "format": "epoch_second"},
                    "provisioning_mode": {"type": "boolean"},
                    "certificate_expires": {"type": "date"},
                    "token_expires": {"type": "date"},
                    "stats": {"dynamic": false, "properties": {
                        "total": {"type": "long"},
                        "valid": {"type": "long"},
                        "invalid": {"type": "long"},
                        "passed": {"type": "long"},
                        "filtered": {"type": "long"},
                        "replies": {"type": "long"},
                        "ttlexpired": {"type": "long"},
                        "events": {"type": "long"}
                    }}
                }},
                "build_info": {"properties": {"version": keyword, "sha": keyword}},
                "machines": {"dynamic": false, "properties": {
                    "name": keyword, "version": keyword, "state": keyword
                }},
                "file": {"properties": {
                    "path": keyword,
                    "mtime": {"type": "date", "format": "epoch_second"},
                    "updated": {"type": "boolean"},
                    "content": {"type": "text", "index": false}
                }}
            }
        }),
    }
}
