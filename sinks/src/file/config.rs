//! File sink settings.

use crate::encoding::Encoding;
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to; created with its directory when missing.
    pub path: PathBuf,
    /// How each record is written. Default `choria_streams`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Rotate when the file would pass this many bytes. Default 128 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` newest). Default 5.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// When to fsync. Default `always`.
    #[serde(default)]
    pub fsync: FsyncPolicy,
}

const fn default_max_bytes() -> u64 {
    128 * 1024 * 1024
}

const fn default_keep() -> usize {
    5
}
