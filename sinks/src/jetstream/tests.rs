//! Against a real nats-server with JetStream (`scripts/with-servers.sh` starts one).

use super::config::JetStreamConfig;
use super::JetStreamSink;
use crate::encoding::Encoding;
use coro_core::protocol::Version;
use coro_core::sink::{Batch, Outcome};
use coro_core::{Kind, Record};
use futures::StreamExt;
use std::time::Duration;
use tower::ServiceExt;

pub(crate) fn nats_url() -> String {
    std::env::var("CORO_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!("CORO_TEST_NATS_URL is not set: run the tests with `make test` (scripts/with-servers.sh starts nats-server)")
    })
}

fn record(sender: &str, id: usize) -> Record {
    Record {
        subject: "mcollective.reply.x".into(),
        version: Version::V1,
        kind: Kind::Reply,
        sender: sender.into(),
        request_id: format!("{id:032}"),
        agent: "rpcutil".into(),
        collective: None,
        time_ns: 1_700_000_001_000_000_000,
        body: bytes::Bytes::from(format!(r#"{{"n":{id}}}"#)),
        raw: bytes::Bytes::new(),
    }
}

#[tokio::test]
async fn publishes_awaits_pubacks_and_deduplicates() {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let prefix = format!("coro.test.js{}", fastrand_suffix());
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: prefix.replace('.', "_").to_uppercase(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .unwrap();
    let config = JetStreamConfig {
        servers: vec![nats_url()],
        subject: format!("{prefix}.%s"),
        encoding: Encoding::ChoriaStreams,
        stream: None,
        max_in_flight: 3,
        ack_timeout: Duration::from_secs(5),
    };
    let sink = JetStreamSink::with_client(client.clone(), config);
    let batch = Batch::new(
        (0..10)
            .map(|i| record(&format!("node{}.example.net", i % 2), i))
            .collect(),
    );
    let out = sink.clone().oneshot(batch.clone()).await.unwrap();
    assert_eq!(out, vec![Outcome::Delivered; 10]);
    // The same records again: the stream's duplicate window drops them.
    let out = sink.clone().oneshot(batch).await.unwrap();
    assert_eq!(out, vec![Outcome::Delivered; 10]);
    let mut stream = stream;
    assert_eq!(stream.info().await.unwrap().state.messages, 10);

    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: format!("{prefix}.node1.example.net"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .unwrap()
            .to_string();
        assert!(id.starts_with("node1.example.net."), "{id}");
        got.push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    assert_eq!(got.len(), 5);
    assert!(got[0].starts_with(r#"{"protocol":"choria:adapters:choria_streams:output:1","data":"{\"n\":1}","sender":"node1.example.net""#), "{}", got[0]);
}

#[tokio::test]
async fn no_stream_means_retry_not_loss() {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let config = JetStreamConfig {
        servers: vec![nats_url()],
        subject: format!("coro.nostream{}.%s", fastrand_suffix()),
        encoding: Encoding::ChoriaStreams,
        stream: None,
        max_in_flight: 8,
        ack_timeout: Duration::from_secs(2),
    };
    let sink = JetStreamSink::with_client(client, config);
    let out = sink
        .oneshot(Batch::new(vec![record("n", 1)]))
        .await
        .unwrap();
    assert!(matches!(&out[0], Outcome::Retry { .. }), "{out:?}");
}

fn fastrand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            ^ u128::from(std::process::id())
    )
}
