//! The loader against real shared libraries: the example plugins (C and Rust), and
//! plugins that fail in every way the host is meant to contain.

#[path = "../../../examples/plugins/testing.rs"]
mod testing;

use super::{check, Plugin, PluginConfig, PluginError, PluginSink};
use crate::config::SinkConfig;
use crate::encoding::Encoding;
use coro_core::config::SinkSpec;
use coro_core::protocol::Version;
use coro_core::sink::{Batch, Outcome, SinkError};
use coro_core::{Kind, Record};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tower::ServiceExt;

fn record(id: usize, body: &str) -> Record {
    Record {
        subject: "choria.reply.x".into(),
        version: Version::V1,
        kind: Kind::Reply,
        sender: format!("node{id}.example.net"),
        request_id: format!("{id:032}"),
        agent: "rpcutil".into(),
        collective: None,
        time_ns: 1_700_000_000_000_000_000,
        body: bytes::Bytes::from(body.to_string()),
        raw: bytes::Bytes::new(),
    }
}

fn batch(n: usize) -> Batch {
    Batch::new(
        (0..n)
            .map(|i| record(i, &format!(r#"{{"n":{i}}}"#)))
            .collect(),
    )
}

fn config(path: &Path, json: serde_json::Value) -> PluginConfig {
    PluginConfig::new(path, json)
}

async fn open(path: &Path, json: serde_json::Value) -> PluginSink {
    PluginSink::open(config(path, json)).await.unwrap()
}

async fn open_err(path: &Path, json: serde_json::Value) -> PluginError {
    PluginSink::open(config(path, json)).await.unwrap_err()
}

fn faulty(defines: &[&str]) -> PathBuf {
    testing::c_plugin("faulty", defines)
}

fn reason(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Retry { reason, .. } | Outcome::Reject { reason } => reason,
        other => panic!("no reason in {other:?}"),
    }
}

#[tokio::test]
async fn c_plugin_writes_what_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tsv");
    let tsv = testing::c_plugin("tsv", &[]);
    let sink = open(&tsv, serde_json::json!({ "path": out })).await;
    let mut records = batch(3).records;
    records.push(record(3, ""));
    records.push(record(4, "tab\there\nnewline"));
    let outcomes = sink.clone().oneshot(Batch::new(records)).await.unwrap();
    assert_eq!(
        outcomes[..3],
        [Outcome::Delivered, Outcome::Delivered, Outcome::Delivered]
    );
    assert_eq!(
        outcomes[3],
        Outcome::reject(format!("tsv: record {:032} is empty", 3))
    );
    assert_eq!(outcomes[4], Outcome::Delivered);
    drop(sink);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        format!(
            "choria.reply.x\tnode0.example.net\t{:032}\tnode0.example.net.{:032}.1700000000000000000\t{{\"n\":0}}",
            0, 0
        )
    );
    assert!(lines[3].ends_with("\ttab\\there\\nnewline"), "{}", lines[3]);
}

#[tokio::test]
async fn a_thread_safe_plugin_takes_concurrent_batches() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tsv");
    let tsv = testing::c_plugin("tsv", &[]);
    let mut cfg = config(&tsv, serde_json::json!({ "path": out }));
    cfg.threads = 3;
    let sink = PluginSink::open(cfg).await.unwrap();
    let calls = (0..12).map(|_| sink.clone().oneshot(batch(50)));
    for outcomes in futures::future::join_all(calls).await {
        assert!(outcomes.unwrap().iter().all(|o| *o == Outcome::Delivered));
    }
    drop(sink);
    // Every batch is written whole, under the file's lock.
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 600);
    assert!(text.lines().all(|l| l.split('\t').count() == 5));
}

#[tokio::test]
async fn rust_plugin_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let plugins = testing::rust_plugins();
    let mut cfg = config(
        &plugins.jsonl,
        serde_json::json!({ "path": out, "fsync": false }),
    );
    cfg.encoding = Encoding::ChoriaStreams;
    let sink = PluginSink::open(cfg).await.unwrap();
    let mut records = batch(2).records;
    // choria_streams has no form for a lifecycle event: rejected before the plugin.
    records.push(Record {
        kind: Kind::Lifecycle,
        ..record(9, "{}")
    });
    let outcomes = sink.oneshot(Batch::new(records)).await.unwrap();
    assert_eq!(outcomes[..2], [Outcome::Delivered, Outcome::Delivered]);
    assert!(reason(&outcomes[2]).starts_with("encode: choria_streams output needs"));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["sender"], "node1.example.net");
    assert_eq!(lines[1]["kind"], "reply");
    assert_eq!(
        lines[1]["idempotency_key"],
        format!("node1.example.net.{:032}.1700000000000000000", 1)
    );
    assert_eq!(
        lines[1]["data"]["protocol"],
        "choria:adapters:choria_streams:output:1"
    );
    assert_eq!(lines[1]["data"]["data"], r#"{"n":1}"#);
}

#[tokio::test]
async fn files_that_are_not_plugins_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libnot.so");
    std::fs::write(&text, "this is not a shared library\n").unwrap();
    let e = Plugin::load(&text).unwrap_err();
    assert!(matches!(e, PluginError::Load { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "plugin {}: cannot load the library: ",
            text.display()
        )),
        "{msg}"
    );

    let missing = dir.path().join("libmissing.so");
    assert!(matches!(
        Plugin::load(&missing).unwrap_err(),
        PluginError::Load { .. }
    ));

    let no_entry = faulty(&["FAULTY_NO_ENTRY"]);
    assert_eq!(
        Plugin::load(&no_entry).unwrap_err().to_string(),
        format!(
            "plugin {}: no symbol `coro_sink_plugin_v1`: not a Coro sink plugin, or one built \
             for another ABI version (this coro speaks version 1); build it with coro_plugin.h \
             or coro-plugin-sdk of this release",
            no_entry.display()
        )
    );

    let v2 = faulty(&["FAULTY_ABI_VERSION=2"]);
    let e = Plugin::load(&v2).unwrap_err();
    assert_eq!(
        e,
        PluginError::AbiVersion {
            path: v2.clone(),
            found: 2
        }
    );
    assert!(e
        .to_string()
        .contains("speaks ABI version 2, this coro speaks version 1"));

    let null = faulty(&["FAULTY_NULL_TABLE"]);
    assert_eq!(
        Plugin::load(&null).unwrap_err(),
        PluginError::NoTable { path: null.clone() }
    );

    let no_send = faulty(&["FAULTY_NO_SEND"]);
    assert_eq!(
        Plugin::load(&no_send).unwrap_err().to_string(),
        format!(
            "plugin {}: its function table has no `send`, which is required",
            no_send.display()
        )
    );

    // The sink service reports the same at start.
    let e = open_err(&v2, serde_json::json!({})).await;
    assert_eq!(e, PluginError::AbiVersion { path: v2, found: 2 });
}

#[tokio::test]
async fn bad_answers_become_outcomes() {
    let lib = faulty(&[]);
    let n = 4;

    let sink = open(&lib, serde_json::json!({"mode": "garbage"})).await;
    let out = sink.oneshot(batch(n)).await.unwrap();
    assert_eq!(
        out,
        vec![Outcome::reject("plugin returned unknown outcome kind 77"); n]
    );

    let sink = open(&lib, serde_json::json!({"mode": "unset"})).await;
    let out = sink.oneshot(batch(n)).await.unwrap();
    assert_eq!(
        out,
        vec![Outcome::reject("plugin left the outcome unset"); n]
    );

    let sink = open(&lib, serde_json::json!({"mode": "retry"})).await;
    let out = sink.oneshot(batch(n)).await.unwrap();
    assert_eq!(out, vec![Outcome::retry("faulty: asked to fail"); n]);

    let sink = open(&lib, serde_json::json!({"mode": "status"})).await;
    let out = sink.oneshot(batch(n)).await.unwrap();
    assert_eq!(
        out,
        vec![Outcome::reject("send returned unknown status 42 (no reason given)"); n]
    );

    let sink = open(&lib, serde_json::json!({"mode": "reasons"})).await;
    let out = sink.oneshot(batch(2)).await.unwrap();
    assert_eq!(
        out,
        vec![
            Outcome::Retry {
                after: Some(Duration::from_millis(1500)),
                reason: "faulty: later".into()
            },
            Outcome::reject("faulty: never"),
        ]
    );
}

#[tokio::test]
async fn refused_configs_name_the_plugin() {
    let lib = faulty(&[]);
    let refused = serde_json::json!({"mode": "refuse"});
    assert_eq!(
        check(&config(&lib, refused.clone()))
            .unwrap_err()
            .to_string(),
        format!(
            "plugin {}: config refused: faulty: this config is refused",
            lib.display()
        )
    );
    let e = open_err(&lib, refused).await;
    assert_eq!(e.key(), "config");
    assert_eq!(
        e.to_string(),
        format!(
            "plugin {}: could not create the sink: faulty: create refused",
            lib.display()
        )
    );
    // Not thread-safe: more than one thread is refused, by check and at start.
    let mut two = config(&lib, serde_json::json!({}));
    two.threads = 2;
    let e = check(&two).unwrap_err();
    assert!(
        matches!(e, PluginError::NotThreadSafe { threads: 2, .. }),
        "{e:?}"
    );
    assert_eq!(e.key(), "threads");
    assert!(matches!(
        PluginSink::open(two).await.unwrap_err(),
        PluginError::NotThreadSafe { .. }
    ));
    check(&config(&lib, serde_json::json!({}))).unwrap();
}

#[tokio::test]
async fn panics_in_a_rust_plugin_are_contained() {
    let testsink = &testing::rust_plugins().testsink;
    let sink = open(testsink, serde_json::json!({"panic_in": "send"})).await;
    let out = sink.clone().oneshot(batch(3)).await.unwrap();
    assert_eq!(
        out,
        vec![Outcome::retry("plugin panicked in send: testsink: asked to panic in send"); 3]
    );
    // And again: the instance lives on, each panic counted.
    sink.clone().oneshot(batch(1)).await.unwrap();
    assert_eq!(sink.stats().panics(), 2);

    let e = open_err(testsink, serde_json::json!({"panic_in": "new"})).await;
    assert_eq!(
        e.to_string(),
        format!(
            "plugin {}: could not create the sink: plugin panicked in create: testsink: asked to panic in new",
            testsink.display()
        )
    );
    let e = check(&config(testsink, serde_json::json!({"panic_in": "check"}))).unwrap_err();
    assert!(e
        .to_string()
        .ends_with("plugin panicked in check: testsink: asked to panic in check"));

    let e = check(&config(testsink, serde_json::json!({"fail": "sometimes"}))).unwrap_err();
    assert!(e
        .to_string()
        .ends_with(r#"config refused: fail must be "retry" or "fatal", not "sometimes""#));

    // A panic in flush (at drop) is logged, not fatal.
    let sink = open(testsink, serde_json::json!({"panic_in": "flush"})).await;
    assert_eq!(
        sink.clone().oneshot(batch(1)).await.unwrap(),
        vec![Outcome::Delivered]
    );
    drop(sink);

    let sink = open(testsink, serde_json::json!({"fail": "fatal"})).await;
    assert_eq!(
        sink.oneshot(batch(2)).await.unwrap(),
        vec![Outcome::reject("testsink: asked to fail (fatal)"); 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_plugin_holds_only_its_own_threads() {
    let testsink = &testing::rust_plugins().testsink;
    let mut slow = config(testsink, serde_json::json!({"sleep_ms": 1500}));
    slow.timeout = Duration::from_millis(300);
    let slow = PluginSink::open(slow).await.unwrap();
    let fast = open(testsink, serde_json::json!({})).await;

    let started = Instant::now();
    let stuck = tokio::spawn(slow.clone().oneshot(batch(2)));
    // While the slow plugin sleeps, another plugin sink answers at once.
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(
            fast.clone().oneshot(batch(1)).await.unwrap(),
            vec![Outcome::Delivered]
        );
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }
    let e = stuck.await.unwrap().unwrap_err();
    assert_eq!(
        e,
        SinkError::Retriable(format!(
            "plugin {}: no answer within 300ms",
            testsink.display()
        ))
    );
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow.stats().timeouts(), 1);

    // More calls than the queue holds, while the plugin still sleeps: the excess is
    // answered busy at once rather than piling up.
    let calls = (0..40).map(|_| slow.clone().oneshot(batch(1)));
    let answers = futures::future::join_all(calls).await;
    let busy = answers
        .iter()
        .filter(|a| matches!(a, Err(e) if e.to_string().contains("busy")))
        .count();
    assert!(busy >= 40 - 16, "{busy} busy of 40");
    assert!(slow.stats().busy() >= 24);
    // Dropping waits for the plugin only as long as its timeout.
    let t = Instant::now();
    drop(slow);
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn plugin_sinks_are_typed_from_toml() {
    let doc = "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
               servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n[[adapter.sink]]\n\
               type = \"plugin\"\npath = \"/opt/libx.so\"\nthreads = 2\ntimeout = \"5s\"\n\
               config = { url = \"http://h\", n = 3, nested = { list = [1, 2] } }\n";
    let spec: SinkSpec = coro_core::config::parse(Path::new("adapters.toml"), doc)
        .unwrap()
        .adapters
        .remove(0)
        .sinks
        .remove(0);
    let SinkConfig::Plugin(c) = SinkConfig::from_spec(&spec).unwrap() else {
        panic!()
    };
    assert_eq!(c.path, PathBuf::from("/opt/libx.so"));
    assert_eq!(c.threads, 2);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.encoding, Encoding::Raw);
    assert_eq!(
        c.config,
        serde_json::json!({"url": "http://h", "n": 3, "nested": {"list": [1, 2]}})
    );

    let error = |extra: &str| {
        let doc = format!(
            "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
             servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n[[adapter.sink]]\n\
             type = \"plugin\"\n{extra}"
        );
        let spec = coro_core::config::parse(Path::new("adapters.toml"), &doc)
            .unwrap()
            .adapters
            .remove(0)
            .sinks
            .remove(0);
        SinkConfig::check_spec(&spec).unwrap_err().to_string()
    };
    assert_eq!(
        error(""),
        "adapters.toml:7:1: adapter \"a\": sink \"plugin\": missing required key `path`; \
         write e.g. path = \"/usr/lib/coro/libmysink.so\""
    );
    assert_eq!(
        error("path = \"/x.so\"\nthreads = 0\nconfig = 3"),
        "adapters.toml:10:1: adapter \"a\": sink \"plugin\": threads: must be at least 1; write \
         e.g. threads = 1\n\
         adapters.toml:11:1: adapter \"a\": sink \"plugin\": config: must be a table; write e.g. \
         config = { path = \"/tmp/out.jsonl\" }"
    );
}
