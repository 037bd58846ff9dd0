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
/// trailing zeros trimmed, none when whole (see [`Rfc3339`], which writes it without
/// allocating).
pub fn rfc3339_nano(ns: i128) -> Result<String, TimeOutOfRange> {
    Rfc3339::default()
        .format(ns)
        .map(str::to_string)
        .ok_or(TimeOutOfRange(ns))
}

/// A buffer for one RFC3339 time with nanoseconds (`0000-01-01T00:00:00.000000001Z`).
#[derive(Debug, Default)]
pub struct Rfc3339([u8; 30]);

impl Rfc3339 {
    /// `ns` as Go's `time.RFC3339Nano` in UTC: fractional seconds with trailing zeros
    /// trimmed, none when whole; `None` outside the years 0 to 9999. No allocation and
    /// no generic formatter (a test holds it equal to the `time` crate's).
    pub fn format(&mut self, ns: i128) -> Option<&str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `time` crate's RFC3339 with Go's trimmed fraction: the reference.
    fn reference(ns: i128) -> Result<String, TimeOutOfRange> {
        use time::macros::format_description;
        let t =
            time::OffsetDateTime::from_unix_timestamp_nanos(ns).map_err(|_| TimeOutOfRange(ns))?;
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

    #[test]
    fn times_are_the_time_crates() {
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
        for ns in times {
            assert_eq!(
                time.format(ns).map(str::to_string),
                reference(ns).ok(),
                "{ns}"
            );
        }
    }

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
