//! [`Record`]: the one value that flows through a pipeline.

use crate::protocol::lifecycle::LifecycleEvent;
use crate::protocol::registration::Registration;
use crate::protocol::{Direction, Message, RpcMessage, Version};
use bytes::Bytes;
use serde::Serialize;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An RPC request.
    Request,
    /// An RPC reply.
    Reply,
    /// A request carrying node registration (to the `registration` agent, or with a
    /// `choria:registration:*` body).
    Registration,
    /// A lifecycle event.
    Lifecycle,
    /// A message that could not be delivered, described for the dead-letter sink: the
    /// body is a JSON document with the error, adapter, sink, subject and payload.
    #[serde(rename = "dead_letter")]
    DeadLetter,
}

impl Kind {
    /// The lower-case name, for filters and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Reply => "reply",
            Kind::Registration => "registration",
            Kind::Lifecycle => "lifecycle",
            Kind::DeadLetter => "dead_letter",
        }
    }
}

/// One decoded message, reduced to what routing and sinks need. The body stays opaque:
/// exactly the bytes the sender put there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The NATS subject it arrived on.
    pub subject: String,
    /// Protocol generation; lifecycle events count as v1.
    pub version: Version,
    /// Request, reply, registration or lifecycle.
    pub kind: Kind,
    /// Sender identity (`senderid`/`sender`, or the lifecycle `identity`).
    pub sender: String,
    /// Request id (a reply's is its request's; a lifecycle event's is its `id`).
    pub request_id: String,
    /// Agent, or the lifecycle component.
    pub agent: String,
    /// Sub-collective, when the message says (requests do, replies don't).
    pub collective: Option<String>,
    /// The Choria time in unix nanoseconds.
    pub time_ns: i128,
    /// The body: v1 `message` verbatim, v2 `message` decoded, or the lifecycle event.
    pub body: Bytes,
    /// The payload as it arrived, for sinks that forward it whole.
    pub raw: Bytes,
}

impl Record {
    /// Builds a record from a decoded message and the payload it came from.
    pub fn from_message(subject: &str, message: Message, raw: Bytes) -> Record {
        match message {
            Message::Rpc(rpc) => Record::from_rpc(subject, *rpc, raw),
            Message::Lifecycle(event) => Record::from_lifecycle(subject, event, raw),
        }
    }

    /// Builds a record from a request or reply.
    pub fn from_rpc(subject: &str, msg: RpcMessage, raw: Bytes) -> Record {
        let inner = &msg.inner;
        let kind = match inner.direction() {
            Direction::Reply => Kind::Reply,
            Direction::Request
                if inner.agent() == "registration" || Registration::is_registration(msg.body()) =>
            {
                Kind::Registration
            }
            Direction::Request => Kind::Request,
        };
        Record {
            subject: subject.to_string(),
            version: inner.version(),
            kind,
            sender: inner.sender().to_string(),
            request_id: inner.request_id().to_string(),
            agent: inner.agent().to_string(),
            collective: inner.collective().map(str::to_string),
            time_ns: inner.time_ns(),
            body: Bytes::from(msg.into_body()),
            raw,
        }
    }

    /// Builds a record from a lifecycle event.
    pub fn from_lifecycle(subject: &str, event: LifecycleEvent, raw: Bytes) -> Record {
        Record {
            subject: subject.to_string(),
            version: Version::V1,
            kind: Kind::Lifecycle,
            sender: event.identity,
            request_id: event.id,
            agent: event.component,
            collective: None,
            time_ns: i128::from(event.timestamp) * 1_000_000_000,
            body: Bytes::from(event.data),
            raw,
        }
    }

    /// The dead letter for a message that `sink` of `adapter` could not take: `payload`
    /// (the raw NATS payload) with the `error`, embedded in a JSON document that any
    /// sink can store. `from` is the decoded record when there is one.
    pub fn dead_letter(
        adapter: &str,
        sink: &str,
        error: &str,
        subject: &str,
        payload: &Bytes,
        from: Option<&Record>,
    ) -> Record {
        #[derive(Serialize)]
        struct Letter<'a> {
            error: &'a str,
            adapter: &'a str,
            sink: &'a str,
            subject: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            payload: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            payload_base64: Option<String>,
        }
        let text = std::str::from_utf8(payload).ok();
        let letter = Letter {
            error,
            adapter,
            sink,
            subject,
            payload: text,
            payload_base64: text.is_none().then(|| crate::protocol::b64_encode(payload)),
        };
        Record {
            subject: subject.to_string(),
            version: from.map_or(Version::V1, |r| r.version),
            kind: Kind::DeadLetter,
            sender: from.map_or_else(String::new, |r| r.sender.clone()),
            request_id: from.map_or_else(String::new, |r| r.request_id.clone()),
            agent: from.map_or_else(String::new, |r| r.agent.clone()),
            collective: from.and_then(|r| r.collective.clone()),
            time_ns: from.map_or(0, |r| r.time_ns),
            body: Bytes::from(crate::gojson::to_vec(&letter)),
            raw: payload.clone(),
        }
    }

    /// A stable key for de-duplication downstream (JetStream `Nats-Msg-Id`, Kafka keys):
    /// sender, request id and Choria time. A redelivered message gets the same key. A
    /// dead letter, which may have none of those, is keyed by a hash of its document.
    pub fn idempotency_key(&self) -> String {
        let mut out = Vec::new();
        self.write_idempotency_key(&mut out);
        // Written from strings and ASCII digits and hex only.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes [`Record::idempotency_key`] into `out` (cleared first), without
    /// allocating: sinks key every record, and reuse one buffer.
    pub fn write_idempotency_key(&self, out: &mut Vec<u8>) {
        out.clear();
        if self.kind == Kind::DeadLetter {
            use sha2::{Digest, Sha256};
            out.extend_from_slice(b"dead.");
            out.extend_from_slice(hex::encode(&Sha256::digest(&self.body)[..16]).as_bytes());
            return;
        }
        out.extend_from_slice(self.sender.as_bytes());
        out.push(b'.');
        out.extend_from_slice(self.request_id.as_bytes());
        out.push(b'.');
        if self.time_ns < 0 {
            out.push(b'-');
        }
        let magnitude = self.time_ns.unsigned_abs();
        match u64::try_from(magnitude) {
            // Digits least significant first, then reversed: 64-bit division, not the
            // 128-bit formatter's.
            Ok(mut v) => {
                let start = out.len();
                loop {
                    // 0..=9: the cast cannot truncate.
                    out.push(b'0' + (v % 10) as u8);
                    v /= 10;
                    if v == 0 {
                        break;
                    }
                }
                out[start..].reverse();
            }
            // Beyond 64 bits (no real Choria time is).
            Err(_) => out.extend_from_slice(magnitude.to_string().as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::record;

    #[test]
    fn idempotency_keys_are_sender_request_and_time() {
        let mut key = Vec::new();
        for ns in [
            0,
            1,
            -1,
            1_700_000_001_123_456_789,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            i128::from(u64::MAX) + 1,
            i128::MAX,
            i128::MIN,
        ] {
            let mut r = record(7, "x");
            r.time_ns = ns;
            r.write_idempotency_key(&mut key);
            assert_eq!(key, format!("n.7.{ns}").as_bytes(), "{ns}");
            assert_eq!(key, r.idempotency_key().as_bytes(), "{ns}");
        }
        let mut r = record(7, "a dead letter");
        r.kind = Kind::DeadLetter;
        r.write_idempotency_key(&mut key);
        use sha2::{Digest, Sha256};
        let want = format!("dead.{}", hex::encode(&Sha256::digest(&r.body)[..16]));
        assert_eq!(key, want.as_bytes());
        assert_eq!(r.idempotency_key(), want);
    }
}
