//! `coro broker run` end to end: the network broker (the real nats-server binary from
//! `CORO_NATS_SERVER`, which `scripts/with-servers.sh` exports; a missing binary fails the
//! tests, they are never skipped) with adapters in the same process, a nats-server that
//! is killed under load, and the configs that must be refused.

mod common;

use common::{eventually, Coro};
use coro_core::gojson;
use coro_core::protocol::v1;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Fails (never skips) without the nats-server binary.
fn require_nats_server() {
    let Some(bin) = std::env::var_os("CORO_NATS_SERVER") else {
        panic!(
            "CORO_NATS_SERVER is not set: run the tests with `make test` \
             (scripts/with-servers.sh exports it; scripts/install-nats.sh installs nats-server)"
        );
    };
    assert!(
        Path::new(&bin).is_file(),
        "CORO_NATS_SERVER={} is not a file: run `make test`",
        Path::new(&bin).display()
    );
}

/// Loopback ports no other test in this run is given.
fn free_ports<const N: usize>() -> [u16; N] {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap();
    let mut ports = [0; N];
    let mut i = 0;
    while i < N {
        let p = common::free_port();
        if p != 0 && !taken.contains(&p) {
            taken.push(p);
            ports[i] = p;
            i += 1;
        }
    }
    ports
}

/// The PIDs whose parent is `parent` (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// A running `coro broker run`; on drop, it and its nats-server child are killed by PID.
struct Broker {
    coro: Option<Coro>,
}

impl Broker {
    fn spawn(config: &Path, adapters: Option<&Path>, http: u16, log: &Path) -> Broker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coro"));
        cmd.args(["broker", "run", "--config"]).arg(config);
        if let Some(a) = adapters {
            cmd.arg("--adapters").arg(a);
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Broker {
            coro: Some(Coro {
                child,
                http,
                log: log.to_path_buf(),
            }),
        }
    }

    /// Starts it and waits until /readyz says ready.
    fn start(config: &Path, adapters: Option<&Path>, http: u16, log: &Path) -> Broker {
        let mut b = Broker::spawn(config, adapters, http, log);
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Some(status) = b.coro.as_mut().unwrap().child.try_wait().unwrap() {
                panic!("coro exited at start ({status}):\n{}", b.coro().log_text());
            }
            if b.coro().get("/readyz").is_some_and(|(code, _)| code == 200) {
                return b;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("coro not ready after 40s:\n{}", b.coro().log_text());
    }

    fn coro(&self) -> &Coro {
        self.coro.as_ref().unwrap()
    }

    fn pid(&self) -> u32 {
        self.coro().child.id()
    }

    /// The nats-server child's PID.
    fn nats_pid(&self) -> Option<u32> {
        children(self.pid()).into_iter().find(|&p| alive(p))
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self
            .coro()
            .get(path)
            .unwrap_or_else(|| panic!("GET {path}"));
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// SIGTERM; the exit code, waiting at most 60 s.
    fn terminate(mut self) -> i32 {
        let mut coro = self.coro.take().unwrap();
        signal(coro.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = coro.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = coro.log_text();
        self.coro = Some(coro);
        panic!("coro did not stop within 60s of SIGTERM:\n{log}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut coro) = self.coro.take() {
            // Its child is in its own process group: kill it by PID too.
            let nats = children(coro.child.id());
            let _ = coro.child.kill();
            let _ = coro.child.wait();
            for pid in nats {
                signal(pid, "-KILL");
            }
        }
    }
}

/// Runs `coro <args>` to its exit (killed after 60 s): the code and stderr.
fn coro_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let nats = children(child.id());
            let _ = child.kill();
            let _ = child.wait();
            for pid in nats {
                signal(pid, "-KILL");
            }
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A network broker on loopback `client`, HTTP on `http`, JetStream in `dir/store`.
fn network_conf(identity: &str, client: u16, http: u16, dir: &Path) -> String {
    format!(
        "identity = {identity}\n\
         plugin.choria.broker_network = true\n\
         plugin.choria.network.listen_address = 127.0.0.1\n\
         plugin.choria.network.client_port = {client}\n\
         plugin.choria.network.soft_shutdown_timeout = 10\n\
         plugin.choria.network.stream.store = {}\n\
         plugin.choria.stats_port = {http}\n",
        dir.join("store").display()
    )
}

/// A v1 RPC reply transport with request id `i`.
fn v1_reply(i: usize) -> Vec<u8> {
    let req = v1::Request::new(
        "rpcutil",
        "client.example.net",
        "choria=rip.mcollective",
        60,
        &format!("{i:032x}"),
        "mcollective",
        1_700_000_000,
    );
    let sender = format!("node{}.example.net", i % 5);
    let pong = r#"{"action":"ping","statuscode":0,"statusmsg":"OK","data":{"pong":1}}"#;
    let reply = v1::Reply::for_request(&req, &sender, 1_700_000_001, pong);
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let headers = v1::Headers {
        sender,
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

/// The request ids in a file sink's output, line by line.
fn request_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["requestid"].as_str().map(String::from))
        .collect()
}

/// broker.conf with the network broker and a registration adapter from
/// `plugin.choria.adapter.*` keys, with no servers set: the adapter uses the embedded
/// broker. A simulated fleet's registration arrives in a stream; metrics, /choria/ and
/// /varz answer on the stats port; SIGTERM stops nats-server too and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_broker_and_registration_adapter_in_one_process() {
    require_nats_server();
    let [client, http] = free_ports::<2>();
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        &format!(
            "{}plugin.choria.adapters = registration\n\
             plugin.choria.adapter.registration.type = choria_streams\n\
             plugin.choria.adapter.registration.ingest.topic = *.broadcast.agent.registration\n\
             plugin.choria.adapter.registration.ingest.protocol = request\n\
             plugin.choria.adapter.registration.ingest.workers = 2\n\
             plugin.choria.adapter.registration.stream.topic = choria.registration.%s\n",
            network_conf("broker-test", client, http, dir.path())
        ),
    );
    let broker = Broker::start(&conf, None, http, &dir.path().join("coro.log"));
    let coro = broker.coro();

    let url = format!("nats://127.0.0.1:{client}");
    let nc = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(nc.clone());
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "REGISTRATION".into(),
            subjects: vec!["choria.registration.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();

    let fleet = coro_fleet::Fleet::start(coro_fleet::FleetConfig {
        nodes: 3,
        servers: vec![url.clone()],
        registration_interval: Duration::from_secs(1),
        splay: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let identities: Vec<String> = fleet.identities().collect();
    let check = stream.clone();
    let ids = identities.clone();
    let arrived = eventually(Duration::from_secs(20), move || {
        let stream = check.clone();
        let ids = ids.clone();
        Box::pin(async move {
            for id in &ids {
                let subject = format!("choria.registration.{id}");
                if stream
                    .get_last_raw_message_by_subject(&subject)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            true
        })
    })
    .await;
    assert!(
        arrived,
        "registration of {identities:?} did not arrive; log:\n{}",
        coro.log_text()
    );
    for id in &identities {
        let m = stream
            .get_last_raw_message_by_subject(&format!("choria.registration.{id}"))
            .await
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(doc["sender"], id.as_str(), "{doc}");
        assert_eq!(
            doc["protocol"], "choria:adapters:choria_streams:output:1",
            "{doc}"
        );
    }
    assert!(stream.info().await.unwrap().state.messages >= 3);
    fleet.shutdown().await;

    // One registry: the network broker's and the adapters' metrics.
    let (code, metrics) = coro.get("/metrics").unwrap();
    assert_eq!(code, 200);
    for series in [
        r#"choria_network_connections{identity="broker-test"}"#,
        r#"coro_network_restarts_total{identity="broker-test"} 0"#,
        "choria_build_info{",
        r#"choria_adapter_queue_capacity{identity="broker-test",name="registration.0"}"#,
    ] {
        assert!(
            metrics.contains(series),
            "/metrics lacks {series}:\n{metrics}"
        );
    }
    assert!(
        coro.metric_sum("choria_adapter_received_msgs{", r#"identity="broker-test""#) >= 3.0,
        "{metrics}"
    );
    assert!(
        coro.metric_sum("coro_sink_records_total{", r#"outcome="delivered""#) >= 3.0,
        "{metrics}"
    );
    assert_eq!(broker.json("/choria/")["identity"], "broker-test");
    let varz = broker.json("/varz");
    assert_eq!(varz["server_name"], "broker-test", "{varz}");
    assert_eq!(varz["port"], client, "{varz}");
    assert_eq!(coro.get("/healthz").map(|(c, _)| c), Some(200));

    let nats = broker.nats_pid().expect("a nats-server child");
    assert!(alive(nats));
    drop(nc);
    assert_eq!(broker.terminate(), 0);
    assert!(
        !alive(nats),
        "nats-server {nats} still runs after coro stopped"
    );
}

/// SIGKILL to the nats-server child while a JetStream-ingest adapter (from --adapters)
/// works through a stream in the embedded broker's store: Coro starts nats-server again
/// on the same store, the adapter reconnects, and every message published (retried until
/// its PubAck) reaches the file sink at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_server_killed_under_load_is_restarted_and_nothing_is_lost() {
    require_nats_server();
    let [client, http] = free_ports::<2>();
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        &network_conf("fault-test", client, http, dir.path()),
    );
    let url = format!("nats://127.0.0.1:{client}");

    // The ingest stream must exist before its adapter starts: create it in the store
    // with a first run of the network broker alone.
    let broker = Broker::start(&conf, None, http, &dir.path().join("first.log"));
    {
        let nc = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(nc);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "FAULT_IN".into(),
            subjects: vec!["fault.in.>".into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(broker.terminate(), 0);

    let out = dir.path().join("out.jsonl");
    let window = 100;
    let adapters = write(
        dir.path(),
        "adapters.toml",
        &format!(
            r#"
[http]
drain_timeout = "10s"

[[adapter]]
name = "durable"
[adapter.ingest]
type = "jetstream"
servers = ["{url}"]
stream = "FAULT_IN"
consumer = "coro_fault"
ack_wait = "2s"
max_ack_pending = {window}
fetch_batch = 20
[adapter.pipeline]
batch = {{ max_records = 20, timeout = "10ms" }}
[[adapter.sink]]
type = "file"
path = "{}"
fsync = "always"
"#,
            out.display()
        ),
    );
    let broker = Broker::start(&conf, Some(&adapters), http, &dir.path().join("coro.log"));

    // A steady publisher: every message retried until its PubAck, de-duplicated by the
    // stream on its Nats-Msg-Id.
    let n = 1500usize;
    let published = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publisher = {
        let url = url.clone();
        let published = published.clone();
        tokio::spawn(async move {
            let nc = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(&url)
                .await
                .unwrap();
            let js = async_nats::jetstream::new(nc);
            let mut retries = 0usize;
            // Twenty in flight at a time, so a loaded machine still keeps a steady flow;
            // each chunk is retried (only what was not acknowledged) until all are in.
            let ids: Vec<usize> = (0..n).collect();
            for chunk in ids.chunks(20) {
                let mut pending: Vec<usize> = chunk.to_vec();
                while !pending.is_empty() {
                    let attempts = pending.iter().map(|&i| {
                        let js = js.clone();
                        async move {
                            let mut headers = async_nats::HeaderMap::new();
                            headers.insert("Nats-Msg-Id", format!("m{i}").as_str());
                            let acked = match tokio::time::timeout(
                                Duration::from_secs(3),
                                js.publish_with_headers("fault.in.r", headers, v1_reply(i).into()),
                            )
                            .await
                            {
                                Ok(Ok(ack)) => matches!(
                                    tokio::time::timeout(Duration::from_secs(3), ack).await,
                                    Ok(Ok(_))
                                ),
                                _ => false,
                            };
                            (i, acked)
                        }
                    });
                    let results = futures::future::join_all(attempts).await;
                    pending = results
                        .into_iter()
                        .filter(|(_, acked)| !acked)
                        .map(|(i, _)| i)
                        .collect();
                    if !pending.is_empty() {
                        retries += pending.len();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                let done = chunk.last().map_or(0, |&i| i + 1);
                published.store(done, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            retries
        })
    };

    // A third of the way through publishing, with records arriving, kill nats-server.
    let load = || published.load(std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    while (load() < n / 3 || request_ids(&out).is_empty())
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before_kill = request_ids(&out).len();
    let published_before_kill = load();
    assert!(
        before_kill > 0 && published_before_kill < n,
        "killed at {before_kill} records, {published_before_kill} published of {n}; log:\n{}",
        broker.coro().log_text()
    );
    let old = broker.nats_pid().expect("a nats-server child");
    signal(old, "-KILL");

    // It comes back, as a new process.
    let restarted = eventually(Duration::from_secs(20), || {
        let new = broker.nats_pid();
        Box::pin(async move { new.is_some_and(|p| p != old) })
    })
    .await;
    assert!(
        restarted,
        "nats-server not restarted; log:\n{}",
        broker.coro().log_text()
    );

    let retries = tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("the publisher finished")
        .unwrap();
    let done = eventually(Duration::from_secs(60), || {
        let got = request_ids(&out);
        Box::pin(async move { got.iter().collect::<HashSet<_>>().len() >= n })
    })
    .await;
    let got = request_ids(&out);
    let distinct: HashSet<_> = got.iter().collect();
    assert!(
        done,
        "{} of {n} distinct records after the restart; log:\n{}",
        distinct.len(),
        broker.coro().log_text()
    );
    for i in 0..n {
        assert!(distinct.contains(&format!("{i:032x}")), "record {i} lost");
    }
    assert_eq!(distinct.len(), n);
    let duplicates = got.len() - distinct.len();
    // What was in flight when the server died is redelivered: one in-flight window, and
    // the acks nats-server had not written to its store yet.
    assert!(
        duplicates <= 2 * window,
        "{duplicates} duplicates, more than twice the in-flight window of {window}"
    );
    eprintln!(
        "killed nats-server after {published_before_kill} published, {before_kill} \
         delivered; {duplicates} duplicates, {retries} publish retries"
    );
    assert_eq!(
        broker
            .coro()
            .metric(r#"coro_network_restarts_total{identity="fault-test"}"#),
        Some(1.0)
    );
    let ready = eventually(Duration::from_secs(20), || {
        let code = broker.coro().get("/readyz").map(|(c, _)| c);
        Box::pin(async move { code == Some(200) })
    })
    .await;
    assert!(ready, "not ready after the restart");
    let nats = broker.nats_pid().expect("a nats-server child");
    assert_eq!(broker.terminate(), 0);
    assert!(
        !alive(nats),
        "nats-server {nats} still runs after coro stopped"
    );
}

#[test]
fn nothing_enabled_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(dir.path(), "broker.conf", "identity = idle\n");
    let (code, stderr) = coro_exit(&["broker", "run", "--config", conf.to_str().unwrap()], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("plugin.choria.broker_network")
            && stderr.contains("plugin.choria.adapters"),
        "{stderr}"
    );
}

/// The federation broker runs (broker/tests/federation.rs); without its federation side
/// the config is refused, naming the missing key at the line that asks for it.
#[test]
fn federation_needs_its_federation_side() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        "plugin.choria.broker_network = true\nplugin.choria.broker_federation = true\n",
    );
    let (code, stderr) = coro_exit(&["broker", "run", "--config", conf.to_str().unwrap()], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {}:2:1: plugin.choria.federation_middleware_hosts: missing",
            conf.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_network_key_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        "plugin.choria.broker_network = true\nplugin.choria.network.client_port = abc\n\
         plugin.choria.network.gateway_port = 7222\n",
    );
    let (code, stderr) = coro_exit(&["broker", "run", "--config", conf.to_str().unwrap()], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "every problem, one line each: {stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "error: {}:2:1: plugin.choria.network.client_port: `abc` is not a port number; ",
            conf.display()
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "error: {}:3:1: plugin.choria.network.gateway_port: ",
            conf.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_taken_client_port_is_a_config_error() {
    require_nats_server();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let [http] = free_ports::<1>();
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        &format!(
            "plugin.choria.broker_network = true\n\
             plugin.choria.network.listen_address = 127.0.0.1\n\
             plugin.choria.network.client_port = {port}\nplugin.choria.stats_port = {http}\n"
        ),
    );
    let (code, stderr) = coro_exit(&["broker", "run", "--config", conf.to_str().unwrap()], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {}:3:1: plugin.choria.network.client_port: client port {port} on 127.0.0.1 is in use",
            conf.display()
        )),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn a_taken_stats_port_is_a_config_error() {
    require_nats_server();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let [client] = free_ports::<1>();
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        &format!(
            "plugin.choria.broker_network = true\n\
             plugin.choria.network.listen_address = 127.0.0.1\n\
             plugin.choria.network.client_port = {client}\nplugin.choria.stats_port = {port}\n"
        ),
    );
    let (code, stderr) = coro_exit(&["broker", "run", "--config", conf.to_str().unwrap()], &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {}:4:1: plugin.choria.stats_port: HTTP port {port} on 127.0.0.1 is in use",
            conf.display()
        )),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn a_missing_nats_server_names_the_installer() {
    let [client, http] = free_ports::<2>();
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        &format!(
            "plugin.choria.broker_network = true\n\
             plugin.choria.network.listen_address = 127.0.0.1\n\
             plugin.choria.network.client_port = {client}\nplugin.choria.stats_port = {http}\n"
        ),
    );
    let missing = dir.path().join("no-nats-server");
    let (code, stderr) = coro_exit(
        &["broker", "run", "--config", conf.to_str().unwrap()],
        &[("CORO_NATS_SERVER", missing.to_str().unwrap())],
    );
    assert_eq!(code, Some(69), "{stderr}");
    assert!(
        stderr.contains("error: nats-server not found")
            && stderr.contains("scripts/install-nats.sh"),
        "{stderr}"
    );
}

/// `coro validate` reads a broker.conf as `coro broker run` does: a line for the network
/// broker, and its errors.
#[test]
fn validate_checks_the_network_section() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "broker.conf",
        "identity = b1\nplugin.choria.broker_network = true\n\
         plugin.choria.network.peers = nats://b1:5222,nats://b2:5222,nats://b3:5222\n\
         plugin.choria.stats_address = ::\n",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["validate", conf.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        stdout,
        "network broker: b1, clients on [::]:4222, cluster CHORIA with 3 peers on port 5222, \
         no JetStream, no TLS; HTTP on 127.0.0.1:8222\n"
    );

    write(
        dir.path(),
        "broker.conf",
        "plugin.choria.broker_network = true\nplugin.choria.network.client_port = abc\n",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["validate", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with(&format!(
        "{}:2:1: plugin.choria.network.client_port: `abc` is not a port number",
        conf.display()
    )));
}
