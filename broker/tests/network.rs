//! The network broker against the real nats-server binary (`CORO_NATS_SERVER`, which
//! `scripts/with-servers.sh` exports; `scripts/install-nats.sh` installs it). A missing
//! binary fails the tests: they are never skipped.

use coro_broker::network::{find_nats_server, monitor, NetworkBroker, NetworkConfig, NetworkError};
use coro_core::config::ChoriaConfig;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn nats_server() -> PathBuf {
    find_nats_server().unwrap_or_else(|e| panic!("{e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Ports no other test in this run is given (the OS could hand the same free port to two
/// tests running at once).
fn free_ports(n: usize) -> Vec<u16> {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap();
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = free_port();
        if !taken.contains(&p) {
            taken.push(p);
            ports.push(p);
        }
    }
    ports
}

fn parse(file: &Path, text: &str) -> NetworkConfig {
    let mut cfg = NetworkConfig::from_choria(&ChoriaConfig::parse(file, text))
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("broker_network is on");
    // Quick tests: short waits between restarts and for the metrics.
    cfg.restart_backoff = Duration::from_millis(100);
    cfg.stats_interval = Duration::from_millis(100);
    cfg
}

/// A broker listening on loopback on `port`, with `extra` config lines.
fn loopback(identity: &str, port: u16, extra: &str) -> NetworkConfig {
    parse(
        Path::new("broker.conf"),
        &format!(
            "plugin.choria.broker_network = true\nidentity = {identity}\n\
             plugin.choria.network.listen_address = 127.0.0.1\n\
             plugin.choria.network.client_port = {port}\n\
             plugin.choria.network.soft_shutdown_timeout = 5\n{extra}"
        ),
    )
}

async fn start(cfg: NetworkConfig) -> (NetworkBroker, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let broker = NetworkBroker::start(cfg, &nats_server(), &registry)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (broker, registry)
}

async fn eventually<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Publishes on `from` until `sub` receives `payload` (interest takes a moment to cross
/// routes, and a reconnecting client to come back).
async fn delivered(
    from: &async_nats::Client,
    subject: &str,
    sub: &mut async_nats::Subscriber,
    payload: &str,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let _ = from
            .publish(subject.to_string(), payload.to_string().into())
            .await;
        let _ = from.flush().await;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(250), sub.next()).await {
            if m.payload == payload.as_bytes() {
                return true;
            }
        }
    }
    false
}

/// The value of `name{identity="<identity>"}` in `registry`.
fn metric(registry: &prometheus::Registry, name: &str, identity: &str) -> Option<f64> {
    registry
        .gather()
        .into_iter()
        .find(|f| f.name() == name)?
        .get_metric()
        .iter()
        .find(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "identity" && l.value() == identity)
        })
        .map(|m| {
            if m.get_counter().get_value() != 0.0 {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            }
        })
}

async fn get_json(url: &str) -> serde_json::Value {
    // Loopback: never through a proxy from the environment.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = client.get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// The three-line cluster from the Choria announcement (broker_network, peers,
/// stats_address), on loopback ports: messages cross the cluster, and still do with one
/// node gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_routes_and_survives_a_node() {
    let ports = free_ports(6);
    let (client, peer) = ports.split_at(3);
    let peers: Vec<String> = peer
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let text = format!(
            "plugin.choria.broker_network = true\n\
             plugin.choria.network.peers = {}\n\
             plugin.choria.stats_address = ::\n\
             identity = node{i}.example.net\n\
             plugin.choria.network.listen_address = 127.0.0.1\n\
             plugin.choria.network.client_port = {}\n\
             plugin.choria.network.peer_port = {}\n\
             plugin.choria.network.peer_user = choria_cluster\n\
             plugin.choria.network.peer_password = s£cret\"$x\n\
             plugin.choria.network.soft_shutdown_timeout = 5\n",
            peers.join(", "),
            client[i],
            peer[i]
        );
        nodes.push(start(parse(Path::new("broker.conf"), &text)).await);
    }
    for (node, _) in &nodes {
        let url = format!("{}/routez", node.monitor_url());
        assert!(
            eventually(Duration::from_secs(20), || async {
                get_json(&url).await["num_routes"].as_u64() == Some(2)
            })
            .await,
            "{} has no routes to both peers: {}\n{}",
            node.identity(),
            get_json(&url).await,
            node.last_log_lines().join("\n")
        );
    }

    let c1 = async_nats::connect(nodes[0].0.client_url()).await.unwrap();
    let c3 = async_nats::connect(nodes[2].0.client_url()).await.unwrap();
    let mut sub = c3.subscribe("cluster.test").await.unwrap();
    assert!(delivered(&c1, "cluster.test", &mut sub, "one").await);

    let (node2, _) = nodes.remove(1);
    node2.shutdown().await;
    assert!(delivered(&c1, "cluster.test", &mut sub, "two").await);

    for (node, _) in nodes {
        node.shutdown().await;
    }
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for localhost and 127.0.0.1, and a client certificate.
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
            vec!["client.example.net".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_lines(&self) -> String {
        format!(
            "plugin.security.provider = file\n\
             plugin.security.file.certificate = {}\n\
             plugin.security.file.key = {}\n\
             plugin.security.file.ca = {}\n\
             plugin.choria.network.client_tls_force_required = true\n",
            self.path("server.pem").display(),
            self.path("server-key.pem").display(),
            self.path("ca.pem").display()
        )
    }
}

/// TLS from the file provider with a CA: a client presenting a certificate the CA
/// signed connects; one without a client certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_requires_a_client_certificate_signed_by_the_ca() {
    // The workspace links both of rustls' crypto back ends (ring and aws-lc, through the
    // cloud SDKs), so the process must pick one, as `coro` does at start.
    let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new();
    let port = free_ports(1)[0];
    let (broker, _registry) = start(loopback("tls1", port, &pki.config_lines())).await;

    let client = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.path("ca.pem"))
        .add_client_certificate(pki.path("client.pem"), pki.path("client-key.pem"))
        .connect(broker.client_url())
        .await
        .unwrap_or_else(|e| panic!("mTLS client refused: {e}"));
    let mut sub = client.subscribe("tls.test").await.unwrap();
    assert!(delivered(&client, "tls.test", &mut sub, "secret").await);

    let anonymous = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(pki.path("ca.pem"))
            .connect(broker.client_url()),
    )
    .await
    .expect("the refused connection attempt ends");
    assert!(
        anonymous.is_err(),
        "a client without a certificate connected"
    );

    // Plain text is refused too.
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::new().connect(format!("nats://127.0.0.1:{port}")),
    )
    .await
    .expect("the refused connection attempt ends");
    assert!(plain.is_err(), "a plain text client connected");
    broker.shutdown().await;
}

/// nats-server refusing its config (here: a certificate that is not one) fails the start
/// with nats-server's own words.
#[tokio::test]
async fn a_child_that_exits_at_start_is_an_error_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::write(dir.path().join(f), "not a certificate\n").unwrap();
    }
    let cfg = loopback(
        "badcert",
        free_ports(1)[0],
        &format!(
            "plugin.security.provider = file\nplugin.security.file.certificate = {0}/cert.pem\n\
             plugin.security.file.key = {0}/key.pem\n",
            dir.path().display()
        ),
    );
    let registry = prometheus::Registry::new();
    let e = NetworkBroker::start(cfg, &nats_server(), &registry)
        .await
        .expect_err("nats-server cannot load the certificate");
    assert!(matches!(e, NetworkError::ExitedAtStart { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("nats-server exited at start"), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    // Nothing is left registered, so a corrected start can use the same registry.
    assert!(registry.gather().is_empty());
}

/// SIGKILL to nats-server: the supervisor starts it again, counts the restart, and a
/// client reconnects and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nats_server_is_restarted() {
    let port = free_ports(1)[0];
    let (broker, registry) = start(loopback("restart1", port, "")).await;
    assert_eq!(
        metric(&registry, "coro_network_restarts_total", "restart1"),
        Some(0.0)
    );
    let client = async_nats::connect(broker.client_url()).await.unwrap();
    let mut sub = client.subscribe("restart.test").await.unwrap();
    assert!(delivered(&client, "restart.test", &mut sub, "before").await);

    let old = broker.pid().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        eventually(Duration::from_secs(15), || async {
            broker.pid().is_some_and(|p| p != old)
        })
        .await,
        "no new nats-server: {:?}",
        broker.last_log_lines()
    );
    assert_eq!(
        metric(&registry, "coro_network_restarts_total", "restart1"),
        Some(1.0)
    );
    assert!(
        delivered(&client, "restart.test", &mut sub, "after").await,
        "no delivery after the restart: {:?}",
        broker.last_log_lines()
    );

    let pid = broker.pid().unwrap();
    broker.shutdown().await;
    // Stopped by PID, and not started again.
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || zombie_or_gone(pid));
}

fn zombie_or_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}

/// A taken client or peer port fails the start with an error naming it.
#[tokio::test]
async fn a_taken_port_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let registry = prometheus::Registry::new();

    let e = NetworkBroker::start(loopback("busy1", port, ""), &nats_server(), &registry)
        .await
        .expect_err("the client port is taken");
    assert!(
        matches!(e, NetworkError::PortInUse { port: p, .. } if p == port),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(&format!(
            "client port {port} on 127.0.0.1 is in use: another process listens there; stop it, \
             or set plugin.choria.network.client_port to a free port"
        )),
        "{e}"
    );

    let client = free_ports(1)[0];
    let cfg = loopback(
        "busy2",
        client,
        &format!(
            "plugin.choria.network.peers = nats://127.0.0.1:{port}\n\
             plugin.choria.network.peer_port = {port}\n"
        ),
    );
    let e = NetworkBroker::start(cfg, &nats_server(), &registry)
        .await
        .expect_err("the peer port is taken");
    assert!(
        e.to_string()
            .starts_with(&format!("peer port {port} on 127.0.0.1 is in use")),
        "{e}"
    );
    assert!(registry.gather().is_empty());
}

/// Keys Coro cannot honour, and bad values, are errors naming the file, line and key.
#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.conf");
    let text = "# a broker\n\
                plugin.choria.broker_network = true\n\
                plugin.choria.network.gateway_port = 7222\n\
                plugin.choria.network.client_port = four\n\
                plugin.choria.adapter.x.type = jetstream\n";
    std::fs::write(&file, text).unwrap();
    let errors =
        NetworkConfig::from_choria(&ChoriaConfig::parse(&file, text)).expect_err("two errors");
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let f = file.display();
    assert_eq!(
        lines,
        [
            format!(
                "{f}:3:1: plugin.choria.network.gateway_port: gateways (super clusters) are not \
                 supported by Coro's network broker; remove the key; Coro runs one cluster \
                 (plugin.choria.network.peers), keep the Go broker where a super cluster is \
                 needed"
            ),
            format!(
                "{f}:4:1: plugin.choria.network.client_port: `four` is not a port number; write \
                 a number from 1 to 65535, e.g. plugin.choria.network.client_port = 4222"
            ),
        ]
    );
}

/// The metrics are read from nats-server's monitoring, and the HTTP routes serve
/// `/choria/` and forward the NATS monitoring paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_monitoring_paths() {
    let store = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let cfg = loopback(
        "stats1",
        port,
        &format!(
            "plugin.choria.network.stream.store = {}\n\
             plugin.choria.network.stream.manage_streams = 0\n",
            store.path().display()
        ),
    );
    let (broker, registry) = start(cfg).await;
    let client = async_nats::connect(broker.client_url()).await.unwrap();
    let _sub = client.subscribe("stats.test").await.unwrap();
    client.flush().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            // /jsz is read right after /varz.
            metric(&registry, "choria_network_connections", "stats1") == Some(1.0)
                && metric(&registry, "choria_network_stream_filestore_max", "stats1")
                    .is_some_and(|v| v > 0.0)
        })
        .await,
        "choria_network_connections: {:?}",
        metric(&registry, "choria_network_connections", "stats1")
    );
    assert!(metric(&registry, "choria_network_subscriptions", "stats1").unwrap() >= 1.0);
    assert!(metric(&registry, "choria_network_total_connections", "stats1").unwrap() >= 1.0);
    assert_eq!(
        metric(&registry, "choria_network_stream_streams", "stats1"),
        Some(0.0)
    );
    assert_eq!(metric(&registry, "choria_build_info", "stats1"), Some(1.0));

    // The HTTP server's network routes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let app = monitor::routes(broker.choria_info(), Some(broker.monitor_proxy()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let varz = get_json(&format!("http://{http}/varz")).await;
    assert_eq!(varz["server_name"], "stats1");
    assert_eq!(varz["port"], port);
    let connz = get_json(&format!("http://{http}/connz?subs=1")).await;
    assert_eq!(connz["num_connections"], 1);
    let jsz = get_json(&format!("http://{http}/jsz")).await;
    assert!(jsz["config"]["store_dir"]
        .as_str()
        .unwrap()
        .starts_with(&store.path().display().to_string()));
    let choria = get_json(&format!("http://{http}/choria/")).await;
    assert_eq!(choria["identity"], "stats1");
    assert_eq!(choria["config_file"], "broker.conf");
    assert_eq!(choria["build"]["max_broker_clients"], 50000);
    // Coro's and nats-server's memory together.
    assert!(choria["system"]["rss"].as_u64().unwrap() > 10_000_000);
    server.abort();

    broker.shutdown().await;
    // Shut down, the metrics are gone from the registry.
    assert_eq!(
        metric(&registry, "choria_network_connections", "stats1"),
        None
    );
}
