//! Index into Elasticsearch with `_bulk`, mapping each bulk item's result onto the
//! record's outcome.
//!
//! Two document models ([`documents`]): `events` (one document per record, created
//! once by idempotency key) and `nodes` (one document per node, the newest
//! registration winning by external version). Coro installs the index template it
//! needs ([`template`]) before the first document, and `coro validate --online` checks
//! it with [`check_online`].

pub mod config;
pub mod documents;
pub mod encode;
pub mod metrics;
pub mod service;
pub mod stale;
pub mod template;

pub use config::ElasticsearchConfig;
pub use metrics::ElasticsearchMetrics;
pub use service::{ElasticsearchError, ElasticsearchSink};

/// What `coro validate --online` reports for an Elasticsearch sink: the server is
/// reachable with the configured credentials, the index template is installed and
/// matches, and indices that exist have the mappings the model needs. `Ok` lines are
/// fine, `Err` lines are problems.
pub async fn check_online(config: &ElasticsearchConfig) -> Vec<Result<String, String>> {
    use elasticsearch::http::headers::HeaderMap;
    use elasticsearch::http::Method;
    let client = match service::client(config) {
        Ok(c) => c,
        Err(e) => return vec![Err(e.to_string())],
    };
    let info = client
        .send(
            Method::Get,
            "/",
            HeaderMap::new(),
            None::<&()>,
            None::<()>,
            None,
        )
        .await;
    let mut out = Vec::new();
    match info {
        Err(e) => return vec![Err(format!("connecting to {:?}: {e}", config.urls))],
        Ok(r) if !r.status_code().is_success() => {
            let status = r.status_code();
            let hint = match status.as_u16() {
                401 => "; check username/password or api_key",
                403 => "; the credentials lack the monitor privilege",
                _ => "",
            };
            return vec![Err(format!(
                "{:?} answered HTTP {status}{hint}",
                config.urls
            ))];
        }
        Ok(r) => {
            let doc: serde_json::Value = r.json().await.unwrap_or_default();
            out.push(Ok(format!(
                "connected to {:?} (Elasticsearch {})",
                config.urls,
                doc["version"]["number"]
                    .as_str()
                    .unwrap_or("of unknown version")
            )));
        }
    }
    let spec = template::IndexTemplateSpec::for_config(config);
    out.extend(spec.check(&client, config).await);
    out
}

#[cfg(test)]
mod tests;
