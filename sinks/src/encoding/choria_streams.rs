//! The `choria_streams` document written directly: the same bytes as
//! [`ChoriaStreamsOutput::to_json`] (Go's adapter output), without serde. The body is
//! most of a record's bytes and usually a JSON document full of quotes to escape, so
//! this is every sink's hottest loop.

use super::EncodeError;
#[cfg(doc)]
use coro_core::protocol::output::ChoriaStreamsOutput;
use coro_core::{Kind, Record};

/// Writes the `choria_streams` document of `record` with its time already formatted
/// into `out`: the same bytes as [`ChoriaStreamsOutput::to_json`] writes (a test holds
/// them equal), written directly rather than through serde. The body is most of a record's
/// bytes and usually a JSON document full of quotes to escape; this is the sink's
/// hottest loop.
pub(crate) fn write(record: &Record, time: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use coro_core::protocol::output::{rfc3339_nano, ChoriaStreamsOutput};
    use coro_core::protocol::Version;

    /// A v2 reply-like record of `kind` from node1, for the encoders' tests.
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

    /// The serde (gojson) encoder's bytes, which are Go's.
    fn reference(r: &Record) -> Vec<u8> {
        ChoriaStreamsOutput::from_record(r)
            .unwrap()
            .unwrap()
            .to_json()
    }

    #[test]
    fn bytes_are_the_serde_encoders() {
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
            write(&r, &time, &mut out).unwrap();
            assert_eq!(out, reference(&r), "body {i}: {:?}", r.body);
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
                    write(&r, &rfc3339_nano(r.time_ns).unwrap(), &mut out).unwrap();
                    assert_eq!(out, reference(&r), "{len} bytes, {odd:?} at {at}");
                }
            }
        }
        let r = record(Kind::Lifecycle, None);
        assert_eq!(
            write(&r, "t", &mut Vec::new()).unwrap_err(),
            EncodeError::NotRpc("lifecycle")
        );
    }

    #[test]
    fn out_of_range_times_fail_as_the_serde_encoder_does() {
        let mut r = record(Kind::Reply, None);
        r.time_ns = i128::MAX;
        assert!(matches!(
            super::super::encode(&r, super::super::Encoding::ChoriaStreams),
            Err(EncodeError::Time(_))
        ));
    }
}
