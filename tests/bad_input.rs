//! Bad input: every failure is a typed error naming the layer and the reason, and no
//! input makes the decoder panic.

mod common;

use common::{synthetic, text};
use coro::core::gojson;
use coro::core::protocol::registration::Registration;
use coro::core::protocol::{self, b64_encode, gzip, v1, v2, DecodeError, Layer, Limits, Reason};
use proptest::prelude::*;

fn err(bytes: &[u8]) -> DecodeError {
    match protocol::decode(bytes) {
        Ok(m) => panic!("decoded {m:?}"),
        Err(e) => e,
    }
}

/// A v1 transport around `secure` (secure-layer JSON bytes).
fn v1_transport(secure: &[u8]) -> Vec<u8> {
    gojson::to_vec(&v1::Transport::new(secure, v1::Headers::default()))
}

#[test]
fn invalid_json() {
    let e = err(b"{\"protocol\":\"choria:transport:1\",");
    assert_eq!(e.layer, Layer::Transport);
    assert!(matches!(e.reason, Reason::InvalidJson(_)), "{e}");
    let e = err(b"{\"protocol\":");
    assert_eq!(e.layer, Layer::Payload);
    assert!(matches!(e.reason, Reason::InvalidJson(_)), "{e}");
    let e = err(&v1_transport(b"{not json"));
    assert_eq!(e.layer, Layer::SecureRequest);
    assert!(matches!(e.reason, Reason::InvalidJson(_)), "{e}");
    assert_eq!(err(b"").kind(), "invalid_json");
}

#[test]
fn bad_base64_names_the_offset() {
    let e = err(br#"{"protocol":"choria:transport:1","data":"aGVsbG8gd29y!GQ=","headers":{}}"#);
    assert_eq!(
        e.to_string(),
        "transport: data is not valid base64 at offset 12"
    );
    let e = err(br#"{"protocol":"io.choria.protocol.v2.transport","data":"%%%%"}"#);
    assert_eq!(
        e.to_string(),
        "transport: data is not valid base64 at offset 0"
    );
}

#[test]
fn unknown_protocol() {
    let e = err(br#"{"protocol":"choria:transport:9","data":""}"#);
    assert_eq!(
        e.to_string(),
        "payload: unknown protocol \"choria:transport:9\""
    );
    let e = err(br#"{"protocol":"choria:registration:filecontent:1","content":""}"#);
    assert_eq!(e.kind(), "unknown_protocol");
}

#[test]
fn mismatched_protocols() {
    // A v1 transport carrying a v2 secure request.
    let v2_secure = synthetic("v2_secure_request.json");
    let e = err(&v1_transport(&v2_secure));
    assert_eq!(e.layer, Layer::SecureRequest);
    assert_eq!(
        e.to_string(),
        "secure_request: expected protocol choria:secure:request:1 or choria:secure:reply:1, found \"io.choria.protocol.v2.secure_request\""
    );
    // A secure request wrapping a reply.
    let reply = text(&synthetic("v1_reply.json"));
    let secure = gojson::to_vec(&v1::SecureRequest::insecure(&reply));
    let e = err(&v1_transport(&secure));
    assert_eq!(e.layer, Layer::Request);
    assert!(
        matches!(
            e.reason,
            Reason::ProtocolMismatch {
                expected: "choria:request:1",
                ..
            }
        ),
        "{e}"
    );
    // A transport at the place of a secure layer.
    let e = err(&v1_transport(&synthetic("v1_transport_reply.wire")));
    assert_eq!(e.kind(), "protocol_mismatch");
}

#[test]
fn missing_required_field() {
    let e = err(br#"{"protocol":"choria:transport:1","headers":{}}"#);
    assert_eq!(e.layer, Layer::Transport);
    assert_eq!(e.reason, Reason::MissingField("data".into()));
    let e = err(br#"{"protocol":"choria:reply:1","message":"x","envelope":{"requestid":"a","agent":"b","time":1}}"#);
    assert_eq!(
        e.to_string().split(" at line").next().unwrap(),
        "reply: missing required field `senderid`"
    );
    let e = err(br#"{"data":"x"}"#);
    assert_eq!(e.to_string(), "payload: missing required field `protocol`");
    let e = err(br#"{"protocol":"choria:registration:inventorycontent:1"}"#);
    assert_eq!(e.kind(), "unknown_protocol");
    let r = Registration::decode(br#"{"protocol":"choria:registration:inventorycontent:1"}"#)
        .unwrap_err();
    assert_eq!(
        r.to_string(),
        "registration: missing required field `content or zcontent`"
    );
}

#[test]
fn wrong_types() {
    let e = err(br#"{"protocol":1}"#);
    assert_eq!(e.layer, Layer::Payload);
    assert!(matches!(e.reason, Reason::WrongType(_)), "{e}");
    let e = err(br#"{"protocol":"choria:reply:1","message":"x","envelope":{"requestid":"a","senderid":"s","agent":"b","time":"yesterday"}}"#);
    assert_eq!(e.layer, Layer::Reply);
    assert!(matches!(e.reason, Reason::WrongType(_)), "{e}");
    let e = err(br#"{"protocol":"choria:transport:1","data":"","headers":{"seen-by":"x"}}"#);
    assert_eq!(e.kind(), "wrong_type");
    assert_eq!(
        err(b"[1,2,3]").to_string(),
        "payload: wrong type: expected a JSON object, found an array"
    );
    assert_eq!(
        err(b" null").to_string(),
        "payload: wrong type: expected a JSON object, found null"
    );
}

#[test]
fn payload_over_the_limit() {
    let wire = synthetic("v1_transport_reply.wire");
    let limits = Limits {
        max_payload: wire.len() - 1,
        ..Limits::DEFAULT
    };
    let e = protocol::decode_with(&wire, &limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "payload: {} bytes is over the {} byte limit",
            wire.len(),
            wire.len() - 1
        )
    );
    let limits = Limits {
        max_payload: wire.len(),
        ..Limits::DEFAULT
    };
    assert!(protocol::decode_with(&wire, &limits).is_ok());
    // The default is 8 MiB.
    let big = vec![b' '; 8 * 1024 * 1024 + 1];
    assert_eq!(err(&big).kind(), "too_large");
}

#[test]
fn gzip_bombs_stop_at_the_limit() {
    // 64 MiB of zeros gzip to about 64 KiB.
    let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
    assert!(bomb.len() < 200 * 1024);
    let payload = format!(
        r#"{{"protocol":"choria:registration:inventorycontent:1","zcontent":"{}"}}"#,
        b64_encode(&bomb)
    );
    let reg = Registration::decode(payload.as_bytes()).unwrap();
    let limits = Limits {
        max_gunzip: 16 * 1024 * 1024,
        ..Limits::DEFAULT
    };
    let e = reg.content(&limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        "registration: gzip output is over the 16777216 byte limit"
    );
    let e = Registration::decode(
        br#"{"protocol":"choria:registration:filecontent:1","zcontent":"aGVsbG8="}"#,
    )
    .unwrap()
    .content(&Limits::DEFAULT)
    .unwrap_err();
    assert_eq!(e.kind(), "gzip");
}

#[test]
fn nesting_too_deep() {
    let compound = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let request = text(&synthetic("v1_request.json"))
        .replace(r#""compound": []"#, &format!(r#""compound": [{compound}]"#));
    let e = err(request.as_bytes());
    assert_eq!(e.reason, Reason::TooDeep, "{e}");
    assert_eq!(
        e.to_string(),
        "request: JSON nesting is deeper than 128 levels"
    );
    // Inside a transport the same request fails at its own layer.
    let secure = gojson::to_vec(&v1::SecureRequest::insecure(&request));
    assert_eq!(
        err(&v1_transport(&secure)).to_string(),
        "request: JSON nesting is deeper than 128 levels"
    );
    // Deep unknown keys are skipped without building anything, so they do no harm.
    let deep = format!(
        r#"{{"protocol":"choria:transport:1","data":"{}","headers":{{"x":{compound}}}}}"#,
        b64_encode(&synthetic("v1_secure_reply.json"))
    );
    assert!(protocol::decode(deep.as_bytes()).is_ok());
}

#[test]
fn v2_inner_base64_errors_name_their_field() {
    let s = v2::SecureRequest {
        protocol: v2::SECURE_REQUEST.into(),
        request: "not base64!".into(),
        signature: String::new(),
        caller: String::new(),
        signer: String::new(),
    };
    let t = gojson::to_vec(&v2::Transport::new(
        &gojson::to_vec(&s),
        v2::Headers::default(),
    ));
    assert_eq!(
        err(&t).to_string(),
        "secure_request: request is not valid base64 at offset 3"
    );
}

/// Fixtures to mutate.
fn seeds() -> Vec<Vec<u8>> {
    [
        "v1_transport_request.wire",
        "v1_transport_reply.wire",
        "v2_transport_request.json",
        "v2_transport_reply.json",
        "v1_secure_reply.json",
        "v1_request.json",
        "registration_inventorycontent_gzip.json",
    ]
    .iter()
    .map(|n| synthetic(n))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes give Ok or Err, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = protocol::decode(&bytes);
        let _ = Registration::decode(&bytes);
    }

    /// Fixture bytes with flips, cuts and insertions give Ok or Err, never a panic; a
    /// message that still decodes re-encodes to something that decodes.
    #[test]
    fn mutated_fixtures_never_panic(
        seed in 0usize..7,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = seeds()[seed].clone();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.truncate(i); }
                _ => bytes.insert(i, byte),
            }
        }
        if let Ok(protocol::Message::Rpc(m)) = protocol::decode(&bytes) {
            if let Some(t) = &m.transport {
                prop_assert!(protocol::decode(&t.encode()).is_ok());
            }
            if let Ok(reg) = Registration::decode(m.body()) {
                let _ = reg.content(&Limits::DEFAULT);
            }
        }
    }
}
