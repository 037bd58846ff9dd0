//! Typed sink configuration: a [`SinkSpec`] read by coro-core (`type`, `name` and the
//! options as written) becomes a [`SinkConfig`], checked, with every error at the line
//! of its key.

use crate::blackhole::config::BlackholeConfig;
use crate::elasticsearch::config::ElasticsearchConfig;
use crate::encoding::Encoding;
use crate::file::config::FileConfig;
use crate::jetstream::config::JetStreamConfig;
use crate::kafka::config::KafkaConfig;
use crate::kinesis::config::KinesisConfig;
use crate::plugin::PluginConfig;
use crate::pubsub::config::PubSubConfig;
use coro_core::config::{did_you_mean, AdaptersConfig, ConfigError, ConfigErrors, SinkSpec};
use coro_core::pipeline::Order;
use serde::de::DeserializeOwned;
use std::path::Path;

/// The sink `type`s there are.
pub const SINK_TYPES: [&str; 8] = [
    "blackhole",
    "elasticsearch",
    "file",
    "jetstream",
    "kafka",
    "kinesis",
    "plugin",
    "pubsub",
];

/// `true`, for serde defaults of the sinks' switches that are on unless turned off.
pub(crate) const fn default_true() -> bool {
    true
}

/// One sink's settings, by `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// `type = "blackhole"`.
    Blackhole(BlackholeConfig),
    /// `type = "elasticsearch"`.
    Elasticsearch(ElasticsearchConfig),
    /// `type = "file"`.
    File(FileConfig),
    /// `type = "jetstream"`.
    JetStream(JetStreamConfig),
    /// `type = "kafka"`.
    Kafka(KafkaConfig),
    /// `type = "kinesis"`.
    Kinesis(KinesisConfig),
    /// `type = "plugin"`: a shared library loaded at run time.
    Plugin(PluginConfig),
    /// `type = "pubsub"`.
    PubSub(PubSubConfig),
}

impl SinkConfig {
    /// The typed settings of `spec`, or the first problem with them.
    // Config errors are made once, at load time; their size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn from_spec(spec: &SinkSpec) -> Result<SinkConfig, ConfigError> {
        SinkConfig::check_spec(spec).map_err(|errors| {
            errors
                .into_iter()
                .next()
                .unwrap_or_else(|| spec.error("", "invalid sink"))
        })
    }

    /// The typed settings of `spec`, or every problem with them: an unknown `type`
    /// (with the known ones and the closest), unknown or missing keys, values of the
    /// wrong type, and the checks serde cannot make.
    pub fn check_spec(spec: &SinkSpec) -> Result<SinkConfig, ConfigErrors> {
        match spec.kind.as_str() {
            "blackhole" => typed::<BlackholeConfig>(spec, &[]).map(SinkConfig::Blackhole),
            "elasticsearch" => typed::<ElasticsearchConfig>(spec, ElasticsearchConfig::EXAMPLES)
                .and_then(|c| {
                    ConfigErrors(c.check(spec)).into_result(SinkConfig::Elasticsearch(c))
                }),
            "file" => typed::<FileConfig>(spec, FileConfig::EXAMPLES)
                .and_then(|c| ConfigErrors(c.check(spec)).into_result(SinkConfig::File(c))),
            "jetstream" => typed::<JetStreamConfig>(spec, JetStreamConfig::EXAMPLES)
                .and_then(|c| ConfigErrors(c.check(spec)).into_result(SinkConfig::JetStream(c))),
            "kafka" => typed::<KafkaConfig>(spec, KafkaConfig::EXAMPLES)
                .and_then(|c| ConfigErrors(c.check(spec)).into_result(SinkConfig::Kafka(c))),
            "kinesis" => typed::<KinesisConfig>(spec, KinesisConfig::EXAMPLES)
                .and_then(|c| ConfigErrors(c.check(spec)).into_result(SinkConfig::Kinesis(c))),
            "plugin" => typed::<PluginConfig>(spec, PluginConfig::EXAMPLES)
                .and_then(|c| ConfigErrors(c.check(spec)).into_result(SinkConfig::Plugin(c))),
            "pubsub" => typed::<PubSubConfig>(spec, PubSubConfig::EXAMPLES)
                .and_then(|c| ConfigErrors(c.check(spec)).into_result(SinkConfig::PubSub(c))),
            other => {
                let known = SINK_TYPES.join(", ");
                let hint = match did_you_mean(other, SINK_TYPES) {
                    Some(best) => format!("did you mean `{best}`? known types: {known}"),
                    None => format!("known types: {known}"),
                };
                Err(spec
                    .error("type", format!("unknown sink type `{other}`"))
                    .with_hint(hint)
                    .into())
            }
        }
    }

    /// The `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Blackhole(_) => "blackhole",
            SinkConfig::Elasticsearch(_) => "elasticsearch",
            SinkConfig::File(_) => "file",
            SinkConfig::JetStream(_) => "jetstream",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Kinesis(_) => "kinesis",
            SinkConfig::Plugin(_) => "plugin",
            SinkConfig::PubSub(_) => "pubsub",
        }
    }

    /// Whether the pipeline must keep this sink's records in order across batches and
    /// retries: Kinesis and Pub/Sub with `ordered` (the default; Pub/Sub only with an
    /// ordering key). The others take batches concurrently.
    pub fn order(&self) -> Order {
        let kept = match self {
            SinkConfig::Kinesis(c) => c.ordered,
            SinkConfig::PubSub(c) => c.ordered && !c.ordering_key.is_empty(),
            _ => false,
        };
        if kept {
            Order::Kept
        } else {
            Order::Any
        }
    }

    /// How records are written, for the sinks that write them.
    pub fn encoding(&self) -> Option<Encoding> {
        match self {
            SinkConfig::Blackhole(_) => None,
            // Documents have their own shape (the model), not an encoding.
            SinkConfig::Elasticsearch(_) => None,
            SinkConfig::File(c) => Some(c.encoding),
            SinkConfig::JetStream(c) => Some(c.encoding),
            SinkConfig::Kafka(c) => Some(c.encoding),
            SinkConfig::Kinesis(c) => Some(c.encoding),
            SinkConfig::Plugin(c) => Some(c.encoding),
            SinkConfig::PubSub(c) => Some(c.encoding),
        }
    }
}

/// The options of `spec` as `T`, with an example for a missing required key.
fn typed<T: DeserializeOwned>(
    spec: &SinkSpec,
    examples: &[(&str, &str)],
) -> Result<T, ConfigErrors> {
    spec.options_all::<T>().map_err(|errors| {
        let mut errors = errors.0;
        for e in &mut errors {
            if e.hint.is_none() {
                let missing = e
                    .message
                    .strip_prefix("missing required key `")
                    .map(|k| k.trim_end_matches('`'));
                if let Some((_, example)) = examples.iter().find(|(k, _)| Some(*k) == missing) {
                    e.hint = Some(format!("write e.g. {example}"));
                }
            }
        }
        ConfigErrors(errors)
    })
}

/// Reads the config at `path` and types every sink, as `coro validate` does: every
/// problem of both, sorted by line. Nothing connects anywhere.
pub fn load(path: &Path) -> Result<(AdaptersConfig, Vec<AdapterSinks>), ConfigErrors> {
    finish(coro_core::config::load_partial(path))
}

/// [`load`] for `text` as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<(AdaptersConfig, Vec<AdapterSinks>), ConfigErrors> {
    finish(coro_core::config::parse_partial(path, text))
}

fn finish(
    (config, mut errors): (Option<AdaptersConfig>, ConfigErrors),
) -> Result<(AdaptersConfig, Vec<AdapterSinks>), ConfigErrors> {
    let Some(config) = config else {
        errors.sort();
        return Err(errors);
    };
    match check_sinks(&config) {
        Ok(sinks) => errors.into_result((config, sinks)),
        Err(e) => {
            errors.extend(e);
            errors.sort();
            Err(errors)
        }
    }
}

/// Loads every plugin sink's library in `config` and asks the plugin whether it
/// accepts its config, as `coro validate` does (this runs plugin code, which typing
/// alone never does). Every problem, at the line of the key it is about.
pub fn check_plugins(config: &AdaptersConfig) -> Result<(), ConfigErrors> {
    let mut errors = ConfigErrors::default();
    for adapter in &config.adapters {
        for spec in adapter.sinks.iter().chain(adapter.dead_letter.as_ref()) {
            if let Ok(SinkConfig::Plugin(plugin)) = SinkConfig::check_spec(spec) {
                if let Err(e) = crate::plugin::check(&plugin) {
                    errors.push(spec.error(e.key(), e.to_string()));
                }
            }
        }
    }
    errors.sort();
    errors.into_result(())
}

/// The typed sinks of one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSinks {
    /// Each `[[adapter.sink]]` by name, in file order.
    pub sinks: Vec<(String, SinkConfig)>,
    /// The `[adapter.dead_letter]`, by name.
    pub dead_letter: Option<(String, SinkConfig)>,
}

/// Types and checks every sink and dead letter of every adapter in `config`,
/// collecting every problem (sorted by line).
pub fn check_sinks(config: &AdaptersConfig) -> Result<Vec<AdapterSinks>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut out = Vec::new();
    let typed = |spec: &SinkSpec, errors: &mut ConfigErrors| match SinkConfig::check_spec(spec) {
        Ok(c) => Some((spec.name.clone(), c)),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    for adapter in &config.adapters {
        let sinks = adapter
            .sinks
            .iter()
            .filter_map(|s| typed(s, &mut errors))
            .collect();
        let dead_letter = adapter
            .dead_letter
            .as_ref()
            .and_then(|s| typed(s, &mut errors));
        errors.extend(crate::kafka::config::check_timeouts(adapter));
        out.push(AdapterSinks { sinks, dead_letter });
    }
    errors.into_result(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use coro_core::config::toml;
    use coro_core::config::Location;
    use std::path::Path;

    /// The sink written as `text` (its keys, `type` included) in a minimal adapters.toml.
    pub(crate) fn spec(text: &str) -> SinkSpec {
        let doc = format!(
            "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
             servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n[[adapter.sink]]\n{text}"
        );
        coro_core::config::parse(Path::new("adapters.toml"), &doc)
            .unwrap()
            .adapters
            .remove(0)
            .sinks
            .remove(0)
    }

    fn error(text: &str) -> String {
        SinkConfig::check_spec(&spec(text)).unwrap_err().to_string()
    }

    #[test]
    fn types() {
        assert_eq!(
            SinkConfig::from_spec(&spec("type = \"blackhole\"")).unwrap(),
            SinkConfig::Blackhole(BlackholeConfig {})
        );
        let SinkConfig::File(f) =
            SinkConfig::from_spec(&spec("type = \"file\"\npath = \"/tmp/x\"")).unwrap()
        else {
            panic!()
        };
        assert_eq!(f.max_bytes, 128 * 1024 * 1024);
        assert_eq!(f.keep, 5);
        assert_eq!(f.encoding, Encoding::ChoriaStreams);
    }

    #[test]
    fn unknown_type() {
        assert_eq!(
            error("type = \"fiel\""),
            "adapters.toml:8:1: adapter \"a\": sink \"fiel\": type: unknown sink type `fiel`; \
             did you mean `file`? known types: blackhole, elasticsearch, file, jetstream, kafka, \
             kinesis, plugin, pubsub"
        );
        assert_eq!(
            error("type = \"sqs\""),
            "adapters.toml:8:1: adapter \"a\": sink \"sqs\": type: unknown sink type `sqs`; \
             known types: blackhole, elasticsearch, file, jetstream, kafka, kinesis, plugin, pubsub"
        );
    }

    #[test]
    fn sink_errors_name_their_key_and_line() {
        assert_eq!(
            error("type = \"file\"\npth = \"/tmp/x\""),
            "adapters.toml:9:1: adapter \"a\": sink \"file\": unknown key `pth`; did you mean `path`?"
        );
        assert_eq!(
            error("type = \"file\""),
            "adapters.toml:7:1: adapter \"a\": sink \"file\": missing required key `path`; \
             write e.g. path = \"/var/lib/coro/registration.jsonl\""
        );
        assert_eq!(
            error("type = \"file\"\npath = \"/tmp/x\"\nkeep = \"five\""),
            "adapters.toml:10:1: adapter \"a\": sink \"file\": keep: invalid type: string \"five\", \
             expected usize"
        );
        assert_eq!(
            error("type = \"jetstream\"\nservers = [\"nats://h:4222\"]\nsubject = \"a.{sendr}\""),
            "adapters.toml:10:1: adapter \"a\": sink \"jetstream\": subject: unknown placeholder \
             `{sendr}`; did you mean `{sender}`?"
        );
        assert_eq!(
            error("type = \"jetstream\"\nservers = [\"http://h\"]\nsubject = \"a.*\""),
            "adapters.toml:9:1: adapter \"a\": sink \"jetstream\": servers: `http://h` is not a NATS \
             URL (scheme `http`); use nats:// or tls:// URLs, e.g. nats://127.0.0.1:4222\n\
             adapters.toml:10:1: adapter \"a\": sink \"jetstream\": subject: `a.*` is not a valid \
             subject: wildcards cannot be published to; write e.g. subject = \"choria.registration.%s\""
        );
    }

    #[test]
    fn kinesis_and_pubsub_errors_name_their_key() {
        assert_eq!(
            error("type = \"kinesis\"\nstream = \"s\"\npartition_key = \"{sendr}\""),
            "adapters.toml:10:1: adapter \"a\": sink \"kinesis\": partition_key: unknown placeholder \
             `{sendr}`; did you mean `{sender}`?"
        );
        assert_eq!(
            error("type = \"kinesis\"\nstream = \"s\"\nmax_records = 501"),
            "adapters.toml:10:1: adapter \"a\": sink \"kinesis\": max_records: must be 1 to 500 \
             (the Kinesis limit); write e.g. max_records = 500"
        );
        assert_eq!(
            error("type = \"pubsub\"\nproject = \"my-project\""),
            "adapters.toml:7:1: adapter \"a\": sink \"pubsub\": missing required key `topic`; \
             write e.g. topic = \"choria-replies\""
        );
        assert_eq!(
            error("type = \"pubsub\"\nproject = \"my-project\"\ntopic = \"projects/p/topics/t\""),
            "adapters.toml:10:1: adapter \"a\": sink \"pubsub\": topic: `projects/p/topics/t` is not a \
             Pub/Sub topic id (3 to 255 of letters, digits, `-_.~+%`, starting with a letter, not with \
             `goog`; the id only, not projects/.../topics/...); write e.g. topic = \"choria-replies\""
        );
    }

    #[test]
    fn spec_without_a_file() {
        let mut options = toml::Table::new();
        options.insert("path".into(), toml::Value::Integer(1));
        let spec = SinkSpec::new("file", options, Location::new("x", 1, 1));
        assert_eq!(
            SinkConfig::from_spec(&spec).unwrap_err().to_string(),
            "x:1:1: sink \"file\": path: invalid type: integer `1`, expected path string"
        );
    }
}
