//! Durations in config files as humans write them: `"100ms"`, `"30s"`, `"5m"`.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Deserializes `"30s"`-style text.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}); write e.g. \"250ms\", \"30s\" or \"5m\""
        ))
    })
}

/// Serializes as `"30s"`-style text.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}
