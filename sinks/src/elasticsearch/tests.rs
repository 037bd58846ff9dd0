//! Against the real ES-API server (noida-db) that `scripts/with-servers.sh` starts.

use super::config::{BodyMapping, ElasticsearchConfig, Model};
use super::metrics::ElasticsearchMetrics;
use super::ElasticsearchSink;
use coro_core::protocol::Version;
use coro_core::sink::{Batch, Outcome};
use coro_core::{Kind, Record};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

pub(crate) fn es_url() -> String {
    std::env::var("CORO_TEST_ES_URL").unwrap_or_else(|_| {
        panic!("CORO_TEST_ES_URL is not set: run the tests with `make test` or `scripts/with-servers.sh cargo test` (it starts noida-db; scripts/install-es.sh installs it)")
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

fn config(model: Model, index: &str) -> ElasticsearchConfig {
    ElasticsearchConfig {
        urls: vec![es_url()],
        model,
        index: index.into(),
        username: None,
        password: None,
        api_key: None,
        ca_file: None,
        bulk_max_records: 1000,
        bulk_max_bytes: 5 * 1024 * 1024,
        gzip: false,
        concurrency: 2,
        request_timeout: Duration::from_secs(10),
        install_template: true,
        template_name: None,
        template_priority: 200,
        number_of_shards: None,
        number_of_replicas: Some(0),
        data_stream: false,
        body: BodyMapping::Object,
        stale_after: None,
        stale_check_interval: Duration::from_secs(60),
    }
}

async fn sink(config: ElasticsearchConfig) -> (ElasticsearchSink, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let metrics = ElasticsearchMetrics::register(&registry).unwrap();
    let sink = ElasticsearchSink::connect(config, metrics.for_sink("a", "es"))
        .await
        .unwrap();
    (sink, registry)
}

fn counter(registry: &prometheus::Registry, name: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// `method path` with an optional JSON body: status and JSON answer.
async fn es(method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = super::service::client(&config(Model::Events, "x")).unwrap();
    let response = client
        .send(
            method,
            path,
            HeaderMap::new(),
            None::<&()>,
            body.map(|b| b.to_string()),
            None,
        )
        .await
        .unwrap();
    let status = response.status_code().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn count(index: &str) -> u64 {
    es(Method::Post, &format!("/{index}/_refresh"), None).await;
    es(Method::Get, &format!("/{index}/_count"), None).await.1["count"]
        .as_u64()
        .unwrap_or(0)
}

fn reply(sender: &str, id: usize, body: &str) -> Record {
    Record {
        subject: "mcollective.reply.x".into(),
        version: Version::V1,
        kind: Kind::Reply,
        sender: sender.into(),
        request_id: format!("{id:032x}"),
        agent: "rpcutil".into(),
        collective: None,
        time_ns: 1_700_000_001_000_000_000,
        body: bytes::Bytes::from(body.to_string()),
        raw: bytes::Bytes::new(),
    }
}

fn registration(identity: &str, time_s: i64, facts: Value) -> Record {
    let inventory = json!({
        "agents": [{"name": "rpcutil", "version": "0.29.4"}, {"name": "puppet", "version": "0.28.1"}],
        "classes": ["role::web"],
        "facts": facts,
        "status": {"identity": identity, "uptime": 10, "last_message": time_s},
        "collectives": ["mcollective"],
        "build_info": {"version": "0.29.4", "sha": "x"},
        "machines": []
    });
    let body = json!({
        "protocol": "choria:registration:inventorycontent:1",
        "zcontent": coro_core::protocol::b64_encode(&coro_core::protocol::gzip(inventory.to_string().as_bytes())),
    });
    Record {
        subject: "mcollective.broadcast.agent.registration".into(),
        version: Version::V1,
        kind: Kind::Registration,
        sender: identity.into(),
        request_id: format!("{:032x}", time_s),
        agent: "registration".into(),
        collective: Some("mcollective".into()),
        time_ns: i128::from(time_s) * 1_000_000_000,
        body: bytes::Bytes::from(body.to_string()),
        raw: bytes::Bytes::new(),
    }
}

#[tokio::test]
async fn events_are_created_once_and_duplicates_are_delivered() {
    let index = unique("coro-t-ev");
    let mut c = config(Model::Events, &index);
    // Small requests, so one call makes several and they run concurrently.
    c.bulk_max_records = 7;
    c.gzip = true;
    let (sink, registry) = sink(c).await;
    let batch = Batch::new(
        (0..40)
            .map(|i| {
                reply(
                    &format!("node{}", i % 4),
                    i,
                    r#"{"statuscode":0,"data":{"pong":1}}"#,
                )
            })
            .collect(),
    );
    let out = sink.clone().oneshot(batch.clone()).await.unwrap();
    assert_eq!(out, vec![Outcome::Delivered; 40]);
    assert_eq!(
        counter(&registry, "coro_elasticsearch_bulk_requests_total"),
        6
    );
    // The same records again (a redelivery): 409 each, Delivered, counted.
    let out = sink.clone().oneshot(batch).await.unwrap();
    assert_eq!(out, vec![Outcome::Delivered; 40]);
    assert_eq!(
        counter(&registry, "coro_elasticsearch_duplicates_total"),
        40
    );
    assert_eq!(count(&index).await, 40);

    let (_, doc) = es(
        Method::Get,
        &format!("/{index}/_doc/{}", reply("node1", 1, "").idempotency_key()),
        None,
    )
    .await;
    assert_eq!(doc["_source"]["body"]["data"]["pong"], 1);
    assert_eq!(doc["_source"]["sender"], "node1");
    assert_eq!(doc["_source"]["@timestamp"], "2023-11-14T22:13:21Z");

    // The template was installed and matches; the index has its mapping.
    let checks = super::check_online(&config(Model::Events, &index)).await;
    assert!(checks.iter().all(Result::is_ok), "{checks:?}");
    assert!(
        checks.iter().any(|c| c
            .as_ref()
            .is_ok_and(|t| t.contains("is installed and matches"))),
        "{checks:?}"
    );
}

#[tokio::test]
async fn item_failures_map_to_outcomes() {
    let index = unique("coro-t-items");
    let (sink, registry) = sink(config(Model::Events, &index)).await;
    // `data.pong` becomes a long with the first document; a string there conflicts.
    let first = reply("n1", 1, r#"{"data":{"pong":1}}"#);
    assert_eq!(
        sink.clone().oneshot(Batch::new(vec![first])).await.unwrap(),
        vec![Outcome::Delivered]
    );
    let out = sink
        .clone()
        .oneshot(Batch::new(vec![
            reply("n1", 2, r#"{"data":{"pong":2}}"#),
            reply("n1", 3, r#"{"data":{"pong":"not a number"}}"#),
            reply("n1", 4, r#"{"data":{"pong":4}}"#),
        ]))
        .await
        .unwrap();
    assert_eq!(out[0], Outcome::Delivered);
    assert_eq!(out[2], Outcome::Delivered);
    let Outcome::Reject { reason } = &out[1] else {
        panic!("{out:?}")
    };
    assert!(reason.starts_with("elasticsearch: 400 "), "{reason}");
    assert!(reason.contains("parsing_exception"), "{reason}");
    assert!(reason.contains("pong"), "{reason}");

    // A read-only index (as when a disk fills) answers 429 for its items only: those
    // are retried, and go in once the block is lifted.
    let other = unique("coro-t-items-ok");
    let (other_sink, _) = sink_for(&other).await;
    let settings = format!("/{index}/_settings");
    let block = |value: Value| {
        es(
            Method::Put,
            &settings,
            Some(json!({"index.blocks.read_only_allow_delete": value})),
        )
    };
    assert_eq!(block(json!(true)).await.0, 200);
    let blocked = Batch::new((10..15).map(|i| reply("n2", i, "{}")).collect());
    let out = sink.clone().oneshot(blocked.clone()).await.unwrap();
    for o in &out {
        let Outcome::Retry { reason, .. } = o else {
            panic!("{out:?}")
        };
        assert!(reason.contains("429 cluster_block_exception"), "{reason}");
    }
    // Other indices are not affected.
    assert_eq!(
        other_sink
            .oneshot(Batch::new(vec![reply("n3", 1, "{}")]))
            .await
            .unwrap(),
        vec![Outcome::Delivered]
    );
    assert_eq!(block(Value::Null).await.0, 200);
    assert_eq!(
        sink.oneshot(blocked).await.unwrap(),
        vec![Outcome::Delivered; 5]
    );
    assert_eq!(count(&index).await, 8);
    let metrics = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        metrics.contains(r#"coro_elasticsearch_item_errors_total{adapter="a",sink="es",status="429",type="cluster_block_exception"} 5"#),
        "{metrics}"
    );
}

async fn sink_for(index: &str) -> (ElasticsearchSink, prometheus::Registry) {
    sink(config(Model::Events, index)).await
}

#[tokio::test]
async fn nodes_newest_registration_wins() {
    let index = unique("coro-t-nodes");
    let (sink, registry) = sink(config(Model::Nodes, &index)).await;
    let t = 1_700_000_000;
    let round = |time: i64, n: usize| {
        Batch::new(
            (0..n)
                .map(|i| {
                    registration(
                        &format!("node{i}.example.net"),
                        time,
                        json!({"os": {"family": "Debian", "release": {"major": "12"}}, "round": time, "n": i}),
                    )
                })
                .collect(),
        )
    };
    assert_eq!(
        sink.clone().oneshot(round(t, 20)).await.unwrap(),
        vec![Outcome::Delivered; 20]
    );
    assert_eq!(
        sink.clone().oneshot(round(t + 60, 20)).await.unwrap(),
        vec![Outcome::Delivered; 20]
    );
    // Older than what is stored: refused by Elasticsearch, Delivered (nothing to do).
    assert_eq!(
        sink.clone().oneshot(round(t - 60, 20)).await.unwrap(),
        vec![Outcome::Delivered; 20]
    );
    assert_eq!(
        counter(&registry, "coro_elasticsearch_superseded_total"),
        20
    );
    assert_eq!(count(&index).await, 20);
    let (_, doc) = es(
        Method::Get,
        &format!("/{index}/_doc/node7.example.net"),
        None,
    )
    .await;
    assert_eq!(doc["_source"]["facts"]["round"], t + 60);
    assert_eq!(doc["_version"], (t + 60) * 1_000_000_000);
    assert_eq!(doc["_source"]["last_seen"], "2023-11-14T22:14:20Z");

    // Any fact path is searchable; the mapping has one field for all of them.
    let (_, found) = es(
        Method::Post,
        &format!("/{index}/_search"),
        Some(json!({"query": {"bool": {"filter": [
            {"term": {"facts.os.release.major": "12"}},
            {"term": {"facts.n": "7"}},
            {"nested": {"path": "agents", "query": {"term": {"agents.name": "puppet"}}}}
        ]}}})),
    )
    .await;
    assert_eq!(found["hits"]["total"]["value"], 1, "{found}");
    let (_, mapping) = es(Method::Get, &format!("/{index}/_mapping"), None).await;
    let facts = &mapping[&index]["mappings"]["properties"]["facts"];
    assert_eq!(facts["type"], "flattened", "{mapping}");

    // Not registration: rejected with a reason that says what to do.
    let out = sink
        .oneshot(Batch::new(vec![reply("n", 1, "{}")]))
        .await
        .unwrap();
    assert!(
        matches!(&out[0], Outcome::Reject { reason } if reason.contains("kinds = [\"registration\"]")),
        "{out:?}"
    );
}

#[tokio::test]
async fn stale_nodes_are_marked_and_revived() {
    let index = unique("coro-t-stale");
    let mut c = config(Model::Nodes, &index);
    c.stale_after = Some(Duration::from_secs(900));
    c.stale_check_interval = Duration::from_millis(100);
    let (sink, registry) = sink(c).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let batch = Batch::new(vec![
        registration("silent.example.net", now - 3600, json!({})),
        registration("alive.example.net", now, json!({})),
    ]);
    assert_eq!(
        sink.clone().oneshot(batch).await.unwrap(),
        vec![Outcome::Delivered; 2]
    );
    es(Method::Post, &format!("/{index}/_refresh"), None).await;
    // The job marks the node silent for an hour, once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counter(&registry, "coro_elasticsearch_stale_marked_total") == 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        counter(&registry, "coro_elasticsearch_stale_marked_total"),
        1
    );
    // Marking again finds nothing new.
    let client = sink.client();
    assert_eq!(
        super::stale::mark(client, &index, Duration::from_secs(900))
            .await
            .unwrap(),
        0
    );
    let stale = |id: &'static str| {
        let index = index.clone();
        async move {
            es(Method::Get, &format!("/{index}/_doc/{id}"), None)
                .await
                .1["_source"]["stale"]
                .clone()
        }
    };
    assert_eq!(stale("silent.example.net").await, true);
    assert_eq!(stale("alive.example.net").await, false);
    // Its next registration makes it fresh again.
    let back = Batch::new(vec![registration("silent.example.net", now, json!({}))]);
    assert_eq!(sink.oneshot(back).await.unwrap(), vec![Outcome::Delivered]);
    assert_eq!(stale("silent.example.net").await, false);
}

#[tokio::test]
async fn template_install_is_idempotent_and_checked() {
    let index = unique("coro-t-tpl");
    let mut c = config(Model::Nodes, &format!("{index}-%Y.%m"));
    c.install_template = false;
    // Not installed and not ours to install: validate says so.
    let checks = super::check_online(&c).await;
    assert!(
        checks
            .iter()
            .any(|c| c.as_ref().is_err_and(|e| e.contains("does not exist"))),
        "{checks:?}"
    );
    c.install_template = true;
    let (first, _) = sink(c.clone()).await;
    let (_again, _) = sink(c.clone()).await;
    let name = first.template().name.clone();
    assert_eq!(name, format!("coro-{index}"));
    let (status, tpl) = es(Method::Get, &format!("/_index_template/{name}"), None).await;
    assert_eq!(status, 200);
    let t = &tpl["index_templates"][0]["index_template"];
    assert_eq!(t["index_patterns"][0], format!("{index}-*.*"));
    assert_eq!(t["_meta"]["coro_template"], first.template().hash.as_str());
    let checks = super::check_online(&c).await;
    assert!(checks.iter().all(Result::is_ok), "{checks:?}");

    // An index made without the template (facts mapped as an object) is reported.
    let rogue = format!("{index}-2020.01");
    es(Method::Delete, &format!("/_index_template/{name}"), None).await;
    es(
        Method::Put,
        &format!("/{rogue}/_doc/x?refresh=true"),
        Some(json!({"identity": "x", "facts": {"a": 1}, "last_seen": "2020-01-01T00:00:00Z"})),
    )
    .await;
    let checks = super::check_online(&c).await;
    assert!(
        checks.iter().any(|c| c.as_ref().is_err_and(
            |e| e.contains(&rogue) && e.contains("`facts` mapped as object, not flattened")
        )),
        "{checks:?}"
    );
}

#[tokio::test]
async fn unreachable_server_retries_the_batch() {
    let mut c = config(Model::Events, "coro-t-down");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    c.urls = vec![format!("http://127.0.0.1:{port}")];
    c.request_timeout = Duration::from_secs(2);
    let (sink, registry) = sink(c).await;
    let out = sink
        .oneshot(Batch::new(vec![reply("n", 1, "{}"), reply("n", 2, "{}")]))
        .await
        .unwrap();
    for o in &out {
        assert!(
            matches!(o, Outcome::Retry { reason, .. } if reason.contains("index template")),
            "{out:?}"
        );
    }
    assert_eq!(
        counter(&registry, "coro_elasticsearch_bulk_requests_total"),
        0
    );
}

/// A one-shot HTTP server that records the request head and answers `GET /`.
async fn capture_request() -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"version":{"number":"8.15.3"}}"#;
        let _ = socket
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        String::from_utf8_lossy(&head).to_lowercase()
    });
    (url, task)
}

/// noida-db has no security, so credentials are checked on the wire.
#[tokio::test]
async fn credentials_are_sent() {
    let send = |c: ElasticsearchConfig| async move {
        let client = super::service::client(&c).unwrap();
        let _ = client
            .send(
                Method::Get,
                "/",
                HeaderMap::new(),
                None::<&()>,
                None::<()>,
                None,
            )
            .await;
    };
    let (url, head) = capture_request().await;
    let mut c = config(Model::Events, "x");
    // Behind a proxy with a path prefix: the prefix is kept.
    c.urls = vec![format!("{url}/es")];
    c.username = Some("elastic".into());
    c.password = Some("secret".into());
    send(c.clone()).await;
    let head = head.await.unwrap();
    assert!(head.starts_with("get /es/ http/1.1"), "{head}");
    // base64("elastic:secret")
    assert!(head.contains("authorization: basic zwxhc3rpyzpzzwnyzxq="));

    let (url, head) = capture_request().await;
    c.urls = vec![url];
    c.username = None;
    c.password = None;
    let encoded = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    c.api_key = Some(encoded.into());
    send(c.clone()).await;
    let want = format!("authorization: apikey {}", encoded.to_lowercase());
    assert!(head.await.unwrap().contains(&want));

    let (url, head) = capture_request().await;
    c.urls = vec![url];
    c.api_key = Some("id1:key1".into());
    send(c.clone()).await;
    // base64("id1:key1")
    assert!(head
        .await
        .unwrap()
        .contains("authorization: apikey awqxomtlete="));

    c.api_key = Some("bad key\n".into());
    assert!(super::service::client(&c)
        .unwrap_err()
        .to_string()
        .contains("api_key"));
}

#[tokio::test]
async fn ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(Model::Events, "x");
    c.urls = vec!["https://127.0.0.1:9200".into()];
    c.ca_file = Some(dir.path().join("missing.pem"));
    let e = super::service::client(&c).unwrap_err().to_string();
    assert!(
        e.starts_with("ca_file ") && e.contains("write the PEM"),
        "{e}"
    );
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    c.ca_file = Some(not_pem);
    let e = super::service::client(&c).unwrap_err().to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
}
