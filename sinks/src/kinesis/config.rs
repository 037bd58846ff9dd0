//! Kinesis sink settings and their checks.

use crate::encoding::Encoding;
use crate::kafka::encode::{Field, Template};
use coro_core::config::{did_you_mean, unknown_hint, ConfigError, SinkSpec};
use serde::Deserialize;
use std::time::Duration;

/// Most records in one `PutRecords` request (the service limit).
pub const MAX_RECORDS: usize = 500;
/// Most bytes (data and partition keys) in one `PutRecords` request (the service limit).
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// Most bytes (data and partition key) of one record (the service limit).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// `type = "kinesis"`: put each record to an Amazon Kinesis data stream
/// (`PutRecords`), answering Delivered only for records the stream accepted.
///
/// ```toml
/// [[adapter.sink]]
/// type = "kinesis"
/// stream = "choria-replies"
/// # region = "eu-west-1"                  # default: the AWS chain (AWS_REGION, profile)
/// # endpoint = "http://127.0.0.1:4567"    # default: the AWS endpoint of the region
/// # partition_key = "{sender}"            # default: the sender
/// # explicit_hash_key = "{requestid}"     # default: none (the partition key's hash)
/// # encoding = "choria_streams"           # or "record", "raw"
/// ```
///
/// Credentials come from the standard AWS chain: `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`), `AWS_PROFILE` and the shared config
/// files, web identity (EKS), ECS and EC2 instance roles. KMS-encrypted streams need
/// nothing here, only `kms:GenerateDataKey` for the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    /// The stream name, e.g. `"choria-replies"`. Required.
    pub stream: String,
    /// AWS region, e.g. `"eu-west-1"`. Default: from the AWS chain (`AWS_REGION`,
    /// `AWS_DEFAULT_REGION`, the profile, instance metadata).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override, e.g. `"http://127.0.0.1:4567"` for a local server or a VPC
    /// endpoint. Default: the region's Kinesis endpoint (or `AWS_ENDPOINT_URL_KINESIS`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Partition key template: `{sender}`, `{requestid}`, `{agent}`, `{collective}`,
    /// `{kind}` and text. Default `"{sender}"`: one node's records go to one shard and
    /// stay in order there. Longer keys are cut to 256 characters (the service limit);
    /// an empty key becomes the record's idempotency key.
    #[serde(default = "default_partition_key")]
    pub partition_key: String,
    /// Explicit hash key template (a decimal number below 2^128 once filled in), to
    /// pick the shard directly instead of hashing the partition key. Default: none. A
    /// record whose key is not such a number is rejected to the dead letter.
    #[serde(default)]
    pub explicit_hash_key: Option<String>,
    /// How each record is written: `choria_streams` (default), `record` or `raw`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Most records per `PutRecords` request, 1 to 500 (default 500). Larger batches
    /// are split.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Most bytes per `PutRecords` request, up to 5 MiB (default).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Largest record (data and partition key), up to 1 MiB (default). A larger record
    /// is rejected to the dead letter at once, never retried.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// First wait before records the stream throttled are sent again; it doubles for
    /// each throttled request in a row, up to 32 times this. Default 100ms.
    #[serde(default = "default_backoff", with = "coro_core::config::duration")]
    pub backoff: Duration,
    /// Keep each sender's records in order across batches and retries: the pipeline
    /// hands over one batch at a time and sends a failed record again before anything
    /// after it, and the sink puts batches in the order it was given them (a node's
    /// records stay in order in its shard). Default true; `false` puts batches
    /// concurrently, for throughput when order does not matter.
    #[serde(default = "crate::config::default_true")]
    pub ordered: bool,
    /// How long one `PutRecords` call may take, the SDK's own retries included, before
    /// its records are retried by the pipeline. Default 10s; keep it below the
    /// adapter's `[adapter.pipeline] timeout`.
    #[serde(default = "default_timeout", with = "coro_core::config::duration")]
    pub timeout: Duration,
}

fn default_partition_key() -> String {
    "{sender}".into()
}
const fn default_max_records() -> usize {
    MAX_RECORDS
}
const fn default_max_request_bytes() -> usize {
    MAX_REQUEST_BYTES
}
const fn default_max_record_bytes() -> usize {
    MAX_RECORD_BYTES
}
const fn default_backoff() -> Duration {
    Duration::from_millis(100)
}
const fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl KinesisConfig {
    /// Examples for the required keys, for hints.
    pub(crate) const EXAMPLES: &'static [(&'static str, &'static str)] =
        &[("stream", "stream = \"choria-replies\"")];

    /// A config with defaults for everything but the stream.
    pub fn new(stream: impl Into<String>) -> Self {
        KinesisConfig {
            stream: stream.into(),
            region: None,
            endpoint: None,
            partition_key: default_partition_key(),
            explicit_hash_key: None,
            encoding: Encoding::default(),
            max_records: default_max_records(),
            max_request_bytes: default_max_request_bytes(),
            max_record_bytes: default_max_record_bytes(),
            backoff: default_backoff(),
            ordered: true,
            timeout: default_timeout(),
        }
    }

    /// The problems serde cannot see, each at the line of its key in `spec`.
    pub fn check(&self, spec: &SinkSpec) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let valid_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if self.stream.is_empty() || self.stream.len() > 128 || !self.stream.chars().all(valid_name)
        {
            errors.push(
                spec.error(
                    "stream",
                    format!("`{}` is not a Kinesis stream name (1 to 128 of a-z, A-Z, 0-9, `_`, `.`, `-`)", self.stream),
                )
                .with_hint(format!("write e.g. {}", Self::EXAMPLES[0].1)),
            );
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                errors.push(
                    spec.error("endpoint", format!("`{endpoint}` is not an http(s) URL"))
                        .with_hint(
                            "write e.g. endpoint = \"https://kinesis.eu-west-1.amazonaws.com\"",
                        ),
                );
            }
        }
        if let Some(region) = &self.region {
            if region.is_empty()
                || region
                    .chars()
                    .any(|c| !(c.is_ascii_alphanumeric() || c == '-'))
            {
                errors.push(
                    spec.error("region", format!("`{region}` is not an AWS region name"))
                        .with_hint("write e.g. region = \"eu-west-1\""),
                );
            }
        }
        errors.extend(check_key_template(
            spec,
            "partition_key",
            &self.partition_key,
            "partition_key = \"{sender}\"",
        ));
        if let Some(hash) = &self.explicit_hash_key {
            errors.extend(check_key_template(
                spec,
                "explicit_hash_key",
                hash,
                "explicit_hash_key = \"{requestid}\"",
            ));
        }
        let mut range = |key: &str, value: usize, max: usize| {
            if value == 0 || value > max {
                errors.push(
                    spec.error(key, format!("must be 1 to {max} (the Kinesis limit)"))
                        .with_hint(format!("write e.g. {}", spec.example(key, max as i64))),
                );
            }
        };
        range("max_records", self.max_records, MAX_RECORDS);
        range(
            "max_request_bytes",
            self.max_request_bytes,
            MAX_REQUEST_BYTES,
        );
        range("max_record_bytes", self.max_record_bytes, MAX_RECORD_BYTES);
        if self.timeout.is_zero() {
            errors.push(
                spec.error("timeout", "must be more than 0")
                    .with_hint(format!("write e.g. {}", spec.example("timeout", "10s"))),
            );
        }
        errors
    }
}

/// A key template (partition key, hash key, ordering key) whose placeholders exist.
pub(crate) fn check_key_template(
    spec: &SinkSpec,
    key: &str,
    text: &str,
    example: &str,
) -> Option<ConfigError> {
    let name = Template::parse(text).err()?.0;
    let hint = match did_you_mean(&name, Field::NAMES) {
        Some(best) => format!("did you mean `{{{best}}}`?"),
        None => format!(
            "{}; write e.g. {example}",
            unknown_hint(&name, Field::NAMES).replace('`', "")
        ),
    };
    Some(
        spec.error(key, format!("unknown placeholder `{{{name}}}`"))
            .with_hint(hint),
    )
}
