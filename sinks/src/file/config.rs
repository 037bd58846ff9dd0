//! File sink settings.

use crate::encoding::Encoding;
use coro_core::config::{ConfigError, SinkSpec};
use serde::Deserialize;
use std::path::PathBuf;

/// When to flush written batches to the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync after every batch, before answering Delivered.
    #[default]
    Always,
    /// Leave it to the operating system (faster; a crash can lose recent lines).
    Never,
}

/// `type = "file"`: JSON lines appended to a file, rotated by size.
///
/// ```toml
/// [[adapter.sink]]
/// type = "file"
/// path = "/var/lib/coro/registration.jsonl"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to; created with its directory when missing. Required.
    pub path: PathBuf,
    /// How each record is written: `choria_streams` (default), `record` or `raw`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Rotate when the file reaches this many bytes. Default 128 MiB, at least 1.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` newest); older ones are deleted. Default 5.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// When to fsync: `always` (after every batch, before answering Delivered;
    /// default) or `never`.
    #[serde(default)]
    pub fsync: FsyncPolicy,
}

const fn default_max_bytes() -> u64 {
    128 * 1024 * 1024
}

const fn default_keep() -> usize {
    5
}

impl FileConfig {
    /// Examples for the required keys, for hints.
    pub(crate) const EXAMPLES: &'static [(&'static str, &'static str)] =
        &[("path", "path = \"/var/lib/coro/registration.jsonl\"")];

    /// The problems serde cannot see, each at the line of its key in `spec`.
    pub fn check(&self, spec: &SinkSpec) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(
                spec.error("path", "must not be empty")
                    .with_hint(format!("write e.g. {}", Self::EXAMPLES[0].1)),
            );
        }
        if self.max_bytes == 0 {
            errors.push(
                spec.error("max_bytes", "must be at least 1")
                    .with_hint(format!(
                        "write e.g. {}",
                        spec.example("max_bytes", default_max_bytes() as i64)
                    )),
            );
        }
        errors
    }
}
