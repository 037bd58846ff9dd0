//! Kafka sink throughput against a raw rdkafka producer, in one run.
//!
//! The same records (`rpcutil inventory` replies from 100 senders: 365-byte bodies,
//! 600-byte `choria_streams` values) go to a Kafka-API broker
//! four ways, each with the sink's producer settings (idempotent, `acks=all`, lz4,
//! `linger.ms=5`, `batch.size=1000000`) and the same number of records in flight:
//! * raw: an rdkafka `FutureProducer` sending payloads, keys and headers that were
//!   encoded before the clock started, awaiting delivery reports with a window of
//!   `BATCH × CONCURRENCY` records (the goal's measure);
//! * raw in batches: the same, but sent in batches of `BATCH` with `CONCURRENCY`
//!   batches in flight, a batch's place refilled once all its records are delivered,
//!   as the sink is driven: what the batch interface alone costs (a diagnostic);
//! * sink: Coro's `KafkaSink` called with batches of `BATCH` records, `CONCURRENCY`
//!   calls in flight; it encodes (`choria_streams`), builds keys and headers, and maps
//!   every delivery report onto an outcome;
//! * pipeline: records handed one by one to the adapter pipeline (batch, metrics,
//!   retry, timeout, concurrency layers) around the sink, as `coro run` does.
//!
//! Each is measured `ROUNDS` times on a fresh topic, alternating who goes first; the
//! ratio is the median of the per-round ratios. A tansu of its own is started from
//! `CORO_KAFKA_SERVER` (scripts/with-servers.sh sets it) and stopped at the end.

use coro::core::pipeline::{self, PipelineSettings};
use coro::core::protocol::{self, v1, Message};
use coro::core::sink::{Batch, Outcome};
use coro::core::{gojson, Record};
use coro::sinks::kafka::config::KafkaConfig;
use coro::sinks::kafka::encode;
use coro::sinks::kafka::rdkafka;
use coro::sinks::kafka::service::client_config;
use coro::sinks::kafka::KafkaSink;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// The coro binary's allocator, so the sink allocates as it does in `coro run`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records per measurement; `CORO_BENCH_MESSAGES` overrides.
const MESSAGES: usize = 50_000;
const BATCH: usize = 500;
const CONCURRENCY: usize = 4;
const ROUNDS: usize = 9;

fn record(i: usize) -> Record {
    let sender = format!("node{}.example.net", i % 100);
    let body = format!(
        r#"{{"action":"inventory","statuscode":0,"statusmsg":"OK","data":{{"agents":["rpcutil","choria_util","discovery","package","service","puppet","filemgr"],"collectives":["mcollective"],"version":"0.28.0","facts":{{"os":"Debian","release":"12","kernel":"6.1.0-{n}-amd64","memory":25769803776,"processors":2}},"classes":["role::web","profile::base","profile::nginx"],"n":{i}}}}}"#,
        n = i % 40
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
    let reply = v1::Reply::for_request(&req, &sender, 1_700_000_001, &body);
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let headers = v1::Headers {
        sender: sender.clone(),
        ..Default::default()
    };
    let payload = gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers));
    let Ok(Message::Rpc(m)) = protocol::decode(&payload) else {
        panic!("the benchmark's own reply does not decode")
    };
    Record::from_rpc("mcollective.reply.bench", *m, payload.into())
}

struct Tansu(Child);

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_tansu() -> (Tansu, String) {
    let bin = std::env::var("CORO_KAFKA_SERVER").unwrap_or_else(|_| {
        panic!("CORO_KAFKA_SERVER is not set: run with scripts/with-servers.sh (scripts/install-kafka.sh installs tansu)")
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0);
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting tansu: {e}"));
    let tansu = Tansu(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu not listening after 10s");
        std::thread::sleep(Duration::from_millis(20));
    }
    (tansu, format!("127.0.0.1:{port}"))
}

/// A pre-encoded message: what the raw producer sends.
struct Encoded {
    key: String,
    payload: Vec<u8>,
    headers: rdkafka::message::OwnedHeaders,
}

async fn raw(config: &KafkaConfig, topic: &str, messages: &[Encoded]) -> f64 {
    let producer: FutureProducer = client_config(config, "bench-raw")
        .create()
        .unwrap_or_else(|e| panic!("raw producer: {e}"));
    // Connected, with a producer id, before the clock starts (as the sink is).
    warm_raw(&producer, topic).await;
    let started = Instant::now();
    let window = BATCH * CONCURRENCY;
    let mut pending = FuturesUnordered::new();
    for m in messages {
        while pending.len() >= window {
            check(pending.next().await);
        }
        let record = FutureRecord::to(topic)
            .key(m.key.as_str())
            .payload(&m.payload[..])
            .headers(m.headers.clone());
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err((e, _)) => panic!("raw enqueue: {e}"),
        }
    }
    while let Some(d) = pending.next().await {
        check(Some(d));
    }
    messages.len() as f64 / started.elapsed().as_secs_f64()
}

/// [`raw`] driven as the sink is: batches of `BATCH`, `CONCURRENCY` in flight, each
/// awaited whole.
async fn raw_batched(config: &KafkaConfig, topic: &str, messages: &[Encoded]) -> f64 {
    let producer: FutureProducer = client_config(config, "bench-raw-batched")
        .create()
        .unwrap_or_else(|e| panic!("raw producer: {e}"));
    warm_raw(&producer, topic).await;
    let started = Instant::now();
    let mut calls = FuturesUnordered::new();
    for batch in messages.chunks(BATCH) {
        while calls.len() >= CONCURRENCY {
            calls.next().await;
        }
        let mut pending = Vec::with_capacity(batch.len());
        for m in batch {
            let record = FutureRecord::to(topic)
                .key(m.key.as_str())
                .payload(&m.payload[..])
                .headers(m.headers.clone());
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => panic!("raw enqueue: {e}"),
            }
        }
        calls.push(async move {
            for delivery in pending {
                check(Some(delivery.await));
            }
        });
    }
    while calls.next().await.is_some() {}
    messages.len() as f64 / started.elapsed().as_secs_f64()
}

type Delivery = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

fn check(d: Option<Delivery>) {
    match d {
        Some(Ok(Ok(_))) => {}
        other => panic!("raw delivery failed: {other:?}"),
    }
}

async fn warm_raw(producer: &FutureProducer, topic: &str) {
    let record = FutureRecord::<str, str>::to(topic)
        .key("warm")
        .payload("warm");
    match producer.send_result(record) {
        Ok(d) => check(Some(d.await)),
        Err((e, _)) => panic!("raw warm-up: {e}"),
    }
}

async fn sink(config: &KafkaConfig, records: &[Record]) -> f64 {
    let sink = KafkaSink::new(config.clone(), "bench-sink").unwrap_or_else(|e| panic!("{e}"));
    let warm = sink
        .clone()
        .oneshot(Batch::new(vec![records[0].clone()]))
        .await;
    assert_eq!(warm, Ok(vec![Outcome::Delivered]));
    // Batches are made before the clock starts, as the pipeline hands them over made.
    let batches: Vec<Batch> = records
        .chunks(BATCH)
        .map(|c| Batch::new(c.to_vec()))
        .collect();
    let started = Instant::now();
    let mut calls = FuturesUnordered::new();
    for batch in batches {
        while calls.len() >= CONCURRENCY {
            delivered(calls.next().await);
        }
        calls.push(sink.clone().oneshot(batch));
    }
    while let Some(r) = calls.next().await {
        delivered(Some(r));
    }
    records.len() as f64 / started.elapsed().as_secs_f64()
}

fn delivered(r: Option<Result<Vec<Outcome>, coro::core::sink::SinkError>>) {
    match r {
        Some(Ok(outcomes)) if outcomes.iter().all(|o| *o == Outcome::Delivered) => {}
        other => panic!("sink: {other:?}"),
    }
}

async fn pipeline(config: &KafkaConfig, records: &[Record]) -> f64 {
    let sink = KafkaSink::new(config.clone(), "bench-pipeline").unwrap_or_else(|e| panic!("{e}"));
    let settings = PipelineSettings {
        batch: pipeline::batch::BatchConfig {
            max_records: BATCH,
            max_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_millis(20),
        },
        concurrency: CONCURRENCY,
        ..PipelineSettings::default()
    };
    let registry = prometheus::Registry::new();
    let metrics = pipeline::metrics::PipelineMetrics::register(&registry)
        .unwrap_or_else(|e| panic!("{e}"))
        .for_sink("bench", "kafka");
    let service = pipeline::build(&settings, sink, metrics);
    let warm = service.clone().oneshot(records[0].clone()).await;
    assert_eq!(warm, Ok(Outcome::Delivered));
    let started = Instant::now();
    // As many records in flight as the batches in flight hold, plus one batch filling.
    let window = BATCH * (CONCURRENCY + 1);
    let mut pending = FuturesUnordered::new();
    for r in records {
        while pending.len() >= window {
            outcome(pending.next().await);
        }
        pending.push(service.clone().oneshot(r.clone()));
    }
    while let Some(o) = pending.next().await {
        outcome(Some(o));
    }
    records.len() as f64 / started.elapsed().as_secs_f64()
}

fn outcome(o: Option<Result<Outcome, std::convert::Infallible>>) {
    match o {
        Some(Ok(Outcome::Delivered)) => {}
        other => panic!("pipeline: {other:?}"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let messages = std::env::var("CORO_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    let (_tansu, brokers) = start_tansu();
    let records: Vec<Record> = (0..messages).map(record).collect();
    let body_bytes: usize = records.iter().map(|r| r.body.len()).sum();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let base = KafkaConfig::new(vec![brokers], "unused");
    let encoded = |config: &KafkaConfig| -> Vec<Encoded> {
        let topic = config.topic_template().unwrap_or_else(|e| panic!("{e}"));
        records
            .iter()
            .map(|r| {
                let m = encode::message(r, config, &topic, None).unwrap_or_else(|e| panic!("{e}"));
                Encoded {
                    key: m.key.map(|k| k.into_owned()).unwrap_or_default(),
                    payload: m.payload,
                    headers: m.headers.unwrap_or_default(),
                }
            })
            .collect()
    };
    let encoded = encoded(&KafkaConfig {
        topic: "x".into(),
        ..base.clone()
    });
    // What the sink spends per record before librdkafka (value, key, headers), in a
    // steady state: each message is dropped at once, as the sink does after enqueueing,
    // and the value buffer is reused, as the sink does within a batch.
    let encoding = {
        let config = KafkaConfig {
            topic: "x".into(),
            ..base.clone()
        };
        let topic = config.topic_template().unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        for batch in records.chunks(BATCH) {
            let mut scratch = encode::Scratch::default();
            for r in batch {
                let m = encode::message_in(r, &config, &topic, None, &mut scratch);
                std::hint::black_box(m.ok());
            }
        }
        started.elapsed()
    };
    let value_bytes: usize = encoded.iter().map(|m| m.payload.len()).sum();
    println!(
        "kafka: {messages} records ({} B body, {} B choria_streams value on average), batch {BATCH}, {CONCURRENCY} in flight, lz4, linger 5 ms, idempotent, acks=all",
        body_bytes / messages,
        value_bytes / messages
    );
    println!(
        "  encoding value, key and headers: {:.2} µs per record",
        encoding.as_secs_f64() * 1e6 / messages as f64
    );
    let (mut raw_rates, mut sink_rates, mut pipe_rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sink_ratio, mut pipe_ratio) = (Vec::new(), Vec::new());
    let (mut batched_rates, mut batched_ratio) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let topic = |what: &str| {
            let mut c = base.clone();
            c.topic = format!("bench.{what}.{round}.{}", std::process::id());
            c
        };
        let (r, b, s, p) = runtime.block_on(async {
            let (rc, bc) = (topic("raw"), topic("batched"));
            let (sc, pc) = (topic("sink"), topic("pipeline"));
            if round % 2 == 0 {
                let r = raw(&rc, &rc.topic, &encoded).await;
                let b = raw_batched(&bc, &bc.topic, &encoded).await;
                let s = sink(&sc, &records).await;
                let p = pipeline(&pc, &records).await;
                (r, b, s, p)
            } else {
                let p = pipeline(&pc, &records).await;
                let s = sink(&sc, &records).await;
                let b = raw_batched(&bc, &bc.topic, &encoded).await;
                let r = raw(&rc, &rc.topic, &encoded).await;
                (r, b, s, p)
            }
        });
        println!(
            "  round {round}: raw {r:>7.0}/s  raw in batches {b:>7.0}/s  sink {s:>7.0}/s ({:.2}x; {:.2}x of batched)  pipeline {p:>7.0}/s ({:.2}x)",
            s / r,
            s / b,
            p / r
        );
        batched_rates.push(b);
        batched_ratio.push(s / b);
        raw_rates.push(r);
        sink_rates.push(s);
        pipe_rates.push(p);
        sink_ratio.push(s / r);
        pipe_ratio.push(p / r);
    }
    println!(
        "kafka: raw {:.0}/s, sink {:.0}/s ({:.2}x), pipeline {:.0}/s ({:.2}x) (medians; goal >= 0.85x)",
        median(raw_rates),
        median(sink_rates),
        median(sink_ratio),
        median(pipe_rates),
        median(pipe_ratio)
    );
    println!(
        "kafka: raw in batches {:.0}/s, sink {:.2}x of it (medians; the batch interface's cost, not the goal)",
        median(batched_rates),
        median(batched_ratio)
    );
}
