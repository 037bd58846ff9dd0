//! Optional signature checks. A broker that only forwards never needs them; adapters and
//! `coro decode --verify` use them to say whether a message is what it claims.
//!
//! * v1 requests: RSA PKCS#1 v1.5 SHA-256 over the exact `message` string, checked with
//!   the PEM certificate in `pubcert`. The certificate's chain is not checked here.
//! * v1 and v2 replies: base64 SHA-256 `hash` of the reply JSON.
//! * v2 requests: the caller JWT (and a delegated signer JWT) checked against the org
//!   issuer's ed25519 key, then the ed25519 `signature` over the request JSON with the
//!   signing token's `public_key`, as go-choria's ed25519/JWT security provider does.
//! * v2 replies: Go never checks reply signatures; we check them when the reply carries
//!   a signature and a server JWT, and report it.
//!
//! Insecure markers (`insecure`, `insecure registration`) are reported, not verified.

use super::codec::{b64_decode, b64_encode, URL_SAFE_NO_PAD};
use super::error::Layer;
use super::{v1, v2, Secure, INSECURE, INSECURE_REGISTRATION};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a successful check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The signature checked out; `signer` names whose key made it (certificate CN,
    /// JWT caller id or server identity).
    Signed {
        /// Who signed.
        signer: String,
    },
    /// A reply whose hash matches and which carries no signature.
    HashOnly,
    /// The message is marked insecure and carries no signature to check.
    Insecure {
        /// The marker found (`insecure` or `insecure registration`).
        marker: &'static str,
    },
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature does not match the message.
    #[error("signature does not match the message")]
    BadSignature,
    /// The hash does not match the message.
    #[error("hash does not match the message")]
    BadHash,
    /// A field that should be base64 is not.
    #[error("{0}")]
    Encoding(String),
    /// The `pubcert` PEM is not an RSA certificate we can read.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// A JWT failed to parse or verify.
    #[error("invalid {role} token: {reason}")]
    Token {
        /// `caller`, `signer` or `sender`.
        role: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A token is valid but lacks a needed permission, or names someone else.
    #[error("access denied: {0}")]
    Denied(String),
    /// A v2 check needs the org issuer's public key.
    #[error("no issuer public key configured to verify v2 tokens")]
    NoIssuer,
}

/// Inputs a v2 check needs besides the message.
#[derive(Debug, Clone, Copy)]
pub struct TrustAnchor<'a> {
    /// The org issuer's ed25519 public key (`plugin.security.issuer.<name>.public`).
    pub issuer: Option<&'a [u8; 32]>,
    /// The current time, unix seconds, for `exp` and `nbf`.
    pub now: i64,
}

/// Checks the secure layer of a decoded message. `caller` is the request's caller id,
/// which a v2 single-token request must match.
pub fn verify(
    secure: &Secure,
    caller: Option<&str>,
    anchor: &TrustAnchor<'_>,
) -> Result<Verified, VerifyError> {
    match secure {
        Secure::V1Request(s) => verify_v1_request(s),
        Secure::V1Reply(s) => verify_v1_reply(s),
        Secure::V2Request(s) => verify_v2_request(s, caller, anchor),
        Secure::V2Reply(s) => verify_v2_reply(s, anchor),
    }
}

/// v1 request: RSA PKCS#1 v1.5 SHA-256 over `message`, checked with `pubcert`.
pub fn verify_v1_request(s: &v1::SecureRequest) -> Result<Verified, VerifyError> {
    if let Some(marker) = insecure_marker(&s.signature, &s.pubcert) {
        return Ok(Verified::Insecure { marker });
    }
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    use x509_cert::der::DecodePem;

    let cert = x509_cert::Certificate::from_pem(s.pubcert.as_bytes())
        .map_err(|e| VerifyError::Certificate(e.to_string()))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let spki_der = x509_cert::der::Encode::to_der(spki)
        .map_err(|e| VerifyError::Certificate(e.to_string()))?;
    let key = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki_der)
        .map_err(|e| VerifyError::Certificate(e.to_string()))?;
    let sig_bytes = b64_decode(Layer::SecureRequest, "signature", &s.signature)
        .map_err(|e| VerifyError::Encoding(e.to_string()))?;
    let sig = Signature::try_from(sig_bytes.as_slice()).map_err(|_| VerifyError::BadSignature)?;
    VerifyingKey::<Sha256>::new(key)
        .verify(s.message.as_bytes(), &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(Verified::Signed {
        signer: common_name(&cert).unwrap_or_default(),
    })
}

/// v1 reply: `hash` is base64 SHA-256 of `message`.
pub fn verify_v1_reply(s: &v1::SecureReply) -> Result<Verified, VerifyError> {
    check_hash(s.message.as_bytes(), &s.hash)?;
    Ok(Verified::HashOnly)
}

/// v2 request: token chain to the issuer, then ed25519 over the request JSON.
pub fn verify_v2_request(
    s: &v2::SecureRequest,
    caller: Option<&str>,
    anchor: &TrustAnchor<'_>,
) -> Result<Verified, VerifyError> {
    let signature = b64_decode(Layer::SecureRequest, "signature", &s.signature)
        .map_err(|e| VerifyError::Encoding(e.to_string()))?;
    if let Some(marker) = insecure_bytes_marker(&signature) {
        return Ok(Verified::Insecure { marker });
    }
    let issuer = anchor.issuer.ok_or(VerifyError::NoIssuer)?;
    let body = s
        .request_bytes()
        .map_err(|e| VerifyError::Encoding(e.to_string()))?;

    let caller_token = Token::parse("caller", &s.caller, issuer, anchor.now)?;
    let (signing_key, signer) = if s.signer.is_empty() {
        if caller_token.claims.purpose != PURPOSE_CLIENT {
            return Err(denied("caller token is not a client token"));
        }
        let perms = caller_token.claims.permissions.unwrap_or_default();
        if perms.signed_fleet_management {
            return Err(denied(
                "caller requires authority delegation to sign requests",
            ));
        }
        if !perms.fleet_management {
            return Err(denied("caller does not have fleet management access"));
        }
        let name = caller_token.claims.callerid.clone();
        if let Some(caller) = caller {
            if caller != name {
                return Err(denied("caller name does not match token"));
            }
        }
        (caller_token.public_key()?, name)
    } else {
        let signer = Token::parse("signer", &s.signer, issuer, anchor.now)?;
        if signer.claims.purpose != PURPOSE_CLIENT {
            return Err(denied("signer token is not a client token"));
        }
        if !signer
            .claims
            .permissions
            .unwrap_or_default()
            .authentication_delegator
        {
            return Err(denied(
                "token attempted to sign a request as delegator without required delegator permission",
            ));
        }
        let perms = caller_token.claims.permissions.unwrap_or_default();
        if !(perms.fleet_management || perms.signed_fleet_management) {
            return Err(denied("caller does not have fleet management access"));
        }
        (signer.public_key()?, signer.claims.callerid.clone())
    };
    check_ed25519(&signing_key, &body, &signature)?;
    Ok(Verified::Signed { signer })
}

/// v2 reply: `hash`, and the signature when the reply carries one with a server JWT.
pub fn verify_v2_reply(
    s: &v2::SecureReply,
    anchor: &TrustAnchor<'_>,
) -> Result<Verified, VerifyError> {
    let body = s
        .reply_bytes()
        .map_err(|e| VerifyError::Encoding(e.to_string()))?;
    check_hash(&body, &s.hash)?;
    if s.signature.is_empty() || s.sender.is_empty() {
        return Ok(Verified::HashOnly);
    }
    let issuer = anchor.issuer.ok_or(VerifyError::NoIssuer)?;
    let sender = Token::parse("sender", &s.sender, issuer, anchor.now)?;
    if sender.claims.purpose != PURPOSE_SERVER {
        return Err(denied("sender token is not a server token"));
    }
    let signature = b64_decode(Layer::SecureReply, "signature", &s.signature)
        .map_err(|e| VerifyError::Encoding(e.to_string()))?;
    check_ed25519(&sender.public_key()?, &body, &signature)?;
    Ok(Verified::Signed {
        signer: sender.claims.identity,
    })
}

const PURPOSE_CLIENT: &str = "choria_client_id";
const PURPOSE_SERVER: &str = "choria_server";

fn denied(why: &str) -> VerifyError {
    VerifyError::Denied(why.to_string())
}

fn insecure_marker(signature: &str, pubcert: &str) -> Option<&'static str> {
    let registration = b64_encode(INSECURE_REGISTRATION.as_bytes());
    if signature == registration || pubcert == INSECURE_REGISTRATION {
        Some(INSECURE_REGISTRATION)
    } else if signature == INSECURE || pubcert == INSECURE {
        Some(INSECURE)
    } else {
        None
    }
}

fn insecure_bytes_marker(signature: &[u8]) -> Option<&'static str> {
    match signature {
        b"insecure" => Some(INSECURE),
        b"insecure registration" => Some(INSECURE_REGISTRATION),
        _ => None,
    }
}

fn check_hash(body: &[u8], hash: &str) -> Result<(), VerifyError> {
    if b64_encode(&Sha256::digest(body)) == hash {
        Ok(())
    } else {
        Err(VerifyError::BadHash)
    }
}

fn check_ed25519(key: &[u8; 32], body: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let key = VerifyingKey::from_bytes(key).map_err(|_| VerifyError::BadSignature)?;
    let sig = Signature::from_slice(signature).map_err(|_| VerifyError::BadSignature)?;
    key.verify(body, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

fn common_name(cert: &x509_cert::Certificate) -> Option<String> {
    use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
    const CN: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find_map(|atv| {
            if atv.oid != CN {
                return None;
            }
            atv.value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .ok()
        })
}

/// Client permissions that matter for request signing (choria-io/tokens).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct Permissions {
    #[serde(default)]
    fleet_management: bool,
    #[serde(default)]
    signed_fleet_management: bool,
    #[serde(default)]
    authentication_delegator: bool,
}

/// The claims of client and server tokens that the checks read.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    callerid: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    iss: String,
    #[serde(default)]
    tcs: String,
    #[serde(default)]
    jti: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    issexp: Option<i64>,
    #[serde(default)]
    permissions: Option<Permissions>,
}

struct Token {
    claims: Claims,
}

impl Token {
    /// Verifies a JWT against the org issuer, as choria-io/tokens' `ParseToken` does:
    /// a `C-<id>.<hexpk>` issuer is a chain issuer whose credentials the org issuer
    /// signed, and whose key signs the token; any other issuer signs directly. `exp`
    /// and `nbf` are checked only when present, with no leeway, like golang-jwt.
    fn parse(
        role: &'static str,
        jwt: &str,
        issuer: &[u8; 32],
        now: i64,
    ) -> Result<Token, VerifyError> {
        let bad = |reason: String| VerifyError::Token { role, reason };
        let unverified = unverified_claims(jwt).map_err(bad)?;
        let key = if let Some(chain) = unverified.iss.strip_prefix("C-") {
            chain_issuer_key(chain, &unverified, issuer).map_err(bad)?
        } else {
            *issuer
        };
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let decoded = jsonwebtoken::decode::<Claims>(
            jwt,
            &jsonwebtoken::DecodingKey::from_ed_der(&key),
            &validation,
        )
        .map_err(|e| bad(e.to_string()))?;
        let claims = decoded.claims;
        let mut expires = claims.exp;
        if unverified.iss.starts_with("C-") && !claims.tcs.is_empty() {
            let issexp = claims
                .issexp
                .ok_or_else(|| bad("no issuer expiry set".into()))?;
            expires = Some(expires.map_or(issexp, |e| e.min(issexp)));
        }
        if expires.is_some_and(|exp| now > exp) {
            return Err(bad("token has expired".into()));
        }
        if claims.nbf.is_some_and(|nbf| now < nbf) {
            return Err(bad("token is not valid yet".into()));
        }
        Ok(Token { claims })
    }

    fn public_key(&self) -> Result<[u8; 32], VerifyError> {
        hex_key(&self.claims.public_key).map_err(|reason| VerifyError::Token {
            role: "signing",
            reason: format!("public_key claim: {reason}"),
        })
    }
}

fn unverified_claims(jwt: &str) -> Result<Claims, String> {
    let payload = jwt.split('.').nth(1).ok_or("not a JWT")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("payload is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("payload is not JSON claims: {e}"))
}

/// `iss = C-<id>.<hexpk>`, `tcs = <orgTcsHex>.<sigHex>`: the org issuer signed
/// `<id>.<hexpk>`, and the chain issuer signed `<jti>.<orgTcsHex>`.
fn chain_issuer_key(chain: &str, claims: &Claims, org: &[u8; 32]) -> Result<[u8; 32], String> {
    let (id, hexpk) = chain.split_once('.').ok_or("invalid issuer content")?;
    if id.is_empty() || hexpk.is_empty() {
        return Err("invalid issuer content".into());
    }
    let chain_key = hex_key(hexpk)?;
    let (org_tcs, sig) = claims
        .tcs
        .split_once('.')
        .ok_or("invalid trust chain signature")?;
    let org_sig = hex::decode(org_tcs).map_err(|_| "invalid trust chain signature")?;
    check_ed25519(org, chain.as_bytes(), &org_sig)
        .map_err(|_| "chain issuer credentials not signed by org issuer")?;
    let chain_sig = hex::decode(sig).map_err(|_| "invalid trust chain signature")?;
    let signed = format!("{}.{}", claims.jti, org_tcs);
    check_ed25519(&chain_key, signed.as_bytes(), &chain_sig)
        .map_err(|_| "invalid chain signature")?;
    Ok(chain_key)
}

/// A hex ed25519 public key (32 bytes).
pub fn hex_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("{} bytes, want 32", bytes.len()))
}
