//! The usual transport, edited where it lies: what Go and Ruby send is compact JSON in
//! Go's key order, with plain base64 `data` and plain ASCII header strings. For such a
//! message the rewritten bytes are the received `protocol` and `data` text followed by
//! headers written from slices of the received ones; nothing is decoded into owned
//! strings and `data` is scanned once.
//!
//! [`Splice::parse`] accepts only what it can write back exactly as Go would after
//! decoding it: the keys of Go's structs (each once, any order), strings of printable
//! ASCII without escapes or the characters Go escapes (`<`, `>`, `&`), no `null`, no
//! whitespace. Anything else (`None`) goes through [`super::wire::Wire`], which decodes
//! fully; the tests check that both write the same bytes.

use coro_core::protocol::federation::FederationError as Rewrite;
use coro_core::protocol::Version;

/// The JSON keys of one transport version, quotes included.
#[derive(Debug)]
struct Keys {
    /// `{"protocol":"<name>","data":"`
    head: &'static [u8],
    reply: &'static [u8],
    sender: &'static [u8],
    hops: &'static [u8],
    federation: &'static [u8],
    fed_request: &'static [u8],
    fed_reply: &'static [u8],
    fed_targets: &'static [u8],
}

const V1_KEYS: Keys = Keys {
    head: b"{\"protocol\":\"choria:transport:1\",\"data\":\"",
    reply: b"\"reply-to\"",
    sender: b"\"mc_sender\"",
    hops: b"\"seen-by\"",
    federation: b"\"federation\"",
    fed_request: b"\"req\"",
    fed_reply: b"\"reply-to\"",
    fed_targets: b"\"target\"",
};

const V2_KEYS: Keys = Keys {
    head: b"{\"protocol\":\"io.choria.protocol.v2.transport\",\"data\":\"",
    reply: b"\"reply\"",
    sender: b"\"sender\"",
    hops: b"\"trace\"",
    federation: b"\"federation\"",
    fed_request: b"\"request\"",
    fed_reply: b"\"reply\"",
    fed_targets: b"\"targets\"",
};

/// A list of plain strings as received: the text between the brackets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct List<'a> {
    inner: &'a str,
    len: usize,
}

impl<'a> List<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The strings; already checked to be plain, so this cannot fail part way.
    pub fn iter(&self) -> Strs<'a> {
        Strs(Scan::new(self.inner))
    }
}

/// The strings of a [`List`].
pub(crate) struct Strs<'a>(Scan<'a>);

impl<'a> Iterator for Strs<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.0.plain_str()?;
        self.0.lit(b",");
        Some(s)
    }
}

/// The federation header as received.
#[derive(Debug, Clone, Copy, Default)]
struct Federation<'a> {
    request: &'a str,
    reply: &'a str,
    targets: List<'a>,
}

/// A transport in flight, borrowing the received bytes.
#[derive(Debug, Clone)]
pub(crate) struct Splice<'a> {
    keys: &'static Keys,
    /// `{"protocol":"…","data":"…"`, kept as received.
    head: &'a [u8],
    reply: &'a str,
    sender: &'a str,
    /// The hop list: the text between its outer brackets (empty for none).
    hops: &'a str,
    federation: Option<Federation<'a>>,
    /// The request side's new `reply-to` (the collective subject), once transformed.
    new_reply: Option<&'a str>,
}

impl<'a> Splice<'a> {
    /// `payload` as a transport of `version`, when it is the usual compact form.
    pub fn parse(version: Version, payload: &'a [u8]) -> Option<Splice<'a>> {
        match version {
            Version::V1 => Self::parse_with::<false>(payload),
            Version::V2 => Self::parse_with::<true>(payload),
        }
    }

    /// [`parse`](Self::parse) for one version, so that the keys are constants (and
    /// their comparisons inline).
    #[inline(always)]
    fn parse_with<const V2: bool>(payload: &'a [u8]) -> Option<Splice<'a>> {
        let keys = if V2 { &V2_KEYS } else { &V1_KEYS };
        let rest = payload.strip_prefix(keys.head)?;
        let data_len = plain_data_len(rest)?;
        let head = payload.get(..keys.head.len() + data_len + 1)?;
        // The headers hold only plain bytes and quotes (no escapes, nothing Go writes
        // otherwise): one pass over all of them, in vector code, so that strings
        // need not be checked one by one and the text is ASCII.
        let headers = payload.get(head.len()..)?;
        let mut unusual = 0;
        for &b in headers {
            unusual |= unplain(b) & u8::from(b != b'"');
        }
        if unusual != 0 {
            return None;
        }
        let mut scan = Scan::new(std::str::from_utf8(headers).ok()?);
        if !scan.lit(b",\"headers\":{") {
            return None;
        }
        let mut s = Splice {
            keys,
            head,
            reply: "",
            sender: "",
            hops: "",
            federation: None,
            new_reply: None,
        };
        let (mut reply, mut sender, mut hops) = (false, false, false);
        if !scan.lit(b"}") {
            loop {
                if scan.key(keys.reply) {
                    once(&mut reply)?;
                    s.reply = scan.plain_str()?;
                } else if scan.key(keys.sender) {
                    once(&mut sender)?;
                    s.sender = scan.plain_str()?;
                } else if scan.key(keys.hops) {
                    once(&mut hops)?;
                    s.hops = scan.hops()?;
                } else if scan.key(keys.federation) {
                    if s.federation.is_some() {
                        return None;
                    }
                    s.federation = Some(scan.federation(keys)?);
                } else {
                    return None;
                }
                if scan.lit(b"}") {
                    break;
                }
                if !scan.lit(b",") {
                    return None;
                }
            }
        }
        (scan.lit(b"}") && scan.i == headers.len()).then_some(s)
    }

    /// The request id of a federated message; `None` when it is not federated.
    pub fn federation_request_id(&self) -> Option<&'a str> {
        self.federation.map(|f| f.request)
    }

    pub fn sender(&self) -> &'a str {
        self.sender
    }

    /// The federation header's `reply-to` / `reply`: the client's reply subject once
    /// the request transformer moved it there.
    pub fn federation_reply_to(&self) -> &'a str {
        self.federation.map_or("", |f| f.reply)
    }

    /// The processor (second element) of every hop that has one.
    pub fn hop_processors(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut scan = Scan::new(self.hops);
        std::iter::from_fn(move || loop {
            let hop = scan.str_list()?;
            scan.lit(b",");
            let mut strings = Scan::new(hop.inner);
            if strings.plain_str().is_some() && strings.lit(b",") {
                if let Some(p) = strings.plain_str() {
                    return Some(p);
                }
            }
        })
    }

    /// Go's request transformer: the targets come out, `reply-to` moves into the
    /// federation header and becomes `collective`.
    pub fn transform_request(&mut self, collective: &'a str) -> Result<List<'a>, Rewrite> {
        let f = self.federation.as_mut().ok_or(Rewrite::NotFederated)?;
        if f.targets.is_empty() {
            return Err(Rewrite::NoTargets);
        }
        if self.reply.is_empty() {
            return Err(Rewrite::NoReplyTo);
        }
        f.reply = self.reply;
        self.new_reply = Some(collective);
        Ok(std::mem::take(&mut f.targets))
    }

    /// Go's reply transformer: the one target is the client's reply subject, and the
    /// federation header goes.
    pub fn transform_reply(&mut self) -> Result<&'a str, Rewrite> {
        let f = self.federation.ok_or(Rewrite::NotFederated)?;
        if f.reply.is_empty() {
            return Err(Rewrite::NoReplyTo);
        }
        self.federation = None;
        Ok(f.reply)
    }

    /// The message as Go writes it, with one more hop, `hop` from [`hop_json`]. The
    /// headers are written into `scratch` first, so that the result is allocated at
    /// its exact size (a `Bytes` made from it then needs no allocation of its own).
    pub fn encode_with_hop(&self, hop: &[u8], scratch: &mut Vec<u8>) -> Vec<u8> {
        let k = self.keys;
        let out = scratch;
        out.clear();
        out.extend_from_slice(b",\"headers\":{");
        let reply = self.new_reply.unwrap_or(self.reply);
        let mut fields = Fields::default();
        if !reply.is_empty() {
            fields.key(out, k.reply);
            write_str(out, reply);
        }
        if !self.sender.is_empty() {
            fields.key(out, k.sender);
            write_plain(out, self.sender);
        }
        fields.key(out, k.hops);
        out.push(b'[');
        if !self.hops.is_empty() {
            out.extend_from_slice(self.hops.as_bytes());
            out.push(b',');
        }
        out.extend_from_slice(hop);
        out.push(b']');
        if let Some(f) = &self.federation {
            fields.key(out, k.federation);
            out.push(b'{');
            let mut inner = Fields::default();
            if !f.request.is_empty() {
                inner.key(out, k.fed_request);
                write_plain(out, f.request);
            }
            if !f.reply.is_empty() {
                inner.key(out, k.fed_reply);
                write_plain(out, f.reply);
            }
            if !f.targets.is_empty() {
                inner.key(out, k.fed_targets);
                out.push(b'[');
                out.extend_from_slice(f.targets.inner.as_bytes());
                out.push(b']');
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}}");
        let mut message = Vec::with_capacity(self.head.len() + out.len());
        message.extend_from_slice(self.head);
        message.extend_from_slice(out);
        message
    }
}

/// A hop `[in, processor, out]` as Go writes it.
pub(crate) fn hop_json(hop: [&str; 3]) -> Vec<u8> {
    coro_core::gojson::to_vec(&hop)
}

/// Sets `seen`, or says a key came twice (Go keeps the last, serde fails; the full
/// decoder decides).
fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// Writes the commas between an object's fields.
#[derive(Default)]
struct Fields {
    any: bool,
}

impl Fields {
    fn key(&mut self, out: &mut Vec<u8>, key: &[u8]) {
        if std::mem::replace(&mut self.any, true) {
            out.push(b',');
        }
        out.extend_from_slice(key);
        out.push(b':');
    }
}

/// A string already checked to be plain, as Go writes it.
fn write_plain(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A string as Go writes it: plain ones as they are (the usual case), others through
/// core's Go-compatible writer.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(plain) {
        write_plain(out, s);
    } else {
        out.extend_from_slice(&coro_core::gojson::to_vec(s));
    }
}

/// A byte Go writes inside a string as it is and that needs no escape in JSON.
fn plain(b: u8) -> bool {
    unplain(b) == 0
}

/// 1 for a byte that is not [`plain`], else 0: branch-free, so that a loop over a
/// slice becomes vector code.
#[inline]
fn unplain(b: u8) -> u8 {
    u8::from(
        (b.wrapping_sub(0x20) >= 0x5f)
            | (b == b'"')
            | (b == b'\\')
            | (b == b'<')
            | (b == b'>')
            | (b == b'&'),
    )
}

/// How many bytes at the start of `text` are [`plain`], for long runs (`data`): 64
/// bytes at a time without early exits (vector code, about 20 bytes a ns, three times
/// a byte loop), then [`plain_prefix`] in the chunk with anything else.
fn plain_run_long(text: &[u8]) -> usize {
    const CHUNK: usize = 64;
    let mut at = 0;
    while let Some(chunk) = text.get(at..at + CHUNK) {
        let mut any = 0;
        for &b in chunk {
            any |= unplain(b);
        }
        if any != 0 {
            break;
        }
        at += CHUNK;
    }
    at + plain_prefix(&text[at..])
}

/// How many bytes at the start of `text` are [`plain`], byte by byte.
fn plain_prefix(text: &[u8]) -> usize {
    text.iter().position(|&b| !plain(b)).unwrap_or(text.len())
}

/// The length of the `data` string's text up to its closing quote, when Go writes it
/// as received: plain bytes and Ruby's `\n` line breaks.
pub(super) fn plain_data_len(text: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        at += plain_run_long(text.get(at..)?);
        match text.get(at..)? {
            [b'"', ..] => return Some(at),
            [b'\\', b'n', ..] => at += 2,
            _ => return None,
        }
    }
}

/// Where the first `"` in `text` is: 8 bytes at a time (a zero byte of the word xor
/// `"`s; the lowest flagged byte is exact), for strings of a few dozen bytes.
fn find_quote(text: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(word) = text
        .get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let x = u64::from_le_bytes(word) ^ (ONES * u64::from(b'"'));
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    text.get(at..)?
        .iter()
        .position(|&b| b == b'"')
        .map(|p| at + p)
}

/// A cursor over compact JSON whose strings are known to be plain.
struct Scan<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    fn new(s: &'a str) -> Self {
        Scan { s, i: 0 }
    }

    /// Steps over `lit` when it comes next.
    #[inline(always)]
    fn lit(&mut self, lit: &[u8]) -> bool {
        let found = self
            .s
            .as_bytes()
            .get(self.i..)
            .is_some_and(|r| r.starts_with(lit));
        if found {
            self.i += lit.len();
        }
        found
    }

    /// Steps over `key` and the colon after it.
    #[inline(always)]
    fn key(&mut self, key: &[u8]) -> bool {
        let rest = self.s.as_bytes().get(self.i..).unwrap_or_default();
        let found = rest.starts_with(key) && rest.get(key.len()) == Some(&b':');
        if found {
            self.i += key.len() + 1;
        }
        found
    }

    /// A string; its text.
    fn plain_str(&mut self) -> Option<&'a str> {
        let rest = self.s.get(self.i..)?.strip_prefix('"')?;
        // Plain strings hold no quote or backslash: the next quote ends it.
        let len = find_quote(rest.as_bytes())?;
        self.i += len + 2;
        rest.get(..len)
    }

    /// `[` items `]`, each read by `item`: the text between the brackets and the count.
    #[inline]
    fn list(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<(&'a str, usize)> {
        if !self.lit(b"[") {
            return None;
        }
        let start = self.i;
        let mut len = 0;
        if !self.lit(b"]") {
            loop {
                item(self)?;
                len += 1;
                if self.lit(b"]") {
                    break;
                }
                if !self.lit(b",") {
                    return None;
                }
            }
        }
        Some((self.s.get(start..self.i - 1)?, len))
    }

    /// `[` plain strings `]`.
    fn str_list(&mut self) -> Option<List<'a>> {
        let (inner, len) = self.list(|s| s.plain_str().map(drop))?;
        Some(List { inner, len })
    }

    /// `[` lists of plain strings `]`: the text between the brackets.
    fn hops(&mut self) -> Option<&'a str> {
        self.list(|s| s.str_list().map(drop))
            .map(|(inner, _)| inner)
    }

    /// The federation object.
    #[inline(always)]
    fn federation(&mut self, keys: &Keys) -> Option<Federation<'a>> {
        if !self.lit(b"{") {
            return None;
        }
        let mut f = Federation::default();
        let (mut request, mut reply, mut targets) = (false, false, false);
        if self.lit(b"}") {
            return Some(f);
        }
        loop {
            if self.key(keys.fed_request) {
                once(&mut request)?;
                f.request = self.plain_str()?;
            } else if self.key(keys.fed_reply) {
                once(&mut reply)?;
                f.reply = self.plain_str()?;
            } else if self.key(keys.fed_targets) {
                once(&mut targets)?;
                f.targets = self.str_list()?;
            } else {
                return None;
            }
            if self.lit(b"}") {
                return Some(f);
            }
            if !self.lit(b",") {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::pipeline::transport_version;
    use super::super::wire::Wire;
    use super::*;
    use coro_core::protocol::Transport;

    const COLLECTIVE: &str = "choria.federation.london.collective";

    /// A fixture in the compact form Go sends.
    fn fixture(name: &str) -> Vec<u8> {
        let bytes = super::super::wire::tests::fixture(name);
        let version = transport_version(&bytes).unwrap();
        // Indented for reading; Go sends the compact form.
        Transport::decode(version, &bytes).unwrap().encode()
    }

    /// When `bytes` is spliced, it reads and rewrites exactly as the full decoder
    /// does, both ways; says whether it was spliced.
    fn same_as_wire(bytes: &[u8]) -> bool {
        let Some(version) = transport_version(bytes) else {
            return false;
        };
        let Some(splice) = Splice::parse(version, bytes) else {
            return false;
        };
        let payload = axum::body::Bytes::copy_from_slice(bytes);
        let text = String::from_utf8_lossy(bytes);
        let wire = Wire::decode(version, &payload)
            .unwrap_or_else(|e| panic!("spliced but not decoded: {e}: {text}"));
        assert_eq!(splice.sender(), wire.sender(), "{text}");
        assert_eq!(
            splice.federation_request_id(),
            wire.federation_request_id(),
            "{text}"
        );
        let processors: Vec<&str> = wire
            .hops()
            .iter()
            .filter_map(|h| h.get(1).map(String::as_str))
            .collect();
        assert_eq!(
            splice.hop_processors().collect::<Vec<_>>(),
            processors,
            "{text}"
        );
        for hop in [["a", "b", "c"], ["nats://x:1", "fb (<&>) é", "nats://y:2"]] {
            let (mut s, mut w) = (splice.clone(), wire.clone());
            match (
                s.transform_request(COLLECTIVE),
                w.transform_request("london"),
            ) {
                (Ok(st), Ok(wt)) => {
                    assert_eq!(st.iter().collect::<Vec<_>>(), wt, "{text}");
                    assert_eq!(st.len(), wt.len());
                    assert_eq!(s.federation_reply_to(), w.federation_reply_to());
                    w.record_hop(hop[0], hop[1], hop[2]);
                    assert_eq!(
                        String::from_utf8_lossy(
                            &s.encode_with_hop(&hop_json(hop), &mut Vec::new())
                        ),
                        String::from_utf8_lossy(&w.encode()),
                        "request side of {text}"
                    );
                }
                (Err(se), Err(we)) => assert_eq!(se, we, "{text}"),
                (st, wt) => panic!("{text}: spliced {st:?}, decoded {wt:?}"),
            }
            let (mut s, mut w) = (splice.clone(), wire.clone());
            match (s.transform_reply(), w.transform_reply()) {
                (Ok(st), Ok(wt)) => {
                    assert_eq!(vec![st.to_string()], wt, "{text}");
                    w.record_hop(hop[0], hop[1], hop[2]);
                    assert_eq!(
                        String::from_utf8_lossy(
                            &s.encode_with_hop(&hop_json(hop), &mut Vec::new())
                        ),
                        String::from_utf8_lossy(&w.encode()),
                        "reply side of {text}"
                    );
                }
                (Err(se), Err(we)) => assert_eq!(se, we, "{text}"),
                (st, wt) => panic!("{text}: spliced {st:?}, decoded {wt:?}"),
            }
        }
        true
    }

    use super::super::wire::tests::TRANSPORT_FIXTURES as FIXTURES;

    #[test]
    fn what_go_sends_is_spliced_as_decoded() {
        for name in FIXTURES {
            assert!(same_as_wire(&fixture(name)), "{name} was not spliced");
        }
    }

    #[test]
    fn plain_variants_are_spliced_as_decoded() {
        let v1 = |headers: &str| {
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj\nZGVm\n+/=","headers":{headers}}}"#
            )
        };
        let v2 = |headers: &str| {
            format!(
                r#"{{"protocol":"io.choria.protocol.v2.transport","data":"YWJj","headers":{headers}}}"#
            )
        };
        let fed1 =
            r#""federation":{"req":"r1","target":["mcollective.node.a","mcollective.node.b"]}"#;
        let fed2 = r#""federation":{"request":"r1","targets":["t.node.a"],"reply":"x.reply.2"}"#;
        for text in [
            v1(&format!(
                r#"{{"reply-to":"x.reply.1","mc_sender":"c","seen-by":[["a","b","c"]],{fed1}}}"#
            )),
            v1(&format!(
                r#"{{{fed1},"seen-by":[],"reply-to":"x.reply.1","mc_sender":""}}"#
            )),
            v1(&format!(
                r#"{{"reply-to":"x.reply.1","seen-by":[[],["a"],["a","b","c","d"]],{fed1}}}"#
            )),
            v1(r#"{"reply-to":"x.reply.1","federation":{}}"#),
            v1(
                r#"{"reply-to":"x.reply.1","federation":{"req":"","reply-to":"y.reply.1","target":[]}}"#,
            ),
            v1(r#"{"federation":{"req":"r","reply-to":"y.reply.1"},"mc_sender":"n1"}"#),
            v1(r#"{"federation":{"req":"r","target":["a.b"]}}"#),
            v1(r#"{"mc_sender":"n1","seen-by":[["a","b","c"]]}"#),
            v1("{}"),
            v2(&format!(
                r#"{{"reply":"x.reply.1","sender":"c","trace":[["a","b","c"]],{fed2}}}"#
            )),
            v2(&format!(r#"{{{fed2},"sender":"n"}}"#)),
            v2(
                r#"{"federation":{"request":"r","reply":"x.reply.1"},"trace":[["i","fb1 (choria_request_transformer:1)","o"]]}"#,
            ),
            v2("{}"),
        ] {
            assert!(same_as_wire(text.as_bytes()), "not spliced: {text}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_the_decoder() {
        let fed = r#""federation":{"req":"r","target":["a.node.b"]}"#;
        for text in [
            // Whitespace, another top-level order, unknown or repeated keys, null.
            format!(r#"{{"protocol":"choria:transport:1", "data":"YWJj","headers":{{{fed}}}}}"#),
            format!(r#"{{"data":"YWJj","protocol":"choria:transport:1","headers":{{{fed}}}}}"#),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{{fed}}},"x":1}}"#
            ),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"x":1,{fed}}}}}"#
            ),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"mc_sender":"a","mc_sender":"b",{fed}}}}}"#
            ),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"mc_sender":null,{fed}}}}}"#
            ),
            r#"{"protocol":"choria:transport:1","data":"YWJj","headers":null}"#.to_string(),
            r#"{"protocol":"choria:transport:1","data":"YWJj"}"#.to_string(),
            format!(r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{{fed}}}}}"#)
                + "\n",
            // Escapes and what Go writes differently.
            format!(r#"{{"protocol":"choria:transport:1","data":"YW\/Jj","headers":{{{fed}}}}}"#),
            format!(r#"{{"protocol":"choria:transport:1","data":"a<b","headers":{{{fed}}}}}"#),
            format!(r#"{{"protocol":"choria:transport:1","data":"é","headers":{{{fed}}}}}"#),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"mc_sender":"\u0041",{fed}}}}}"#
            ),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"mc_sender":"a&b",{fed}}}}}"#
            ),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"mc_sender":"é",{fed}}}}}"#
            ),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"seen-by":[["a",1]],{fed}}}}}"#
            ),
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"seen-by":["a"],{fed}}}}}"#
            ),
            // v2 keys in a v1 transport.
            format!(
                r#"{{"protocol":"choria:transport:1","data":"YWJj","headers":{{"sender":"a",{fed}}}}}"#
            ),
        ] {
            let version = transport_version(text.as_bytes()).unwrap();
            assert!(Splice::parse(version, text.as_bytes()).is_none(), "{text}");
        }
    }

    /// Every byte of the headers of what Go sends, changed or cut: what is still
    /// spliced reads and rewrites as the full decoder does.
    #[test]
    fn damaged_messages_splice_as_they_decode() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let replacements = b"\"\\,:[]{}ab0 -n<";
        let mut spliced = 0;
        for name in FIXTURES {
            let bytes = fixture(name);
            let start = bytes
                .windows(10)
                .position(|w| w == b"\"headers\":")
                .unwrap_or(0);
            for at in start..bytes.len() {
                let mut changed = bytes.clone();
                changed[at] = replacements[(next() % replacements.len() as u64) as usize];
                spliced += usize::from(same_as_wire(&changed));
                let mut cut = bytes.clone();
                cut.remove(at);
                spliced += usize::from(same_as_wire(&cut));
            }
        }
        assert!(
            spliced > 100,
            "only {spliced} damaged messages were spliced"
        );
    }

    #[test]
    fn quotes_are_found() {
        for text in [
            "\"",
            "a\"",
            "abcdefg\"",
            "abcdefgh\"",
            "abcdefghijklmnop\"x\"",
            "é\"\"",
            "\u{ff}\u{80}a\"",
        ] {
            assert_eq!(find_quote(text.as_bytes()), text.find('"'), "{text}");
        }
        assert_eq!(find_quote(b"abcdefghijkl"), None);
        assert_eq!(find_quote(b""), None);
    }

    #[test]
    fn data_scan() {
        let long = "QUJD".repeat(40);
        assert_eq!(plain_data_len(format!("{long}\",").as_bytes()), Some(160));
        // A `\n` across the scan's 32-byte chunks.
        let text = format!("{}\\n{}\"", "A".repeat(31), "B".repeat(40));
        assert_eq!(plain_data_len(text.as_bytes()), Some(73));
        assert_eq!(plain_data_len(b"ab\\/cd\""), None);
        assert_eq!(plain_data_len(b"abcd"), None);
        assert_eq!(plain_data_len(b"a\\"), None);
        assert_eq!(plain_data_len(b"\""), Some(0));
    }
}
