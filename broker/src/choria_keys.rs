//! Typed values from a Choria config file (`broker.conf`), for the broker's parts that
//! read one (the network and federation brokers): Go's value forms, and every problem
//! collected with the file, line and key, and what to write instead. Each part adds
//! its own keys' readers in an `impl Keys` of its config module.

use coro_core::config::choria::ChoriaEntry;
use coro_core::config::{ChoriaConfig, ConfigError, ConfigErrors};
use std::path::PathBuf;

/// Reads typed values from `config` and collects every problem in `errors`.
pub(crate) struct Keys<'a> {
    pub(crate) config: &'a ChoriaConfig,
    pub(crate) errors: ConfigErrors,
}

impl<'a> Keys<'a> {
    /// A reader of `config` with no problems yet.
    pub(crate) fn new(config: &'a ChoriaConfig) -> Self {
        Keys {
            config,
            errors: ConfigErrors::default(),
        }
    }

    /// Records a problem with `key` at the line of `e`.
    pub(crate) fn error(
        &mut self,
        e: &ChoriaEntry,
        key: &str,
        message: String,
        hint: impl Into<String>,
    ) {
        self.errors
            .push(ConfigError::at(&e.location, key, message).with_hint(hint));
    }

    /// Go's booleans: `1|yes|true|y|t` and `0|no|false|n|f`, any case.
    pub(crate) fn bool(&mut self, key: &str, default: bool) -> bool {
        let Some(e) = self.config.entry(key) else {
            return default;
        };
        match parse_bool(&e.value) {
            Some(b) => b,
            None => {
                self.error(
                    e,
                    key,
                    format!("`{}` is not a boolean", e.value),
                    format!("write e.g. {key} = true (or false)"),
                );
                default
            }
        }
    }

    /// A file or directory path: `~/` is the home directory, relative paths are taken
    /// from the current directory (as Go does), made absolute so a server started from
    /// elsewhere reads the same file.
    pub(crate) fn path(&mut self, key: &str) -> Option<PathBuf> {
        let e = self.config.entry(key)?;
        let path = match (e.value.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
            _ => PathBuf::from(&e.value),
        };
        match std::path::absolute(&path) {
            Ok(p) => Some(p),
            Err(err) => {
                self.error(
                    e,
                    key,
                    format!("`{}` is not a usable path: {err}", e.value),
                    "write an absolute path",
                );
                None
            }
        }
    }

    /// A path to a file that must exist.
    pub(crate) fn file(&mut self, key: &str) -> Option<PathBuf> {
        let path = self.path(key)?;
        if path.is_file() {
            return Some(path);
        }
        let e = self.config.entry(key)?;
        self.error(
            e,
            key,
            format!("{} does not exist or is not a file", path.display()),
            "point it at the PEM file",
        );
        None
    }
}

/// Go's `strToBool`.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "y" | "t" => Some(true),
        "0" | "no" | "false" | "n" | "f" => Some(false),
        _ => None,
    }
}
