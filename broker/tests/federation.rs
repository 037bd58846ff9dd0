//! The federation broker against real nats-servers: the test starts its own from the
//! `CORO_NATS_SERVER` binary (which `scripts/with-servers.sh`, run by `make test`,
//! exports) on random loopback ports. A missing binary fails the tests; they are never
//! skipped.
//!
//! * go-choria's `broker/federation` ingest, egest and pooled worker tests (PROTOCOL.md
//!   §7), ported onto real connections; the transformer tests are in
//!   `tests/go_ported.rs`.
//! * The fixtures' hops (fed_1 → fed_2, fed_3 → fed_4) byte for byte over the wire, v1
//!   and v2.
//! * End to end: a federated client pings 300 simulated nodes, broadcast and directed
//!   (two messages: 200 and 100 targets), and gets every reply with the four hops of
//!   §3.5; two member collectives behind one federation network.
//! * Messages that cannot be forwarded are counted, nothing is forwarded, the broker
//!   keeps running; the hardening checks; TLS from a broker.conf.

use coro_broker::federation::client::{federate, ClientHop};
use coro_broker::federation::{FederationBroker, FederationConfig, Hardening, RateLimit};
use coro_broker::rpc::RpcRequest;
use coro_core::config::ChoriaConfig;
use coro_core::protocol::federation::{self, hop_processor, Side};
use coro_core::protocol::transport::FederationHeader;
use coro_core::protocol::{v1, Transport, Version};
use coro_fleet::{Fleet, FleetConfig};
use futures::StreamExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ helpers

fn nats_bin() -> PathBuf {
    std::env::var_os("CORO_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "CORO_NATS_SERVER is not set: run the tests with `make test` \
             (scripts/with-servers.sh exports it; scripts/install-nats.sh installs nats-server)"
            )
        })
}

/// Ports no other test in this run is given.
fn free_ports(n: usize) -> Vec<u16> {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap();
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        if !taken.contains(&p) {
            taken.push(p);
            ports.push(p);
        }
    }
    ports
}

/// A nats-server of the test's own, with monitoring; killed by PID when dropped.
struct Nats {
    child: Child,
    port: u16,
    monitor: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2);
        let log = dir.path().join("nats.log");
        let nats = Nats {
            child: Command::new(nats_bin())
                .args(["-a", "127.0.0.1", "-p", &ports[0].to_string()])
                .args(["-m", &ports[1].to_string()])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
            port: ports[0],
            monitor: ports[1],
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Server is ready")
            {
                return nats;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "nats-server not ready:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap()
    }

    /// Subscriptions the server holds.
    async fn subscription_count(&self) -> u64 {
        let url = format!("http://127.0.0.1:{}/subsz", self.monitor);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let body: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        body["num_subscriptions"].as_u64().unwrap_or(0)
    }

    /// Waits until the server holds at least `n` subscriptions (the fleet's clients
    /// only flush, which does not wait for the server).
    async fn wait_subscriptions(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let have = self.subscription_count().await;
            if have >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{have} of {n} subscriptions");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every subscription on the server: `(subject, queue group)`, sorted.
    async fn subscriptions(&self) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}/connz?subs=detail", self.monitor);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let body: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        let mut subs = body["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| {
                c["subscriptions_list_detail"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|s| {
                (
                    s["subject"].as_str().unwrap_or_default().to_string(),
                    s["qgroup"].as_str().unwrap_or_default().to_string(),
                )
            })
            // The broker's start-up round trips use inboxes.
            .filter(|(subject, _)| !subject.starts_with("_INBOX."))
            .collect::<Vec<_>>();
        subs.sort();
        subs
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const IDENTITY: &str = "fb1.example.net";

fn config(cluster: &str, fed: &Nats, coll: &Nats) -> FederationConfig {
    let mut cfg = FederationConfig::new(cluster, vec![fed.url()], vec![coll.url()]);
    cfg.identity = IDENTITY.to_string();
    cfg.drain_timeout = Duration::from_secs(5);
    cfg
}

async fn start(cfg: FederationConfig) -> (FederationBroker, prometheus::Registry) {
    // The broker's logs with RUST_LOG set (e.g. RUST_LOG=debug), else nothing.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let registry = prometheus::Registry::new();
    let broker = FederationBroker::start(cfg, &registry)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(broker.health().ok(), "{}", broker.health());
    (broker, registry)
}

/// The sum of every series of `name` whose labels include all of `labels`.
fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| {
            if m.get_counter().get_value() != 0.0 {
                m.get_counter().get_value()
            } else if m.get_histogram().get_sample_count() != 0 {
                m.get_histogram().get_sample_count() as f64
            } else {
                m.get_gauge().get_value()
            }
        })
        .sum()
}

fn dropped(registry: &prometheus::Registry, direction: &str, reason: &str) -> f64 {
    metric(
        registry,
        "coro_federation_dropped_total",
        &[("direction", direction), ("reason", reason)],
    )
}

/// Waits until the server has handled everything `client` sent, subscriptions
/// included: async-nats' `flush` only empties the client's buffer, so a message
/// published on another connection right after could still miss a subscription.
async fn synced(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .ok()
        .flatten()
        .expect("a round trip to the server");
}

/// Waits until `metric(registry, name, labels)` is `want` (workers count a message
/// just after handing it on, so a test can see the message first).
async fn settles(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)], want: f64) {
    let ok = eventually(Duration::from_secs(10), || {
        metric(registry, name, labels) == want
    })
    .await;
    assert!(
        ok,
        "{name}{labels:?} = {}, not {want}",
        metric(registry, name, labels)
    );
}

async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// The next message on `sub` within `wait`.
/// The next message on `sub` within `wait`, skipping the round trips of [`synced`]
/// that a `>` subscription sees.
async fn next(sub: &mut async_nats::Subscriber, wait: Duration) -> Option<async_nats::Message> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let m = tokio::time::timeout_at(deadline, sub.next())
            .await
            .ok()
            .flatten()?;
        if !m.subject.starts_with("_INBOX.") {
            return Some(m);
        }
    }
}

/// A synthetic fixture, decoded (the `.json` files are indented; Go sends compact).
fn fixture(name: &str) -> Transport {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/choria/fixtures/synthetic")
        .join(name);
    let path = std::env::var_os("CORO_SHARED")
        .map(|s| {
            PathBuf::from(s)
                .join("choria/fixtures/synthetic")
                .join(name)
        })
        .unwrap_or(path);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let version = if v["protocol"] == "choria:transport:1" {
        Version::V1
    } else {
        Version::V2
    };
    Transport::decode(version, &bytes).unwrap()
}

/// The hop this broker records with one worker per stage.
fn broker_hop(side: Side, from: &Nats, to: &Nats) -> Vec<String> {
    vec![from.url(), hop_processor(IDENTITY, side, 0, 0, 0), to.url()]
}

/// Replaces the last hop of `t`.
fn with_last_hop(mut t: Transport, hop: Vec<String>) -> Transport {
    let hops: Vec<Vec<String>> = t.hops()[..t.hops().len() - 1].to_vec();
    match &mut t {
        Transport::V1(t) => t.headers.seen_by = hops,
        Transport::V2(t) => t.headers.as_mut().unwrap().trace = hops,
    }
    t.record_hop(&hop[0], &hop[1], &hop[2]);
    t
}

fn one_worker(mut cfg: FederationConfig) -> FederationConfig {
    cfg.workers = 1;
    cfg
}

/// A federated v1 rpcutil ping from `client`: the request id, its reply subject, and
/// the messages to publish (to `clusters`, with the client's hop on `server`).
fn ping(
    targets: &[String],
    clusters: &[&str],
    server: &str,
) -> (String, String, Vec<(String, Vec<u8>)>) {
    let mut request = RpcRequest::new("rpcutil", "ping");
    request.sender = "client.example.net".into();
    request.caller = "choria=rip.mcollective".into();
    request.targets = targets.to_vec();
    let id = request.new_request_id().unwrap();
    let built = request.build(&id).unwrap();
    let subjects: Vec<String> = built.iter().map(|(s, _)| s.clone()).collect();
    let clusters: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
    let hop = ClientHop {
        server: server.to_string(),
        identity: "client.example.net".into(),
    };
    let messages = federate(&built[0].1, &subjects, &id, &clusters, Some(&hop)).unwrap();
    let reply_to = request.reply_subject(&id);
    (id, reply_to, messages)
}

/// Replies on `sub` until `n` distinct senders answered or `wait` passed: sender →
/// the reply's hops.
async fn replies(
    sub: &mut async_nats::Subscriber,
    n: usize,
    wait: Duration,
) -> std::collections::BTreeMap<String, Vec<Vec<String>>> {
    let mut got = std::collections::BTreeMap::new();
    let deadline = Instant::now() + wait;
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(msg) = next(sub, left).await else {
            break;
        };
        let t = Transport::decode(Version::V1, &msg.payload).unwrap();
        assert!(
            t.federation().is_none(),
            "the reply side removes the header"
        );
        got.insert(t.sender().to_string(), t.hops().to_vec());
    }
    got
}

async fn fleet(nodes: usize, coll: &Nats, prefix: &str) -> Fleet {
    let before = coll.subscription_count().await;
    let fleet = Fleet::start(FleetConfig {
        nodes,
        servers: vec![coll.url()],
        identity_prefix: prefix.to_string(),
        registration_interval: Duration::ZERO,
        connections: 2,
        ..FleetConfig::default()
    })
    .await
    .unwrap();
    // rpcutil, discovery and the node subject per node.
    coll.wait_subscriptions(before + 3 * nodes as u64).await;
    fleet
}

// ------------------------------------------------- go-choria broker/federation

/// `choria_nats_ingest_test.go`: "Should subscribe to the right target in Federation
/// mode" and "... in Collective mode": every ingest worker subscribes in its queue
/// group, on its side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_ingest_subscribes_in_the_queue_groups() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let mut cfg = config("test", &fed, &coll);
    cfg.workers = 3;
    // One connection per worker and stage, as Go.
    cfg.connections = 3;
    let (broker, _r) = start(cfg).await;
    let sub = |subject: &str, group: &str| (subject.to_string(), group.to_string());
    let want_fed = sub("choria.federation.test.federation", "test_federation");
    let want_coll = sub("choria.federation.test.collective", "test_collective");
    assert_eq!(fed.subscriptions().await, vec![want_fed.clone(); 3]);
    assert_eq!(coll.subscriptions().await, vec![want_coll.clone(); 3]);
    let health = broker.health();
    assert_eq!(
        (health.federation.connections, health.collective.connections),
        (6, 6)
    );
    assert!(broker.shutdown().await);

    // Coro's default: the workers of a stage share one connection per side.
    let (broker, _r) = start(config("test", &fed, &coll)).await;
    assert_eq!(fed.subscriptions().await, vec![want_fed; 10]);
    assert_eq!(coll.subscriptions().await, vec![want_coll; 10]);
    let health = broker.health();
    assert_eq!(
        (health.federation.connections, health.collective.connections),
        (2, 2)
    );
    assert!(broker.shutdown().await);
}

/// `choria_nats_ingest_test.go`: "Should fail for invalid JSON" and "Should fail for
/// unfederated messages", counted on the ingest worker; "Should subscribe and process
/// the message": `Seen` starts with the connected server and `choria_nats_ingest:0`,
/// which the hop shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_ingest_rejects_bad_input_and_records_where_it_came_from() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let (broker, registry) = start(one_worker(config("test", &fed, &coll))).await;
    let client = fed.client().await;
    let watcher = coll.client().await;
    let mut everything = watcher.subscribe(">").await.unwrap();
    synced(&watcher).await;

    let subject = "choria.federation.test.federation";
    client.publish(subject, "{}".into()).await.unwrap();
    let mut unfederated = fixture("fed_1_client_to_federation_broadcast.json");
    unfederated.set_federation(None);
    client
        .publish(subject, unfederated.encode().into())
        .await
        .unwrap();
    synced(&client).await;
    let ingest_errors = || {
        metric(
            &registry,
            "choria_federation_errors",
            &[
                ("name", "nats_ingest"),
                ("worker", "0"),
                ("connected_to", "federation"),
                ("cluster", "test"),
                ("identity", IDENTITY),
            ],
        )
    };
    assert!(eventually(Duration::from_secs(5), || ingest_errors() == 2.0).await);
    assert_eq!(dropped(&registry, "request", "invalid"), 1.0);
    assert_eq!(dropped(&registry, "request", "not_federated"), 1.0);

    // A good one goes through, hop first element = the server ingest read it from.
    let good = fixture("fed_1_client_to_federation_broadcast.json");
    client.publish(subject, good.encode().into()).await.unwrap();
    let msg = next(&mut everything, Duration::from_secs(10))
        .await
        .expect("forwarded");
    assert_eq!(msg.subject.as_str(), "mcollective.broadcast.agent.rpcutil");
    let out = Transport::decode(Version::V1, &msg.payload).unwrap();
    let hop = out.hops().last().unwrap();
    assert_eq!(hop[0], fed.url());
    assert!(
        hop[1].starts_with("fb1.example.net (choria_nats_ingest:0, "),
        "{hop:?}"
    );
    assert!(next(&mut everything, Duration::from_millis(300))
        .await
        .is_none());
    settles(
        &registry,
        "choria_federation_received_msgs",
        &[("name", "nats_ingest"), ("connected_to", "federation")],
        1.0,
    )
    .await;
    assert!(broker.shutdown().await);
}

/// `choria_nats_egest_test.go`: "Should send the message to every target" (identical
/// bytes, in order) and "Should discard messages with no targets". Go's test uses the
/// targets `target.1`, `target.2`: forwarded with hardening off, as Go does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_egest_publishes_identical_bytes_to_every_target_in_order() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let mut cfg = one_worker(config("test", &fed, &coll));
    cfg.hardening = Hardening::off();
    let (broker, registry) = start(cfg).await;
    let client = fed.client().await;
    let watcher = coll.client().await;
    let mut targets = watcher.subscribe("target.*").await.unwrap();
    synced(&watcher).await;

    let mut t = fixture("fed_1_client_to_federation_broadcast.json");
    let mut fed_header = t.federation().unwrap();
    fed_header.targets = vec!["target.1".into(), "target.2".into()];
    t.set_federation(Some(fed_header));
    client
        .publish("choria.federation.test.federation", t.encode().into())
        .await
        .unwrap();
    let first = next(&mut targets, Duration::from_secs(10)).await.unwrap();
    let second = next(&mut targets, Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.subject.as_str(), "target.1");
    assert_eq!(second.subject.as_str(), "target.2");
    assert_eq!(first.payload, second.payload);
    settles(
        &registry,
        "choria_federation_published_msgs",
        &[("name", "nats_egest"), ("connected_to", "collective")],
        2.0,
    )
    .await;

    // Without targets nothing reaches egest: the transformer refuses it, as Go's does
    // before egest would discard it.
    let mut t = fixture("fed_1_client_to_federation_broadcast.json");
    let mut fed_header = t.federation().unwrap();
    fed_header.targets.clear();
    t.set_federation(Some(fed_header));
    client
        .publish("choria.federation.test.federation", t.encode().into())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || dropped(
            &registry,
            "request",
            "no_targets"
        ) == 1.0)
        .await
    );
    assert!(next(&mut targets, Duration::from_millis(300))
        .await
        .is_none());
    assert!(broker.shutdown().await);
}

/// `pooled_worker_test.go` wiring: one ingest, transformer and egest per direction,
/// each stage handing on to the next — every stage counts the message it passed on,
/// and the hop names the workers in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_pooled_workers_are_chained() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let (broker, registry) = start(one_worker(config("london", &fed, &coll))).await;
    let client = fed.client().await;
    let watcher = coll.client().await;
    let mut sub = watcher
        .subscribe("mcollective.broadcast.agent.rpcutil")
        .await
        .unwrap();
    synced(&watcher).await;
    client
        .publish(
            "choria.federation.london.federation",
            fixture("fed_1_client_to_federation_broadcast.json")
                .encode()
                .into(),
        )
        .await
        .unwrap();
    next(&mut sub, Duration::from_secs(10))
        .await
        .expect("forwarded");
    for name in ["nats_ingest", "choria_request_transformer", "nats_egest"] {
        settles(
            &registry,
            "choria_federation_received_msgs",
            &[("name", name)],
            1.0,
        )
        .await;
        settles(&registry, "choria_federation_time", &[("name", name)], 1.0).await;
    }
    assert!(broker.shutdown().await);
}

// ------------------------------------------------------------ the fixtures' hops

/// fed_1 → fed_2 and fed_3 → fed_4 over real connections: the bytes published are
/// the fixtures' but for the broker's hop, whose servers and workers are this run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_cross_the_broker_byte_for_byte() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let (broker, _r) = start(one_worker(config("london", &fed, &coll))).await;
    let fed_client = fed.client().await;
    let coll_client = coll.client().await;

    // Request side.
    let mut servers = coll_client
        .subscribe("mcollective.broadcast.agent.rpcutil")
        .await
        .unwrap();
    synced(&coll_client).await;
    fed_client
        .publish(
            "choria.federation.london.federation",
            fixture("fed_1_client_to_federation_broadcast.json")
                .encode()
                .into(),
        )
        .await
        .unwrap();
    let got = next(&mut servers, Duration::from_secs(10))
        .await
        .expect("request forwarded");
    let want = with_last_hop(
        fixture("fed_2_broker_to_collective.json"),
        broker_hop(Side::Request, &fed, &coll),
    );
    assert_eq!(
        String::from_utf8_lossy(&got.payload),
        String::from_utf8_lossy(&want.encode())
    );

    // Reply side.
    let fed3 = fixture("fed_3_server_reply_to_collective.json");
    let reply_to = fed3.federation().unwrap().reply_to;
    let mut client = fed_client.subscribe(reply_to.clone()).await.unwrap();
    synced(&fed_client).await;
    coll_client
        .publish("choria.federation.london.collective", fed3.encode().into())
        .await
        .unwrap();
    let got = next(&mut client, Duration::from_secs(10))
        .await
        .expect("reply forwarded");
    let want = with_last_hop(
        fixture("fed_4_broker_reply_to_client.json"),
        broker_hop(Side::Reply, &coll, &fed),
    );
    assert_eq!(
        String::from_utf8_lossy(&got.payload),
        String::from_utf8_lossy(&want.encode())
    );
    assert!(broker.shutdown().await);
}

/// v2 uses `reply`, `trace` and `federation.{request,reply,targets}`; the broker edits
/// them as core's transformer does and adds its hop to `trace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_crosses_the_broker() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let (broker, _r) = start(one_worker(config("london", &fed, &coll))).await;
    let fed_client = fed.client().await;
    let coll_client = coll.client().await;
    let mut servers = coll_client
        .subscribe("choria.broadcast.agent.rpcutil")
        .await
        .unwrap();
    synced(&coll_client).await;
    let input = fixture("v2_transport_federated_request.json");
    fed_client
        .publish("choria.federation.london.federation", input.encode().into())
        .await
        .unwrap();
    let got = next(&mut servers, Duration::from_secs(10))
        .await
        .expect("v2 forwarded");
    let (mut want, targets) = federation::transform_request(&input, "london").unwrap();
    assert_eq!(targets, ["choria.broadcast.agent.rpcutil"]);
    let hop = broker_hop(Side::Request, &fed, &coll);
    want.record_hop(&hop[0], &hop[1], &hop[2]);
    assert_eq!(got.payload, want.encode());
    let text = String::from_utf8_lossy(&got.payload);
    assert!(
        text.contains(r#""reply":"choria.federation.london.collective""#),
        "{text}"
    );
    assert!(
        text.contains(
            r#""federation":{"request":"2Y8hJ3xYkqLhN8fKZQ7uYb3cQ1p","reply":"choria.reply."#
        ),
        "{text}"
    );

    // Back: the server's reply (the request turned around) goes to the client's subject.
    let mut reply = Transport::decode(Version::V2, &got.payload).unwrap();
    reply.set_reply_to("");
    let client_subject = reply.federation().unwrap().reply_to;
    let mut client = fed_client.subscribe(client_subject).await.unwrap();
    synced(&fed_client).await;
    coll_client
        .publish("choria.federation.london.collective", reply.encode().into())
        .await
        .unwrap();
    let back = next(&mut client, Duration::from_secs(10))
        .await
        .expect("v2 reply forwarded");
    let back = Transport::decode(Version::V2, &back.payload).unwrap();
    assert!(back.federation().is_none());
    assert_eq!(back.hops().len(), 3);
    assert!(back.hops()[2][1].contains("choria_reply_transformer:0"));
    assert!(broker.shutdown().await);
}

// ------------------------------------------------------------------ end to end

/// A federated client pings 300 simulated nodes through the broker, broadcast and
/// directed; every node answers, and every reply carries the client's hop, the
/// broker's request hop, the server's hop and the broker's reply hop (§3.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcutil_ping_reaches_300_nodes_broadcast_and_directed() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let (broker, registry) = start(config("london", &fed, &coll)).await;
    let nodes = fleet(300, &coll, "node-").await;
    let identities: Vec<String> = nodes.identities().collect();
    let client = fed.client().await;

    for directed in [false, true] {
        let targets = if directed {
            identities.clone()
        } else {
            Vec::new()
        };
        let (_, reply_to, messages) = ping(&targets, &["london"], &fed.url());
        assert_eq!(messages.len(), if directed { 2 } else { 1 });
        let mut sub = client.subscribe(reply_to).await.unwrap();
        synced(&client).await;
        for (subject, payload) in messages {
            assert_eq!(subject, "choria.federation.london.federation");
            client.publish(subject, payload.into()).await.unwrap();
        }
        synced(&client).await;
        let got = replies(&mut sub, 300, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 300, "directed={directed}: {} replies", got.len());
        assert_eq!(got.keys().cloned().collect::<Vec<_>>(), identities);
        for (sender, hops) in &got {
            assert_eq!(hops.len(), 4, "{sender}: {hops:?}");
            assert_eq!(hops[0], [fed.url(), "client.example.net".into(), fed.url()]);
            assert_eq!((&hops[1][0], &hops[1][2]), (&fed.url(), &coll.url()));
            assert!(
                hops[1][1].starts_with("fb1.example.net (choria_nats_ingest:"),
                "{hops:?}"
            );
            assert!(
                hops[1][1].contains(", choria_request_transformer:"),
                "{hops:?}"
            );
            assert_eq!(hops[2], [coll.url(), sender.clone(), coll.url()]);
            assert_eq!((&hops[3][0], &hops[3][2]), (&coll.url(), &fed.url()));
            assert!(
                hops[3][1].contains(", choria_reply_transformer:"),
                "{hops:?}"
            );
            assert!(hops[3][1].ends_with(')'), "{hops:?}");
        }
    }
    // The RPC client (`coro rpc --federation london`) does the same: 300 directed
    // targets in two messages, every reply collected.
    let mut request = RpcRequest::new("rpcutil", "ping");
    request.federation = vec!["london".into()];
    request.targets = identities.clone();
    let (sent, collected) =
        coro_broker::rpc::call(&client, &request, None, Duration::from_secs(20), |_| {})
            .await
            .unwrap();
    assert_eq!(sent.subjects, ["choria.federation.london.federation"; 2]);
    assert_eq!(collected.replies.len(), 300);
    assert_eq!(collected.failed(), 0);

    // One broadcast and two directed messages in (200 + 100 targets), twice; one
    // broadcast publish and 300 directed ones out, twice; 900 replies each way.
    let received = "choria_federation_received_msgs";
    let published = "choria_federation_published_msgs";
    let ingest = |side| [("name", "nats_ingest"), ("connected_to", side)];
    settles(&registry, received, &ingest("federation"), 5.0).await;
    settles(
        &registry,
        published,
        &[("connected_to", "collective")],
        601.0,
    )
    .await;
    settles(&registry, received, &ingest("collective"), 900.0).await;
    settles(
        &registry,
        published,
        &[("connected_to", "federation")],
        900.0,
    )
    .await;
    assert_eq!(metric(&registry, "choria_federation_errors", &[]), 0.0);
    nodes.shutdown().await;
    assert!(broker.shutdown().await);
}

/// Two member collectives behind one federation network: a request published to both
/// clusters reaches both, and the replies of both come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectives_behind_one_federation() {
    let (fed, london, tokyo) = (Nats::start(), Nats::start(), Nats::start());
    let (b1, _r1) = start(config("london", &fed, &london)).await;
    let (b2, _r2) = start(config("tokyo", &fed, &tokyo)).await;
    let ldn = fleet(20, &london, "ldn-").await;
    let tyo = fleet(30, &tokyo, "tyo-").await;
    let client = fed.client().await;

    let (_, reply_to, messages) = ping(&[], &["london", "tokyo"], &fed.url());
    assert_eq!(messages.len(), 2);
    let mut sub = client.subscribe(reply_to).await.unwrap();
    synced(&client).await;
    for (subject, payload) in messages {
        client.publish(subject, payload.into()).await.unwrap();
    }
    let got = replies(&mut sub, 50, Duration::from_secs(20)).await;
    assert_eq!(got.keys().filter(|k| k.starts_with("ldn-")).count(), 20);
    assert_eq!(got.keys().filter(|k| k.starts_with("tyo-")).count(), 30);
    // Each reply passed its own cluster's broker only.
    for (sender, hops) in &got {
        let coll = if sender.starts_with("ldn-") {
            london.url()
        } else {
            tokyo.url()
        };
        assert_eq!(hops[1][2], coll, "{sender}");
        assert_eq!(hops[3][0], coll, "{sender}");
    }

    // Directed at one node of each: the other cluster's servers ignore the subject
    // they do not have.
    let targets = vec!["ldn-00003".to_string(), "tyo-00007".to_string()];
    let (_, reply_to, messages) = ping(&targets, &["london", "tokyo"], &fed.url());
    let mut sub = client.subscribe(reply_to).await.unwrap();
    synced(&client).await;
    for (subject, payload) in messages {
        client.publish(subject, payload.into()).await.unwrap();
    }
    let got = replies(&mut sub, 2, Duration::from_secs(10)).await;
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), targets);

    ldn.shutdown().await;
    tyo.shutdown().await;
    assert!(b1.shutdown().await);
    assert!(b2.shutdown().await);
}

// ------------------------------------------------------------ what is not forwarded

/// Unfederated, target-less and reply-to-less messages on the request side, and
/// unfederated and reply-to-less replies: each is an error, nothing is forwarded, and
/// the broker forwards the next good message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_counted_and_not_forwarded() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let (broker, registry) = start(config("london", &fed, &coll)).await;
    let fed_client = fed.client().await;
    let coll_client = coll.client().await;
    let mut on_coll = coll_client.subscribe(">").await.unwrap();
    synced(&coll_client).await;
    let mut on_fed = fed_client.subscribe("mcollective.>").await.unwrap();
    synced(&fed_client).await;

    let good = fixture("fed_1_client_to_federation_broadcast.json");
    let with = |f: &dyn Fn(&mut Transport)| {
        let mut t = good.clone();
        f(&mut t);
        t.encode()
    };
    let header = good.federation().unwrap();
    let requests = [
        ("not_federated", with(&|t| t.set_federation(None))),
        (
            "no_targets",
            with(&|t| {
                t.set_federation(Some(FederationHeader {
                    targets: vec![],
                    ..header.clone()
                }))
            }),
        ),
        ("no_reply_to", with(&|t| t.set_reply_to(""))),
        (
            "invalid",
            b"{\"protocol\":\"choria:transport:1\",\"headers\":7}".to_vec(),
        ),
    ];
    for _ in 0..50 {
        for (_, payload) in &requests {
            fed_client
                .publish(
                    "choria.federation.london.federation",
                    payload.clone().into(),
                )
                .await
                .unwrap();
        }
    }
    let reply = fixture("fed_3_server_reply_to_collective.json");
    let mut no_reply_to = reply.clone();
    let mut h = no_reply_to.federation().unwrap();
    h.reply_to.clear();
    no_reply_to.set_federation(Some(h));
    let mut unfederated_reply = reply.clone();
    unfederated_reply.set_federation(None);
    for t in [&no_reply_to, &unfederated_reply] {
        coll_client
            .publish("choria.federation.london.collective", t.encode().into())
            .await
            .unwrap();
    }
    synced(&fed_client).await;
    synced(&coll_client).await;

    let counted = || {
        requests
            .iter()
            .all(|(reason, _)| dropped(&registry, "request", reason) == 50.0)
            && dropped(&registry, "reply", "no_reply_to") == 1.0
            && dropped(&registry, "reply", "not_federated") == 1.0
    };
    assert!(eventually(Duration::from_secs(10), counted).await);
    assert_eq!(metric(&registry, "choria_federation_errors", &[]), 202.0);
    // The broker's own messages, were any forwarded, would show here.
    while let Some(m) = next(&mut on_coll, Duration::from_millis(300)).await {
        assert!(
            m.subject.starts_with("choria.federation.london.collective"),
            "forwarded to {}",
            m.subject
        );
    }
    assert!(next(&mut on_fed, Duration::from_millis(100))
        .await
        .is_none());

    // Still running.
    fed_client
        .publish("choria.federation.london.federation", good.encode().into())
        .await
        .unwrap();
    let m = next(&mut on_coll, Duration::from_secs(10))
        .await
        .expect("still forwarding");
    assert_eq!(m.subject.as_str(), "mcollective.broadcast.agent.rpcutil");
    assert!(broker.health().ok());
    assert!(broker.shutdown().await);
}

/// Hardening: targets that are not server subjects, reply subjects that are not reply
/// subjects (unless allowed), too many targets and loops are refused; with hardening
/// off the same messages pass, as through the Go broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_refuses_what_go_would_forward() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let mut cfg = config("london", &fed, &coll);
    cfg.hardening.allowed_reply_subjects = vec!["choria.replies.>".into()];
    let (broker, registry) = start(cfg).await;
    let fed_client = fed.client().await;
    let coll_client = coll.client().await;
    let mut on_coll = coll_client.subscribe(">").await.unwrap();
    synced(&coll_client).await;

    let good = fixture("fed_1_client_to_federation_broadcast.json");
    let header = good.federation().unwrap();
    let targets = |targets: Vec<String>| {
        let mut t = good.clone();
        t.set_federation(Some(FederationHeader {
            targets,
            ..header.clone()
        }));
        t
    };
    let reply_to = |subject: &str| {
        let mut t = good.clone();
        t.set_reply_to(subject);
        t
    };
    let mut looped = good.clone();
    looped.record_hop(
        "nats://x:4222",
        &hop_processor(IDENTITY, Side::Request, 1, 2, 3),
        "nats://y:4222",
    );
    let refused = [
        (
            "bad_target",
            targets(vec!["choria.federation.tokyo.federation".into()]),
        ),
        (
            "bad_target",
            targets(vec!["mcollective.broadcast.agent.>".into()]),
        ),
        (
            "bad_target",
            targets(vec!["mcollective.node.a".into(), "dev.null".into()]),
        ),
        (
            "bad_reply_to",
            reply_to("mcollective.broadcast.agent.rpcutil"),
        ),
        (
            "bad_reply_to",
            reply_to("choria.federation.london.federation"),
        ),
        (
            "too_many_targets",
            targets((0..201).map(|i| format!("mcollective.node.n{i}")).collect()),
        ),
        ("loop", looped.clone()),
    ];
    for (_, t) in &refused {
        fed_client
            .publish("choria.federation.london.federation", t.encode().into())
            .await
            .unwrap();
    }
    synced(&fed_client).await;
    assert!(
        eventually(Duration::from_secs(5), || {
            dropped(&registry, "request", "bad_target") == 3.0
                && dropped(&registry, "request", "bad_reply_to") == 2.0
                && dropped(&registry, "request", "too_many_targets") == 1.0
                && dropped(&registry, "request", "loop") == 1.0
        })
        .await
    );
    assert!(next(&mut on_coll, Duration::from_millis(300))
        .await
        .is_none());

    // Allowed: a stream subject on the allow-list, 200 targets, another broker's hop.
    let mut other = good.clone();
    other.record_hop(
        "nats://x:4222",
        &hop_processor("fb2", Side::Request, 1, 2, 3),
        "nats://y:4222",
    );
    for t in [
        reply_to("choria.replies.async.1"),
        targets((0..200).map(|i| format!("mcollective.node.n{i}")).collect()),
        other,
    ] {
        fed_client
            .publish("choria.federation.london.federation", t.encode().into())
            .await
            .unwrap();
    }
    let mut n = 0;
    while next(&mut on_coll, Duration::from_secs(2)).await.is_some() {
        n += 1;
        if n == 202 {
            break;
        }
    }
    assert_eq!(n, 202);
    broker.shutdown().await;

    // The Go broker's behaviour: everything refused above is forwarded.
    let registry = prometheus::Registry::new();
    let mut cfg = config("london", &fed, &coll);
    cfg.hardening = Hardening::off();
    let broker = FederationBroker::start(cfg, &registry).await.unwrap();
    for (_, t) in &refused {
        fed_client
            .publish("choria.federation.london.federation", t.encode().into())
            .await
            .unwrap();
    }
    // Subjects with wildcards cannot be published to: nats-server drops those quietly.
    let mut n = 0;
    while next(&mut on_coll, Duration::from_secs(2)).await.is_some() {
        n += 1;
    }
    // One, two, one, one, 201 and one target(s), the wildcard one aside.
    let literal_targets = [1, 2, 1, 1, 201, 1].iter().sum::<usize>();
    assert!(n >= literal_targets, "{n} forwarded");
    assert_eq!(metric(&registry, "choria_federation_errors", &[]), 0.0);
    broker.shutdown().await;
}

/// The per-cluster rate limit: over it, requests are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_rate_limit_are_dropped() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let mut cfg = config("london", &fed, &coll);
    cfg.hardening.request_rate = Some(RateLimit {
        per_second: 1,
        burst: 5,
    });
    let (broker, registry) = start(cfg).await;
    let fed_client = fed.client().await;
    let coll_client = coll.client().await;
    let mut on_coll = coll_client.subscribe(">").await.unwrap();
    synced(&coll_client).await;
    let good = fixture("fed_1_client_to_federation_broadcast.json").encode();
    for _ in 0..20 {
        fed_client
            .publish("choria.federation.london.federation", good.clone().into())
            .await
            .unwrap();
    }
    synced(&fed_client).await;
    let mut n = 0;
    while next(&mut on_coll, Duration::from_millis(500))
        .await
        .is_some()
    {
        n += 1;
    }
    // The burst, and at most a token or two refilled meanwhile.
    assert!((5..=7).contains(&n), "{n} forwarded");
    assert_eq!(
        dropped(&registry, "request", "rate_limited"),
        (20 - n) as f64
    );
    assert!(broker.shutdown().await);
}

// ------------------------------------------------------------------ TLS, broker.conf

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate.
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "Coro test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let leaf = |name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}-key.pem")),
                key.serialize_pem(),
            )
            .unwrap();
        };
        leaf(
            "server",
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        leaf(
            "client",
            vec!["fb1.example.net".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A nats-server requiring client certificates signed by the CA.
    fn nats(&self) -> (Child, u16, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(1)[0];
        let conf = dir.path().join("tls.conf");
        std::fs::write(
            &conf,
            format!(
                "host: 127.0.0.1\nport: {port}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
                self.path("server.pem"),
                self.path("server-key.pem"),
                self.path("ca.pem")
            ),
        )
        .unwrap();
        let log = dir.path().join("nats.log");
        let child = Command::new(nats_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Server is ready")
        {
            assert!(Instant::now() < deadline, "TLS nats-server not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, port, dir)
    }

    async fn client(&self, port: u16) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(self.path("ca.pem").into())
            .add_client_certificate(
                self.path("client.pem").into(),
                self.path("client-key.pem").into(),
            )
            .connect(format!("nats://127.0.0.1:{port}"))
            .await
            .unwrap()
    }
}

/// Both sides over mTLS, configured from a broker.conf with the file security
/// provider, as the network broker is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_sides_from_broker_conf() {
    let pki = Pki::new();
    let (mut fed_child, fed_port, _d1) = pki.nats();
    let (mut coll_child, coll_port, _d2) = pki.nats();
    let text = format!(
        "identity = fb1.example.net\n\
         plugin.choria.broker_federation = true\n\
         plugin.choria.federation.cluster = london\n\
         plugin.choria.federation_middleware_hosts = 127.0.0.1:{fed_port}\n\
         plugin.choria.middleware_hosts = 127.0.0.1:{coll_port}\n\
         plugin.security.provider = file\n\
         plugin.security.file.certificate = {}\n\
         plugin.security.file.key = {}\n\
         plugin.security.file.ca = {}\n\
         plugin.coro.federation.workers = 2\n\
         plugin.coro.federation.connections = 2\n",
        pki.path("client.pem"),
        pki.path("client-key.pem"),
        pki.path("ca.pem"),
    );
    let cfg = FederationConfig::from_choria(&ChoriaConfig::parse("broker.conf", &text))
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("broker_federation is on");
    assert!(cfg.tls.is_some());
    let (broker, registry) = start(cfg).await;
    let fed_client = pki.client(fed_port).await;
    let coll_client = pki.client(coll_port).await;
    let mut on_coll = coll_client
        .subscribe("mcollective.broadcast.agent.rpcutil")
        .await
        .unwrap();
    synced(&coll_client).await;
    fed_client
        .publish(
            "choria.federation.london.federation",
            fixture("fed_1_client_to_federation_broadcast.json")
                .encode()
                .into(),
        )
        .await
        .unwrap();
    let m = next(&mut on_coll, Duration::from_secs(10))
        .await
        .expect("forwarded over TLS");
    let t = Transport::decode(Version::V1, &m.payload).unwrap();
    assert_eq!(t.reply_to(), "choria.federation.london.collective");
    settles(
        &registry,
        "coro_federation_connections",
        &[("side", "federation"), ("state", "up")],
        4.0,
    )
    .await;
    assert_eq!(
        metric(
            &registry,
            "choria_connector_initial_connection_attempts",
            &[]
        ),
        8.0
    );

    // Without a client certificate the broker does not start, and says which side.
    let mut cfg = FederationConfig::from_choria(&ChoriaConfig::parse("broker.conf", &text))
        .unwrap()
        .unwrap();
    cfg.tls = None;
    cfg.connect_timeout = Duration::from_secs(2);
    let err = FederationBroker::start(cfg, &prometheus::Registry::new())
        .await
        .err()
        .expect("plain text refused");
    assert!(err.to_string().contains("connecting to the"), "{err}");
    assert!(broker.shutdown().await);
    let _ = fed_child.kill();
    let _ = coll_child.kill();
    let _ = fed_child.wait();
    let _ = coll_child.wait();
}

/// A broker that cannot reach a side fails to start, naming it; the broker keeps
/// counting connections and reports a lost side in its health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_both_sides() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let mut cfg = config("london", &fed, &coll);
    cfg.collective_servers = vec![format!("nats://127.0.0.1:{}", free_ports(1)[0])];
    cfg.connect_timeout = Duration::from_secs(2);
    let err = FederationBroker::start(cfg, &prometheus::Registry::new())
        .await
        .err()
        .expect("no collective side");
    assert!(err.to_string().contains("collective side"), "{err}");

    let (broker, _registry) = start(one_worker(config("london", &fed, &coll))).await;
    let readiness = broker.readiness();
    assert!(readiness.ready());
    drop(coll);
    // Each connection notices on its own; both are down soon.
    assert!(
        eventually(Duration::from_secs(10), || {
            !readiness.ready() && readiness.health().collective.connected == 0
        })
        .await
    );
    let health = broker.health();
    assert!(!health.ok());
    assert_eq!(health.federation.connected, 2);
    assert_eq!(health.collective.connected, 0);
    assert_eq!(
        health.to_string(),
        "federation broker london: federation 2/2 up, collective 0/2 up"
    );
    broker.shutdown().await;
}

/// The client writes Go's v1 header: `req` and `target`, no empty `reply-to`.
#[test]
fn client_writes_gos_v1_header() {
    let t = Transport::V1(v1::Transport::new(b"{}", v1::Headers::default()));
    let out = federate(
        &t.encode(),
        &["mcollective.node.a".into()],
        "r1",
        &["c".into()],
        None,
    )
    .unwrap();
    assert_eq!(out[0].0, "choria.federation.c.federation");
    let text = String::from_utf8(out[0].1.clone()).unwrap();
    assert!(
        text.ends_with(r#""headers":{"federation":{"req":"r1","target":["mcollective.node.a"]}}}"#),
        "{text}"
    );
}

/// `GET path` on loopback `port`: status code and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// `coro broker run` with `plugin.choria.broker_federation = true`: it forwards, is
/// ready and healthy with both sides up, and `/healthz` names the side that is down;
/// SIGTERM stops it cleanly. `coro validate` prints a line for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coro_broker_run_runs_the_federation_broker() {
    let (fed, coll) = (Nats::start(), Nats::start());
    let dir = tempfile::tempdir().unwrap();
    let http = free_ports(1)[0];
    let conf = dir.path().join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "identity = fb1.example.net\n\
             plugin.choria.broker_federation = true\n\
             plugin.choria.federation.cluster = london\n\
             plugin.choria.federation_middleware_hosts = {}\n\
             plugin.choria.middleware_hosts = {}\n\
             plugin.choria.stats_port = {http}\n\
             plugin.coro.federation.workers = 2\n",
            fed.url(),
            coll.url()
        ),
    )
    .unwrap();
    let validate = Command::new(env!("CARGO_BIN_EXE_coro"))
        .arg("validate")
        .arg(&conf)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&validate.stdout);
    assert!(
        validate.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    assert!(
        out.contains("federation broker: cluster london, federation [\"nats://127.0.0.1:"),
        "{out}"
    );

    let log = dir.path().join("coro.log");
    let mut coro = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["broker", "run", "--config"])
        .arg(&conf)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let ready = eventually(Duration::from_secs(20), || {
        http_get(http, "/readyz").is_some_and(|(c, _)| c == 200)
    })
    .await;
    assert!(ready, "not ready:\n{}", log_text());
    assert_eq!(http_get(http, "/healthz").map(|(c, _)| c), Some(200));

    let fed_client = fed.client().await;
    let coll_client = coll.client().await;
    let mut on_coll = coll_client
        .subscribe("mcollective.broadcast.agent.rpcutil")
        .await
        .unwrap();
    synced(&coll_client).await;
    fed_client
        .publish(
            "choria.federation.london.federation",
            fixture("fed_1_client_to_federation_broadcast.json")
                .encode()
                .into(),
        )
        .await
        .unwrap();
    let m = next(&mut on_coll, Duration::from_secs(10))
        .await
        .expect("forwarded by coro broker run");
    let t = Transport::decode(Version::V1, &m.payload).unwrap();
    assert!(t.hops().last().unwrap()[1].starts_with("fb1.example.net (choria_nats_ingest:"));
    let (_, metrics) = http_get(http, "/metrics").unwrap();
    assert!(
        metrics.contains("choria_federation_received_msgs{cluster=\"london\""),
        "{metrics}"
    );

    // The collective side goes away: unhealthy, naming it.
    drop(on_coll);
    drop(coll_client);
    drop(coll);
    // Each connection notices on its own; both are down soon.
    let down = "federation broker london: federation 2/2 up, collective 0/2 up";
    let unhealthy = eventually(Duration::from_secs(10), || {
        http_get(http, "/healthz").is_some_and(|(c, body)| c == 503 && body.contains(down))
    })
    .await;
    assert!(
        unhealthy,
        "{:?}\n{}",
        http_get(http, "/healthz"),
        log_text()
    );
    assert_eq!(http_get(http, "/readyz").map(|(c, _)| c), Some(503));

    let _ = Command::new("kill")
        .args(["-TERM", &coro.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || coro.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", log_text());
}
