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
//!   payload unchanged on the other), and through the federation broker (Coro's
//!   defaults: 10 workers per direction on one connection per stage and side, run by
//!   one task per direction; hardening on; the request rate limit off so it does not
//!   cap the figure). `CORO_BENCH_WORKERS` and `CORO_BENCH_CONNECTIONS` change those.
//!
//! The publisher keeps at most `WINDOW` messages between publishing and arrival, so
//! nothing is dropped on either path and the figure is what each forwards, not what a
//! publisher manages to push. Each measurement runs `ROUNDS` times, alternating; the
//! round with the median ratio is reported per direction, with the CPU time per message
//! of this process (publisher, counter, and relay or broker: the difference is the
//! broker's own cost) and of the two nats-servers. `CORO_BENCH_MESSAGES` changes the
//! message count.

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
const ROUNDS: usize = 5;
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
        SERVERS.lock().unwrap().push(child.id());
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

/// CPU time (user + system) of process `pid` so far, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The nats-servers' PIDs, for their CPU time.
static SERVERS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// One measurement: messages per second, and CPU µs per message of this process
/// (publisher, counter, and the relay or the broker) and of each nats-server.
#[derive(Debug, Clone, Copy)]
struct Measured {
    rate: f64,
    cpu_us: [f64; 3],
}

/// Messages per second from the first publish to the last arrival, keeping at most
/// [`WINDOW`] in flight, with the CPU each process spent on them.
async fn measure(path: &Path<'_>, payload: &bytes::Bytes, messages: usize) -> Measured {
    let pids: Vec<u32> = std::iter::once(std::process::id())
        .chain(SERVERS.lock().unwrap().iter().copied())
        .collect();
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let rate = measure_inner(path, payload, messages).await;
    let mut cpu_us = [0.0; 3];
    for (i, pid) in pids.iter().enumerate().take(3) {
        let ticks = cpu_ticks(*pid).saturating_sub(before[i]);
        cpu_us[i] = ticks as f64 * 10_000.0 / messages as f64;
    }
    Measured { rate, cpu_us }
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

    let mut rounds = Vec::new();
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

        // Coro's defaults, but no request rate limit (it would cap the figure).
        let mut cfg = FederationConfig::new(CLUSTER, vec![fed.url()], vec![coll.url()]);
        cfg.identity = "fb1.example.net".into();
        cfg.hardening.request_rate = None;
        // Experiments: CORO_BENCH_WORKERS, CORO_BENCH_CONNECTIONS.
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
        if let Some(c) = env("CORO_BENCH_CONNECTIONS") {
            cfg.connections = c;
        }
        if let Some(w) = env("CORO_BENCH_WORKERS") {
            cfg.workers = w;
        }
        let broker = FederationBroker::start(cfg, &prometheus::Registry::new())
            .await
            .unwrap();
        let fed_req = measure(&requests, &request, messages).await;
        let fed_rep = measure(&replies, &reply, messages).await;
        broker.shutdown().await;
        println!(
            "round {}: requests raw {:.0}/s broker {:.0}/s ({:.2}x); replies raw {:.0}/s broker {:.0}/s ({:.2}x)",
            round + 1,
            raw_req.rate,
            fed_req.rate,
            fed_req.rate / raw_req.rate,
            raw_rep.rate,
            fed_rep.rate,
            fed_rep.rate / raw_rep.rate,
        );
        rounds.push([raw_req, fed_req, raw_rep, fed_rep]);
    }
    // The median round by ratio, for each direction.
    let median = |raw: usize, fed: usize| {
        let mut by_ratio: Vec<[Measured; 4]> = rounds.clone();
        by_ratio
            .sort_by(|a, b| (a[fed].rate / a[raw].rate).total_cmp(&(b[fed].rate / b[raw].rate)));
        let r = by_ratio[by_ratio.len() / 2];
        (r[raw], r[fed])
    };
    let row = |what: &str, m: &Measured, ratio: Option<f64>| {
        let ratio = ratio.map_or("1.00x".to_string(), |r| {
            format!("**{r:.2}x** (goal ≥ 0.80x)")
        });
        println!(
            "| {what} | {:.0} | {ratio} | {:.1} | {:.1} + {:.1} |",
            m.rate, m.cpu_us[0], m.cpu_us[1], m.cpu_us[2]
        );
    };
    println!();
    println!(
        "federation: {messages} messages per measurement, at most {WINDOW} in flight, median of {ROUNDS} rounds"
    );
    println!("| what | msgs/s | ratio | CPU µs/msg, bench process | CPU µs/msg, nats-servers |");
    println!("|---|---:|---:|---:|---:|");
    let (raw, fed) = median(0, 1);
    row("requests, raw async-nats relay", &raw, None);
    let what = format!("requests, federation broker ({} B)", request.len());
    row(&what, &fed, Some(fed.rate / raw.rate));
    let (raw, fed) = median(2, 3);
    row("replies, raw async-nats relay", &raw, None);
    let what = format!("replies, federation broker ({} B)", reply.len());
    row(&what, &fed, Some(fed.rate / raw.rate));
}
