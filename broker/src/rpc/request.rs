//! Building Choria RPC requests as Go clients put them on the wire (PROTOCOL.md §1, §2,
//! §6): the body, the request layers, the secure layer and the transport, one NATS
//! message per target subject.

use super::RpcError;
use coro_core::gojson;
use coro_core::protocol::{self, b64_encode, v1, v2, Filter, Version};
use serde::Serialize;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The agent Choria's broadcast discovery and `choria ping` talk to; its body is
/// base64 of `ping`, not an RPC document.
pub const DISCOVERY_AGENT: &str = "discovery";

/// The discovery body: base64 of `ping`, as Go sends it (raw `ping` would itself be
/// "valid" base64 and decode to junk on the server).
pub const DISCOVERY_BODY: &[u8] = b"cGluZw==";

/// How a request is signed.
#[derive(Clone, Default)]
pub enum Security {
    /// No signature: v1 `insecure` markers, v2 a base64 `insecure` signature. Servers
    /// accept these only when their own security is off.
    #[default]
    Insecure,
    /// v1 x509: an RSA PKCS#1 v1.5 SHA-256 signature and the caller's PEM certificate.
    X509 {
        /// The caller's certificate, PEM.
        cert_pem: String,
        /// The caller's RSA private key.
        key: Box<rsa::RsaPrivateKey>,
    },
    /// v2 ed25519 + JWT: an ed25519 signature made with the caller's seed, and the
    /// caller's JWT.
    Choria {
        /// The caller's client JWT.
        jwt: String,
        /// The caller's ed25519 key, from its seed.
        key: Box<ed25519_dalek::SigningKey>,
    },
}

/// Names the kind only: private keys stay out of logs and panics.
impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Security::Insecure => "Security::Insecure",
            Security::X509 { .. } => "Security::X509",
            Security::Choria { .. } => "Security::Choria",
        })
    }
}

impl Security {
    /// Loads x509 credentials: a PEM certificate and a PEM RSA key (PKCS#1 or PKCS#8).
    pub fn x509_from_files(cert: &Path, key: &Path) -> Result<Security, RpcError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let cert_pem = read(cert)?;
        if !cert_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(RpcError::Credentials(format!(
                "{}: not a PEM certificate",
                cert.display()
            )));
        }
        let key_pem = read(key)?;
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(&key_pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(&key_pem))
            .map_err(|e| {
                RpcError::Credentials(format!("{}: not a PEM RSA private key: {e}", key.display()))
            })?;
        Ok(Security::X509 {
            cert_pem,
            key: Box::new(key),
        })
    }

    /// Loads v2 credentials: the ed25519 seed (64 hex characters, as Choria writes
    /// it) and the client JWT.
    pub fn choria_from_files(seed: &Path, jwt: &Path) -> Result<Security, RpcError> {
        let seed_hex = read(seed)?;
        let bytes = hex::decode(seed_hex.trim()).map_err(|e| {
            RpcError::Credentials(format!("{}: seed is not hex: {e}", seed.display()))
        })?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            RpcError::Credentials(format!(
                "{}: seed is {} bytes, want 32",
                seed.display(),
                bytes.len()
            ))
        })?;
        let token = read(jwt)?.trim().to_string();
        if token.split('.').count() != 3 {
            return Err(RpcError::Credentials(format!(
                "{}: not a JWT",
                jwt.display()
            )));
        }
        Ok(Security::Choria {
            jwt: token,
            key: Box::new(ed25519_dalek::SigningKey::from_bytes(&bytes)),
        })
    }

    /// The caller id the credentials name: the `callerid` claim of a v2 JWT (read
    /// without checking it; the servers check it). `None` for x509 and insecure.
    pub fn caller(&self) -> Option<String> {
        match self {
            Security::Choria { jwt, .. } => jwt_caller(jwt),
            Security::Insecure | Security::X509 { .. } => None,
        }
    }

    /// The protocol version these credentials require, if any.
    pub fn required_version(&self) -> Option<Version> {
        match self {
            Security::Insecure => None,
            Security::X509 { .. } => Some(Version::V1),
            Security::Choria { .. } => Some(Version::V2),
        }
    }
}

fn read(path: &Path) -> Result<String, RpcError> {
    std::fs::read_to_string(path).map_err(|e| RpcError::Read(format!("{}: {e}", path.display())))
}

/// The `callerid` claim of an (unverified) JWT.
fn jwt_caller(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("callerid")
        .and_then(|c| c.as_str())
        .map(str::to_string)
}

/// One Choria RPC request, ready to be published any number of times.
///
/// [`RpcRequest::new`] fills Go's defaults; set the public fields for the rest. The
/// request's agent is added to the agent filter when building, as Go's RPC client
/// does, so only nodes that run the agent answer (except for [`DISCOVERY_AGENT`]).
#[derive(Debug, Clone)]
pub struct RpcRequest {
    /// Target agent, e.g. `rpcutil`.
    pub agent: String,
    /// Action of the agent, e.g. `ping`.
    pub action: String,
    /// The action's inputs: a JSON object (keys are written sorted, as Go marshals a
    /// map).
    pub data: serde_json::Value,
    /// Sub-collective; default `mcollective`.
    pub collective: String,
    /// Seconds the request stays valid; servers drop it outside `time ± ttl`. Default 60.
    pub ttl: i64,
    /// Which nodes act on it.
    pub filter: Filter,
    /// The publishing client's identity (`senderid`, `mc_sender`); default the host name.
    pub sender: String,
    /// The caller id; default `choria=<$USER>.mcollective`.
    pub caller: String,
    /// Where replies go; default `<collective>.reply.<hex md5(caller)>.<request id>`.
    /// A custom subject lets replies stream into an adapter instead of the caller.
    pub reply_to: Option<String>,
    /// Identities for a directed request, one copy each to `<collective>.node.<id>`;
    /// empty for a broadcast to `<collective>.broadcast.agent.<agent>`.
    pub targets: Vec<String>,
    /// Protocol generation; must agree with `security` when that needs one.
    pub version: Version,
    /// How the request is signed.
    pub security: Security,
    /// Federation clusters to send it through (`plugin.choria.federation.collectives`):
    /// when set, the request goes once to each `choria.federation.<cluster>.federation`
    /// with the targets in its federation header (split into messages of at most 200
    /// node targets), see [`crate::federation::client`].
    pub federation: Vec<String>,
}

/// The RPC request body, in Go's `RPCRequest` key order.
#[derive(Serialize)]
struct Body<'a> {
    agent: &'a str,
    action: &'a str,
    data: &'a serde_json::Value,
}

impl RpcRequest {
    /// A v1, insecure, broadcast request to every node in `mcollective` that runs
    /// `agent`, with `data` `{}`, TTL 60, the default caller and sender.
    pub fn new(agent: &str, action: &str) -> Self {
        RpcRequest {
            agent: agent.to_string(),
            action: action.to_string(),
            data: serde_json::Value::Object(serde_json::Map::new()),
            collective: "mcollective".to_string(),
            ttl: 60,
            filter: Filter::default(),
            sender: default_sender(),
            caller: default_caller(),
            reply_to: None,
            targets: Vec::new(),
            version: Version::V1,
            security: Security::Insecure,
            federation: Vec::new(),
        }
    }

    /// A fresh request id of the right shape for [`RpcRequest::version`].
    pub fn new_request_id(&self) -> Result<String, RpcError> {
        match self.version {
            Version::V1 => new_v1_request_id(),
            Version::V2 => new_v2_request_id(SystemTime::now()),
        }
    }

    /// The subject replies to `request_id` go to: the custom `reply_to`, else Go's
    /// `<collective>.reply.<hex md5(caller)>.<request id>`.
    pub fn reply_subject(&self, request_id: &str) -> String {
        match &self.reply_to {
            Some(subject) => subject.clone(),
            None => default_reply_subject(&self.collective, &self.caller, request_id),
        }
    }

    /// The subjects the request is published to: one per target, or the agent's
    /// broadcast subject.
    pub fn subjects(&self) -> Vec<String> {
        if self.targets.is_empty() {
            vec![format!(
                "{}.broadcast.agent.{}",
                self.collective, self.agent
            )]
        } else {
            self.targets
                .iter()
                .map(|id| format!("{}.node.{id}", self.collective))
                .collect()
        }
    }

    /// How many replies a directed request expects (one per target); `None` for a
    /// broadcast, whose audience is unknown.
    pub fn expected(&self) -> Option<usize> {
        (!self.targets.is_empty()).then_some(self.targets.len())
    }

    /// The body bytes: `{"agent":..,"action":..,"data":{..}}`, or base64 `ping` for
    /// the discovery agent.
    pub fn body(&self) -> Vec<u8> {
        if self.agent == DISCOVERY_AGENT {
            return DISCOVERY_BODY.to_vec();
        }
        gojson::to_vec(&Body {
            agent: &self.agent,
            action: &self.action,
            data: &self.data,
        })
    }

    /// The filter as sent: the configured one plus the agent (see the type docs).
    pub fn effective_filter(&self) -> Filter {
        let mut filter = self.filter.clone();
        if self.agent != DISCOVERY_AGENT {
            filter.add_agent(&self.agent);
        }
        filter
    }

    /// The NATS messages for this request, stamped now: `(subject, payload)` pairs.
    pub fn build(&self, request_id: &str) -> Result<Vec<(String, Vec<u8>)>, RpcError> {
        self.build_at(request_id, SystemTime::now())
    }

    /// [`RpcRequest::build`] at a given time.
    pub fn build_at(
        &self,
        request_id: &str,
        now: SystemTime,
    ) -> Result<Vec<(String, Vec<u8>)>, RpcError> {
        self.build_federated_at(request_id, now, None)
    }

    /// [`RpcRequest::build_at`], recording the federated client's own hop (`hop`) as
    /// Go's clients do before they federate a request.
    pub fn build_federated_at(
        &self,
        request_id: &str,
        now: SystemTime,
        hop: Option<&crate::federation::client::ClientHop>,
    ) -> Result<Vec<(String, Vec<u8>)>, RpcError> {
        self.check()?;
        let payload = self.payload(request_id, now)?;
        if !self.federation.is_empty() {
            return crate::federation::client::federate(
                &payload,
                &self.subjects(),
                request_id,
                &self.federation,
                hop,
            )
            .map_err(|e| RpcError::InvalidRequest(format!("federating the request: {e}")));
        }
        Ok(self
            .subjects()
            .into_iter()
            .map(|subject| (subject, payload.clone()))
            .collect())
    }

    /// Rejects what servers would drop or what cannot be signed, before anything is
    /// sent.
    fn check(&self) -> Result<(), RpcError> {
        let invalid = |why: String| Err(RpcError::InvalidRequest(why));
        if let Some(required) = self.security.required_version() {
            if required != self.version {
                return invalid(format!(
                    "{} security needs protocol v{}",
                    match self.security {
                        Security::X509 { .. } => "x509",
                        _ => "ed25519/JWT",
                    },
                    required.number()
                ));
            }
        }
        for (what, value) in [
            ("agent", &self.agent),
            ("action", &self.action),
            ("collective", &self.collective),
        ] {
            if !is_subject_token(value) {
                return invalid(format!(
                    "{what} {value:?} must be a non-empty word without spaces, dots or wildcards"
                ));
            }
        }
        if let Some(c) = self.federation.iter().find(|c| !is_subject_token(c)) {
            return invalid(format!(
                "federation cluster {c:?} must be a non-empty word without spaces, dots or wildcards"
            ));
        }
        if let Some(id) = self.targets.iter().find(|id| !is_subject_tail(id)) {
            return invalid(format!(
                "target {id:?} must be an identity without spaces or wildcards"
            ));
        }
        if let Some(subject) = &self.reply_to {
            if !is_subject_tail(subject) {
                return invalid(format!(
                    "reply-to {subject:?} must be a NATS subject without wildcards"
                ));
            }
        }
        // v1's schema, which servers enforce, wants at least 30 seconds.
        if self.version == Version::V1 && self.ttl < 30 {
            return invalid(format!("ttl {} is under v1's minimum of 30", self.ttl));
        }
        if self.ttl < 1 {
            return invalid(format!("ttl {} must be positive", self.ttl));
        }
        if !self.data.is_object() {
            return invalid("data must be a JSON object".to_string());
        }
        Ok(())
    }

    /// The transport JSON (every copy of a directed request is the same bytes, as Go's
    /// `publishConnectedDirect` sends them).
    fn payload(&self, request_id: &str, now: SystemTime) -> Result<Vec<u8>, RpcError> {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let reply_to = self.reply_subject(request_id);
        let body = self.body();
        let filter = Some(self.effective_filter());
        match self.version {
            Version::V1 => {
                let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
                let mut request = v1::Request::new(
                    &self.agent,
                    &self.sender,
                    &self.caller,
                    self.ttl,
                    request_id,
                    &self.collective,
                    secs,
                );
                // v1 carries the body verbatim; servers base64-decode it only when they can.
                request.message = String::from_utf8_lossy(&body).into_owned();
                request.envelope.filter = filter;
                let request_json = gojson::to_string(&request);
                let secure = match &self.security {
                    Security::Insecure => v1::SecureRequest::insecure(&request_json),
                    Security::X509 { cert_pem, key } => {
                        v1::SecureRequest::sign(&request_json, cert_pem, key)
                    }
                    Security::Choria { .. } => unreachable_security()?,
                };
                let headers = v1::Headers {
                    reply_to,
                    sender: self.sender.clone(),
                    ..v1::Headers::default()
                };
                Ok(gojson::to_vec(&v1::Transport::new(
                    &gojson::to_vec(&secure),
                    headers,
                )))
            }
            Version::V2 => {
                let nanos = i64::try_from(since.as_nanos()).unwrap_or(i64::MAX);
                let mut request = v2::Request::new(
                    &self.agent,
                    &self.sender,
                    &self.caller,
                    self.ttl,
                    request_id,
                    &self.collective,
                    nanos,
                );
                request.set_message(&body);
                request.filter = filter;
                let request_json = gojson::to_vec(&request);
                let secure = match &self.security {
                    Security::Insecure => v2::SecureRequest {
                        protocol: v2::SECURE_REQUEST.to_string(),
                        request: b64_encode(&request_json),
                        signature: b64_encode(protocol::INSECURE.as_bytes()),
                        caller: String::new(),
                        signer: String::new(),
                    },
                    Security::Choria { jwt, key } => {
                        v2::SecureRequest::sign(&request_json, jwt, key)
                    }
                    Security::X509 { .. } => unreachable_security()?,
                };
                let headers = v2::Headers {
                    reply: reply_to,
                    sender: self.sender.clone(),
                    ..v2::Headers::default()
                };
                Ok(gojson::to_vec(&v2::Transport::new(
                    &gojson::to_vec(&secure),
                    headers,
                )))
            }
        }
    }
}

/// `check` has already rejected this combination; kept as an error, not a panic.
fn unreachable_security<T>() -> Result<T, RpcError> {
    Err(RpcError::InvalidRequest(
        "security does not match the protocol version".to_string(),
    ))
}

/// A NATS subject token: no dots, spaces or wildcards.
fn is_subject_token(s: &str) -> bool {
    !s.is_empty() && is_subject_tail(s) && !s.contains('.')
}

/// A literal NATS subject (or subject tail): no spaces, wildcards or empty tokens.
fn is_subject_tail(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '*' || c == '>' || c.is_control())
        && s.split('.').all(|t| !t.is_empty())
}

/// Go's reply subject: `<collective>.reply.<hex md5(caller)>.<request id>`.
pub fn default_reply_subject(collective: &str, caller: &str, request_id: &str) -> String {
    use md5::{Digest, Md5};
    let digest = hex::encode(Md5::digest(caller.as_bytes()));
    format!("{collective}.reply.{digest}.{request_id}")
}

/// A v1 request id as Go makes it: a random UUIDv4 without dashes, 32 hex characters.
pub fn new_v1_request_id() -> Result<String, RpcError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| RpcError::Random(e.to_string()))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    Ok(hex::encode(bytes))
}

/// A v2 request id: a KSUID, 27 base62 characters of a 4-byte timestamp (seconds
/// since 2014-05-13, KSUID's epoch) and 16 random bytes, which sorts by time.
pub fn new_v2_request_id(now: SystemTime) -> Result<String, RpcError> {
    const KSUID_EPOCH: u64 = 1_400_000_000;
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(KSUID_EPOCH);
    let mut raw = [0u8; 20];
    raw[..4].copy_from_slice(&u32::try_from(secs).unwrap_or(u32::MAX).to_be_bytes());
    getrandom::fill(&mut raw[4..]).map_err(|e| RpcError::Random(e.to_string()))?;
    Ok(base62_27(raw))
}

/// Base62 (`0-9A-Za-z`) of a 160-bit big-endian number, left-padded to 27 characters.
fn base62_27(mut n: [u8; 20]) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 27];
    for slot in out.iter_mut().rev() {
        // Long division of the whole number by 62; the remainder is the next digit.
        let mut rem = 0u32;
        for byte in n.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = u8::try_from(acc / 62).unwrap_or(u8::MAX);
            rem = acc % 62;
        }
        *slot = ALPHABET[rem as usize];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `choria=<$USER>.mcollective`, as Go derives it from the user's certificate name.
pub fn default_caller() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_string());
    format!("choria={user}.mcollective")
}

/// The host name, which Go uses as the client identity; `coro` when unknown.
pub fn default_sender() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "coro".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coro_core::protocol::{decode, Inner, Message};
    use std::time::Duration;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn v1_request_id_is_32_hex_uuid4() {
        let id = new_v1_request_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(&id[12..13], "4");
        assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"));
        assert_ne!(id, new_v1_request_id().unwrap());
    }

    #[test]
    fn v2_request_id_is_a_27_char_ksuid() {
        let id = new_v2_request_id(at()).unwrap();
        assert_eq!(id.len(), 27);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
        // The same second sorts before a later one whatever the random part.
        let later = new_v2_request_id(at() + Duration::from_secs(1)).unwrap();
        assert!(id[..6] <= later[..6]);
    }

    #[test]
    fn base62_matches_known_ksuid_bounds() {
        assert_eq!(base62_27([0; 20]), "000000000000000000000000000");
        assert_eq!(base62_27([0xff; 20]), "aWgEPTl1tmebfsQzFP4bxwgy80V");
    }

    #[test]
    fn default_reply_subject_is_md5_of_caller() {
        // md5("choria=rip.mcollective")
        use md5::{Digest, Md5};
        let md5 = hex::encode(Md5::digest(b"choria=rip.mcollective"));
        assert_eq!(md5.len(), 32);
        assert_eq!(
            default_reply_subject("mcollective", "choria=rip.mcollective", "abc"),
            format!("mcollective.reply.{md5}.abc")
        );
        assert_eq!(
            hex::encode(Md5::digest(b"")),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn body_in_go_key_order() {
        let mut r = RpcRequest::new("rpcutil", "ping");
        r.data = serde_json::json!({"z": 1, "a": "<x>"});
        assert_eq!(
            String::from_utf8(r.body()).unwrap(),
            r#"{"agent":"rpcutil","action":"ping","data":{"a":"\u003cx\u003e","z":1}}"#
        );
        r.agent = DISCOVERY_AGENT.into();
        assert_eq!(r.body(), b"cGluZw==");
    }

    #[test]
    fn v1_broadcast_request_decodes_with_everything_set() {
        let mut r = RpcRequest::new("rpcutil", "ping");
        r.caller = "choria=rip.mcollective".into();
        r.sender = "client.example".into();
        r.filter.add_class("apache");
        let id = "0123456789abcdef0123456789abcdef";
        let out = r.build_at(id, at()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "mcollective.broadcast.agent.rpcutil");
        let text = String::from_utf8(out[0].1.clone()).unwrap();
        assert!(text.starts_with(r#"{"protocol":"choria:transport:1","data":""#));
        let Message::Rpc(msg) = decode(&out[0].1).unwrap() else {
            panic!("not rpc")
        };
        let Inner::V1Request(req) = &msg.inner else {
            panic!("not a v1 request")
        };
        assert_eq!(req.envelope.requestid, id);
        assert_eq!(req.envelope.time, 1_700_000_000);
        assert_eq!(req.envelope.ttl, 60);
        let filter = req.envelope.filter.as_ref().unwrap();
        assert_eq!(filter.agent, vec!["rpcutil"]);
        assert_eq!(filter.cf_class, vec!["apache"]);
        let transport = msg.transport.as_ref().unwrap();
        assert_eq!(transport.reply_to(), r.reply_subject(id));
        assert_eq!(transport.sender(), "client.example");
        // Request JSON in Go's order.
        let secure = msg.secure.as_ref().unwrap();
        let protocol::Secure::V1Request(s) = secure else {
            panic!("not secure request")
        };
        assert!(s.message.starts_with(
            r#"{"protocol":"choria:request:1","message":"{\"agent\":\"rpcutil\",\"action\":\"ping\",\"data\":{}}","envelope":{"requestid":"#
        ));
        assert!(s.message.contains(r#""filter":{"fact":[],"cf_class":["apache"],"agent":["rpcutil"],"identity":[],"compound":[]}"#));
        assert_eq!(s.signature, "insecure");
    }

    #[test]
    fn directed_request_one_message_per_identity() {
        let mut r = RpcRequest::new("rpcutil", "ping");
        r.targets = vec!["a".into(), "b.example".into()];
        r.collective = "acme".into();
        let out = r.build("0123456789abcdef0123456789abcdef").unwrap();
        let subjects: Vec<_> = out.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(subjects, ["acme.node.a", "acme.node.b.example"]);
    }

    #[test]
    fn v2_request_is_nanoseconds_and_base64() {
        let mut r = RpcRequest::new("rpcutil", "ping");
        r.version = Version::V2;
        r.reply_to = Some("my.replies".into());
        let id = new_v2_request_id(at()).unwrap();
        let out = r.build_at(&id, at()).unwrap();
        let Message::Rpc(msg) = decode(&out[0].1).unwrap() else {
            panic!("not rpc")
        };
        let Inner::V2Request(req) = &msg.inner else {
            panic!("not a v2 request")
        };
        assert_eq!(req.time, 1_700_000_000_000_000_000);
        assert_eq!(req.id, id);
        assert_eq!(msg.transport.as_ref().unwrap().reply_to(), "my.replies");
        assert_eq!(
            msg.body(),
            br#"{"agent":"rpcutil","action":"ping","data":{}}"#
        );
    }

    #[test]
    fn signed_requests_verify() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut r = RpcRequest::new("rpcutil", "ping");
        r.version = Version::V2;
        r.security = Security::Choria {
            jwt: "a.b.c".into(),
            key: Box::new(key.clone()),
        };
        let out = r.build("x").unwrap();
        let Message::Rpc(msg) = decode(&out[0].1).unwrap() else {
            panic!("not rpc")
        };
        let Some(protocol::Secure::V2Request(s)) = &msg.secure else {
            panic!("no secure layer")
        };
        use ed25519_dalek::Verifier;
        let sig = protocol::b64_decode(protocol::Layer::SecureRequest, "signature", &s.signature)
            .unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        key.verifying_key()
            .verify(&s.request_bytes().unwrap(), &sig)
            .unwrap();
        // x509 with v2 is refused, not mis-signed.
        r.version = Version::V1;
        assert!(matches!(r.build("x"), Err(RpcError::InvalidRequest(_))));
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut r = RpcRequest::new("rpc util", "ping");
        assert!(r.build("x").is_err());
        r.agent = "rpcutil".into();
        r.targets = vec!["a.*".into()];
        assert!(r.build("x").is_err());
        r.targets.clear();
        r.ttl = 10;
        assert!(r.build("x").is_err());
        r.ttl = 60;
        r.data = serde_json::json!([1]);
        assert!(r.build("x").is_err());
    }

    #[test]
    fn jwt_caller_claim() {
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"callerid":"up=rip","purpose":"choria_client_id"}"#);
        assert_eq!(
            jwt_caller(&format!("h.{claims}.s")).as_deref(),
            Some("up=rip")
        );
        assert_eq!(jwt_caller("nope"), None);
    }
}
