//! The fleet against a real nats-server (`scripts/with-servers.sh` starts it and
//! exports CORO_TEST_NATS_URL). Every test uses its own collective, so tests running in
//! parallel on one server do not see each other's traffic.

use coro_core::gojson;
use coro_core::protocol::{
    self, registration::Registration, v1, v2, verify, Inner, Message, RpcMessage, Secure,
};
use coro_fleet::{Fleet, FleetConfig, Security};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn nats_url() -> String {
    std::env::var("CORO_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!("CORO_TEST_NATS_URL is not set: run the tests with `make test` (scripts/with-servers.sh starts nats-server; scripts/install-nats.sh installs it)")
    })
}

/// A collective (one subject token) no other test uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}", fastrand::u64(..))
}

fn config(nodes: usize, collective: &str) -> FleetConfig {
    FleetConfig {
        nodes,
        servers: vec![nats_url()],
        collective: collective.to_string(),
        identity_prefix: format!("{collective}-n"),
        // Registration off unless a test wants it, so it does not mix with requests.
        registration_interval: Duration::ZERO,
        splay: false,
        connections: 3,
        ..FleetConfig::default()
    }
}

async fn client() -> async_nats::Client {
    async_nats::connect(nats_url()).await.unwrap()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A v1 rpcutil (or other) request from `tester` with an empty filter.
fn v1_request(collective: &str, agent: &str, body: &str) -> v1::Request {
    let mut req = v1::Request::new(
        agent,
        "tester.example.net",
        "choria=tester",
        60,
        &coro_fleet::ids::v1_request_id(),
        collective,
        now_s(),
    );
    req.message = body.to_string();
    req
}

/// The insecure v1 payload of `req` with replies to `reply_to`, built from core types.
fn insecure_payload(req: &v1::Request, reply_to: &str) -> Vec<u8> {
    let secure = v1::SecureRequest::insecure(&gojson::to_string(req));
    let headers = v1::Headers {
        reply_to: reply_to.to_string(),
        sender: req.envelope.senderid.clone(),
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

/// Publishes `payload` to `subject` and collects what arrives on `reply_to`: until
/// `expect` messages came and a grace period passed with no more (so extras show), or
/// until `timeout`.
async fn request(
    nc: &async_nats::Client,
    subject: String,
    payload: Vec<u8>,
    reply_to: &str,
    expect: usize,
    timeout: Duration,
) -> Vec<RpcMessage> {
    let mut sub = nc.subscribe(reply_to.to_string()).await.unwrap();
    nc.flush().await.unwrap();
    nc.publish(subject, payload.into()).await.unwrap();
    nc.flush().await.unwrap();
    collect(&mut sub, expect, timeout).await
}

async fn collect(
    sub: &mut async_nats::Subscriber,
    expect: usize,
    timeout: Duration,
) -> Vec<RpcMessage> {
    let deadline = Instant::now() + timeout;
    let grace = Duration::from_millis(300);
    let mut got = Vec::new();
    loop {
        let wait = if got.len() >= expect {
            grace
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match tokio::time::timeout(wait, sub.next()).await {
            Ok(Some(msg)) => match protocol::decode(&msg.payload).unwrap() {
                Message::Rpc(m) => got.push(*m),
                Message::Lifecycle(e) => panic!("unexpected lifecycle event {e:?}"),
            },
            Ok(None) | Err(_) => return got,
        }
    }
}

fn body_json(m: &RpcMessage) -> serde_json::Value {
    serde_json::from_slice(m.body()).unwrap()
}

fn senders(replies: &[RpcMessage]) -> BTreeSet<String> {
    replies
        .iter()
        .map(|r| r.inner.sender().to_string())
        .collect()
}

fn identities(cfg: &FleetConfig) -> BTreeSet<String> {
    (0..cfg.nodes).map(|i| cfg.identity(i)).collect()
}

const PING: &str = r#"{"agent":"rpcutil","action":"ping","data":{}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_gzipped_inventory_with_insecure_markers() {
    let coll = unique("reg");
    let nc = client().await;
    let mut regs = nc
        .subscribe(format!("{coll}.broadcast.agent.registration"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let cfg = FleetConfig {
        registration_interval: Duration::from_secs(300),
        ..config(50, &coll)
    };
    let fleet = Fleet::start(cfg.clone()).await.unwrap();
    let got = collect(&mut regs, 50, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 50, "one registration per node");
    assert_eq!(senders(&got), identities(&cfg));
    for m in &got {
        let transport = m.transport.as_ref().unwrap();
        assert_eq!(transport.reply_to(), "dev.null");
        assert_eq!(transport.sender(), m.inner.sender());
        let Inner::V1Request(req) = &m.inner else {
            panic!("registration is a v1 request: {:?}", m.inner)
        };
        assert_eq!(req.envelope.agent, "registration");
        assert_eq!(req.envelope.collective, coll);
        assert_eq!(
            req.envelope.callerid,
            format!("choria={}", req.envelope.senderid)
        );
        assert_eq!(req.envelope.requestid.len(), 32);
        let Some(Secure::V1Request(secure)) = &m.secure else {
            panic!("v1 secure request expected")
        };
        assert_eq!(
            verify::verify_v1_request(secure).unwrap(),
            verify::Verified::Insecure {
                marker: protocol::INSECURE_REGISTRATION
            }
        );
        let reg = Registration::decode(m.body()).unwrap();
        assert!(reg.is_compressed(), "zcontent by default");
        let inventory: serde_json::Value =
            serde_json::from_slice(&reg.content(&protocol::Limits::DEFAULT).unwrap()).unwrap();
        let index = inventory["facts"]["fleet_index"].as_u64().unwrap() as usize;
        assert_eq!(cfg.identity(index), req.envelope.senderid);
        assert_eq!(inventory["facts"], fleet.node_facts(index).facts);
        assert_eq!(
            inventory["status"]["identity"],
            req.envelope.senderid.as_str()
        );
        assert_eq!(inventory["collectives"], serde_json::json!([coll]));
        assert!(inventory["classes"]
            .as_array()
            .unwrap()
            .contains(&"profile::base".into()));
        let agents: Vec<&str> = inventory["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(agents, ["discovery", "rpcutil"]);
        assert_eq!(inventory["build_info"]["sha"], "coro-fleet");
        assert_eq!(inventory["machines"], serde_json::json!([]));
    }
    assert_eq!(fleet.stats().registrations_published, 50);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_registration_embeds_content() {
    let coll = unique("regplain");
    let nc = client().await;
    let mut regs = nc
        .subscribe(format!("{coll}.broadcast.agent.registration"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let cfg = FleetConfig {
        registration_interval: Duration::from_secs(300),
        registration_compression: false,
        ..config(3, &coll)
    };
    let fleet = Fleet::start(cfg).await.unwrap();
    let got = collect(&mut regs, 3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    for m in &got {
        let reg = Registration::decode(m.body()).unwrap();
        assert!(!reg.is_compressed());
        let inventory: serde_json::Value =
            serde_json::from_slice(&reg.content(&protocol::Limits::DEFAULT).unwrap()).unwrap();
        assert!(inventory["facts"]["country"].is_string());
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_splay_and_interval() {
    let coll = unique("splay");
    let nc = client().await;
    let mut regs = nc
        .subscribe(format!("{coll}.broadcast.agent.registration"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let cfg = FleetConfig {
        registration_interval: Duration::from_millis(600),
        splay: true,
        ..config(5, &coll)
    };
    let fleet = Fleet::start(cfg).await.unwrap();
    // With splay every node's first publish comes within one interval, then one per
    // interval: in ~2 s each node publishes 3 or 4 times.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    fleet.shutdown().await;
    let got = collect(&mut regs, usize::MAX, Duration::from_millis(500)).await;
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for m in &got {
        *per_node.entry(m.inner.sender().to_string()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 5, "{per_node:?}");
    assert!(
        per_node.values().all(|n| (3..=4).contains(n)),
        "{per_node:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_ping_gets_one_reply_per_node() {
    let coll = unique("ping");
    let cfg = config(50, &coll);
    let fleet = Fleet::start(cfg.clone()).await.unwrap();
    let nc = client().await;
    let req = v1_request(&coll, "rpcutil", PING);
    let inbox = format!("{coll}.reply.{}", req.envelope.requestid);
    let replies = request(
        &nc,
        format!("{coll}.broadcast.agent.rpcutil"),
        insecure_payload(&req, &inbox),
        &inbox,
        50,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(replies.len(), 50);
    assert_eq!(senders(&replies), identities(&cfg));
    let before = now_s();
    for r in &replies {
        let Inner::V1Reply(reply) = &r.inner else {
            panic!("v1 reply expected: {:?}", r.inner)
        };
        assert_eq!(reply.envelope.requestid, req.envelope.requestid);
        assert_eq!(reply.envelope.agent, "rpcutil");
        let transport = r.transport.as_ref().unwrap();
        assert_eq!(transport.sender(), reply.envelope.senderid);
        assert_eq!(transport.reply_to(), "");
        let Some(Secure::V1Reply(secure)) = &r.secure else {
            panic!("secure reply expected")
        };
        assert_eq!(
            verify::verify_v1_reply(secure).unwrap(),
            verify::Verified::HashOnly
        );
        let body = body_json(r);
        assert_eq!(body["action"], "ping");
        assert_eq!(body["statuscode"], 0);
        assert_eq!(body["statusmsg"], "OK");
        let pong = body["data"]["pong"].as_i64().unwrap();
        assert!((pong - before).abs() < 30, "pong {pong} is a unix time");
    }
    let stats = fleet.stats();
    assert_eq!(stats.requests_received, 50);
    assert_eq!(stats.requests_answered, 50);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_matching_nodes_only() {
    let coll = unique("filter");
    let cfg = config(50, &coll);
    let fleet = Fleet::start(cfg.clone()).await.unwrap();
    let nc = client().await;
    let rpcutil = format!("{coll}.broadcast.agent.rpcutil");

    // Identity filter: exactly the named nodes.
    let mut req = v1_request(&coll, "rpcutil", PING);
    let wanted = [cfg.identity(3), cfg.identity(17)];
    let filter = req.envelope.filter.as_mut().unwrap();
    filter.add_agent("rpcutil");
    for id in &wanted {
        filter.add_identity(id);
    }
    let inbox = format!("{coll}.reply.a");
    let replies = request(
        &nc,
        rpcutil.clone(),
        insecure_payload(&req, &inbox),
        &inbox,
        2,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(senders(&replies), wanted.iter().cloned().collect());
    assert_eq!(replies.len(), 2);

    // Fact filter: numeric comparison on a generated fact.
    let mut req = v1_request(&coll, "rpcutil", PING);
    req.envelope
        .filter
        .as_mut()
        .unwrap()
        .add_fact("fleet_index", "<", "5")
        .unwrap();
    let inbox = format!("{coll}.reply.b");
    let replies = request(
        &nc,
        rpcutil.clone(),
        insecure_payload(&req, &inbox),
        &inbox,
        5,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(senders(&replies), (0..5).map(|i| cfg.identity(i)).collect());

    // Fact and class filters together, checked against the generated facts.
    let country = fleet.node_facts(0).facts["country"]
        .as_str()
        .unwrap()
        .to_string();
    let role = fleet.node_facts(0).facts["role"]
        .as_str()
        .unwrap()
        .to_string();
    let expected: BTreeSet<String> = (0..cfg.nodes)
        .filter(|i| {
            let f = fleet.node_facts(*i).facts;
            f["country"] == country.as_str() && f["role"] == role.as_str()
        })
        .map(|i| cfg.identity(i))
        .collect();
    let mut req = v1_request(&coll, "rpcutil", PING);
    let filter = req.envelope.filter.as_mut().unwrap();
    filter.add_fact("country", "==", &country).unwrap();
    filter.add_class(&format!("role::{role}"));
    let inbox = format!("{coll}.reply.c");
    let replies = request(
        &nc,
        rpcutil.clone(),
        insecure_payload(&req, &inbox),
        &inbox,
        expected.len(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(senders(&replies), expected);
    assert_eq!(replies.len(), expected.len());

    // An agent the nodes do not have: nobody answers.
    let mut req = v1_request(&coll, "rpcutil", PING);
    req.envelope.filter.as_mut().unwrap().add_agent("puppet");
    let inbox = format!("{coll}.reply.d");
    let replies = request(
        &nc,
        rpcutil,
        insecure_payload(&req, &inbox),
        &inbox,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(replies.is_empty());

    let stats = fleet.stats();
    assert_eq!(stats.requests_received, 200);
    assert_eq!(stats.requests_answered, 2 + 5 + expected.len() as u64);
    assert_eq!(stats.requests_filtered, 200 - stats.requests_answered);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_requests_get_no_reply() {
    let coll = unique("ttl");
    let fleet = Fleet::start(config(20, &coll)).await.unwrap();
    let nc = client().await;
    let mut req = v1_request(&coll, "rpcutil", PING);
    req.envelope.time = now_s() - 2 * req.envelope.ttl;
    let inbox = format!("{coll}.reply.old");
    let replies = request(
        &nc,
        format!("{coll}.broadcast.agent.rpcutil"),
        insecure_payload(&req, &inbox),
        &inbox,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(replies.is_empty());
    // From the future too.
    req.envelope.time = now_s() + 2 * req.envelope.ttl;
    let replies = request(
        &nc,
        format!("{coll}.broadcast.agent.rpcutil"),
        insecure_payload(&req, &inbox),
        &inbox,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(replies.is_empty());
    let stats = fleet.stats();
    assert_eq!(stats.requests_expired, 40);
    assert_eq!(stats.requests_answered, 0);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directed_request_reaches_one_node() {
    let coll = unique("direct");
    let cfg = config(30, &coll);
    let fleet = Fleet::start(cfg.clone()).await.unwrap();
    let nc = client().await;
    let target = cfg.identity(11);
    let mut req = v1_request(&coll, "rpcutil", PING);
    // Go clients add the identity to the filter of direct requests.
    req.envelope.filter.as_mut().unwrap().add_identity(&target);
    let inbox = format!("{coll}.reply.direct");
    let replies = request(
        &nc,
        format!("{coll}.node.{target}"),
        insecure_payload(&req, &inbox),
        &inbox,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].inner.sender(), target);
    assert_eq!(replies[0].transport.as_ref().unwrap().sender(), target);
    assert_eq!(replies[0].inner.request_id(), req.envelope.requestid);
    assert_eq!(fleet.stats().requests_received, 1);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_ping_gets_pong() {
    let coll = unique("disco");
    let cfg = config(25, &coll);
    let fleet = Fleet::start(cfg.clone()).await.unwrap();
    let nc = client().await;
    // Go's broadcast discovery sends base64("ping").
    let req = v1_request(&coll, "discovery", "cGluZw==");
    let inbox = format!("{coll}.reply.disco");
    let replies = request(
        &nc,
        format!("{coll}.broadcast.agent.discovery"),
        insecure_payload(&req, &inbox),
        &inbox,
        25,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(replies.len(), 25);
    assert_eq!(senders(&replies), identities(&cfg));
    for r in &replies {
        assert_eq!(r.body(), b"pong");
        assert_eq!(r.inner.agent(), "discovery");
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcutil_inventory_and_unknown_action() {
    let coll = unique("inv");
    let cfg = config(3, &coll);
    let fleet = Fleet::start(cfg.clone()).await.unwrap();
    let nc = client().await;
    let subject = format!("{coll}.node.{}", cfg.identity(1));

    let req = v1_request(
        &coll,
        "rpcutil",
        r#"{"agent":"rpcutil","action":"inventory"}"#,
    );
    let inbox = format!("{coll}.reply.inv");
    let replies = request(
        &nc,
        subject.clone(),
        insecure_payload(&req, &inbox),
        &inbox,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(replies.len(), 1);
    let body = body_json(&replies[0]);
    assert_eq!(body["statuscode"], 0);
    let data = &body["data"];
    assert_eq!(data["agents"], serde_json::json!(["discovery", "rpcutil"]));
    assert_eq!(data["collectives"], serde_json::json!([coll]));
    assert_eq!(data["main_collective"], coll.as_str());
    assert_eq!(data["facts"], fleet.node_facts(1).facts);
    assert_eq!(
        data["classes"],
        serde_json::json!(fleet.node_facts(1).classes)
    );
    assert_eq!(data["data_plugins"], serde_json::json!([]));
    assert!(data["version"].is_string());

    let req = v1_request(
        &coll,
        "rpcutil",
        r#"{"agent":"rpcutil","action":"get_fact","data":{"fact":"os.family"}}"#,
    );
    let inbox = format!("{coll}.reply.fact");
    let replies = request(
        &nc,
        subject.clone(),
        insecure_payload(&req, &inbox),
        &inbox,
        1,
        Duration::from_secs(10),
    )
    .await;
    let body = body_json(&replies[0]);
    assert_eq!(body["data"]["fact"], "os.family");
    assert_eq!(
        body["data"]["value"],
        fleet.node_facts(1).facts["os"]["family"]
    );

    let req = v1_request(
        &coll,
        "rpcutil",
        r#"{"agent":"rpcutil","action":"reboot","data":{}}"#,
    );
    let inbox = format!("{coll}.reply.unknown");
    let replies = request(
        &nc,
        subject,
        insecure_payload(&req, &inbox),
        &inbox,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(replies.len(), 1);
    let body = body_json(&replies[0]);
    assert_eq!(body["statuscode"], 2);
    assert_eq!(body["action"], "reboot");
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_invalid() {
    let coll = unique("junk");
    let fleet = Fleet::start(config(5, &coll)).await.unwrap();
    let nc = client().await;
    nc.publish(
        format!("{coll}.broadcast.agent.rpcutil"),
        "not choria".into(),
    )
    .await
    .unwrap();
    nc.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fleet.stats().requests_invalid < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fleet.stats().requests_invalid, 5);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_registration_verifies_and_unsigned_requests_are_ignored() {
    let coll = unique("x509");
    let nc = client().await;
    let mut regs = nc
        .subscribe(format!("{coll}.broadcast.agent.registration"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let cfg = FleetConfig {
        security: Security::X509,
        registration_interval: Duration::from_secs(300),
        ..config(8, &coll)
    };
    let fleet = Fleet::start(cfg.clone()).await.unwrap();
    assert!(fleet
        .ca_certificate_pem()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    // Registration is signed with each node's own certificate.
    let got = collect(&mut regs, 8, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 8);
    for m in &got {
        let Some(Secure::V1Request(secure)) = &m.secure else {
            panic!("v1 secure request expected")
        };
        assert_eq!(
            verify::verify_v1_request(secure).unwrap(),
            verify::Verified::Signed {
                signer: m.inner.sender().to_string()
            }
        );
        assert_eq!(
            m.inner.caller().unwrap(),
            format!("choria={}", m.inner.sender())
        );
        let reg = Registration::decode(m.body()).unwrap();
        let inventory: serde_json::Value =
            serde_json::from_slice(&reg.content(&protocol::Limits::DEFAULT).unwrap()).unwrap();
        assert_ne!(
            inventory["status"]["certificate_expires"],
            "0001-01-01T00:00:00Z"
        );
    }

    let rpcutil = format!("{coll}.broadcast.agent.rpcutil");
    // Unsigned: dropped and counted invalid.
    let req = v1_request(&coll, "rpcutil", PING);
    let inbox = format!("{coll}.reply.unsigned");
    let replies = request(
        &nc,
        rpcutil.clone(),
        insecure_payload(&req, &inbox),
        &inbox,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(replies.is_empty());
    assert_eq!(fleet.stats().requests_invalid, 8);

    // Signed by a fleet certificate, but the caller is someone else: dropped.
    let creds = fleet.client_credentials("tester").unwrap();
    let mut req = v1_request(&coll, "rpcutil", PING);
    req.envelope.callerid = "choria=mallory".into();
    let inbox = format!("{coll}.reply.mallory");
    let replies = request(
        &nc,
        rpcutil.clone(),
        creds.v1_payload(&req, &inbox),
        &inbox,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(replies.is_empty());
    assert_eq!(fleet.stats().requests_invalid, 16);

    // Signed by a certificate from another CA: dropped.
    let stranger = Fleet::start(FleetConfig {
        security: Security::X509,
        ..config(1, &unique("stranger"))
    })
    .await
    .unwrap();
    let foreign = stranger.client_credentials("tester").unwrap();
    let req = v1_request(&coll, "rpcutil", PING);
    let inbox = format!("{coll}.reply.foreign");
    let replies = request(
        &nc,
        rpcutil.clone(),
        foreign.v1_payload(&req, &inbox),
        &inbox,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(replies.is_empty());
    assert_eq!(fleet.stats().requests_invalid, 24);
    stranger.shutdown().await;

    // Properly signed: everyone answers.
    let req = v1_request(&coll, "rpcutil", PING);
    assert_eq!(creds.caller_id(), "choria=tester");
    let inbox = format!("{coll}.reply.signed");
    let replies = request(
        &nc,
        rpcutil,
        creds.v1_payload(&req, &inbox),
        &inbox,
        8,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(replies.len(), 8);
    assert_eq!(senders(&replies), identities(&cfg));
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_requests_and_replies_are_signed() {
    let coll = unique("v2");
    let nc = client().await;
    let mut regs = nc
        .subscribe(format!("{coll}.broadcast.agent.registration"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let cfg = FleetConfig {
        security: Security::V2,
        registration_interval: Duration::from_secs(300),
        ..config(10, &coll)
    };
    let fleet = Fleet::start(cfg.clone()).await.unwrap();
    let issuer = fleet.issuer_public_key().unwrap();
    let anchor = verify::TrustAnchor {
        issuer: Some(&issuer),
        now: now_s(),
    };

    let got = collect(&mut regs, 10, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 10);
    for m in &got {
        assert!(matches!(m.inner, Inner::V2Request(_)));
        assert_eq!(m.inner.request_id().len(), 27);
        let Some(Secure::V2Request(secure)) = &m.secure else {
            panic!("v2 secure request expected")
        };
        assert!(!secure.caller.is_empty(), "signed with the server token");
        let reg = Registration::decode(m.body()).unwrap();
        assert!(reg.is_compressed());
    }

    let creds = fleet.client_credentials("tester").unwrap();
    let rpcutil = format!("{coll}.broadcast.agent.rpcutil");
    let mut req = v2::Request::new(
        "rpcutil",
        "tester.example.net",
        creds.caller_id(),
        60,
        &coro_fleet::ids::ksuid(),
        &coll,
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
    );
    req.set_message(PING.as_bytes());
    let inbox = format!("{coll}.reply.v2");
    let replies = request(
        &nc,
        rpcutil.clone(),
        creds.v2_payload(&req, &inbox),
        &inbox,
        10,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(replies.len(), 10);
    assert_eq!(senders(&replies), identities(&cfg));
    for r in &replies {
        let Inner::V2Reply(reply) = &r.inner else {
            panic!("v2 reply expected")
        };
        assert_eq!(reply.request, req.id);
        let Some(Secure::V2Reply(secure)) = &r.secure else {
            panic!("v2 secure reply expected")
        };
        assert_eq!(
            verify::verify_v2_reply(secure, &anchor).unwrap(),
            verify::Verified::Signed {
                signer: reply.sender.clone()
            }
        );
        assert_eq!(body_json(r)["statuscode"], 0);
    }

    // A v2 request marked insecure, and a v1 request: both dropped.
    let insecure = fleet_insecure_v2(&req, &inbox);
    let replies = request(
        &nc,
        rpcutil.clone(),
        insecure,
        &inbox,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(replies.is_empty());
    let v1req = v1_request(&coll, "rpcutil", PING);
    let replies = request(
        &nc,
        rpcutil,
        insecure_payload(&v1req, &inbox),
        &inbox,
        0,
        Duration::from_secs(1),
    )
    .await;
    assert!(replies.is_empty());
    assert_eq!(fleet.stats().requests_invalid, 20);
    fleet.shutdown().await;
}

/// A v2 request whose signature is the `insecure` marker.
fn fleet_insecure_v2(req: &v2::Request, reply_to: &str) -> Vec<u8> {
    let secure = v2::SecureRequest {
        protocol: v2::SECURE_REQUEST.to_string(),
        request: protocol::b64_encode(&gojson::to_vec(req)),
        signature: protocol::b64_encode(b"insecure"),
        caller: String::new(),
        signer: String::new(),
    };
    let headers = v2::Headers {
        reply: reply_to.to_string(),
        sender: req.sender.clone(),
        ..Default::default()
    };
    gojson::to_vec(&v2::Transport::new(&gojson::to_vec(&secure), headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_removes_subscriptions() {
    let coll = unique("stop");
    let fleet = Fleet::start(config(10, &coll)).await.unwrap();
    fleet.shutdown().await;
    let nc = client().await;
    let req = v1_request(&coll, "rpcutil", PING);
    let inbox = format!("{coll}.reply.after");
    let replies = request(
        &nc,
        format!("{coll}.broadcast.agent.rpcutil"),
        insecure_payload(&req, &inbox),
        &inbox,
        0,
        Duration::from_millis(500),
    )
    .await;
    assert!(replies.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_an_error() {
    let err = Fleet::start(FleetConfig {
        nodes: 0,
        ..FleetConfig::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nodes"), "{err}");
    let err = Fleet::start(FleetConfig {
        collective: "a.b".into(),
        ..FleetConfig::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("collective"), "{err}");
}

/// The 10,000-node measurement: how long starting takes and how long one broadcast
/// ping takes to be answered by every node. Run it with
/// `scripts/with-servers.sh cargo test --release -p coro-fleet --test fleet -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn ten_thousand_nodes() {
    let nodes: usize = std::env::var("CORO_FLEET_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let security = std::env::var("CORO_FLEET_SECURITY")
        .ok()
        .map(|s| s.parse::<Security>().unwrap())
        .unwrap_or_default();
    let coll = unique("big");
    let cfg = FleetConfig {
        security,
        connections: 0,
        ..config(nodes, &coll)
    };
    let progress = std::sync::Arc::new(coro_fleet::StartProgress::default());
    let watcher = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let mut phase = progress.phase();
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let now = progress.phase();
                if now != phase {
                    eprintln!("{:?} done after {:?}", phase, t.elapsed());
                    phase = now;
                }
                if now == coro_fleet::StartPhase::Running {
                    break;
                }
            }
        })
    };
    let started = Instant::now();
    let fleet = Fleet::start_with_progress(cfg, progress).await.unwrap();
    let start = started.elapsed();
    let _ = watcher.await;
    let nc = client().await;
    let creds = fleet.client_credentials("tester").unwrap();
    for round in 0..3 {
        let inbox = format!("{coll}.reply.{round}");
        let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
        nc.flush().await.unwrap();
        let payload = match security {
            Security::Insecure => insecure_payload(&v1_request(&coll, "rpcutil", PING), &inbox),
            Security::X509 => creds.v1_payload(&v1_request(&coll, "rpcutil", PING), &inbox),
            Security::V2 => {
                let mut req = v2::Request::new(
                    "rpcutil",
                    "tester.example.net",
                    creds.caller_id(),
                    60,
                    &coro_fleet::ids::ksuid(),
                    &coll,
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_nanos() as i64,
                );
                req.set_message(PING.as_bytes());
                creds.v2_payload(&req, &inbox)
            }
        };
        let t = Instant::now();
        nc.publish(format!("{coll}.broadcast.agent.rpcutil"), payload.into())
            .await
            .unwrap();
        let mut n = 0;
        let mut first = None;
        while n < nodes {
            match tokio::time::timeout(Duration::from_secs(60), sub.next()).await {
                Ok(Some(_)) => {
                    n += 1;
                    first.get_or_insert(t.elapsed());
                }
                _ => break,
            }
        }
        eprintln!(
            "round {round}: {n}/{nodes} replies, first after {:?}, all after {:?}",
            first.unwrap_or_default(),
            t.elapsed()
        );
        assert_eq!(n, nodes);
    }
    let rss = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or_default()
        .to_string();
    eprintln!("after the pings: {rss}");
    eprintln!(
        "{nodes} nodes ({security}, {} connections) started in {start:?}; stats {:?}",
        fleet.stats().connections,
        fleet.stats()
    );
    let t = Instant::now();
    fleet.shutdown().await;
    eprintln!("shutdown took {:?}", t.elapsed());
}
