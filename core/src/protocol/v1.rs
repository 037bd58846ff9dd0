//! Choria protocol v1 (`choria:*:1`): x509 security, unix-second times, 32-hex ids.
//!
//! Fields are declared in the order Go marshals them, so `gojson::to_vec` of a decoded
//! layer gives Go's bytes back. Inner layers (`data`, `message`) are kept exactly as
//! received and never re-serialised, so signatures survive forwarding.

use super::codec::{self, is_empty, null_as_default};
use super::error::{DecodeError, Layer};
use super::filter::Filter;
use super::Hop;
use serde::{Deserialize, Serialize};

/// `choria:transport:1`
pub const TRANSPORT: &str = "choria:transport:1";
/// `choria:secure:request:1`
pub const SECURE_REQUEST: &str = "choria:secure:request:1";
/// `choria:secure:reply:1`
pub const SECURE_REPLY: &str = "choria:secure:reply:1";
/// `choria:request:1`
pub const REQUEST: &str = "choria:request:1";
/// `choria:reply:1`
pub const REPLY: &str = "choria:reply:1";

/// The outer layer on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transport {
    /// Always [`TRANSPORT`].
    pub protocol: String,
    /// Standard base64 of the secure layer's JSON, exactly as received (it may contain
    /// Ruby's line breaks; they are kept).
    pub data: String,
    /// Routing headers; Go always writes the object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: Headers,
}

/// v1 transport headers. All routing metadata lives here, not in NATS headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Headers {
    /// Where replies go; requests only.
    #[serde(
        rename = "reply-to",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub reply_to: String,
    /// Identity of the publisher: client on requests, server on replies.
    #[serde(
        rename = "mc_sender",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub sender: String,
    /// Network hops, one per publish.
    #[serde(
        rename = "seen-by",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub seen_by: Vec<Hop>,
    /// Present only on federated messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<Federation>,
}

/// v1 federation header. The target key is `target`, singular, on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Federation {
    /// The request id.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub req: String,
    /// The client's original reply subject, stored by the federation broker.
    #[serde(
        rename = "reply-to",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_empty"
    )]
    pub reply_to: String,
    /// NATS subjects to publish the request to.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub target: Vec<String>,
}

/// `choria:secure:request:1`: a signed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureRequest {
    /// Always [`SECURE_REQUEST`].
    pub protocol: String,
    /// The request JSON text itself (not base64, whatever the schema says).
    pub message: String,
    /// base64 RSA PKCS#1 v1.5 SHA-256 signature of `message`, or `insecure`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub signature: String,
    /// PEM certificate of the caller, or `insecure` / `insecure registration`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pubcert: String,
}

/// `choria:secure:reply:1`: a reply with an integrity hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureReply {
    /// Always [`SECURE_REPLY`].
    pub protocol: String,
    /// The reply JSON text.
    pub message: String,
    /// base64 of SHA-256 of `message`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hash: String,
}

/// `choria:request:1`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Always [`REQUEST`].
    pub protocol: String,
    /// The opaque body: raw RPC JSON, or base64 from discovery and old senders.
    pub message: String,
    /// Who, what and when.
    pub envelope: RequestEnvelope,
}

/// The v1 request envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// 32 hex characters.
    pub requestid: String,
    /// Client identity.
    pub senderid: String,
    /// Caller, e.g. `choria=rip.mcollective`.
    pub callerid: String,
    /// Sub-collective.
    pub collective: String,
    /// Target agent.
    pub agent: String,
    /// Seconds the request stays valid.
    pub ttl: i64,
    /// Unix seconds.
    pub time: i64,
    /// Node filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// `choria:reply:1`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Always [`REPLY`].
    pub protocol: String,
    /// The opaque body, usually the RPC reply JSON; `pong` for discovery.
    pub message: String,
    /// Who and when.
    pub envelope: ReplyEnvelope,
}

/// The v1 reply envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyEnvelope {
    /// The request this answers.
    pub requestid: String,
    /// Server identity.
    pub senderid: String,
    /// The agent that answered.
    pub agent: String,
    /// Unix seconds.
    pub time: i64,
}

impl Transport {
    /// A transport wrapping the secure layer's JSON bytes.
    pub fn new(secure_json: &[u8], headers: Headers) -> Self {
        Transport {
            protocol: TRANSPORT.to_string(),
            data: codec::b64_encode(secure_json),
            headers,
        }
    }

    /// The secure layer's JSON bytes.
    pub fn data_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        codec::b64_decode(Layer::Transport, "data", &self.data)
    }
}

impl SecureRequest {
    /// An unsigned request marked `insecure`, as Go's insecure builds send.
    pub fn insecure(request_json: &str) -> Self {
        SecureRequest {
            protocol: SECURE_REQUEST.to_string(),
            message: request_json.to_string(),
            signature: super::INSECURE.to_string(),
            pubcert: super::INSECURE.to_string(),
        }
    }
}

impl SecureRequest {
    /// Signs `request_json` with the caller's RSA key (PKCS#1 v1.5, SHA-256) and
    /// carries the caller's PEM certificate, as Go's x509 security providers do.
    pub fn sign(request_json: &str, pubcert_pem: &str, key: &rsa::RsaPrivateKey) -> Self {
        use rsa::signature::{SignatureEncoding, Signer};
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
        let signature = signer.sign(request_json.as_bytes()).to_vec();
        SecureRequest {
            protocol: SECURE_REQUEST.to_string(),
            message: request_json.to_string(),
            signature: codec::b64_encode(&signature),
            pubcert: pubcert_pem.to_string(),
        }
    }
}

impl Request {
    /// A request with an empty filter, as Go's `NewRequest` builds it; `time` is unix
    /// seconds.
    pub fn new(
        agent: &str,
        sender: &str,
        caller: &str,
        ttl: i64,
        request_id: &str,
        collective: &str,
        time: i64,
    ) -> Self {
        Request {
            protocol: REQUEST.to_string(),
            message: String::new(),
            envelope: RequestEnvelope {
                requestid: request_id.to_string(),
                senderid: sender.to_string(),
                callerid: caller.to_string(),
                collective: collective.to_string(),
                agent: agent.to_string(),
                ttl,
                time,
                filter: Some(Filter::default()),
            },
        }
    }
}

impl SecureReply {
    /// Wraps reply JSON with its base64 SHA-256 hash, as Go's `NewSecureReply` does.
    pub fn new(reply_json: &str) -> Self {
        use sha2::{Digest, Sha256};
        SecureReply {
            protocol: SECURE_REPLY.to_string(),
            message: reply_json.to_string(),
            hash: codec::b64_encode(&Sha256::digest(reply_json.as_bytes())),
        }
    }
}

impl Reply {
    /// A reply to `request` from `sender` at unix second `time`: it copies the request
    /// id and agent, like Go's `NewReply`.
    pub fn for_request(request: &Request, sender: &str, time: i64, message: &str) -> Self {
        Reply {
            protocol: REPLY.to_string(),
            message: message.to_string(),
            envelope: ReplyEnvelope {
                requestid: request.envelope.requestid.clone(),
                senderid: sender.to_string(),
                agent: request.envelope.agent.clone(),
                time,
            },
        }
    }
}
