//! Kinesis and Pub/Sub sink throughput against the same SDK used directly, in one run.
//!
//! The same records (replies from 100 senders, ~400-byte `choria_streams` values) go to
//! the local servers (`scripts/with-servers.sh`: moto_server and the Pub/Sub emulator)
//! two ways, with the same batch size and the same number of calls in flight:
//! * direct: the SDK (`aws-sdk-kinesis` `PutRecords` / `google-cloud-pubsub`
//!   `Publisher`) with payloads and keys encoded before the clock started;
//! * sink: Coro's `KinesisSink` (`ordered = false`, so calls may overlap as the direct
//!   side's do) / `PubSubSink`, called with batches, encoding every record and mapping
//!   every result onto an outcome.
//!
//! For Pub/Sub, also records one by one through the adapter pipeline around the sink,
//! as `coro run` does: with `ordered = false` (batches overlap) and with `ordered`, the
//! default (one batch at a time, retries first): what keeping order costs.
//!
//! Each is measured `ROUNDS` times on a fresh stream / topic, alternating who goes
//! first; the ratio is the median of the per-round ratios. Both sides are bound by the
//! local servers (moto is Python, the emulator a JVM), so the figures are not those of
//! the AWS or Google services; the ratio is what the sink's own work costs.

use coro::core::pipeline::{self, PipelineSettings};
use coro::core::protocol::Version;
use coro::core::sink::{Batch, Outcome};
use coro::core::{Kind, Record};
use coro::sinks::encoding::{self, Encoding};
use coro::sinks::kafka::encode::Template;
use coro::sinks::kinesis::aws_sdk_kinesis::primitives::Blob;
use coro::sinks::kinesis::aws_sdk_kinesis::types::PutRecordsRequestEntry;
use coro::sinks::kinesis::aws_sdk_kinesis::Client;
use coro::sinks::kinesis::config::KinesisConfig;
use coro::sinks::kinesis::KinesisSink;
use coro::sinks::pubsub::config::PubSubConfig;
use coro::sinks::pubsub::service::{message, publisher};
use coro::sinks::pubsub::PubSubSink;
use futures::stream::{self, StreamExt};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const ROUNDS: usize = 3;
const CONCURRENCY: usize = 4;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run with scripts/with-servers.sh cargo bench --bench kinesis_pubsub")
    })
}

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            subject: "mcollective.reply.x".into(),
            version: Version::V1,
            kind: Kind::Reply,
            sender: format!("node{:03}.example.net", i % 100),
            request_id: format!("{i:032x}"),
            agent: "rpcutil".into(),
            collective: None,
            time_ns: 1_700_000_001_000_000_000 + i as i128,
            body: bytes::Bytes::from(format!(
                r#"{{"statuscode":0,"statusmsg":"OK","data":{{"seq":{i},"facts":"{}"}}}}"#,
                "x".repeat(200)
            )),
            raw: bytes::Bytes::new(),
        })
        .collect()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{nanos:x}")
}

async fn stream(client: &Client) -> String {
    let name = unique("bench");
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(4)
        .send()
        .await
        .unwrap();
    name
}

fn kinesis_config(stream: &str, endpoint: &str) -> KinesisConfig {
    KinesisConfig {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        ordered: false,
        ..KinesisConfig::new(stream)
    }
}

async fn kinesis_direct(client: &Client, stream: &str, records: &[Record], batch: usize) -> f64 {
    let template = Template::parse("{sender}").unwrap();
    let entries: Vec<Vec<PutRecordsRequestEntry>> = records
        .chunks(batch)
        .map(|chunk| {
            chunk
                .iter()
                .map(|r| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(
                            encoding::encode(r, Encoding::ChoriaStreams).unwrap(),
                        ))
                        .partition_key(template.render(r))
                        .build()
                        .unwrap()
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let ok: usize = stream::iter(entries)
        .map(|e| async move {
            let out = client
                .put_records()
                .stream_name(stream)
                .set_records(Some(e))
                .send()
                .await
                .unwrap();
            out.records()
                .iter()
                .filter(|r| r.error_code().is_none())
                .count()
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |a, n| async move { a + n })
        .await;
    assert_eq!(ok, records.len());
    records.len() as f64 / started.elapsed().as_secs_f64()
}

async fn through_sink<S>(sink: S, records: &[Record], batch: usize) -> f64
where
    S: tower::Service<Batch, Response = Vec<Outcome>, Error = coro::core::sink::SinkError> + Clone,
{
    let batches: Vec<Batch> = records
        .chunks(batch)
        .map(|c| Batch::new(c.to_vec()))
        .collect();
    let started = Instant::now();
    let ok: usize = stream::iter(batches)
        .map(|b| {
            let sink = sink.clone();
            async move {
                let out = sink.oneshot(b).await.unwrap();
                out.iter().filter(|o| **o == Outcome::Delivered).count()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |a, n| async move { a + n })
        .await;
    assert_eq!(ok, records.len());
    records.len() as f64 / started.elapsed().as_secs_f64()
}

/// Records handed one by one to the adapter pipeline around `sink` (batches of `batch`,
/// `CONCURRENCY` calls in flight unless `order` keeps one), as `coro run` does.
async fn through_pipeline<S>(
    sink: S,
    records: &[Record],
    batch: usize,
    order: pipeline::Order,
) -> f64
where
    S: tower::Service<Batch, Response = Vec<Outcome>, Error = coro::core::sink::SinkError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let settings = PipelineSettings {
        batch: pipeline::batch::BatchConfig {
            max_records: batch,
            max_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_millis(20),
        },
        concurrency: CONCURRENCY,
        ..PipelineSettings::default()
    };
    let metrics = pipeline::metrics::PipelineMetrics::register(&prometheus::Registry::new())
        .unwrap()
        .for_sink("bench", "pubsub");
    let service = pipeline::build(&settings, sink, metrics, order);
    let started = Instant::now();
    let ok = stream::iter(records.iter().cloned())
        .map(|r| service.clone().oneshot(r))
        .buffer_unordered(batch * (CONCURRENCY + 1))
        .filter(|o| std::future::ready(*o == Ok(Outcome::Delivered)))
        .count()
        .await;
    assert_eq!(ok, records.len());
    records.len() as f64 / started.elapsed().as_secs_f64()
}

async fn topic(host: &str) -> String {
    let name = unique("bench");
    let r = reqwest::Client::new()
        .put(format!(
            "http://{host}/v1/projects/coro-bench/topics/{name}"
        ))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    name
}

async fn pubsub_direct(config: &PubSubConfig, records: &[Record], batch: usize) -> f64 {
    let publisher = publisher(config).await.unwrap();
    let template = Template::parse("{sender}").unwrap();
    let messages: Vec<Vec<_>> = records
        .chunks(batch)
        .map(|c| {
            c.iter()
                .map(|r| message(r, Encoding::ChoriaStreams, Some(&template)).unwrap())
                .collect()
        })
        .collect();
    let started = Instant::now();
    let ok: usize = stream::iter(messages)
        .map(|chunk| {
            let futures: Vec<_> = chunk.into_iter().map(|m| publisher.publish(m)).collect();
            async move {
                let mut n = 0;
                for f in futures {
                    n += usize::from(f.await.is_ok());
                }
                n
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |a, n| async move { a + n })
        .await;
    assert_eq!(ok, records.len());
    records.len() as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let endpoint = env("CORO_TEST_KINESIS_ENDPOINT");
        let host = env("CORO_TEST_PUBSUB_EMULATOR_HOST");
        std::env::set_var("PUBSUB_EMULATOR_HOST", &host);
        let n = count("CORO_BENCH_KINESIS_RECORDS", 20_000);
        let batch = 500;
        let data = records(n);
        let client = coro::sinks::kinesis::service::client(&kinesis_config("x", &endpoint))
            .await
            .unwrap();
        let (mut direct, mut sink, mut ratios) = (vec![], vec![], vec![]);
        for round in 0..ROUNDS {
            let (s1, s2) = (stream(&client).await, stream(&client).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let kinesis = KinesisSink::with_client(kinesis_config(&s2, &endpoint), client.clone(), None).unwrap();
            let (d, s) = if round % 2 == 0 {
                let d = kinesis_direct(&client, &s1, &data, batch).await;
                (d, through_sink(kinesis, &data, batch).await)
            } else {
                let s = through_sink(kinesis, &data, batch).await;
                (kinesis_direct(&client, &s1, &data, batch).await, s)
            };
            println!("kinesis round {round}: direct {d:.0}/s, sink {s:.0}/s, {:.2}x", s / d);
            direct.push(d);
            sink.push(s);
            ratios.push(s / d);
        }
        println!(
            "kinesis: {n} records × {ROUNDS}, batch {batch}, {CONCURRENCY} in flight: direct {:.0}/s, sink {:.0}/s, median ratio {:.2}x",
            median(direct),
            median(sink),
            median(ratios)
        );

        let n = count("CORO_BENCH_PUBSUB_RECORDS", 20_000);
        let batch = count("CORO_BENCH_PUBSUB_BATCH", 100);
        let data = records(n);
        let (mut direct, mut sink, mut ratios) = (vec![], vec![], vec![]);
        let (mut overlapping, mut kept) = (vec![], vec![]);
        for round in 0..ROUNDS {
            let c1 = PubSubConfig::new("coro-bench", topic(&host).await);
            let c2 = PubSubConfig::new("coro-bench", topic(&host).await);
            let (c3, c4) = (
                PubSubConfig::new("coro-bench", topic(&host).await),
                PubSubConfig::new("coro-bench", topic(&host).await),
            );
            let any = PubSubSink::connect(c3, None).await.unwrap();
            let a = through_pipeline(any, &data, batch, pipeline::Order::Any).await;
            let ordered = PubSubSink::connect(c4, None).await.unwrap();
            let k = through_pipeline(ordered, &data, batch, pipeline::Order::Kept).await;
            println!(
                "pubsub round {round}: pipeline, ordered = false {a:.0}/s; ordered {k:.0}/s ({:.2}x of it)",
                k / a
            );
            overlapping.push(a);
            kept.push(k);
            let pubsub = PubSubSink::connect(c2, None).await.unwrap();
            let (d, s) = if round % 2 == 0 {
                let d = pubsub_direct(&c1, &data, batch).await;
                (d, through_sink(pubsub, &data, batch).await)
            } else {
                let s = through_sink(pubsub, &data, batch).await;
                (pubsub_direct(&c1, &data, batch).await, s)
            };
            println!("pubsub round {round}: direct {d:.0}/s, sink {s:.0}/s, {:.2}x", s / d);
            direct.push(d);
            sink.push(s);
            ratios.push(s / d);
        }
        println!(
            "pubsub: {n} records × {ROUNDS}, batch {batch}, {CONCURRENCY} in flight: direct {:.0}/s, sink {:.0}/s, median ratio {:.2}x",
            median(direct),
            median(sink),
            median(ratios)
        );
        println!(
            "pubsub pipeline, batch {batch}: ordered = false ({CONCURRENCY} in flight) {:.0}/s, ordered (one batch at a time) {:.0}/s (medians)",
            median(overlapping),
            median(kept)
        );
    });
}
