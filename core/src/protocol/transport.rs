//! The outer layer of either version behind one type, for code that routes messages
//! (federation, adapters) without caring which generation sent them.

use super::codec::parse;
use super::error::{DecodeError, Layer};
use super::{v1, v2, Hop, Version};
use crate::gojson;

/// A v1 or v2 transport.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// `choria:transport:1`
    V1(v1::Transport),
    /// `io.choria.protocol.v2.transport`
    V2(v2::Transport),
}

/// The federation header, version-neutral.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FederationHeader {
    /// Request id (`req` / `request`).
    pub request_id: String,
    /// The client's original reply subject (`reply-to` / `reply`).
    pub reply_to: String,
    /// Target subjects (`target` / `targets`).
    pub targets: Vec<String>,
}

impl Transport {
    /// Parses the outer layer of `version` from `bytes`.
    pub fn decode(version: Version, bytes: &[u8]) -> Result<Transport, DecodeError> {
        Ok(match version {
            Version::V1 => Transport::V1(parse(Layer::Transport, bytes)?),
            Version::V2 => Transport::V2(parse(Layer::Transport, bytes)?),
        })
    }

    /// Go's compact JSON for this transport: the bytes to publish.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Transport::V1(t) => gojson::to_vec(t),
            Transport::V2(t) => gojson::to_vec(t),
        }
    }

    /// Protocol generation.
    pub fn version(&self) -> Version {
        match self {
            Transport::V1(_) => Version::V1,
            Transport::V2(_) => Version::V2,
        }
    }

    /// The secure layer's JSON bytes.
    pub fn data_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        match self {
            Transport::V1(t) => t.data_bytes(),
            Transport::V2(t) => t.data_bytes(),
        }
    }

    /// `reply-to` (v1) or `reply` (v2); empty when unset.
    pub fn reply_to(&self) -> &str {
        match self {
            Transport::V1(t) => &t.headers.reply_to,
            Transport::V2(t) => t.headers.as_ref().map_or("", |h| &h.reply),
        }
    }

    /// Sets the reply subject.
    pub fn set_reply_to(&mut self, subject: &str) {
        match self {
            Transport::V1(t) => t.headers.reply_to = subject.to_string(),
            Transport::V2(t) => {
                t.headers.get_or_insert_with(Default::default).reply = subject.to_string()
            }
        }
    }

    /// `mc_sender` (v1) or `sender` (v2).
    pub fn sender(&self) -> &str {
        match self {
            Transport::V1(t) => &t.headers.sender,
            Transport::V2(t) => t.headers.as_ref().map_or("", |h| &h.sender),
        }
    }

    /// `seen-by` (v1) or `trace` (v2) hops, oldest first.
    pub fn hops(&self) -> &[Hop] {
        match self {
            Transport::V1(t) => &t.headers.seen_by,
            Transport::V2(t) => t.headers.as_ref().map_or(&[], |h| &h.trace),
        }
    }

    /// Appends one hop, as Go's `RecordNetworkHop(in, processor, out)` does.
    pub fn record_hop(&mut self, in_server: &str, processor: &str, out_server: &str) {
        let hop = vec![
            in_server.to_string(),
            processor.to_string(),
            out_server.to_string(),
        ];
        match self {
            Transport::V1(t) => t.headers.seen_by.push(hop),
            Transport::V2(t) => t
                .headers
                .get_or_insert_with(Default::default)
                .trace
                .push(hop),
        }
    }

    /// The federation header, when the message is federated.
    pub fn federation(&self) -> Option<FederationHeader> {
        match self {
            Transport::V1(t) => t.headers.federation.as_ref().map(|f| FederationHeader {
                request_id: f.req.clone(),
                reply_to: f.reply_to.clone(),
                targets: f.target.clone(),
            }),
            Transport::V2(t) => t
                .headers
                .as_ref()
                .and_then(|h| h.federation.as_ref())
                .map(|f| FederationHeader {
                    request_id: f.request.clone(),
                    reply_to: f.reply.clone(),
                    targets: f.targets.clone(),
                }),
        }
    }

    /// Replaces the federation header (`None` removes it: Go's `SetUnfederated`).
    pub fn set_federation(&mut self, header: Option<FederationHeader>) {
        match self {
            Transport::V1(t) => {
                t.headers.federation = header.map(|h| v1::Federation {
                    req: h.request_id,
                    reply_to: h.reply_to,
                    target: h.targets,
                })
            }
            Transport::V2(t) => {
                let fed = header.map(|h| v2::Federation {
                    request: h.request_id,
                    reply: h.reply_to,
                    targets: h.targets,
                });
                match (t.headers.as_mut(), fed) {
                    (Some(headers), fed) => headers.federation = fed,
                    (None, Some(fed)) => {
                        t.headers = Some(v2::Headers {
                            federation: Some(fed),
                            ..Default::default()
                        })
                    }
                    (None, None) => {}
                }
            }
        }
    }
}
