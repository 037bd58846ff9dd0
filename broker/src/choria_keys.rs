//! Typed values from a Choria config file (`broker.conf`), for the broker's parts that
//! read one (the network and federation brokers): Go's value forms, and every problem
//! collected with the file, line and key, and what to write instead. Each part adds
//! its own keys' readers in an `impl Keys` of its config module.

use coro_core::config::choria::ChoriaEntry;
use coro_core::config::{unknown_hint, ChoriaConfig, ConfigError, ConfigErrors};
use std::path::PathBuf;

/// The key naming the security provider.
pub(crate) const PROVIDER: &str = "plugin.security.provider";

/// The security providers Go knows; Coro reads certificates only with `file`.
const PROVIDERS: [&str; 5] = ["puppet", "file", "pkcs11", "certmanager", "choria"];

/// The files of Choria's `file` security provider.
pub(crate) struct ProviderFiles {
    /// `plugin.security.file.certificate`.
    pub(crate) certificate: PathBuf,
    /// `plugin.security.file.key`.
    pub(crate) key: PathBuf,
    /// `plugin.security.file.ca`, when set.
    pub(crate) ca: Option<PathBuf>,
}

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

    /// The certificate, key and CA of the `file` security provider, when
    /// `plugin.security.provider` is set (nothing without it). Any other provider is an
    /// error saying `part` (e.g. "network broker") does not support it; a missing or
    /// absent file is an error at its key.
    pub(crate) fn provider_files(&mut self, part: &str) -> Option<ProviderFiles> {
        let provider = self.config.entry(PROVIDER)?;
        match provider.value.as_str() {
            "file" => {}
            p if PROVIDERS.contains(&p) => {
                self.error(
                    provider,
                    PROVIDER,
                    format!("the `{p}` security provider is not supported by Coro's {part}"),
                    "Coro reads certificates from files: set plugin.security.provider = file and \
                     plugin.security.file.certificate, .key and .ca (for puppet, the files under \
                     the puppet ssldir)",
                );
                return None;
            }
            other => {
                self.error(
                    provider,
                    PROVIDER,
                    format!("unknown security provider `{other}`"),
                    unknown_hint(other, PROVIDERS),
                );
                return None;
            }
        }
        for setting in ["certificate", "key"] {
            let key = format!("plugin.security.file.{setting}");
            if self.config.entry(&key).is_none() {
                self.error(
                    provider,
                    &key,
                    "missing: the file provider needs the broker's certificate and key".into(),
                    format!("write e.g. {key} = /etc/choria/ssl/{setting}.pem"),
                );
            }
        }
        let certificate = self.file("plugin.security.file.certificate");
        let key = self.file("plugin.security.file.key");
        let ca = self.file("plugin.security.file.ca");
        Some(ProviderFiles {
            certificate: certificate?,
            key: key?,
            ca,
        })
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
