//! A transport as it crosses the broker: the headers typed (core's `v1::Headers` and
//! `v2::Headers`), `protocol` and `data` kept as the JSON text received.
//!
//! The broker edits only headers, and re-marshalling the 2–3 KiB base64 `data` of every
//! message would cost more than everything else it does. When the received text of
//! `protocol` and `data` is what Go would write (Go and Ruby always send it so: plain
//! base64, at most Ruby's `\n`), it is copied as is and only the headers are written;
//! otherwise the message goes through core's [`Transport`] and comes out exactly as
//! Go's `JSON()` (unknown keys dropped, key order `protocol`, `data`, `headers`).
//! Either way the bytes are those of core's `Transport::encode` after the same edits,
//! which the tests check.

use super::splice::plain_data_len;
use coro_core::gojson::GoFormatter;
use coro_core::protocol::federation::FederationError as Rewrite;
use coro_core::protocol::{v1, v2, DecodeError, Hop, Layer, Reason, Transport, Version};
use serde::Serialize;
use serde_json::value::RawValue;

/// The typed headers of either version.
#[derive(Debug, Clone, PartialEq)]
enum Headers {
    V1(v1::Headers),
    V2(Option<v2::Headers>),
}

/// A transport in flight.
#[derive(Debug, Clone)]
pub(crate) struct Wire {
    /// `"choria:transport:1"` or `"io.choria.protocol.v2.transport"`, as JSON.
    protocol: axum::body::Bytes,
    /// The `data` string as JSON text, quotes included.
    data: axum::body::Bytes,
    headers: Headers,
}

#[derive(serde::Deserialize)]
struct RawV1<'a> {
    #[serde(borrow)]
    protocol: &'a RawValue,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    headers: Option<v1::Headers>,
}

#[derive(serde::Deserialize)]
struct RawV2<'a> {
    #[serde(borrow)]
    protocol: &'a RawValue,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    headers: Option<v2::Headers>,
}

/// Whether Go writes this JSON string token unchanged: printable ASCII with nothing Go
/// escapes (`<`, `>`, `&`) and no escape but `\n`.
fn go_writes_as_is(token: &[u8]) -> bool {
    match token.split_first() {
        Some((b'"', rest)) => plain_data_len(rest).is_some_and(|n| n + 1 == rest.len()),
        _ => false,
    }
}

impl Wire {
    /// Parses the transport of `version` in `payload`, borrowing nothing from it after.
    pub fn decode(version: Version, payload: &axum::body::Bytes) -> Result<Wire, DecodeError> {
        let text = payload.as_ref();
        // One UTF-8 check up front, so the parser need not check each string again.
        let raw = match std::str::from_utf8(text) {
            Ok(json) => match version {
                Version::V1 => serde_json::from_str::<RawV1<'_>>(json).map(|r| {
                    let headers = Headers::V1(r.headers.unwrap_or_default());
                    (r.protocol, r.data, headers)
                }),
                Version::V2 => serde_json::from_str::<RawV2<'_>>(json)
                    .map(|r| (r.protocol, r.data, Headers::V2(r.headers))),
            }
            .ok(),
            Err(_) => None,
        };
        let expected = match version {
            Version::V1 => v1::TRANSPORT,
            Version::V2 => v2::TRANSPORT,
        };
        if let Some((protocol, data, headers)) = raw {
            let p = protocol.get().as_bytes();
            let canonical_protocol =
                p.len() == expected.len() + 2 && &p[1..p.len() - 1] == expected.as_bytes();
            if canonical_protocol && go_writes_as_is(data.get().as_bytes()) {
                if let (Some(protocol), Some(data)) =
                    (sub(payload, p), sub(payload, data.get().as_bytes()))
                {
                    return Ok(Wire {
                        protocol,
                        data,
                        headers,
                    });
                }
            }
        }
        // Anything unusual: core's decoder, and Go's marshalling of what it read.
        Ok(Wire::from_transport(Transport::decode(version, text)?))
    }

    /// The same message, from core's type.
    pub fn from_transport(t: Transport) -> Wire {
        let json = |s: &str| axum::body::Bytes::from(coro_core::gojson::to_vec(s));
        match t {
            Transport::V1(t) => Wire {
                protocol: json(&t.protocol),
                data: json(&t.data),
                headers: Headers::V1(t.headers),
            },
            Transport::V2(t) => Wire {
                protocol: json(&t.protocol),
                data: json(&t.data),
                headers: Headers::V2(t.headers),
            },
        }
    }

    /// Go's compact JSON: `{"protocol":..,"data":..,"headers":{..}}` (v2 leaves out
    /// absent headers).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 512);
        out.extend_from_slice(b"{\"protocol\":");
        out.extend_from_slice(&self.protocol);
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(&self.data);
        match &self.headers {
            Headers::V1(h) => write_headers(&mut out, h),
            Headers::V2(Some(h)) => write_headers(&mut out, h),
            Headers::V2(None) => {}
        }
        out.push(b'}');
        out
    }

    /// The request id of a federated message; `None` when it is not federated.
    pub fn federation_request_id(&self) -> Option<&str> {
        match &self.headers {
            Headers::V1(h) => h.federation.as_ref().map(|f| f.req.as_str()),
            Headers::V2(h) => h
                .as_ref()
                .and_then(|h| h.federation.as_ref())
                .map(|f| f.request.as_str()),
        }
    }

    /// `mc_sender` / `sender`.
    pub fn sender(&self) -> &str {
        match &self.headers {
            Headers::V1(h) => &h.sender,
            Headers::V2(h) => h.as_ref().map_or("", |h| &h.sender),
        }
    }

    /// `reply-to` / `reply`.
    #[cfg(test)]
    pub fn reply_to(&self) -> &str {
        match &self.headers {
            Headers::V1(h) => &h.reply_to,
            Headers::V2(h) => h.as_ref().map_or("", |h| &h.reply),
        }
    }

    /// The federation header's `reply-to` / `reply` ("" without one): the client's
    /// reply subject once the request transformer moved it there.
    pub fn federation_reply_to(&self) -> &str {
        match &self.headers {
            Headers::V1(h) => h.federation.as_ref().map_or("", |f| f.reply_to.as_str()),
            Headers::V2(h) => h
                .as_ref()
                .and_then(|h| h.federation.as_ref())
                .map_or("", |f| f.reply.as_str()),
        }
    }

    /// `seen-by` / `trace`.
    pub fn hops(&self) -> &[Hop] {
        match &self.headers {
            Headers::V1(h) => &h.seen_by,
            Headers::V2(h) => h.as_ref().map_or(&[], |h| &h.trace),
        }
    }

    /// Go's `RecordNetworkHop(in, processor, out)`.
    pub fn record_hop(&mut self, in_server: &str, processor: &str, out_server: &str) {
        let hop = vec![
            in_server.to_string(),
            processor.to_string(),
            out_server.to_string(),
        ];
        match &mut self.headers {
            Headers::V1(h) => h.seen_by.push(hop),
            Headers::V2(h) => h.get_or_insert_with(Default::default).trace.push(hop),
        }
    }

    /// Go's request transformer, in place (core's `transform_request`): the targets
    /// come out, `reply-to` moves into the federation header and becomes the cluster's
    /// collective subject.
    #[cfg(test)]
    pub fn transform_request(&mut self, cluster: &str) -> Result<Vec<String>, Rewrite> {
        self.transform_request_to(&coro_core::protocol::federation::collective_subject(
            cluster,
        ))
    }

    /// [`transform_request`](Self::transform_request) with the collective subject
    /// made once by the caller.
    pub fn transform_request_to(&mut self, collective: &str) -> Result<Vec<String>, Rewrite> {
        let (reply_to, targets, fed_reply_to) = match &mut self.headers {
            Headers::V1(h) => {
                let f = h.federation.as_mut().ok_or(Rewrite::NotFederated)?;
                (&mut h.reply_to, &mut f.target, &mut f.reply_to)
            }
            Headers::V2(h) => {
                let h = h.as_mut().ok_or(Rewrite::NotFederated)?;
                let f = h.federation.as_mut().ok_or(Rewrite::NotFederated)?;
                (&mut h.reply, &mut f.targets, &mut f.reply)
            }
        };
        if targets.is_empty() {
            return Err(Rewrite::NoTargets);
        }
        if reply_to.is_empty() {
            return Err(Rewrite::NoReplyTo);
        }
        *fed_reply_to = std::mem::replace(reply_to, collective.to_string());
        Ok(std::mem::take(targets))
    }

    /// Go's reply transformer, in place (core's `transform_reply`): the one target is
    /// the client's reply subject, and the federation header goes.
    pub fn transform_reply(&mut self) -> Result<Vec<String>, Rewrite> {
        let reply_to = match &mut self.headers {
            Headers::V1(h) => match h.federation.take() {
                None => return Err(Rewrite::NotFederated),
                Some(f) if f.reply_to.is_empty() => {
                    h.federation = Some(f);
                    return Err(Rewrite::NoReplyTo);
                }
                Some(f) => f.reply_to,
            },
            Headers::V2(h) => {
                let h = h.as_mut().ok_or(Rewrite::NotFederated)?;
                match h.federation.take() {
                    None => return Err(Rewrite::NotFederated),
                    Some(f) if f.reply.is_empty() => {
                        h.federation = Some(f);
                        return Err(Rewrite::NoReplyTo);
                    }
                    Some(f) => f.reply,
                }
            }
        };
        Ok(vec![reply_to])
    }
}

/// `part` of `payload` without a copy; `None` when it is not inside it.
pub(crate) fn sub(payload: &axum::body::Bytes, part: &[u8]) -> Option<axum::body::Bytes> {
    let base = payload.as_ptr() as usize;
    let start = (part.as_ptr() as usize).checked_sub(base)?;
    let end = start.checked_add(part.len())?;
    (end <= payload.len()).then(|| payload.slice(start..end))
}

fn write_headers(out: &mut Vec<u8>, headers: &impl Serialize) {
    out.extend_from_slice(b",\"headers\":");
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, GoFormatter::compact());
    // Our header types always serialise into a Vec.
    if headers.serialize(&mut ser).is_err() {
        out.extend_from_slice(b"{}");
    }
}

/// Not a transport at all.
pub(crate) fn not_a_transport() -> DecodeError {
    DecodeError::new(
        Layer::Payload,
        Reason::UnknownProtocol(
            "not a choria:transport:1 or io.choria.protocol.v2.transport".to_string(),
        ),
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use coro_core::protocol::federation;

    /// The synthetic fixtures that are whole transports, for the splice tests too.
    pub(in crate::federation) const TRANSPORT_FIXTURES: [&str; 10] = [
        "fed_1_client_to_federation_broadcast.json",
        "fed_1b_client_to_federation_directed.json",
        "fed_2_broker_to_collective.json",
        "fed_3_server_reply_to_collective.json",
        "fed_4_broker_reply_to_client.json",
        "v1_transport_request.json",
        "v1_transport_reply.json",
        "v2_transport_request.json",
        "v2_transport_reply.json",
        "v2_transport_federated_request.json",
    ];

    /// A synthetic fixture's bytes as stored (indented).
    pub(in crate::federation) fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/choria/fixtures/synthetic")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn version(bytes: &[u8]) -> Version {
        super::super::pipeline::transport_version(bytes).unwrap()
    }

    /// Wire and core agree on `bytes` through the request and the reply transformer.
    fn same_as_core(bytes: &[u8]) {
        let v = version(bytes);
        let payload = axum::body::Bytes::copy_from_slice(bytes);
        let wire = Wire::decode(v, &payload).unwrap();
        let core = Transport::decode(v, bytes).unwrap();
        assert_eq!(wire.encode(), core.encode(), "as received");
        assert_eq!(wire.sender(), core.sender());
        assert_eq!(wire.reply_to(), core.reply_to());
        assert_eq!(wire.hops(), core.hops());

        let mut w = wire.clone();
        match federation::transform_request(&core, "london") {
            Ok((mut t, targets)) => {
                assert_eq!(w.transform_request("london").unwrap(), targets);
                t.record_hop("a", "b", "c");
                w.record_hop("a", "b", "c");
                assert_eq!(w.encode(), t.encode(), "request side");
            }
            Err(e) => assert_eq!(w.transform_request("london").unwrap_err(), e),
        }
        let mut w = wire.clone();
        match federation::transform_reply(&core) {
            Ok((mut t, targets)) => {
                assert_eq!(w.transform_reply().unwrap(), targets);
                t.record_hop("a", "b", "c");
                w.record_hop("a", "b", "c");
                assert_eq!(w.encode(), t.encode(), "reply side");
            }
            Err(e) => assert_eq!(w.transform_reply().unwrap_err(), e),
        }
    }

    #[test]
    fn fixtures_encode_as_core_does() {
        for name in TRANSPORT_FIXTURES {
            let bytes = fixture(name);
            same_as_core(&bytes);
            // And compact, as on the wire.
            let compact = Transport::decode(version(&bytes), &bytes).unwrap().encode();
            same_as_core(&compact);
        }
    }

    #[test]
    fn unusual_text_goes_through_core() {
        let fed = r#"{"req":"r","target":["mcollective.node.a"]}"#;
        for text in [
            // Ruby's line breaks are kept as they are.
            format!(r#"{{"protocol":"choria:transport:1","data":"YWJj\nZGVm\n","headers":{{"reply-to":"x.reply.y","federation":{fed}}}}}"#),
            // Escapes Go writes differently, unknown keys, another key order.
            format!(r#"{{"data":"YW\/Jj","x":1,"protocol":"choria:transport:1","headers":{{"reply-to":"x.reply.y","federation":{fed}}}}}"#),
            format!(r#"{{"protocol":"choria:transport\u003a1","data":"YWJj","headers":{{"reply-to":"x.reply.y","federation":{fed}}}}}"#),
            r#"{"protocol":"choria:transport:1","data":"a<b","headers":null}"#.to_string(),
            r#"{"protocol":"choria:transport:1","data":"é","headers":{}}"#.to_string(),
            r#"{"protocol":"io.choria.protocol.v2.transport","data":"YWJj"}"#.to_string(),
            r#"{"protocol":"io.choria.protocol.v2.transport","data":"YWJj","headers":{"reply":"x.reply.1","federation":{"request":"r","targets":["t.node.a"]}}}"#.to_string(),
            r#"{"protocol":"io.choria.protocol.v2.transport","data":"YWJj","headers":{"federation":{"request":"r","reply":"x.reply.1"}}}"#.to_string(),
        ] {
            same_as_core(text.as_bytes());
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        for text in [
            r#"{"protocol":"choria:transport:1"}"#,
            r#"{"protocol":"choria:transport:1","data":"x","headers":7}"#,
            r#"{"protocol":"choria:transport:1","data":7}"#,
        ] {
            let payload = axum::body::Bytes::from(text);
            assert!(Wire::decode(Version::V1, &payload).is_err(), "{text}");
            assert!(
                Transport::decode(Version::V1, text.as_bytes()).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn what_go_writes_as_is() {
        assert!(go_writes_as_is(br#""abc+/=""#));
        assert!(go_writes_as_is(br#""ab\ncd\n""#));
        assert!(!go_writes_as_is(br#""ab\/cd""#));
        assert!(!go_writes_as_is(br#""ab\"#));
        assert!(!go_writes_as_is(br#""a<b""#));
        assert!(!go_writes_as_is(b"7"));
        assert!(!go_writes_as_is("\"é\"".as_bytes()));
    }
}
