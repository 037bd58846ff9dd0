//! One simulated Choria server: identity, facts, classes, collectives, agents, and the
//! request pipeline of go-choria's server (decode, verify, TTL, filter, dispatch,
//! reply), without any I/O.

use crate::agents::{AgentRequest, AgentSet};
use crate::registration;
use crate::security::{Authority, NodeCredentials, Security};
use coro_core::gojson;
use coro_core::protocol::{self, v1, v2, Inner, Layer, Message, NodeInfo, RpcMessage};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a node is: the parts that differ between nodes of a fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// The identity: `mc_sender` of replies, the `<collective>.node.<identity>` subject,
    /// and (x509) the certificate name.
    pub identity: String,
    /// Sub-collectives; the first is the main collective, where registration goes.
    pub collectives: Vec<String>,
    /// Facts, a JSON object.
    pub facts: serde_json::Value,
    /// Configuration management classes, lowercase.
    pub classes: Vec<String>,
}

/// Counters of one node, as go-choria's `InstanceStatus.stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Requests received.
    pub total: u64,
    /// Requests whose security checked out.
    pub valid: u64,
    /// Requests dropped as undecodable, unsigned or badly signed.
    pub invalid: u64,
    /// Requests that passed every check and reached an agent.
    pub passed: u64,
    /// Requests whose filter, collective or agent did not match this node.
    pub filtered: u64,
    /// Replies sent.
    pub replies: u64,
    /// Requests dropped because their time was outside now ± ttl.
    pub ttl_expired: u64,
}

/// Why a request was dropped as invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The payload is not a Choria message.
    #[error("undecodable: {0}")]
    Decode(String),
    /// The payload is a reply, a lifecycle event or lacks its transport.
    #[error("not a request in a transport")]
    NotARequest,
    /// The request's protocol or secure layer does not match the fleet's security mode.
    #[error("protocol does not match the security mode")]
    WrongProtocol,
    /// The request is marked insecure where a signature is required.
    #[error("unsigned request")]
    Unsigned,
    /// The signature, certificate or token did not verify.
    #[error("security: {0}")]
    Security(String),
}

/// What handling one payload came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Publish `payload` to `subject`.
    Reply {
        /// The request's reply subject.
        subject: String,
        /// The reply transport.
        payload: Vec<u8>,
    },
    /// The request passed, but there is nothing to send: the agent chose not to reply or
    /// the request had no reply subject.
    Silent,
    /// The filter, collective or agent did not match this node.
    Filtered,
    /// The request's time was outside now ± ttl.
    Expired,
    /// The request was dropped as invalid.
    Invalid(Invalid),
}

/// One simulated Choria server.
pub struct Node {
    info: NodeInfo,
    collectives: Vec<String>,
    agents: Arc<AgentSet>,
    authority: Arc<Authority>,
    credentials: NodeCredentials,
    stats: NodeStats,
    started: i64,
    last_message: i64,
    connected_server: Arc<str>,
    credentials_expire: Option<i64>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("identity", &self.info.identity)
            .field("collectives", &self.collectives)
            .field("agents", &self.agents)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// An insecure (v1, unsigned) node, e.g. for embedding or tests without a fleet.
    pub fn insecure(spec: NodeSpec, agents: Arc<AgentSet>) -> Node {
        let authority = Arc::new(Authority::insecure());
        Node::build(
            spec,
            agents,
            authority,
            NodeCredentials::Insecure,
            Arc::from(""),
        )
    }

    /// A node of a fleet, with its credentials from the fleet's authority.
    pub(crate) fn build(
        spec: NodeSpec,
        agents: Arc<AgentSet>,
        authority: Arc<Authority>,
        credentials: NodeCredentials,
        connected_server: Arc<str>,
    ) -> Node {
        let now = unix_now();
        let credentials_expire = match authority.mode() {
            Security::Insecure => None,
            Security::X509 | Security::V2 => Some(now + crate::security::VALIDITY_SECS),
        };
        Node {
            info: NodeInfo {
                identity: spec.identity,
                agents: agents.names().to_vec(),
                classes: spec.classes,
                facts: spec.facts,
            },
            collectives: spec.collectives,
            agents,
            authority,
            credentials,
            stats: NodeStats::default(),
            started: now,
            last_message: 0,
            connected_server,
            credentials_expire,
        }
    }

    /// The identity.
    pub fn identity(&self) -> &str {
        &self.info.identity
    }

    /// Facts as a JSON object.
    pub fn facts(&self) -> &serde_json::Value {
        &self.info.facts
    }

    /// The fact at a dotted path (`os.family`), if present.
    pub fn fact(&self, path: &str) -> Option<&serde_json::Value> {
        path.split('.')
            .try_fold(&self.info.facts, |v, key| v.get(key))
    }

    /// Classes.
    pub fn classes(&self) -> &[String] {
        &self.info.classes
    }

    /// Sub-collectives, main first.
    pub fn collectives(&self) -> &[String] {
        &self.collectives
    }

    /// The main collective (the first), where registration goes.
    pub fn main_collective(&self) -> &str {
        self.collectives
            .first()
            .map_or("mcollective", String::as_str)
    }

    /// The agents.
    pub fn agents(&self) -> &AgentSet {
        &self.agents
    }

    /// Counters so far.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// When the node started, unix seconds.
    pub fn started(&self) -> i64 {
        self.started
    }

    /// Unix seconds of the last request received (0 for none).
    pub fn last_message(&self) -> i64 {
        self.last_message
    }

    /// The server URL the node reports as connected to.
    pub fn connected_server(&self) -> &str {
        &self.connected_server
    }

    /// When the node's certificate or token expires, unix seconds.
    pub fn credentials_expire(&self) -> Option<i64> {
        self.credentials_expire
    }

    pub(crate) fn credentials(&self) -> &NodeCredentials {
        &self.credentials
    }

    pub(crate) fn security(&self) -> Security {
        self.authority.mode()
    }

    /// The subjects a Choria server subscribes to, none in a queue group:
    /// `<collective>.broadcast.agent.<agent>` for every agent and
    /// `<collective>.node.<identity>`, for every collective.
    pub fn subjects(&self) -> Vec<String> {
        let mut subjects =
            Vec::with_capacity(self.collectives.len() * (self.agents.names().len() + 1));
        for c in &self.collectives {
            for agent in self.agents.names() {
                subjects.push(format!("{c}.broadcast.agent.{agent}"));
            }
            subjects.push(format!("{c}.node.{}", self.info.identity));
        }
        subjects
    }

    /// The registration message: its subject and NATS payload. `compress` puts the
    /// inventory gzipped in `zcontent` (go-choria's default) rather than in `content`.
    pub fn registration(&self, compress: bool) -> (String, Vec<u8>) {
        registration::message(self, compress)
    }

    /// Handles one request payload at the current time.
    pub fn handle(&mut self, payload: &[u8]) -> Outcome {
        self.handle_at(payload, SystemTime::now())
    }

    /// Handles one request payload as go-choria's server does: count it, check its
    /// security, drop it when its time is outside `now ± ttl`, drop it when its filter,
    /// collective or agent does not match, then run the agent and build the reply
    /// (same protocol version as the request, `mc_sender` = this node).
    pub fn handle_at(&mut self, payload: &[u8], now: SystemTime) -> Outcome {
        let now_ns = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let now_s = now_ns / 1_000_000_000;
        self.stats.total += 1;
        self.last_message = now_s;
        let msg = match protocol::decode(payload) {
            Ok(Message::Rpc(msg)) => msg,
            Ok(Message::Lifecycle(_)) => return self.invalid(Invalid::NotARequest),
            Err(e) => return self.invalid(Invalid::Decode(e.to_string())),
        };
        let (Some(transport), Inner::V1Request(_) | Inner::V2Request(_)) =
            (&msg.transport, &msg.inner)
        else {
            return self.invalid(Invalid::NotARequest);
        };
        let caller = msg.inner.caller().unwrap_or_default();
        if let Err(why) = self
            .authority
            .check_request(msg.secure.as_ref(), caller, now_s)
        {
            return self.invalid(why);
        }
        self.stats.valid += 1;

        let ttl = msg.inner.ttl().unwrap_or_default();
        let age = i128::from(now_ns) - msg.inner.time_ns();
        if ttl <= 0 || age.abs() >= i128::from(ttl) * 1_000_000_000 {
            self.stats.ttl_expired += 1;
            return Outcome::Expired;
        }

        let collective = msg.inner.collective().unwrap_or_default();
        let agent_name = msg.inner.agent();
        let agent = match self.agents.get(agent_name) {
            Some(agent) if self.collectives.iter().any(|c| c == collective) => agent.clone(),
            _ => {
                self.stats.filtered += 1;
                return Outcome::Filtered;
            }
        };
        if let Some(filter) = msg.inner.filter() {
            // A compound filter needs Choria's expression language, which the core does
            // not evaluate: such a node does not act, as a server that cannot parse it.
            if !filter.matches(&self.info).unwrap_or(false) {
                self.stats.filtered += 1;
                return Outcome::Filtered;
            }
        }
        self.stats.passed += 1;

        let body = request_body(&msg);
        let request = AgentRequest {
            node: self,
            agent: agent_name,
            request_id: msg.inner.request_id(),
            caller,
            sender: msg.inner.sender(),
            collective,
            body: &body,
        };
        let Some(reply_body) = agent.handle(&request) else {
            return Outcome::Silent;
        };
        let reply_to = transport.reply_to();
        if reply_to.is_empty() {
            return Outcome::Silent;
        }
        let payload = self.reply(&msg, &reply_body, now_s, now_ns);
        self.stats.replies += 1;
        Outcome::Reply {
            subject: reply_to.to_string(),
            payload,
        }
    }

    fn invalid(&mut self, why: Invalid) -> Outcome {
        self.stats.invalid += 1;
        Outcome::Invalid(why)
    }

    /// The reply transport for `msg`, in its protocol version.
    fn reply(&self, msg: &RpcMessage, body: &[u8], now_s: i64, now_ns: i64) -> Vec<u8> {
        let identity = &self.info.identity;
        // go-choria copies the federation request id and reply subject into replies so
        // a federation broker can route them back; the targets stay behind.
        let federation = msg.transport.as_ref().and_then(|t| t.federation());
        // With them the request's hops, before the server's own (`CopyFederationData`,
        // PROTOCOL.md §3.4), so the client sees the whole path.
        let hop = match (&federation, &msg.transport) {
            (Some(_), Some(t)) => t.hops().iter().cloned().chain(self.hop()).collect(),
            _ => self.hop(),
        };
        match &msg.inner {
            Inner::V2Request(req) => {
                let reply = v2::Reply::for_request(req, identity, now_ns, body);
                let secure = self.credentials.secure_v2_reply(&gojson::to_vec(&reply));
                let headers = v2::Headers {
                    sender: identity.clone(),
                    trace: hop,
                    federation: federation.map(|f| v2::Federation {
                        request: f.request_id,
                        reply: f.reply_to,
                        targets: Vec::new(),
                    }),
                    ..Default::default()
                };
                gojson::to_vec(&v2::Transport::new(&gojson::to_vec(&secure), headers))
            }
            Inner::V1Request(req) => {
                let text = String::from_utf8_lossy(body);
                let reply = v1::Reply::for_request(req, identity, now_s, &text);
                let secure = v1::SecureReply::new(&gojson::to_string(&reply));
                let headers = v1::Headers {
                    sender: identity.clone(),
                    seen_by: hop,
                    federation: federation.map(|f| v1::Federation {
                        req: f.request_id,
                        reply_to: f.reply_to,
                        target: Vec::new(),
                    }),
                    ..Default::default()
                };
                gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
            }
            // handle_at only builds replies for requests.
            Inner::V1Reply(_) | Inner::V2Reply(_) => Vec::new(),
        }
    }

    /// The network hop Go records on publish: `[server, identity, server]`.
    pub(crate) fn hop(&self) -> Vec<Vec<String>> {
        if self.connected_server.is_empty() {
            return Vec::new();
        }
        let server = self.connected_server.to_string();
        vec![vec![server.clone(), self.info.identity.clone(), server]]
    }
}

/// The body an agent sees. v1: Go base64-decodes `message` when it can and keeps the
/// raw text when it cannot (raw JSON from RPC clients, `cGluZw==` from discovery); v2
/// bodies are always base64 and arrive decoded.
fn request_body(msg: &RpcMessage) -> Vec<u8> {
    match &msg.inner {
        Inner::V1Request(r) => protocol::b64_decode(Layer::Request, "message", &r.message)
            .unwrap_or_else(|_| r.message.as_bytes().to_vec()),
        _ => msg.body().to_vec(),
    }
}

pub(crate) fn unix_now() -> i64 {
    crate::security::unix_now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coro_core::protocol::{transport::FederationHeader, Transport};

    fn node() -> Node {
        let generated = crate::facts::generate(1, 4);
        Node::insecure(
            NodeSpec {
                identity: "node-00004".into(),
                collectives: vec!["mcollective".into()],
                facts: generated.facts,
                classes: generated.classes,
            },
            Arc::new(AgentSet::standard()),
        )
    }

    fn request(agent: &str, body: &str) -> v1::Request {
        let mut req = v1::Request::new(
            agent,
            "client",
            "choria=client",
            60,
            "0123456789abcdef0123456789abcdef",
            "mcollective",
            unix_now(),
        );
        req.message = body.into();
        req
    }

    fn payload(req: &v1::Request, reply_to: &str) -> Vec<u8> {
        let secure = v1::SecureRequest::insecure(&gojson::to_string(req));
        let headers = v1::Headers {
            reply_to: reply_to.into(),
            ..Default::default()
        };
        gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
    }

    fn decode(payload: &[u8]) -> RpcMessage {
        match protocol::decode(payload).unwrap() {
            Message::Rpc(m) => *m,
            other => panic!("{other:?}"),
        }
    }

    const PING: &str = r#"{"agent":"rpcutil","action":"ping"}"#;

    #[test]
    fn answers_ping_in_v1() {
        let mut n = node();
        let out = n.handle(&payload(&request("rpcutil", PING), "r.1"));
        let Outcome::Reply { subject, payload } = out else {
            panic!("{out:?}")
        };
        assert_eq!(subject, "r.1");
        let reply = decode(&payload);
        assert_eq!(reply.inner.sender(), "node-00004");
        assert_eq!(reply.transport.as_ref().unwrap().sender(), "node-00004");
        let body: serde_json::Value = serde_json::from_slice(reply.body()).unwrap();
        assert_eq!(body["statuscode"], 0);
        assert!(body["data"]["pong"].is_i64());
        // Go's key order.
        assert!(std::str::from_utf8(reply.body())
            .unwrap()
            .starts_with(r#"{"action":"ping","statuscode":0,"statusmsg":"OK","data":{"pong":"#));
        assert_eq!(n.stats().replies, 1);
        assert_eq!(n.stats().passed, 1);
    }

    #[test]
    fn answers_v2_with_v2() {
        let mut n = node();
        let mut req = v2::Request::new(
            "discovery",
            "client",
            "choria=client",
            60,
            &crate::ids::ksuid(),
            "mcollective",
            i64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos(),
            )
            .unwrap(),
        );
        req.set_message(b"ping");
        let secure = v2::SecureRequest::sign(
            &gojson::to_vec(&req),
            "not-checked-in-insecure-mode",
            &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        );
        let headers = v2::Headers {
            reply: "r.2".into(),
            ..Default::default()
        };
        let p = gojson::to_vec(&v2::Transport::new(&gojson::to_vec(&secure), headers));
        let Outcome::Reply { payload, .. } = n.handle(&p) else {
            panic!()
        };
        let reply = decode(&payload);
        assert!(matches!(reply.inner, Inner::V2Reply(_)));
        assert_eq!(reply.body(), b"pong");
        assert_eq!(reply.inner.request_id(), req.id);
    }

    #[test]
    fn drops_what_a_server_drops() {
        let mut n = node();
        assert!(matches!(
            n.handle(b"junk"),
            Outcome::Invalid(Invalid::Decode(_))
        ));

        let mut old = request("rpcutil", PING);
        old.envelope.time -= 120;
        assert_eq!(n.handle(&payload(&old, "r")), Outcome::Expired);

        let mut other = request("rpcutil", PING);
        other.envelope.collective = "other".into();
        assert_eq!(n.handle(&payload(&other, "r")), Outcome::Filtered);

        assert_eq!(
            n.handle(&payload(&request("puppet", PING), "r")),
            Outcome::Filtered
        );

        let mut compound = request("rpcutil", PING);
        compound
            .envelope
            .filter
            .as_mut()
            .unwrap()
            .add_compound("country=mt");
        assert_eq!(n.handle(&payload(&compound, "r")), Outcome::Filtered);

        let mut fact = request("rpcutil", PING);
        fact.envelope
            .filter
            .as_mut()
            .unwrap()
            .add_fact("fleet_index", "==", "4")
            .unwrap();
        assert!(matches!(
            n.handle(&payload(&fact, "r")),
            Outcome::Reply { .. }
        ));

        // No reply subject: the agent runs, nothing is sent.
        assert_eq!(
            n.handle(&payload(&request("rpcutil", PING), "")),
            Outcome::Silent
        );
        // Discovery without "ping" in the body does not answer.
        assert_eq!(
            n.handle(&payload(&request("discovery", "cG9uZw=="), "r")),
            Outcome::Silent
        );
        let s = n.stats();
        assert_eq!(
            (
                s.total,
                s.invalid,
                s.ttl_expired,
                s.filtered,
                s.passed,
                s.replies
            ),
            (8, 1, 1, 3, 3, 1)
        );
    }

    #[test]
    fn replies_keep_the_federation_header() {
        let mut n = node();
        let p = payload(&request("rpcutil", PING), "choria.federation.x.collective");
        let Message::Rpc(m) = protocol::decode(&p).unwrap() else {
            panic!()
        };
        let mut t = m.transport.unwrap();
        t.set_federation(Some(FederationHeader {
            request_id: "0123456789abcdef0123456789abcdef".into(),
            reply_to: "mcollective.reply.abc.0123".into(),
            targets: vec!["mcollective.broadcast.agent.rpcutil".into()],
        }));
        let Outcome::Reply { subject, payload } = n.handle(&t.encode()) else {
            panic!()
        };
        assert_eq!(subject, "choria.federation.x.collective");
        let reply = decode(&payload);
        let fed = reply
            .transport
            .as_ref()
            .and_then(Transport::federation)
            .unwrap();
        assert_eq!(fed.reply_to, "mcollective.reply.abc.0123");
        assert_eq!(fed.request_id, "0123456789abcdef0123456789abcdef");
        assert!(fed.targets.is_empty());
    }

    #[test]
    fn subscribes_like_a_server() {
        assert_eq!(
            node().subjects(),
            [
                "mcollective.broadcast.agent.discovery",
                "mcollective.broadcast.agent.rpcutil",
                "mcollective.node.node-00004",
            ]
        );
    }

    #[test]
    fn registration_is_inventory_content() {
        let (subject, payload) = node().registration(true);
        assert_eq!(subject, "mcollective.broadcast.agent.registration");
        let m = decode(&payload);
        assert_eq!(m.transport.as_ref().unwrap().reply_to(), "dev.null");
        let reg = protocol::registration::Registration::decode(m.body()).unwrap();
        assert!(reg.is_compressed());
    }
}
