//! How a fleet signs what it publishes and checks what it receives.
//!
//! * [`Security::Insecure`]: v1, nothing signed or checked. Registration carries the
//!   `insecure registration` markers, as a Go server without a certificate sends.
//! * [`Security::X509`]: v1 with RSA. At start the fleet makes a CA and one RSA key that
//!   every node shares (making 10,000 RSA keys would take minutes), then one certificate
//!   per node with CN and DNS SAN = the node's identity, signed by the CA. Registration
//!   is signed with the node's certificate and caller id `choria=<identity>`. Requests
//!   must be signed by a certificate from the fleet's CA whose CN is the caller's name
//!   (`choria=<name>`); anything else is dropped and counted invalid.
//! * [`Security::V2`]: v2 with ed25519 and JWTs. At start the fleet makes an org issuer;
//!   each node gets its own ed25519 key and a server JWT signed by the issuer, signs
//!   registration and replies with it. Requests must carry a client JWT from the same
//!   issuer with fleet management rights and an ed25519 signature matching it.
//!
//! Clients (tests, benchmarks) get matching credentials from
//! [`Fleet::client_credentials`](crate::Fleet::client_credentials).

use crate::error::FleetError;
use crate::node::Invalid;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use coro_core::gojson;
use coro_core::protocol::{self, v1, v2, verify, Secure};
use ed25519_dalek::Signer as _;
use rsa::RsaPrivateKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{DecodePem, Encode, EncodePem};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

/// RSA key size of the fleet's CA and node key.
const RSA_BITS: usize = 2048;
/// Lifetime of certificates and tokens the fleet makes.
const VALIDITY: Duration = Duration::from_secs(VALIDITY_SECS as u64);
/// [`VALIDITY`] in seconds.
pub(crate) const VALIDITY_SECS: i64 = 365 * 24 * 3600;

/// The security mode of a fleet: which protocol it speaks and what it checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Security {
    /// Protocol v1, unsigned; incoming requests are not checked.
    #[default]
    Insecure,
    /// Protocol v1 with x509 certificates from a CA the fleet makes at start.
    X509,
    /// Protocol v2 with ed25519 keys and JWTs from an issuer the fleet makes at start.
    V2,
}

impl Security {
    /// `insecure`, `x509` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Insecure => "insecure",
            Security::X509 => "x509",
            Security::V2 => "v2",
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Security {
    type Err = FleetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "insecure" => Ok(Security::Insecure),
            "x509" => Ok(Security::X509),
            "v2" => Ok(Security::V2),
            other => Err(FleetError::Config(format!(
                "unknown security mode {other:?}: use insecure, x509 or v2"
            ))),
        }
    }
}

/// The fleet-wide trust material: CA or issuer, and the verdict cache.
pub(crate) struct Authority {
    mode: Security,
    x509: Option<X509Authority>,
    v2: Option<V2Authority>,
    verdicts: VerdictCache,
}

/// Verdicts on secure layers, by SHA-256 of what was checked. A broadcast reaches every
/// node with the same bytes, and every node would come to the same verdict: checking it
/// once per fleet rather than once per node keeps a 10,000-node broadcast from costing
/// 10,000 RSA or ed25519 verifications in one process. Entries live briefly, since
/// token validity depends on the time.
#[derive(Default)]
struct VerdictCache {
    entries: Mutex<HashMap<[u8; 32], Verdict>>,
}

/// When a verdict was reached, and the signer's name or why not.
type Verdict = (Instant, Result<String, Invalid>);

impl VerdictCache {
    const MAX_AGE: Duration = Duration::from_secs(10);
    const MAX_ENTRIES: usize = 4096;

    fn check(
        &self,
        parts: &[&[u8]],
        verify: impl FnOnce() -> Result<String, Invalid>,
    ) -> Result<String, Invalid> {
        let mut hasher = Sha256::new();
        for part in parts {
            // Length-prefixed, so moving bytes between parts changes the key.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let key: [u8; 32] = hasher.finalize().into();
        if let Ok(entries) = self.entries.lock() {
            if let Some((at, verdict)) = entries.get(&key) {
                if at.elapsed() < Self::MAX_AGE {
                    return verdict.clone();
                }
            }
        }
        let verdict = verify();
        if let Ok(mut entries) = self.entries.lock() {
            // Bounded: a flood of distinct messages only costs re-checking.
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), verdict.clone()));
        }
        verdict
    }
}

struct X509Authority {
    ca_key: rsa::pkcs1v15::SigningKey<Sha256>,
    ca_name: Name,
    ca_pem: String,
    ca_verifier: rsa::pkcs1v15::VerifyingKey<Sha256>,
    /// The one key every node and client certificate certifies.
    leaf_key: Arc<RsaPrivateKey>,
    leaf_spki: SubjectPublicKeyInfoOwned,
    serial: AtomicU64,
}

struct V2Authority {
    issuer: ed25519_dalek::SigningKey,
    issuer_public: [u8; 32],
}

/// What a node signs with.
#[derive(Clone)]
pub(crate) enum NodeCredentials {
    Insecure,
    X509 {
        cert_pem: Arc<str>,
        key: Arc<RsaPrivateKey>,
    },
    V2 {
        jwt: Arc<str>,
        key: Box<ed25519_dalek::SigningKey>,
    },
}

impl Authority {
    /// Makes the keys `mode` needs; slow for x509 (two RSA keys), so run it off the
    /// async threads.
    pub(crate) fn new(mode: Security) -> Result<Authority, FleetError> {
        let mut rng = rand::rngs::OsRng;
        let x509 = match mode {
            Security::X509 => Some(X509Authority::new(&mut rng)?),
            _ => None,
        };
        let v2 = match mode {
            Security::V2 => {
                let issuer = ed25519_dalek::SigningKey::generate(&mut rng);
                let issuer_public = issuer.verifying_key().to_bytes();
                Some(V2Authority {
                    issuer,
                    issuer_public,
                })
            }
            _ => None,
        };
        Ok(Authority {
            mode,
            x509,
            v2,
            verdicts: VerdictCache::default(),
        })
    }

    /// No keys: nothing is signed or checked.
    pub(crate) fn insecure() -> Authority {
        Authority {
            mode: Security::Insecure,
            x509: None,
            v2: None,
            verdicts: VerdictCache::default(),
        }
    }

    pub(crate) fn mode(&self) -> Security {
        self.mode
    }

    /// The CA certificate (PEM) in x509 mode.
    pub(crate) fn ca_pem(&self) -> Option<&str> {
        self.x509.as_ref().map(|x| x.ca_pem.as_str())
    }

    /// The org issuer's ed25519 public key in v2 mode.
    pub(crate) fn issuer_public_key(&self) -> Option<[u8; 32]> {
        self.v2.as_ref().map(|v| v.issuer_public)
    }

    /// The signing material of the node `identity`.
    pub(crate) fn node_credentials(
        &self,
        identity: &str,
        collectives: &[String],
    ) -> Result<NodeCredentials, FleetError> {
        match self.mode {
            Security::Insecure => Ok(NodeCredentials::Insecure),
            Security::X509 => {
                let x = self.x509()?;
                Ok(NodeCredentials::X509 {
                    cert_pem: x.leaf_cert(identity)?.into(),
                    key: x.leaf_key.clone(),
                })
            }
            Security::V2 => {
                let v = self.v2()?;
                let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
                let now = unix_now();
                let claims = ServerClaims {
                    purpose: "choria_server",
                    identity,
                    collectives,
                    public_key: hex::encode(key.verifying_key().as_bytes()),
                    permissions: ServerPermissions {
                        submission: true,
                        streams: false,
                    },
                    organization: "choria",
                    iss: v.iss(),
                    sub: identity,
                    iat: now,
                    nbf: now,
                    exp: now + VALIDITY_SECS,
                    jti: crate::ids::ksuid(),
                };
                Ok(NodeCredentials::V2 {
                    jwt: jwt(&claims, &v.issuer).into(),
                    key: Box::new(key),
                })
            }
        }
    }

    /// Credentials for a client called `name` (caller id `choria=<name>`).
    pub(crate) fn client_credentials(&self, name: &str) -> Result<ClientCredentials, FleetError> {
        let caller = format!("choria={name}");
        let inner = match self.mode {
            Security::Insecure => ClientInner::Insecure,
            Security::X509 => {
                let x = self.x509()?;
                ClientInner::X509 {
                    cert_pem: x.leaf_cert(name)?,
                    key: x.leaf_key.clone(),
                }
            }
            Security::V2 => {
                let v = self.v2()?;
                let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
                let now = unix_now();
                let claims = ClientClaims {
                    purpose: "choria_client_id",
                    callerid: &caller,
                    public_key: hex::encode(key.verifying_key().as_bytes()),
                    permissions: ClientPermissions {
                        fleet_management: true,
                    },
                    organization: "choria",
                    iss: v.iss(),
                    sub: &caller,
                    iat: now,
                    nbf: now,
                    exp: now + VALIDITY_SECS,
                    jti: crate::ids::ksuid(),
                };
                ClientInner::V2 {
                    jwt: jwt(&claims, &v.issuer),
                    key: Box::new(key),
                }
            }
        };
        Ok(ClientCredentials {
            name: name.to_string(),
            caller,
            inner,
        })
    }

    /// Checks the secure layer of an incoming request against the fleet's mode.
    pub(crate) fn check_request(
        &self,
        secure: Option<&Secure>,
        caller: &str,
        now: i64,
    ) -> Result<(), Invalid> {
        match (self.mode, secure) {
            (Security::Insecure, _) => Ok(()),
            (Security::X509, Some(Secure::V1Request(s))) => {
                let x = self.x509()?;
                let parts = [
                    s.message.as_bytes(),
                    s.signature.as_bytes(),
                    s.pubcert.as_bytes(),
                ];
                let signer = self.verdicts.check(&parts, || x.signer(s))?;
                // go-choria takes the certname from the caller id `choria=<certname>`
                // and requires the certificate to be that name's.
                let certname = caller.split_once('=').map_or(caller, |(_, n)| n);
                if signer == certname {
                    Ok(())
                } else {
                    Err(Invalid::Security(format!(
                        "certificate {signer} does not belong to caller {caller}"
                    )))
                }
            }
            (Security::V2, Some(Secure::V2Request(s))) => {
                let v = self.v2()?;
                let parts = [
                    s.request.as_bytes(),
                    s.signature.as_bytes(),
                    s.caller.as_bytes(),
                    s.signer.as_bytes(),
                    caller.as_bytes(),
                ];
                self.verdicts
                    .check(&parts, || {
                        let anchor = verify::TrustAnchor {
                            issuer: Some(&v.issuer_public),
                            now,
                        };
                        match verify::verify_v2_request(s, Some(caller), &anchor) {
                            Ok(verify::Verified::Signed { signer }) => Ok(signer),
                            Ok(_) => Err(Invalid::Unsigned),
                            Err(e) => Err(Invalid::Security(e.to_string())),
                        }
                    })
                    .map(|_| ())
            }
            (Security::X509, _) | (Security::V2, _) => Err(Invalid::WrongProtocol),
        }
    }

    fn x509(&self) -> Result<&X509Authority, FleetError> {
        self.x509
            .as_ref()
            .ok_or_else(|| FleetError::Security("no x509 authority in this mode".into()))
    }

    fn v2(&self) -> Result<&V2Authority, FleetError> {
        self.v2
            .as_ref()
            .ok_or_else(|| FleetError::Security("no v2 issuer in this mode".into()))
    }
}

impl From<FleetError> for Invalid {
    fn from(e: FleetError) -> Self {
        Invalid::Security(e.to_string())
    }
}

impl X509Authority {
    fn new(rng: &mut rand::rngs::OsRng) -> Result<X509Authority, FleetError> {
        let err = |what: &str, e: &dyn fmt::Display| FleetError::Security(format!("{what}: {e}"));
        let ca_key = RsaPrivateKey::new(rng, RSA_BITS).map_err(|e| err("CA key", &e))?;
        let leaf_key = RsaPrivateKey::new(rng, RSA_BITS).map_err(|e| err("node key", &e))?;
        let ca_name =
            Name::from_str("CN=Coro Fleet CA,O=Choria").map_err(|e| err("CA name", &e))?;
        let ca_spki = SubjectPublicKeyInfoOwned::from_key(ca_key.to_public_key())
            .map_err(|e| err("CA public key", &e))?;
        let leaf_spki = SubjectPublicKeyInfoOwned::from_key(leaf_key.to_public_key())
            .map_err(|e| err("node public key", &e))?;
        let ca_verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(ca_key.to_public_key());
        let ca_signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(ca_key);
        let validity = Validity::from_now(VALIDITY).map_err(|e| err("validity", &e))?;
        let ca_cert = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity,
            ca_name.clone(),
            ca_spki,
            &ca_signer,
        )
        .and_then(|b| b.build::<rsa::pkcs1v15::Signature>())
        .map_err(|e| err("CA certificate", &e))?;
        let ca_pem = ca_cert
            .to_pem(x509_cert::der::pem::LineEnding::LF)
            .map_err(|e| err("CA PEM", &e))?;
        Ok(X509Authority {
            ca_key: ca_signer,
            ca_name,
            ca_pem,
            ca_verifier,
            leaf_key: Arc::new(leaf_key),
            leaf_spki,
            serial: AtomicU64::new(2),
        })
    }

    /// A certificate for `name` over the shared leaf key, signed by the CA, as PEM.
    fn leaf_cert(&self, name: &str) -> Result<String, FleetError> {
        use x509_cert::der::asn1::Ia5String;
        use x509_cert::ext::pkix::{name::GeneralName, SubjectAltName};
        let err =
            |e: &dyn fmt::Display| FleetError::Security(format!("certificate for {name}: {e}"));
        if name.contains([',', '+', '=', '"', '\\', '<', '>', ';']) {
            return Err(FleetError::Config(format!(
                "{name:?} cannot be a certificate name"
            )));
        }
        let subject = Name::from_str(&format!("CN={name}")).map_err(|e| err(&e))?;
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let validity = Validity::from_now(VALIDITY).map_err(|e| err(&e))?;
        let mut builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.ca_name.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: true,
            },
            SerialNumber::from(serial),
            validity,
            subject,
            self.leaf_spki.clone(),
            &self.ca_key,
        )
        .map_err(|e| err(&e))?;
        let dns = Ia5String::new(name).map_err(|e| err(&e))?;
        builder
            .add_extension(&SubjectAltName(vec![GeneralName::DnsName(dns)]))
            .map_err(|e| err(&e))?;
        let cert = builder
            .build::<rsa::pkcs1v15::Signature>()
            .map_err(|e| err(&e))?;
        cert.to_pem(x509_cert::der::pem::LineEnding::LF)
            .map_err(|e| err(&e))
    }

    /// Who signed a v1 request: its certificate must come from our CA and its
    /// signature must verify; the certificate's CN is the answer.
    fn signer(&self, s: &v1::SecureRequest) -> Result<String, Invalid> {
        if s.pubcert == protocol::INSECURE || s.pubcert == protocol::INSECURE_REGISTRATION {
            return Err(Invalid::Unsigned);
        }
        if !self.chains(&s.pubcert) {
            return Err(Invalid::Security(
                "certificate is not signed by the fleet CA".into(),
            ));
        }
        match verify::verify_v1_request(s) {
            Ok(verify::Verified::Signed { signer }) => Ok(signer),
            Ok(_) => Err(Invalid::Unsigned),
            Err(e) => Err(Invalid::Security(e.to_string())),
        }
    }

    fn chains(&self, pubcert: &str) -> bool {
        use rsa::signature::Verifier;
        let Ok(cert) = x509_cert::Certificate::from_pem(pubcert.as_bytes()) else {
            return false;
        };
        if cert.tbs_certificate.issuer != self.ca_name {
            return false;
        }
        let now = std::time::SystemTime::now();
        let validity = &cert.tbs_certificate.validity;
        if now < validity.not_before.to_system_time() || now > validity.not_after.to_system_time() {
            return false;
        }
        let Ok(tbs) = cert.tbs_certificate.to_der() else {
            return false;
        };
        let Some(sig_bytes) = cert.signature.as_bytes() else {
            return false;
        };
        let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig_bytes) else {
            return false;
        };
        self.ca_verifier.verify(&tbs, &sig).is_ok()
    }
}

impl V2Authority {
    /// Go's tokens name an org issuer `I-<hex public key>`.
    fn iss(&self) -> String {
        format!("I-{}", hex::encode(self.issuer_public))
    }
}

impl NodeCredentials {
    /// The secure layer of a v1 request this node publishes (registration).
    pub(crate) fn secure_v1_registration(&self, request_json: &str) -> v1::SecureRequest {
        match self {
            NodeCredentials::X509 { cert_pem, key } => {
                v1::SecureRequest::sign(request_json, cert_pem, key)
            }
            // Go's marker for registration from a server without a certificate.
            NodeCredentials::Insecure | NodeCredentials::V2 { .. } => v1::SecureRequest {
                protocol: v1::SECURE_REQUEST.to_string(),
                message: request_json.to_string(),
                signature: protocol::b64_encode(protocol::INSECURE_REGISTRATION.as_bytes()),
                pubcert: protocol::INSECURE_REGISTRATION.to_string(),
            },
        }
    }

    /// The secure layer of a v2 request this node publishes (registration).
    pub(crate) fn secure_v2_request(&self, request_json: &[u8]) -> v2::SecureRequest {
        match self {
            NodeCredentials::V2 { jwt, key } => v2::SecureRequest::sign(request_json, jwt, key),
            NodeCredentials::Insecure | NodeCredentials::X509 { .. } => v2::SecureRequest {
                protocol: v2::SECURE_REQUEST.to_string(),
                request: protocol::b64_encode(request_json),
                signature: protocol::b64_encode(protocol::INSECURE_REGISTRATION.as_bytes()),
                caller: String::new(),
                signer: String::new(),
            },
        }
    }

    /// The secure layer of a v2 reply: hashed, and signed with the server JWT when the
    /// node has one (go-choria's default `sign_replies`).
    pub(crate) fn secure_v2_reply(&self, reply_json: &[u8]) -> v2::SecureReply {
        let mut secure = v2::SecureReply::new(reply_json);
        if let NodeCredentials::V2 { jwt, key } = self {
            secure.signature = protocol::b64_encode(&key.sign(reply_json).to_bytes());
            secure.sender = jwt.to_string();
        }
        secure
    }
}

/// Signing material for a client of the fleet: what a test or benchmark needs to send
/// requests that the fleet's nodes accept.
pub struct ClientCredentials {
    name: String,
    caller: String,
    inner: ClientInner,
}

enum ClientInner {
    Insecure,
    X509 {
        cert_pem: String,
        key: Arc<RsaPrivateKey>,
    },
    V2 {
        jwt: String,
        key: Box<ed25519_dalek::SigningKey>,
    },
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("name", &self.name)
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// The client's name (certificate CN in x509 mode).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The caller id requests must carry: `choria=<name>`.
    pub fn caller_id(&self) -> &str {
        &self.caller
    }

    /// The PEM certificate in x509 mode.
    pub fn certificate_pem(&self) -> Option<&str> {
        match &self.inner {
            ClientInner::X509 { cert_pem, .. } => Some(cert_pem),
            _ => None,
        }
    }

    /// The JWT in v2 mode.
    pub fn token(&self) -> Option<&str> {
        match &self.inner {
            ClientInner::V2 { jwt, .. } => Some(jwt),
            _ => None,
        }
    }

    /// The v1 secure layer for `request_json`: RSA-signed in x509 mode, `insecure`
    /// otherwise.
    pub fn secure_v1(&self, request_json: &str) -> v1::SecureRequest {
        match &self.inner {
            ClientInner::X509 { cert_pem, key } => {
                v1::SecureRequest::sign(request_json, cert_pem, key)
            }
            ClientInner::Insecure | ClientInner::V2 { .. } => {
                v1::SecureRequest::insecure(request_json)
            }
        }
    }

    /// The v2 secure layer for `request_json`: ed25519-signed with the client JWT in v2
    /// mode, an `insecure` signature otherwise.
    pub fn secure_v2(&self, request_json: &[u8]) -> v2::SecureRequest {
        match &self.inner {
            ClientInner::V2 { jwt, key } => v2::SecureRequest::sign(request_json, jwt, key),
            ClientInner::Insecure | ClientInner::X509 { .. } => v2::SecureRequest {
                protocol: v2::SECURE_REQUEST.to_string(),
                request: protocol::b64_encode(request_json),
                signature: protocol::b64_encode(protocol::INSECURE.as_bytes()),
                caller: String::new(),
                signer: String::new(),
            },
        }
    }

    /// The complete NATS payload of a v1 request (transport, secure layer, request)
    /// with replies to `reply_to`.
    pub fn v1_payload(&self, request: &v1::Request, reply_to: &str) -> Vec<u8> {
        let secure = self.secure_v1(&gojson::to_string(request));
        let headers = v1::Headers {
            reply_to: reply_to.to_string(),
            sender: request.envelope.senderid.clone(),
            ..Default::default()
        };
        gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
    }

    /// The complete NATS payload of a v2 request with replies to `reply_to`.
    pub fn v2_payload(&self, request: &v2::Request, reply_to: &str) -> Vec<u8> {
        let secure = self.secure_v2(&gojson::to_vec(request));
        let headers = v2::Headers {
            reply: reply_to.to_string(),
            sender: request.sender.clone(),
            ..Default::default()
        };
        gojson::to_vec(&v2::Transport::new(&gojson::to_vec(&secure), headers))
    }
}

#[derive(Serialize)]
struct ServerPermissions {
    submission: bool,
    streams: bool,
}

/// choria-io/tokens `ServerClaims`, the parts a server token needs.
#[derive(Serialize)]
struct ServerClaims<'a> {
    purpose: &'static str,
    identity: &'a str,
    collectives: &'a [String],
    public_key: String,
    permissions: ServerPermissions,
    organization: &'static str,
    iss: String,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

#[derive(Serialize)]
struct ClientPermissions {
    fleet_management: bool,
}

/// choria-io/tokens `ClientIDClaims`, the parts a client token needs.
#[derive(Serialize)]
struct ClientClaims<'a> {
    purpose: &'static str,
    callerid: &'a str,
    public_key: String,
    permissions: ClientPermissions,
    organization: &'static str,
    iss: String,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

/// An EdDSA JWT of `claims`, signed with `key`.
fn jwt(claims: &impl Serialize, key: &ed25519_dalek::SigningKey) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
    format!("{input}.{signature}")
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
