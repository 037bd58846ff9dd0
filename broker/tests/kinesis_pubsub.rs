//! The Kinesis and Pub/Sub sinks end to end: `coro run` with a real nats-server, a real
//! Kinesis-API server (moto_server from `scripts/with-servers.sh`, or kinesis-mock
//! started here for the test that stops it) and the official Pub/Sub emulator.

mod common;
#[path = "../../sinks/src/pubsub/throttling_proxy.rs"]
mod pubsub_throttling_proxy;
#[path = "../../sinks/src/kinesis/test_streams.rs"]
mod test_streams;
#[path = "../../sinks/src/kinesis/throttling_proxy.rs"]
mod throttling_proxy;

use base64::Engine;
use common::{eventually, free_port, js_stream, nats_url, unique, Coro};
use coro_core::gojson;
use coro_core::protocol::{self, v1, Message};
use coro_sinks::kinesis::aws_sdk_kinesis;
use coro_sinks::kinesis::aws_sdk_kinesis::Client;
use coro_sinks::kinesis::config::KinesisConfig;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use test_streams::{create_stream, read_stream};
use throttling_proxy::ThrottlingProxy;

fn kinesis_endpoint() -> String {
    std::env::var("CORO_TEST_KINESIS_ENDPOINT").unwrap_or_else(|_| {
        panic!("CORO_TEST_KINESIS_ENDPOINT is not set: run the tests with scripts/with-servers.sh (scripts/install-kinesis.sh installs moto_server)")
    })
}

/// The emulator's host:port, also set as PUBSUB_EMULATOR_HOST for `coro run`.
fn pubsub_host() -> String {
    let host = std::env::var("CORO_TEST_PUBSUB_EMULATOR_HOST").unwrap_or_else(|_| {
        panic!("CORO_TEST_PUBSUB_EMULATOR_HOST is not set: run the tests with scripts/with-servers.sh (the emulator is the Debian package google-cloud-cli-pubsub-emulator)")
    });
    std::env::set_var("PUBSUB_EMULATOR_HOST", &host);
    host
}

const PROJECT: &str = "coro-test";

/// A v1 RPC reply from `sender` to request `request_id`, its body carrying `seq` and
/// `pad` bytes of padding.
fn v1_reply(sender: &str, request_id: &str, seq: usize, pad: usize) -> Vec<u8> {
    let req = v1::Request::new(
        "rpcutil",
        "client.example.net",
        "choria=rip.mcollective",
        60,
        request_id,
        "mcollective",
        1_700_000_000,
    );
    let body = format!(
        r#"{{"statuscode":0,"statusmsg":"OK","data":{{"seq":{seq},"pad":"{}"}}}}"#,
        "x".repeat(pad)
    );
    let reply = v1::Reply::for_request(&req, sender, 1_700_000_001, &body);
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let headers = v1::Headers {
        sender: sender.to_string(),
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

fn id(i: usize) -> String {
    format!("{i:032x}")
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn kinesis_client(endpoint: &str) -> Client {
    let mut c = KinesisConfig::new("x");
    c.region = Some("us-east-1".into());
    c.endpoint = Some(endpoint.into());
    coro_sinks::kinesis::service::client(&c).await.unwrap()
}

async fn create_topic(host: &str, topic: &str) {
    let http = reqwest::Client::new();
    let base = format!("http://{host}/v1/projects/{PROJECT}");
    let r = http
        .put(format!("{base}/topics/{topic}"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = http
        .put(format!("{base}/subscriptions/{topic}-sub"))
        .json(&serde_json::json!({
            "topic": format!("projects/{PROJECT}/topics/{topic}"),
            "enableMessageOrdering": true,
            "ackDeadlineSeconds": 60
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Pulls and acknowledges from `topic-sub`: (data, attributes, ordering key).
async fn pull(
    host: &str,
    topic: &str,
    want: usize,
    idle: Duration,
) -> Vec<(Vec<u8>, BTreeMap<String, String>, String)> {
    let http = reqwest::Client::new();
    let base = format!("http://{host}/v1/projects/{PROJECT}/subscriptions/{topic}-sub");
    let mut out = Vec::new();
    let mut last = std::time::Instant::now();
    while out.len() < want && last.elapsed() < idle {
        let got: serde_json::Value = http
            .post(format!("{base}:pull"))
            .json(&serde_json::json!({"maxMessages": 500, "returnImmediately": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = got["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        last = std::time::Instant::now();
        let mut acks = Vec::new();
        for m in messages {
            acks.push(m["ackId"].clone());
            let msg = &m["message"];
            out.push((
                base64::engine::general_purpose::STANDARD
                    .decode(msg["data"].as_str().unwrap_or(""))
                    .unwrap(),
                serde_json::from_value(msg["attributes"].clone()).unwrap_or_default(),
                msg["orderingKey"].as_str().unwrap_or("").to_string(),
            ));
        }
        http.post(format!("{base}:acknowledge"))
            .json(&serde_json::json!({ "ackIds": acks }))
            .send()
            .await
            .unwrap();
    }
    out
}

/// The `seq` of a choria_streams document.
fn seq_of(doc: &[u8]) -> (String, u64) {
    let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
    let data = &v["data"];
    let body: serde_json::Value = match data {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    (
        v["sender"].as_str().unwrap_or_default().to_string(),
        body["data"]["seq"].as_u64().unwrap(),
    )
}

/// 300 replies from 5 senders through `coro run` (core NATS ingest, one worker) into a
/// Kinesis stream and a Pub/Sub topic: each arrives once with the sender as partition
/// / ordering key, the Choria attributes, each sender's in publish order; one reply
/// too large for either goes to the dead letter of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_arrive_in_kinesis_and_pubsub_keyed_and_in_order() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("kp");
    let stream = format!("coro-{prefix}");
    let topic = format!("coro-{prefix}");
    let endpoint = kinesis_endpoint();
    let host = pubsub_host();
    let kinesis = kinesis_client(&endpoint).await;
    create_stream(&kinesis, &stream, 2).await;
    create_topic(&host, &topic).await;
    let http = free_port();
    let dead = dir.path().join("dead.jsonl");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "kp"
[adapter.ingest]
type = "nats"
servers = ["{nats}"]
subject = "{prefix}.>"
protocol = "reply"
workers = 1
[adapter.pipeline]
batch = {{ max_records = 100, timeout = "10ms" }}
[[adapter.sink]]
type = "kinesis"
stream = "{stream}"
region = "us-east-1"
endpoint = "{endpoint}"
max_record_bytes = 4000
[[adapter.sink]]
type = "pubsub"
project = "{PROJECT}"
topic = "{topic}"
max_message_bytes = 4000
[adapter.dead_letter]
type = "file"
path = "{dead}"
"#,
        nats = nats_url(),
        dead = dead.display(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let c = Coro::start(&path, http, &dir.path().join("coro.log"));
    let client = async_nats::connect(nats_url()).await.unwrap();
    let big = 150;
    for i in 0..N {
        let sender = format!("node{}.example.net", i % 5);
        let pad = if i == big { 5000 } else { 10 };
        client
            .publish(
                format!("{prefix}.r"),
                v1_reply(&sender, &id(i), i, pad).into(),
            )
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for sink in ["kinesis", "pubsub"] {
        let done =
            format!(r#"coro_sink_records_total{{adapter="kp",outcome="delivered",sink="{sink}"}}"#);
        let ok = eventually(Duration::from_secs(30), || {
            let n = c.metric(&done).unwrap_or(0.0);
            Box::pin(async move { n >= (N - 1) as f64 })
        })
        .await;
        assert!(ok, "{sink}: {:?}\n{}", c.metric(&done), c.log_text());
    }

    let got = read_stream(&kinesis, &stream).await;
    assert_eq!(got.len(), N - 1, "each once, the big one not");
    let mut shard_of: HashMap<String, String> = HashMap::new();
    let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
    for (shard, key, data) in &got {
        let (sender, seq) = seq_of(data);
        assert_eq!(key, &sender);
        assert_eq!(shard_of.entry(key.clone()).or_insert(shard.clone()), shard);
        seqs.entry(sender).or_default().push(seq);
    }
    for (sender, s) in &seqs {
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(
            s,
            &sorted,
            "kinesis order of {sender}; retries: {}; errors: {}",
            c.metric_sum("coro_sink_retries_total", "adapter=\"kp\""),
            c.metric_sum("coro_kinesis_record_errors_total", "adapter=\"kp\"")
        );
        assert!(!s.contains(&(big as u64)));
    }

    let got = pull(&host, &topic, N, Duration::from_secs(5)).await;
    assert_eq!(got.len(), N - 1);
    let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
    for (data, attributes, key) in &got {
        let (sender, seq) = seq_of(data);
        assert_eq!(key, &sender);
        assert_eq!(attributes["choria_sender"], sender);
        assert_eq!(attributes["choria_requestid"], id(seq as usize));
        assert_eq!(attributes["choria_agent"], "rpcutil");
        assert_eq!(attributes["choria_protocol"], "1");
        assert_eq!(attributes["choria_kind"], "reply");
        assert_eq!(attributes["choria_time"], "2023-11-14T22:13:21Z");
        assert!(
            !attributes.contains_key("choria_collective"),
            "replies have none"
        );
        seqs.entry(sender).or_default().push(seq);
    }
    for (sender, s) in &seqs {
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(
            s,
            &sorted,
            "pubsub order of {sender}; retries: {}; errors: {}",
            c.metric_sum("coro_sink_retries_total", "adapter=\"kp\""),
            c.metric_sum("coro_pubsub_publish_errors_total", "adapter=\"kp\"")
        );
    }

    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One letter for the message, with each sink's reason.
    assert_eq!(letters.len(), 1, "{letters:?}");
    for l in &letters {
        let error = l["error"].as_str().unwrap();
        assert!(
            error.contains("sink kinesis: kinesis: record of"),
            "{error}"
        );
        assert!(error.contains("sink pubsub: pubsub: message of"), "{error}");
        let Message::Rpc(m) = protocol::decode(l["payload"].as_str().unwrap().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(m.inner.request_id(), id(big));
    }
    assert_eq!(c.terminate(), 0);
}

/// Replies `range` from three senders into JetStream on `<prefix>.r`, each acknowledged.
async fn publish_replies(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    range: std::ops::Range<usize>,
) {
    for i in range {
        let sender = format!("node{}.example.net", i % 3);
        js.publish(
            format!("{prefix}.r"),
            v1_reply(&sender, &id(i), i, 10).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

/// kinesis-mock, a Kinesis-API server started (and stopped) by the test, with its
/// stream created at start.
struct KinesisMock {
    child: Option<Child>,
    port: u16,
}

impl KinesisMock {
    fn start(port: u16, tls_port: u16, stream: &str, log: &Path) -> KinesisMock {
        let dir = std::env::var("CORO_KINESIS_MOCK").unwrap_or_else(|_| {
            panic!("CORO_KINESIS_MOCK is not set: run the tests with scripts/with-servers.sh (scripts/install-kinesis.sh installs npm kinesis-local)")
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new("node")
            .arg(format!("{dir}/main.js"))
            .env("KINESIS_MOCK_CERT_PATH", format!("{dir}/server.json"))
            .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
            .env("CREATE_STREAM_DURATION", "0ms")
            .env("INITIALIZE_STREAMS", format!("{stream}:1"))
            .env("LOG_LEVEL", "WARN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "kinesis-mock did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        KinesisMock {
            child: Some(child),
            port,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for KinesisMock {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Kinesis server stopped while records keep coming (JetStream ingest) and started
/// again: every record is in the stream (before the stop, or after the restart) or,
/// past the retry limit, in the dead letter; none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_server_stopped_and_started_again_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("kinstop");
    let stream = format!("coro-{prefix}");
    let (port, tls) = (free_port(), free_port());
    let log = dir.path().join("kmock.log");
    let mut server = KinesisMock::start(port, tls, &stream, &log);
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let nats_stream = format!("KINSTOP_{prefix}").to_uppercase().replace('-', "_");
    js_stream(&js, &nats_stream, vec![format!("{prefix}.>")]).await;
    let http = free_port();
    let dead = dir.path().join("dead.jsonl");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "kinstop"
[adapter.ingest]
type = "jetstream"
servers = ["{nats}"]
stream = "{nats_stream}"
consumer = "coro_kinstop"
protocol = "reply"
ack_wait = "30s"
[adapter.pipeline]
batch = {{ max_records = 50, timeout = "10ms" }}
retry = {{ max_attempts = 20, initial_backoff = "200ms", max_backoff = "500ms" }}
timeout = "10s"
[[adapter.sink]]
type = "kinesis"
stream = "{stream}"
region = "us-east-1"
endpoint = "{endpoint}"
timeout = "2s"
[adapter.dead_letter]
type = "file"
path = "{dead}"
"#,
        nats = nats_url(),
        endpoint = server.endpoint(),
        dead = dead.display(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let c = Coro::start(&path, http, &dir.path().join("coro.log"));
    let publish = |from: usize, to: usize| publish_replies(&js, &prefix, from..to);
    let settled = |n: usize| c.settled("kinstop", "kinesis", n, Duration::from_secs(40));
    let kinesis = kinesis_client(&server.endpoint()).await;
    publish(0, 60).await;
    assert!(settled(60).await, "{}", c.log_text());
    let before = read_stream(&kinesis, &stream).await;
    assert_eq!(before.len(), 60);

    server.stop();
    for tick in 0..4 {
        publish(60 + tick * 20, 80 + tick * 20).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let server = KinesisMock::start(port, tls, &stream, &log);
    publish(140, 160).await;
    const N: usize = 160;
    assert!(
        settled(N).await,
        "{}",
        c.settled_report("kinstop", "kinesis", N)
    );
    let after = read_stream(&kinesis, &stream).await;
    let mut found: HashSet<u64> = before
        .iter()
        .chain(&after)
        .map(|(_, _, d)| seq_of(d).1)
        .collect();
    for line in std::fs::read_to_string(&dead).unwrap_or_default().lines() {
        let letter: serde_json::Value = serde_json::from_str(line).unwrap();
        let Message::Rpc(m) =
            protocol::decode(letter["payload"].as_str().unwrap().as_bytes()).unwrap()
        else {
            panic!()
        };
        found.insert(u64::from_str_radix(m.inner.request_id(), 16).unwrap());
    }
    let missing: Vec<usize> = (0..N).filter(|i| !found.contains(&(*i as u64))).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let outage = (60..140)
        .filter(|i| after.iter().any(|(_, _, d)| seq_of(d).1 == *i as u64))
        .count();
    eprintln!("outage records delivered after the restart: {outage} of 80");
    assert!(
        outage > 0,
        "records held during the outage were delivered once it was back"
    );
    let retries = c
        .metric(r#"coro_sink_retries_total{adapter="kinstop",sink="kinesis"}"#)
        .unwrap_or(0.0);
    assert!(retries > 0.0, "the outage was retried");
    assert_eq!(c.terminate(), 0);
    drop(server);
}

/// A Pub/Sub emulator of the test's own (the `CORO_PUBSUB_EMULATOR` launcher), in a
/// process group of its own: the launcher is a script that starts a JVM, and stopping
/// only the script would leave the server running.
struct PubSubEmulator {
    child: Option<Child>,
    port: u16,
}

impl PubSubEmulator {
    fn start(port: u16, log: &Path) -> PubSubEmulator {
        use std::os::unix::process::CommandExt;
        let bin = std::env::var("CORO_PUBSUB_EMULATOR").unwrap_or_else(|_| {
            panic!("CORO_PUBSUB_EMULATOR is not set: run the tests with scripts/with-servers.sh (the emulator is the Debian package google-cloud-cli-pubsub-emulator)")
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(bin)
            .args(["--host=127.0.0.1", &format!("--port={port}")])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let emulator = PubSubEmulator {
            child: Some(child),
            port,
        };
        // A JVM: seconds to start, more on a loaded machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut head = [0u8; 12];
                s.read_exact(&mut head).is_ok()
                    && head.starts_with(b"HTTP/1.")
                    && &head[9..12] == b"200"
            });
            if ready {
                return emulator;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the Pub/Sub emulator did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM to the whole group, then waits for the launcher.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            // The JVM may outlive the launcher briefly; the port must be free to restart.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for PubSubEmulator {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// A TCP forwarder in front of a server that the test can close: while closed, it
/// drops every connection at once, as a stopped server's port would refuse it. Coro
/// talks to the gate so that a restarted emulator can be given its topic again before
/// Coro sees it (a real Pub/Sub keeps its topics through an outage; the emulator
/// forgets them).
struct Gate {
    port: u16,
    upstream: std::sync::Arc<std::sync::Mutex<Option<u16>>>,
}

impl Gate {
    async fn open_to(upstream: u16) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = std::sync::Arc::new(std::sync::Mutex::new(Some(upstream)));
        let shared = target.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(to) = *shared.lock().unwrap() else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate {
            port,
            upstream: target,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn set(&self, upstream: Option<u16>) {
        *self.upstream.lock().unwrap() = upstream;
    }
}

/// The Pub/Sub emulator stopped while records keep coming (JetStream ingest) and
/// started again: every record is pulled from the subscription (before the stop, or
/// after the restart); none is lost or dead-lettered.
/// Each failed publish pauses its sender's ordering key in the client, so the records
/// after the restart only arrive if the sink resumes those keys (without, every retry
/// is refused as paused until the records run out of attempts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_emulator_stopped_and_started_again_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("psstop");
    let topic = format!("coro-{prefix}");
    let port = free_port();
    let log = dir.path().join("emulator.log");
    let mut server = PubSubEmulator::start(port, &log);
    let host = server.host();
    create_topic(&host, &topic).await;
    let gate = Gate::open_to(port).await;
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let nats_stream = format!("PSSTOP_{prefix}").to_uppercase().replace('-', "_");
    js_stream(&js, &nats_stream, vec![format!("{prefix}.>")]).await;
    let http = free_port();
    let dead = dir.path().join("dead.jsonl");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "psstop"
[adapter.ingest]
type = "jetstream"
servers = ["{nats}"]
stream = "{nats_stream}"
consumer = "coro_psstop"
protocol = "reply"
ack_wait = "30s"
[adapter.pipeline]
batch = {{ max_records = 50, timeout = "10ms" }}
retry = {{ max_attempts = 30, initial_backoff = "200ms", max_backoff = "500ms" }}
timeout = "10s"
[[adapter.sink]]
type = "pubsub"
project = "{PROJECT}"
topic = "{topic}"
timeout = "2s"
[adapter.dead_letter]
type = "file"
path = "{dead}"
"#,
        nats = nats_url(),
        dead = dead.display(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let c = Coro::start_env(
        &path,
        http,
        &dir.path().join("coro.log"),
        &[("PUBSUB_EMULATOR_HOST", &gate.host())],
    );
    let publish = |from: usize, to: usize| publish_replies(&js, &prefix, from..to);
    let settled = |n: usize| c.settled("psstop", "pubsub", n, Duration::from_secs(90));
    publish(0, 60).await;
    assert!(settled(60).await, "{}", c.log_text());
    // The emulator keeps messages in memory only: take them before stopping it.
    let before = pull(&host, &topic, 60, Duration::from_secs(10)).await;
    assert_eq!(before.len(), 60);

    gate.set(None);
    server.stop();
    for tick in 0..4 {
        publish(60 + tick * 20, 80 + tick * 20).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let server = PubSubEmulator::start(port, &log);
    create_topic(&host, &topic).await;
    gate.set(Some(port));
    publish(140, 160).await;
    const N: usize = 160;
    assert!(
        settled(N).await,
        "{}",
        c.settled_report("psstop", "pubsub", N)
    );
    // Until quiet: a publish whose result was lost in the outage is sent again, so
    // the subscription may hold more than N - 60 messages.
    let after = pull(&host, &topic, usize::MAX, Duration::from_secs(5)).await;
    let pulled: HashSet<u64> = before
        .iter()
        .chain(&after)
        .map(|(d, _, _)| seq_of(d).1)
        .collect();
    // The topic is back before Coro can reach the server, so nothing is rejected:
    // every record is retried until it is in the subscription.
    let dead_letters = std::fs::read_to_string(&dead).unwrap_or_default();
    assert!(dead_letters.is_empty(), "dead letters: {dead_letters}");
    let missing: Vec<usize> = (0..N).filter(|i| !pulled.contains(&(*i as u64))).collect();
    assert!(missing.is_empty(), "lost: {missing:?}\n{}", c.log_text());
    eprintln!(
        "pulled {} messages for {N} records ({} duplicates)",
        before.len() + after.len(),
        before.len() + after.len() - pulled.len()
    );
    // Every message keyed by its sender, carrying it, and each sender's first copies in
    // publish order: the sink is `ordered`, so the records retried through the outage
    // went before anything after them (a copy sent again because its result was lost
    // comes later, and is not counted).
    let mut first_seen: HashSet<u64> = HashSet::new();
    let mut per_sender: HashMap<String, Vec<u64>> = HashMap::new();
    for (d, attributes, key) in before.iter().chain(&after) {
        let (sender, seq) = seq_of(d);
        assert_eq!(key, &sender, "ordering key is the sender");
        assert_eq!(attributes.get("choria_sender"), Some(&sender));
        if first_seen.insert(seq) {
            per_sender.entry(sender).or_default().push(seq);
        }
    }
    for (sender, s) in &per_sender {
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(s, &sorted, "order of {sender}");
    }
    let retries = c
        .metric(r#"coro_sink_retries_total{adapter="psstop",sink="pubsub"}"#)
        .unwrap_or(0.0);
    assert!(retries > 0.0, "the outage was retried");
    assert_eq!(c.terminate(), 0);
    drop(server);
}

/// `coro validate --online`: an existing stream and topic pass (exists, writable), a
/// missing stream and topic fail with what to do; nothing is written by the checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_online_checks_streams_and_topics() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("coro-{}", unique("valid"));
    let endpoint = kinesis_endpoint();
    let host = pubsub_host();
    let kinesis = kinesis_client(&endpoint).await;
    create_stream(&kinesis, &name, 1).await;
    create_topic(&host, &name).await;
    let sinks = |stream: &str, topic: &str| {
        format!(
            r#"
[[adapter]]
name = "v"
[adapter.ingest]
type = "nats"
servers = ["{nats}"]
subject = "x.>"
[[adapter.sink]]
type = "kinesis"
stream = "{stream}"
region = "us-east-1"
endpoint = "{endpoint}"
[[adapter.sink]]
type = "pubsub"
project = "{PROJECT}"
topic = "{topic}"
"#,
            nats = nats_url(),
        )
    };
    let run = |text: String| {
        let path = write(dir.path(), "adapters.toml", &text);
        let out = Command::new(env!("CARGO_BIN_EXE_coro"))
            .args(["validate", "--online", path.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(sinks(&name, &name));
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("stream {name} exists: ACTIVE")),
        "{text}"
    );
    assert!(
        text.contains(&format!("stream {name} takes PutRecords")),
        "{text}"
    );
    assert!(
        text.contains(&format!("topic projects/{PROJECT}/topics/{name} exists")),
        "{text}"
    );
    assert!(text.contains("takes Publish"), "{text}");
    assert!(
        read_stream(&kinesis, &name).await.is_empty(),
        "the check wrote nothing"
    );
    assert!(pull(&host, &name, 1, Duration::from_millis(300))
        .await
        .is_empty());

    let (ok, text) = run(sinks("coro-nope", "coro-nope"));
    assert!(!ok, "{text}");
    assert!(text.contains("stream coro-nope does not exist"), "{text}");
    assert!(
        text.contains(&format!(
            "topic projects/{PROJECT}/topics/coro-nope does not exist"
        )),
        "{text}"
    );
}

/// The README's Kinesis and Pub/Sub examples are valid sink configs.
#[test]
fn readme_kinesis_and_pubsub_examples_validate() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("## Kinesis and Google Pub/Sub")
        .expect("the README has the section");
    let blocks: Vec<&str> = readme[start..]
        .split("```toml\n")
        .skip(1)
        .take(2)
        .filter_map(|b| b.split_once("```").map(|(b, _)| b))
        .collect();
    assert_eq!(blocks.len(), 2);
    let doc = format!(
        "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
         servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n{}{}",
        blocks[0], blocks[1]
    );
    match coro_sinks::config::parse(Path::new("README.md#kinesis-pubsub.toml"), &doc) {
        Ok((_, sinks)) => {
            let kinds: Vec<&str> = sinks[0].sinks.iter().map(|(_, c)| c.kind()).collect();
            assert_eq!(kinds, ["kinesis", "pubsub"]);
        }
        Err(errors) => panic!("the README examples do not validate:\n{errors}"),
    }
}

/// Throttling through `coro run`: a fault-injecting proxy between Coro and moto answers
/// chosen records of real `PutRecords` requests as throttled (and keeps them from the
/// server); the pipeline retries only those, and every record is in the stream once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_records_are_retried_by_coro_run_and_arrive_once() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("kthr");
    let stream = format!("coro-{prefix}");
    let endpoint = kinesis_endpoint();
    let kinesis = kinesis_client(&endpoint).await;
    create_stream(&kinesis, &stream, 2).await;
    let proxy = ThrottlingProxy::start(&endpoint).await;
    let http = free_port();
    let dead = dir.path().join("dead.jsonl");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "kthr"
[adapter.ingest]
type = "nats"
servers = ["{nats}"]
subject = "{prefix}.>"
protocol = "reply"
workers = 1
[adapter.pipeline]
batch = {{ max_records = 50, timeout = "10ms" }}
retry = {{ max_attempts = 5, initial_backoff = "50ms", max_backoff = "200ms" }}
[[adapter.sink]]
type = "kinesis"
stream = "{stream}"
region = "us-east-1"
endpoint = "{url}"
backoff = "20ms"
[adapter.dead_letter]
type = "file"
path = "{dead}"
"#,
        nats = nats_url(),
        url = proxy.url,
        dead = dead.display(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let c = Coro::start(&path, http, &dir.path().join("coro.log"));
    let client = async_nats::connect(nats_url()).await.unwrap();
    for i in 0..N {
        let sender = format!("node{}.example.net", i % 4);
        client
            .publish(
                format!("{prefix}.r"),
                v1_reply(&sender, &id(i), i, 10).into(),
            )
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let done = r#"coro_sink_records_total{adapter="kthr",outcome="delivered",sink="kinesis"}"#;
    let ok = eventually(Duration::from_secs(30), || {
        let n = c.metric(done).unwrap_or(0.0);
        Box::pin(async move { n >= N as f64 })
    })
    .await;
    assert!(ok, "{:?}\n{}", c.metric(done), c.log_text());
    let throttled = *proxy.throttled.lock().unwrap();
    assert!(throttled >= N / 4, "the proxy throttled {throttled}");
    let retried = c.metric_sum(
        "coro_kinesis_record_errors_total",
        r#"error="ProvisionedThroughputExceededException""#,
    );
    assert_eq!(retried, throttled as f64);
    let got = read_stream(&kinesis, &stream).await;
    let mut seqs: Vec<u64> = got.iter().map(|(_, _, d)| seq_of(d).1).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (0..N as u64).collect::<Vec<_>>(),
        "each record exactly once"
    );
    assert!(std::fs::read_to_string(&dead)
        .unwrap_or_default()
        .is_empty());
    assert_eq!(c.terminate(), 0);
}

/// Pub/Sub throttling through `coro run`: a proxy in front of the emulator answers
/// every second new `Publish` `RESOURCE_EXHAUSTED` for longer than the sink's timeout,
/// so the client gives up and the pipeline sends the records again; every record is
/// pulled exactly once, in each sender's order, and none is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_throttled_records_are_retried_by_coro_run_and_arrive_once() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("psthr");
    let topic = format!("coro-{prefix}");
    let host = pubsub_host();
    create_topic(&host, &topic).await;
    let proxy =
        pubsub_throttling_proxy::ThrottlingProxy::start(&host, Duration::from_millis(1200)).await;
    let http = free_port();
    let dead = dir.path().join("dead.jsonl");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "psthr"
[adapter.ingest]
type = "nats"
servers = ["{nats}"]
subject = "{prefix}.>"
protocol = "reply"
workers = 1
[adapter.pipeline]
batch = {{ max_records = 50, timeout = "10ms" }}
retry = {{ max_attempts = 20, initial_backoff = "200ms", max_backoff = "500ms" }}
[[adapter.sink]]
type = "pubsub"
project = "{PROJECT}"
topic = "{topic}"
batch_messages = 10
timeout = "400ms"
[adapter.dead_letter]
type = "file"
path = "{dead}"
"#,
        nats = nats_url(),
        dead = dead.display(),
    );
    let path = write(dir.path(), "adapters.toml", &config);
    let c = Coro::start_env(
        &path,
        http,
        &dir.path().join("coro.log"),
        &[("PUBSUB_EMULATOR_HOST", &proxy.host)],
    );
    let client = async_nats::connect(nats_url()).await.unwrap();
    for i in 0..N {
        let sender = format!("node{}.example.net", i % 4);
        client
            .publish(
                format!("{prefix}.r"),
                v1_reply(&sender, &id(i), i, 10).into(),
            )
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    assert!(
        c.settled("psthr", "pubsub", N, Duration::from_secs(60))
            .await,
        "{}",
        c.log_text()
    );
    assert!(
        proxy.throttled_requests() > 0,
        "the proxy throttled nothing"
    );
    let exhausted = c.metric_sum(
        "coro_pubsub_publish_errors_total",
        r#"error="RESOURCE_EXHAUSTED""#,
    );
    assert!(exhausted > 0.0, "throttling reached the pipeline");
    let got = pull(&host, &topic, usize::MAX, Duration::from_secs(3)).await;
    let mut seqs: Vec<u64> = got.iter().map(|(d, _, _)| seq_of(d).1).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (0..N as u64).collect::<Vec<_>>(),
        "each record exactly once"
    );
    // `ordered` (the default) keeps each sender's order through the retries: a record
    // sent again goes before anything handed over after it.
    let mut per_sender: HashMap<String, Vec<u64>> = HashMap::new();
    for (data, _, _) in &got {
        let (sender, seq) = seq_of(data);
        per_sender.entry(sender).or_default().push(seq);
    }
    for (sender, s) in &per_sender {
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(s, &sorted, "order of {sender}");
    }
    assert!(std::fs::read_to_string(&dead)
        .unwrap_or_default()
        .is_empty());
    eprintln!(
        "throttled {} requests ({} messages); {exhausted} records answered retry",
        proxy.throttled_requests(),
        proxy.throttled_messages()
    );
    assert_eq!(c.terminate(), 0);
}
