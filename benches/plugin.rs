//! A sink plugin against the same sink compiled in, on the blackhole path
//! (`make bench`, `benches/plugin.rs`).
//!
//! The plugins are blackholes too: the C example (`examples/plugins/c/tsv.c` without a
//! `path`) and the Rust SDK's test sink (`plugin-sdk/examples/testsink.rs`, default
//! config), both built in the release profile. Measured, alternating rounds, medians:
//! * the blackhole path: 1 KiB v1 reply transports decoded and run through the whole
//!   adapter pipeline (decode, filter, transform, batches of 256, metrics, retry,
//!   timeout, 4 calls in flight) into the sink, as `coro run` does after NATS;
//! * the sink alone: pre-built batches of 256 records straight into the sink service,
//!   4 calls in flight, which shows the plugin's own cost per batch (a thread hop
//!   there and back, the records laid out for C).
//!
//! `CORO_BENCH_RECORDS` sets the records per round (default 200,000).

#[path = "../examples/plugins/testing.rs"]
mod testing;

use coro::core::gojson;
use coro::core::pipeline::decode::DecodeLayer;
use coro::core::pipeline::metrics::PipelineMetrics;
use coro::core::pipeline::{self, Incoming, PipelineSettings};
use coro::core::protocol::{self, v1, Message};
use coro::core::sink::{Batch, Outcome};
use coro::core::Record;
use coro::sinks::blackhole::BlackholeSink;
use coro::sinks::plugin::{PluginConfig, PluginSink};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

const BATCH: usize = 256;
const IN_FLIGHT: usize = 4096;
const ROUNDS: usize = 7;

type Sink = BoxCloneSyncService<Batch, Vec<Outcome>, coro::core::sink::SinkError>;

fn reply(i: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"action":"inventory","statuscode":0,"statusmsg":"OK","data":{{"agents":["rpcutil","choria_util","discovery","package","service","puppet","filemgr"],"collectives":["mcollective"],"version":"0.28.0","n":{i}}}}}"#
    );
    let req = v1::Request::new(
        "rpcutil",
        "client.example.net",
        "choria=rip.mcollective",
        60,
        &format!("{i:032x}"),
        "mcollective",
        1_700_000_000,
    );
    let sender = format!("node{}.example.net", i % 100);
    let reply = v1::Reply::for_request(&req, &sender, 1_700_000_001, &body);
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let headers = v1::Headers {
        sender,
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Records per second through decode and the whole pipeline into `sink`.
async fn through_pipeline(sink: &Sink, payloads: &[bytes::Bytes], n: usize) -> f64 {
    let registry = prometheus::Registry::new();
    let metrics = PipelineMetrics::register(&registry).expect("metrics");
    let settings = PipelineSettings {
        batch: pipeline::batch::BatchConfig {
            max_records: BATCH,
            timeout: Duration::from_millis(5),
            ..Default::default()
        },
        concurrency: 4,
        ..Default::default()
    };
    let svc = ServiceBuilder::new()
        .layer(DecodeLayer::new(settings.limits()))
        .service(pipeline::build(
            &settings,
            sink.clone(),
            metrics.for_sink("bench", "sink"),
            pipeline::Order::Any,
        ));
    let started = Instant::now();
    let delivered = futures::stream::iter((0..n).map(|i| {
        svc.clone().oneshot(Incoming {
            subject: "bench.reply".into(),
            payload: payloads[i % payloads.len()].clone(),
        })
    }))
    .buffer_unordered(IN_FLIGHT)
    .filter(|o| futures::future::ready(matches!(o, Ok(Outcome::Delivered))))
    .count()
    .await;
    let elapsed = started.elapsed();
    assert_eq!(delivered, n, "every record delivered");
    n as f64 / elapsed.as_secs_f64()
}

/// Records per second of pre-built batches straight into `sink`.
async fn sink_alone(sink: &Sink, records: &[Record], n: usize) -> f64 {
    let batches: Vec<Batch> = (0..n.div_ceil(BATCH))
        .map(|b| {
            Batch::new(
                (0..BATCH)
                    .map(|i| records[(b * BATCH + i) % records.len()].clone())
                    .collect(),
            )
        })
        .collect();
    let total: usize = batches.iter().map(Batch::len).sum();
    let started = Instant::now();
    let delivered: usize =
        futures::stream::iter(batches.into_iter().map(|b| sink.clone().oneshot(b)))
            .buffer_unordered(4)
            .map(|o| {
                o.map_or(0, |v| {
                    v.iter().filter(|o| **o == Outcome::Delivered).count()
                })
            })
            .fold(0, |a, b| futures::future::ready(a + b))
            .await;
    let elapsed = started.elapsed();
    assert_eq!(delivered, total, "every record delivered");
    total as f64 / elapsed.as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("CORO_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let c_plugin = testing::c_plugin("tsv", &[]);
    let rust_plugin = testing::rust_plugins().testsink.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let payloads: Vec<bytes::Bytes> = (0..1000).map(|i| bytes::Bytes::from(reply(i))).collect();
    let records: Vec<Record> = payloads
        .iter()
        .map(|p| {
            let Ok(Message::Rpc(m)) = protocol::decode(p) else {
                panic!("fixture does not decode")
            };
            Record::from_rpc("bench.reply", *m, p.clone())
        })
        .collect();

    runtime.block_on(async {
        let open = |path: std::path::PathBuf| async move {
            Sink::new(
                PluginSink::open(PluginConfig::new(path, serde_json::json!({})))
                    .await
                    .expect("plugin opens"),
            )
        };
        let sinks: Vec<(&str, Sink)> = vec![
            ("compiled-in blackhole", Sink::new(BlackholeSink::new())),
            ("C plugin blackhole (tsv.c)", open(c_plugin).await),
            ("Rust SDK plugin blackhole (testsink)", open(rust_plugin).await),
        ];
        // Warm up, then alternate the sinks within each round so noise hits all alike.
        for (_, sink) in &sinks {
            through_pipeline(sink, &payloads, n / 10).await;
        }
        let mut pipeline_rates = vec![Vec::new(); sinks.len()];
        let mut alone_rates = vec![Vec::new(); sinks.len()];
        for round in 0..ROUNDS {
            // Each round starts with another sink, so no sink always runs first.
            for i in (0..sinks.len()).map(|k| (k + round) % sinks.len()) {
                let sink = &sinks[i].1;
                pipeline_rates[i].push(through_pipeline(sink, &payloads, n).await);
                alone_rates[i].push(sink_alone(sink, &records, n).await);
            }
        }
        let pipeline: Vec<f64> = pipeline_rates.into_iter().map(median).collect();
        let alone: Vec<f64> = alone_rates.into_iter().map(median).collect();

        println!(
            "{n} records per round, {ROUNDS} rounds, medians; batches of {BATCH}, 4 sink calls in flight\n"
        );
        println!("| sink | blackhole path: records/s | ratio | sink alone: records/s | ns/batch |");
        println!("|---|---:|---:|---:|---:|");
        for (i, (name, _)) in sinks.iter().enumerate() {
            println!(
                "| {name} | {:.0} | {:.2}x | {:.0} | {:.0} |",
                pipeline[i],
                pipeline[i] / pipeline[0],
                alone[i],
                1e9 * BATCH as f64 / alone[i]
            );
        }
        let worst = pipeline[1..]
            .iter()
            .map(|r| r / pipeline[0])
            .fold(f64::INFINITY, f64::min);
        println!(
            "\nplugin vs compiled-in on the blackhole path: {worst:.2}x (goal >= 0.90x: {})",
            if worst >= 0.9 { "met" } else { "not met" }
        );
    });
}
