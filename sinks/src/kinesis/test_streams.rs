//! Test support shared by the sink's tests and the `coro run` tests
//! (broker/tests/kinesis_pubsub.rs includes this file): making a stream and reading
//! it back. `super::aws_sdk_kinesis` is the SDK in both places.

use super::aws_sdk_kinesis::types::ShardIteratorType;
use super::aws_sdk_kinesis::Client;
use std::time::Duration;

/// Creates `stream` with `shards` shards and waits until it is ACTIVE.
pub(crate) async fn create_stream(client: &Client, stream: &str, shards: i32) {
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
