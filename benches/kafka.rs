//! Kafka sink throughput against a raw rdkafka producer, in one run.
//!
//! The same records (`rpcutil inventory` replies from 100 senders: 365-byte bodies,
//! 600-byte `choria_streams` values) go to a Kafka-API broker
//! several ways, each with the sink's producer settings (idempotent, `acks=all`, lz4,
//! `linger.ms=5`, `batch.size=1000000`) and the same number of records in flight
//! (`IN_FLIGHT`, 2,000):
//! * raw: an rdkafka `FutureProducer` sending payloads, keys and headers that were
//!   encoded before the clock started, awaiting delivery reports with a window of
//!   `IN_FLIGHT` records, refilled one by one (the goal's measure);
//! * sink: Coro's `KafkaSink` called with batches of `batch` records, `concurrency`
//!   calls in flight (`batch × concurrency = IN_FLIGHT`), for each pipeline setting in
//!   `GRANULARITIES`; it encodes (`choria_streams`), builds keys and headers, and maps
//!   every delivery report onto an outcome. A call's place comes back only when all its
//!   records are delivered, so smaller batches, more of them, refill the window sooner.
//!   The headline "sink" figure is `GRANULARITIES[MAIN]`, tied for the best measured
//!   rate (benches/RESULTS.md); the others are reported too;
//! * raw in batches: the raw producer driven as the headline sink is (batches of the
//!   same size and number in flight, each awaited whole): what the batch interface
//!   alone costs (a diagnostic);
//! * pipeline: records handed one by one to the adapter pipeline (batch, metrics,
//!   retry, timeout, concurrency layers) around the sink, as `coro run` does, with the
//!   headline setting as `[pipeline] batch.max_records` and `concurrency`.
//!
//! Each is measured `ROUNDS` times on a fresh topic, the order reversed every other
//! round; a ratio is the median of the per-round ratios. A tansu of its own is started
//! from `CORO_KAFKA_SERVER` and stopped at the end. `make bench` runs this bench without
//! the other test servers: the measurement is latency-bound, and a busy core (another
//! server, a build) shows up as a swing of ±30% in single rounds.

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
/// Records in flight on every side: the raw window, and `batch × concurrency` for the sink.
const IN_FLIGHT: usize = 2_000;
/// Coro's pipeline settings measured for the sink: (batch records, calls in flight).
const GRANULARITIES: [(usize, usize); 5] = [(500, 4), (250, 8), (100, 20), (50, 40), (20, 100)];
/// The headline sink setting, an index into `GRANULARITIES`: 50 × 40, tied with 100 × 20
/// for the best rate, a few percent above 500 × 4 (benches/RESULTS.md, kafka, third pass).
const MAIN: usize = 3;
const _: () = {
    let mut i = 0;
    while i < GRANULARITIES.len() {
        assert!(GRANULARITIES[i].0 * GRANULARITIES[i].1 == IN_FLIGHT);
        i += 1;
    }
};
const ROUNDS: usize = 15;

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
        panic!("CORO_KAFKA_SERVER is not set: run `make bench`, or CORO_KAFKA_SERVER=\"$(scripts/install-kafka.sh)\" cargo bench --bench kafka")
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
    let window = IN_FLIGHT;
    let mut pending = FuturesUnordered::new();
    for m in messages {
        while pending.len() >= window {
            check(pending.next().await);
        }
        pending.push(enqueue(&producer, topic, m));
    }
    while let Some(d) = pending.next().await {
        check(Some(d));
    }
    messages.len() as f64 / started.elapsed().as_secs_f64()
}

/// [`raw`] driven as the sink is: batches of `batch`, `concurrency` in flight, each
/// awaited whole.
async fn raw_batched(
    config: &KafkaConfig,
    topic: &str,
    messages: &[Encoded],
    (batch, concurrency): (usize, usize),
) -> f64 {
    let producer: FutureProducer = client_config(config, "bench-raw-batched")
        .create()
        .unwrap_or_else(|e| panic!("raw producer: {e}"));
    warm_raw(&producer, topic).await;
    let started = Instant::now();
    let mut calls = FuturesUnordered::new();
    for batch in messages.chunks(batch) {
        while calls.len() >= concurrency {
            calls.next().await;
        }
        let mut pending = Vec::with_capacity(batch.len());
        for m in batch {
            pending.push(enqueue(&producer, topic, m));
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

/// Hands the pre-encoded `m` to the raw producer.
fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    m: &Encoded,
) -> rdkafka::producer::DeliveryFuture {
    let record = FutureRecord::to(topic)
        .key(m.key.as_str())
        .payload(&m.payload[..])
        .headers(m.headers.clone());
    match producer.send_result(record) {
        Ok(delivery) => delivery,
        Err((e, _)) => panic!("raw enqueue: {e}"),
    }
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

async fn sink(
    config: &KafkaConfig,
    records: &[Record],
    (batch, concurrency): (usize, usize),
) -> f64 {
    let sink = KafkaSink::new(config.clone(), "bench-sink").unwrap_or_else(|e| panic!("{e}"));
    let warm = sink
        .clone()
        .oneshot(Batch::new(vec![records[0].clone()]))
        .await;
    assert_eq!(warm, Ok(vec![Outcome::Delivered]));
    // Batches are made before the clock starts, as the pipeline hands them over made.
    let batches: Vec<Batch> = records
        .chunks(batch)
        .map(|c| Batch::new(c.to_vec()))
        .collect();
    let started = Instant::now();
    let mut calls = FuturesUnordered::new();
    for batch in batches {
        while calls.len() >= concurrency {
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

async fn pipeline(
    config: &KafkaConfig,
    records: &[Record],
    (batch, concurrency): (usize, usize),
) -> f64 {
    let sink = KafkaSink::new(config.clone(), "bench-pipeline").unwrap_or_else(|e| panic!("{e}"));
    let settings = PipelineSettings {
        batch: pipeline::batch::BatchConfig {
            max_records: batch,
            max_bytes: 16 * 1024 * 1024,
            timeout: Duration::from_millis(20),
        },
        concurrency,
        ..PipelineSettings::default()
    };
    let registry = prometheus::Registry::new();
    let metrics = pipeline::metrics::PipelineMetrics::register(&registry)
        .unwrap_or_else(|e| panic!("{e}"))
        .for_sink("bench", "kafka");
    let service = pipeline::build(&settings, sink, metrics, pipeline::Order::Any);
    let warm = service.clone().oneshot(records[0].clone()).await;
    assert_eq!(warm, Ok(Outcome::Delivered));
    let started = Instant::now();
    // As many records in flight as the batches in flight hold, plus one batch filling.
    let window = batch * (concurrency + 1);
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
        for batch in records.chunks(GRANULARITIES[MAIN].0) {
            let mut scratch = encode::Scratch::default();
            for r in batch {
                let m = encode::message_in(r, &config, &topic, None, &mut scratch);
                std::hint::black_box(m.ok());
            }
        }
        started.elapsed()
    };
    let value_bytes: usize = encoded.iter().map(|m| m.payload.len()).sum();
    let (main_batch, main_concurrency) = GRANULARITIES[MAIN];
    println!(
        "kafka: {messages} records ({} B body, {} B choria_streams value on average), {IN_FLIGHT} in flight, sink batch {main_batch} x {main_concurrency} calls, lz4, linger 5 ms, idempotent, acks=all",
        body_bytes / messages,
        value_bytes / messages
    );
    println!(
        "  encoding value, key and headers: {:.2} µs per record",
        encoding.as_secs_f64() * 1e6 / messages as f64
    );
    let granularities = GRANULARITIES.len();
    let (mut raw_rates, mut pipe_rates, mut pipe_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut batched_rates, mut batched_ratio) = (Vec::new(), Vec::new());
    let mut sink_rates = vec![Vec::new(); granularities];
    let mut sink_ratio = vec![Vec::new(); granularities];
    for round in 0..ROUNDS {
        let topic = |what: &str| {
            let mut c = base.clone();
            c.topic = format!("bench.{what}.{round}.{}", std::process::id());
            c
        };
        let (r, b, s, p) = runtime.block_on(async {
            let (rc, bc, pc) = (topic("raw"), topic("batched"), topic("pipeline"));
            let sinks: Vec<KafkaConfig> = GRANULARITIES
                .iter()
                .map(|(b, c)| topic(&format!("sink{b}x{c}")))
                .collect();
            let main = GRANULARITIES[MAIN];
            let mut s = vec![0.0; granularities];
            if round % 2 == 0 {
                let r = raw(&rc, &rc.topic, &encoded).await;
                let b = raw_batched(&bc, &bc.topic, &encoded, main).await;
                for (i, g) in GRANULARITIES.iter().enumerate() {
                    s[i] = sink(&sinks[i], &records, *g).await;
                }
                let p = pipeline(&pc, &records, main).await;
                (r, b, s, p)
            } else {
                let p = pipeline(&pc, &records, main).await;
                for (i, g) in GRANULARITIES.iter().enumerate().rev() {
                    s[i] = sink(&sinks[i], &records, *g).await;
                }
                let b = raw_batched(&bc, &bc.topic, &encoded, main).await;
                let r = raw(&rc, &rc.topic, &encoded).await;
                (r, b, s, p)
            }
        });
        let others: Vec<String> = GRANULARITIES
            .iter()
            .zip(&s)
            .enumerate()
            .filter(|(i, _)| *i != MAIN)
            .map(|(_, ((bs, c), s))| format!("{bs}x{c} {s:.0}/s ({:.2}x)", s / r))
            .collect();
        let m = s[MAIN];
        println!(
            "  round {round}: raw {r:>7.0}/s  raw in batches {b:>7.0}/s  sink {m:>7.0}/s ({:.2}x; {:.2}x of batched)  pipeline {p:>7.0}/s ({:.2}x)  other sinks: {}",
            m / r,
            m / b,
            p / r,
            others.join(", ")
        );
        batched_rates.push(b);
        batched_ratio.push(m / b);
        raw_rates.push(r);
        for (i, s) in s.iter().enumerate() {
            sink_rates[i].push(*s);
            sink_ratio[i].push(s / r);
        }
        pipe_rates.push(p);
        pipe_ratio.push(p / r);
    }
    println!(
        "kafka: raw {:.0}/s, sink {:.0}/s ({:.2}x, batch {main_batch} x {main_concurrency} calls), pipeline {:.0}/s ({:.2}x) (medians; goal >= 0.85x)",
        median(raw_rates),
        median(sink_rates[MAIN].clone()),
        median(sink_ratio[MAIN].clone()),
        median(pipe_rates),
        median(pipe_ratio)
    );
    for (i, (b, c)) in GRANULARITIES.iter().enumerate() {
        println!(
            "kafka: sink, batch {b:>3} x {c:>2} calls: {:.0}/s ({:.2}x of raw){}",
            median(sink_rates[i].clone()),
            median(sink_ratio[i].clone()),
            if i == MAIN {
                " (the headline setting)"
            } else {
                ""
            }
        );
    }
    println!(
        "kafka: raw in batches of {main_batch} x {main_concurrency} {:.0}/s, sink {:.2}x of it (medians; the batch interface's cost, not the goal)",
        median(batched_rates),
        median(batched_ratio)
    );
}
