//! Decode errors: which layer failed and why, in words a user can act on.

use std::fmt;

/// The layer of a Choria message, outermost first. Errors name the layer so that
/// `error: transport: data is not valid base64 at offset 12` says where to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The raw NATS payload before any layer was recognised.
    Payload,
    /// `choria:transport:1` / `io.choria.protocol.v2.transport`.
    Transport,
    /// `choria:secure:request:1` / `io.choria.protocol.v2.secure_request`.
    SecureRequest,
    /// `choria:secure:reply:1` / `io.choria.protocol.v2.secure_reply`.
    SecureReply,
    /// `choria:request:1` / `io.choria.protocol.v2.request`.
    Request,
    /// `choria:reply:1` / `io.choria.protocol.v2.reply`.
    Reply,
    /// A registration payload carried in a request body.
    Registration,
    /// A lifecycle event, legacy or CloudEvents form.
    Lifecycle,
}

impl Layer {
    /// The name used in error messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Payload => "payload",
            Layer::Transport => "transport",
            Layer::SecureRequest => "secure_request",
            Layer::SecureReply => "secure_reply",
            Layer::Request => "request",
            Layer::Reply => "reply",
            Layer::Registration => "registration",
            Layer::Lifecycle => "lifecycle",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a layer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The bytes are not JSON (or not UTF-8 JSON).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// JSON nested deeper than the parser allows (128 levels).
    #[error("JSON nesting is deeper than 128 levels")]
    TooDeep,
    /// A base64 field does not decode.
    #[error("{field} is not valid base64 at offset {offset}")]
    Base64 {
        /// The JSON key holding the base64 text.
        field: &'static str,
        /// Byte offset of the first bad character in the field's text.
        offset: usize,
    },
    /// The `protocol` string is not one Coro knows.
    #[error("unknown protocol {0:?}")]
    UnknownProtocol(String),
    /// The `protocol` string is known but not valid at this layer.
    #[error("expected protocol {expected}, found {found:?}")]
    ProtocolMismatch {
        /// What this layer must carry.
        expected: &'static str,
        /// What the message carried.
        found: String,
    },
    /// A key the layer cannot do without is absent.
    #[error("missing required field `{0}`")]
    MissingField(String),
    /// A key holds a value of the wrong JSON type.
    #[error("wrong type: {0}")]
    WrongType(String),
    /// The input is larger than the configured limit.
    #[error("{size} bytes is over the {limit} byte limit")]
    TooLarge {
        /// Input size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Decompressed output would exceed the configured limit (a zip bomb, or a limit set
    /// too low for real payloads).
    #[error("gzip output is over the {limit} byte limit")]
    GzipTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The gzip stream is corrupt.
    #[error("invalid gzip: {0}")]
    Gzip(String),
    /// A body is not UTF-8 where the protocol needs text.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
}

/// A decode failure: the layer and the reason. Displays as `<layer>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{layer}: {reason}")]
pub struct DecodeError {
    /// Where decoding stopped.
    pub layer: Layer,
    /// Why.
    pub reason: Reason,
}

impl DecodeError {
    /// Builds an error for `layer`.
    pub fn new(layer: Layer, reason: Reason) -> Self {
        DecodeError { layer, reason }
    }

    /// A short stable name for the reason, for metric labels (`invalid_json`, `base64`, …).
    pub fn kind(&self) -> &'static str {
        match self.reason {
            Reason::InvalidJson(_) => "invalid_json",
            Reason::TooDeep => "too_deep",
            Reason::Base64 { .. } => "base64",
            Reason::UnknownProtocol(_) => "unknown_protocol",
            Reason::ProtocolMismatch { .. } => "protocol_mismatch",
            Reason::MissingField(_) => "missing_field",
            Reason::WrongType(_) => "wrong_type",
            Reason::TooLarge { .. } => "too_large",
            Reason::GzipTooLarge { .. } => "gzip_too_large",
            Reason::Gzip(_) => "gzip",
            Reason::NotUtf8(_) => "not_utf8",
        }
    }

    /// Maps a serde_json error on `layer` to a typed reason.
    pub(crate) fn json(layer: Layer, err: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let text = err.to_string();
        let reason = match err.classify() {
            Category::Data => match missing_field_name(&text) {
                Some(name) => Reason::MissingField(name),
                None => Reason::WrongType(text),
            },
            _ if text.starts_with("recursion limit exceeded") => Reason::TooDeep,
            _ => Reason::InvalidJson(text),
        };
        DecodeError { layer, reason }
    }
}

/// serde reports a missing key as "missing field `name` at line L column C"; the name is
/// the useful part.
fn missing_field_name(text: &str) -> Option<String> {
    let rest = text.strip_prefix("missing field `")?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}
