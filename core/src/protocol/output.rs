//! The document Choria's Go adapter publishes for each message (PROTOCOL.md §5.3):
//! `choria:adapters:choria_streams:output:1`.

use super::RpcMessage;
use crate::gojson;
use crate::record::{Kind, Record};
use serde::Serialize;

/// The `protocol` value; always `choria_streams`, whatever the adapter's type says.
pub const CHORIA_STREAMS_OUTPUT: &str = "choria:adapters:choria_streams:output:1";

/// A time Go's `time.Time.MarshalJSON` refuses (a year outside 0..=9999).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time {0} ns since the epoch is outside the years 0 to 9999")]
pub struct TimeOutOfRange(pub i128);

/// The adapter output document, fields in Go's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChoriaStreamsOutput {
    /// Always [`CHORIA_STREAMS_OUTPUT`].
    pub protocol: &'static str,
    /// v1: the envelope's `message` string verbatim; v2: the decoded body as a string.
    pub data: String,
    /// The sender identity from the envelope.
    pub sender: String,
    /// RFC3339 with nanoseconds, UTC, trailing zeros trimmed.
    pub time: String,
    /// The request id.
    pub requestid: String,
}

impl ChoriaStreamsOutput {
    /// The document Go's adapter would publish for `msg`.
    pub fn from_message(msg: &RpcMessage) -> Result<Self, TimeOutOfRange> {
        Ok(ChoriaStreamsOutput {
            protocol: CHORIA_STREAMS_OUTPUT,
            data: body_string(msg.body()),
            sender: msg.inner.sender().to_string(),
            time: rfc3339_nano(msg.inner.time_ns())?,
            requestid: msg.inner.request_id().to_string(),
        })
    }

    /// The same document built from a [`Record`] of a request or reply. Lifecycle
    /// events and dead letters have no adapter output; they give `None`.
    pub fn from_record(record: &Record) -> Option<Result<Self, TimeOutOfRange>> {
        if matches!(record.kind, Kind::Lifecycle | Kind::DeadLetter) {
            return None;
        }
        Some(
            rfc3339_nano(record.time_ns).map(|time| ChoriaStreamsOutput {
                protocol: CHORIA_STREAMS_OUTPUT,
                data: body_string(&record.body),
                sender: record.sender.clone(),
                time,
                requestid: record.request_id.clone(),
            }),
        )
    }

    /// Go's compact JSON: the bytes the adapter publishes.
    pub fn to_json(&self) -> Vec<u8> {
        gojson::to_vec(self)
    }
}

/// v1 bodies are the `message` string, so this is exact; v2 bodies are bytes, which Go
/// converts with `string()` and then marshals invalid UTF-8 as U+FFFD, as a lossy
/// conversion does.
fn body_string(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Formats unix nanoseconds as Go's `time.RFC3339Nano` in UTC: fractional seconds with
/// trailing zeros trimmed, none when whole.
pub fn rfc3339_nano(ns: i128) -> Result<String, TimeOutOfRange> {
    use time::macros::format_description;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ns).map_err(|_| TimeOutOfRange(ns))?;
    if !(0..=9999).contains(&t.year()) {
        return Err(TimeOutOfRange(ns));
    }
    let base = t
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .map_err(|_| TimeOutOfRange(ns))?;
    let nanos = t.nanosecond();
    if nanos == 0 {
        return Ok(format!("{base}Z"));
    }
    let fraction = format!("{nanos:09}");
    Ok(format!("{base}.{}Z", fraction.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_go_writes_them() {
        assert_eq!(
            rfc3339_nano(1_700_000_000_000_000_000).unwrap(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            rfc3339_nano(1_700_000_001_000_000_000).unwrap(),
            "2023-11-14T22:13:21Z"
        );
        assert_eq!(
            rfc3339_nano(1_700_000_001_123_400_000).unwrap(),
            "2023-11-14T22:13:21.1234Z"
        );
        assert_eq!(
            rfc3339_nano(1_700_000_001_000_000_001).unwrap(),
            "2023-11-14T22:13:21.000000001Z"
        );
        assert_eq!(rfc3339_nano(0).unwrap(), "1970-01-01T00:00:00Z");
        assert!(rfc3339_nano(i128::from(i64::MAX) * 1_000_000_000).is_err());
        assert!(rfc3339_nano(-70_000_000_000 * 1_000_000_000).is_err());
    }
}
