//! Against a real Kafka-API broker (tansu; `scripts/with-servers.sh` starts one).

use super::config::KafkaConfig;
use super::encode::header;
use super::read::{self, Event, Received, Start, TopicReader, WrittenAs};
use super::{KafkaMetrics, KafkaSink};
use crate::encoding::{self, Encoding};
use coro_core::protocol::Version;
use coro_core::sink::{Batch, Outcome};
use coro_core::{Kind, Record};
use std::collections::HashMap;
use std::time::Duration;
use tower::ServiceExt;

pub(crate) fn brokers() -> String {
    std::env::var("CORO_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("CORO_TEST_KAFKA_BROKERS is not set: run the tests with `make test` (scripts/with-servers.sh starts tansu; scripts/install-kafka.sh installs it)")
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

fn record(kind: Kind, sender: &str, id: usize) -> Record {
    Record {
        subject: "mcollective.reply.x".into(),
        version: Version::V1,
        kind,
        sender: sender.into(),
        request_id: format!("{id:032x}"),
        agent: if kind == Kind::Registration {
            "registration".into()
        } else {
            "rpcutil".into()
        },
        collective: (kind != Kind::Reply).then(|| "mcollective".to_string()),
        time_ns: 1_700_000_001_000_000_000 + id as i128,
        body: bytes::Bytes::from(format!(
            r#"{{"statuscode":0,"statusmsg":"OK","data":{{"n":{id}}}}}"#
        )),
        raw: bytes::Bytes::new(),
    }
}

fn config(topic: &str) -> KafkaConfig {
    KafkaConfig::new(vec![brokers()], topic)
}

/// Reads `topic` from the beginning until `want` messages arrived or nothing came for
/// `idle`.
async fn read_all(topic: &str, want: usize, idle: Duration) -> Vec<Received> {
    let reader = TopicReader::new(&[brokers()], topic, &Start::Beginning, &[]).unwrap();
    let mut out = Vec::new();
    while out.len() < want {
        match reader.next(idle).await {
            Some(Ok(Event::Message(m))) => out.push(m),
            Some(Ok(Event::PartitionEnd(_))) => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => break,
        }
    }
    out
}

#[tokio::test]
async fn delivers_with_key_headers_and_payload() {
    let topic = unique("coro.test.deliver");
    let sink = KafkaSink::new(config(&topic), "coro.test").unwrap();
    let records: Vec<Record> = (0..20)
        .map(|i| {
            let kind = if i % 2 == 0 {
                Kind::Reply
            } else {
                Kind::Registration
            };
            record(kind, &format!("node{}.example.net", i % 3), i)
        })
        .collect();
    let out = sink
        .clone()
        .oneshot(Batch::new(records.clone()))
        .await
        .unwrap();
    assert_eq!(out, vec![Outcome::Delivered; 20]);

    let got = read_all(&topic, 20, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 20);
    let by_id: HashMap<&str, &Received> = got
        .iter()
        .map(|m| (m.header(header::REQUEST_ID).unwrap(), m))
        .collect();
    assert_eq!(by_id.len(), 20, "each record exactly once");
    for r in &records {
        let m = by_id[r.request_id.as_str()];
        let key = match r.kind {
            Kind::Reply => &r.request_id,
            _ => &r.sender,
        };
        assert_eq!(m.key_str(), Some(key.as_str()));
        assert_eq!(
            m.payload,
            encoding::encode(r, Encoding::ChoriaStreams).unwrap()
        );
        assert_eq!(m.header(header::SENDER), Some(r.sender.as_str()));
        assert_eq!(m.header(header::AGENT), Some(r.agent.as_str()));
        assert_eq!(m.header(header::COLLECTIVE), r.collective.as_deref());
        assert_eq!(m.header(header::PROTOCOL), Some("1"));
        assert_eq!(m.header(header::KIND), Some(r.kind.as_str()));
        assert!(m
            .header(header::TIME)
            .unwrap()
            .starts_with("2023-11-14T22:13:21"));
        assert_eq!(
            m.header(header::IDEMPOTENCY_KEY),
            Some(r.idempotency_key().as_str())
        );
        let w = read::decode(&m.payload, &m.headers).unwrap();
        assert_eq!(w.body, r.body);
    }
}

#[tokio::test]
async fn oversize_record_is_rejected_with_the_kafka_error_and_the_rest_delivered() {
    let topic = unique("coro.test.oversize");
    let mut c = config(&topic);
    c.max_message_bytes = 10_000;
    let metrics = KafkaMetrics::unregistered().unwrap();
    let sink = KafkaSink::with_metrics(c, "coro.test", metrics.for_sink("a", "k")).unwrap();
    let mut records: Vec<Record> = (0..5).map(|i| record(Kind::Reply, "node1", i)).collect();
    records[2].body = bytes::Bytes::from(format!("\"{}\"", "x".repeat(50_000)));
    let out = sink.oneshot(Batch::new(records)).await.unwrap();
    for (i, o) in out.iter().enumerate() {
        if i == 2 {
            let Outcome::Reject { reason } = o else {
                panic!("{o:?}")
            };
            assert!(reason.contains("Message size too large"), "{reason}");
        } else {
            assert_eq!(o, &Outcome::Delivered, "record {i}");
        }
    }
    let got = read_all(&topic, 5, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 4);
    let families = prometheus::Registry::new();
    let registered = KafkaMetrics::register(&families);
    assert!(registered.is_ok());
}

#[tokio::test]
async fn missing_topic_without_auto_creation_is_rejected() {
    let topic = unique("coro.test.missing");
    let mut c = config(&topic);
    c.message_timeout = Duration::from_secs(4);
    c.librdkafka.insert(
        "allow.auto.create.topics".into(),
        super::config::Property("false".into()),
    );
    let sink = KafkaSink::new(c, "coro.test").unwrap();
    let out = sink
        .oneshot(Batch::new(vec![record(Kind::Reply, "n", 1)]))
        .await
        .unwrap();
    let Outcome::Reject { reason } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(reason.contains("Unknown topic or partition"), "{reason}");
}

#[tokio::test]
async fn unreachable_broker_means_retry_not_loss() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = KafkaConfig::new(vec![format!("127.0.0.1:{port}")], "t");
    c.message_timeout = Duration::from_secs(1);
    let sink = KafkaSink::new(c, "coro.test").unwrap();
    let out = sink
        .oneshot(Batch::new(vec![
            record(Kind::Reply, "n", 1),
            record(Kind::Reply, "n", 2),
        ]))
        .await
        .unwrap();
    for o in &out {
        let Outcome::Retry { reason, .. } = o else {
            panic!("{out:?}")
        };
        assert!(reason.contains("timed out"), "{reason}");
    }
}

#[tokio::test]
async fn templates_and_every_encoding_read_back() {
    let prefix = unique("coro.test.tpl");
    for encoding in [Encoding::ChoriaStreams, Encoding::Record, Encoding::Raw] {
        let mut c = config(&format!("{prefix}.{}.{{agent}}", encoding.as_str()));
        c.encoding = encoding;
        c.key = Some("{sender}/{kind}".into());
        c.compression = super::config::Compression::Zstd;
        let sink = KafkaSink::new(c, "coro.test").unwrap();
        let mut r = record(Kind::Request, "odd/name", 7);
        r.agent = "pup:pet".into();
        let out = sink.oneshot(Batch::new(vec![r.clone()])).await.unwrap();
        assert_eq!(out, vec![Outcome::Delivered]);
        let topic = format!("{prefix}.{}.pup_pet", encoding.as_str());
        let got = read_all(&topic, 1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1, "{topic}");
        assert_eq!(got[0].key_str(), Some("odd/name/request"));
        let w = read::decode(&got[0].payload, &got[0].headers).unwrap();
        assert_eq!(w.written_as, WrittenAs::Encoding(encoding));
        assert_eq!(
            (w.sender.as_str(), w.body.as_slice()),
            ("odd/name", &r.body[..])
        );
    }
}

#[tokio::test]
async fn flush_waits_for_what_librdkafka_holds() {
    let topic = unique("coro.test.flush");
    let mut c = config(&topic);
    // Long enough that nothing leaves before the flush asks for it.
    c.linger = Duration::from_secs(30);
    c.message_timeout = Duration::from_secs(60);
    let mut sink = KafkaSink::new(c, "coro.test").unwrap();
    let records: Vec<Record> = (0..50).map(|i| record(Kind::Reply, "n", i)).collect();
    let pending = tower::Service::call(&mut sink, Batch::new(records));
    assert_eq!(sink.in_flight(), 50);
    let started = std::time::Instant::now();
    sink.flush(Duration::from_secs(25)).await.unwrap();
    // Well under the linger, with room for a loaded machine's first metadata fetch.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "flush sends at once"
    );
    assert_eq!(sink.in_flight(), 0);
    assert_eq!(pending.await.unwrap(), vec![Outcome::Delivered; 50]);
}

#[tokio::test]
async fn a_group_starts_where_it_left_off() {
    let topic = unique("coro.test.group");
    let sink = KafkaSink::new(config(&topic), "coro.test").unwrap();
    let first: Vec<Record> = (0..3).map(|i| record(Kind::Reply, "n", i)).collect();
    assert_eq!(
        sink.clone().oneshot(Batch::new(first)).await.unwrap(),
        vec![Outcome::Delivered; 3]
    );
    let group = unique("coro-test-group");
    let read_group = |want: usize| {
        let topic = topic.clone();
        let group = group.clone();
        async move {
            let reader = TopicReader::new(&[brokers()], &topic, &Start::Group(group), &[]).unwrap();
            let mut got = Vec::new();
            let mut ends = 0;
            // Until every message wanted came and a partition end says we caught up.
            while let Some(event) = reader.next(Duration::from_secs(15)).await {
                match event.unwrap() {
                    Event::Message(m) => got.push(m),
                    Event::PartitionEnd(_) => ends += 1,
                }
                if got.len() >= want && ends > 0 && ends >= reader.assigned() {
                    break;
                }
            }
            reader.commit().unwrap();
            got
        }
    };
    assert_eq!(read_group(3).await.len(), 3);
    let second: Vec<Record> = (3..5).map(|i| record(Kind::Reply, "n", i)).collect();
    assert_eq!(
        sink.oneshot(Batch::new(second)).await.unwrap(),
        vec![Outcome::Delivered; 2]
    );
    let got = read_group(2).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|m| m.header(header::REQUEST_ID).unwrap())
        .collect();
    assert_eq!(got.len(), 2, "only what came after the commit: {ids:?}");
}
