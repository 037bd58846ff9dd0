//! Plugin sink settings.

use crate::encoding::Encoding;
use coro_core::config::{ConfigError, SinkSpec};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `type = "plugin"`: a sink from a shared library loaded at run time (see
/// [`coro_core::plugin`] for the ABI and `coro-plugin-sdk` for writing one in Rust).
///
/// ```toml
/// [[adapter.sink]]
/// type = "plugin"
/// path = "/usr/lib/coro/libcoro_plugin_jsonl.so"
/// config = { path = "/var/lib/coro/replies.jsonl" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The shared library. Required. A path with a `/` is opened as written (relative
    /// to the working directory); a bare file name is searched for the way the
    /// system's dynamic loader searches (`LD_LIBRARY_PATH`, ...).
    pub path: PathBuf,
    /// The plugin's own settings, a table handed to it as a JSON object. Default `{}`.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// What each record's bytes are: `raw` (the body as sent; default),
    /// `choria_streams` or `record`. The metadata (subject, sender, request id,
    /// idempotency key) is passed alongside either way.
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// Plugin threads. Default 1: every call comes from one thread, one at a time.
    /// More than 1 calls `send` concurrently and needs a plugin that declares itself
    /// thread-safe.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Longest a call into the plugin may take, queueing included: a batch not
    /// answered by then is retried (the plugin is left to finish; see the ABI's
    /// threading rules). Default 30 s.
    #[serde(default = "default_timeout", with = "coro_core::config::duration")]
    pub timeout: Duration,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

const fn default_encoding() -> Encoding {
    Encoding::Raw
}

const fn default_threads() -> usize {
    1
}

const fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl PluginConfig {
    /// Examples for the required keys, for hints.
    pub(crate) const EXAMPLES: &'static [(&'static str, &'static str)] =
        &[("path", "path = \"/usr/lib/coro/libmysink.so\"")];

    /// Settings for the plugin at `path` with `config`, the rest default.
    pub fn new(path: impl Into<PathBuf>, config: serde_json::Value) -> PluginConfig {
        PluginConfig {
            path: path.into(),
            config,
            encoding: default_encoding(),
            threads: default_threads(),
            timeout: default_timeout(),
        }
    }

    /// The problems serde cannot see, each at the line of its key in `spec`. Nothing is
    /// loaded here; [`crate::plugin::check`] loads the library and asks it.
    pub fn check(&self, spec: &SinkSpec) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(
                spec.error("path", "must not be empty")
                    .with_hint(format!("write e.g. {}", Self::EXAMPLES[0].1)),
            );
        }
        if !self.config.is_object() {
            errors.push(
                spec.error("config", "must be a table")
                    .with_hint("write e.g. config = { path = \"/tmp/out.jsonl\" }"),
            );
        }
        if self.threads == 0 {
            errors.push(
                spec.error("threads", "must be at least 1")
                    .with_hint(format!("write e.g. {}", spec.example("threads", 1))),
            );
        }
        if self.timeout.is_zero() {
            errors.push(
                spec.error("timeout", "must be more than 0")
                    .with_hint(format!("write e.g. {}", spec.example("timeout", "30s"))),
            );
        }
        errors
    }
}
