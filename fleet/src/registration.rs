//! `inventory_content` registration (PROTOCOL.md §5.5): the node's agents, classes,
//! facts, status and collectives, published as an ordinary request to
//! `<main collective>.broadcast.agent.registration` with `reply-to: dev.null`, signed
//! like any request of the node.

use crate::agents::AgentMetadata;
use crate::node::{Node, NodeStats};
use crate::security::Security;
use coro_core::gojson;
use coro_core::protocol::{self, registration::InventoryContent, v1, v2};
use serde::Serialize;
use serde_json::value::RawValue;

/// The version the simulated servers report (`build_info.version`, `rpcutil`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The build sha the simulated servers report.
pub const SHA: &str = "coro-fleet";
/// Go's zero `time.Time`, what `InstanceStatus` reports for an absent expiry.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `statistics.InstanceStatus.stats`, Go's field order.
#[derive(Serialize)]
struct Stats {
    total: u64,
    valid: u64,
    invalid: u64,
    passed: u64,
    filtered: u64,
    replies: u64,
    ttlexpired: u64,
    events: u64,
}

impl From<&NodeStats> for Stats {
    fn from(s: &NodeStats) -> Self {
        Stats {
            total: s.total,
            valid: s.valid,
            invalid: s.invalid,
            passed: s.passed,
            filtered: s.filtered,
            replies: s.replies,
            ttlexpired: s.ttl_expired,
            events: 0,
        }
    }
}

/// `statistics.InstanceStatus`.
#[derive(Serialize)]
struct InstanceStatus<'a> {
    identity: &'a str,
    uptime: i64,
    connected_server: &'a str,
    last_message: i64,
    provisioning_mode: bool,
    stats: Stats,
    certificate_expires: String,
    token_expires: String,
}

#[derive(Serialize)]
struct BuildInfo {
    version: &'static str,
    sha: &'static str,
}

/// `registration.InventoryData`, Go's field order.
#[derive(Serialize)]
struct InventoryData<'a> {
    agents: Vec<&'a AgentMetadata>,
    classes: &'a [String],
    facts: &'a serde_json::Value,
    status: InstanceStatus<'a>,
    collectives: &'a [String],
    build_info: BuildInfo,
    machines: [(); 0],
}

/// The node's inventory JSON (`InventoryData`), as Go marshals it.
pub fn inventory_data(node: &Node) -> Vec<u8> {
    let now = crate::node::unix_now();
    let expires = node
        .credentials_expire()
        .map_or_else(|| ZERO_TIME.to_string(), rfc3339);
    let (certificate_expires, token_expires) = match node.security() {
        Security::X509 => (expires, ZERO_TIME.to_string()),
        Security::V2 => (ZERO_TIME.to_string(), expires),
        Security::Insecure => (ZERO_TIME.to_string(), ZERO_TIME.to_string()),
    };
    gojson::to_vec(&InventoryData {
        agents: node.agents().metadata().collect(),
        classes: node.classes(),
        facts: node.facts(),
        status: InstanceStatus {
            identity: node.identity(),
            uptime: now - node.started(),
            connected_server: node.connected_server(),
            last_message: node.last_message(),
            provisioning_mode: false,
            stats: node.stats().into(),
            certificate_expires,
            token_expires,
        },
        collectives: node.collectives(),
        build_info: BuildInfo {
            version: VERSION,
            sha: SHA,
        },
        machines: [],
    })
}

/// The `choria:registration:inventorycontent:1` body for inventory JSON `data`: gzip
/// and base64 in `zcontent` when `compress` (go-choria's default), else the JSON
/// embedded in `content`.
pub fn inventory_content(data: &[u8], compress: bool) -> Vec<u8> {
    let mut msg = InventoryContent {
        protocol: protocol::registration::INVENTORY_CONTENT.to_string(),
        content: None,
        zcontent: String::new(),
    };
    if compress {
        msg.zcontent = protocol::b64_encode(&protocol::gzip(data));
    } else {
        // Our own JSON is always valid; should it somehow not be, fall back to gzip.
        match std::str::from_utf8(data)
            .ok()
            .and_then(|s| RawValue::from_string(s.to_string()).ok())
        {
            Some(raw) => msg.content = Some(raw),
            None => msg.zcontent = protocol::b64_encode(&protocol::gzip(data)),
        }
    }
    gojson::to_vec(&msg)
}

/// The subject and NATS payload of `node`'s registration.
pub(crate) fn message(node: &Node, compress: bool) -> (String, Vec<u8>) {
    let body = inventory_content(&inventory_data(node), compress);
    let collective = node.main_collective();
    let subject = format!("{collective}.broadcast.agent.registration");
    let identity = node.identity();
    let caller = format!("choria={identity}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let payload = match node.security() {
        Security::V2 => {
            let mut request = v2::Request::new(
                "registration",
                identity,
                &caller,
                60,
                &crate::ids::ksuid(),
                collective,
                i64::try_from(now.as_nanos()).unwrap_or(i64::MAX),
            );
            request.set_message(&body);
            let secure = node
                .credentials()
                .secure_v2_request(&gojson::to_vec(&request));
            let headers = v2::Headers {
                reply: "dev.null".to_string(),
                sender: identity.to_string(),
                trace: node.hop(),
                federation: None,
            };
            gojson::to_vec(&v2::Transport::new(&gojson::to_vec(&secure), headers))
        }
        Security::Insecure | Security::X509 => {
            let mut request = v1::Request::new(
                "registration",
                identity,
                &caller,
                60,
                &crate::ids::v1_request_id(),
                collective,
                i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            );
            // The registration JSON goes into `message` as text, as Go's NewMessage.
            request.message = String::from_utf8_lossy(&body).into_owned();
            let secure = node
                .credentials()
                .secure_v1_registration(&gojson::to_string(&request));
            let headers = v1::Headers {
                reply_to: "dev.null".to_string(),
                sender: identity.to_string(),
                seen_by: node.hop(),
                federation: None,
            };
            gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
        }
    };
    (subject, payload)
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ZERO_TIME.to_string())
}
