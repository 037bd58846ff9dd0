//! The Choria wire protocol, v1 and v2, as it really is on the wire (PROTOCOL.md §1).
//!
//! ```text
//! Transport ─ SecureRequest ─ Request ─ body
//!           └ SecureReply   ─ Reply   ─ body
//! ```
//! [`decode`] takes one NATS payload and walks every layer it finds. A payload may also
//! start at an inner layer (a secure layer or a bare request/reply), or be a lifecycle
//! event. Nothing is re-serialised on the way: the strings and base64 texts of inner
//! layers are kept exactly, so a forwarded message keeps its signatures.

mod codec;
mod error;
pub mod federation;
mod filter;
pub mod lifecycle;
pub mod output;
pub mod registration;
pub mod transport;
pub mod v1;
pub mod v2;
pub mod verify;

pub use codec::{b64_decode, b64_encode, gunzip, gzip, Limits};
pub use error::{DecodeError, Layer, Reason};
pub use filter::{FactFilter, Filter, FilterError, NodeInfo, FACT_OPERATORS};
pub use lifecycle::LifecycleEvent;
pub use transport::Transport;

use codec::parse;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The marker Go writes in `signature` and `pubcert` when security is off.
pub const INSECURE: &str = "insecure";
/// The marker for unsigned registration when no certificate exists.
pub const INSECURE_REGISTRATION: &str = "insecure registration";

/// Protocol generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Version {
    /// `choria:*:1`, x509 security.
    #[serde(rename = "1")]
    V1,
    /// `io.choria.protocol.v2.*`, ed25519 + JWT security.
    #[serde(rename = "2")]
    V2,
}

impl Version {
    /// `1` or `2`.
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// One network hop: `[in-server-url, processor-identity, out-server-url]` from Go, two
/// elements from Ruby. Any length is accepted and kept as received.
pub type Hop = Vec<String>;

/// Every `protocol` string Coro understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A transport of either version.
    Transport(Version),
    /// A secure request of either version.
    SecureRequest(Version),
    /// A secure reply of either version.
    SecureReply(Version),
    /// A request of either version.
    Request(Version),
    /// A reply of either version.
    Reply(Version),
    /// A lifecycle event in legacy form (`io.choria.lifecycle.v1.<type>` or
    /// `choria:lifecycle:<type>:1`).
    Lifecycle,
}

impl Protocol {
    /// Classifies a `protocol` string; `None` when it is none of Choria's message layers.
    pub fn from_name(name: &str) -> Option<Protocol> {
        use Version::{V1, V2};
        Some(match name {
            v1::TRANSPORT => Protocol::Transport(V1),
            v1::SECURE_REQUEST => Protocol::SecureRequest(V1),
            v1::SECURE_REPLY => Protocol::SecureReply(V1),
            v1::REQUEST => Protocol::Request(V1),
            v1::REPLY => Protocol::Reply(V1),
            v2::TRANSPORT => Protocol::Transport(V2),
            v2::SECURE_REQUEST => Protocol::SecureRequest(V2),
            v2::SECURE_REPLY => Protocol::SecureReply(V2),
            v2::REQUEST => Protocol::Request(V2),
            v2::REPLY => Protocol::Reply(V2),
            _ if lifecycle::EventType::from_protocol(name).is_some() => Protocol::Lifecycle,
            _ => return None,
        })
    }
}

/// Request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client (or registering server) to servers.
    Request,
    /// Server to client.
    Reply,
}

/// A secure layer of either kind and version, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secure {
    /// `choria:secure:request:1`
    V1Request(v1::SecureRequest),
    /// `choria:secure:reply:1`
    V1Reply(v1::SecureReply),
    /// `io.choria.protocol.v2.secure_request`
    V2Request(v2::SecureRequest),
    /// `io.choria.protocol.v2.secure_reply`
    V2Reply(v2::SecureReply),
}

/// The innermost Choria layer.
#[derive(Debug, Clone, PartialEq)]
pub enum Inner {
    /// `choria:request:1`
    V1Request(v1::Request),
    /// `choria:reply:1`
    V1Reply(v1::Reply),
    /// `io.choria.protocol.v2.request`
    V2Request(v2::Request),
    /// `io.choria.protocol.v2.reply`
    V2Reply(v2::Reply),
}

/// An RPC message with every layer that was present.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcMessage {
    /// The outer layer, when the payload was a transport.
    pub transport: Option<Transport>,
    /// The secure layer, when the payload was a transport or secure layer.
    pub secure: Option<Secure>,
    /// The request or reply.
    pub inner: Inner,
    /// The decoded v2 body; v1 bodies are the `message` string itself.
    v2_body: Vec<u8>,
}

/// One decoded NATS payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request or reply, with the layers around it.
    Rpc(Box<RpcMessage>),
    /// A lifecycle event.
    Lifecycle(LifecycleEvent),
}

impl Inner {
    /// Protocol generation.
    pub fn version(&self) -> Version {
        match self {
            Inner::V1Request(_) | Inner::V1Reply(_) => Version::V1,
            Inner::V2Request(_) | Inner::V2Reply(_) => Version::V2,
        }
    }

    /// Request or reply.
    pub fn direction(&self) -> Direction {
        match self {
            Inner::V1Request(_) | Inner::V2Request(_) => Direction::Request,
            Inner::V1Reply(_) | Inner::V2Reply(_) => Direction::Reply,
        }
    }

    /// The publishing identity: `senderid` (v1) or `sender` (v2).
    pub fn sender(&self) -> &str {
        match self {
            Inner::V1Request(r) => &r.envelope.senderid,
            Inner::V1Reply(r) => &r.envelope.senderid,
            Inner::V2Request(r) => &r.sender,
            Inner::V2Reply(r) => &r.sender,
        }
    }

    /// The request id (a reply carries the id of its request).
    pub fn request_id(&self) -> &str {
        match self {
            Inner::V1Request(r) => &r.envelope.requestid,
            Inner::V1Reply(r) => &r.envelope.requestid,
            Inner::V2Request(r) => &r.id,
            Inner::V2Reply(r) => &r.request,
        }
    }

    /// The agent.
    pub fn agent(&self) -> &str {
        match self {
            Inner::V1Request(r) => &r.envelope.agent,
            Inner::V1Reply(r) => &r.envelope.agent,
            Inner::V2Request(r) => &r.agent,
            Inner::V2Reply(r) => &r.agent,
        }
    }

    /// The sub-collective; replies do not carry one.
    pub fn collective(&self) -> Option<&str> {
        match self {
            Inner::V1Request(r) => Some(&r.envelope.collective),
            Inner::V2Request(r) => Some(&r.collective),
            Inner::V1Reply(_) | Inner::V2Reply(_) => None,
        }
    }

    /// The caller id of a request.
    pub fn caller(&self) -> Option<&str> {
        match self {
            Inner::V1Request(r) => Some(&r.envelope.callerid),
            Inner::V2Request(r) => Some(&r.caller),
            Inner::V1Reply(_) | Inner::V2Reply(_) => None,
        }
    }

    /// The request's time to live in seconds.
    pub fn ttl(&self) -> Option<i64> {
        match self {
            Inner::V1Request(r) => Some(r.envelope.ttl),
            Inner::V2Request(r) => Some(r.ttl),
            Inner::V1Reply(_) | Inner::V2Reply(_) => None,
        }
    }

    /// The request filter, when there is one.
    pub fn filter(&self) -> Option<&Filter> {
        match self {
            Inner::V1Request(r) => r.envelope.filter.as_ref(),
            Inner::V2Request(r) => r.filter.as_ref(),
            Inner::V1Reply(_) | Inner::V2Reply(_) => None,
        }
    }

    /// The Choria time in unix nanoseconds (v1 carries seconds).
    pub fn time_ns(&self) -> i128 {
        match self {
            Inner::V1Request(r) => i128::from(r.envelope.time) * 1_000_000_000,
            Inner::V1Reply(r) => i128::from(r.envelope.time) * 1_000_000_000,
            Inner::V2Request(r) => i128::from(r.time),
            Inner::V2Reply(r) => i128::from(r.time),
        }
    }
}

impl RpcMessage {
    /// Builds a message from its layers; `body` is the decoded v2 body (ignored for v1,
    /// whose body is the `message` string).
    pub fn new(
        transport: Option<Transport>,
        secure: Option<Secure>,
        inner: Inner,
        body: Vec<u8>,
    ) -> Self {
        let v2_body = match inner.version() {
            Version::V1 => Vec::new(),
            Version::V2 => body,
        };
        RpcMessage {
            transport,
            secure,
            inner,
            v2_body,
        }
    }

    /// Protocol generation.
    pub fn version(&self) -> Version {
        self.inner.version()
    }

    /// The body bytes: v1 `message` verbatim; v2 `message` base64-decoded.
    pub fn body(&self) -> &[u8] {
        match &self.inner {
            Inner::V1Request(r) => r.message.as_bytes(),
            Inner::V1Reply(r) => r.message.as_bytes(),
            Inner::V2Request(_) | Inner::V2Reply(_) => &self.v2_body,
        }
    }

    /// Takes the body out without copying it.
    pub fn into_body(self) -> Vec<u8> {
        match self.inner {
            Inner::V1Request(r) => r.message.into_bytes(),
            Inner::V1Reply(r) => r.message.into_bytes(),
            Inner::V2Request(_) | Inner::V2Reply(_) => self.v2_body,
        }
    }
}

/// Decodes one NATS payload with the default [`Limits`].
pub fn decode(payload: &[u8]) -> Result<Message, DecodeError> {
    decode_with(payload, &Limits::DEFAULT)
}

/// Decodes one NATS payload: a transport (and every layer inside it), a secure layer, a
/// bare request or reply, or a lifecycle event.
pub fn decode_with(payload: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    limits.check_payload(Layer::Payload, payload.len())?;
    let Some(protocol) = protocol_of(Layer::Payload, payload)? else {
        return lifecycle::decode_cloudevent(payload).map(Message::Lifecycle);
    };
    let kind = Protocol::from_name(&protocol).ok_or_else(|| {
        DecodeError::new(
            Layer::Payload,
            Reason::UnknownProtocol(protocol.to_string()),
        )
    })?;
    match kind {
        Protocol::Transport(version) => {
            let transport = Transport::decode(version, payload)?;
            let secure_json = transport.data_bytes()?;
            let mut msg = decode_secure(Layer::Transport, &secure_json, Some(version))?;
            msg.transport = Some(transport);
            Ok(Message::Rpc(Box::new(msg)))
        }
        Protocol::SecureRequest(_) | Protocol::SecureReply(_) => {
            decode_secure(Layer::Payload, payload, None).map(|m| Message::Rpc(Box::new(m)))
        }
        Protocol::Request(_) | Protocol::Reply(_) => {
            decode_inner(payload, kind, false).map(|m| Message::Rpc(Box::new(m)))
        }
        Protocol::Lifecycle => lifecycle::decode_legacy(payload).map(Message::Lifecycle),
    }
}

/// Decodes a secure layer and what it wraps. `outer` is the transport's version, which
/// the secure layer must share.
fn decode_secure(
    parent: Layer,
    bytes: &[u8],
    outer: Option<Version>,
) -> Result<RpcMessage, DecodeError> {
    let layer = Layer::SecureRequest;
    let protocol = protocol_of(layer, bytes)?
        .ok_or_else(|| DecodeError::new(layer, Reason::MissingField("protocol".into())))?;
    let kind = Protocol::from_name(&protocol);
    let mismatch = |expected| {
        DecodeError::new(
            parent_or(parent, layer),
            Reason::ProtocolMismatch {
                expected,
                found: protocol.to_string(),
            },
        )
    };
    let secure = match (kind, outer) {
        (Some(Protocol::SecureRequest(Version::V1)), None | Some(Version::V1)) => {
            Secure::V1Request(parse(Layer::SecureRequest, bytes)?)
        }
        (Some(Protocol::SecureReply(Version::V1)), None | Some(Version::V1)) => {
            Secure::V1Reply(parse(Layer::SecureReply, bytes)?)
        }
        (Some(Protocol::SecureRequest(Version::V2)), None | Some(Version::V2)) => {
            Secure::V2Request(parse(Layer::SecureRequest, bytes)?)
        }
        (Some(Protocol::SecureReply(Version::V2)), None | Some(Version::V2)) => {
            Secure::V2Reply(parse(Layer::SecureReply, bytes)?)
        }
        (_, Some(Version::V1)) => {
            return Err(mismatch("choria:secure:request:1 or choria:secure:reply:1"))
        }
        (_, Some(Version::V2)) => {
            return Err(mismatch(
                "io.choria.protocol.v2.secure_request or io.choria.protocol.v2.secure_reply",
            ))
        }
        (_, None) => return Err(mismatch("a secure request or secure reply")),
    };
    let expected = match &secure {
        Secure::V1Request(_) => Protocol::Request(Version::V1),
        Secure::V1Reply(_) => Protocol::Reply(Version::V1),
        Secure::V2Request(_) => Protocol::Request(Version::V2),
        Secure::V2Reply(_) => Protocol::Reply(Version::V2),
    };
    let mut msg = match &secure {
        Secure::V1Request(s) => decode_inner(s.message.as_bytes(), expected, true)?,
        Secure::V1Reply(s) => decode_inner(s.message.as_bytes(), expected, true)?,
        Secure::V2Request(s) => decode_inner(&s.request_bytes()?, expected, true)?,
        Secure::V2Reply(s) => decode_inner(&s.reply_bytes()?, expected, true)?,
    };
    msg.secure = Some(secure);
    Ok(msg)
}

/// A mismatch found while looking into a transport is reported against the secure
/// layer; at the top of a payload, against the payload.
fn parent_or(parent: Layer, layer: Layer) -> Layer {
    if parent == Layer::Payload {
        Layer::Payload
    } else {
        layer
    }
}

/// Decodes a request or reply whose protocol must be `expected`.
fn decode_inner(
    bytes: &[u8],
    expected: Protocol,
    wrapped: bool,
) -> Result<RpcMessage, DecodeError> {
    let layer = match expected {
        Protocol::Reply(_) => Layer::Reply,
        _ => Layer::Request,
    };
    let protocol = protocol_of(layer, bytes)?
        .ok_or_else(|| DecodeError::new(layer, Reason::MissingField("protocol".into())))?;
    if Protocol::from_name(&protocol) != Some(expected) {
        let name = match expected {
            Protocol::Request(Version::V1) => v1::REQUEST,
            Protocol::Reply(Version::V1) => v1::REPLY,
            Protocol::Request(Version::V2) => v2::REQUEST,
            _ => v2::REPLY,
        };
        let layer = if wrapped || Protocol::from_name(&protocol).is_some() {
            layer
        } else {
            Layer::Payload
        };
        return Err(DecodeError::new(
            layer,
            Reason::ProtocolMismatch {
                expected: name,
                found: protocol.into_owned(),
            },
        ));
    }
    let (inner, body) = match expected {
        Protocol::Request(Version::V1) => (Inner::V1Request(parse(layer, bytes)?), Vec::new()),
        Protocol::Reply(Version::V1) => (Inner::V1Reply(parse(layer, bytes)?), Vec::new()),
        Protocol::Request(Version::V2) => {
            let r: v2::Request = parse(layer, bytes)?;
            let body = r.message_bytes()?;
            (Inner::V2Request(r), body)
        }
        _ => {
            let r: v2::Reply = parse(layer, bytes)?;
            let body = r.message_bytes()?;
            (Inner::V2Reply(r), body)
        }
    };
    Ok(RpcMessage::new(None, None, inner, body))
}

/// The `protocol` of a JSON object, or `None` when the object has no such key. Go puts
/// `protocol` first, so the common case reads it straight off the front without a
/// second parse.
pub(crate) fn protocol_of(layer: Layer, bytes: &[u8]) -> Result<Option<Cow<'_, str>>, DecodeError> {
    const PREFIX: &[u8] = b"{\"protocol\":\"";
    if let Some(rest) = bytes.strip_prefix(PREFIX) {
        // Protocol names are short; give up on the fast path past 64 bytes.
        let window = &rest[..rest.len().min(64)];
        if let Some(end) = window.iter().position(|b| *b == b'"' || *b == b'\\') {
            if window[end] == b'"' {
                if let Ok(name) = std::str::from_utf8(&window[..end]) {
                    return Ok(Some(Cow::Borrowed(name)));
                }
            }
        }
    }
    Ok(codec::peek_protocol(layer, bytes)?.map(Cow::Owned))
}
