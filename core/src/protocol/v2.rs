//! Choria protocol v2 (`io.choria.protocol.v2.*`): ed25519 + JWT security, unix
//! nanosecond times, ksuid ids, and base64 for every `[]byte` field (hashes and
//! signatures included, whatever the schema says).
//!
//! Fields are declared in Go's marshal order; base64 fields keep the text as received.

use super::codec::{self, is_empty, null_as_default};
use super::error::{DecodeError, Layer};
use super::filter::Filter;
use super::Hop;
use serde::{Deserialize, Serialize};

/// `io.choria.protocol.v2.transport`
pub const TRANSPORT: &str = "io.choria.protocol.v2.transport";
/// `io.choria.protocol.v2.secure_request`
pub const SECURE_REQUEST: &str = "io.choria.protocol.v2.secure_request";
/// `io.choria.protocol.v2.secure_reply`
pub const SECURE_REPLY: &str = "io.choria.protocol.v2.secure_reply";
/// `io.choria.protocol.v2.request`
pub const REQUEST: &str = "io.choria.protocol.v2.request";
/// `io.choria.protocol.v2.reply` (the upstream schema wrongly says `...v2.request`).
pub const REPLY: &str = "io.choria.protocol.v2.reply";

/// The outer layer on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transport {
    /// Always [`TRANSPORT`].
    pub protocol: String,
    /// base64 of the secure layer's JSON, as received.
    pub data: String,
    /// Routing headers; `omitempty` in Go but always set in practice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// v2 transport headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headers {
    /// Where replies go; requests only.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub reply: String,
    /// Identity of the publisher.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub sender: String,
    /// Network hops (the schema wrongly calls this `seen-by`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trace: Vec<Hop>,
    /// Present only on federated messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<Federation>,
}

/// v2 federation header; the target key is plural here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Federation {
    /// The request id.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub request: String,
    /// The client's original reply subject.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub reply: String,
    /// NATS subjects to publish the request to.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub targets: Vec<String>,
}

/// `io.choria.protocol.v2.secure_request`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureRequest {
    /// Always [`SECURE_REQUEST`].
    pub protocol: String,
    /// base64 of the request JSON.
    pub request: String,
    /// base64 ed25519 signature over the request JSON bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub signature: String,
    /// The caller's JWT.
    #[serde(default, deserialize_with = "null_as_default")]
    pub caller: String,
    /// A delegated signer's JWT (AAA), when someone other than the caller signed.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub signer: String,
}

/// `io.choria.protocol.v2.secure_reply`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureReply {
    /// Always [`SECURE_REPLY`].
    pub protocol: String,
    /// base64 of the reply JSON.
    pub reply: String,
    /// base64 SHA-256 of the reply JSON.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hash: String,
    /// base64 ed25519 signature over the reply JSON, when the server signs replies.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub signature: String,
    /// The server's JWT.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub sender: String,
}

/// `io.choria.protocol.v2.request`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Always [`REQUEST`].
    pub protocol: String,
    /// base64 of the body.
    pub message: String,
    /// A ksuid (27 characters).
    pub id: String,
    /// Client identity.
    pub sender: String,
    /// Caller id, e.g. `up=rip`.
    pub caller: String,
    /// Sub-collective.
    pub collective: String,
    /// Target agent.
    pub agent: String,
    /// Seconds the request stays valid.
    pub ttl: i64,
    /// Unix nanoseconds.
    pub time: i64,
    /// Node filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// `io.choria.protocol.v2.reply`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Always [`REPLY`].
    pub protocol: String,
    /// base64 of the body.
    pub message: String,
    /// The request this answers.
    pub request: String,
    /// Server identity.
    pub sender: String,
    /// The agent that answered.
    pub agent: String,
    /// Unix nanoseconds.
    pub time: i64,
}

impl Transport {
    /// A transport wrapping the secure layer's JSON bytes.
    pub fn new(secure_json: &[u8], headers: Headers) -> Self {
        Transport {
            protocol: TRANSPORT.to_string(),
            data: codec::b64_encode(secure_json),
            headers: Some(headers),
        }
    }

    /// The secure layer's JSON bytes.
    pub fn data_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        codec::b64_decode(Layer::Transport, "data", &self.data)
    }
}

impl SecureRequest {
    /// Signs `request_json` with the caller's ed25519 key and carries the caller's JWT.
    pub fn sign(request_json: &[u8], caller_jwt: &str, key: &ed25519_dalek::SigningKey) -> Self {
        use ed25519_dalek::Signer;
        SecureRequest {
            protocol: SECURE_REQUEST.to_string(),
            request: codec::b64_encode(request_json),
            signature: codec::b64_encode(&key.sign(request_json).to_bytes()),
            caller: caller_jwt.to_string(),
            signer: String::new(),
        }
    }

    /// The request JSON bytes.
    pub fn request_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        codec::b64_decode(Layer::SecureRequest, "request", &self.request)
    }
}

impl SecureReply {
    /// The reply JSON bytes.
    pub fn reply_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        codec::b64_decode(Layer::SecureReply, "reply", &self.reply)
    }

    /// Wraps reply JSON with its hash and no signature.
    pub fn new(reply_json: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        SecureReply {
            protocol: SECURE_REPLY.to_string(),
            reply: codec::b64_encode(reply_json),
            hash: codec::b64_encode(&Sha256::digest(reply_json)),
            signature: String::new(),
            sender: String::new(),
        }
    }
}

impl Request {
    /// A request with an empty filter, as Go's `NewRequest` builds it; `time` is unix
    /// nanoseconds.
    pub fn new(
        agent: &str,
        sender: &str,
        caller: &str,
        ttl: i64,
        id: &str,
        collective: &str,
        time: i64,
    ) -> Self {
        Request {
            protocol: REQUEST.to_string(),
            message: String::new(),
            id: id.to_string(),
            sender: sender.to_string(),
            caller: caller.to_string(),
            collective: collective.to_string(),
            agent: agent.to_string(),
            ttl,
            time,
            filter: Some(Filter::default()),
        }
    }

    /// Sets the body (stored base64, as Go's `[]byte` marshals).
    pub fn set_message(&mut self, body: &[u8]) {
        self.message = codec::b64_encode(body);
    }

    /// The body bytes.
    pub fn message_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        codec::b64_decode(Layer::Request, "message", &self.message)
    }
}

impl Reply {
    /// The body bytes.
    pub fn message_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        codec::b64_decode(Layer::Reply, "message", &self.message)
    }

    /// A reply to `request` from `sender` at unix nanosecond `time`, copying the
    /// request id and agent.
    pub fn for_request(request: &Request, sender: &str, time: i64, body: &[u8]) -> Self {
        Reply {
            protocol: REPLY.to_string(),
            message: codec::b64_encode(body),
            request: request.id.clone(),
            sender: sender.to_string(),
            agent: request.agent.clone(),
            time,
        }
    }
}
