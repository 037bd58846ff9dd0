//! Registration documents per second into Elasticsearch through Coro's sink, against a
//! raw `_bulk` client sending the same documents with the same bulk size and
//! concurrency, in one run (`make bench`).
//!
//! The records are gzip `inventory_content` registrations as the simulated fleet sends
//! them (fleet facts, agents, classes, status). Coro's side starts from the records:
//! it gunzips each registration, builds the `nodes` document and bulk action, sends
//! `_bulk` requests and maps every item's result to an outcome. The raw side sends the
//! NDJSON Coro would send, built before the clock starts, with reqwest, and checks
//! `errors: false`. Both write to a fresh index with the same index template. Each bulk
//! size is measured `ROUNDS` times, raw and Coro back to back (alternating who goes
//! first); reported are the medians of the rates and of the per-round ratios, whose
//! spread shows how noisy the shared machine was.
//!
//! Needs `CORO_TEST_ES_URL` (scripts/with-servers.sh starts noida-db).
//! `CORO_BENCH_ES_DOCS` sets the documents per measurement (default 5,000).

use coro::core::protocol::{b64_encode, gzip, Version};
use coro::core::sink::{Batch, Outcome};
use coro::core::{Kind, Record};
use coro::sinks::elasticsearch::config::{BodyMapping, ElasticsearchConfig, Model};
use coro::sinks::elasticsearch::encode::Encoder;
use coro::sinks::elasticsearch::{ElasticsearchMetrics, ElasticsearchSink};
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const DOCS: usize = 5_000;
const CONCURRENCY: usize = 4;
const BULK_SIZES: [usize; 4] = [100, 250, 500, 1000];
const ROUNDS: usize = 5;

/// Node `i`'s registration, as `coro fleet` publishes it (gzip `zcontent`).
fn registration(i: usize, time_s: i64) -> Record {
    let identity = format!("node-{i:05}");
    let generated = coro_fleet::facts::generate(1, i);
    let agent = |name: &str| {
        json!({"license": "Apache-2.0", "author": "R.I.Pienaar <rip@devco.net>", "timeout": 2,
               "name": name, "version": "0.29.4", "url": "https://choria.io",
               "description": format!("{name} agent")})
    };
    let inventory = json!({
        "agents": [agent("rpcutil"), agent("discovery"), agent("choria_util"), agent("puppet")],
        "classes": generated.classes,
        "facts": generated.facts,
        "status": {"identity": identity, "uptime": 3600, "connected_server": "nats://broker:4222",
                   "last_message": time_s, "provisioning_mode": false,
                   "stats": {"total": 10, "valid": 10, "invalid": 0, "passed": 10, "filtered": 0,
                             "replies": 10, "ttlexpired": 0, "events": 0},
                   "certificate_expires": "0001-01-01T00:00:00Z", "token_expires": "0001-01-01T00:00:00Z"},
        "collectives": ["mcollective"],
        "build_info": {"version": "0.29.4", "sha": "bench"},
        "machines": []
    });
    let body = json!({
        "protocol": "choria:registration:inventorycontent:1",
        "zcontent": b64_encode(&gzip(inventory.to_string().as_bytes())),
    });
    Record {
        subject: "mcollective.broadcast.agent.registration".into(),
        version: Version::V1,
        kind: Kind::Registration,
        sender: identity,
        request_id: format!("{i:032x}"),
        agent: "registration".into(),
        collective: Some("mcollective".into()),
        time_ns: i128::from(time_s) * 1_000_000_000,
        body: bytes::Bytes::from(body.to_string()),
        raw: bytes::Bytes::new(),
    }
}

fn config(url: &str, index: &str, bulk: usize) -> ElasticsearchConfig {
    ElasticsearchConfig {
        urls: vec![url.to_string()],
        model: Model::Nodes,
        index: index.to_string(),
        username: None,
        password: None,
        api_key: None,
        ca_file: None,
        bulk_max_records: bulk,
        bulk_max_bytes: 64 * 1024 * 1024,
        gzip: false,
        concurrency: CONCURRENCY,
        request_timeout: Duration::from_secs(120),
        install_template: true,
        template_name: None,
        template_priority: 200,
        number_of_shards: None,
        number_of_replicas: Some(0),
        data_stream: false,
        body: BodyMapping::Object,
        stale_after: None,
        stale_check_interval: Duration::from_secs(60),
    }
}

async fn sink(url: &str, index: &str, bulk: usize) -> ElasticsearchSink {
    let metrics = ElasticsearchMetrics::unregistered()
        .unwrap()
        .for_sink("bench", index);
    ElasticsearchSink::connect(config(url, index, bulk), metrics)
        .await
        .unwrap()
}

/// Removes the index and its template, so every measurement starts the same.
async fn clean(http: &reqwest::Client, url: &str, index: &str) {
    let _ = http.delete(format!("{url}/{index}")).send().await;
    let _ = http
        .delete(format!("{url}/_index_template/coro-{index}"))
        .send()
        .await;
}

/// Coro's sink: calls of `bulk` records, `CONCURRENCY` at once. Documents per second.
async fn through_coro(url: &str, records: &[Record], bulk: usize, index: &str) -> f64 {
    let sink = sink(url, index, bulk).await;
    let batches: Vec<Batch> = records
        .chunks(bulk)
        .map(|c| Batch::new(c.to_vec()))
        .collect();
    let started = Instant::now();
    let mut calls = futures::stream::iter(batches)
        .map(|b| sink.clone().oneshot(b))
        .buffer_unordered(CONCURRENCY);
    let mut delivered = 0;
    while let Some(out) = calls.next().await {
        let out = out.unwrap();
        delivered += out.iter().filter(|o| **o == Outcome::Delivered).count();
        if let Some(other) = out.iter().find(|o| **o != Outcome::Delivered) {
            panic!("coro: {other:?}");
        }
    }
    let rate = delivered as f64 / started.elapsed().as_secs_f64();
    assert_eq!(delivered, records.len());
    rate
}

/// The raw client: the same NDJSON, `bulk` documents a request, `CONCURRENCY` at once.
async fn raw(
    http: &reqwest::Client,
    url: &str,
    records: &[Record],
    bulk: usize,
    index: &str,
) -> f64 {
    // The same index template as Coro's, so the server does the same work.
    drop(sink(url, index, bulk).await);
    let encoder = Encoder {
        model: Model::Nodes,
        index: coro::sinks::elasticsearch::config::IndexTemplate::parse(index),
        limits: coro::core::protocol::Limits::DEFAULT,
    };
    let bodies: Vec<bytes::Bytes> = records
        .chunks(bulk)
        .map(|c| {
            let mut body = Vec::new();
            for r in c {
                body.extend_from_slice(&encoder.item(r).unwrap().lines);
            }
            bytes::Bytes::from(body)
        })
        .collect();
    let endpoint = format!(
        "{url}/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.type,items.*.error.caused_by.reason"
    );
    let started = Instant::now();
    let mut requests = futures::stream::iter(bodies)
        .map(|body| {
            http.post(&endpoint)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(response) = requests.next().await {
        let response = response.unwrap();
        assert!(response.status().is_success());
        let doc: serde_json::Value = response.json().await.unwrap();
        assert_eq!(doc["errors"], false, "raw: {doc}");
    }
    records.len() as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let url = std::env::var("CORO_TEST_ES_URL").unwrap_or_else(|_| {
        panic!("CORO_TEST_ES_URL is not set: run with scripts/with-servers.sh (scripts/install-es.sh installs noida-db)")
    });
    let docs = std::env::var("CORO_BENCH_ES_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DOCS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let records: Vec<Record> = (0..docs).map(|i| registration(i, now)).collect();
        let bytes: usize = records.iter().map(|r| r.body.len()).sum();
        println!(
            "elasticsearch: {docs} registration records ({} bytes each on average, gzip), {CONCURRENCY} bulk requests in flight, {ROUNDS} rounds, median docs/s",
            bytes / docs.max(1)
        );
        println!(
            "{:>6}  {:>10}  {:>10}  {:>6}  {:>13}",
            "bulk", "raw", "coro", "ratio", "ratio range"
        );
        let mut best = (0, 0.0, 0.0, 0.0);
        for bulk in BULK_SIZES {
            let (mut raws, mut coros, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                let raw_index = format!("bench-raw-{bulk}-{round}");
                let coro_index = format!("bench-coro-{bulk}-{round}");
                clean(&http, &url, &raw_index).await;
                clean(&http, &url, &coro_index).await;
                // Alternate who goes first, so neither always meets a warmer server.
                let (r, c) = if round % 2 == 0 {
                    let r = raw(&http, &url, &records, bulk, &raw_index).await;
                    (r, through_coro(&url, &records, bulk, &coro_index).await)
                } else {
                    let c = through_coro(&url, &records, bulk, &coro_index).await;
                    (raw(&http, &url, &records, bulk, &raw_index).await, c)
                };
                raws.push(r);
                coros.push(c);
                ratios.push(c / r);
                clean(&http, &url, &raw_index).await;
                clean(&http, &url, &coro_index).await;
            }
            let low = ratios.iter().copied().fold(f64::MAX, f64::min);
            let high = ratios.iter().copied().fold(0.0, f64::max);
            let (r, c, ratio) = (median(raws), median(coros), median(ratios));
            println!(
                "{bulk:>6}  {r:>10.0}  {c:>10.0}  {ratio:>5.2}x  {low:>5.2}-{high:.2}x"
            );
            if c > best.2 {
                best = (bulk, r, c, ratio);
            }
        }
        println!(
            "best for coro: bulk {} at {:.0} docs/s (raw {:.0}; ratio {:.2}x)",
            best.0, best.2, best.1, best.3
        );
    });
}
