//! `coro run` end to end against a real nats-server with JetStream.

mod common;

use common::{eventually, free_port, js_stream, nats_url, synthetic, unique, Coro};
use coro_core::gojson;
use coro_core::protocol::{self, output::ChoriaStreamsOutput, v1, v2, Message};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

const PONG: &str =
    r#"{"action":"ping","statuscode":0,"statusmsg":"OK","data":{"pong":1700000001}}"#;

/// A v1 RPC reply transport with request id `i`.
fn v1_reply(i: usize) -> Vec<u8> {
    let req = v1::Request::new(
        "rpcutil",
        "client.example.net",
        "choria=rip.mcollective",
        60,
        &format!("{i:032x}"),
        "mcollective",
        1_700_000_000,
    );
    let sender = format!("node{}.example.net", i % 5);
    let reply = v1::Reply::for_request(&req, &sender, 1_700_000_001, PONG);
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let headers = v1::Headers {
        sender,
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

/// A v2 RPC reply transport with request id `i`.
fn v2_reply(i: usize) -> Vec<u8> {
    let req = v2::Request::new(
        "rpcutil",
        "client.example.net",
        "up=rip",
        60,
        &format!("v2{i:025}"),
        "choria",
        1_700_000_000_000_000_000,
    );
    let sender = format!("node{}.example.net", i % 5);
    let reply = v2::Reply::for_request(
        &req,
        &sender,
        1_700_000_001_123_400_000 + i as i64,
        PONG.as_bytes(),
    );
    let secure = v2::SecureReply::new(&gojson::to_vec(&reply));
    let headers = v2::Headers {
        sender,
        ..Default::default()
    };
    gojson::to_vec(&v2::Transport::new(&gojson::to_vec(&secure), headers))
}

/// A v1 registration request transport from node `i`.
fn v1_registration(i: usize) -> Vec<u8> {
    let sender = format!("node{i}.example.net");
    let mut req = v1::Request::new(
        "registration",
        &sender,
        &format!("choria={sender}"),
        60,
        &format!("{:032x}", 1_000_000 + i),
        "mcollective",
        1_700_000_000,
    );
    req.message = format!(
        r#"{{"protocol":"choria:registration:inventorycontent:1","content":{{"facts":{{"n":{i}}}}}}}"#
    );
    let secure = v1::SecureRequest::insecure(&gojson::to_string(&req));
    let headers = v1::Headers {
        reply_to: "dev.null".into(),
        sender,
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

/// A v2 request transport with id `i`.
fn v2_request(i: usize) -> Vec<u8> {
    let mut req = v2::Request::new(
        "rpcutil",
        "client.example.net",
        "up=rip",
        60,
        &format!("q2{i:025}"),
        "choria",
        1_700_000_000_000_000_000,
    );
    req.set_message(br#"{"agent":"rpcutil","action":"ping","data":{}}"#);
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let secure = v2::SecureRequest::sign(&gojson::to_vec(&req), "caller.jwt", &key);
    let headers = v2::Headers {
        reply: "choria.reply.x".into(),
        sender: "client.example.net".into(),
        ..Default::default()
    };
    gojson::to_vec(&v2::Transport::new(&gojson::to_vec(&secure), headers))
}

/// What Choria's adapter publishes for `payload`: keyed by request id.
fn expected(payload: &[u8]) -> (String, Vec<u8>) {
    let Message::Rpc(m) = protocol::decode(payload).unwrap() else {
        panic!("not RPC")
    };
    let doc = ChoriaStreamsOutput::from_message(&m).unwrap();
    (doc.requestid.clone(), doc.to_json())
}

/// A stream `IN_<prefix>` holding `n` v1 replies on `<prefix>.in.r`.
async fn filled_stream(
    url: &str,
    prefix: &str,
    n: usize,
) -> (async_nats::jetstream::Context, String) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let input = format!("IN_{prefix}");
    js_stream(&js, &input, vec![format!("{prefix}.in.>")]).await;
    for i in 0..n {
        js.publish(format!("{prefix}.in.r"), v1_reply(i).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    (js, input)
}

/// The request ids in a file sink's output, line by line.
fn request_ids(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["requestid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Every message in `stream`, in order.
async fn read_all(
    stream: &async_nats::jetstream::stream::Stream,
    expect: usize,
) -> Vec<async_nats::jetstream::Message> {
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < expect {
        let mut batch = consumer
            .fetch()
            .max_messages(expect - out.len())
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let before = out.len();
        while let Some(m) = batch.next().await {
            out.push(m.unwrap());
        }
        if out.len() == before {
            break;
        }
    }
    out
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("adapters.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_nats_in_jetstream_out_byte_identical() {
    let url = nats_url();
    let prefix = unique("t1");
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let out = js_stream(
        &js,
        &format!("OUT_{prefix}"),
        vec![format!("{prefix}.out.>")],
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[http]
listen = "127.0.0.1:{http}"
identity = "test"

[[adapter]]
name = "mixed"
[adapter.ingest]
type = "nats"
servers = ["{url}"]
subject = "{prefix}.in.>"
[adapter.pipeline]
batch = {{ max_records = 50, timeout = "20ms" }}
[[adapter.sink]]
type = "jetstream"
servers = ["{url}"]
subject = "{prefix}.out.%s"
"#
        ),
    );
    let coro = Coro::start(&config, http, &dir.path().join("coro.log"));

    let mut want = HashMap::new();
    let mut payloads = vec![synthetic("v1_transport_registration.json")];
    for i in 0..50 {
        payloads.push(v1_reply(i));
        payloads.push(v2_reply(i));
        payloads.push(v1_registration(i));
        payloads.push(v2_request(i));
    }
    for p in &payloads {
        let (id, doc) = expected(p);
        want.insert(id, doc);
        client
            .publish(format!("{prefix}.in.x"), p.clone().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let n = payloads.len();
    assert_eq!(want.len(), n);

    let mut out_stream = out.clone();
    let done = eventually(Duration::from_secs(20), || {
        let mut s = out_stream.clone();
        Box::pin(async move { s.info().await.map(|i| i.state.messages).unwrap_or(0) >= 201 })
    })
    .await;
    assert!(
        done,
        "only {} of {n} arrived; log:\n{}",
        out_stream.info().await.unwrap().state.messages,
        coro.log_text()
    );
    assert_eq!(
        out_stream.info().await.unwrap().state.messages,
        n as u64,
        "exactly N out"
    );

    for m in read_all(&out, n).await {
        let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let id = doc["requestid"].as_str().unwrap().to_string();
        assert_eq!(
            m.payload.as_ref(),
            want[&id].as_slice(),
            "record {id} is not what Choria's adapter publishes"
        );
        assert!(m.subject.ends_with(doc["sender"].as_str().unwrap()));
    }
    // The registration fixture's document is exactly the upstream example.
    let fixture: serde_json::Value =
        serde_json::from_slice(&synthetic("adapter_choria_streams_output.json")).unwrap();
    assert_eq!(
        want["5b1d1e0f0b7a4b8f9c2d3e4f5a6b7c8d"],
        gojson::to_vec(&fixture_doc(&fixture))
    );

    assert_eq!(
        coro.metric_sum("choria_adapter_received_msgs{", r#"role="input""#),
        n as f64
    );
    assert_eq!(
        coro.metric_sum("coro_sink_records_total{", r#"outcome="delivered""#),
        n as f64
    );
    assert_eq!(coro.terminate(), 0);
}

/// The adapter output fixture in Go's key order.
fn fixture_doc(v: &serde_json::Value) -> ChoriaStreamsOutput {
    ChoriaStreamsOutput {
        protocol: coro_core::protocol::output::CHORIA_STREAMS_OUTPUT,
        data: v["data"].as_str().unwrap().into(),
        sender: v["sender"].as_str().unwrap().into(),
        time: v["time"].as_str().unwrap().into(),
        requestid: v["requestid"].as_str().unwrap().into(),
    }
}

/// JetStream ingest hands messages to the pipeline in the order it pulled them,
/// though it settles them concurrently: with one sink call at a time, a file sink
/// writes the stream's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_ingest_keeps_the_stream_order() {
    let url = nats_url();
    let prefix = unique("order");
    let n = 3000usize;
    let (_, input) = filled_stream(&url, &prefix, n).await;
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.jsonl");
    let http = free_port();
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:{http}"
[[adapter]]
name = "ordered"
[adapter.ingest]
type = "jetstream"
servers = ["{url}"]
stream = "{input}"
consumer = "coro_{prefix}"
[adapter.pipeline]
batch = {{ max_records = 50, timeout = "5ms" }}
concurrency = 1
[[adapter.sink]]
type = "file"
path = "{}"
"#,
        out_file.display()
    );
    let coro = Coro::start(
        &write_config(dir.path(), &config),
        http,
        &dir.path().join("coro.log"),
    );
    let done = eventually(Duration::from_secs(60), || {
        let got = request_ids(&out_file).len();
        Box::pin(async move { got >= n })
    })
    .await;
    assert!(done, "{}", coro.log_text());
    let got = request_ids(&out_file);
    let want: Vec<String> = (0..n).map(|i| format!("{i:032x}")).collect();
    let first_out_of_order = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(first_out_of_order, None, "{} records", got.len());
    assert_eq!(coro.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_ingest_survives_sigkill_without_loss() {
    let url = nats_url();
    let prefix = unique("t2");
    let n = 2000usize;
    let (_, input) = filled_stream(&url, &prefix, n).await;

    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.jsonl");
    let window = 100;
    let config_text = |http: u16| {
        format!(
            r#"
[http]
listen = "127.0.0.1:{http}"
drain_timeout = "10s"

[[adapter]]
name = "durable"
[adapter.ingest]
type = "jetstream"
servers = ["{url}"]
stream = "{input}"
consumer = "coro_{prefix}"
ack_wait = "2s"
max_ack_pending = {window}
fetch_batch = 50
[adapter.pipeline]
batch = {{ max_records = 50, timeout = "10ms" }}
rate_limit = 800
[[adapter.sink]]
type = "file"
path = "{}"
fsync = "always"
"#,
            out_file.display()
        )
    };
    let lines = request_ids;

    let http = free_port();
    let coro = Coro::start(
        &write_config(dir.path(), &config_text(http)),
        http,
        &dir.path().join("first.log"),
    );
    // Let it get part of the way, then pull the plug.
    let started = std::time::Instant::now();
    while lines(&out_file).len() < n / 4 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_kill = lines(&out_file).len();
    assert!(
        before_kill > 0 && before_kill < n,
        "killed at {before_kill} of {n}"
    );
    coro.kill();

    let http = free_port();
    let coro = Coro::start(
        &write_config(dir.path(), &config_text(http)),
        http,
        &dir.path().join("second.log"),
    );
    let done = eventually(Duration::from_secs(60), || {
        let got = lines(&out_file);
        Box::pin(async move { got.iter().collect::<std::collections::HashSet<_>>().len() >= n })
    })
    .await;
    let got = lines(&out_file);
    let unique_ids: std::collections::HashSet<_> = got.iter().collect();
    assert!(
        done,
        "{} of {n} distinct records after restart; log:\n{}",
        unique_ids.len(),
        coro.log_text()
    );
    for i in 0..n {
        assert!(unique_ids.contains(&format!("{i:032x}")), "record {i} lost");
    }
    let duplicates = got.len() - unique_ids.len();
    assert!(
        duplicates <= window,
        "{duplicates} duplicates, more than the in-flight window of {window}"
    );
    eprintln!("killed after {before_kill} records; {duplicates} duplicates after restart (window {window})");
    assert_eq!(coro.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_malformed_go_to_the_dead_letter() {
    use coro_core::protocol::{b64_encode, gzip};
    let url = nats_url();
    let prefix = unique("t3");
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let dlq = js_stream(&js, &format!("DLQ_{prefix}"), vec![format!("{prefix}.dlq")]).await;

    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.jsonl");
    let http = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[http]
listen = "127.0.0.1:{http}"
identity = "test"

[[adapter]]
name = "strict"
[adapter.ingest]
type = "nats"
servers = ["{url}"]
subject = "{prefix}.in"
[adapter.pipeline]
max_payload = 8192
max_gunzip = 65536
transform = {{ gunzip_registration = true }}
batch = {{ max_records = 20, timeout = "10ms" }}
[[adapter.sink]]
type = "file"
path = "{}"
[adapter.dead_letter]
type = "jetstream"
servers = ["{url}"]
subject = "{prefix}.dlq"
"#,
            out_file.display()
        ),
    );
    let coro = Coro::start(&config, http, &dir.path().join("coro.log"));

    // Lifecycle events decode, but the file sink's choria_streams encoding has no form
    // for them: the sink rejects them.
    let lifecycle = |i: usize| {
        format!(r#"{{"protocol":"io.choria.lifecycle.v1.alive","id":"l{i}","identity":"n{i}","component":"server","timestamp":1,"version":"1"}}"#).into_bytes()
    };
    let bomb = {
        let mut req = v1::Request::new(
            "registration",
            "bomb.example.net",
            "choria=bomb",
            60,
            &format!("{:032x}", 77),
            "mcollective",
            1_700_000_000,
        );
        req.message = format!(
            r#"{{"protocol":"choria:registration:inventorycontent:1","zcontent":"{}"}}"#,
            b64_encode(&gzip(&vec![b' '; 1 << 20]))
        );
        let s = v1::SecureRequest::insecure(&gojson::to_string(&req));
        gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&s), Default::default()))
    };
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("invalid JSON", b"{not json".to_vec()),
        (
            "bad base64",
            br#"{"protocol":"choria:transport:1","data":"aGVsbG8gd29y!GQ=","headers":{}}"#.to_vec(),
        ),
        (
            "unknown protocol",
            br#"{"protocol":"choria:transport:9","data":""}"#.to_vec(),
        ),
        (
            "mismatched protocol",
            gojson::to_vec(&v1::Transport::new(
                &synthetic("v2_secure_request.json"),
                Default::default(),
            )),
        ),
        (
            "missing field",
            br#"{"protocol":"choria:transport:1","headers":{}}"#.to_vec(),
        ),
        (
            "wrong type",
            br#"{"protocol":"choria:transport:1","data":7,"headers":{}}"#.to_vec(),
        ),
        ("oversize", vec![b' '; 9000]),
        ("gzip bomb", bomb),
        (
            "too deep",
            String::from_utf8(synthetic("v1_request.json"))
                .unwrap()
                .replace(r#""compound": []"#, &format!(r#""compound": [{deep}]"#))
                .into_bytes(),
        ),
    ];
    let mut sent = 0;
    for i in 0..5 {
        client
            .publish(format!("{prefix}.in"), v1_reply(i).into())
            .await
            .unwrap();
        client
            .publish(format!("{prefix}.in"), lifecycle(i).into())
            .await
            .unwrap();
        sent += 1;
    }
    for (_, payload) in &malformed {
        client
            .publish(format!("{prefix}.in"), payload.clone().into())
            .await
            .unwrap();
    }
    // The pipeline goes on after bad input.
    for i in 5..10 {
        client
            .publish(format!("{prefix}.in"), v1_reply(i).into())
            .await
            .unwrap();
        sent += 1;
    }
    client.flush().await.unwrap();
    let letters = 5 + malformed.len();
    let mut dlq_info = dlq.clone();
    let arrived = eventually(Duration::from_secs(20), || {
        let mut s = dlq_info.clone();
        let file = out_file.clone();
        Box::pin(async move {
            s.info()
                .await
                .map(|i| i.state.messages as usize)
                .unwrap_or(0)
                >= letters
                && std::fs::read_to_string(file)
                    .map(|t| t.lines().count())
                    .unwrap_or(0)
                    >= sent
        })
    })
    .await;
    if !arrived {
        let got = read_all(&dlq, letters).await;
        let errors: Vec<String> = got
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload)[..120.min(m.payload.len())].to_string())
            .collect();
        panic!(
            "dead letters: {} {errors:#?}; file lines: {}; log:\n{}",
            dlq_info.info().await.unwrap().state.messages,
            std::fs::read_to_string(&out_file)
                .map(|t| t.lines().count())
                .unwrap_or(0),
            coro.log_text()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap().lines().count(),
        10,
        "only the ten replies reach the file"
    );
    let messages = read_all(&dlq, letters).await;
    assert_eq!(
        messages.len(),
        letters,
        "exactly the rejected and malformed messages"
    );
    let mut errors = Vec::new();
    for m in &messages {
        let letter: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(letter["adapter"], "strict");
        assert_eq!(letter["subject"], format!("{prefix}.in"));
        errors.push(letter["error"].as_str().unwrap().to_string());
        if letter["error"].as_str().unwrap().contains("lifecycle") {
            assert_eq!(letter["sink"], "file");
            assert!(letter["payload"]
                .as_str()
                .unwrap()
                .starts_with(r#"{"protocol":"io.choria.lifecycle.v1.alive""#));
        }
    }
    let expect = [
        ("lifecycle", 5),
        ("decode: payload: invalid JSON", 1),
        ("not valid base64 at offset 12", 1),
        ("unknown protocol", 1),
        ("expected protocol choria:secure:request:1", 1),
        ("missing required field `data`", 1),
        ("wrong type", 1),
        ("over the 8192 byte limit", 1),
        ("gzip output is over the 65536 byte limit", 1),
        ("nesting is deeper than 128 levels", 1),
    ];
    for (needle, count) in expect {
        assert_eq!(
            errors.iter().filter(|e| e.contains(needle)).count(),
            count,
            "{needle}: {errors:#?}"
        );
    }
    // The lifecycle events and the gzip bomb were refused inside the file sink's
    // pipeline; the undecodable ones before any sink.
    assert_eq!(
        coro.metric(r#"coro_dead_letters_total{adapter="strict",sink="file"}"#),
        Some(6.0)
    );
    assert_eq!(
        coro.metric(r#"coro_dead_letters_total{adapter="strict",sink=""}"#),
        Some(8.0)
    );
    // Choria's error counter: decode failures on the input side, sink refusals (the
    // lifecycle events and the gzip bomb caught by the transform) on the output side.
    assert_eq!(
        coro.metric_sum("choria_adapter_errors{", r#"role="input""#),
        8.0
    );
    assert_eq!(
        coro.metric_sum("choria_adapter_errors{", r#"role="output""#),
        6.0
    );
    assert_eq!(coro.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_stops_the_pull_and_loses_nothing() {
    let url = nats_url();
    let prefix = unique("t4");
    let n = 500usize;
    let (js, input) = filled_stream(&url, &prefix, n).await;
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let window = 50;
    // No stream captures the sink's subject yet: every publish fails until one does.
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[http]
listen = "127.0.0.1:{http}"

[[adapter]]
name = "stalled"
[adapter.ingest]
type = "jetstream"
servers = ["{url}"]
stream = "{input}"
consumer = "coro_{prefix}"
max_ack_pending = {window}
ack_wait = "5s"
[adapter.pipeline]
retry = {{ initial_backoff = "50ms", max_backoff = "200ms" }}
timeout = "1s"
[[adapter.sink]]
type = "jetstream"
servers = ["{url}"]
subject = "{prefix}.out.%s"
ack_timeout = "500ms"
"#
        ),
    );
    let coro = Coro::start(&config, http, &dir.path().join("coro.log"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Backpressure: no more than the window is taken, nothing is acknowledged.
    let in_flight = coro
        .metric(r#"coro_ingest_in_flight{adapter="stalled"}"#)
        .unwrap();
    assert!(
        in_flight > 0.0 && in_flight <= window as f64,
        "in flight: {in_flight}"
    );
    let mut consumer = js
        .get_stream(&input)
        .await
        .unwrap()
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&format!("coro_{prefix}"))
        .await
        .unwrap();
    let info = consumer.info().await.unwrap().clone();
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "nothing acknowledged while the sink is down"
    );
    assert!(
        info.num_pending as usize >= n - window,
        "the rest stays in the stream: {}",
        info.num_pending
    );
    assert!(coro.metric_sum("coro_sink_retries_total{", "stalled") > 0.0);
    let lag = coro
        .metric(r#"coro_consumer_pending{adapter="stalled"}"#)
        .unwrap_or(0.0);
    assert!(lag >= 300.0, "consumer lag reported: {lag}");

    // The sink comes back: everything arrives, and the consumer is acknowledged to the end.
    let out = js_stream(
        &js,
        &format!("OUT_{prefix}"),
        vec![format!("{prefix}.out.>")],
    )
    .await;
    let mut out_info = out.clone();
    let done = eventually(Duration::from_secs(30), || {
        let mut s = out_info.clone();
        Box::pin(async move {
            s.info()
                .await
                .map(|i| i.state.messages as usize)
                .unwrap_or(0)
                >= n
        })
    })
    .await;
    assert!(
        done,
        "{} of {n} after the sink came back; log:\n{}",
        out_info.info().await.unwrap().state.messages,
        coro.log_text()
    );
    assert_eq!(out_info.info().await.unwrap().state.messages as usize, n);
    let acked = eventually(Duration::from_secs(10), || {
        let mut c = consumer.clone();
        Box::pin(async move {
            c.info()
                .await
                .map(|i| i.ack_floor.stream_sequence)
                .unwrap_or(0)
                >= n as u64
        })
    })
    .await;
    assert!(acked, "not every message was acknowledged");
    assert_eq!(coro.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choria_broker_config_runs_unchanged() {
    let url = nats_url();
    let host_port = url.trim_start_matches("nats://").to_string();
    let prefix = unique("t5");
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let nodes = js_stream(
        &js,
        &format!("NODES_{prefix}"),
        vec![format!("{prefix}.nodes.>")],
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    // A Go broker's adapter section (machine-room style), as it is written there.
    let config = dir.path().join("broker.conf");
    std::fs::write(
        &config,
        format!(
            "# Choria broker\n\
             identity = broker1.example.net\n\
             plugin.choria.stats_port = {http}\n\
             plugin.choria.middleware_hosts = {host_port}\n\
             plugin.choria.adapters = registration\n\
             plugin.choria.adapter.registration.type = choria_streams\n\
             plugin.choria.adapter.registration.queue_len = 1000\n\
             plugin.choria.adapter.registration.ingest.topic = {prefix}.broadcast.agent.registration\n\
             plugin.choria.adapter.registration.ingest.protocol = request\n\
             plugin.choria.adapter.registration.ingest.workers = 3\n\
             plugin.choria.adapter.registration.stream.topic = {prefix}.nodes.%s\n\
             plugin.choria.adapter.registration.stream.workers = 3\n"
        ),
    )
    .unwrap();
    let coro = Coro::start(&config, http, &dir.path().join("coro.log"));
    // Go's scrape paths work too.
    assert!(coro
        .get("/choria/prometheus")
        .is_some_and(|(code, body)| code == 200 && body.contains("choria_adapter_queue_capacity")));

    let registration = synthetic("v1_transport_registration.json");
    client
        .publish(
            format!("{prefix}.broadcast.agent.registration"),
            registration.into(),
        )
        .await
        .unwrap();
    // A reply is not what this adapter takes (ingest.protocol = request).
    client
        .publish(
            format!("{prefix}.broadcast.agent.registration"),
            synthetic("v1_transport_reply.wire").into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut info = nodes.clone();
    let arrived = eventually(Duration::from_secs(15), || {
        let mut s = info.clone();
        Box::pin(async move { s.info().await.map(|i| i.state.messages).unwrap_or(0) >= 1 })
    })
    .await;
    assert!(arrived, "nothing published; log:\n{}", coro.log_text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(info.info().await.unwrap().state.messages, 1);
    let m = read_all(&nodes, 1).await.remove(0);
    assert_eq!(
        m.subject.as_str(),
        format!("{prefix}.nodes.node1.example.net")
    );
    // Byte for byte what Go's adapter publishes for this message.
    let fixture: serde_json::Value =
        serde_json::from_slice(&synthetic("adapter_choria_streams_output.json")).unwrap();
    assert_eq!(
        m.payload.as_ref(),
        gojson::to_vec(&fixture_doc(&fixture)).as_slice()
    );
    assert_eq!(
        coro.metric_sum(
            "choria_adapter_received_msgs{",
            r#"identity="broker1.example.net""#
        ),
        3.0,
        "two in, one out"
    );
    assert_eq!(coro.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_online_checks_streams_and_consumers() {
    let url = nats_url();
    let prefix = unique("t6");
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let input = format!("IN_{prefix}");
    js_stream(&js, &input, vec![format!("{prefix}.in.>")]).await;
    js_stream(
        &js,
        &format!("OUT_{prefix}"),
        vec![format!("{prefix}.out.>")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = |sink_subject: &str| {
        write_config(
            dir.path(),
            &format!(
                r#"
[[adapter]]
name = "checked"
[adapter.ingest]
type = "jetstream"
servers = ["{url}"]
stream = "{input}"
consumer = "coro_{prefix}"
[[adapter.sink]]
type = "jetstream"
servers = ["{url}"]
subject = "{sink_subject}"
"#
            ),
        )
    };
    let run = |path: std::path::PathBuf| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coro"))
            .args(["validate", "--online"])
            .arg(path)
            .output()
            .unwrap()
    };
    let good = run(config(&format!("{prefix}.out.%s")));
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert_eq!(good.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "ok    adapter \"checked\": ingest: stream {input} exists"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("does not exist yet; coro creates it with explicit acks"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("stream OUT_{prefix} captures {prefix}.out.%s")),
        "{stdout}"
    );

    let bad = run(config(&format!("{prefix}.nowhere.%s")));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(78), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL  adapter \"checked\": sink \"jetstream\": no stream captures {prefix}.nowhere.%s"
        )),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_and_acks_it() {
    let url = nats_url();
    let prefix = unique("t7");
    let n = 1500usize;
    let (_, input) = filled_stream(&url, &prefix, n).await;
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.jsonl");
    let config_text = |http: u16| {
        format!(
            r#"
[http]
listen = "127.0.0.1:{http}"
drain_timeout = "20s"

[[adapter]]
name = "draining"
[adapter.ingest]
type = "jetstream"
servers = ["{url}"]
stream = "{input}"
consumer = "coro_{prefix}"
ack_wait = "3s"
max_ack_pending = 200
[adapter.pipeline]
batch = {{ max_records = 20, timeout = "10ms" }}
rate_limit = 600
[[adapter.sink]]
type = "file"
path = "{}"
"#,
            out_file.display()
        )
    };
    let ids = || request_ids(&out_file);
    let http = free_port();
    let coro = Coro::start(
        &write_config(dir.path(), &config_text(http)),
        http,
        &dir.path().join("first.log"),
    );
    let started = std::time::Instant::now();
    while ids().len() < n / 4 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        coro.metric(r#"coro_ingest_in_flight{adapter="draining"}"#)
            .unwrap_or(0.0)
            > 0.0
    );
    // SIGTERM with messages in flight: they finish, are acknowledged, and coro exits 0.
    assert_eq!(coro.terminate(), 0);
    let after_first = ids().len();
    assert!(
        after_first < n,
        "drained everything before the restart: {after_first}"
    );

    // Whatever the drain had not started comes back (at once after its NAK, or after
    // ack_wait when a pull was still on its way); whatever it delivered it acknowledged,
    // so nothing is written twice.
    let http = free_port();
    let coro = Coro::start(
        &write_config(dir.path(), &config_text(http)),
        http,
        &dir.path().join("second.log"),
    );
    let done = eventually(Duration::from_secs(40), || {
        let count = ids().len();
        Box::pin(async move { count >= n })
    })
    .await;
    let got = ids();
    let unique_ids: std::collections::HashSet<_> = got.iter().collect();
    assert!(
        done && unique_ids.len() == n,
        "{} of {n} after restart; log:\n{}",
        unique_ids.len(),
        coro.log_text()
    );
    assert_eq!(got.len(), n, "a drained message was delivered twice");
    assert_eq!(coro.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_nats_connection() {
    let dir = tempfile::tempdir().unwrap();
    let nats = common::PrivateNats::start(0, dir.path());
    let (url, port) = (nats.url(), nats.port);
    let http = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[http]
listen = "127.0.0.1:{http}"

[[adapter]]
name = "watched"
[adapter.ingest]
type = "nats"
servers = ["{url}"]
subject = "ready.>"
[[adapter.sink]]
type = "blackhole"
"#
        ),
    );
    let coro = Coro::start(&config, http, &dir.path().join("coro.log"));
    assert_eq!(coro.get("/healthz").map(|(c, _)| c), Some(200));
    drop(nats);
    let down = eventually(Duration::from_secs(10), || {
        let code = coro.get("/readyz").map(|(c, _)| c);
        Box::pin(async move { code == Some(503) })
    })
    .await;
    assert!(down, "readyz still ready with the server gone");
    assert_eq!(
        coro.get("/healthz").map(|(c, _)| c),
        Some(200),
        "the process itself is fine"
    );

    // The server comes back on the same port: coro reconnects and is ready again, and
    // messages flow.
    let _nats = common::PrivateNats::start(port, dir.path());
    let up = eventually(Duration::from_secs(20), || {
        let code = coro.get("/readyz").map(|(c, _)| c);
        Box::pin(async move { code == Some(200) })
    })
    .await;
    assert!(
        up,
        "not ready after the server came back; log:\n{}",
        coro.log_text()
    );
    let client = async_nats::connect(&url).await.unwrap();
    client.publish("ready.x", v1_reply(1).into()).await.unwrap();
    client.flush().await.unwrap();
    let delivered = eventually(Duration::from_secs(10), || {
        let n = coro.metric_sum("coro_sink_records_total{", r#"outcome="delivered""#);
        Box::pin(async move { n >= 1.0 })
    })
    .await;
    assert!(delivered, "nothing delivered after the reconnect");
    assert_eq!(coro.terminate(), 0);
}
