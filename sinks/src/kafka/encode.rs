//! Record to Kafka message: the topic and key from their templates, the value in the
//! chosen encoding, and the Choria metadata as Kafka headers.

use super::config::KafkaConfig;
use crate::encoding::choria_streams;
use crate::encoding::{self, EncodeError, Encoding};
use coro_core::protocol::output::Rfc3339;
use coro_core::{Kind, Record};
use rdkafka::message::{Header, OwnedHeaders};
use std::borrow::Cow;

/// The Kafka header names the sink writes, so consumers can route and filter without
/// parsing the value (and `coro replies` can read the `raw` encoding).
pub mod header {
    /// The sender identity.
    pub const SENDER: &str = "choria.sender";
    /// The request id (a reply's is its request's).
    pub const REQUEST_ID: &str = "choria.requestid";
    /// The agent.
    pub const AGENT: &str = "choria.agent";
    /// The sub-collective; absent when the record has none (replies).
    pub const COLLECTIVE: &str = "choria.collective";
    /// The Choria protocol version: `1` or `2`.
    pub const PROTOCOL: &str = "choria.protocol";
    /// The Choria message time, RFC3339 with nanoseconds (as `choria_streams` writes it).
    pub const TIME: &str = "choria.time";
    /// The record kind: `request`, `reply`, `registration`, `lifecycle`, `dead_letter`.
    pub const KIND: &str = "choria.kind";
    /// Coro's stable idempotency key (sender, request id, time), for de-duplication.
    pub const IDEMPOTENCY_KEY: &str = "coro.idempotency_key";
}

/// What `{collective}` becomes for a record without a sub-collective.
pub const NO_COLLECTIVE: &str = "none";

/// A placeholder of a topic or key template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `{sender}`: the sender identity.
    Sender,
    /// `{requestid}`: the request id.
    RequestId,
    /// `{agent}`: the agent.
    Agent,
    /// `{collective}`: the sub-collective, `none` when the record has none.
    Collective,
    /// `{kind}`: `request`, `reply`, `registration`, `lifecycle` or `dead_letter`.
    Kind,
}

impl Field {
    /// The placeholder names, for error hints.
    pub const NAMES: [&'static str; 5] = ["sender", "requestid", "agent", "collective", "kind"];

    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "sender" => Field::Sender,
            "requestid" => Field::RequestId,
            "agent" => Field::Agent,
            "collective" => Field::Collective,
            "kind" => Field::Kind,
            _ => return None,
        })
    }

    fn value(self, record: &Record) -> &str {
        match self {
            Field::Sender => &record.sender,
            Field::RequestId => &record.request_id,
            Field::Agent => &record.agent,
            Field::Collective => record.collective.as_deref().unwrap_or(NO_COLLECTIVE),
            Field::Kind => record.kind.as_str(),
        }
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// A topic or key template: text with `{placeholders}`, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// A template with a placeholder that does not exist; the name is without braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPlaceholder(pub String);

impl Template {
    /// Parses `text`; a `{` without a matching `}` is text.
    pub fn parse(text: &str) -> Result<Template, UnknownPlaceholder> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(i) = rest.find('{') {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            match tail.find('}') {
                Some(end) => {
                    let name = &tail[1..end];
                    let field = Field::from_name(name)
                        .ok_or_else(|| UnknownPlaceholder(name.to_string()))?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(field));
                    rest = &tail[end + 1..];
                }
                None => {
                    literal.push_str(tail);
                    rest = "";
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// The template's fixed text when it has no placeholders.
    pub fn fixed(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The text parts, for checking which characters the template itself writes.
    pub fn text(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Text(t) => Some(t.as_str()),
            Piece::Field(_) => None,
        })
    }

    /// The template filled in from `record`, each value passed through `clean`.
    pub fn render_with(&self, record: &Record, clean: impl Fn(&str, &mut String)) -> String {
        let mut out = String::with_capacity(64);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => clean(f.value(record), &mut out),
            }
        }
        out
    }

    /// The template filled in from `record`, values as they are.
    pub fn render(&self, record: &Record) -> String {
        self.render_with(record, |v, out| out.push_str(v))
    }

    /// A topic name for `record`: characters Kafka does not allow in topic names
    /// (anything but ASCII letters, digits, `.`, `_` and `-`) in filled-in values
    /// become `_`, so an odd identity cannot make an invalid topic.
    pub fn render_topic(&self, record: &Record) -> String {
        self.render_with(record, |v, out| {
            out.extend(v.chars().map(|c| if topic_char(c) { c } else { '_' }))
        })
    }
}

/// Whether Kafka allows `c` in a topic name.
pub fn topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

/// The message key when no template is configured: the request id for replies, so the
/// replies of one request stay together, and the sender for everything else, so one
/// node's registration (and other records) stay in order on one partition.
pub fn default_key(record: &Record) -> &str {
    match record.kind {
        Kind::Reply => &record.request_id,
        _ => &record.sender,
    }
}

/// A message ready to produce; topic and key borrow from the template or record when
/// they can (a fixed topic, the default key), saving two allocations per record.
#[derive(Debug)]
pub struct Message<'a> {
    /// The topic.
    pub topic: Cow<'a, str>,
    /// The key; `None` leaves partitioning to the producer (no key configured as `""`).
    pub key: Option<Cow<'a, str>>,
    /// The value in the sink's encoding.
    pub payload: Vec<u8>,
    /// The Choria metadata, when headers are on.
    pub headers: Option<OwnedHeaders>,
}

/// [`Message`] with its value borrowed from a [`Scratch`]: what the sink produces
/// from, since librdkafka copies the value and the buffer can serve the next record.
#[derive(Debug)]
pub struct MessageRef<'a, 's> {
    /// The topic.
    pub topic: Cow<'a, str>,
    /// The key; `None` leaves partitioning to the producer (no key configured as `""`).
    pub key: Option<Cow<'a, str>>,
    /// The value in the sink's encoding.
    pub payload: &'s [u8],
    /// The Choria metadata, when headers are on.
    pub headers: Option<OwnedHeaders>,
}

/// Buffers [`message_in`] reuses from one record to the next, so a batch is encoded
/// without allocating a value, a time and an idempotency key per record.
#[derive(Debug, Default)]
pub struct Scratch {
    payload: Vec<u8>,
    time: Rfc3339,
    idempotency_key: Vec<u8>,
}

/// Why a record cannot become a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The value cannot be written in the chosen encoding.
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// The topic template gave a name Kafka refuses.
    #[error("topic {0:?} is not a valid Kafka topic name (empty, `.`/`..` or longer than 249 characters)")]
    Topic(String),
}

/// Builds the message for `record`.
pub fn message<'a>(
    record: &'a Record,
    config: &KafkaConfig,
    topic: &'a Template,
    key: Option<&'a Template>,
) -> Result<Message<'a>, MessageError> {
    let mut scratch = Scratch::default();
    let m = message_in(record, config, topic, key, &mut scratch)?;
    let (topic, key, headers) = (m.topic, m.key, m.headers);
    Ok(Message {
        topic,
        key,
        payload: std::mem::take(&mut scratch.payload),
        headers,
    })
}

/// [`message`] with the value written into `scratch` (the same bytes).
pub fn message_in<'a, 's>(
    record: &'a Record,
    config: &KafkaConfig,
    topic: &'a Template,
    key: Option<&'a Template>,
    scratch: &'s mut Scratch,
) -> Result<MessageRef<'a, 's>, MessageError> {
    let topic = match topic.fixed() {
        Some(fixed) => Cow::Borrowed(fixed),
        None => Cow::Owned(topic.render_topic(record)),
    };
    if topic.is_empty() || topic == "." || topic == ".." || topic.len() > MAX_TOPIC_LEN {
        return Err(MessageError::Topic(topic.into_owned()));
    }
    let key = match key {
        Some(t) => match t.fixed() {
            Some("") => None,
            Some(fixed) => Some(Cow::Borrowed(fixed)),
            None => Some(Cow::Owned(t.render(record))),
        },
        None => Some(Cow::Borrowed(default_key(record))),
    };
    let Scratch {
        payload,
        time,
        idempotency_key,
    } = scratch;
    // The time is formatted once, for the value and the header.
    let time = time.format(record.time_ns);
    match (config.encoding, time) {
        (Encoding::ChoriaStreams, Some(time)) => choria_streams::write(record, time, payload)?,
        (encoding, _) => *payload = encoding::encode(record, encoding)?,
    }
    let headers = config.headers.then(|| {
        record.write_idempotency_key(idempotency_key);
        headers_with(record, time, idempotency_key)
    });
    Ok(MessageRef {
        topic,
        key,
        payload,
        headers,
    })
}

/// The Choria metadata of `record` as Kafka headers (see [`header`]).
pub fn headers(record: &Record) -> OwnedHeaders {
    let mut time = Rfc3339::default();
    let mut key = Vec::new();
    record.write_idempotency_key(&mut key);
    headers_with(record, time.format(record.time_ns), &key)
}

/// [`headers`] with the time already formatted (`None`: out of RFC3339's range) and the
/// idempotency key written.
fn headers_with(record: &Record, time: Option<&str>, idempotency_key: &[u8]) -> OwnedHeaders {
    let version = match record.version.number() {
        1 => "1",
        _ => "2",
    };
    let mut h = OwnedHeaders::new_with_capacity(8)
        .insert(Header {
            key: header::SENDER,
            value: Some(record.sender.as_str()),
        })
        .insert(Header {
            key: header::REQUEST_ID,
            value: Some(record.request_id.as_str()),
        })
        .insert(Header {
            key: header::AGENT,
            value: Some(record.agent.as_str()),
        });
    if let Some(collective) = &record.collective {
        h = h.insert(Header {
            key: header::COLLECTIVE,
            value: Some(collective.as_str()),
        });
    }
    h = h
        .insert(Header {
            key: header::PROTOCOL,
            value: Some(version),
        })
        .insert(Header {
            key: header::KIND,
            value: Some(record.kind.as_str()),
        });
    // A time out of RFC3339's range is left out rather than failing the record: the
    // value may still be writable (raw, record encodings say it their own way).
    if let Some(time) = time {
        h = h.insert(Header {
            key: header::TIME,
            value: Some(time),
        });
    }
    h.insert(Header {
        key: header::IDEMPOTENCY_KEY,
        value: Some(idempotency_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::choria_streams::tests::record;
    use rdkafka::message::Headers;

    #[test]
    fn templates_fill_in_fields() {
        let t = Template::parse("choria.{kind}.{collective}.{agent}").unwrap();
        assert_eq!(
            t.render(&record(Kind::Reply, None)),
            "choria.reply.none.rpcutil"
        );
        let t = Template::parse("{sender}/{requestid}").unwrap();
        assert_eq!(
            t.render(&record(Kind::Reply, Some("c"))),
            "node1.example.net/abc123"
        );
        assert_eq!(
            Template::parse("a{b").unwrap().fixed(),
            Some("a{b"),
            "a lone brace is text"
        );
        assert_eq!(
            Template::parse("x.{sendr}").unwrap_err(),
            UnknownPlaceholder("sendr".into())
        );
    }

    #[test]
    fn messages_in_scratch_are_the_owned_ones() {
        let config = KafkaConfig::new(vec!["localhost:9092".into()], "t.{kind}");
        let topic = config.topic_template().unwrap();
        let mut scratch = Scratch::default();
        let records = [
            record(Kind::Reply, Some("mcollective")),
            record(Kind::Registration, None),
            record(Kind::Request, None),
        ];
        for r in &records {
            let owned = message(r, &config, &topic, None).unwrap();
            let m = message_in(r, &config, &topic, None, &mut scratch).unwrap();
            assert_eq!((&m.topic, &m.key), (&owned.topic, &owned.key));
            assert_eq!(m.payload, &owned.payload[..]);
            let pairs = |h: &OwnedHeaders| -> Vec<(String, Vec<u8>)> {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            };
            assert_eq!(
                m.headers.as_ref().map(pairs),
                owned.headers.as_ref().map(pairs)
            );
            assert_eq!(m.headers.as_ref().map(pairs), Some(pairs(&headers(r))));
        }
    }

    #[test]
    fn topic_values_are_cleaned() {
        let mut r = record(Kind::Registration, None);
        r.sender = "odd name/with:chars".into();
        let t = Template::parse("reg.{sender}").unwrap();
        assert_eq!(t.render_topic(&r), "reg.odd_name_with_chars");
    }

    #[test]
    fn default_keys_keep_order_where_it_matters() {
        assert_eq!(default_key(&record(Kind::Reply, None)), "abc123");
        assert_eq!(
            default_key(&record(Kind::Registration, None)),
            "node1.example.net"
        );
    }

    #[test]
    fn headers_carry_the_choria_metadata() {
        let h = headers(&record(Kind::Reply, Some("mcollective")));
        let get = |name: &str| {
            h.iter()
                .find(|x| x.key == name)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(get(header::SENDER).as_deref(), Some("node1.example.net"));
        assert_eq!(get(header::REQUEST_ID).as_deref(), Some("abc123"));
        assert_eq!(get(header::AGENT).as_deref(), Some("rpcutil"));
        assert_eq!(get(header::COLLECTIVE).as_deref(), Some("mcollective"));
        assert_eq!(get(header::PROTOCOL).as_deref(), Some("2"));
        assert_eq!(get(header::KIND).as_deref(), Some("reply"));
        assert_eq!(
            get(header::TIME).as_deref(),
            Some("2023-11-14T22:13:21.123456789Z")
        );
        assert_eq!(
            get(header::IDEMPOTENCY_KEY).as_deref(),
            Some("node1.example.net.abc123.1700000001123456789")
        );
        let h = headers(&record(Kind::Reply, None));
        assert!(h.iter().all(|x| x.key != header::COLLECTIVE));
    }
}
