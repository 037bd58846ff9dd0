//! The Elasticsearch sink service: encodes a batch into `_bulk` requests (split by
//! records and bytes, at most `concurrency` in flight over every call), and answers one
//! outcome per record from the per-item results.
//!
//! | item result | outcome |
//! |---|---|
//! | 2xx | Delivered |
//! | 409 on `create` (`events`) | Delivered: a document with this idempotency key exists; counted in `coro_elasticsearch_duplicates_total` |
//! | 409 on `index` with an external version (`nodes`) | Delivered: the stored registration is as new or newer; counted in `coro_elasticsearch_superseded_total` |
//! | 429, 5xx | Retry: only these items are sent again |
//! | other 4xx | Reject with the Elasticsearch error type and reason (to the dead letter) |
//!
//! A request that fails as a whole (connection refused, timeout, HTTP 429/5xx, 401/403)
//! retries every record in it; any other whole-request 4xx rejects them.

use super::config::{ElasticsearchConfig, Model};
use super::encode::Encoder;
use super::metrics::{BulkResult, SinkMetrics};
use super::template::{short, IndexTemplateSpec};
use coro_core::protocol::Limits;
use coro_core::sink::{Batch, Outcome, SinkError};
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

/// Why the sink could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchError {
    /// A URL in `urls` does not parse.
    #[error("urls: `{url}` is not a valid URL: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// `ca_file` could not be read or holds no certificate.
    #[error(
        "ca_file {path}: {reason}; write the PEM of the CA that signed the servers' certificates"
    )]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("elasticsearch client: {0}")]
    Client(String),
}

/// The Elasticsearch sink; clones share the client, the in-flight limit and the
/// template state.
#[derive(Clone)]
pub struct ElasticsearchSink {
    inner: Arc<Inner>,
}

struct Inner {
    client: Elasticsearch,
    config: ElasticsearchConfig,
    encoder: Encoder,
    template: IndexTemplateSpec,
    template_installed: OnceCell<()>,
    permits: Semaphore,
    metrics: SinkMetrics,
    stale_job: Option<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(job) = &self.stale_job {
            job.abort();
        }
    }
}

impl std::fmt::Debug for ElasticsearchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSink")
            .field("urls", &self.inner.config.urls)
            .field("index", &self.inner.config.index)
            .field("model", &self.inner.config.model)
            .finish_non_exhaustive()
    }
}

/// The client for `config`: URLs, credentials, CA and gzip.
pub fn client(config: &ElasticsearchConfig) -> Result<Elasticsearch, ElasticsearchError> {
    let urls = config
        .urls
        .iter()
        .map(|u| {
            let mut url = Url::parse(u).map_err(|e| ElasticsearchError::Url {
                url: u.clone(),
                reason: e.to_string(),
            })?;
            // API paths are joined onto the URL: without a trailing `/` a path prefix
            // (a proxy's `/es`) would be replaced rather than kept.
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            Ok(url)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        // The client's round robin would panic on an empty list.
        return Err(ElasticsearchError::Client(
            "urls: needs at least one URL, e.g. http://127.0.0.1:9200".into(),
        ));
    }
    let mut builder = match <[Url; 1]>::try_from(urls) {
        Ok([url]) => TransportBuilder::new(SingleNodeConnectionPool::new(url)),
        Err(urls) => TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None)),
    };
    builder = builder
        .request_body_compression(config.gzip)
        .timeout(config.request_timeout)
        // The client's meta header describes the client, not us; keep requests lean.
        .enable_meta_header(false);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.auth(Credentials::Basic(user.clone(), password.clone()));
    }
    if let Some(key) = &config.api_key {
        // The client puts the key in a header unchecked (and panics on a bad one).
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ElasticsearchError::Client(
                "api_key: must be the printable `encoded` value (base64), or `id:key`".into(),
            ));
        }
        builder = builder.auth(match key.split_once(':') {
            Some((id, secret)) => Credentials::ApiKey(id.to_string(), secret.to_string()),
            None => Credentials::EncodedApiKey(key.clone()),
        });
    }
    if let Some(path) = &config.ca_file {
        let ca_error = |reason: String| ElasticsearchError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(ca_error("no PEM certificate in it".into()));
        }
        let certificate = Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
        builder = builder.cert_validation(CertificateValidation::Full(certificate));
    }
    let transport = builder
        .build()
        .map_err(|e| ElasticsearchError::Client(e.to_string()))?;
    Ok(Elasticsearch::new(transport))
}

impl ElasticsearchSink {
    /// A sink for `config`, counting into `metrics`. Must be called inside a Tokio
    /// runtime. Nothing is sent yet except, when `install_template` is set, one
    /// attempt to install the index template; if Elasticsearch is not reachable it is
    /// installed before the first bulk request instead (records wait, as retries,
    /// until it is), so no index is ever created without it.
    pub async fn connect(
        config: ElasticsearchConfig,
        metrics: SinkMetrics,
    ) -> Result<Self, ElasticsearchError> {
        let client = client(&config)?;
        let template = IndexTemplateSpec::for_config(&config);
        let stale_job = match (config.model, config.stale_after) {
            (Model::Nodes, Some(after)) => Some(
                tokio::spawn(super::stale::run(
                    client.clone(),
                    template.pattern.clone(),
                    after,
                    config.stale_check_interval,
                    metrics.stale.clone(),
                ))
                .abort_handle(),
            ),
            _ => None,
        };
        let sink = ElasticsearchSink {
            inner: Arc::new(Inner {
                encoder: Encoder {
                    model: config.model,
                    index: config.index_template(),
                    limits: Limits::DEFAULT,
                },
                permits: Semaphore::new(config.concurrency.max(1)),
                client,
                template,
                template_installed: OnceCell::new(),
                metrics,
                stale_job,
                config,
            }),
        };
        if let Err(e) = sink.ensure_template().await {
            tracing::warn!(error = %e, "elasticsearch: index template not installed yet; trying again before the first bulk request");
        }
        Ok(sink)
    }

    /// The client, for checks and tests.
    pub fn client(&self) -> &Elasticsearch {
        &self.inner.client
    }

    /// The index template this sink installs.
    pub fn template(&self) -> &IndexTemplateSpec {
        &self.inner.template
    }

    /// Installs the index template once (when `install_template` is set).
    async fn ensure_template(&self) -> Result<(), String> {
        let inner = &self.inner;
        if !inner.config.install_template {
            return Ok(());
        }
        inner
            .template_installed
            .get_or_try_init(|| async {
                inner.template.install(&inner.client).await?;
                tracing::info!(
                    template = %inner.template.name,
                    pattern = %inner.template.pattern,
                    model = inner.config.model.as_str(),
                    "elasticsearch: index template installed"
                );
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn send(self, batch: Batch) -> Vec<Outcome> {
        let n = batch.len();
        if let Err(e) = self.ensure_template().await {
            tracing::warn!(records = n, error = %e, "elasticsearch: no index template yet; the records wait");
            return vec![Outcome::retry(format!("elasticsearch: {e}")); n];
        }
        let inner = &self.inner;
        let mut outcomes = vec![Outcome::retry("not sent"); n];
        let mut requests: Vec<Request> = Vec::new();
        let mut current = Request::default();
        for (i, record) in batch.records.iter().enumerate() {
            let item = match inner.encoder.item(record) {
                Ok(item) => item,
                Err(e) => {
                    outcomes[i] = Outcome::reject(format!("elasticsearch: {e}"));
                    continue;
                }
            };
            let full = current.records.len() >= inner.config.bulk_max_records
                || current.body.len() + item.lines.len() > inner.config.bulk_max_bytes;
            if full && !current.records.is_empty() {
                requests.push(std::mem::take(&mut current));
            }
            current.body.extend_from_slice(&item.lines);
            current.records.push(i);
        }
        if !current.records.is_empty() {
            requests.push(current);
        }
        let answers = futures::future::join_all(requests.into_iter().map(|r| self.bulk(r))).await;
        for (indices, answer) in answers {
            for (i, outcome) in indices.into_iter().zip(answer) {
                outcomes[i] = outcome;
            }
        }
        outcomes
    }

    /// Sends one `_bulk` request; answers the record indices it held and their outcomes.
    async fn bulk(&self, request: Request) -> (Vec<usize>, Vec<Outcome>) {
        let inner = &self.inner;
        let n = request.records.len();
        let Ok(_permit) = inner.permits.acquire().await else {
            return (request.records, vec![Outcome::retry("sink closed"); n]);
        };
        let started = Instant::now();
        let result = self.post(request.body).await;
        inner
            .metrics
            .seconds
            .observe(started.elapsed().as_secs_f64());
        let outcomes = match result {
            Ok(response) => self.outcomes(response, n),
            Err(failure) => {
                inner.metrics.request(BulkResult::Failed);
                tracing::warn!(records = n, error = %failure.reason(), "elasticsearch: bulk request failed");
                vec![failure.outcome(); n]
            }
        };
        (request.records, outcomes)
    }

    async fn post(&self, body: Vec<u8>) -> Result<BulkResponse, Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let response = self
            .inner
            .client
            .send(
                Method::Post,
                "/_bulk",
                headers,
                Some(&[("filter_path", FILTER_PATH)]),
                Some(bytes::Bytes::from(body)),
                None,
            )
            .await
            .map_err(|e| Failure::Retry {
                reason: format!("elasticsearch: {e}"),
                after: None,
            })?;
        let status = response.status_code().as_u16();
        let after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.bytes().await.map_err(|e| Failure::Retry {
            reason: format!("elasticsearch: reading the bulk response: {e}"),
            after: None,
        })?;
        if !(200..300).contains(&status) {
            let reason = format!(
                "elasticsearch: bulk request answered HTTP {status}: {}",
                short(&String::from_utf8_lossy(&text))
            );
            return Err(match status {
                // Overload, outage, and credentials that may be fixed: keep the records.
                401 | 403 | 408 | 429 | 500..=599 => Failure::Retry { reason, after },
                _ => Failure::Reject { reason },
            });
        }
        serde_json::from_slice(&text).map_err(|e| Failure::Retry {
            reason: format!("elasticsearch: unreadable bulk response ({e})"),
            after: None,
        })
    }

    fn outcomes(&self, response: BulkResponse, n: usize) -> Vec<Outcome> {
        let metrics = &self.inner.metrics;
        if response.items.len() != n {
            metrics.request(BulkResult::Failed);
            return vec![
                Outcome::retry(format!(
                    "elasticsearch: bulk response has {} items for {n} documents",
                    response.items.len()
                ));
                n
            ];
        }
        metrics.request(if response.errors {
            BulkResult::ItemErrors
        } else {
            BulkResult::Ok
        });
        let model = self.inner.config.model;
        response
            .items
            .into_iter()
            .map(|item| {
                let result = item.result;
                match result.status {
                    200..=299 => Outcome::Delivered,
                    409 => {
                        match model {
                            Model::Events => metrics.duplicates.inc(),
                            Model::Nodes => metrics.superseded.inc(),
                        }
                        Outcome::Delivered
                    }
                    status => {
                        let error = result.error.unwrap_or_default();
                        metrics.item_error(status, &error.kind);
                        let reason = format!("elasticsearch: {status} {}", error.describe());
                        if status == 429 || status >= 500 {
                            Outcome::retry(reason)
                        } else {
                            Outcome::reject(reason)
                        }
                    }
                }
            })
            .collect()
    }
}

/// Only what outcomes need from a bulk response.
const FILTER_PATH: &str = "errors,items.*.status,items.*.error.type,items.*.error.reason,\
items.*.error.caused_by.type,items.*.error.caused_by.reason";

/// The records of one `_bulk` request and its body.
#[derive(Default)]
struct Request {
    records: Vec<usize>,
    body: Vec<u8>,
}

/// A whole-request failure.
enum Failure {
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Reject {
        reason: String,
    },
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Failure::Retry { reason, .. } | Failure::Reject { reason } => reason,
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            Failure::Retry { reason, after } => Outcome::Retry {
                after: *after,
                reason: reason.clone(),
            },
            Failure::Reject { reason } => Outcome::reject(reason.clone()),
        }
    }
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<BulkItem>,
}

/// `{"<op>": {...}}`: one key, the operation.
#[derive(Deserialize)]
struct BulkItem {
    #[serde(alias = "index", alias = "create", alias = "update", alias = "delete")]
    result: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize, Default)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    caused_by: Option<Cause>,
}

#[derive(Deserialize)]
struct Cause {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
}

impl ItemError {
    /// `type: reason (caused by type: reason)`, as much as Elasticsearch said.
    fn describe(&self) -> String {
        let mut out = if self.kind.is_empty() {
            "error".to_string()
        } else {
            self.kind.clone()
        };
        if let Some(reason) = &self.reason {
            out.push_str(": ");
            out.push_str(reason);
        }
        if let Some(cause) = &self.caused_by {
            out.push_str(&format!(" (caused by {}", cause.kind));
            if let Some(reason) = &cause.reason {
                out.push_str(": ");
                out.push_str(reason);
            }
            out.push(')');
        }
        out
    }
}

impl tower::Service<Batch> for ElasticsearchSink {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let sink = self.clone();
        Box::pin(async move { Ok(sink.send(batch).await) })
    }
}
