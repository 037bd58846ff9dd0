//! Shared decoding rules: size limits, Go-compatible base64, bounded gunzip, and the
//! serde helpers the layer types use.

use super::error::{DecodeError, Layer, Reason};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::{Deserialize, Deserializer};
use std::io::Read;

/// Limits applied while decoding untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest NATS payload accepted, in bytes. Default 8 MiB (NATS' own maximum is
    /// configurable up to 64 MiB; Choria messages are far smaller).
    pub max_payload: usize,
    /// Largest output of a gunzip (registration `zcontent`), in bytes. Default 64 MiB,
    /// which stops zip bombs long before they hurt.
    pub max_gunzip: usize,
}

impl Limits {
    /// 8 MiB payloads, 64 MiB gunzip output.
    pub const DEFAULT: Limits = Limits {
        max_payload: 8 * 1024 * 1024,
        max_gunzip: 64 * 1024 * 1024,
    };

    /// Fails with `TooLarge` when `len` is over `max_payload`.
    pub fn check_payload(&self, layer: Layer, len: usize) -> Result<(), DecodeError> {
        if len > self.max_payload {
            return Err(DecodeError::new(
                layer,
                Reason::TooLarge {
                    size: len,
                    limit: self.max_payload,
                },
            ));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Go's `base64.RawURLEncoding`, used by JWTs and NATS nonce signatures.
pub(crate) const URL_SAFE_NO_PAD: GeneralPurpose =
    GeneralPurpose::new(&alphabet::URL_SAFE, base64::engine::general_purpose::NO_PAD);

/// Encodes like Go's `base64.StdEncoding.EncodeToString`.
pub fn b64_encode(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// Decodes standard base64 as Go does, ignoring `\r` and `\n` anywhere (Ruby's
/// `Base64.encode64` wraps lines every 60 characters). Errors give the offset of the
/// first bad character in `text` as it was received.
pub fn b64_decode(layer: Layer, field: &'static str, text: &str) -> Result<Vec<u8>, DecodeError> {
    let bad = |offset| DecodeError::new(layer, Reason::Base64 { field, offset });
    // The SIMD decoder takes canonical base64, which is what Go sends; anything else
    // (Ruby's line breaks, non-zero trailing bits, errors) goes the slower careful way.
    if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(text) {
        return Ok(bytes);
    }
    if !text.bytes().any(|b| b == b'\n' || b == b'\r') {
        return GO_STD
            .decode(text)
            .map_err(|e| bad(error_offset(&e, text.len())));
    }
    let kept: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'\n' && *b != b'\r')
        .collect();
    GO_STD.decode(&kept).map_err(|e| {
        // Map the offset in the stripped text back to the text as received.
        let k = error_offset(&e, kept.len());
        let original = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b != b'\n' && *b != b'\r')
            .nth(k)
            .map_or(text.len(), |(i, _)| i);
        bad(original)
    })
}

fn error_offset(err: &base64::DecodeError, len: usize) -> usize {
    match err {
        base64::DecodeError::InvalidByte(offset, _) => *offset,
        base64::DecodeError::InvalidLastSymbol(offset, _) => *offset,
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => len,
    }
}

/// Gunzips `bytes`, failing once the output would pass `limits.max_gunzip`.
pub fn gunzip(layer: Layer, bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, DecodeError> {
    let decoder = flate2::read::GzDecoder::new(bytes);
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limits.max_gunzip));
    // Read one byte past the limit so "exactly at the limit" still succeeds.
    let cap = u64::try_from(limits.max_gunzip)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    decoder
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::new(layer, Reason::Gzip(e.to_string())))?;
    if out.len() > limits.max_gunzip {
        return Err(DecodeError::new(
            layer,
            Reason::GzipTooLarge {
                limit: limits.max_gunzip,
            },
        ));
    }
    Ok(out)
}

/// Gzips like Go's `compress/gzip` writer used by Choria registration (default level).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Parses one JSON layer into `T`, mapping serde errors onto `layer`.
pub(crate) fn parse<'a, T: Deserialize<'a>>(
    layer: Layer,
    bytes: &'a [u8],
) -> Result<T, DecodeError> {
    // One up-front UTF-8 check (fast on ASCII) lets serde_json skip checking each
    // string again, which is most of the work in escape-heavy inner layers.
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
    .map_err(|e| DecodeError::json(layer, e))
}

/// Reads only the `protocol` key of a JSON object, skipping everything else; `None`
/// when the object has no such key.
pub(crate) fn peek_protocol(layer: Layer, bytes: &[u8]) -> Result<Option<String>, DecodeError> {
    #[derive(Deserialize)]
    struct Peek {
        protocol: Option<serde_json::Value>,
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let found = match first {
        Some(b'{') | None => None,
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b'n') => Some("null"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        Some(_) => None,
    };
    if let Some(found) = found {
        return Err(DecodeError::new(
            layer,
            Reason::WrongType(format!("expected a JSON object, found {found}")),
        ));
    }
    let peek: Peek = parse(layer, bytes)?;
    match peek.protocol {
        Some(serde_json::Value::String(p)) => Ok(Some(p)),
        Some(other) => Err(DecodeError::new(
            layer,
            Reason::WrongType(format!("protocol must be a string, found {other}")),
        )),
        None => Ok(None),
    }
}

/// Go decodes JSON `null` into a zero value; so do we for optional keys.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `omitempty` for strings.
pub(crate) fn is_empty(s: &str) -> bool {
    s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_ignores_ruby_newlines() {
        let wrapped = "aGVsbG8g\nd29y\r\nbGQ=\n";
        assert_eq!(
            b64_decode(Layer::Transport, "data", wrapped).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn base64_error_offset_is_in_the_original_text() {
        let err = b64_decode(Layer::Transport, "data", "aGVs\nbG8*").unwrap_err();
        assert_eq!(
            err.to_string(),
            "transport: data is not valid base64 at offset 8"
        );
        let err = b64_decode(Layer::Transport, "data", "aGVsbG8gd29y!GQ=").unwrap_err();
        assert_eq!(
            err.to_string(),
            "transport: data is not valid base64 at offset 12"
        );
    }

    #[test]
    fn go_message_payload_example() {
        // go-choria message_test: SetBase64Payload("aGVsbG8gd29ybGQ=") gives "hello world".
        assert_eq!(
            b64_decode(Layer::Request, "message", "aGVsbG8gd29ybGQ=").unwrap(),
            b"hello world"
        );
        assert!(b64_decode(Layer::Request, "message", "hello world").is_err());
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        let big = vec![b'a'; 10_000];
        let z = gzip(&big);
        let limits = Limits {
            max_payload: 1024,
            max_gunzip: 9_999,
        };
        let err = gunzip(Layer::Registration, &z, &limits).unwrap_err();
        assert_eq!(err.reason, Reason::GzipTooLarge { limit: 9_999 });
        let limits = Limits {
            max_gunzip: 10_000,
            ..limits
        };
        assert_eq!(gunzip(Layer::Registration, &z, &limits).unwrap(), big);
    }
}
