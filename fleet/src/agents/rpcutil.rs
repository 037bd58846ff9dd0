//! The `rpcutil` agent: `ping`, `inventory`, `collective_info`, `get_fact`,
//! `get_facts`, `agent_inventory` and `daemon_stats`, with the reply data shapes of
//! go-choria's rpcutil agent.

use super::{parse_rpc, status, Agent, AgentMetadata, AgentRequest, RpcReply};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The rpcutil agent.
#[derive(Debug, Clone)]
pub struct Rpcutil {
    metadata: AgentMetadata,
}

impl Rpcutil {
    /// The agent with go-choria's metadata.
    pub fn new() -> Self {
        Rpcutil {
            metadata: AgentMetadata {
                license: "Apache-2.0".into(),
                author: "R.I.Pienaar <rip@devco.net>".into(),
                timeout: 2,
                name: "rpcutil".into(),
                version: crate::registration::VERSION.into(),
                url: "https://choria.io".into(),
                description: "Choria RPC Utilities".into(),
                provider: "golang".into(),
                service: false,
            },
        }
    }
}

impl Default for Rpcutil {
    fn default() -> Self {
        Rpcutil::new()
    }
}

/// `inventory` reply data, fields in Go's order.
#[derive(Serialize)]
struct Inventory<'a> {
    agents: &'a [String],
    classes: &'a [String],
    collectives: &'a [String],
    data_plugins: [&'a str; 0],
    facts: &'a Value,
    machines: [&'a str; 0],
    main_collective: &'a str,
    version: &'a str,
}

/// One `agent_inventory` entry: the agent name, then its metadata.
#[derive(Serialize)]
struct AgentInventoryItem<'a> {
    agent: &'a str,
    #[serde(flatten)]
    metadata: &'a AgentMetadata,
}

#[derive(Serialize)]
struct Pong {
    pong: i64,
}

#[derive(Serialize)]
struct CollectiveInfo<'a> {
    main_collective: &'a str,
    collectives: &'a [String],
}

#[derive(Serialize)]
struct Fact<'a> {
    fact: &'a str,
    value: Option<&'a Value>,
}

#[derive(Serialize)]
struct Facts<'a> {
    values: BTreeMap<&'a str, Option<&'a Value>>,
}

#[derive(Serialize)]
struct AgentInventory<'a> {
    agents: Vec<AgentInventoryItem<'a>>,
}

#[derive(Serialize)]
struct CpuTimes {
    cstime: u64,
    cutime: u64,
    stime: u64,
    utime: u64,
}

/// `daemon_stats` reply data, fields in Go's order.
#[derive(Serialize)]
struct DaemonStats<'a> {
    agents: &'a [String],
    configfile: &'a str,
    filtered: u64,
    pid: u32,
    passed: u64,
    threads: [&'a str; 1],
    replies: u64,
    starttime: i64,
    ttlexpired: u64,
    times: CpuTimes,
    total: u64,
    unvalidated: u64,
    validated: u64,
    version: &'a str,
}

impl Agent for Rpcutil {
    fn metadata(&self) -> &AgentMetadata {
        &self.metadata
    }

    fn handle(&self, request: &AgentRequest<'_>) -> Option<Vec<u8>> {
        let rpc = match parse_rpc(request.body) {
            Ok(rpc) => rpc,
            Err(reply) => return Some(reply.to_vec()),
        };
        let node = request.node;
        let input = rpc.data.unwrap_or(Value::Null);
        let action = rpc.action.as_str();
        let input_str = |key: &str| input.get(key).and_then(Value::as_str).unwrap_or("");
        Some(match action {
            "ping" => RpcReply::ok(action, Pong { pong: unix_now() }).to_vec(),
            "inventory" => RpcReply::ok(
                action,
                Inventory {
                    agents: node.agents().names(),
                    classes: node.classes(),
                    collectives: node.collectives(),
                    data_plugins: [],
                    facts: node.facts(),
                    machines: [],
                    main_collective: node.main_collective(),
                    version: crate::registration::VERSION,
                },
            )
            .to_vec(),
            "collective_info" => RpcReply::ok(
                action,
                CollectiveInfo {
                    main_collective: node.main_collective(),
                    collectives: node.collectives(),
                },
            )
            .to_vec(),
            "get_fact" => {
                let fact = input_str("fact");
                RpcReply::ok(
                    action,
                    Fact {
                        fact,
                        value: node.fact(fact),
                    },
                )
                .to_vec()
            }
            "get_facts" => {
                let values = input_str("facts")
                    .split(',')
                    .map(str::trim)
                    .map(|f| (f, node.fact(f)))
                    .collect();
                RpcReply::ok(action, Facts { values }).to_vec()
            }
            "agent_inventory" => {
                let agents = node
                    .agents()
                    .metadata()
                    .map(|m| AgentInventoryItem {
                        agent: &m.name,
                        metadata: m,
                    })
                    .collect();
                RpcReply::ok(action, AgentInventory { agents }).to_vec()
            }
            "daemon_stats" => {
                let s = node.stats();
                RpcReply::ok(
                    action,
                    DaemonStats {
                        agents: node.agents().names(),
                        configfile: "/etc/choria/server.conf",
                        filtered: s.filtered,
                        pid: std::process::id(),
                        passed: s.passed,
                        threads: ["coro-fleet simulated server"],
                        replies: s.replies,
                        starttime: node.started(),
                        ttlexpired: s.ttl_expired,
                        times: CpuTimes {
                            cstime: 0,
                            cutime: 0,
                            stime: 0,
                            utime: 0,
                        },
                        total: s.total,
                        unvalidated: s.invalid,
                        validated: s.valid,
                        version: crate::registration::VERSION,
                    },
                )
                .to_vec()
            }
            other => RpcReply::error(
                other,
                status::UNKNOWN_ACTION,
                format!("Unknown action {other} for agent {}", request.agent),
            )
            .to_vec(),
        })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
