//! Federation broker throughput against a raw async-nats relay, in one run
//! (`make bench`, or `scripts/with-servers.sh cargo bench --bench federation`).
//!
//! Two nats-servers (a federation network and a collective) are started from
//! `CORO_NATS_SERVER`. Measured, each over the same messages and in the same process:
//! * requests: the fed_1 fixture (a signed v1 `rpcutil ping`, 3 KiB) published to
//!   `choria.federation.bench.federation` on the federation server, counted where they
//!   arrive on the collective server (`mcollective.broadcast.agent.rpcutil`);
//! * replies: the fed_3 fixture (1.3 KiB) published to
//!   `choria.federation.bench.collective` on the collective server, counted on the
//!   client's reply subject on the federation server;
//! * through a raw relay (one async-nats subscription on one server, publishing every
//!   payload unchanged on the other), and through the federation broker (10 workers per
//!   stage, hardening on, the request rate limit off so it does not cap the figure).
//!
//! The publisher keeps at most `WINDOW` messages between publishing and arrival, so
//! nothing is dropped on either path and the figure is what each forwards, not what a
//! publisher manages to push. Each measurement runs `ROUNDS` times, alternating; the
//! best of each is reported. `CORO_BENCH_MESSAGES` changes the message count.

use coro_broker::federation::{FederationBroker, FederationConfig};
use coro_core::protocol::{Transport, Version};
use futures::StreamExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Messages per measurement; `CORO_BENCH_MESSAGES` overrides.
const MESSAGES: usize = 100_000;
/// Messages published and not yet arrived, at most.
const WINDOW: usize = 2_000;
const ROUNDS: usize = 3;
const CLUSTER: &str = "bench";

/// A nats-server of the benchmark's own, killed when dropped.
struct Nats {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        let bin = std::env::var_os("CORO_NATS_SERVER").unwrap_or_else(|| {
            panic!("CORO_NATS_SERVER is not set: run with scripts/with-servers.sh (make bench)")
        });
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let log = dir.path().join("nats.log");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Server is ready")
        {
            assert!(Instant::now() < deadline, "nats-server not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        PIDS.lock().unwrap().push(child.id());
        Nats {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let shared = std::env::var_os("CORO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let path = shared.join("choria/fixtures/synthetic").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Indented for reading; Go sends the compact form.
    Transport::decode(Version::V1, &bytes).unwrap().encode()
}

/// One path to measure: publish on `from` to `subject`, count on `to` at `arrives`.
struct Path<'a> {
    from: &'a async_nats::Client,
    subject: &'a str,
    to: &'a async_nats::Client,
    arrives: &'a str,
}

/// Messages per second from the first publish to the last arrival, keeping at most
/// [`WINDOW`] in flight.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}
static PIDS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

async fn measure(path: &Path<'_>, payload: &bytes::Bytes, messages: usize) -> f64 {
    let pids: Vec<u32> = std::iter::once(std::process::id()).chain(PIDS.lock().unwrap().iter().copied()).collect();
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let r = measure_inner(path, payload, messages).await;
    let after: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let us: Vec<f64> = before.iter().zip(&after).map(|(b, a)| (a - b) as f64 * 10_000.0 / messages as f64).collect();
    println!("  {:.0}/s cpu µs/msg: bench {:.1} fed-nats {:.1} coll-nats {:.1}", r, us[0], us[1], us[2]);
    r
}

async fn measure_inner(path: &Path<'_>, payload: &bytes::Bytes, messages: usize) -> f64 {
    let mut sub = path.to.subscribe(path.arrives.to_string()).await.unwrap();
    synced(path.to).await;
    let arrived = Arc::new(AtomicUsize::new(0));
    let wake = Arc::new(tokio::sync::Notify::new());
    let counter = {
        let (arrived, wake) = (arrived.clone(), wake.clone());
        tokio::spawn(async move {
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                let n = arrived.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 64 == 0 || n == messages {
                    wake.notify_one();
                }
                if n == messages {
                    break;
                }
            }
            wake.notify_one();
        })
    };
    let start = Instant::now();
    for sent in 0..messages {
        while sent >= arrived.load(Ordering::Relaxed) + WINDOW {
            if counter.is_finished() {
                panic!(
                    "messages were lost: {} of {sent} arrived",
                    arrived.load(Ordering::Relaxed)
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(10), wake.notified()).await;
        }
        path.from
            .publish(path.subject.to_string(), payload.clone())
            .await
            .unwrap();
    }
    path.from.flush().await.unwrap();
    counter.await.unwrap();
    let n = arrived.load(Ordering::Relaxed);
    assert_eq!(n, messages, "messages were lost");
    n as f64 / start.elapsed().as_secs_f64()
}

/// The raw relay: one subscription on `from`, every payload published unchanged on
/// `to`; runs until aborted.
async fn relay(
    from: &async_nats::Client,
    subject: &str,
    to: async_nats::Client,
    target: String,
) -> tokio::task::JoinHandle<()> {
    let mut sub = from.subscribe(subject.to_string()).await.unwrap();
    synced(from).await;
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let _ = to.publish(target.clone(), m.payload).await;
        }
    })
}

/// Waits until the server has handled what `client` sent (its subscriptions are in
/// place); async-nats' `flush` only empties the client's buffer.
async fn synced(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, bytes::Bytes::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
}

async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .subscription_capacity(4 * WINDOW)
        .connect(url)
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let messages = std::env::var("CORO_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    let (fed, coll) = (Nats::start(), Nats::start());
    let request: bytes::Bytes = fixture("fed_1_client_to_federation_broadcast.json").into();
    let reply: bytes::Bytes = fixture("fed_3_server_reply_to_collective.json").into();
    let reply_to = Transport::decode(Version::V1, &reply)
        .unwrap()
        .federation()
        .unwrap()
        .reply_to;
    let target = "mcollective.broadcast.agent.rpcutil";
    let fed_subject = format!("choria.federation.{CLUSTER}.federation");
    let coll_subject = format!("choria.federation.{CLUSTER}.collective");
    let (fed_client, coll_client) = (connect(&fed.url()).await, connect(&coll.url()).await);
    let requests = Path {
        from: &fed_client,
        subject: &fed_subject,
        to: &coll_client,
        arrives: target,
    };
    let replies = Path {
        from: &coll_client,
        subject: &coll_subject,
        to: &fed_client,
        arrives: &reply_to,
    };

    let mut best = [0f64; 4];
    for round in 0..ROUNDS {
        // Raw relays, one per direction.
        let up = relay(
            &fed_client,
            &fed_subject,
            connect(&coll.url()).await,
            target.into(),
        )
        .await;
        let down = relay(
            &coll_client,
            &coll_subject,
            connect(&fed.url()).await,
            reply_to.clone(),
        )
        .await;
        let raw_req = measure(&requests, &request, messages).await;
        let raw_rep = measure(&replies, &reply, messages).await;
        up.abort();
        down.abort();
        // Their subscriptions go with them before the broker subscribes.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut cfg = FederationConfig::new(CLUSTER, vec![fed.url()], vec![coll.url()]);
        cfg.identity = "fb1.example.net".into();
        cfg.hardening.request_rate = None;
        if let Some(c) = std::env::var("CORO_BENCH_CONNECTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            cfg.connections = c;
        }
        if let Some(w) = std::env::var("CORO_BENCH_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            cfg.workers = w;
        }
        let broker = FederationBroker::start(cfg, &prometheus::Registry::new())
            .await
            .unwrap();
        let fed_req = measure(&requests, &request, messages).await;
        let fed_rep = measure(&replies, &reply, messages).await;
        broker.shutdown().await;
        println!(
            "round {}: requests raw {raw_req:.0}/s broker {fed_req:.0}/s ({:.2}x); replies raw {raw_rep:.0}/s broker {fed_rep:.0}/s ({:.2}x)",
            round + 1,
            fed_req / raw_req,
            fed_rep / raw_rep
        );
        for (b, v) in best.iter_mut().zip([raw_req, fed_req, raw_rep, fed_rep]) {
            *b = b.max(v);
        }
    }
    let [raw_req, fed_req, raw_rep, fed_rep] = best;
    println!();
    println!("federation: {messages} messages per measurement, at most {WINDOW} in flight, best of {ROUNDS}");
    println!("| what | msgs/s | ratio |");
    println!("|---|---:|---:|");
    println!("| requests, raw async-nats relay | {raw_req:.0} | 1.00x |");
    println!(
        "| requests, federation broker ({} B) | {fed_req:.0} | **{:.2}x** (goal ≥ 0.80x) |",
        request.len(),
        fed_req / raw_req
    );
    println!("| replies, raw async-nats relay | {raw_rep:.0} | 1.00x |");
    println!(
        "| replies, federation broker ({} B) | {fed_rep:.0} | **{:.2}x** (goal ≥ 0.80x) |",
        reply.len(),
        fed_rep / raw_rep
    );
}
