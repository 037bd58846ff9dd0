//! Configuration: the data adapters' `adapters.toml` ([`adapters`]), Choria's own
//! `broker.conf` ([`choria`]), and errors that say where and what to write instead
//! ([`error`]).
//!
//! [`load`] reads either: a `.toml` file is an adapters configuration; anything else is
//! read as a Choria config and its `plugin.choria.adapter.*` section mapped onto the
//! same model. Both get the same semantic checks ([`checks`]); the sink options are
//! typed and checked by the sinks crate (`coro_sinks::config::SinkConfig`).

pub mod adapters;
pub mod checks;
pub mod choria;
pub mod duration;
pub mod error;
mod toml_file;

pub use adapters::{
    AdapterConfig, AdaptersConfig, HttpSettings, IngestConfig, JetStreamIngest, NatsIngest, Origin,
    Origins, Protocol, SinkSpec,
};
pub use choria::ChoriaConfig;
pub use error::{did_you_mean, unknown_hint, ConfigError, ConfigErrors, Location};

/// The TOML crate, whose [`Table`](toml::Table) holds [`SinkSpec::options`].
pub use ::toml;

use std::path::Path;

/// Reads the adapters configuration at `path`: `*.toml` as `adapters.toml`, anything
/// else as a Choria config (`broker.conf`). Every problem found is returned, in file
/// order, each with its line and what to write instead.
pub fn load(path: &Path) -> Result<AdaptersConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "", format!("cannot read the file: {e}")))?;
    parse(path, &text)
}

/// Parses `text` as if read from `path` (which only decides the format and names the
/// file in errors).
pub fn parse(path: &Path, text: &str) -> Result<AdaptersConfig, ConfigErrors> {
    match parse_partial(path, text) {
        (Some(config), errors) => errors.into_result(config),
        (None, mut errors) => {
            errors.sort();
            Err(errors)
        }
    }
}

/// For validators: what could be read from `path` and every problem found, so that the
/// sinks of the readable adapters can be checked too. The config is `None` when the
/// file cannot be read or is not valid TOML; adapters without a valid name or ingest
/// are left out of it, sinks that could not be read too, and a pipeline with errors
/// stands at its defaults. The errors are not sorted.
pub fn load_partial(path: &Path) -> (Option<AdaptersConfig>, ConfigErrors) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_partial(path, &text),
        Err(e) => (
            None,
            ConfigError::new(path, "", format!("cannot read the file: {e}")).into(),
        ),
    }
}

/// [`load_partial`] for `text` as if read from `path`.
pub fn parse_partial(path: &Path, text: &str) -> (Option<AdaptersConfig>, ConfigErrors) {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
    {
        toml_file::read(path, text)
    } else {
        let (config, errors) = ChoriaConfig::parse(path, text).read_adapters();
        (Some(config), errors)
    }
}
