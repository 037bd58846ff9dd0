//! Output encodings shared by every sink: what bytes a record becomes.

pub(crate) mod choria_streams;

use coro_core::protocol::output::{rfc3339_nano, ChoriaStreamsOutput, Rfc3339};
use coro_core::{gojson, Record};
use serde::Serialize;
use serde_json::value::RawValue;

/// How a sink writes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The exact document Choria's Go adapter publishes
    /// (`choria:adapters:choria_streams:output:1`).
    #[default]
    ChoriaStreams,
    /// Coro's richer JSON: every [`Record`] field, the body embedded as JSON when it is.
    Record,
    /// The body bytes as sent.
    Raw,
}

impl Encoding {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::ChoriaStreams => "choria_streams",
            Encoding::Record => "record",
            Encoding::Raw => "raw",
        }
    }
}

/// A record that cannot be written in the chosen encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// `choria_streams` has no form for lifecycle events.
    #[error("choria_streams output needs a request or reply, not a {0} record")]
    NotRpc(&'static str),
    /// The Choria time cannot be written as RFC3339 (Go refuses it too).
    #[error("{0}")]
    Time(#[from] coro_core::protocol::output::TimeOutOfRange),
}

/// Encodes `record` as `encoding`.
pub fn encode(record: &Record, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    match encoding {
        Encoding::ChoriaStreams => {
            match Rfc3339::default().format(record.time_ns) {
                Some(time) => {
                    // The body, escaped, and the other fields: room for most at once.
                    let mut out = Vec::with_capacity(record.body.len() * 5 / 4 + 192);
                    choria_streams::write(record, time, &mut out)?;
                    Ok(out)
                }
                // Out of RFC3339's range: the serde encoder says why.
                None => match ChoriaStreamsOutput::from_record(record) {
                    Some(doc) => Ok(doc?.to_json()),
                    None => Err(EncodeError::NotRpc(record.kind.as_str())),
                },
            }
        }
        Encoding::Record => record_json(record),
        Encoding::Raw => Ok(record.body.to_vec()),
    }
}

/// How the body appears in `record` JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Json(&'a RawValue),
    Text(&'a str),
    Base64(String),
}

#[derive(Serialize)]
struct RecordDoc<'a> {
    subject: &'a str,
    version: u8,
    kind: &'static str,
    sender: &'a str,
    requestid: &'a str,
    agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    collective: Option<&'a str>,
    time: String,
    idempotency_key: String,
    body_encoding: &'static str,
    body: Body<'a>,
}

fn record_json(record: &Record) -> Result<Vec<u8>, EncodeError> {
    let text = std::str::from_utf8(&record.body).ok();
    let (body_encoding, body) = match text {
        Some(t) => match serde_json::from_str::<&RawValue>(t) {
            Ok(raw) => ("json", Body::Json(raw)),
            Err(_) => ("text", Body::Text(t)),
        },
        None => (
            "base64",
            Body::Base64(coro_core::protocol::b64_encode(&record.body)),
        ),
    };
    let doc = RecordDoc {
        subject: &record.subject,
        version: record.version.number(),
        kind: record.kind.as_str(),
        sender: &record.sender,
        requestid: &record.request_id,
        agent: &record.agent,
        collective: record.collective.as_deref(),
        time: rfc3339_nano(record.time_ns)?,
        idempotency_key: record.idempotency_key(),
        body_encoding,
        body,
    };
    Ok(gojson::to_vec(&doc))
}
