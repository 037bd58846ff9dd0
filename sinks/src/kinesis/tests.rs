//! Against a real Kinesis-API server (moto_server; `scripts/with-servers.sh` starts
//! one), and for throttling a fault-injecting proxy in front of it.

use super::config::KinesisConfig;
use super::service::KinesisSink;
use super::throttling_proxy::ThrottlingProxy;
use super::KinesisMetrics;
use crate::encoding::{self, Encoding};
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
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

async fn create_stream(client: &Client, stream: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    for _ in 0..100 {
        let d = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        if d.stream_description_summary()
            .unwrap()
            .stream_status()
            .as_str()
            == "ACTIVE"
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {stream} not ACTIVE");
}

/// Every record of `stream`, per shard in sequence order: (shard, partition key, data).
pub(crate) async fn read_stream(client: &Client, stream: &str) -> Vec<(String, String, Vec<u8>)> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for shard in shards.shards() {
        // In sequence-number order, the order Kinesis promises within a shard (moto's
        // GetRecords pages do not always come in that order).
        let mut page = Vec::new();
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_string);
        while let Some(it) = iterator {
            let got = client
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .unwrap();
            if got.records().is_empty() {
                break;
            }
            for r in got.records() {
                page.push((
                    r.sequence_number().parse::<u128>().unwrap_or(u128::MAX),
                    shard.shard_id().to_string(),
                    r.partition_key().unwrap_or_default().to_string(),
                    r.data().as_ref().to_vec(),
                ));
            }
            iterator = got.next_shard_iterator().map(str::to_string);
        }
        page.sort_by_key(|r| r.0);
        out.extend(
            page.into_iter()
                .map(|(_, shard, key, data)| (shard, key, data)),
        );
    }
    out
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
