//! Agents: what a node does with a request that passed its checks.
//!
//! An [`Agent`] gets the request body (already base64-decoded where Choria does so) and
//! returns the reply body, or `None` to send no reply. Most agents speak MCollective
//! SimpleRPC ([`RpcRequest`] in, [`RpcReply`] out); [`discovery`] answers raw `pong`.
//! Agents are shared by every node of a fleet through an [`AgentSet`], so their metadata
//! costs nothing per node.

pub mod discovery;
pub mod rpcutil;

use crate::node::Node;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An agent's description, Choria's `agents.Metadata`; fields in Go's order, as it
/// appears in registration and `rpcutil agent_inventory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMetadata {
    /// Licence of the agent.
    pub license: String,
    /// Author, e.g. `R.I.Pienaar <rip@devco.net>`.
    pub author: String,
    /// Seconds an action may run; Choria rejects agents with less than 1.
    pub timeout: u64,
    /// Agent name, also the subject suffix it is reached on.
    pub name: String,
    /// Agent version.
    pub version: String,
    /// Home page.
    pub url: String,
    /// One line about the agent.
    pub description: String,
    /// Which provider implements it (`golang`, `ruby`, `external`), when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// Service agents are load-balanced rather than broadcast.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service: bool,
}

/// One request as an agent sees it.
#[derive(Debug, Clone, Copy)]
pub struct AgentRequest<'a> {
    /// The node handling the request: identity, facts, classes, stats.
    pub node: &'a Node,
    /// The agent named by the request.
    pub agent: &'a str,
    /// The request id.
    pub request_id: &'a str,
    /// The caller id, e.g. `choria=rip.mcollective`.
    pub caller: &'a str,
    /// The client identity.
    pub sender: &'a str,
    /// The sub-collective the request was sent to.
    pub collective: &'a str,
    /// The body: v1 `message` base64-decoded when it is base64 (as Go does), else as
    /// sent; v2 `message` decoded.
    pub body: &'a [u8],
}

/// A Choria agent. Implementations must be cheap to call: a fleet runs thousands of
/// nodes on a few threads, and each request is handled inline.
pub trait Agent: Send + Sync + 'static {
    /// The agent's metadata; `name` is what requests address.
    fn metadata(&self) -> &AgentMetadata;

    /// Handles one request: `Some(body)` is sent back as the reply body, `None` sends
    /// nothing (Choria's `DisableResponse`, or a request the agent ignores).
    fn handle(&self, request: &AgentRequest<'_>) -> Option<Vec<u8>>;
}

/// The agents of a node, sorted by name; shared by every node of a fleet.
#[derive(Clone, Default)]
pub struct AgentSet {
    agents: Vec<Arc<dyn Agent>>,
    names: Vec<String>,
}

impl std::fmt::Debug for AgentSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.names).finish()
    }
}

impl AgentSet {
    /// An empty set.
    pub fn new() -> Self {
        AgentSet::default()
    }

    /// The standard set of a simulated server: `discovery` and `rpcutil`.
    pub fn standard() -> Self {
        let mut set = AgentSet::new();
        set.add(Arc::new(discovery::Discovery::new()));
        set.add(Arc::new(rpcutil::Rpcutil::new()));
        set
    }

    /// Adds an agent, replacing one of the same name.
    pub fn add(&mut self, agent: Arc<dyn Agent>) {
        let name = agent.metadata().name.clone();
        match self.names.binary_search(&name) {
            Ok(i) => self.agents[i] = agent,
            Err(i) => {
                self.agents.insert(i, agent);
                self.names.insert(i, name);
            }
        }
    }

    /// The agent called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Agent>> {
        self.names
            .binary_search_by(|n| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.agents[i])
    }

    /// Agent names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every agent's metadata, sorted by name.
    pub fn metadata(&self) -> impl Iterator<Item = &AgentMetadata> {
        self.agents.iter().map(|a| a.metadata())
    }
}

/// MCollective SimpleRPC status codes.
pub mod status {
    /// The action succeeded.
    pub const OK: u8 = 0;
    /// The action was aborted (also: not authorized).
    pub const ABORTED: u8 = 1;
    /// The agent has no such action.
    pub const UNKNOWN_ACTION: u8 = 2;
    /// Required input was missing.
    pub const MISSING_DATA: u8 = 3;
    /// The input was invalid (also: the request could not be parsed).
    pub const INVALID_DATA: u8 = 4;
    /// Something else failed.
    pub const UNKNOWN_ERROR: u8 = 5;
}

/// A SimpleRPC request body: `{"agent":..,"action":..,"data":{..}}`. Ruby clients add
/// `caller`, which is ignored here as Go does (the envelope is authoritative).
#[derive(Debug, Clone, Deserialize)]
pub struct RpcRequest {
    /// The agent.
    #[serde(default)]
    pub agent: String,
    /// The action.
    pub action: String,
    /// Action inputs; missing or `null` becomes `{}`.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// A SimpleRPC reply body: `{"action":..,"statuscode":0,"statusmsg":"OK","data":{..}}`.
/// `data` is any serialisable value, so action outputs keep Go's field order.
#[derive(Debug, Clone, Serialize)]
pub struct RpcReply<T = serde_json::Value> {
    /// The action that was called.
    pub action: String,
    /// One of [`status`].
    pub statuscode: u8,
    /// `OK` or why not.
    pub statusmsg: String,
    /// The action's output; `{}` by default.
    pub data: T,
}

impl<T: Serialize> RpcReply<T> {
    /// A successful reply with `data`.
    pub fn ok(action: &str, data: T) -> Self {
        RpcReply {
            action: action.to_string(),
            statuscode: status::OK,
            statusmsg: "OK".to_string(),
            data,
        }
    }

    /// The JSON bytes, encoded as Go would.
    pub fn to_vec(&self) -> Vec<u8> {
        coro_core::gojson::to_vec(self)
    }
}

impl RpcReply {
    /// A failed reply with an empty `data`.
    pub fn error(action: &str, statuscode: u8, statusmsg: impl Into<String>) -> Self {
        RpcReply {
            action: action.to_string(),
            statuscode,
            statusmsg: statusmsg.into(),
            data: serde_json::json!({}),
        }
    }
}

/// Parses a SimpleRPC request body, or gives the reply Choria sends when it cannot
/// (status 4, invalid data).
pub fn parse_rpc(body: &[u8]) -> Result<RpcRequest, RpcReply> {
    serde_json::from_slice::<RpcRequest>(body).map_err(|e| {
        RpcReply::error(
            "",
            status::INVALID_DATA,
            format!("Could not process request: {e}"),
        )
    })
}
