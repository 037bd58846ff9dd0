//! Reading back what the sink wrote: a topic reader (a consumer group, or every
//! partition from the beginning) and the decoding of a message in any of the sink's
//! encodings into the Choria fields. `coro replies` and the tests use it.

use super::encode::header;
use crate::encoding::Encoding;
use coro_core::protocol::output::CHORIA_STREAMS_OUTPUT;
use coro_core::protocol::{self, Message as ChoriaMessage};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Headers;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;

/// One Kafka message as read: where it was, its key, headers and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The headers, in order (a header without a value has an empty one).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value (empty for none).
    pub payload: Vec<u8>,
}

impl Received {
    /// The value of header `name` as text, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The key as text, if present and UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    fn from_message(m: &impl rdkafka::Message) -> Received {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Received {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            headers,
            payload: m.payload().unwrap_or_default().to_vec(),
        }
    }
}

/// How a message was written, as far as reading it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenAs {
    /// One of the sink's encodings.
    Encoding(Encoding),
    /// A whole Choria transport (what arrived on NATS), decoded with
    /// `coro_core::protocol::decode`.
    Transport,
}

/// The Choria fields of one message the sink wrote, whatever its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// How it was written.
    pub written_as: WrittenAs,
    /// The sender identity.
    pub sender: String,
    /// The request id.
    pub request_id: String,
    /// The agent, when the message says (`choria_streams` does not).
    pub agent: Option<String>,
    /// The Choria time as written (RFC3339), when the message says.
    pub time: Option<String>,
    /// The record body: for a reply, the RPC reply document.
    pub body: Vec<u8>,
}

/// A message that is not something the sink writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A `choria_streams` or `record` document with a field missing or mistyped.
    #[error("{0} document: {1}")]
    Document(&'static str, String),
    /// Not a document, not a transport, and no `choria.sender`/`choria.requestid`
    /// headers to say whose body it is.
    #[error("not a choria_streams or record document, not a Choria transport, and no choria.* headers (raw values need the sink's headers)")]
    Unknown,
}

#[derive(Deserialize)]
struct StreamsDoc {
    data: String,
    sender: String,
    time: Option<String>,
    requestid: String,
}

#[derive(Deserialize)]
struct RecordDoc<'a> {
    sender: String,
    requestid: String,
    agent: Option<String>,
    time: Option<String>,
    body_encoding: String,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// The Choria fields of a message's value (`payload`) and `headers`, for any encoding:
/// a `choria_streams` document, a `record` document, a Choria transport, or a `raw`
/// body whose sender and request id come from the sink's headers.
pub fn decode(payload: &[u8], headers: &[(String, Vec<u8>)]) -> Result<Written, ReadError> {
    if payload.first() == Some(&b'{') {
        if let Ok(doc) =
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload)
        {
            if doc.get("protocol").and_then(|p| p.as_str()) == Some(CHORIA_STREAMS_OUTPUT) {
                let d: StreamsDoc = serde_json::from_slice(payload)
                    .map_err(|e| ReadError::Document("choria_streams", e.to_string()))?;
                return Ok(Written {
                    written_as: WrittenAs::Encoding(Encoding::ChoriaStreams),
                    sender: d.sender,
                    request_id: d.requestid,
                    agent: None,
                    time: d.time,
                    body: d.data.into_bytes(),
                });
            }
            if doc.contains_key("idempotency_key") && doc.contains_key("body_encoding") {
                return record_doc(payload);
            }
        }
    }
    if let Ok(ChoriaMessage::Rpc(rpc)) = protocol::decode(payload) {
        let inner = &rpc.inner;
        return Ok(Written {
            written_as: WrittenAs::Transport,
            sender: inner.sender().to_string(),
            request_id: inner.request_id().to_string(),
            agent: Some(inner.agent().to_string()),
            time: coro_core::protocol::output::rfc3339_nano(inner.time_ns()).ok(),
            body: rpc.body().to_vec(),
        });
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
    };
    match (header(header::SENDER), header(header::REQUEST_ID)) {
        (Some(sender), Some(request_id)) => Ok(Written {
            written_as: WrittenAs::Encoding(Encoding::Raw),
            sender,
            request_id,
            agent: header(header::AGENT),
            time: header(header::TIME),
            body: payload.to_vec(),
        }),
        _ => Err(ReadError::Unknown),
    }
}

fn record_doc(payload: &[u8]) -> Result<Written, ReadError> {
    let bad = |e: String| ReadError::Document("record", e);
    let d: RecordDoc<'_> = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
    let body = match d.body_encoding.as_str() {
        "json" => d.body.get().as_bytes().to_vec(),
        "text" => serde_json::from_str::<String>(d.body.get())
            .map_err(|e| bad(format!("body: {e}")))?
            .into_bytes(),
        "base64" => {
            let text: String =
                serde_json::from_str(d.body.get()).map_err(|e| bad(format!("body: {e}")))?;
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| bad(format!("body: {e}")))?
        }
        other => return Err(bad(format!("unknown body_encoding {other:?}"))),
    };
    Ok(Written {
        written_as: WrittenAs::Encoding(Encoding::Record),
        sender: d.sender,
        request_id: d.requestid,
        agent: d.agent,
        time: d.time,
        body,
    })
}

/// Where a [`TopicReader`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Every partition from its first message, without a consumer group: nothing is
    /// committed, a second run reads the same again.
    Beginning,
    /// Join consumer group `group`: start where the group left off (at the beginning
    /// for a new group) and commit what was read.
    Group(String),
    /// Consumer group `group`, but every partition from the beginning (committing
    /// from there).
    GroupFromBeginning(String),
}

/// What went wrong reading a topic.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The consumer could not be made (a bad property).
    #[error("kafka consumer: {0}")]
    Config(KafkaError),
    /// The brokers did not answer.
    #[error("kafka: {0}")]
    Metadata(String),
    /// The topic does not exist (yet: a sink creates it with its first record when the
    /// broker allows).
    #[error("kafka: topic {0} does not exist")]
    NoTopic(String),
    /// Reading failed.
    #[error("kafka: {0}")]
    Read(KafkaError),
}

/// Reads one topic: see [`Start`].
pub struct TopicReader {
    consumer: StreamConsumer<DefaultConsumerContext>,
    topic: String,
    grouped: bool,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("topic", &self.topic)
            .finish()
    }
}

/// What the next read brought.
#[derive(Debug)]
pub enum Event {
    /// A message.
    Message(Received),
    /// A partition has no more messages for now.
    PartitionEnd(i32),
}

impl TopicReader {
    /// A reader of `topic` on `brokers` (`host:port`), starting at `start`, with any
    /// further librdkafka consumer `properties` (SASL, TLS). A group's session timeout
    /// is 6 s unless set: some brokers (tansu) hold a group's first join for about half
    /// of it.
    pub fn new(
        brokers: &[String],
        topic: &str,
        start: &Start,
        properties: &[(String, String)],
    ) -> Result<TopicReader, ReaderError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", brokers.join(","))
            .set("client.id", "coro-replies")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("allow.auto.create.topics", "false");
        let group = match start {
            Start::Beginning => None,
            Start::Group(g) | Start::GroupFromBeginning(g) => Some(g.as_str()),
        };
        match group {
            Some(g) => cc.set("group.id", g).set("enable.auto.commit", "true"),
            // librdkafka wants a group id even for manual assignment; nothing is
            // committed to it.
            None => cc
                .set("group.id", "coro-replies-unused")
                .set("enable.auto.commit", "false"),
        };
        for (k, v) in properties {
            cc.set(k, v);
        }
        let consumer: StreamConsumer = cc.create().map_err(ReaderError::Config)?;
        match start {
            Start::Group(_) => consumer
                .subscribe(&[topic])
                .map_err(|e| ReaderError::Metadata(e.to_string()))?,
            Start::Beginning | Start::GroupFromBeginning(_) => {
                let metadata = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
                    .map_err(|e| ReaderError::Metadata(format!("{brokers:?}: {e}")))?;
                let partitions = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| match t.error().map(RDKafkaErrorCode::from) {
                        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(Vec::new()),
                        Some(e) => Err(ReaderError::Metadata(format!("topic {topic}: {e}"))),
                        None => Ok(t.partitions().iter().map(|p| p.id()).collect()),
                    })
                    .transpose()?
                    .unwrap_or_default();
                if partitions.is_empty() {
                    return Err(ReaderError::NoTopic(topic.to_string()));
                }
                let mut list = TopicPartitionList::new();
                for p in partitions {
                    list.add_partition_offset(topic, p, Offset::Beginning)
                        .map_err(ReaderError::Read)?;
                }
                consumer.assign(&list).map_err(ReaderError::Read)?;
            }
        }
        Ok(TopicReader {
            consumer,
            topic: topic.to_string(),
            grouped: group.is_some(),
        })
    }

    /// The next message or partition end; `None` after `timeout` without either.
    pub async fn next(&self, timeout: Duration) -> Option<Result<Event, ReaderError>> {
        match tokio::time::timeout(timeout, self.consumer.recv()).await {
            Err(_) => None,
            Ok(Ok(m)) => Some(Ok(Event::Message(Received::from_message(&m)))),
            Ok(Err(KafkaError::PartitionEOF(p))) => Some(Ok(Event::PartitionEnd(p))),
            Ok(Err(e)) => Some(Err(ReaderError::Read(e))),
        }
    }

    /// The number of partitions assigned to this reader.
    pub fn assigned(&self) -> usize {
        self.consumer.assignment().map_or(0, |a| a.count())
    }

    /// Commits what was read, for a group (nothing otherwise).
    pub fn commit(&self) -> Result<(), ReaderError> {
        if !self.grouped {
            return Ok(());
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing read, nothing to commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            other => other.map_err(ReaderError::Read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding;
    use coro_core::protocol::Version;
    use coro_core::{Kind, Record};

    fn record(body: &'static [u8]) -> Record {
        Record {
            subject: "mcollective.reply.x".into(),
            version: Version::V1,
            kind: Kind::Reply,
            sender: "node7.example.net".into(),
            request_id: "0123456789abcdef0123456789abcdef".into(),
            agent: "rpcutil".into(),
            collective: None,
            time_ns: 1_700_000_001_000_000_000,
            body: bytes::Bytes::from_static(body),
            raw: bytes::Bytes::new(),
        }
    }

    fn headers(r: &Record) -> Vec<(String, Vec<u8>)> {
        use rdkafka::message::Headers as _;
        super::super::encode::headers(r)
            .iter()
            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
            .collect()
    }

    #[test]
    fn every_encoding_reads_back() {
        let body: &[u8] = br#"{"statuscode":0,"statusmsg":"OK","data":{"pong":1}}"#;
        let r = record(body);
        for enc in [Encoding::ChoriaStreams, Encoding::Record, Encoding::Raw] {
            let payload = encoding::encode(&r, enc).unwrap();
            let w = decode(&payload, &headers(&r)).unwrap();
            assert_eq!(w.written_as, WrittenAs::Encoding(enc));
            assert_eq!(w.sender, r.sender, "{enc:?}");
            assert_eq!(w.request_id, r.request_id, "{enc:?}");
            assert_eq!(w.body, body, "{enc:?}");
        }
        // raw needs the headers.
        let payload = encoding::encode(&r, Encoding::Raw).unwrap();
        assert_eq!(decode(&payload, &[]), Err(ReadError::Unknown));
    }

    #[test]
    fn whole_transports_read_back() {
        use coro_core::gojson;
        use coro_core::protocol::v1;
        let req = v1::Request::new(
            "rpcutil",
            "client.example.net",
            "choria=rip.mcollective",
            60,
            "0123456789abcdef0123456789abcdef",
            "mcollective",
            1_700_000_000,
        );
        let body = r#"{"statuscode":0,"statusmsg":"OK","data":{"pong":1}}"#;
        let reply = v1::Reply::for_request(&req, "node7.example.net", 1_700_000_001, body);
        let secure = v1::SecureReply::new(&gojson::to_string(&reply));
        let headers = v1::Headers {
            sender: "node7.example.net".into(),
            ..Default::default()
        };
        let transport = gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers));
        let w = decode(&transport, &[]).unwrap();
        assert_eq!(w.written_as, WrittenAs::Transport);
        assert_eq!(w.sender, "node7.example.net");
        assert_eq!(w.request_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(w.agent.as_deref(), Some("rpcutil"));
        assert_eq!(w.body, body.as_bytes());
    }

    #[test]
    fn text_and_binary_bodies_in_record_documents() {
        for body in [&b"pong"[..], &[0xff, 0x00, 0x10][..]] {
            let mut r = record(b"");
            r.body = bytes::Bytes::copy_from_slice(body);
            let payload = encoding::encode(&r, Encoding::Record).unwrap();
            assert_eq!(decode(&payload, &[]).unwrap().body, body);
        }
    }
}
