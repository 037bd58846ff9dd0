//! Against a real Kinesis-API server (moto_server; `scripts/with-servers.sh` starts
//! one), and for throttling a fault-injecting proxy in front of it.

use super::config::KinesisConfig;
use super::service::KinesisSink;
use super::test_streams::{create_stream, read_stream};
use super::throttling_proxy::ThrottlingProxy;
use super::KinesisMetrics;
use crate::encoding::{self, Encoding};
use coro_core::protocol::Version;
use coro_core::sink::{Batch, Outcome};
use coro_core::{Kind, Record};
use std::collections::HashMap;
use std::time::Duration;
use tower::ServiceExt;

pub(crate) fn endpoint() -> String {
    std::env::var("CORO_TEST_KINESIS_ENDPOINT").unwrap_or_else(|_| {
        panic!("CORO_TEST_KINESIS_ENDPOINT is not set: run the tests with scripts/with-servers.sh (it starts moto_server; scripts/install-kinesis.sh installs it)")
    })
}

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
        version: Version::V1,
        kind: Kind::Reply,
        sender: sender.into(),
        request_id: format!("{id:032x}"),
        agent: "rpcutil".into(),
        collective: None,
        time_ns: 1_700_000_001_000_000_000 + id as i128,
        body: bytes::Bytes::from(format!(r#"{{"statuscode":0,"data":{{"n":{id}}}}}"#)),
        raw: bytes::Bytes::new(),
    }
}

fn config(stream: &str, endpoint: &str) -> KinesisConfig {
    KinesisConfig {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        backoff: Duration::from_millis(10),
        ..KinesisConfig::new(stream)
    }
}

async fn sink(config: KinesisConfig) -> (KinesisSink, super::metrics::SinkMetrics) {
    let metrics = KinesisMetrics::unregistered()
        .unwrap()
        .for_sink("a", "kinesis");
    (
        KinesisSink::connect(config, Some(metrics.clone()))
            .await
            .unwrap(),
        metrics,
    )
}

#[tokio::test]
async fn records_arrive_keyed_by_sender_in_order() {
    let stream = unique("order");
    let (sink, _) = sink(config(&stream, &endpoint())).await;
    create_stream(sink.client(), &stream, 2).await;
    let senders = ["node1", "node2", "node3"];
    let records: Vec<Record> = (0..30).map(|i| record(senders[i % 3], i)).collect();
    let outcomes = sink
        .clone()
        .oneshot(Batch::new(records.clone()))
        .await
        .unwrap();
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    let got = read_stream(sink.client(), &stream).await;
    assert_eq!(got.len(), 30);
    let mut per_sender: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut shard_of: HashMap<String, String> = HashMap::new();
    for (shard, key, data) in got {
        // One sender, one shard.
        assert_eq!(shard_of.entry(key.clone()).or_insert(shard.clone()), &shard);
        per_sender.entry(key).or_default().push(data);
    }
    for sender in senders {
        let want: Vec<Vec<u8>> = records
            .iter()
            .filter(|r| r.sender == sender)
            .map(|r| encoding::encode(r, Encoding::ChoriaStreams).unwrap())
            .collect();
        assert_eq!(per_sender[sender], want, "order of {sender}");
    }
}

#[tokio::test]
async fn large_batches_split_and_oversize_records_rejected() {
    let stream = unique("split");
    let mut c = config(&stream, &endpoint());
    c.max_records = 100;
    c.encoding = Encoding::Raw;
    let (sink, metrics) = sink(c).await;
    create_stream(sink.client(), &stream, 1).await;
    let mut records: Vec<Record> = (0..250).map(|i| record("node1", i)).collect();
    records[7].body = bytes::Bytes::from(vec![b'x'; 1024 * 1024 + 1]);
    let outcomes = sink.clone().oneshot(Batch::new(records)).await.unwrap();
    assert!(
        matches!(&outcomes[7], Outcome::Reject { reason } if reason.contains("over the limit")),
        "{:?}",
        outcomes[7]
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Delivered)
            .count(),
        249
    );
    // 249 records in requests of at most 100.
    assert_eq!(metrics.requests.get(), 3);
    assert_eq!(read_stream(sink.client(), &stream).await.len(), 249);
}

#[tokio::test]
async fn missing_stream_rejects() {
    let (sink, _) = sink(config(&unique("missing"), &endpoint())).await;
    let outcomes = sink
        .oneshot(Batch::new(vec![record("n", 1)]))
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], Outcome::Reject { reason } if reason.contains("ResourceNotFound")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn throttled_records_are_retried_and_arrive_once() {
    let stream = unique("throttle");
    let proxy = ThrottlingProxy::start(&endpoint()).await;
    let (sink, _) = sink(config(&stream, &proxy.url)).await;
    create_stream(sink.client(), &stream, 2).await;
    let mut pending: Vec<Record> = (0..40).map(|i| record(["a", "b"][i % 2], i)).collect();
    let mut rounds = 0;
    // The pipeline's retry loop, in short: resend only what asked for it.
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds < 5, "still throttled after {rounds} rounds");
        let outcomes = sink
            .clone()
            .oneshot(Batch::new(pending.clone()))
            .await
            .unwrap();
        let mut again = Vec::new();
        for (r, o) in pending.into_iter().zip(outcomes) {
            match o {
                Outcome::Delivered => {}
                Outcome::Retry { after, reason } => {
                    assert!(after.is_some(), "throttling asks for a backoff");
                    assert!(reason.contains("ProvisionedThroughputExceeded"), "{reason}");
                    again.push(r);
                }
                other => panic!("{other:?}"),
            }
        }
        pending = again;
    }
    assert_eq!(*proxy.throttled.lock().unwrap(), 20);
    assert_eq!(rounds, 2);
    let got = read_stream(sink.client(), &stream).await;
    let mut ids: Vec<Vec<u8>> = got.into_iter().map(|(_, _, d)| d).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, 40, "every record exactly once");
    assert_eq!(ids.len(), 40);
}
