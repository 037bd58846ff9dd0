//! go-choria's protocol and federation transformer tests (PROTOCOL.md §7), ported with
//! the same inputs and expectations. Go's mocks for signing are replaced by real keys.

mod common;

use base64::Engine;
use coro::core::gojson;
use coro::core::protocol::federation::{self, FederationError};
use coro::core::protocol::transport::FederationHeader;
use coro::core::protocol::verify::{self, TrustAnchor, Verified, VerifyError};
use coro::core::protocol::{
    self, b64_encode, v1, v2, Filter, Message, Protocol, Secure, Transport, Version,
};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

const RID: &str = "a2f0ca717c694f2086cfa81b6c494648";
const NOW: i64 = 1_700_000_000;

fn protocol_of(json: &[u8]) -> Option<Protocol> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    Protocol::from_name(v["protocol"].as_str()?)
}

fn v1_request(caller: &str, message: &str) -> v1::Request {
    let mut r = v1::Request::new("test", "go.tests", caller, 120, RID, "mcollective", NOW);
    r.message = message.to_string();
    r
}

// ------------------------------------------------------------ protocol/v1

/// Go's `NewTransportMessage("rip.mcollective")` with the secure layer set.
fn from_rip(secure_json: &[u8]) -> v1::Transport {
    let headers = v1::Headers {
        sender: "rip.mcollective".into(),
        ..Default::default()
    };
    v1::Transport::new(secure_json, headers)
}

#[test]
fn v1_transport_supports_reply_data() {
    let req = v1_request("rip.mcollective", r#"{"message":1}"#);
    let reply = v1::Reply::for_request(&req, "testing", NOW, &gojson::to_string(&req));
    let sreply = v1::SecureReply::new(&gojson::to_string(&reply));
    let sj = gojson::to_vec(&sreply);
    let t = from_rip(&sj);
    let tj = gojson::to_vec(&t);
    assert_eq!(protocol_of(&tj), Some(Protocol::Transport(Version::V1)));
    assert_eq!(t.headers.sender, "rip.mcollective");
    assert_eq!(t.data_bytes().unwrap(), sj);
}

#[test]
fn v1_transport_supports_request_data_and_rejects_bad_json() {
    let req = v1_request("rip.mcollective", "hello world");
    let sreq = v1::SecureRequest::insecure(&gojson::to_string(&req));
    let sj = gojson::to_vec(&sreq);
    let t = from_rip(&sj);
    let tj = gojson::to_vec(&t);
    assert_eq!(protocol_of(&tj), Some(Protocol::Transport(Version::V1)));
    assert_eq!(t.data_bytes().unwrap(), sj);
    // Creation from JSON.
    assert!(protocol::decode(&tj).is_ok());
    let e = protocol::decode(br#"{"protocol": 1}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "payload: wrong type: protocol must be a string, found 1"
    );
}

#[test]
fn v1_request_is_constructed_correctly() {
    let mut req = v1::Request::new(
        "test",
        "go.tests",
        "choria=test",
        120,
        RID,
        "mcollective",
        NOW,
    );
    let filtered = !req.envelope.filter.as_ref().unwrap().is_empty();
    req.message = "hello world".into();
    let j = gojson::to_vec(&req);
    assert_eq!(protocol_of(&j), Some(Protocol::Request(Version::V1)));
    let Message::Rpc(m) = protocol::decode(&j).unwrap() else {
        panic!()
    };
    assert_eq!(m.body(), b"hello world", "v1 messages are raw, not base64");
    assert_eq!(m.inner.request_id().len(), 32);
    assert_eq!(m.inner.sender(), "go.tests");
    assert_eq!(m.inner.caller(), Some("choria=test"));
    assert_eq!(m.inner.collective(), Some("mcollective"));
    assert_eq!(m.inner.agent(), "test");
    assert_eq!(m.inner.ttl(), Some(120));
    assert_eq!(m.inner.time_ns(), i128::from(NOW) * 1_000_000_000);
    assert!(!filtered);
    let filter = req.envelope.filter.as_mut().unwrap();
    filter.add_agent("rpcutil");
    assert!(!filter.is_empty());
    filter.add_agent("other");
    assert!(!filter.is_empty());
    // Go always emits the five filter keys.
    assert!(
        gojson::to_string(&v1::Request::new("a", "b", "c", 60, RID, "d", 1)).contains(
            r#""filter":{"fact":[],"cf_class":[],"agent":[],"identity":[],"compound":[]}"#
        )
    );
}

#[test]
fn v1_reply_is_created_from_a_request() {
    let req = v1_request("choria=test", "hello world");
    let reply = v1::Reply::for_request(&req, "testing", NOW + 1, "hello world");
    let j = gojson::to_vec(&reply);
    assert_eq!(protocol_of(&j), Some(Protocol::Reply(Version::V1)));
    assert_eq!(reply.message, "hello world");
    assert_eq!(reply.envelope.requestid.len(), 32);
    assert_eq!(reply.envelope.senderid, "testing");
    assert_eq!(reply.envelope.agent, "test");
    assert_eq!(reply.envelope.time, NOW + 1);
}

#[test]
fn v1_secure_request_insecure_mode() {
    let req = v1_request("rip.mcollective", r#"{"test":1}"#);
    let rj = gojson::to_string(&req);
    let s = v1::SecureRequest::insecure(&rj);
    assert_eq!(
        protocol_of(&gojson::to_vec(&s)),
        Some(Protocol::SecureRequest(Version::V1))
    );
    assert_eq!(s.message, rj);
    assert_eq!(s.pubcert, "insecure");
    assert_eq!(s.signature, "insecure");
}

#[test]
fn v1_secure_request_signed() {
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    let req = v1_request("rip.mcollective", r#"{"test":1}"#);
    let rj = gojson::to_string(&req);
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    let pem = "-----BEGIN CERTIFICATE-----\nstub\n-----END CERTIFICATE-----\n";
    let s = v1::SecureRequest::sign(&rj, pem, &key);
    assert_eq!(
        protocol_of(&gojson::to_vec(&s)),
        Some(Protocol::SecureRequest(Version::V1))
    );
    assert_eq!(s.message, rj);
    assert_eq!(s.pubcert, pem);
    // signature == base64(PKCS#1 v1.5 SHA-256 signature over the exact message).
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&s.signature)
        .unwrap();
    let sig = Signature::try_from(raw.as_slice()).unwrap();
    VerifyingKey::<Sha256>::new(key.to_public_key())
        .verify(rj.as_bytes(), &sig)
        .unwrap();
}

#[test]
fn v1_secure_reply_is_valid() {
    let req = v1_request("rip.mcollective", r#"{"test":1}"#);
    let reply = v1::Reply::for_request(&req, "testing", NOW, r#"{"test":1}"#);
    let rj = gojson::to_string(&reply);
    let s = v1::SecureReply::new(&rj);
    assert_eq!(
        protocol_of(&gojson::to_vec(&s)),
        Some(Protocol::SecureReply(Version::V1))
    );
    assert_eq!(s.message, rj);
    assert_eq!(s.hash, b64_encode(&Sha256::digest(rj.as_bytes())));
    assert_eq!(verify::verify_v1_reply(&s), Ok(Verified::HashOnly));
}

// ------------------------------------------------------------ protocol/v2

fn v2_request(agent: &str, caller: &str, message: &[u8]) -> v2::Request {
    let mut r = v2::Request::new(
        agent,
        "go.tests",
        caller,
        120,
        RID,
        "mcollective",
        NOW * 1_000_000_000,
    );
    r.set_message(message);
    r
}

#[test]
fn v2_request_is_constructed_correctly() {
    let mut req = v2_request("test", "choria=test", b"hello world");
    let j = gojson::to_vec(&req);
    assert_eq!(protocol_of(&j), Some(Protocol::Request(Version::V2)));
    let Message::Rpc(m) = protocol::decode(&j).unwrap() else {
        panic!()
    };
    assert_eq!(m.body(), b"hello world");
    assert_eq!(
        req.message, "aGVsbG8gd29ybGQ=",
        "v2 messages are base64 on the wire"
    );
    assert_eq!(m.inner.request_id().len(), 32);
    assert_eq!(m.inner.sender(), "go.tests");
    assert_eq!(m.inner.caller(), Some("choria=test"));
    assert_eq!(m.inner.collective(), Some("mcollective"));
    assert_eq!(m.inner.agent(), "test");
    assert_eq!(m.inner.ttl(), Some(120));
    let filter = req.filter.as_mut().unwrap();
    assert!(filter.is_empty());
    filter.add_agent("rpcutil");
    assert!(!filter.is_empty());
}

#[test]
fn v2_request_from_secure_request_is_validated() {
    // A secure request whose body is `{}` is not a request.
    let s = v2::SecureRequest {
        protocol: v2::SECURE_REQUEST.into(),
        request: b64_encode(b"{}"),
        signature: String::new(),
        caller: "caller.jwt".into(),
        signer: String::new(),
    };
    let e = protocol::decode(&gojson::to_vec(&s)).unwrap_err();
    assert_eq!(e.to_string(), "request: missing required field `protocol`");
    // A v1 secure request inside a v2 transport is refused.
    let v1s = gojson::to_vec(&v1::SecureRequest::insecure("{}"));
    let t = gojson::to_vec(&v2::Transport::new(&v1s, v2::Headers::default()));
    assert_eq!(
        protocol::decode(&t).unwrap_err().kind(),
        "protocol_mismatch"
    );
    // A valid one decodes, keeping the caller JWT.
    let j = gojson::to_vec(&v2_request("ginkgo", "choria=test", b"hello world"));
    let s = v2::SecureRequest {
        request: b64_encode(&j),
        ..s
    };
    let Message::Rpc(m) = protocol::decode(&gojson::to_vec(&s)).unwrap() else {
        panic!()
    };
    assert_eq!(m.inner.request_id(), RID);
    let Some(Secure::V2Request(sr)) = &m.secure else {
        panic!()
    };
    assert_eq!(sr.caller, "caller.jwt");
}

#[test]
fn v2_reply_is_created_from_a_request() {
    let req = v2_request("test", "choria=test", b"hello world");
    let reply = v2::Reply::for_request(&req, "testing", NOW * 1_000_000_000 + 5, b"hello world");
    let j = gojson::to_vec(&reply);
    assert_eq!(protocol_of(&j), Some(Protocol::Reply(Version::V2)));
    assert_eq!(reply.message_bytes().unwrap(), b"hello world");
    assert_eq!(reply.request.len(), 32);
    assert_eq!(reply.sender, "testing");
    assert_eq!(reply.agent, "test");
    // A reply with unknown keys only is not a reply.
    let bad = v2::SecureReply::new(br#"{"x":"y"}"#);
    assert_eq!(
        protocol::decode(&gojson::to_vec(&bad))
            .unwrap_err()
            .to_string(),
        "reply: missing required field `protocol`"
    );
    let sreply = v2::SecureReply::new(&j);
    let Message::Rpc(m) = protocol::decode(&gojson::to_vec(&sreply)).unwrap() else {
        panic!()
    };
    assert_eq!(m.inner.sender(), "testing");
}

#[test]
fn v2_transport_request_and_reply_data() {
    let req = v2_request("test", "rip.mcollective", br#"{"message":1}"#);
    let key = SigningKey::from_bytes(&[1; 32]);
    let sreq = v2::SecureRequest::sign(&gojson::to_vec(&req), "token", &key);
    let sj = gojson::to_vec(&sreq);
    let t = v2::Transport::new(
        &sj,
        v2::Headers {
            sender: "rip.mcollective".into(),
            ..Default::default()
        },
    );
    let tj = gojson::to_vec(&t);
    assert_eq!(protocol_of(&tj), Some(Protocol::Transport(Version::V2)));
    assert_eq!(t.headers.as_ref().unwrap().sender, "rip.mcollective");
    assert_eq!(t.data_bytes().unwrap(), sj);

    let reply = v2::Reply::for_request(&req, "testing", 1, b"{}");
    let sreply = v2::SecureReply::new(&gojson::to_vec(&reply));
    let sj = gojson::to_vec(&sreply);
    let t = v2::Transport::new(
        &sj,
        v2::Headers {
            sender: "rip.mcollective".into(),
            ..Default::default()
        },
    );
    assert_eq!(t.data_bytes().unwrap(), sj);
    assert!(protocol::decode(&gojson::to_vec(&t)).is_ok());
    let e = protocol::decode(br#"{"protocol": 1}"#).unwrap_err();
    assert!(e.to_string().contains("protocol must be a string"));
}

/// An org issuer, a caller and a delegator, with tokens minted here (header, claims,
/// ed25519 signature) rather than through the crate under test.
struct Org {
    issuer: SigningKey,
}

impl Org {
    fn new() -> Org {
        Org {
            issuer: SigningKey::from_bytes(&[9; 32]),
        }
    }

    fn public(&self) -> [u8; 32] {
        self.issuer.verifying_key().to_bytes()
    }

    fn jwt(key: &SigningKey, claims: serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!(
            "{}.{}",
            b64.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        );
        let sig = key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64.encode(sig.to_bytes()))
    }

    fn client(
        &self,
        callerid: &str,
        holder: &SigningKey,
        permissions: serde_json::Value,
    ) -> String {
        Org::jwt(
            &self.issuer,
            serde_json::json!({
                "callerid": callerid, "ou": "choria", "purpose": "choria_client_id",
                "public_key": hex::encode(holder.verifying_key().to_bytes()),
                "permissions": permissions,
                "iss": format!("I-{}", hex::encode(self.public())),
                "iat": NOW, "exp": NOW + 3600, "jti": "x",
            }),
        )
    }
}

fn sign_v2(
    req: &v2::Request,
    caller_jwt: &str,
    signer_jwt: &str,
    key: &SigningKey,
) -> v2::SecureRequest {
    let mut s = v2::SecureRequest::sign(&gojson::to_vec(req), caller_jwt, key);
    s.signer = signer_jwt.to_string();
    s
}

#[test]
fn v2_secure_request_validation() {
    let org = Org::new();
    let issuer = org.public();
    let anchor = TrustAnchor {
        issuer: Some(&issuer),
        now: NOW + 10,
    };
    let caller_key = SigningKey::from_bytes(&[2; 32]);
    let req = v2_request("ginkgo", "up=ginkgo", b"hello");

    // Signed by the caller, who has fleet management: valid.
    let caller = org.client(
        "up=ginkgo",
        &caller_key,
        serde_json::json!({"fleet_management": true}),
    );
    let s = sign_v2(&req, &caller, "", &caller_key);
    assert_eq!(
        verify::verify_v2_request(&s, Some("up=ginkgo"), &anchor),
        Ok(Verified::Signed {
            signer: "up=ginkgo".into()
        })
    );
    // Signed with another key than the token's: signature failure.
    let s_bad = sign_v2(&req, &caller, "", &SigningKey::from_bytes(&[3; 32]));
    assert_eq!(
        verify::verify_v2_request(&s_bad, Some("up=ginkgo"), &anchor),
        Err(VerifyError::BadSignature)
    );
    // A caller who needs delegation may not sign alone.
    let delegated_only = org.client(
        "up=ginkgo",
        &caller_key,
        serde_json::json!({"signed_fleet_management": true}),
    );
    let s = sign_v2(&req, &delegated_only, "", &caller_key);
    assert!(matches!(
        verify::verify_v2_request(&s, Some("up=ginkgo"), &anchor),
        Err(VerifyError::Denied(_))
    ));
    // Without fleet access: denied.
    let no_fleet = org.client("up=ginkgo", &caller_key, serde_json::json!({}));
    let s = sign_v2(&req, &no_fleet, "", &caller_key);
    assert!(matches!(
        verify::verify_v2_request(&s, Some("up=ginkgo"), &anchor),
        Err(VerifyError::Denied(_))
    ));

    // Delegated: the AAA signer signs, with the delegator permission.
    let aaa_key = SigningKey::from_bytes(&[4; 32]);
    let aaa = org.client(
        "aaa=signer",
        &aaa_key,
        serde_json::json!({"authentication_delegator": true}),
    );
    let s = sign_v2(&req, &delegated_only, &aaa, &aaa_key);
    assert_eq!(
        verify::verify_v2_request(&s, Some("up=ginkgo"), &anchor),
        Ok(Verified::Signed {
            signer: "aaa=signer".into()
        })
    );
    // A signer without the delegator permission is refused.
    let not_aaa = org.client(
        "aaa=signer",
        &aaa_key,
        serde_json::json!({"fleet_management": true}),
    );
    let s = sign_v2(&req, &delegated_only, &not_aaa, &aaa_key);
    assert!(matches!(
        verify::verify_v2_request(&s, Some("up=ginkgo"), &anchor),
        Err(VerifyError::Denied(_))
    ));

    // Insecure operation: the signature says so and nothing is checked.
    let mut s = sign_v2(&req, "", "", &caller_key);
    s.signature = b64_encode(b"insecure");
    assert_eq!(
        verify::verify_v2_request(
            &s,
            None,
            &TrustAnchor {
                issuer: None,
                now: 0
            }
        ),
        Ok(Verified::Insecure { marker: "insecure" })
    );
}

#[test]
fn v2_chain_issuer_tokens() {
    let org = Org::new();
    let issuer = org.public();
    let chain = SigningKey::from_bytes(&[5; 32]);
    let chain_pk = hex::encode(chain.verifying_key().to_bytes());
    let chain_id = "2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p";
    let org_tcs = hex::encode(
        org.issuer
            .sign(format!("{chain_id}.{chain_pk}").as_bytes())
            .to_bytes(),
    );
    let jti = "0ujsswThIGTUYm2K8FjOOfXtY1K";
    let chain_sig = hex::encode(chain.sign(format!("{jti}.{org_tcs}").as_bytes()).to_bytes());
    let holder = SigningKey::from_bytes(&[6; 32]);
    let claims = |issexp: i64| {
        serde_json::json!({
            "callerid": "up=chained", "purpose": "choria_client_id",
            "public_key": hex::encode(holder.verifying_key().to_bytes()),
            "permissions": {"fleet_management": true},
            "iss": format!("C-{chain_id}.{chain_pk}"), "tcs": format!("{org_tcs}.{chain_sig}"),
            "issexp": issexp, "iat": NOW, "exp": NOW + 3600, "jti": jti,
        })
    };
    let req = v2_request("ginkgo", "up=chained", b"hello");
    let anchor = TrustAnchor {
        issuer: Some(&issuer),
        now: NOW + 10,
    };

    let token = Org::jwt(&chain, claims(NOW + 7200));
    let s = sign_v2(&req, &token, "", &holder);
    assert_eq!(
        verify::verify_v2_request(&s, Some("up=chained"), &anchor),
        Ok(Verified::Signed {
            signer: "up=chained".into()
        })
    );
    // The issuer's own expiry bounds the token's.
    let token = Org::jwt(&chain, claims(NOW + 5));
    let s = sign_v2(&req, &token, "", &holder);
    assert!(matches!(
        verify::verify_v2_request(&s, Some("up=chained"), &anchor),
        Err(VerifyError::Token { .. })
    ));
    // A chain issuer the org never signed is refused.
    let rogue = Org {
        issuer: SigningKey::from_bytes(&[8; 32]),
    };
    let rogue_pk = rogue.public();
    let s = sign_v2(&req, &Org::jwt(&chain, claims(NOW + 7200)), "", &holder);
    assert!(matches!(
        verify::verify_v2_request(
            &s,
            Some("up=chained"),
            &TrustAnchor {
                issuer: Some(&rogue_pk),
                now: NOW + 10
            }
        ),
        Err(VerifyError::Token { .. })
    ));
}

// ------------------------------------------------------------ protocol/filter

#[test]
fn filter_adders_deduplicate_and_validate() {
    let mut f = Filter::default();
    assert!(f.is_empty());
    for c in ["testing1", "testing2", "testing2"] {
        f.add_class(c);
    }
    assert_eq!(f.cf_class, ["testing1", "testing2"]);
    for a in ["agent1", "agent1", "agent2", ""] {
        f.add_agent(a);
    }
    assert_eq!(f.agent, ["agent1", "agent2"]);
    for i in ["id1", "id1", "id2"] {
        f.add_identity(i);
    }
    assert_eq!(f.identity, ["id1", "id2"]);
    f.add_compound(r#"match("apache")"#);
    f.add_compound(r#"match("choria")"#);
    f.add_compound("");
    assert_eq!(f.compound.len(), 2);
    assert_eq!(
        f.compound[0],
        serde_json::json!([{"expr": "match(\"apache\")"}])
    );
    assert!(f.add_fact("test1", ">=", "1").is_ok());
    assert!(f.add_fact("test2", ">=", "2").is_ok());
    assert_eq!(
        f.add_fact("test3", "foo", "3").unwrap_err().to_string(),
        "foo is not a valid fact operator"
    );
    let facts: Vec<_> = f
        .fact
        .iter()
        .map(|x| [x.fact.as_str(), x.operator.as_str(), x.value.as_str()])
        .collect();
    assert_eq!(facts, [["test1", ">=", "1"], ["test2", ">=", "2"]]);
}

// ------------------------------------------------------------ broker/federation

/// A v1 transport from `rip.mcollective` around a signed-looking request, like the Go
/// tests build with `NewTransportForSecureRequest`.
fn transport() -> Transport {
    let req = v1::Request::new(
        "test",
        "tester",
        "choria=tester",
        60,
        RID,
        "mcollective",
        NOW,
    );
    let s = v1::SecureRequest::insecure(&gojson::to_string(&req));
    Transport::V1(v1::Transport::new(
        &gojson::to_vec(&s),
        v1::Headers {
            sender: "rip.mcollective".into(),
            ..Default::default()
        },
    ))
}

fn federate(t: &mut Transport, targets: &[&str], reply_to: &str) {
    t.set_federation(Some(FederationHeader {
        request_id: RID.into(),
        reply_to: reply_to.into(),
        targets: targets.iter().map(|s| s.to_string()).collect(),
    }));
}

#[test]
fn request_transformer_transforms() {
    let mut t = transport();
    federate(&mut t, &["mcollective.discovery"], "");
    t.set_reply_to("mcollective.reply");
    let (out, targets) = federation::transform_request(&t, "testing").unwrap();
    assert_eq!(out.reply_to(), "choria.federation.testing.collective");
    let fed = out.federation().unwrap();
    assert_eq!(fed.request_id, RID);
    assert_eq!(fed.reply_to, "mcollective.reply");
    assert!(fed.targets.is_empty());
    assert_eq!(targets, ["mcollective.discovery"]);
    assert_eq!(out.data_bytes().unwrap(), t.data_bytes().unwrap());
}

#[test]
fn request_transformer_failures() {
    assert_eq!(
        federation::transform_request(&transport(), "testing").unwrap_err(),
        FederationError::NotFederated
    );
    let mut t = transport();
    federate(&mut t, &[], "");
    assert_eq!(
        federation::transform_request(&t, "testing").unwrap_err(),
        FederationError::NoTargets
    );
    let mut t = transport();
    federate(&mut t, &["reply.1"], "");
    assert_eq!(
        federation::transform_request(&t, "testing").unwrap_err(),
        FederationError::NoReplyTo
    );
}

#[test]
fn reply_transformer_transforms_and_fails() {
    let mut t = transport();
    federate(&mut t, &[], "mcollective.reply");
    let (out, targets) = federation::transform_reply(&t).unwrap();
    assert_eq!(targets, ["mcollective.reply"]);
    assert!(
        out.federation().is_none(),
        "the federation header is removed"
    );

    assert_eq!(
        federation::transform_reply(&transport()).unwrap_err(),
        FederationError::NotFederated
    );
    let mut t = transport();
    federate(&mut t, &[], "");
    assert_eq!(
        federation::transform_reply(&t).unwrap_err(),
        FederationError::NoReplyTo
    );
}

#[test]
fn hops_are_recorded_in_order() {
    let mut t = transport();
    assert!(t.hops().is_empty());
    t.record_hop("ginkgo.in", "server1", "ginkgo.out");
    t.record_hop("ginkgo.in", "server2", "ginkgo.out");
    assert_eq!(t.hops().len(), 2);
    assert_eq!(t.hops()[0], ["ginkgo.in", "server1", "ginkgo.out"]);
}

/// The node the go-choria filter tests describe: facts from `protocol/testdata/facts.yaml`,
/// classes from `classes.txt`.
fn test_node() -> coro::core::protocol::NodeInfo {
    let facts: serde_json::Value =
        serde_yaml_ng::from_slice(&common::fixture("go-choria/protocol/testdata/facts.yaml"))
            .unwrap();
    let classes = common::text(&common::fixture("go-choria/protocol/testdata/classes.txt"));
    coro::core::protocol::NodeInfo {
        identity: "test.example.net".into(),
        agents: vec!["apache".into(), "rpcutil".into()],
        classes: classes.lines().map(str::to_string).collect(),
        facts,
    }
}

#[test]
fn filter_matches_like_a_server() {
    let node = test_node();
    assert_eq!(node.classes, ["role::testing", "testing", "apache"]);
    assert_eq!(node.facts["nested"]["string"], "nested hello world");

    // Empty filters match.
    assert_eq!(Filter::default().matches(&node), Ok(true));

    // All filters matched.
    let mut f = Filter::default();
    f.add_agent("apache");
    f.add_class("role::testing");
    f.add_class("/test/");
    f.add_fact("nested.string", "=~", "/hello/").unwrap();
    f.add_identity("/test/");
    assert_eq!(f.matches(&node), Ok(true));

    // Some filters matched.
    let mut f = Filter::default();
    f.add_agent("apache");
    f.add_class("role::test");
    f.add_fact("nested.string", "=~", "/meh/").unwrap();
    assert_eq!(f.matches(&node), Ok(false));
}

#[test]
fn fact_comparisons() {
    let node = test_node();
    let check = |fact: &str, op: &str, value: &str| {
        let mut f = Filter::default();
        f.add_fact(fact, op, value).unwrap();
        f.matches(&node).unwrap()
    };
    assert!(check("string", "==", "HELLO WORLD"));
    assert!(check("string", "!=", "goodbye"));
    assert!(check("inumber", "==", "1"));
    assert!(check("fnumber", ">", "1.1"));
    assert!(check("nested.fnumber", "<=", "2.2"));
    assert!(!check("nested.inumber", "<", "2"));
    assert!(check("tbool", "==", "true"));
    assert!(check("fbool", "==", "false"));
    assert!(check("tbool", "=~", "true"));
    assert!(check("fnumber", "=~", "/1.2000/"));
    assert!(!check("missing.fact", "==", "1"));
    assert!(!check("nested", "==", "x"), "objects never match");
    // Identities: any of; a failed regex falls back to the exact name.
    let mut f = Filter::default();
    f.add_identity("other.example.net");
    f.add_identity("test.example.net");
    assert_eq!(f.matches(&node), Ok(true));
    // Compound expressions are for servers.
    let mut f = Filter::default();
    f.add_compound("with('apache')");
    assert!(f.matches(&node).is_err());
}
