//! Collecting the replies to one request from a NATS subject.

use super::RpcError;
use coro_core::protocol::{self, Direction, Message};
use futures::StreamExt;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// One node's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcReply {
    /// The answering server's identity.
    pub sender: String,
    /// The RPC status code (0 OK, 1 Aborted, 2 UnknownAction, 3 MissingData,
    /// 4 InvalidData, 5 UnknownError); `None` when the body is not an RPC reply, e.g.
    /// discovery's `pong`.
    pub statuscode: Option<i64>,
    /// The RPC status message; empty when the body is not an RPC reply.
    pub statusmsg: String,
    /// The reply's `data`; the whole body (JSON, else text) when it is not an RPC reply.
    pub data: serde_json::Value,
    /// Time from the start of collection to arrival.
    pub latency: Duration,
}

impl RpcReply {
    /// True unless the node answered with a non-zero status code.
    pub fn is_ok(&self) -> bool {
        self.statuscode.is_none_or(|c| c == 0)
    }
}

/// What arrived for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replies {
    /// One reply per sender, in arrival order.
    pub replies: Vec<RpcReply>,
    /// Messages that were not Choria messages at all.
    pub undecodable: usize,
    /// Choria messages that were not replies to this request.
    pub unrelated: usize,
    /// Further replies from a sender that had already answered (dropped).
    pub duplicates: usize,
    /// How long collection ran.
    pub elapsed: Duration,
}

impl Replies {
    /// How many replies carried each status code (`None`: not an RPC reply).
    pub fn status_counts(&self) -> BTreeMap<Option<i64>, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.replies {
            *counts.entry(r.statuscode).or_insert(0) += 1;
        }
        counts
    }

    /// Replies with a non-zero status code.
    pub fn failed(&self) -> usize {
        self.replies.iter().filter(|r| !r.is_ok()).count()
    }

    /// How many of `expected` nodes did not answer.
    pub fn missing(&self, expected: usize) -> usize {
        expected.saturating_sub(self.replies.len())
    }

    /// The replies sorted by sender.
    pub fn sorted(&self) -> Vec<&RpcReply> {
        let mut sorted: Vec<&RpcReply> = self.replies.iter().collect();
        sorted.sort_by(|a, b| a.sender.cmp(&b.sender));
        sorted
    }
}

/// A live subscription to a reply subject. Make it before publishing the request, so
/// no early reply is missed.
pub struct ReplySubscription {
    subscriber: async_nats::Subscriber,
    subject: String,
}

/// Subscribes to `subject` and sends the subscription to the server. The server
/// handles one connection's operations in order, so a request published afterwards
/// on the same `client` cannot overtake it; messages published on other connections
/// right now may still miss it.
pub async fn subscribe(
    client: &async_nats::Client,
    subject: &str,
) -> Result<ReplySubscription, RpcError> {
    let subscriber = client
        .subscribe(subject.to_string())
        .await
        .map_err(|e| RpcError::Nats(format!("subscribing to {subject}: {e}")))?;
    // Out of the write buffer now, not with the next batch of publishes.
    client
        .flush()
        .await
        .map_err(|e| RpcError::Nats(format!("subscribing to {subject}: {e}")))?;
    Ok(ReplySubscription {
        subscriber,
        subject: subject.to_string(),
    })
}

impl ReplySubscription {
    /// The subscribed subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Collects replies to `request_id` until `expected` distinct senders have
    /// answered or `timeout` (counted from now, in total) has passed, calling
    /// `progress` for each accepted reply. Messages that do not decode, or that belong
    /// to another request, are counted and skipped.
    pub async fn collect(
        mut self,
        request_id: &str,
        expected: Option<usize>,
        timeout: Duration,
        mut progress: impl FnMut(&RpcReply),
    ) -> Replies {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut out = Replies::default();
        let mut seen = HashSet::new();
        while expected.is_none_or(|n| out.replies.len() < n) {
            let msg = match tokio::time::timeout_at(deadline, self.subscriber.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) | Err(_) => break,
            };
            let decoded = match protocol::decode(&msg.payload) {
                Ok(Message::Rpc(rpc)) => rpc,
                Ok(Message::Lifecycle(_)) => {
                    out.unrelated += 1;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(subject = %msg.subject, error = %e, "undecodable reply");
                    out.undecodable += 1;
                    continue;
                }
            };
            if decoded.inner.direction() != Direction::Reply
                || decoded.inner.request_id() != request_id
            {
                out.unrelated += 1;
                continue;
            }
            let sender = decoded.inner.sender().to_string();
            if !seen.insert(sender.clone()) {
                out.duplicates += 1;
                continue;
            }
            let (statuscode, statusmsg, data) = parse_body(decoded.body());
            let reply = RpcReply {
                sender,
                statuscode,
                statusmsg,
                data,
                latency: started.elapsed(),
            };
            progress(&reply);
            out.replies.push(reply);
        }
        out.elapsed = started.elapsed();
        // Best effort: the connection may be closing anyway.
        let _ = self.subscriber.unsubscribe().await;
        out
    }
}

/// Subscribes to `subject` and collects replies to `request_id` (see
/// [`ReplySubscription::collect`]), for replies to a request that is published
/// elsewhere. To send the request too, use [`super::call`], or [`subscribe`] and then
/// [`super::publish_with_id`] on the same client, so no early reply is missed.
pub async fn collect(
    client: &async_nats::Client,
    subject: &str,
    request_id: &str,
    expected: Option<usize>,
    timeout: Duration,
    progress: impl FnMut(&RpcReply),
) -> Result<Replies, RpcError> {
    let sub = subscribe(client, subject).await?;
    Ok(sub.collect(request_id, expected, timeout, progress).await)
}

/// Splits an RPC reply body into status code, message and data; anything else
/// becomes the data as it is.
pub fn parse_body(body: &[u8]) -> (Option<i64>, String, serde_json::Value) {
    use serde_json::Value;
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut map)) if map.contains_key("statuscode") => {
            let code = map.get("statuscode").and_then(Value::as_i64);
            let msg = map
                .get("statusmsg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let data = map.remove("data").unwrap_or(Value::Null);
            (code, msg, data)
        }
        Ok(other) => (None, String::new(), other),
        Err(_) => (
            None,
            String::new(),
            Value::String(String::from_utf8_lossy(body).into_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_bodies_split() {
        let (c, m, d) =
            parse_body(br#"{"action":"ping","statuscode":0,"statusmsg":"OK","data":{"pong":1}}"#);
        assert_eq!((c, m.as_str()), (Some(0), "OK"));
        assert_eq!(d, serde_json::json!({"pong": 1}));
        let (c, _, d) = parse_body(b"pong");
        assert_eq!((c, d), (None, serde_json::json!("pong")));
    }

    #[test]
    fn counts() {
        let reply = |s: &str, c| RpcReply {
            sender: s.into(),
            statuscode: c,
            statusmsg: String::new(),
            data: serde_json::Value::Null,
            latency: Duration::ZERO,
        };
        let r = Replies {
            replies: vec![reply("b", Some(0)), reply("a", Some(2)), reply("c", None)],
            ..Replies::default()
        };
        assert_eq!(r.failed(), 1);
        assert_eq!(r.missing(5), 2);
        assert_eq!(r.status_counts()[&Some(0)], 1);
        let senders: Vec<_> = r.sorted().iter().map(|r| r.sender.as_str()).collect();
        assert_eq!(senders, ["a", "b", "c"]);
    }
}
