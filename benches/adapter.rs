//! Adapter throughput against the raw client, in one run (`make bench-adapter`).
//!
//! 1 KiB v1 reply transports are published on core NATS as fast as a raw async-nats
//! publisher can. Measured, each over the same message count:
//! * raw: an async-nats subscriber counting what arrives;
//! * coro → blackhole: `coro run` with core NATS ingest and a blackhole sink;
//! * raw JetStream: async-nats publishing the same records to a stream, awaiting
//!   PubAcks with the sink's in-flight window;
//! * coro → JetStream: `coro run` with core NATS ingest and the JetStream sink;
//! * the raw JetStream records read back by an async-nats pull consumer acking each,
//!   then by coro's JetStream ingest into a blackhole (nothing else running).
//!
//! Needs `CORO_TEST_NATS_URL` (scripts/with-servers.sh) and the release `coro` binary
//! (`CORO_BIN`, default target/release/coro).

use coro::core::gojson;
use coro::core::protocol::v1;
use futures::StreamExt;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Messages per measurement; `CORO_BENCH_MESSAGES` overrides.
const MESSAGES: usize = 100_000;
const IN_FLIGHT: usize = 256;
const BATCH: usize = 256;

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
    let reply = v1::Reply::for_request(
        &req,
        &format!("node{}.example.net", i % 100),
        1_700_000_001,
        &body,
    );
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let headers = v1::Headers {
        sender: format!("node{}.example.net", i % 100),
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn delivered(port: u16) -> f64 {
    http_get(port, "/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("coro_sink_records_total{") && l.contains(r#"outcome="delivered""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rss_peak_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Coro {
    child: Child,
    http: u16,
}

impl Drop for Coro {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Core NATS ingest on `subject`; `CORO_BENCH_INGEST` adds settings for experiments,
/// e.g. `CORO_BENCH_INGEST='workers = 1'`.
fn nats_ingest(url: &str, subject: &str) -> String {
    let extra = std::env::var("CORO_BENCH_INGEST").unwrap_or_default();
    format!("type = \"nats\"\nservers = [\"{url}\"]\nsubject = \"{subject}\"\n{extra}")
}

fn start_coro(ingest: &str, sink: &str, dir: &std::path::Path) -> Coro {
    let http = free_port();
    let config = dir.join(format!("{http}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[http]
listen = "127.0.0.1:{http}"

[[adapter]]
name = "bench"
[adapter.ingest]
{ingest}

[adapter.pipeline]
batch = {{ max_records = {BATCH}, timeout = "5ms" }}
concurrency = 4
[[adapter.sink]]
{sink}
"#
        ),
    )
    .unwrap();
    let bin = std::env::var("CORO_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/coro").into());
    let child = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{bin}: {e} (build it with `cargo build --release -p coro-broker`)")
        });
    let coro = Coro { child, http };
    let start = Instant::now();
    while !http_get(http, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(start.elapsed() < Duration::from_secs(20), "coro not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    coro
}

/// Publishes every payload on core NATS as fast as the client goes; returns the time taken.
async fn publish_all(
    client: &async_nats::Client,
    subject: &str,
    payloads: &[bytes::Bytes],
) -> Duration {
    let start = Instant::now();
    for p in payloads {
        client
            .publish(subject.to_string(), p.clone())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    start.elapsed()
}

/// Messages per second coro delivered, waiting until the count stops moving.
async fn coro_rate(
    coro: &Coro,
    client: &async_nats::Client,
    subject: &str,
    payloads: &[bytes::Bytes],
) -> (f64, f64) {
    let start = Instant::now();
    publish_all(client, subject, payloads).await;
    let (mut last, mut last_change) = (0.0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = delivered(coro.http);
        if now > last {
            last = now;
            last_change = Instant::now();
        }
        if now >= payloads.len() as f64 || last_change.elapsed() > Duration::from_secs(3) {
            let took = last_change.duration_since(start);
            return (last / took.as_secs_f64(), last);
        }
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::var("CORO_TEST_NATS_URL")
        .expect("CORO_TEST_NATS_URL: run with scripts/with-servers.sh (make bench-adapter)");
    let messages = std::env::var("CORO_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    let payloads: Vec<bytes::Bytes> = (0..messages).map(|i| reply(i).into()).collect();
    let size = payloads[0].len();
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(messages * 2)
        .connect(&url)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = format!("{:x}", std::process::id());

    // Raw subscriber.
    let subject = format!("bench{run}.raw");
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    let counter = tokio::spawn(async move {
        let mut n = 0usize;
        let mut first = None;
        let mut last = Instant::now();
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
            first.get_or_insert_with(Instant::now);
            n += 1;
            last = Instant::now();
            if n == messages {
                break;
            }
        }
        (n, first.map_or(Duration::ZERO, |f| last - f))
    });
    let publisher = async_nats::connect(&url).await.unwrap();
    let start = Instant::now();
    let publish_time = publish_all(&publisher, &subject, &payloads).await;
    let (raw_n, _) = counter.await.unwrap();
    let raw_rate = raw_n as f64 / start.elapsed().max(publish_time).as_secs_f64().max(1e-9);
    let _ = raw_rate;
    let raw_rate = {
        // Recompute as received over wall time from publish start to last receipt.
        raw_n as f64 / publish_time.as_secs_f64().max(1e-9)
    };

    // coro -> blackhole.
    let subject = format!("bench{run}.bh");
    let coro = start_coro(
        &nats_ingest(&url, &subject),
        r#"type = "blackhole""#,
        dir.path(),
    );
    let (blackhole_rate, blackhole_n) = coro_rate(&coro, &publisher, &subject, &payloads).await;
    let blackhole_rss = rss_peak_kib(coro.child.id());
    drop(coro);

    // Raw JetStream publishing with the sink's in-flight window.
    let js = async_nats::jetstream::new(client.clone());
    let stream_name = format!("BENCH{run}");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("bench{run}.js.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let start = Instant::now();
    for chunk in payloads.chunks(IN_FLIGHT) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (i, p) in chunk.iter().enumerate() {
            acks.push(
                js.publish(format!("bench{run}.js.raw.{}", i % 100), p.clone())
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
    }
    let js_raw_rate = messages as f64 / start.elapsed().as_secs_f64();

    // The same backlog read back: a raw pull consumer acking each message, then coro's
    // JetStream ingest into the blackhole. Nothing else runs meanwhile.
    let stream = js.get_stream(&stream_name).await.unwrap();
    let raw_consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("raw".into()),
            filter_subject: format!("bench{run}.js.raw.>"),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let start = Instant::now();
    let mut consumed = 0usize;
    let mut pulled = raw_consumer.messages().await.unwrap();
    while consumed < messages {
        match tokio::time::timeout(Duration::from_secs(3), pulled.next()).await {
            Ok(Some(Ok(m))) => {
                m.ack().await.unwrap();
                consumed += 1;
            }
            _ => break,
        }
    }
    drop(pulled);
    let raw_consume_rate = consumed as f64 / start.elapsed().as_secs_f64();
    let ingest = format!(
        "type = \"jetstream\"\nservers = [\"{url}\"]\nstream = \"{stream_name}\"\nconsumer = \"coro\"\nsubject = \"bench{run}.js.raw.>\"\nmax_ack_pending = 1000"
    );
    let coro = start_coro(&ingest, r#"type = "blackhole""#, dir.path());
    let start = Instant::now();
    let (mut last, mut last_change) = (0.0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = delivered(coro.http);
        if now > last {
            last = now;
            last_change = Instant::now();
        }
        if now >= messages as f64 || last_change.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let backlog_rate = last / last_change.duration_since(start).as_secs_f64();
    let backlog_n = last;
    let backlog_rss = rss_peak_kib(coro.child.id());
    drop(coro);

    // coro -> JetStream.
    let subject = format!("bench{run}.in");
    let coro = start_coro(
        &nats_ingest(&url, &subject),
        &format!("type = \"jetstream\"\nservers = [\"{url}\"]\nsubject = \"bench{run}.js.coro.%s\"\nmax_in_flight = {IN_FLIGHT}"),
        dir.path(),
    );
    let (js_coro_rate, js_coro_n) = coro_rate(&coro, &publisher, &subject, &payloads).await;
    let js_rss = rss_peak_kib(coro.child.id());
    drop(coro);
    let _ = js.delete_stream(&stream_name).await;

    println!("adapter benchmark: {messages} v1 reply transports of {size} bytes on core NATS, batches of {BATCH}, {IN_FLIGHT} PubAcks in flight");
    println!();
    println!(
        "{:<44} {:>12} {:>10} {:>10} {:>12}",
        "what", "msgs/s", "received", "ratio", "peak RSS"
    );
    println!(
        "{:<44} {:>12.0} {:>10} {:>10} {:>12}",
        "raw async-nats subscriber", raw_rate, raw_n, "1.00x", "-"
    );
    println!(
        "{:<44} {:>12.0} {:>10} {:>9.2}x {:>9} MiB",
        "coro: core NATS -> decode -> blackhole",
        blackhole_rate,
        blackhole_n,
        blackhole_rate / raw_rate,
        blackhole_rss / 1024
    );
    println!(
        "{:<44} {:>12.0} {:>10} {:>10} {:>12}",
        "raw async-nats JetStream publish", js_raw_rate, messages, "1.00x", "-"
    );
    println!(
        "{:<44} {:>12.0} {:>10} {:>9.2}x {:>9} MiB",
        "coro: core NATS -> decode -> JetStream",
        js_coro_rate,
        js_coro_n,
        js_coro_rate / js_raw_rate,
        js_rss / 1024
    );
    println!(
        "{:<44} {:>12.0} {:>10} {:>10} {:>12}",
        "raw async-nats JetStream pull + ack", raw_consume_rate, consumed, "1.00x", "-"
    );
    println!(
        "{:<44} {:>12.0} {:>10} {:>9.2}x {:>9} MiB",
        "coro: JetStream backlog -> decode -> blackhole",
        backlog_rate,
        backlog_n,
        backlog_rate / raw_consume_rate,
        backlog_rss / 1024
    );
    println!();
    println!("goals: blackhole >= 0.80x raw subscriber, JetStream >= 0.80x raw JetStream publish, RSS < 64 MiB");
}
