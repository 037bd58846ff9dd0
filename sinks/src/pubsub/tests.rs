//! Against the official Pub/Sub emulator (`scripts/with-servers.sh` starts one); topics
//! are made and messages pulled back through its REST API.

use super::config::PubSubConfig;
use super::service::{attribute, PubSubSink};
use super::throttling_proxy::ThrottlingProxy;
use super::PubSubMetrics;
use crate::encoding::{self, Encoding};
use base64::Engine;
use coro_core::protocol::Version;
use coro_core::sink::{Batch, Outcome};
use coro_core::{Kind, Record};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tower::ServiceExt;

/// The emulator's `host:port`, also set as `PUBSUB_EMULATOR_HOST` for the sink.
pub(crate) fn emulator() -> String {
    let host = std::env::var("CORO_TEST_PUBSUB_EMULATOR_HOST").unwrap_or_else(|_| {
        panic!("CORO_TEST_PUBSUB_EMULATOR_HOST is not set: run the tests with scripts/with-servers.sh (it starts the Pub/Sub emulator of the Debian package google-cloud-cli-pubsub-emulator)")
    });
    // Every test of this process uses the same emulator.
    std::env::set_var("PUBSUB_EMULATOR_HOST", &host);
    host
}

pub(crate) const PROJECT: &str = "coro-test";

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{:x}",
        nanos ^ (u128::from(std::process::id()) << 64)
    )
}

fn record(sender: &str, id: usize) -> Record {
    Record {
        subject: "mcollective.reply.x".into(),
        version: Version::V2,
        kind: Kind::Request,
        sender: sender.into(),
        request_id: format!("{id:032x}"),
        agent: "rpcutil".into(),
        collective: Some("mcollective".into()),
        time_ns: 1_700_000_001_000_000_000 + id as i128,
        body: bytes::Bytes::from(format!(r#"{{"n":{id}}}"#)),
        raw: bytes::Bytes::new(),
    }
}

/// Creates `topic` and an ordered subscription `topic-sub` on the emulator.
pub(crate) async fn create(host: &str, topic: &str) {
    let http = reqwest::Client::new();
    let base = format!("http://{host}/v1/projects/{PROJECT}");
    let r = http
        .put(format!("{base}/topics/{topic}"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
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
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

/// A message pulled back: data, attributes, ordering key.
#[derive(Debug, Clone)]
pub(crate) struct Pulled {
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub ordering_key: String,
}

/// Pulls (and acknowledges) from `topic-sub` until `want` came or nothing came for
/// `idle`.
pub(crate) async fn pull(host: &str, topic: &str, want: usize, idle: Duration) -> Vec<Pulled> {
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
            out.push(Pulled {
                data: base64::engine::general_purpose::STANDARD
                    .decode(msg["data"].as_str().unwrap_or(""))
                    .unwrap(),
                attributes: serde_json::from_value(msg["attributes"].clone()).unwrap_or_default(),
                ordering_key: msg["orderingKey"].as_str().unwrap_or("").to_string(),
            });
        }
        http.post(format!("{base}:acknowledge"))
            .json(&serde_json::json!({ "ackIds": acks }))
            .send()
            .await
            .unwrap();
    }
    out
}

async fn sink(config: PubSubConfig) -> PubSubSink {
    let metrics = PubSubMetrics::unregistered()
        .unwrap()
        .for_sink("a", "pubsub");
    PubSubSink::connect(config, Some(metrics)).await.unwrap()
}

#[tokio::test]
async fn messages_carry_attributes_and_keep_order_per_sender() {
    let host = emulator();
    let topic = unique("order");
    create(&host, &topic).await;
    let sink = sink(PubSubConfig::new(PROJECT, &topic)).await;
    let senders = ["node1", "node2", "node3"];
    let records: Vec<Record> = (0..60).map(|i| record(senders[i % 3], i)).collect();
    // Two batches, as the pipeline sends them.
    for chunk in records.chunks(30) {
        let outcomes = sink
            .clone()
            .oneshot(Batch::new(chunk.to_vec()))
            .await
            .unwrap();
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Delivered),
            "{outcomes:?}"
        );
    }
    let got = pull(&host, &topic, 60, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 60);
    let mut per_key: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for m in &got {
        let a = &m.attributes;
        assert_eq!(a[attribute::SENDER], m.ordering_key);
        let id = &a[attribute::REQUEST_ID];
        let r = records.iter().find(|r| &r.request_id == id).unwrap();
        assert_eq!(a[attribute::AGENT], "rpcutil");
        assert_eq!(a[attribute::COLLECTIVE], "mcollective");
        assert_eq!(a[attribute::PROTOCOL], "2");
        assert_eq!(a[attribute::KIND], "request");
        assert_eq!(
            a[attribute::TIME],
            coro_core::protocol::output::rfc3339_nano(r.time_ns).unwrap()
        );
        assert_eq!(a[attribute::IDEMPOTENCY_KEY], r.idempotency_key());
        per_key
            .entry(m.ordering_key.clone())
            .or_default()
            .push(m.data.clone());
    }
    for sender in senders {
        let want: Vec<Vec<u8>> = records
            .iter()
            .filter(|r| r.sender == sender)
            .map(|r| encoding::encode(r, Encoding::ChoriaStreams).unwrap())
            .collect();
        assert_eq!(per_key[sender], want, "order of {sender}");
    }
}

#[tokio::test]
async fn oversize_rejected_missing_topic_rejected() {
    let host = emulator();
    let topic = unique("size");
    create(&host, &topic).await;
    let mut config = PubSubConfig::new(PROJECT, &topic);
    config.max_message_bytes = 1000;
    config.encoding = Encoding::Raw;
    let sink = sink(config).await;
    let mut records = vec![record("a", 1), record("a", 2), record("a", 3)];
    records[1].body = bytes::Bytes::from(vec![b'x'; 2000]);
    let outcomes = sink.oneshot(Batch::new(records)).await.unwrap();
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert!(
        matches!(&outcomes[1], Outcome::Reject { reason } if reason.contains("over the limit")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], Outcome::Delivered);
    assert_eq!(
        pull(&host, &topic, 2, Duration::from_secs(3)).await.len(),
        2
    );

    // A missing topic: rejected (to the dead letter), and the paused ordering key is
    // resumed, so the next batch gets its own answer rather than "paused".
    let missing = sink_for_missing().await;
    for _ in 0..2 {
        let outcomes = missing
            .clone()
            .oneshot(Batch::new(vec![record("a", 1)]))
            .await
            .unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Reject { reason } if reason.contains("not found") || reason.contains("NOT_FOUND") || reason.contains("Not found")),
            "{outcomes:?}"
        );
    }
}

/// A failed publish pauses its ordering key in the client: the rest of that key's
/// batch comes back to be retried, not published out of order; once the sink resumed
/// the key, the retried records and the next ones go out, in order.
#[tokio::test]
async fn failed_ordering_key_is_resumed_and_keeps_order() {
    let host = emulator();
    let topic = unique("resume");
    // No topic yet: the first publish fails with NOT_FOUND.
    let sink = sink(PubSubConfig::new(PROJECT, &topic)).await;
    let first: Vec<Record> = (0..4).map(|i| record("node1", i)).collect();
    let outcomes = sink
        .clone()
        .oneshot(Batch::new(first.clone()))
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], Outcome::Reject { .. }),
        "{outcomes:?}"
    );
    let retried: Vec<Record> = first
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Outcome::Retry { .. }))
        .map(|(r, _)| r.clone())
        .collect();
    assert!(
        outcomes[1..].iter().all(
            |o| matches!(o, Outcome::Retry { reason, .. } if reason.contains("paused"))
                || matches!(o, Outcome::Reject { .. })
        ),
        "{outcomes:?}"
    );

    create(&host, &topic).await;
    let mut again = retried.clone();
    again.extend((4..8).map(|i| record("node1", i)));
    let outcomes = sink.oneshot(Batch::new(again.clone())).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let got = pull(&host, &topic, again.len(), Duration::from_secs(5)).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|m| m.attributes[attribute::REQUEST_ID].as_str())
        .collect();
    let want: Vec<&str> = again.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, want);
}

async fn sink_for_missing() -> PubSubSink {
    sink(PubSubConfig::new(PROJECT, unique("missing"))).await
}

#[tokio::test]
async fn online_check_finds_topic_and_write_access() {
    let host = emulator();
    let topic = unique("online");
    create(&host, &topic).await;
    let checks = super::check_online(&PubSubConfig::new(PROJECT, &topic)).await;
    assert!(checks.iter().all(|c| c.is_ok()), "{checks:?}");
    // Nothing was published by the check.
    assert!(pull(&host, &topic, 1, Duration::from_millis(500))
        .await
        .is_empty());
    let checks = super::check_online(&PubSubConfig::new(PROJECT, unique("nope"))).await;
    assert!(
        matches!(&checks[..], [Err(e)] if e.contains("does not exist")),
        "{checks:?}"
    );
}

/// Sends `records` through `sink` in batches of `batch` as the pipeline does: the
/// records of a batch answered Retry are sent again, in order and after a pause,
/// until delivered, before the next batch. Returns the reasons of those Retries.
async fn send_as_pipeline(sink: &PubSubSink, records: &[Record], batch: usize) -> Vec<String> {
    let mut reasons = Vec::new();
    for chunk in records.chunks(batch) {
        let mut pending = chunk.to_vec();
        for _ in 0..50 {
            let outcomes = sink
                .clone()
                .oneshot(Batch::new(pending.clone()))
                .await
                .unwrap();
            let mut again = Vec::new();
            for (r, o) in pending.iter().zip(outcomes) {
                match o {
                    Outcome::Delivered => {}
                    Outcome::Retry { reason, .. } => {
                        reasons.push(reason);
                        again.push(r.clone());
                    }
                    other => panic!("record {}: {other:?}", r.request_id),
                }
            }
            pending = again;
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(pending.is_empty(), "{} never delivered", pending.len());
    }
    reasons
}

/// 120 records from 4 senders through the sink into the emulator, with the
/// throttling proxy (see [`ThrottlingProxy::start`] for `hold`) in between: each
/// record is pulled back exactly once, each sender's in order. Returns the proxy and
/// the reasons of the records the sink answered Retry, and the sink's metrics.
async fn through_throttling(
    hold: Duration,
    timeout: Duration,
) -> (ThrottlingProxy, Vec<String>, prometheus::Registry) {
    let host = emulator();
    let topic = unique("throttle");
    create(&host, &topic).await;
    let proxy = ThrottlingProxy::start(&host, hold).await;
    let mut config = PubSubConfig::new(PROJECT, &topic);
    // Several Publish requests per ordering key and batch, so some get throttled and
    // others not.
    config.batch_messages = 4;
    config.timeout = timeout;
    let registry = prometheus::Registry::new();
    let metrics = PubSubMetrics::register(&registry)
        .unwrap()
        .for_sink("a", "pubsub");
    // The proxy's address rather than PUBSUB_EMULATOR_HOST, which the other tests of
    // this process use for the emulator itself.
    let at = (Some(format!("http://{}", proxy.host)), true);
    let sink = PubSubSink::connect_at(config, Some(metrics), at)
        .await
        .unwrap();
    let senders = ["node1", "node2", "node3", "node4"];
    let records: Vec<Record> = (0..120).map(|i| record(senders[i % 4], i)).collect();
    let reasons = send_as_pipeline(&sink, &records, 40).await;

    // Until quiet, so a message stored twice would show.
    let got = pull(&host, &topic, usize::MAX, Duration::from_secs(3)).await;
    let mut ids: Vec<&str> = got
        .iter()
        .map(|m| m.attributes[attribute::REQUEST_ID].as_str())
        .collect();
    ids.sort();
    let mut want: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    want.sort();
    assert_eq!(ids, want, "every record exactly once");
    for sender in senders {
        let got: Vec<&str> = got
            .iter()
            .filter(|m| m.ordering_key == sender)
            .map(|m| m.attributes[attribute::REQUEST_ID].as_str())
            .collect();
        let want: Vec<&str> = records
            .iter()
            .filter(|r| r.sender == sender)
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(got, want, "order of {sender}");
    }
    assert!(
        proxy.throttled_requests() > 0,
        "the proxy throttled nothing"
    );
    eprintln!(
        "throttled {} requests ({} messages); the sink answered {} records Retry",
        proxy.throttled_requests(),
        proxy.throttled_messages(),
        reasons.len()
    );
    (proxy, reasons, registry)
}

/// The sink's `coro_pubsub_publish_errors_total` for `error`, both outcomes.
fn errors(registry: &prometheus::Registry, error: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "coro_pubsub_publish_errors_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "error" && l.value() == error)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// A throttled Publish is retried by the client within the sink's timeout: every
/// record is delivered at the first try, and stored once.
#[tokio::test]
async fn throttled_publishes_are_retried_by_the_client_and_arrive_once() {
    let (proxy, reasons, registry) =
        through_throttling(Duration::ZERO, Duration::from_secs(10)).await;
    assert!(proxy.throttled_messages() > 0);
    assert!(reasons.is_empty(), "{reasons:?}");
    assert_eq!(errors(&registry, "RESOURCE_EXHAUSTED"), 0);
}

/// Throttling that outlasts the client's retries (the sink's `timeout`): the sink
/// answers those records Retry (and the rest of their ordering key's batch, paused),
/// and sent again once the throttling is over they are stored once, in order.
#[tokio::test]
async fn throttling_past_the_timeout_is_retried_by_the_pipeline_and_arrives_once() {
    let (_proxy, reasons, registry) =
        through_throttling(Duration::from_millis(1200), Duration::from_millis(400)).await;
    // Named by the throttling status, though the client gave up retrying it.
    assert!(errors(&registry, "RESOURCE_EXHAUSTED") > 0);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("injected by the test proxy")),
        "{reasons:?}"
    );
}
