//! The Kafka sink end to end: `coro run` with a real nats-server and a real Kafka-API
//! broker (tansu, from `scripts/with-servers.sh`, or started here for the test that
//! stops it), and `coro replies` reading back what the sink wrote.

mod common;

use common::{eventually, free_port, js_stream, nats_url, records, unique, Coro};
use coro_core::gojson;
use coro_core::protocol::{self, v1, Message};
use coro_sinks::kafka::encode::header;
use coro_sinks::kafka::read::{self, Event, Received, Start, TopicReader};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn kafka_brokers() -> String {
    std::env::var("CORO_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("CORO_TEST_KAFKA_BROKERS is not set: run the tests with `make test` (scripts/with-servers.sh starts tansu; scripts/install-kafka.sh installs it)")
    })
}

/// A v1 RPC reply from `sender` to request `request_id`, its body carrying `seq`.
fn v1_reply(sender: &str, request_id: &str, seq: usize) -> Vec<u8> {
    let req = v1::Request::new(
        "rpcutil",
        "client.example.net",
        "choria=rip.mcollective",
        60,
        request_id,
        "mcollective",
        1_700_000_000,
    );
    let body = format!(r#"{{"statuscode":0,"statusmsg":"OK","data":{{"seq":{seq}}}}}"#);
    let reply = v1::Reply::for_request(&req, sender, 1_700_000_001, &body);
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let headers = v1::Headers {
        sender: sender.to_string(),
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

/// The request id of message `i` of a test.
fn id(i: usize) -> String {
    format!("{i:032x}")
}

/// Reads `topic` on `brokers` from the beginning until `want` messages came or nothing
/// came for `idle`.
async fn read_topic(brokers: &str, topic: &str, want: usize, idle: Duration) -> Vec<Received> {
    let brokers = vec![brokers.to_string()];
    let t = topic.to_string();
    let reader =
        tokio::task::spawn_blocking(move || TopicReader::new(&brokers, &t, &Start::Beginning, &[]))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("reading {topic}: {e}"));
    let mut out = Vec::new();
    while out.len() < want {
        match reader.next(idle).await {
            Some(Ok(Event::Message(m))) => out.push(m),
            Some(Ok(Event::PartitionEnd(_))) => {}
            // A broker that just came back may not know the topic for a moment.
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => break,
        }
    }
    out
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn coro(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

async fn coro_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        coro(&args)
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// 10,000 replies from 50 senders through `coro run` (core NATS ingest, one worker)
/// into Kafka: each read back exactly once with its key, headers and payload, and each
/// sender's replies in the order they were published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_each_once_with_key_headers_payload_and_order() {
    const N: usize = 10_000;
    const SENDERS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("k10k");
    let topic = format!("coro.test.{prefix}");
    let http = free_port();
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "k10k"
[adapter.ingest]
type = "nats"
servers = ["{nats}"]
subject = "{prefix}.>"
protocol = "reply"
workers = 1          # one subscriber: what one sender published stays in order
queue_len = 20000
[adapter.pipeline]
batch = {{ max_records = 500, timeout = "10ms" }}
[[adapter.sink]]
type = "kafka"
brokers = ["{brokers}"]
topic = "{topic}"
key = "{{sender}}"
[adapter.dead_letter]
type = "file"
path = "{dead}"
"#,
        nats = nats_url(),
        brokers = kafka_brokers(),
        dead = dir.path().join("dead.jsonl").display(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let c = Coro::start(&path, http, &dir.path().join("coro.log"));

    let client = async_nats::connect(nats_url()).await.unwrap();
    let started = Instant::now();
    let mut expected = HashMap::new();
    for i in 0..N {
        let sender = format!("node{:02}.example.net", i % SENDERS);
        let payload = v1_reply(&sender, &id(i), i / SENDERS);
        let Message::Rpc(m) = protocol::decode(&payload).unwrap() else {
            panic!()
        };
        let doc = protocol::output::ChoriaStreamsOutput::from_message(&m).unwrap();
        expected.insert(id(i), (sender, doc.to_json()));
        client
            .publish(format!("{prefix}.r"), payload.into())
            .await
            .unwrap();
        if i % 1000 == 999 {
            client.flush().await.unwrap();
        }
    }
    client.flush().await.unwrap();
    let delivered = r#"coro_sink_records_total{adapter="k10k",outcome="delivered",sink="kafka"}"#;
    let all = eventually(Duration::from_secs(60), || {
        let n = c.metric(delivered).unwrap_or(0.0);
        Box::pin(async move { n >= N as f64 })
    })
    .await;
    assert!(
        all,
        "delivered {:?} of {N}:\n{}",
        c.metric(delivered),
        c.log_text()
    );
    eprintln!("{N} records into Kafka in {:?}", started.elapsed());
    assert_eq!(
        c.metric_sum("coro_ingest_dropped_total", r#"adapter="k10k""#),
        0.0
    );

    let got = read_topic(&kafka_brokers(), &topic, N + 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), N, "every record once, nothing more");
    let mut seen = HashSet::new();
    let mut by_partition: BTreeMap<i32, Vec<&Received>> = BTreeMap::new();
    for m in &got {
        let rid = m.header(header::REQUEST_ID).unwrap();
        assert!(seen.insert(rid.to_string()), "{rid} twice");
        let (sender, doc) = &expected[rid];
        assert_eq!(m.key_str(), Some(sender.as_str()));
        assert_eq!(&m.payload, doc);
        assert_eq!(m.header(header::SENDER), Some(sender.as_str()));
        assert_eq!(m.header(header::AGENT), Some("rpcutil"));
        assert_eq!(m.header(header::PROTOCOL), Some("1"));
        assert_eq!(m.header(header::KIND), Some("reply"));
        assert_eq!(m.header(header::TIME), Some("2023-11-14T22:13:21Z"));
        assert_eq!(m.header(header::COLLECTIVE), None, "replies have none");
        by_partition.entry(m.partition).or_default().push(m);
    }
    // One sender's records are all on one partition, in the order published.
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    for (partition, mut messages) in by_partition {
        messages.sort_by_key(|m| m.offset);
        for m in messages {
            let sender = m.key_str().unwrap().to_string();
            assert_eq!(
                *partition_of.entry(sender.clone()).or_insert(partition),
                partition
            );
            let w = read::decode(&m.payload, &m.headers).unwrap();
            let body: serde_json::Value = serde_json::from_slice(&w.body).unwrap();
            let seq = body["data"]["seq"].as_i64().unwrap();
            let before = last.insert(sender.clone(), seq).unwrap_or(-1);
            assert!(seq > before, "{sender}: {seq} after {before}");
        }
    }
    assert_eq!(last.len(), SENDERS);
    assert_eq!(c.terminate(), 0);
}

/// A tansu of the test's own, to stop and start again; killed by PID on drop.
struct Tansu {
    child: Option<Child>,
    port: u16,
    log: std::path::PathBuf,
}

impl Tansu {
    fn start(port: u16, log: &Path) -> Tansu {
        let bin = std::env::var("CORO_KAFKA_SERVER").unwrap_or_else(|_| {
            panic!("CORO_KAFKA_SERVER is not set: run the tests with `make test` (scripts/install-kafka.sh installs tansu)")
        });
        let url = format!("tcp://127.0.0.1:{port}");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut t = Tansu {
            child: Some(
                Command::new(bin)
                    .args(["broker", "--listener-url", &url])
                    .args(["--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"])
                    .stdout(Stdio::null())
                    .stderr(out)
                    .spawn()
                    .unwrap(),
            ),
            port,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return t;
            }
            if let Some(status) = t.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "tansu exited at start ({status}): {}",
                    std::fs::read_to_string(&t.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tansu not listening on {port} after 10s");
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, and wait until it is gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Kafka broker stops mid-stream and comes back (empty: tansu keeps memory storage
/// only). With JetStream ingest nothing is lost: every record is read from the broker
/// before the stop, read from it after the restart, or in the dead letter; records
/// held in the producer during the outage were retried, and past the attempt limit
/// dead-lettered, and the metrics count both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stopped_and_started_again_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("kstop");
    let topic = format!("coro.test.{prefix}");
    let port = free_port();
    let mut tansu = Tansu::start(port, &dir.path().join("tansu.log"));
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let stream = format!("KSTOP_{prefix}").to_uppercase();
    js_stream(&js, &stream, vec![format!("{prefix}.>")]).await;
    let http = free_port();
    let dead = dir.path().join("dead.jsonl");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "kstop"
[adapter.ingest]
type = "jetstream"
servers = ["{nats}"]
stream = "{stream}"
consumer = "coro_kstop"
protocol = "reply"
ack_wait = "30s"
[adapter.pipeline]
batch = {{ max_records = 50, timeout = "10ms" }}
retry = {{ max_attempts = 2, initial_backoff = "100ms", max_backoff = "200ms" }}
timeout = "10s"
[[adapter.sink]]
type = "kafka"
brokers = ["{brokers}"]
topic = "{topic}"
message_timeout = "1500ms"
[adapter.sink.librdkafka]
# Reconnect promptly once the broker is back (the default backs off up to 10 s).
"reconnect.backoff.max.ms" = 200
[adapter.dead_letter]
type = "file"
path = "{dead}"
"#,
        nats = nats_url(),
        brokers = tansu.brokers(),
        dead = dead.display(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let c = Coro::start(&path, http, &dir.path().join("coro.log"));
    let publish = |from: usize, to: usize| {
        let js = js.clone();
        let prefix = prefix.clone();
        async move {
            for i in from..to {
                let sender = format!("node{}.example.net", i % 7);
                js.publish(format!("{prefix}.r"), v1_reply(&sender, &id(i), i).into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        }
    };
    let settled = |n: usize| c.settled("kstop", "kafka", n, Duration::from_secs(60));

    // Before: 300 records delivered and read.
    publish(0, 300).await;
    assert!(settled(300).await, "{}", c.log_text());
    let before = read_topic(&tansu.brokers(), &topic, 300, Duration::from_secs(5)).await;
    assert_eq!(before.len(), 300);

    // The broker goes away while records keep coming: 100 every 500 ms for 6 s. The
    // first ones run out of attempts (2 × 1.5 s) before it is back, the last ones not.
    tansu.stop();
    let outage = Instant::now();
    for tick in 0..12 {
        publish(300 + tick * 100, 400 + tick * 100).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tansu = Tansu::start(port, &dir.path().join("tansu.log"));
    eprintln!("broker away for {:?}", outage.elapsed());
    // After: 400 more while it comes back.
    for tick in 0..4 {
        publish(1500 + tick * 100, 1600 + tick * 100).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    const N: usize = 1900;
    assert!(
        settled(N).await,
        "{}",
        c.settled_report("kstop", "kafka", N)
    );

    let after = read_topic(&tansu.brokers(), &topic, N, Duration::from_secs(5)).await;
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let id_of = |m: &Received| m.header(header::REQUEST_ID).unwrap().to_string();
    let mut found: HashSet<String> = before.iter().map(id_of).collect();
    let after_ids: HashSet<String> = after.iter().map(id_of).collect();
    let mut dead_ids = HashSet::new();
    for letter in &letters {
        let error = letter["error"].as_str().unwrap();
        assert!(error.contains("kafka: "), "{error}");
        let payload = letter["payload"].as_str().unwrap();
        let Message::Rpc(m) = protocol::decode(payload.as_bytes()).unwrap() else {
            panic!()
        };
        dead_ids.insert(m.inner.request_id().to_string());
    }
    found.extend(after_ids.iter().cloned());
    found.extend(dead_ids.iter().cloned());
    let missing: Vec<usize> = (0..N).filter(|i| !found.contains(&id(*i))).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");

    let retries = c
        .metric(r#"coro_sink_retries_total{adapter="kstop",sink="kafka"}"#)
        .unwrap_or(0.0);
    let timed_out = c.metric_sum("coro_kafka_delivery_errors_total", r#"outcome="retry""#);
    let outage_ids = |ids: &HashSet<String>| (300..1500).filter(|i| ids.contains(&id(*i))).count();
    eprintln!(
        "outage records: {} delivered after the restart, {} dead-lettered; {retries} retries, {timed_out} retriable Kafka errors",
        outage_ids(&after_ids),
        outage_ids(&dead_ids)
    );
    assert!(
        retries > 0.0,
        "records waiting in the producer were retried"
    );
    assert!(timed_out > 0.0);
    assert!(!letters.is_empty(), "past the limit they are dead-lettered");
    assert_eq!(
        c.metric(&records("kstop", "rejected", "kafka")),
        Some(letters.len() as f64)
    );
    assert_eq!(
        c.metric(r#"coro_dead_letters_total{adapter="kstop",sink="kafka"}"#),
        Some(letters.len() as f64)
    );
    assert!(
        outage_ids(&after_ids) > 0,
        "records held during the outage were delivered once it was back"
    );
    assert!((1500..N).all(|i| after_ids.contains(&id(i))));
    assert_eq!(c.terminate(), 0);
    drop(tansu);
}

/// A record larger than the sink's `max_message_bytes` goes to the dead letter with the
/// Kafka error; the records around it are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_record_is_dead_lettered_and_the_rest_continue() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("kbig");
    let topic = format!("coro.test.{prefix}");
    let http = free_port();
    let dead = dir.path().join("dead.jsonl");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "kbig"
[adapter.ingest]
type = "nats"
servers = ["{nats}"]
subject = "{prefix}.>"
protocol = "reply"
[[adapter.sink]]
type = "kafka"
brokers = ["{brokers}"]
topic = "{topic}"
max_message_bytes = 20000
[adapter.dead_letter]
type = "file"
path = "{dead}"
"#,
        nats = nats_url(),
        brokers = kafka_brokers(),
        dead = dead.display(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let c = Coro::start(&path, http, &dir.path().join("coro.log"));
    let client = async_nats::connect(nats_url()).await.unwrap();
    for i in 0..20 {
        let mut payload = v1_reply("node1.example.net", &id(i), i);
        if i == 10 {
            // The same reply with a 50 kB body.
            let req = v1::Request::new(
                "rpcutil",
                "client.example.net",
                "choria=rip.mcollective",
                60,
                &id(i),
                "mcollective",
                1_700_000_000,
            );
            let body = format!(
                r#"{{"statuscode":0,"statusmsg":"OK","data":{{"blob":"{}"}}}}"#,
                "x".repeat(50_000)
            );
            let reply = v1::Reply::for_request(&req, "node1.example.net", 1_700_000_001, &body);
            let secure = v1::SecureReply::new(&gojson::to_string(&reply));
            let headers = v1::Headers {
                sender: "node1.example.net".into(),
                ..Default::default()
            };
            payload = gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers));
        }
        client
            .publish(format!("{prefix}.r"), payload.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let done = eventually(Duration::from_secs(30), || {
        let n = c.metric_sum(
            "coro_sink_records_total",
            r#"adapter="kbig",outcome="delivered",sink="kafka""#,
        );
        let d = c.metric_sum("coro_dead_letters_total", r#"adapter="kbig""#);
        Box::pin(async move { n >= 19.0 && d >= 1.0 })
    })
    .await;
    assert!(done, "{}", c.log_text());
    let letters = std::fs::read_to_string(&dead).unwrap();
    let lines: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let error = lines[0]["error"].as_str().unwrap();
    assert!(
        error.contains("sink kafka: kafka: Message production error: MessageSizeTooLarge"),
        "{error}"
    );
    let payload = lines[0]["payload"].as_str().unwrap();
    let Message::Rpc(m) = protocol::decode(payload.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(m.inner.request_id(), id(10));
    let got = read_topic(&kafka_brokers(), &topic, 20, Duration::from_secs(5)).await;
    let ids: HashSet<String> = got
        .iter()
        .map(|m| m.header(header::REQUEST_ID).unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 19);
    assert!(!ids.contains(&id(10)));
    assert_eq!(
        c.metric_sum(
            "coro_kafka_delivery_errors_total",
            r#"error="MessageSizeTooLarge",outcome="reject""#
        ),
        1.0
    );
    assert_eq!(c.terminate(), 0);
}

/// The shipped example config is valid as it is.
#[test]
fn async_rpc_example_config_validates() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/async-rpc-kafka.toml");
    let out = coro(&["validate", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("replies_kafka"), "{table}");
    assert!(table.contains("kafka: topic choria.replies"), "{table}");
}

/// Asynchronous RPC into Kafka, as the example config and README recipe run it:
/// `coro rpc --reply-to` to 500 simulated nodes, their replies captured by a stream,
/// an adapter with `protocol = "reply"` writing them to Kafka, and `coro replies`
/// showing all 500 for that request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_rpc_replies_into_kafka_and_coro_replies_shows_them() {
    const NODES: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let collective = unique("kasync");
    let topic = format!("coro.test.{collective}");
    let stream = format!("INBOX_{collective}").to_uppercase();
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js_stream(&js, &stream, vec![format!("{collective}.reply.async.>")]).await;

    // The example config, pointed at this test's servers, stream, topic and files.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/async-rpc-kafka.toml");
    let mut doc: coro_core::config::toml::Table =
        std::fs::read_to_string(example).unwrap().parse().unwrap();
    let http = free_port();
    let set = |table: &mut coro_core::config::toml::Table, path: &[&str], value: &str| {
        let mut t = table;
        for key in &path[..path.len() - 1] {
            t = match t.get_mut(*key).unwrap() {
                coro_core::config::toml::Value::Table(t) => t,
                coro_core::config::toml::Value::Array(a) => a[0].as_table_mut().unwrap(),
                other => panic!("{other:?}"),
            };
        }
        let value = if path.last() == Some(&"servers") || path.last() == Some(&"brokers") {
            coro_core::config::toml::Value::Array(vec![value.into()])
        } else {
            value.into()
        };
        t.insert(path[path.len() - 1].to_string(), value);
    };
    set(&mut doc, &["http", "listen"], &format!("127.0.0.1:{http}"));
    set(&mut doc, &["adapter", "ingest", "servers"], &nats_url());
    set(&mut doc, &["adapter", "ingest", "stream"], &stream);
    set(&mut doc, &["adapter", "sink", "brokers"], &kafka_brokers());
    set(&mut doc, &["adapter", "sink", "topic"], &topic);
    let dead = dir.path().join("dead.jsonl");
    set(
        &mut doc,
        &["adapter", "dead_letter", "path"],
        dead.to_str().unwrap(),
    );
    let path = write(dir.path(), "async-rpc-kafka.toml", &doc.to_string());
    let c = Coro::start(&path, http, &dir.path().join("coro.log"));

    let fleet = coro_fleet::Fleet::start(coro_fleet::FleetConfig {
        nodes: NODES,
        servers: vec![nats_url()],
        collective: collective.clone(),
        registration_interval: Duration::ZERO,
        ..Default::default()
    })
    .await
    .unwrap();

    let reply_to = format!("{collective}.reply.async.{}", unique("r"));
    let out = coro_async(
        [
            "rpc",
            "rpcutil",
            "ping",
            "--server",
            &nats_url(),
            "--collective",
            &collective,
            "--reply-to",
            &reply_to,
            "--json",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let published: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let request_id = published["requestid"].as_str().unwrap().to_string();

    let replies = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "replies",
            "--brokers",
            &kafka_brokers(),
            "--topic",
            &topic,
            "--request-id",
            &request_id,
        ]
        .map(String::from)
        .to_vec();
        if !extra.contains(&"--timeout") {
            args.extend(["--timeout".to_string(), "20s".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        coro_async(args)
    };
    let expect = NODES.to_string();
    let out = replies(&["--expect", &expect, "--json"]).await;
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        c.log_text()
    );
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), NODES);
    let senders: HashSet<&str> = lines
        .iter()
        .map(|l| l["sender"].as_str().unwrap())
        .collect();
    assert_eq!(senders.len(), NODES);
    assert!(lines.iter().all(|l| l["statuscode"] == 0
        && l["requestid"] == request_id.as_str()
        && l["data"]["pong"].is_i64()));

    // The table, read again from the beginning: every node, one status code.
    let out = replies(&["--expect", &expect]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("SENDER"), "{table}");
    assert!(
        table.contains(&format!("Finished processing {NODES} / {NODES} hosts")),
        "{table}"
    );
    assert!(
        table.contains(&format!("statuscode 0 (OK): {NODES}")),
        "{table}"
    );

    // As a consumer group: all of them once; the group's next run has nothing new.
    let group = unique("coro-replies-test");
    let out = replies(&["--expect", &expect, "--group", &group, "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), NODES);
    let out = replies(&["--group", &group, "--timeout", "2s"]).await;
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("add --from-beginning"),
        "{}",
        text(&out.stderr)
    );

    // An unknown request id: nothing, exit 75.
    let other = "f".repeat(32);
    let out = coro_async(
        [
            "replies",
            "--brokers",
            &kafka_brokers(),
            "--topic",
            &topic,
            "--request-id",
            &other,
            "--timeout",
            "1s",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("messages for other requests: {NODES}")),
        "{}",
        text(&out.stdout)
    );
    fleet.shutdown().await;
    assert_eq!(c.terminate(), 0);
    assert_eq!(
        std::fs::read_to_string(&dead).unwrap_or_default(),
        "",
        "nothing was dead-lettered"
    );
}

/// The README's Kafka sink example (every key) is valid as written.
#[test]
fn readme_kafka_sink_example_validates() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("## Kafka:")
        .expect("the README has a Kafka section");
    let sink = readme[start..]
        .split_once("```toml\n")
        .and_then(|(_, b)| b.split_once("```"))
        .map(|(b, _)| b)
        .expect("a ```toml block in it");
    let doc = format!(
        "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
         servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n{sink}"
    );
    match coro_sinks::config::parse(Path::new("README.md#kafka.toml"), &doc) {
        Ok((_, sinks)) => {
            let coro_sinks::config::SinkConfig::Kafka(k) = &sinks[0].sinks[0].1 else {
                panic!("not a Kafka sink")
            };
            assert_eq!(k.librdkafka.len(), 5);
            assert_eq!(k.key.as_deref(), Some("{sender}"));
        }
        Err(errors) => panic!("the README Kafka example does not validate:\n{errors}"),
    }
}

/// `coro validate --online` reaches the brokers with the sink's settings and says
/// whether the topic exists, or whether it will be created on first write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_online_checks_brokers_and_topics() {
    let dir = tempfile::tempdir().unwrap();
    let existing = format!("coro.test.{}", unique("kvalid"));
    // Write one record so the topic exists.
    let sink = coro_sinks::kafka::KafkaSink::new(
        coro_sinks::kafka::config::KafkaConfig::new(vec![kafka_brokers()], existing.clone()),
        "coro.test",
    )
    .unwrap();
    let record = coro_core::Record {
        subject: "s".into(),
        version: coro_core::protocol::Version::V1,
        kind: coro_core::Kind::Reply,
        sender: "n".into(),
        request_id: "r".into(),
        agent: "rpcutil".into(),
        collective: None,
        time_ns: 1_700_000_000_000_000_000,
        body: b"{}".to_vec().into(),
        raw: Default::default(),
    };
    use tower::ServiceExt;
    let out = sink
        .oneshot(coro_core::sink::Batch::new(vec![record]))
        .await
        .unwrap();
    assert_eq!(out, vec![coro_core::sink::Outcome::Delivered]);
    let missing = format!("coro.test.{}", unique("kmissing"));
    let config = format!(
        r#"
[[adapter]]
name = "v"
[adapter.ingest]
type = "nats"
servers = ["{nats}"]
subject = "x.>"
[[adapter.sink]]
type = "kafka"
name = "there"
brokers = ["{brokers}"]
topic = "{existing}"
[[adapter.sink]]
type = "kafka"
name = "later"
brokers = ["{brokers}"]
topic = "{missing}"
[[adapter.sink]]
type = "kafka"
name = "never"
brokers = ["{brokers}"]
topic = "{missing}"
[adapter.sink.librdkafka]
"allow.auto.create.topics" = false
"#,
        nats = nats_url(),
        brokers = kafka_brokers(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let out = coro_async(vec![
        "validate".into(),
        "--online".into(),
        path.display().to_string(),
    ])
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(78), "{stdout}");
    let line = |sink: &str, what: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!("sink \"{sink}\": {what}")))
            .unwrap_or_else(|| panic!("no {sink}/{what} line in:\n{stdout}"))
            .to_string()
    };
    assert!(line("there", "connected to").starts_with("ok"));
    assert!(line("there", &format!("topic {existing} exists")).starts_with("ok"));
    let later = line("later", &format!("topic {missing} does not exist yet"));
    assert!(later.starts_with("ok"), "{later}");
    assert!(later.contains("the broker did not say"), "{later}");
    let never = line("never", &format!("topic {missing} does not exist"));
    assert!(never.starts_with("FAIL"), "{never}");
    assert!(
        never.contains("allow.auto.create.topics = false"),
        "{never}"
    );
}
