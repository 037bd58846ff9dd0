//! The assembled pipeline: fixture payloads through decode, filter, transform, batch,
//! metrics, retry, timeout, concurrency and rate limit into a sink that answers per
//! record.

mod common;

use bytes::Bytes;
use coro::core::pipeline::decode::DecodeLayer;
use coro::core::pipeline::{self, metrics::PipelineMetrics, Incoming, PipelineSettings};
use coro::core::sink::{Batch, Outcome, SinkError};
use coro::core::Kind;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

/// Keeps what it is given; asks for one retry of records whose agent is `flaky`, and
/// rejects records from `bad.example.net`.
#[derive(Clone, Default)]
struct Collect {
    got: Arc<Mutex<Vec<(String, Kind)>>>,
    flaky_seen: Arc<Mutex<usize>>,
}

impl tower::Service<Batch> for Collect {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = futures::future::Ready<Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), SinkError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let out = batch
            .records
            .into_iter()
            .map(|r| {
                if r.sender == "bad.example.net" {
                    return Outcome::reject("refused");
                }
                if r.agent == "flaky" {
                    let mut seen = self.flaky_seen.lock().unwrap();
                    *seen += 1;
                    if *seen == 1 {
                        return Outcome::retry("busy");
                    }
                }
                self.got
                    .lock()
                    .unwrap()
                    .push((r.request_id.clone(), r.kind));
                Outcome::Delivered
            })
            .collect();
        futures::future::ready(Ok(out))
    }
}

fn incoming(subject: &str, payload: Vec<u8>) -> Incoming {
    Incoming {
        subject: subject.into(),
        payload: Bytes::from(payload),
    }
}

#[tokio::test]
async fn fixtures_through_the_whole_pipeline() {
    let registry = prometheus::Registry::new();
    let metrics = PipelineMetrics::register(&registry).unwrap();
    let settings: PipelineSettings = toml::from_str(
        r#"
        filter = { kinds = ["reply", "registration"] }
        transform = { gunzip_registration = true }
        batch = { max_records = 3, timeout = "5ms" }
        retry = { initial_backoff = "1ms", max_attempts = 3 }
        rate_limit = 10000
        "#,
    )
    .unwrap();
    let sink = Collect::default();
    let svc = ServiceBuilder::new()
        .layer(DecodeLayer::new(settings.limits()))
        .service(pipeline::build(
            &settings,
            sink.clone(),
            metrics.for_sink("test", "collect"),
            pipeline::Order::Any,
        ));

    let reply = common::synthetic("v1_transport_reply.wire");
    let flaky = String::from_utf8(reply.clone()).unwrap();
    let mut inputs = vec![
        incoming("mcollective.reply.a", reply.clone()),
        incoming(
            "mcollective.reply.b",
            common::synthetic("v2_transport_reply.json"),
        ),
        incoming(
            "mcollective.broadcast.agent.registration",
            common::synthetic("v1_transport_registration.json"),
        ),
        incoming(
            "mcollective.broadcast.agent.rpcutil",
            common::synthetic("v1_transport_request.wire"),
        ),
        incoming("x", b"{not json".to_vec()),
    ];
    // The same reply from a sender the sink refuses, and one the sink first asks to retry.
    let bad = rewrap_sender(&flaky, "bad.example.net", "rpcutil");
    inputs.push(incoming("mcollective.reply.c", bad));
    inputs.push(incoming(
        "mcollective.reply.d",
        rewrap_sender(&flaky, "node1.example.net", "flaky"),
    ));

    let outcomes =
        futures::future::join_all(inputs.into_iter().map(|i| svc.clone().oneshot(i))).await;
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes[0], Outcome::Delivered);
    assert_eq!(outcomes[1], Outcome::Delivered);
    assert_eq!(outcomes[2], Outcome::Delivered);
    assert_eq!(outcomes[3], Outcome::Filtered, "requests are filtered out");
    assert!(
        matches!(&outcomes[4], Outcome::Reject { reason } if reason.starts_with("decode: payload: invalid JSON"))
    );
    assert_eq!(outcomes[5], Outcome::reject("refused"));
    assert_eq!(
        outcomes[6],
        Outcome::Delivered,
        "retried once, then delivered"
    );

    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4);
    assert!(got.contains(&(
        "5b1d1e0f0b7a4b8f9c2d3e4f5a6b7c8d".to_string(),
        Kind::Registration
    )));

    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(
            r#"coro_sink_records_total{adapter="test",outcome="delivered",sink="collect"} 4"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"coro_sink_records_total{adapter="test",outcome="rejected",sink="collect"} 1"#
    ));
    assert!(text.contains(r#"coro_sink_retries_total{adapter="test",sink="collect"} 1"#));
}

#[tokio::test]
async fn dropping_every_handle_drains_the_batcher() {
    let registry = prometheus::Registry::new();
    let metrics = PipelineMetrics::register(&registry).unwrap();
    let settings = PipelineSettings {
        batch: pipeline::batch::BatchConfig {
            max_records: 1000,
            max_bytes: 1 << 30,
            timeout: Duration::from_secs(3600),
        },
        ..Default::default()
    };
    let sink = Collect::default();
    let svc = ServiceBuilder::new()
        .layer(DecodeLayer::new(settings.limits()))
        .service(pipeline::build(
            &settings,
            sink.clone(),
            metrics.for_sink("a", "b"),
            pipeline::Order::Any,
        ));
    let reply = common::synthetic("v1_transport_reply.wire");
    let calls: Vec<_> = (0..10)
        .map(|_| svc.clone().oneshot(incoming("r", reply.clone())))
        .collect();
    drop(svc);
    // The batch never fills and its timeout is an hour away: only the drain sends it.
    let outcomes = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(calls))
        .await
        .expect("the drain did not send the held batch");
    assert!(outcomes
        .iter()
        .all(|o| *o.as_ref().unwrap() == Outcome::Delivered));
    assert_eq!(sink.got.lock().unwrap().len(), 10);
}

/// The v1 reply fixture with another sender and agent in its reply layer (and so a new
/// hash: the secure layer is rebuilt, as a server would).
fn rewrap_sender(wire: &str, sender: &str, agent: &str) -> Vec<u8> {
    use coro::core::gojson;
    use coro::core::protocol::v1;
    let t: v1::Transport = serde_json::from_str(wire).unwrap();
    let secure: v1::SecureReply = serde_json::from_slice(&t.data_bytes().unwrap()).unwrap();
    let mut reply: v1::Reply = serde_json::from_str(&secure.message).unwrap();
    reply.envelope.senderid = sender.into();
    reply.envelope.agent = agent.into();
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), t.headers))
}
