//! The optional `stale_after` job: every `stale_check_interval`, node documents whose
//! `last_seen` is older than `stale_after` get `stale: true`, with one
//! `_update_by_query`. The node's next registration replaces its document and so sets
//! `stale: false` again.
//!
//! The update bumps the document's version by one, which a later registration (a
//! Choria time at least a second newer, in nanoseconds) still beats. A registration
//! indexed while the update runs makes the update conflict on that node, and
//! `conflicts=proceed` leaves the fresh document alone.

use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use std::time::Duration;

/// The query for nodes silent for longer than `after`: `last_seen` before
/// `now - after`. Also the documented way to find silent nodes without the job.
pub fn silent_nodes_query(after: Duration) -> serde_json::Value {
    serde_json::json!({
        "range": {"last_seen": {"lt": format!("now-{}s", after.as_secs().max(1))}}
    })
}

/// Marks silent nodes in `pattern` stale, every `interval`, until aborted.
pub(crate) async fn run(
    client: Elasticsearch,
    pattern: String,
    after: Duration,
    interval: Duration,
    marked: prometheus::IntCounter,
) {
    // The first pass one interval after start: right at start nothing can be stale
    // that was not stale before, and the index may not exist yet.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match mark(&client, &pattern, after).await {
            Ok(0) => {}
            Ok(n) => {
                marked.inc_by(n);
                tracing::info!(nodes = n, index = %pattern, "elasticsearch: marked silent nodes stale");
            }
            Err(e) => {
                tracing::warn!(error = %e, index = %pattern, "elasticsearch: marking stale nodes failed")
            }
        }
    }
}

/// One pass: how many documents were marked.
pub async fn mark(client: &Elasticsearch, pattern: &str, after: Duration) -> Result<u64, String> {
    let body = serde_json::json!({
        "query": {"bool": {"filter": [
            silent_nodes_query(after),
            {"term": {"stale": false}}
        ]}},
        "script": {"source": "ctx._source.stale = true", "lang": "painless"}
    });
    let path = format!("/{pattern}/_update_by_query");
    let response = client
        .send(
            Method::Post,
            &path,
            HeaderMap::new(),
            Some(&[
                ("conflicts", "proceed"),
                ("ignore_unavailable", "true"),
                ("allow_no_indices", "true"),
                ("refresh", "true"),
            ]),
            Some(body.to_string()),
            None,
        )
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    let status = response.status_code();
    let text = response
        .text()
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    if status.as_u16() == 404 && text.contains("index_not_found_exception") {
        // No node has registered yet.
        return Ok(0);
    }
    if !status.is_success() {
        return Err(format!(
            "POST {path}: HTTP {status}: {}",
            super::template::short(&text)
        ));
    }
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("POST {path}: not JSON ({e})"))?;
    Ok(doc["updated"].as_u64().unwrap_or(0))
}
