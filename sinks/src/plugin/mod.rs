//! Sinks loaded at run time from shared libraries (`type = "plugin"`), through the
//! versioned C ABI of [`coro_core::plugin`].
//!
//! The loader checks the entry symbol, the ABI version and the function table before
//! any other call ([`Plugin::load`]); turns every failure a plugin reports (an error
//! status, a caught panic, an unknown outcome kind, an unset outcome) into a
//! [`PluginError`] or an [`Outcome`](coro_core::sink::Outcome); and runs every call on
//! the plugin's own threads, with a deadline, so a slow plugin cannot stall the other
//! pipelines ([`PluginSink`]). What it cannot contain is a plugin that corrupts memory
//! or aborts: plugins run in the daemon's process.
#![allow(unsafe_code)]

pub mod config;
pub mod library;
pub mod service;

pub use config::PluginConfig;
pub use library::Plugin;
pub use service::{PluginSink, PluginStats};

use std::path::PathBuf;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// Why a plugin could not be loaded, checked or started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The system loader refused the file (missing, not a shared library, wrong
    /// architecture, unresolved dependencies).
    #[error("plugin {}: cannot load the library: {reason}", path.display())]
    Load {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library does not export the entry function.
    #[error(
        "plugin {}: no symbol `{}`: not a Coro sink plugin, or one built for another ABI \
         version (this coro speaks version {}); build it with coro_plugin.h or \
         coro-plugin-sdk of this release",
        path.display(), coro_core::plugin::ENTRY_SYMBOL, coro_core::plugin::ABI_VERSION
    )]
    MissingSymbol {
        /// The library.
        path: PathBuf,
    },
    /// The entry function returned NULL.
    #[error("plugin {}: `{}` returned no function table", path.display(), coro_core::plugin::ENTRY_SYMBOL)]
    NoTable {
        /// The library.
        path: PathBuf,
    },
    /// The table is of another ABI version.
    #[error(
        "plugin {}: speaks ABI version {found}, this coro speaks version {}; rebuild it \
         with coro_plugin.h or coro-plugin-sdk of this release",
        path.display(), coro_core::plugin::ABI_VERSION
    )]
    AbiVersion {
        /// The library.
        path: PathBuf,
        /// The version in its table.
        found: u32,
    },
    /// A required function is NULL in the table.
    #[error("plugin {}: its function table has no `{function}`, which is required", path.display())]
    MissingFunction {
        /// The library.
        path: PathBuf,
        /// The function.
        function: &'static str,
    },
    /// `check` refused the config.
    #[error("plugin {}: config refused: {message}", path.display())]
    Config {
        /// The library.
        path: PathBuf,
        /// The plugin's reason.
        message: String,
    },
    /// `create` failed.
    #[error("plugin {}: could not create the sink: {message}", path.display())]
    Create {
        /// The library.
        path: PathBuf,
        /// The plugin's reason.
        message: String,
    },
    /// `threads > 1` for a plugin that does not declare itself thread-safe.
    #[error(
        "plugin {}: threads = {threads}, but the plugin does not declare itself thread-safe \
         (CORO_PLUGIN_FLAG_THREAD_SAFE); set threads = 1",
        path.display()
    )]
    NotThreadSafe {
        /// The library.
        path: PathBuf,
        /// The configured threads.
        threads: usize,
    },
    /// A call did not return in time.
    #[error("plugin {}: `{function}` did not return within {timeout:?}", path.display())]
    Timeout {
        /// The library.
        path: PathBuf,
        /// The function.
        function: &'static str,
        /// The configured timeout.
        timeout: Duration,
    },
    /// A plugin thread could not be started.
    #[error("plugin {path}: starting a plugin thread: {reason}")]
    Thread {
        /// The library.
        path: String,
        /// The system's message.
        reason: String,
    },
    /// The plugin's first thread ended without an answer.
    #[error("plugin {}: its thread stopped while creating the sink", path.display())]
    Stopped {
        /// The library.
        path: PathBuf,
    },
}

impl PluginError {
    /// The config key the error is about: `path` for the library, `config` for what
    /// the plugin refused, `threads` for thread-safety.
    pub fn key(&self) -> &'static str {
        match self {
            PluginError::Config { .. } | PluginError::Create { .. } => "config",
            PluginError::NotThreadSafe { .. } => "threads",
            _ => "path",
        }
    }
}

/// What `coro validate` does for a plugin sink: load the library, check it, and ask
/// the plugin whether it accepts the config. Nothing is created.
pub fn check(config: &PluginConfig) -> Result<(), PluginError> {
    let plugin = Plugin::load(&config.path)?;
    if config.threads > 1 && !plugin.thread_safe() {
        return Err(PluginError::NotThreadSafe {
            path: config.path.clone(),
            threads: config.threads,
        });
    }
    plugin.check(&config.config)
}
