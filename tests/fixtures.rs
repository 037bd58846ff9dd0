//! Every message and payload in `shared/choria/fixtures` decoded, with its field values
//! asserted, and re-encoded to Go's exact bytes.

mod common;

use common::{fixture, synthetic, text};
use coro::core::gojson;
use coro::core::protocol::federation::{self, Side};
use coro::core::protocol::lifecycle::{EventType, Format};
use coro::core::protocol::output::ChoriaStreamsOutput;
use coro::core::protocol::registration::Registration;
use coro::core::protocol::verify::{self, TrustAnchor, Verified, VerifyError};
use coro::core::protocol::{
    self, b64_decode, v1, v2, Direction, Inner, Layer, Limits, Message, RpcMessage, Secure,
    Transport, Version,
};
use coro::core::{Kind, Record};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes an indented fixture as `T` and checks that Go's `MarshalIndent` of it gives
/// the file back byte for byte.
fn roundtrip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let bytes = synthetic(name);
    let value: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again = gojson::to_vec_indented(&value);
    assert_eq!(
        text(&again),
        text(&bytes),
        "{name} does not re-encode to its own bytes"
    );
    value
}

fn rpc(bytes: &[u8]) -> RpcMessage {
    match protocol::decode(bytes).unwrap_or_else(|e| panic!("decode: {e}")) {
        Message::Rpc(m) => *m,
        Message::Lifecycle(e) => panic!("expected an RPC message, got {e:?}"),
    }
}

fn hop(a: &str, b: &str, c: &str) -> Vec<String> {
    vec![a.to_string(), b.to_string(), c.to_string()]
}

const REQ_ID: &str = "a2f0ca717c694f2086cfa81b6c494648";
const PING_BODY: &str = r#"{"agent":"rpcutil","action":"ping","data":{}}"#;
const PONG_BODY: &str =
    r#"{"action":"ping","statuscode":0,"statusmsg":"OK","data":{"pong":1700000001}}"#;
const CLIENT_REPLY_TO: &str =
    "mcollective.reply.37bdf08389145a56c13096c178802d3b.a2f0ca717c694f2086cfa81b6c494648";

fn issuer() -> [u8; 32] {
    verify::hex_key(&text(&synthetic("v2_issuer_public_key.txt"))).unwrap()
}

// ---------------------------------------------------------------- v1 layers

#[test]
fn v1_request() {
    let r: v1::Request = roundtrip("v1_request.json");
    assert_eq!(r.protocol, v1::REQUEST);
    assert_eq!(r.message, PING_BODY);
    let e = &r.envelope;
    assert_eq!(e.requestid, REQ_ID);
    assert_eq!(e.senderid, "client.example.net");
    assert_eq!(e.callerid, "choria=rip.mcollective");
    assert_eq!(e.collective, "mcollective");
    assert_eq!(e.agent, "rpcutil");
    assert_eq!(e.ttl, 60);
    assert_eq!(e.time, 1_700_000_000);
    let f = e.filter.as_ref().unwrap();
    assert_eq!(f.agent, ["rpcutil"]);
    assert!(
        f.fact.is_empty()
            && f.cf_class.is_empty()
            && f.identity.is_empty()
            && f.compound.is_empty()
    );

    let m = rpc(&synthetic("v1_request.json"));
    assert!(m.transport.is_none() && m.secure.is_none());
    assert_eq!(m.body(), PING_BODY.as_bytes());
}

#[test]
fn v1_reply() {
    let r: v1::Reply = roundtrip("v1_reply.json");
    assert_eq!(r.protocol, v1::REPLY);
    assert_eq!(r.message, PONG_BODY);
    assert_eq!(r.envelope.requestid, REQ_ID);
    assert_eq!(r.envelope.senderid, "node1.example.net");
    assert_eq!(r.envelope.agent, "rpcutil");
    assert_eq!(r.envelope.time, 1_700_000_001);
}

#[test]
fn v1_discovery_ping_body_stays_base64() {
    let r: v1::Request = roundtrip("v1_request_discovery_ping.json");
    assert_eq!(r.envelope.agent, "discovery");
    assert!(r.envelope.filter.as_ref().unwrap().is_empty());
    let m = rpc(&synthetic("v1_request_discovery_ping.json"));
    // The body is opaque: kept as the base64 text the client sent.
    assert_eq!(m.body(), b"cGluZw==");
    assert_eq!(
        b64_decode(Layer::Request, "message", "cGluZw==").unwrap(),
        b"ping"
    );
}

#[test]
fn v1_discovery_pong() {
    let r: v1::Reply = roundtrip("v1_reply_discovery_pong.json");
    assert_eq!(r.message, "pong");
    assert_eq!(r.envelope.agent, "discovery");
    assert_eq!(
        rpc(&synthetic("v1_reply_discovery_pong.json")).body(),
        b"pong"
    );
}

#[test]
fn v1_secure_request_signature_verifies() {
    let s: v1::SecureRequest = roundtrip("v1_secure_request.json");
    assert_eq!(s.protocol, v1::SECURE_REQUEST);
    assert!(s.pubcert.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let inner: v1::Request = serde_json::from_str(&s.message).unwrap();
    assert_eq!(inner.envelope.requestid, REQ_ID);
    assert_eq!(
        verify::verify_v1_request(&s).unwrap(),
        Verified::Signed {
            signer: "rip.mcollective".into()
        }
    );
    // One changed byte in the signed string breaks the signature.
    let mut tampered = s.clone();
    tampered.message = tampered.message.replace("\"ttl\":60", "\"ttl\":61");
    assert_eq!(
        verify::verify_v1_request(&tampered),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn v1_secure_request_insecure_is_reported() {
    let s: v1::SecureRequest = roundtrip("v1_secure_request_insecure.json");
    assert_eq!(s.signature, "insecure");
    assert_eq!(s.pubcert, "insecure");
    assert_eq!(
        verify::verify_v1_request(&s).unwrap(),
        Verified::Insecure { marker: "insecure" }
    );
    let m = rpc(&synthetic("v1_secure_request_insecure.json"));
    assert_eq!(m.inner.request_id(), REQ_ID);
    assert_eq!(m.body(), PING_BODY.as_bytes());
}

#[test]
fn v1_secure_reply_hash_verifies() {
    let s: v1::SecureReply = roundtrip("v1_secure_reply.json");
    assert_eq!(s.hash, "LORjP7QXykMclbnYR4cvZfWqmi3TtCs2pwAEQntCxUE=");
    assert_eq!(verify::verify_v1_reply(&s).unwrap(), Verified::HashOnly);
    let mut tampered = s.clone();
    tampered.message.push(' ');
    assert_eq!(
        verify::verify_v1_reply(&tampered),
        Err(VerifyError::BadHash)
    );
}

#[test]
fn v1_transport_request_all_layers() {
    let t: v1::Transport = roundtrip("v1_transport_request.json");
    assert_eq!(t.headers.reply_to, CLIENT_REPLY_TO);
    assert_eq!(t.headers.sender, "client.example.net");
    assert_eq!(
        t.headers.seen_by,
        [hop(
            "nats://broker1.example.net:4222",
            "client.example.net",
            "nats://broker1.example.net:4222"
        )]
    );
    assert!(t.headers.federation.is_none());

    let wire = synthetic("v1_transport_request.wire");
    let m = rpc(&wire);
    assert_eq!(m.version(), Version::V1);
    assert_eq!(m.inner.direction(), Direction::Request);
    assert_eq!(m.inner.sender(), "client.example.net");
    assert_eq!(m.inner.request_id(), REQ_ID);
    assert_eq!(m.inner.agent(), "rpcutil");
    assert_eq!(m.inner.collective(), Some("mcollective"));
    assert_eq!(m.inner.caller(), Some("choria=rip.mcollective"));
    assert_eq!(m.inner.ttl(), Some(60));
    assert_eq!(m.inner.time_ns(), 1_700_000_000_000_000_000);
    assert_eq!(m.body(), PING_BODY.as_bytes());
    let transport = m.transport.as_ref().unwrap();
    assert_eq!(transport.reply_to(), CLIENT_REPLY_TO);
    assert_eq!(transport.hops().len(), 1);
    // The secure layer inside is the signed v1_secure_request fixture, verbatim.
    let Some(Secure::V1Request(secure)) = &m.secure else {
        panic!("no secure request")
    };
    let file: v1::SecureRequest =
        serde_json::from_slice(&synthetic("v1_secure_request.json")).unwrap();
    assert_eq!(secure, &file);
    assert!(matches!(
        verify::verify_v1_request(secure),
        Ok(Verified::Signed { .. })
    ));
    // Encoding gives back the wire bytes exactly.
    assert_eq!(text(&transport.encode()), text(&wire));
}

#[test]
fn v1_transport_reply_all_layers() {
    let t: v1::Transport = roundtrip("v1_transport_reply.json");
    assert!(t.headers.reply_to.is_empty());
    assert_eq!(t.headers.sender, "node1.example.net");

    let wire = synthetic("v1_transport_reply.wire");
    let m = rpc(&wire);
    assert_eq!(m.inner.direction(), Direction::Reply);
    assert_eq!(m.inner.sender(), "node1.example.net");
    assert_eq!(m.inner.request_id(), REQ_ID);
    assert_eq!(m.inner.agent(), "rpcutil");
    assert_eq!(m.inner.collective(), None);
    assert_eq!(m.inner.time_ns(), 1_700_000_001_000_000_000);
    assert_eq!(m.body(), PONG_BODY.as_bytes());
    let Some(Secure::V1Reply(secure)) = &m.secure else {
        panic!("no secure reply")
    };
    assert_eq!(verify::verify_v1_reply(secure), Ok(Verified::HashOnly));
    assert_eq!(text(&m.transport.unwrap().encode()), text(&wire));
}

#[test]
fn v1_transport_registration() {
    let t: v1::Transport = roundtrip("v1_transport_registration.json");
    assert_eq!(t.headers.reply_to, "dev.null");
    let m = rpc(&synthetic("v1_transport_registration.json"));
    assert_eq!(m.inner.agent(), "registration");
    assert_eq!(m.inner.sender(), "node1.example.net");
    assert_eq!(m.inner.request_id(), "5b1d1e0f0b7a4b8f9c2d3e4f5a6b7c8d");
    let Some(Secure::V1Request(secure)) = &m.secure else {
        panic!("no secure request")
    };
    assert!(matches!(
        verify::verify_v1_request(secure),
        Ok(Verified::Signed { .. }) | Ok(Verified::Insecure { .. })
    ));
    let record = Record::from_rpc(
        "mcollective.broadcast.agent.registration",
        m.clone(),
        Default::default(),
    );
    assert_eq!(record.kind, Kind::Registration);
    let reg = Registration::decode(m.body()).unwrap();
    assert!(reg.is_compressed());
    assert_eq!(reg.content(&Limits::DEFAULT).unwrap(), b"country: mt\n");

    // And Go's adapter output for it, byte for byte.
    let doc = ChoriaStreamsOutput::from_message(&m).unwrap();
    assert_eq!(
        text(&gojson::to_vec_indented(&doc)),
        text(&synthetic("adapter_choria_streams_output.json"))
    );
    assert_eq!(
        ChoriaStreamsOutput::from_record(&record).unwrap().unwrap(),
        doc
    );
}

#[test]
fn ruby_line_wrapped_data_decodes_and_is_kept() {
    let wire = synthetic("v1_transport_reply.wire");
    let mut t: v1::Transport = serde_json::from_slice(&wire).unwrap();
    // Ruby's Base64.encode64 breaks lines every 60 characters.
    let wrapped: String = t
        .data
        .as_bytes()
        .chunks(60)
        .map(|c| format!("{}\n", text(c)))
        .collect();
    t.data = wrapped.clone();
    let bytes = gojson::to_vec(&t);
    let m = rpc(&bytes);
    assert_eq!(m.body(), PONG_BODY.as_bytes());
    let Some(Transport::V1(back)) = &m.transport else {
        panic!()
    };
    assert_eq!(
        back.data, wrapped,
        "forwarding keeps the data text as received"
    );
    assert_eq!(m.transport.unwrap().encode(), bytes);
}

// ---------------------------------------------------------------- federation

#[test]
fn federation_fixtures_fields() {
    let f1: v1::Transport = roundtrip("fed_1_client_to_federation_broadcast.json");
    let fed = f1.headers.federation.as_ref().unwrap();
    assert_eq!(fed.req, REQ_ID);
    assert!(fed.reply_to.is_empty());
    assert_eq!(fed.target, ["mcollective.broadcast.agent.rpcutil"]);
    assert_eq!(f1.headers.reply_to, CLIENT_REPLY_TO);

    let f1b: v1::Transport = roundtrip("fed_1b_client_to_federation_directed.json");
    assert_eq!(
        f1b.headers.federation.as_ref().unwrap().target,
        [
            "mcollective.node.node1.example.net",
            "mcollective.node.node2.example.net"
        ]
    );

    let f2: v1::Transport = roundtrip("fed_2_broker_to_collective.json");
    assert_eq!(f2.headers.reply_to, "choria.federation.london.collective");
    assert_eq!(f2.headers.seen_by.len(), 2);
    let fed2 = f2.headers.federation.as_ref().unwrap();
    assert_eq!(fed2.reply_to, CLIENT_REPLY_TO);
    assert!(fed2.target.is_empty());

    let f3: v1::Transport = roundtrip("fed_3_server_reply_to_collective.json");
    assert_eq!(f3.headers.sender, "node1.example.net");
    assert_eq!(f3.headers.seen_by.len(), 3);
    assert_eq!(
        f3.headers.federation.as_ref().unwrap().reply_to,
        CLIENT_REPLY_TO
    );

    let f4: v1::Transport = roundtrip("fed_4_broker_reply_to_client.json");
    assert!(f4.headers.federation.is_none());
    assert_eq!(f4.headers.seen_by.len(), 4);

    // The signed request inside survives every hop untouched.
    assert_eq!(f1.data, f2.data);
    assert_eq!(f3.data, f4.data);
    for name in [
        "fed_1_client_to_federation_broadcast.json",
        "fed_2_broker_to_collective.json",
    ] {
        let m = rpc(&synthetic(name));
        assert_eq!(m.inner.request_id(), REQ_ID);
        assert_eq!(m.body(), PING_BODY.as_bytes());
        let Some(Secure::V1Request(s)) = &m.secure else {
            panic!()
        };
        assert!(matches!(
            verify::verify_v1_request(s),
            Ok(Verified::Signed { .. })
        ));
    }
    for name in [
        "fed_3_server_reply_to_collective.json",
        "fed_4_broker_reply_to_client.json",
    ] {
        let m = rpc(&synthetic(name));
        assert_eq!(m.inner.sender(), "node1.example.net");
        assert_eq!(m.body(), PONG_BODY.as_bytes());
    }
}

#[test]
fn request_side_edit_turns_fed_1_into_fed_2() {
    let f1: v1::Transport =
        serde_json::from_slice(&synthetic("fed_1_client_to_federation_broadcast.json")).unwrap();
    let (mut out, targets) = federation::transform_request(&Transport::V1(f1), "london").unwrap();
    assert_eq!(targets, ["mcollective.broadcast.agent.rpcutil"]);
    out.record_hop(
        "nats://fedbroker1.example.net:4222",
        &federation::hop_processor("fb1.example.net", Side::Request, 0, 3, 7),
        "nats://broker1.example.net:4222",
    );
    let Transport::V1(out) = out else { panic!() };
    assert_eq!(
        text(&gojson::to_vec_indented(&out)),
        text(&synthetic("fed_2_broker_to_collective.json"))
    );
}

#[test]
fn request_side_edit_on_directed_request() {
    let f1b: v1::Transport =
        serde_json::from_slice(&synthetic("fed_1b_client_to_federation_directed.json")).unwrap();
    let (out, targets) =
        federation::transform_request(&Transport::V1(f1b.clone()), "london").unwrap();
    assert_eq!(
        targets,
        [
            "mcollective.node.node1.example.net",
            "mcollective.node.node2.example.net"
        ]
    );
    assert_eq!(out.reply_to(), "choria.federation.london.collective");
    let fed = out.federation().unwrap();
    assert_eq!(fed.reply_to, CLIENT_REPLY_TO);
    assert_eq!(fed.request_id, REQ_ID);
    assert!(fed.targets.is_empty());
    assert_eq!(out.data_bytes().unwrap(), f1b.data_bytes().unwrap());
}

#[test]
fn reply_side_edit_turns_fed_3_into_fed_4() {
    let f3: v1::Transport =
        serde_json::from_slice(&synthetic("fed_3_server_reply_to_collective.json")).unwrap();
    let (mut out, targets) = federation::transform_reply(&Transport::V1(f3)).unwrap();
    assert_eq!(targets, [CLIENT_REPLY_TO]);
    out.record_hop(
        "nats://broker1.example.net:4222",
        &federation::hop_processor("fb1.example.net", Side::Reply, 2, 5, 1),
        "nats://fedbroker1.example.net:4222",
    );
    let Transport::V1(out) = out else { panic!() };
    assert_eq!(
        text(&gojson::to_vec_indented(&out)),
        text(&synthetic("fed_4_broker_reply_to_client.json"))
    );
}

#[test]
fn v2_federated_request() {
    let t: v2::Transport = roundtrip("v2_transport_federated_request.json");
    let h = t.headers.as_ref().unwrap();
    let fed = h.federation.as_ref().unwrap();
    assert_eq!(fed.request, "2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p");
    assert_eq!(fed.targets, ["choria.broadcast.agent.rpcutil"]);
    assert_eq!(
        h.reply,
        "choria.reply.7419405695a186147a0de38f7e31a509.2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p"
    );

    let (out, targets) = federation::transform_request(&Transport::V2(t.clone()), "tokyo").unwrap();
    assert_eq!(targets, ["choria.broadcast.agent.rpcutil"]);
    let Transport::V2(ref o) = out else { panic!() };
    let oh = o.headers.as_ref().unwrap();
    assert_eq!(oh.reply, "choria.federation.tokyo.collective");
    let ofed = oh.federation.as_ref().unwrap();
    assert_eq!(ofed.reply, h.reply);
    assert_eq!(ofed.request, fed.request);
    assert!(ofed.targets.is_empty());
    assert_eq!(o.data, t.data);
    // v2 keys on the wire: `reply`/`targets`, never the v1 names.
    let json = text(&out.encode());
    assert!(json.contains(
        r#""federation":{"request":"2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p","reply":"choria.reply."#
    ));
    assert!(!json.contains("reply-to") && !json.contains("\"target\""));

    let (back, targets) = federation::transform_reply(&out).unwrap();
    assert_eq!(targets, std::slice::from_ref(&h.reply));
    assert!(back.federation().is_none());
}

// ---------------------------------------------------------------- v2 layers

#[test]
fn v2_request_and_reply_layers() {
    let r: v2::Request = roundtrip("v2_request.json");
    assert_eq!(r.id, "2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p");
    assert_eq!(r.sender, "client.example.net");
    assert_eq!(r.caller, "up=rip");
    assert_eq!(r.collective, "choria");
    assert_eq!(r.agent, "rpcutil");
    assert_eq!(r.ttl, 60);
    assert_eq!(r.time, 1_700_000_000_000_000_000);
    assert_eq!(r.message_bytes().unwrap(), PING_BODY.as_bytes());
    assert_eq!(r.filter.as_ref().unwrap().agent, ["rpcutil"]);

    let p: v2::Reply = roundtrip("v2_reply.json");
    assert_eq!(
        p.protocol, "io.choria.protocol.v2.reply",
        "the wire wins over the schema"
    );
    assert_eq!(p.request, r.id);
    assert_eq!(p.sender, "node1.example.net");
    assert_eq!(p.time, 1_700_000_001_000_000_000);
    assert_eq!(p.message_bytes().unwrap(), PONG_BODY.as_bytes());
}

#[test]
fn v2_secure_request_verifies_against_the_issuer() {
    let s: v2::SecureRequest = roundtrip("v2_secure_request.json");
    assert!(s.signer.is_empty());
    let key = issuer();
    let at = |now| TrustAnchor {
        issuer: Some(&key),
        now,
    };
    assert_eq!(
        verify::verify_v2_request(&s, Some("up=rip"), &at(1_700_000_100)).unwrap(),
        Verified::Signed {
            signer: "up=rip".into()
        }
    );
    // A request naming another caller than its token is refused.
    assert!(matches!(
        verify::verify_v2_request(&s, Some("up=bob"), &at(1_700_000_100)),
        Err(VerifyError::Denied(_))
    ));
    // Past the token's exp (1700003600) it is refused.
    assert!(matches!(
        verify::verify_v2_request(&s, Some("up=rip"), &at(1_700_003_601)),
        Err(VerifyError::Token { role: "caller", .. })
    ));
    // Another issuer did not sign the token.
    let other = [7u8; 32];
    let wrong = TrustAnchor {
        issuer: Some(&other),
        now: 1_700_000_100,
    };
    assert!(matches!(
        verify::verify_v2_request(&s, Some("up=rip"), &wrong),
        Err(VerifyError::Token { .. })
    ));
    // A changed request breaks the ed25519 signature.
    let mut tampered = s.clone();
    let body = text(&s.request_bytes().unwrap()).replace("\"ttl\":60", "\"ttl\":61");
    tampered.request = protocol::b64_encode(body.as_bytes());
    assert_eq!(
        verify::verify_v2_request(&tampered, Some("up=rip"), &at(1_700_000_100)),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn v2_secure_reply_hash_and_signature_verify() {
    let s: v2::SecureReply = roundtrip("v2_secure_reply.json");
    let key = issuer();
    let anchor = TrustAnchor {
        issuer: Some(&key),
        now: 1_700_000_100,
    };
    assert_eq!(
        verify::verify_v2_reply(&s, &anchor).unwrap(),
        Verified::Signed {
            signer: "node1.example.net".into()
        }
    );
    let mut tampered = s.clone();
    tampered.hash = protocol::b64_encode(&[0u8; 32]);
    assert_eq!(
        verify::verify_v2_reply(&tampered, &anchor),
        Err(VerifyError::BadHash)
    );
}

#[test]
fn v2_transport_request_all_layers() {
    let t: v2::Transport = roundtrip("v2_transport_request.json");
    let h = t.headers.as_ref().unwrap();
    assert_eq!(h.sender, "client.example.net");
    assert_eq!(h.trace.len(), 1);
    assert!(h.federation.is_none());

    let m = rpc(&synthetic("v2_transport_request.json"));
    assert_eq!(m.version(), Version::V2);
    assert_eq!(m.inner.request_id(), "2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p");
    assert_eq!(m.inner.caller(), Some("up=rip"));
    assert_eq!(m.inner.collective(), Some("choria"));
    assert_eq!(m.inner.time_ns(), 1_700_000_000_000_000_000);
    assert_eq!(m.body(), PING_BODY.as_bytes());
    let key = issuer();
    let anchor = TrustAnchor {
        issuer: Some(&key),
        now: 1_700_000_100,
    };
    let secure = m.secure.as_ref().unwrap();
    assert_eq!(
        verify::verify(secure, m.inner.caller(), &anchor).unwrap(),
        Verified::Signed {
            signer: "up=rip".into()
        }
    );
    let out = ChoriaStreamsOutput::from_message(&m).unwrap();
    assert_eq!(out.data, PING_BODY, "v2 data is the decoded body");
    assert_eq!(out.time, "2023-11-14T22:13:20Z");
}

#[test]
fn v2_transport_reply_all_layers() {
    let _: v2::Transport = roundtrip("v2_transport_reply.json");
    let m = rpc(&synthetic("v2_transport_reply.json"));
    assert_eq!(m.inner.direction(), Direction::Reply);
    assert_eq!(m.inner.sender(), "node1.example.net");
    assert_eq!(m.inner.request_id(), "2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p");
    assert_eq!(m.body(), PONG_BODY.as_bytes());
    assert!(matches!(m.inner, Inner::V2Reply(_)));
    let record = Record::from_rpc("choria.reply.x", m, Default::default());
    assert_eq!(record.kind, Kind::Reply);
    assert_eq!(record.version, Version::V2);
    assert_eq!(
        record.idempotency_key(),
        "node1.example.net.2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p.1700000001000000000"
    );
}

// ---------------------------------------------------------------- payloads

#[test]
fn registration_file_content() {
    let plain: coro::core::protocol::registration::FileContent =
        roundtrip("registration_filecontent_plain.json");
    assert_eq!(plain.mtime, 1_700_000_000);
    assert_eq!(plain.file, "/etc/node/metadata.yaml");
    assert!(!plain.updated);
    let gz: coro::core::protocol::registration::FileContent =
        roundtrip("registration_filecontent_gzip.json");
    assert!(gz.content.is_empty());
    for name in [
        "registration_filecontent_plain.json",
        "registration_filecontent_gzip.json",
    ] {
        let reg = Registration::decode(&synthetic(name)).unwrap();
        assert_eq!(
            reg.content(&Limits::DEFAULT).unwrap(),
            b"country: mt\n",
            "{name}"
        );
    }
}

#[test]
fn registration_inventory_content() {
    let plain =
        Registration::decode(&synthetic("registration_inventorycontent_plain.json")).unwrap();
    assert!(!plain.is_compressed());
    let gz = Registration::decode(&synthetic("registration_inventorycontent_gzip.json")).unwrap();
    assert!(gz.is_compressed());
    let a: serde_json::Value =
        serde_json::from_slice(&plain.content(&Limits::DEFAULT).unwrap()).unwrap();
    let b: serde_json::Value =
        serde_json::from_slice(&gz.content(&Limits::DEFAULT).unwrap()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a["status"]["identity"], "node1.example.net");
    assert_eq!(a["agents"][0]["author"], "R.I.Pienaar <rip@devco.net>");
    assert_eq!(a["facts"]["country"], "mt");
    // The plain content is kept byte for byte, Go escapes and all.
    assert!(text(&plain.content(&Limits::DEFAULT).unwrap())
        .contains(r#"R.I.Pienaar \u003crip@devco.net\u003e"#));
}

#[test]
fn go_file_content_test_payloads() {
    let sample = fixture("go-choria/providers/registration/testdata/sample.json");
    for name in ["registration_content", "registration_zcontent"] {
        let path = format!("go-choria/extracted-from-tests/file_content_test.{name}.json");
        let bytes = fixture(&path);
        let reg = Registration::decode(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        let Registration::FileContent(f) = &reg else {
            panic!()
        };
        assert_eq!(f.mtime, 1_511_865_541);
        assert_eq!(f.file, "testdata/sample.json");
        assert_eq!(reg.content(&Limits::DEFAULT).unwrap(), sample, "{path}");
        // Go's exact bytes come back out.
        let mut trimmed = bytes.clone();
        while trimmed.last() == Some(&b'\n') {
            trimmed.pop();
        }
        assert_eq!(text(&gojson::to_vec(f)), text(&trimmed));
    }
}

#[test]
fn lifecycle_events_both_forms() {
    for (name, format) in [
        ("lifecycle_test.startup_legacy_format.json", Format::Legacy),
        (
            "lifecycle_test.startup_cloudevents_format.json",
            Format::CloudEvents,
        ),
    ] {
        let bytes = fixture(&format!("go-choria/extracted-from-tests/{name}"));
        let Message::Lifecycle(e) = protocol::decode(&bytes).unwrap() else {
            panic!("{name}")
        };
        assert_eq!(e.format, format);
        assert_eq!(e.event_type, EventType::Startup);
        assert_eq!(e.protocol, "io.choria.lifecycle.v1.startup");
        assert_eq!(e.id, "01e72410-d734-4611-9485-8c6a2dd2579b");
        assert_eq!(e.identity, "ginkgo.example.net");
        assert_eq!(e.component, "ginkgo");
        assert_eq!(e.timestamp, 1_535_106_973);
        assert_eq!(e.version.as_deref(), Some("1.2.3"));
        let record =
            Record::from_lifecycle("choria.lifecycle.event.startup.ginkgo", e, bytes.into());
        assert_eq!(record.kind, Kind::Lifecycle);
        assert_eq!(record.sender, "ginkgo.example.net");
    }
}

#[test]
fn captured_2017_transport() {
    let bytes = fixture("ripienaar-choriapi/README_captured_transport.json");
    let m = rpc(&bytes);
    assert_eq!(m.inner.sender(), "f35711d");
    assert_eq!(m.inner.agent(), "temperature");
    assert_eq!(m.inner.request_id(), "bbb95c73eadb41c39f82a7eedffecee1");
    assert_eq!(m.inner.caller(), Some("choria=f35711d"));
    assert_eq!(m.inner.time_ns(), 1_512_427_002_000_000_000);
    let t = m.transport.as_ref().unwrap();
    assert_eq!(t.reply_to(), "dev.null");
    assert_eq!(
        t.hops(),
        [hop(
            "nats://demo.nats.io:4222",
            "f35711d",
            "nats://demo.nats.io:4222"
        )]
    );
    assert!(matches!(
        verify::verify(
            m.secure.as_ref().unwrap(),
            None,
            &TrustAnchor {
                issuer: None,
                now: 0
            }
        ),
        Ok(Verified::Insecure { marker: "insecure" })
    ));
    // This old sender put base64 in `message`; the body stays exactly that text.
    let decoded = b64_decode(Layer::Request, "message", &text(m.body())).unwrap();
    assert_eq!(
        text(&decoded),
        r#"{"temperature":18.8,"humidy":56.5,"time":"2017-12-04T22:36:42.636619913Z"}"#
    );
    assert_eq!(t.encode(), bytes.strip_suffix(b"\n").unwrap_or(&bytes));
}

#[test]
fn every_synthetic_message_decodes() {
    let dir = common::fixtures_dir().join("synthetic");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let is_payload = name.starts_with("registration_")
            || name.starts_with("adapter_")
            || name.ends_with(".txt");
        if is_payload {
            continue;
        }
        let m = rpc(&bytes);
        assert!(!m.inner.request_id().is_empty(), "{name}");
        assert!(!m.inner.sender().is_empty(), "{name}");
        seen += 1;
    }
    assert!(
        seen >= 24,
        "only {seen} messages found in {}",
        dir.display()
    );
}

#[test]
fn hops_of_any_length_are_kept() {
    // Ruby appends two-element hops; anything else is kept as received too.
    let wire = synthetic("v1_transport_reply.wire");
    let mut t: v1::Transport = serde_json::from_slice(&wire).unwrap();
    t.headers.seen_by = vec![
        vec!["nats://a:4222".into(), "ruby.example.net".into()],
        vec![],
        vec!["1".into(), "2".into(), "3".into(), "4".into()],
    ];
    let bytes = gojson::to_vec(&t);
    assert!(text(&bytes)
        .contains(r#""seen-by":[["nats://a:4222","ruby.example.net"],[],["1","2","3","4"]]"#));
    let m = rpc(&bytes);
    let transport = m.transport.as_ref().unwrap();
    assert_eq!(transport.hops(), t.headers.seen_by.as_slice());
    assert_eq!(transport.encode(), bytes);
}
