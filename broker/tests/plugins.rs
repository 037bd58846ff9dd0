//! Sink plugins in `coro run` and `coro validate`, against a real nats-server: the
//! example plugins (Rust with the SDK, plain C) receive what an adapter ingests, and
//! plugins that panic, sleep or answer garbage neither stop the daemon nor the other
//! adapters.

mod common;

#[path = "../../examples/plugins/testing.rs"]
mod testing;

use common::{eventually, free_port, nats_url, unique, Coro};
use coro_core::gojson;
use coro_core::protocol::{self, output::ChoriaStreamsOutput, v1, Message};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

async fn publish(url: &str, subject: &str, n: usize) {
    let client = async_nats::connect(url).await.unwrap();
    for i in 0..n {
        client
            .publish(subject.to_string(), v1_reply(i).into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

async fn wait_for_lines(path: &Path, n: usize, timeout: Duration) -> bool {
    let path = path.to_path_buf();
    eventually(timeout, || {
        let path = path.clone();
        Box::pin(async move { lines(&path).len() >= n })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_get_what_the_adapter_ingests() {
    let url = nats_url();
    let prefix = unique("p1");
    let rust = testing::rust_plugins();
    let tsv = testing::c_plugin("tsv", &[]);
    let dir = tempfile::tempdir().unwrap();
    let (jsonl_out, tsv_out) = (dir.path().join("out.jsonl"), dir.path().join("out.tsv"));
    let http = free_port();
    let config = dir.path().join("adapters.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[http]
listen = "127.0.0.1:{http}"
identity = "test"

[[adapter]]
name = "plugins"
[adapter.ingest]
type = "nats"
servers = ["{url}"]
subject = "{prefix}.in"
[adapter.pipeline]
batch = {{ max_records = 20, timeout = "10ms" }}
[[adapter.sink]]
name = "jsonl"
type = "plugin"
path = "{}"
encoding = "choria_streams"
config = {{ path = "{}", fsync = false }}
[[adapter.sink]]
name = "tsv"
type = "plugin"
path = "{}"
threads = 2
config = {{ path = "{}" }}
"#,
            rust.jsonl.display(),
            jsonl_out.display(),
            tsv.display(),
            tsv_out.display()
        ),
    )
    .unwrap();
    let coro = Coro::start(&config, http, &dir.path().join("coro.log"));
    let n = 50;
    publish(&url, &format!("{prefix}.in"), n).await;
    let arrived = wait_for_lines(&jsonl_out, n, Duration::from_secs(15)).await
        && wait_for_lines(&tsv_out, n, Duration::from_secs(5)).await;
    assert!(arrived, "log:\n{}", coro.log_text());

    // The Rust plugin got the Choria streams document of each reply, and its metadata.
    let mut seen = Vec::new();
    for line in lines(&jsonl_out) {
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        let id = doc["requestid"].as_str().unwrap().to_string();
        let i = usize::from_str_radix(&id, 16).unwrap();
        let Message::Rpc(m) = protocol::decode(&v1_reply(i)).unwrap() else {
            panic!()
        };
        let expected: serde_json::Value =
            serde_json::from_slice(&ChoriaStreamsOutput::from_message(&m).unwrap().to_json())
                .unwrap();
        assert_eq!(doc["data"], expected);
        assert_eq!(doc["subject"], format!("{prefix}.in"));
        assert_eq!(doc["sender"], format!("node{}.example.net", i % 5));
        assert_eq!(doc["kind"], "reply");
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());

    // The C plugin got the raw bodies, with the same metadata.
    let mut seen = Vec::new();
    for line in lines(&tsv_out) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert_eq!(fields[0], format!("{prefix}.in"));
        let i = usize::from_str_radix(fields[2], 16).unwrap();
        assert_eq!(fields[1], format!("node{}.example.net", i % 5));
        assert!(fields[3].starts_with(&format!("{}.{}.", fields[1], fields[2])));
        assert_eq!(fields[4], PONG);
        seen.push(i);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    assert_eq!(
        coro.metric(r#"coro_sink_records_total{adapter="plugins",outcome="delivered",sink="tsv"}"#),
        Some(n as f64)
    );
    let log = coro.log_text();
    assert_eq!(coro.terminate(), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_stop_neither_the_daemon_nor_other_adapters() {
    let url = nats_url();
    let prefix = unique("p2");
    let testsink = &testing::rust_plugins().testsink;
    let faulty = testing::c_plugin("faulty", &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let http = free_port();
    // Every adapter takes every message (each has its own queue group).
    let adapter = |name: &str, sink: &str| {
        format!(
            r#"
[[adapter]]
name = "{name}"
[adapter.ingest]
type = "nats"
servers = ["{url}"]
subject = "{prefix}.in"
[adapter.pipeline]
batch = {{ max_records = 10, timeout = "10ms" }}
retry = {{ max_attempts = 2, initial_backoff = "10ms" }}
[[adapter.sink]]
{sink}
[adapter.dead_letter]
type = "file"
path = "{}"
"#,
            d.join(format!("{name}.dead.jsonl")).display()
        )
    };
    let plugin = |path: &Path, extra: &str| {
        format!("type = \"plugin\"\npath = \"{}\"\n{extra}", path.display())
    };
    let text = [
        format!("[http]\nlisten = \"127.0.0.1:{http}\"\nidentity = \"test\"\n"),
        adapter(
            "healthy",
            &format!(
                "type = \"file\"\npath = \"{}\"",
                d.join("healthy.jsonl").display()
            ),
        ),
        adapter(
            "panicky",
            &plugin(testsink, "config = { panic_in = \"send\" }"),
        ),
        adapter(
            "sleepy",
            &plugin(
                testsink,
                "timeout = \"200ms\"\nconfig = { sleep_ms = 3000 }",
            ),
        ),
        adapter(
            "garbage",
            &plugin(&faulty, "config = { mode = \"garbage\" }"),
        ),
    ]
    .concat();
    let config = d.join("adapters.toml");
    std::fs::write(&config, text).unwrap();
    let coro = Coro::start(&config, http, &d.join("coro.log"));

    let n = 20;
    let started = Instant::now();
    publish(&url, &format!("{prefix}.in"), n).await;
    // The healthy adapter delivers at once, while the sleepy plugin is stuck.
    assert!(
        wait_for_lines(&d.join("healthy.jsonl"), n, Duration::from_secs(10)).await,
        "log:\n{}",
        coro.log_text()
    );
    let healthy_after = started.elapsed();
    assert!(healthy_after < Duration::from_secs(3), "{healthy_after:?}");
    assert_eq!(coro.get("/healthz").map(|(code, _)| code), Some(200));

    // Each misbehaving plugin's records end as dead letters with a clear reason.
    for (name, reason) in [
        (
            "panicky",
            "plugin panicked in send: testsink: asked to panic in send",
        ),
        ("sleepy", "no answer within 200ms"),
        ("garbage", "plugin returned unknown outcome kind 77"),
    ] {
        let path = d.join(format!("{name}.dead.jsonl"));
        assert!(
            wait_for_lines(&path, n, Duration::from_secs(15)).await,
            "{name}: {} dead letters; log:\n{}",
            lines(&path).len(),
            coro.log_text()
        );
        for line in lines(&path) {
            let letter: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(letter["adapter"], name);
            let error = letter["error"].as_str().unwrap();
            assert!(error.contains(reason), "{name}: {error}");
        }
    }
    // Still up, still serving, and it shuts down cleanly.
    assert_eq!(coro.get("/healthz").map(|(code, _)| code), Some(200));
    assert_eq!(lines(&d.join("healthy.jsonl")).len(), n);
    let log = coro.log_text();
    assert!(log.contains("plugin panicked"), "{log}");
    assert_eq!(coro.terminate(), 0, "{log}");
}

#[test]
fn validate_and_run_refuse_plugins_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let testsink = &testing::rust_plugins().testsink;
    let v2 = testing::c_plugin("faulty", &["FAULTY_ABI_VERSION=2"]);
    let config = |sink: &str| {
        let path = dir.path().join("adapters.toml");
        std::fs::write(
            &path,
            format!(
                "[http]\nlisten = \"127.0.0.1:{}\"\n\n[[adapter]]\nname = \"a\"\n[adapter.ingest]\n\
                 type = \"nats\"\nservers = [\"nats://127.0.0.1:1\"]\nsubject = \"x\"\n\
                 [[adapter.sink]]\nname = \"mine\"\ntype = \"plugin\"\n{sink}\n",
                free_port()
            ),
        )
        .unwrap();
        path
    };
    let coro = |args: &[&str], config: &Path| {
        // `coro run --config <file>`, `coro validate <file>`.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coro"));
        cmd.args(args);
        if args == ["run"] {
            cmd.arg("--config");
        }
        cmd.arg(config).output().unwrap()
    };

    // A plugin of another ABI version: validate names the file, line and key.
    let bad = config(&format!("path = \"{}\"", v2.display()));
    let out = coro(&["validate"], &bad);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}:13:1: adapter \"a\": sink \"mine\": path: plugin {}: speaks ABI version 2, this coro \
             speaks version 1; rebuild it with coro_plugin.h or coro-plugin-sdk of this release\n",
            bad.display(),
            v2.display()
        )
    );
    // coro run refuses to start with it, saying why.
    let out = coro(&["run"], &bad);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("speaks ABI version 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The plugin's own config check runs in validate.
    let refused = config(&format!(
        "path = \"{}\"\nconfig = {{ fail = \"sometimes\" }}",
        testsink.display()
    ));
    let out = coro(&["validate"], &refused);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":14:1: adapter \"a\": sink \"mine\": config: plugin ")
            && stderr
                .contains(r#"config refused: fail must be "retry" or "fatal", not "sometimes""#),
        "{stderr}"
    );

    // A good one passes, and the table shows the library.
    let good = config(&format!("path = \"{}\"", testsink.display()));
    let out = coro(&["validate"], &good);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(&format!("mine (plugin): {}", testsink.display())));
}
