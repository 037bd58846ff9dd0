//! JSON output that matches Go's `encoding/json` byte for byte.
//!
//! Choria's Go code marshals structs in declaration order and escapes `<`, `>`, `&`,
//! U+2028 and U+2029 (its `HTMLEscape` default). Our protocol types declare their fields
//! in Go's order, so serde already writes the keys right; this formatter adds Go's extra
//! escapes, so a decoded and re-encoded message is the same bytes a Go process sends.

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter, PrettyFormatter};
use std::io::{self, Write};

/// A serde_json formatter with Go's string escaping, compact or indented like
/// `json.MarshalIndent(v, "", "  ")`.
pub struct GoFormatter<'a> {
    pretty: Option<PrettyFormatter<'a>>,
}

impl GoFormatter<'_> {
    /// Compact output, as Go's `json.Marshal`.
    pub fn compact() -> Self {
        GoFormatter { pretty: None }
    }

    /// Two-space indented output, as Go's `json.MarshalIndent(v, "", "  ")`.
    pub fn indented() -> Self {
        GoFormatter {
            pretty: Some(PrettyFormatter::with_indent(b"  ")),
        }
    }
}

/// Forwards the structural calls to the pretty printer when indenting, else to the
/// compact one (which writes nothing but the punctuation).
macro_rules! structural {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $name<W: ?Sized + Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> io::Result<()> {
                match &mut self.pretty {
                    Some(p) => p.$name(w $(, $arg)*),
                    None => CompactFormatter.$name(w $(, $arg)*),
                }
            }
        )*
    };
}

impl Formatter for GoFormatter<'_> {
    structural! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        end_object_key();
        begin_object_value();
        end_object_value();
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        // Most strings (base64 payloads, subjects, ids) have nothing to escape: one
        // byte scan instead of decoding every character. 0xE2 starts U+2028 and U+2029.
        if !bytes.iter().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2)) {
            return writer.write_all(bytes);
        }
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            let escape: &[u8] = match ch {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&bytes[start..i])?;
            writer.write_all(escape)?;
            start = i + ch.len_utf8();
        }
        writer.write_all(&bytes[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        // serde_json's escapes for quote, backslash and control characters are the ones
        // Go (1.22 and later) writes, including `\b` and `\f`.
        CompactFormatter.write_char_escape(writer, char_escape)
    }
}

/// Marshals `value` exactly as Go's `json.Marshal` would for a struct of the same shape.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    write(value, GoFormatter::compact())
}

/// [`to_vec`] as a `String` (JSON output is always UTF-8).
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    String::from_utf8(to_vec(value)).unwrap_or_default()
}

/// Marshals `value` exactly as Go's `json.MarshalIndent(v, "", "  ")` would.
pub fn to_vec_indented<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    write(value, GoFormatter::indented())
}

fn write<T: Serialize + ?Sized>(value: &T, formatter: GoFormatter<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serialising our own types into a Vec cannot fail: every key is a string and no
    // Serialize impl of ours returns an error.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let s = "a<b>&c\u{2028}\u{2029}\"\\\n\r\t\u{8}\u{c}\u{1}é\u{7f}";
        assert_eq!(
            to_string(s),
            "\"a\\u003cb\\u003e\\u0026c\\u2028\\u2029\\\"\\\\\\n\\r\\t\\b\\f\\u0001é\u{7f}\""
        );
    }

    #[test]
    fn indents_like_marshal_indent() {
        let v = serde_json::json!({"a": [], "b": {}, "c": [1, 2]});
        assert_eq!(
            String::from_utf8(to_vec_indented(&v)).unwrap(),
            "{\n  \"a\": [],\n  \"b\": {},\n  \"c\": [\n    1,\n    2\n  ]\n}"
        );
    }
}
