//! The Kinesis sink: encodes each record, splits the batch into `PutRecords` requests
//! within the service limits, sends them in order, and answers each record from its
//! result entry.
//!
//! Outcomes: an accepted entry (it has a sequence number) is Delivered; an entry with
//! `ProvisionedThroughputExceededException`, `InternalFailure` or
//! `KMSThrottlingException` is Retried, after a backoff that doubles while requests
//! keep being throttled; any other `ErrorCode` is Rejected to the dead letter. A record
//! over `max_record_bytes` is Rejected before anything is sent. A request that fails
//! as a whole is Retried (network, throttling, 5xx) or Rejected (missing stream,
//! access denied, invalid request) for all its records.

use super::config::KinesisConfig;
use super::metrics::SinkMetrics;
use crate::encoding;
use crate::kafka::encode::Template;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use coro_core::sink::{Batch, Outcome, SinkError};
use coro_core::Record;
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Longest partition key Kinesis accepts, in characters.
const MAX_KEY_CHARS: usize = 256;

/// Why the sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    /// No region in the config or the AWS chain.
    #[error("no AWS region: write region = \"eu-west-1\" in the sink, or set AWS_REGION")]
    NoRegion,
    /// A template did not parse (checked at config load; here for completeness).
    #[error("{key}: unknown placeholder `{{{name}}}`")]
    Template {
        /// The config key.
        key: &'static str,
        /// The placeholder.
        name: String,
    },
}

/// The Kinesis sink service; clones share the client.
#[derive(Clone)]
pub struct KinesisSink {
    inner: Arc<Inner>,
}

struct Inner {
    config: KinesisConfig,
    client: Client,
    partition_key: Template,
    hash_key: Option<Template>,
    /// Throttled requests in a row, for the backoff.
    throttled: AtomicU32,
    /// With `ordered`: the end of the last batch handed over, which the next waits for.
    tail: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    metrics: Option<SinkMetrics>,
}

impl std::fmt::Debug for KinesisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisSink")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The SDK client for `config`: region, endpoint and credentials from the config and
/// the standard AWS chain, the call timeout from `timeout`.
pub async fn client(config: &KinesisConfig) -> Result<Client, KinesisError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(config.timeout)
            .connect_timeout(Duration::from_secs(3).min(config.timeout))
            .build(),
    );
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(KinesisError::NoRegion);
    }
    Ok(Client::new(&sdk))
}

impl KinesisSink {
    /// A sink putting records as `config` says. Loads the AWS config (region,
    /// credentials provider); nothing is sent yet.
    pub async fn connect(
        config: KinesisConfig,
        metrics: Option<SinkMetrics>,
    ) -> Result<Self, KinesisError> {
        let client = client(&config).await?;
        KinesisSink::with_client(config, client, metrics)
    }

    /// A sink using `client` (tests, benchmarks).
    pub fn with_client(
        config: KinesisConfig,
        client: Client,
        metrics: Option<SinkMetrics>,
    ) -> Result<Self, KinesisError> {
        let template = |key: &'static str, text: &str| {
            Template::parse(text).map_err(|e| KinesisError::Template { key, name: e.0 })
        };
        let partition_key = template("partition_key", &config.partition_key)?;
        let hash_key = config
            .explicit_hash_key
            .as_deref()
            .map(|t| template("explicit_hash_key", t))
            .transpose()?;
        Ok(KinesisSink {
            inner: Arc::new(Inner {
                config,
                client,
                partition_key,
                hash_key,
                throttled: AtomicU32::new(0),
                tail: std::sync::Mutex::new(None),
                metrics,
            }),
        })
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }
}

impl tower::Service<Batch> for KinesisSink {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let inner = self.inner.clone();
        // Taken here, not in the future: batches queue in the order they were handed
        // over, whatever order their futures are first polled in.
        let turn = match inner.config.ordered {
            true => {
                let (done, next) = tokio::sync::oneshot::channel::<()>();
                let previous = match inner.tail.lock() {
                    Ok(mut tail) => tail.replace(next),
                    Err(poisoned) => poisoned.into_inner().replace(next),
                };
                Some((previous, done))
            }
            false => None,
        };
        Box::pin(async move {
            let _done = match turn {
                Some((previous, done)) => {
                    if let Some(previous) = previous {
                        // An error only means that batch was dropped: its turn is over.
                        let _ = previous.await;
                    }
                    Some(done)
                }
                None => None,
            };
            Ok(inner.put(batch).await)
        })
    }
}

/// The partition key for `record`: the template filled in, cut to 256 characters; an
/// empty key (a dead letter without a sender) becomes the idempotency key.
pub fn partition_key(template: &Template, record: &Record) -> String {
    let mut key = template.render(record);
    if key.is_empty() {
        key = record.idempotency_key();
    }
    if let Some((cut, _)) = key.char_indices().nth(MAX_KEY_CHARS) {
        key.truncate(cut);
    }
    key
}

/// One encoded record waiting for a request: its place in the batch, its entry, and
/// its size as Kinesis counts it.
struct Pending {
    index: usize,
    entry: PutRecordsRequestEntry,
    size: usize,
}

impl Inner {
    async fn put(&self, batch: Batch) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut requests: Vec<Vec<Pending>> = Vec::new();
        let (mut count, mut bytes) = (0usize, 0usize);
        for (index, record) in batch.records.iter().enumerate() {
            match self.entry(record) {
                Ok((entry, size)) => {
                    if requests.is_empty()
                        || count + 1 > self.config.max_records
                        || bytes + size > self.config.max_request_bytes
                    {
                        requests.push(Vec::new());
                        (count, bytes) = (0, 0);
                    }
                    count += 1;
                    bytes += size;
                    if let Some(last) = requests.last_mut() {
                        last.push(Pending { index, entry, size });
                    }
                }
                Err((code, reason)) => {
                    let outcome = Outcome::reject(reason);
                    if let Some(m) = &self.metrics {
                        m.error(code, &outcome);
                    }
                    outcomes[index] = Some(outcome);
                }
            }
        }
        // In order, one request at a time: a node's records keep their order in its shard.
        let mut failed: Option<Outcome> = None;
        for request in requests {
            if let Some(outcome) = &failed {
                for p in &request {
                    outcomes[p.index] = Some(outcome.clone());
                }
                continue;
            }
            if let Err(outcome) = self.send(request, &mut outcomes).await {
                failed = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::retry("kinesis: record was not sent")))
            .collect()
    }

    /// The request entry for `record` and its size, or why it can never be sent.
    fn entry(
        &self,
        record: &Record,
    ) -> Result<(PutRecordsRequestEntry, usize), (&'static str, String)> {
        let data = encoding::encode(record, self.config.encoding)
            .map_err(|e| ("Encoding", format!("kinesis: {e}")))?;
        let key = partition_key(&self.partition_key, record);
        let size = data.len() + key.len();
        if size > self.config.max_record_bytes {
            return Err((
                "RecordTooLarge",
                format!(
                    "kinesis: record of {size} bytes (data and partition key) is over the limit of {} bytes",
                    self.config.max_record_bytes
                ),
            ));
        }
        let hash = match &self.hash_key {
            Some(t) => {
                let hash = t.render(record);
                if hash.parse::<u128>().is_err() {
                    return Err((
                        "InvalidHashKey",
                        format!("kinesis: explicit hash key `{hash}` is not a decimal number below 2^128"),
                    ));
                }
                Some(hash)
            }
            None => None,
        };
        PutRecordsRequestEntry::builder()
            .data(Blob::new(data))
            .partition_key(key)
            .set_explicit_hash_key(hash)
            .build()
            .map(|entry| (entry, size))
            .map_err(|e| ("Invalid", format!("kinesis: {e}")))
    }

    /// The backoff after a throttled request, doubling per throttled request in a row.
    fn backoff(&self) -> Duration {
        let streak = self.throttled.fetch_add(1, Ordering::Relaxed).min(5);
        self.config.backoff * (1u32 << streak)
    }

    /// Sends one request and fills in its records' outcomes; `Err` with the outcome for
    /// the requests after it when the whole request failed in a way that may last
    /// (they are not sent, keeping each shard's order).
    async fn send(
        &self,
        request: Vec<Pending>,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), Outcome> {
        let started = Instant::now();
        let indexes: Vec<usize> = request.iter().map(|p| p.index).collect();
        let bytes: usize = request.iter().map(|p| p.size).sum();
        let entries: Vec<PutRecordsRequestEntry> = request.into_iter().map(|p| p.entry).collect();
        let result = self
            .client
            .put_records()
            .stream_name(&self.config.stream)
            .set_records(Some(entries))
            .send()
            .await;
        if let Some(m) = &self.metrics {
            m.requests.inc();
            m.seconds.observe(started.elapsed().as_secs_f64());
        }
        let output = match result {
            Ok(output) => output,
            Err(e) => {
                let (code, outcome) = self.request_failed(&e);
                tracing::warn!(
                    stream = %self.config.stream,
                    records = indexes.len(),
                    bytes,
                    "kinesis: PutRecords failed: {code}: {}",
                    describe(&e)
                );
                for &i in &indexes {
                    if let Some(m) = &self.metrics {
                        m.error(&code, &outcome);
                    }
                    outcomes[i] = Some(outcome.clone());
                }
                return match outcome {
                    Outcome::Retry { .. } => Err(outcome),
                    _ => Ok(()),
                };
            }
        };
        let results = output.records();
        if results.len() != indexes.len() {
            // Not what the API promises; retrying is the safe answer.
            let outcome = Outcome::retry(format!(
                "kinesis: PutRecords answered {} entries for {} records",
                results.len(),
                indexes.len()
            ));
            for &i in &indexes {
                outcomes[i] = Some(outcome.clone());
            }
            return Ok(());
        }
        let mut throttled = false;
        let mut after = None;
        for (entry, &i) in results.iter().zip(&indexes) {
            let outcome = match entry.error_code() {
                None if entry.sequence_number().is_some() => Outcome::Delivered,
                None => Outcome::retry("kinesis: entry has neither a sequence number nor an error"),
                Some(code) => {
                    let message = entry.error_message().unwrap_or("");
                    let reason = format!("kinesis: {code}: {message}");
                    let outcome = if retriable_code(code) {
                        throttled = true;
                        let wait = *after.get_or_insert_with(|| self.backoff());
                        Outcome::Retry {
                            after: Some(wait),
                            reason,
                        }
                    } else {
                        Outcome::reject(reason)
                    };
                    if let Some(m) = &self.metrics {
                        m.error(code, &outcome);
                    }
                    outcome
                }
            };
            outcomes[i] = Some(outcome);
        }
        if !throttled {
            self.throttled.store(0, Ordering::Relaxed);
        } else {
            tracing::debug!(
                stream = %self.config.stream,
                failed = output.failed_record_count().unwrap_or(0),
                "kinesis: records throttled, retrying them after {after:?}"
            );
        }
        Ok(())
    }

    /// The error code and outcome for a request that failed as a whole.
    fn request_failed<
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    >(
        &self,
        e: &SdkError<E, R>,
    ) -> (String, Outcome) {
        let reason = format!("kinesis: {}", describe(e));
        match e {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("Unknown").to_string();
                let outcome = if retriable_code(&code)
                    || matches!(
                        code.as_str(),
                        "LimitExceededException" | "ThrottlingException" | "ServiceUnavailable"
                    ) {
                    Outcome::Retry {
                        after: Some(self.backoff()),
                        reason,
                    }
                } else if matches!(
                    code.as_str(),
                    "ResourceNotFoundException"
                        | "AccessDeniedException"
                        | "InvalidArgumentException"
                        | "ValidationException"
                        | "KMSDisabledException"
                        | "KMSInvalidStateException"
                        | "KMSAccessDeniedException"
                        | "KMSNotFoundException"
                        | "KMSOptInRequired"
                ) {
                    Outcome::reject(reason)
                } else {
                    // 5xx, expired or refused credentials that may be rotated, and the
                    // unknown: worth trying again.
                    Outcome::retry(reason)
                };
                (code, outcome)
            }
            SdkError::TimeoutError(_) => ("Timeout".into(), Outcome::retry(reason)),
            SdkError::DispatchFailure(_) => ("Dispatch".into(), Outcome::retry(reason)),
            _ => ("Request".into(), Outcome::retry(reason)),
        }
    }
}

/// Whether a per-record `ErrorCode` (or a request's) is worth a retry: throttling and
/// the service's internal failures.
pub fn retriable_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException" | "InternalFailure" | "KMSThrottlingException"
    )
}

/// An SDK error with its causes, which `Display` alone leaves out ("dispatch failure").
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
