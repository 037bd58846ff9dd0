//! Record to Kafka message: the topic and key from their templates, the value in the
//! chosen encoding, and the Choria metadata as Kafka headers.

use super::config::KafkaConfig;
use crate::encoding::{self, EncodeError, Encoding};
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
        (Encoding::ChoriaStreams, Some(time)) => choria_streams(record, time, payload)?,
        (encoding, _) => *payload = encoding::encode(record, encoding)?,
    }
    let headers = config.headers.then(|| {
        idempotency_key_into(record, idempotency_key);
        headers_with(record, time, idempotency_key)
    });
    Ok(MessageRef {
        topic,
        key,
        payload,
        headers,
    })
}

/// A buffer for one RFC3339 time with nanoseconds (`0000-01-01T00:00:00.000000001Z`).
#[derive(Debug, Default)]
struct Rfc3339([u8; 30]);

impl Rfc3339 {
    /// `ns` as [`rfc3339_nano`] writes it (a test holds them equal), without its four
    /// allocations and `time`'s generic formatter; `None` out of RFC3339's range,
    /// where `rfc3339_nano` fails.
    fn format(&mut self, ns: i128) -> Option<&str> {
        /// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z in unix seconds.
        const FIRST: i64 = -62_167_219_200;
        const LAST: i64 = 253_402_300_799;
        let secs = i64::try_from(ns.div_euclid(1_000_000_000)).ok()?;
        if !(FIRST..=LAST).contains(&secs) {
            return None;
        }
        let nanos = ns.rem_euclid(1_000_000_000);
        let (days, second) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Days since 1970-01-01 as a civil date (Howard Hinnant's `civil_from_days`).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let text = &mut self.0;
        let mut put = |at: usize, width: usize, mut value: i128| {
            for digit in text[at..at + width].iter_mut().rev() {
                // 0..=9: the cast cannot truncate.
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year.into());
        put(5, 2, month.into());
        put(8, 2, day.into());
        put(11, 2, (second / 3_600).into());
        put(14, 2, (second / 60 % 60).into());
        put(17, 2, (second % 60).into());
        put(20, 9, nanos);
        for (at, separator) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
            text[at] = separator;
        }
        // Go trims the fraction's trailing zeros, and the dot with them when whole.
        let end = if nanos == 0 {
            19
        } else {
            text[19] = b'.';
            29 - text[20..29]
                .iter()
                .rev()
                .take_while(|&&b| b == b'0')
                .count()
        };
        text[end] = b'Z';
        std::str::from_utf8(&text[..=end]).ok()
    }
}

/// Writes [`Record::idempotency_key`] into `out` (the same text; a test holds them
/// equal) without allocating.
fn idempotency_key_into(record: &Record, out: &mut Vec<u8>) {
    out.clear();
    if record.kind == Kind::DeadLetter {
        // A hash of the document: rare, and the shared function says how.
        out.extend_from_slice(record.idempotency_key().as_bytes());
        return;
    }
    out.extend_from_slice(record.sender.as_bytes());
    out.push(b'.');
    out.extend_from_slice(record.request_id.as_bytes());
    out.push(b'.');
    if record.time_ns < 0 {
        out.push(b'-');
    }
    let magnitude = record.time_ns.unsigned_abs();
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

/// Writes the `choria_streams` document of `record` with its time already formatted
/// into `out`: the same bytes as [`encoding::encode`] writes (a test holds them
/// equal), written directly rather than through serde. The body is most of a record's
/// bytes and usually a JSON document full of quotes to escape; this is the sink's
/// hottest loop.
fn choria_streams(record: &Record, time: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if matches!(record.kind, Kind::Lifecycle | Kind::DeadLetter) {
        return Err(EncodeError::NotRpc(record.kind.as_str()));
    }
    out.clear();
    out.extend_from_slice(br#"{"protocol":""#);
    out.extend_from_slice(coro_core::protocol::output::CHORIA_STREAMS_OUTPUT.as_bytes());
    out.extend_from_slice(br#"","data":"#);
    // Go converts a v2 body with string(), marshalling invalid UTF-8 as U+FFFD.
    // `from_utf8` checks valid text much faster than `from_utf8_lossy` does.
    match std::str::from_utf8(&record.body) {
        Ok(body) => go_string(body, out),
        Err(_) => go_string(&String::from_utf8_lossy(&record.body), out),
    }
    out.extend_from_slice(br#","sender":"#);
    go_string(&record.sender, out);
    out.extend_from_slice(br#","time":"#);
    go_string(time, out);
    out.extend_from_slice(br#","requestid":"#);
    go_string(&record.request_id, out);
    out.push(b'}');
    Ok(())
}

/// What [`go_string`] writes for each byte: up to 6 bytes, padded to 8 so each is one
/// store, and how many count. U+2028 and U+2029 (which start with 0xE2) are left to
/// [`escape_one`].
static ESCAPED: [([u8; 8], u8); 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [([0u8; 8], 1u8); 256];
    let mut i = 0;
    while i < 256 {
        // `i` is below 256: the cast cannot truncate.
        let b = i as u8;
        t[i] = match b {
            0x08 => (*b"\\b\0\0\0\0\0\0", 2),
            0x09 => (*b"\\t\0\0\0\0\0\0", 2),
            0x0a => (*b"\\n\0\0\0\0\0\0", 2),
            0x0c => (*b"\\f\0\0\0\0\0\0", 2),
            0x0d => (*b"\\r\0\0\0\0\0\0", 2),
            b'"' => (*b"\\\"\0\0\0\0\0\0", 2),
            b'\\' => (*b"\\\\\0\0\0\0\0\0", 2),
            0x00..=0x1f | b'<' | b'>' | b'&' => (
                [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                    0,
                    0,
                ],
                6,
            ),
            _ => ([b, 0, 0, 0, 0, 0, 0, 0], 1),
        };
        i += 1;
    }
    t
};

/// Input bytes [`go_string`] escapes at once into a buffer on the stack.
const BLOCK: usize = 32;

/// `text` as a JSON string the way Go's `json.Marshal` writes it (HTML-safe), which is
/// what `coro_core::gojson` gives. JSON bodies need an escape every few bytes, which
/// a branch per escape mispredicts (and copying the runs between them costs a call
/// each); so each byte of a block is one 8-byte store from [`ESCAPED`] into a stack
/// buffer, the position advancing by the escape's length, and the block is copied out
/// at once. (Finding the runs eight bytes at a time was slower: each step waited on
/// the one before.) Blocks with a 0xE2 byte, which may start U+2028 or U+2029, take
/// the byte-by-byte path.
fn go_string(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    out.push(b'"');
    // Room for a block of 6-byte escapes and the last store's padding; positions are
    // masked to the buffer so the stores need no bounds checks (the mask never bites:
    // a block writes at most 6 × 32 = 192 bytes).
    const MASK: usize = 255;
    let mut buf = [0u8; MASK + 1 + 8];
    let mut i = 0;
    while i < bytes.len() {
        let block = &bytes[i..bytes.len().min(i + BLOCK)];
        if has_e2(block) {
            let end = i + block.len();
            while i < end {
                i = escape_one(bytes, i, out);
            }
            continue;
        }
        let mut at = 0;
        for &b in block {
            let (escaped, len) = &ESCAPED[usize::from(b)];
            let start = at & MASK;
            buf[start..start + 8].copy_from_slice(escaped);
            at = start + usize::from(*len);
        }
        out.extend_from_slice(&buf[..at & MASK]);
        i += block.len();
    }
    out.push(b'"');
}

/// Whether `block` has a 0xE2 byte, eight bytes at a time (`contains` goes byte by
/// byte on slices this short), the last few one by one.
fn has_e2(block: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut found = 0;
    for chunk in block.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // A zero byte of `v` sets its high bit here (later bytes may be flagged by the
        // borrow, but only after a true one).
        let v = u64::from_ne_bytes(word) ^ (ONES * 0xe2);
        found |= v.wrapping_sub(ONES) & !v & (ONES * 0x80);
    }
    found != 0 || block.chunks_exact(8).remainder().contains(&0xe2)
}

/// Escapes the character at `bytes[i]` into `out` (U+2028 and U+2029 whole) and
/// returns where the next one starts.
fn escape_one(bytes: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    let b = bytes[i];
    if b == 0xe2 {
        match bytes.get(i + 1..i + 3) {
            Some([0x80, 0xa8]) => {
                out.extend_from_slice(b"\\u2028");
                return i + 3;
            }
            Some([0x80, 0xa9]) => {
                out.extend_from_slice(b"\\u2029");
                return i + 3;
            }
            _ => {}
        }
    }
    let (escaped, len) = &ESCAPED[usize::from(b)];
    out.extend_from_slice(&escaped[..usize::from(*len)]);
    i + 1
}

/// The Choria metadata of `record` as Kafka headers (see [`header`]).
pub fn headers(record: &Record) -> OwnedHeaders {
    let mut time = Rfc3339::default();
    let mut key = Vec::new();
    idempotency_key_into(record, &mut key);
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
    use coro_core::protocol::output::rfc3339_nano;
    use coro_core::protocol::Version;
    use rdkafka::message::Headers;

    pub(crate) fn record(kind: Kind, collective: Option<&str>) -> Record {
        Record {
            subject: "mcollective.reply.x".into(),
            version: Version::V2,
            kind,
            sender: "node1.example.net".into(),
            request_id: "abc123".into(),
            agent: "rpcutil".into(),
            collective: collective.map(str::to_string),
            time_ns: 1_700_000_001_123_456_789,
            body: bytes::Bytes::from_static(br#"{"statuscode":0}"#),
            raw: bytes::Bytes::new(),
        }
    }

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
    fn choria_streams_bytes_are_the_shared_encoders() {
        let mut bodies: Vec<Vec<u8>> = vec![
            br#"{"statuscode":0,"statusmsg":"OK","data":{"a":"<b>&c</b>","t":"x\ty"}}"#.to_vec(),
            "line\u{2028}sep\u{2029}end \u{2027}\u{202a} é ü ✓ 😀"
                .as_bytes()
                .to_vec(),
            vec![0xff, 0xfe, b'a', 0xe2, 0x80],
            vec![0xe2, 0x80, 0xa8],
            vec![0xe2],
            Vec::new(),
        ];
        bodies.push((0u8..=255).collect());
        bodies.push((0u8..0x80).rev().collect());
        // Pseudo-random bytes, often valid UTF-8 fragments, often not.
        let mut x: u32 = 12345;
        for len in 0..300 {
            bodies.push(
                (0..len)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        let b = (x >> 16) as u8;
                        if b.is_multiple_of(3) {
                            b"\"<>&\\"[usize::from(b) % 5]
                        } else {
                            b
                        }
                    })
                    .collect(),
            );
        }
        for (i, body) in bodies.into_iter().enumerate() {
            let mut r = record(Kind::Reply, None);
            r.body = bytes::Bytes::from(body);
            r.sender = format!("node{i}<&>\u{2028}.example.net");
            r.time_ns += i as i128 * 1_000_001;
            let time = rfc3339_nano(r.time_ns).unwrap();
            // A used buffer, as the sink passes from record to record.
            let mut out = b"left from the last record".to_vec();
            choria_streams(&r, &time, &mut out).unwrap();
            assert_eq!(
                out,
                encoding::encode(&r, Encoding::ChoriaStreams).unwrap(),
                "body {i}: {:?}",
                r.body
            );
        }
        // Long bodies take several steps; a U+2028 may straddle a step's end, or
        // come after a run of plain bytes.
        for len in [BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7] {
            for at in [5, 8, BLOCK - 3, BLOCK - 2, BLOCK - 1, BLOCK.min(len)] {
                for (filler, odd) in [(b'"', "\u{2028}"), (b'a', "\u{2029}"), (b'a', "\u{2027}<")] {
                    let mut body = vec![filler; len];
                    body.splice(at..at, odd.bytes());
                    let mut r = record(Kind::Reply, None);
                    r.body = bytes::Bytes::from(body);
                    let mut out = Vec::new();
                    choria_streams(&r, &rfc3339_nano(r.time_ns).unwrap(), &mut out).unwrap();
                    assert_eq!(
                        out,
                        encoding::encode(&r, Encoding::ChoriaStreams).unwrap(),
                        "{len} bytes, {odd:?} at {at}"
                    );
                }
            }
        }
        let r = record(Kind::Lifecycle, None);
        assert_eq!(
            choria_streams(&r, "t", &mut Vec::new()).unwrap_err(),
            encoding::encode(&r, Encoding::ChoriaStreams).unwrap_err()
        );
    }

    #[test]
    fn times_and_idempotency_keys_are_the_shared_ones() {
        const NS: i128 = 1_000_000_000;
        let mut times: Vec<i128> = vec![
            0,
            1,
            -1,
            1_700_000_001_123_456_789,
            1_700_000_001_000_000_000,
            1_700_000_001_100_000_000,
            1_700_000_001_000_000_001,
            // 0000-01-01, 9999-12-31T23:59:59.999999999 and just outside both.
            -62_167_219_200 * NS,
            -62_167_219_200 * NS - 1,
            253_402_300_800 * NS - 1,
            253_402_300_800 * NS,
            // Leap days and century years.
            951_782_400 * NS,
            -2_203_891_200 * NS,
            4_107_542_400 * NS,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
            i128::from(u64::MAX) + 1,
            i128::MAX,
            i128::MIN,
        ];
        let mut x: u64 = 99;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            // Spread over years 0..=9999 and a little beyond, some whole seconds.
            let secs = i128::from(x >> 25) % 320_000_000_000 - 63_000_000_000;
            let nanos = if x.is_multiple_of(4) {
                0
            } else {
                i128::from(x % 1_000_000_000)
            };
            times.push(secs * NS + nanos);
        }
        let mut time = Rfc3339::default();
        let mut key = Vec::new();
        for ns in times {
            assert_eq!(
                time.format(ns).map(str::to_string),
                rfc3339_nano(ns).ok(),
                "{ns}"
            );
            let mut r = record(Kind::Reply, None);
            r.time_ns = ns;
            idempotency_key_into(&r, &mut key);
            assert_eq!(key, r.idempotency_key().as_bytes(), "{ns}");
        }
        let r = record(Kind::DeadLetter, None);
        idempotency_key_into(&r, &mut key);
        assert_eq!(key, r.idempotency_key().as_bytes());
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
