//! A simulated fleet through the network broker, in one process (`make bench`,
//! `cargo bench --bench fleet`).
//!
//! One Tokio runtime holds everything but nats-server: a [`NetworkBroker`] (nats-server
//! with JetStream on loopback, supervised as in the `coro` daemon), the adapters of the
//! repo's adapters.toml (registration: core NATS → `choria.registration.%s`; replies:
//! `CHORIA_RPC_INBOX` → `choria.replies.%s`), a [`Fleet`] of `CORO_BENCH_NODES`
//! (default 10,000) insecure simulated Choria servers, and an RPC client. Measured:
//! * registration: every node registers once within a 10 s splay; how fast the fleet
//!   published and how fast the records landed in `CHORIA_REGISTRATION`;
//! * one broadcast `rpcutil ping` per round with reply-to
//!   `mcollective.reply.async.<request id>`: time until the replies are in
//!   `CHORIA_RPC_INBOX` (JetStream alone) and until the adapter has written all of them
//!   to `CHORIA_REPLIES`;
//! * in the same rounds, the same ping collected directly by the client
//!   (`rpc::call`): the raw limit the adapter path is compared to.
//!
//! Choria's published figure (an RPC to 50,000 nodes in about 16 s on one broker) is
//! printed next to ours; it comes from other hardware and is not measured here.
//!
//! Needs nats-server: `CORO_NATS_SERVER` (scripts/with-servers.sh exports it), else
//! `nats-server` on PATH or where scripts/install-nats.sh puts it.

use async_nats::jetstream;
use coro::core::config::ChoriaConfig;
use coro_broker::adapters::Adapters;
use coro_broker::network::{find_nats_server, NetworkBroker, NetworkConfig};
use coro_broker::rpc::{self, RpcRequest};
use coro_fleet::{Fleet, FleetConfig, Security};
use futures::StreamExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The adapters run in this process, as in the `coro` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulated servers; `CORO_BENCH_NODES` overrides.
const NODES: usize = 10_000;
/// Ping rounds per path (medians are reported); `CORO_BENCH_ROUNDS` overrides.
const ROUNDS: usize = 3;
/// Every node registers once within this window (Choria's registration splay), so
/// registration arrives as a steady flow rather than all at once.
const SPLAY: Duration = Duration::from_secs(10);
/// Longest wait for all registrations, or for all replies of one ping.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Give up earlier when a count has not moved for this long: what is missing was lost.
const STALL: Duration = Duration::from_secs(15);
/// How often stream state is read while waiting (the resolution of the times).
const POLL: Duration = Duration::from_millis(10);
/// Choria's announcement: an RPC to 50,000 nodes in about 16 s on one broker.
const CHORIA_NODES: f64 = 50_000.0;
const CHORIA_SECONDS: f64 = 16.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a whole number"))
        })
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// CPU seconds (user + system) used so far by process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces; utime and stime are the
    // 14th and 15th fields, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    ticks(11).unwrap_or(0.0) / 100.0 + ticks(12).unwrap_or(0.0) / 100.0
}

/// The sum of every sample of counter `name` in `registry`.
fn counter_sum(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value())
        .sum()
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The stream's message count and last sequence; `None` when the server did not answer
/// in time (busy), which callers read as no change.
async fn stream_state(stream: &jetstream::stream::Stream) -> Option<(u64, u64)> {
    let info = stream.get_info().await.ok()?;
    Some((info.state.messages, info.state.last_sequence))
}

/// The repo's adapters.toml, pointed at the bench broker; the file sinks are left out
/// (they would measure the disk) and dead letters go to `dir`.
fn adapters_toml(url: &str, dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"
[[adapter]]
name = "registration"
[adapter.ingest]
type = "nats"
servers = ["{url}"]
subject = "*.broadcast.agent.registration"
protocol = "request"
workers = 10
queue_len = 1000
block_for = "1s"
[[adapter.sink]]
type = "jetstream"
servers = ["{url}"]
subject = "choria.registration.%s"
encoding = "choria_streams"
stream = "CHORIA_REGISTRATION"
[adapter.dead_letter]
type = "file"
path = "{dir}/registration.dead.jsonl"

[[adapter]]
name = "replies"
[adapter.ingest]
type = "jetstream"
servers = ["{url}"]
stream = "CHORIA_RPC_INBOX"
consumer = "coro_replies"
protocol = "reply"
[[adapter.sink]]
type = "jetstream"
servers = ["{url}"]
subject = "choria.replies.%s"
encoding = "choria_streams"
stream = "CHORIA_REPLIES"
[adapter.dead_letter]
type = "file"
path = "{dir}/replies.dead.jsonl"
"#
    )
}

/// What the registration phase saw.
struct Registration {
    start_time: Duration,
    /// From `Fleet::start` until the fleet had published one registration per node.
    published: Option<Duration>,
    /// From `Fleet::start` until `CHORIA_REGISTRATION` held one record per node.
    stored: Option<Duration>,
    senders: u64,
    /// Records stored per second in the busiest second.
    busiest_second: f64,
}

/// Starts a fleet registering within [`SPLAY`] and follows its registrations into
/// `CHORIA_REGISTRATION` (one message per subject, so its message count is the number
/// of distinct senders and its last sequence the number of records stored).
async fn registration(
    url: &str,
    nodes: usize,
    stream: jetstream::stream::Stream,
) -> (Registration, Fleet) {
    let origin = Instant::now();
    let target = nodes as u64;
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut last_change = Instant::now();
        loop {
            if let Some((senders, stored)) = stream_state(&stream).await {
                if samples.last().is_none_or(|&(_, _, s)| stored > s) {
                    last_change = Instant::now();
                }
                samples.push((origin.elapsed(), senders, stored));
            }
            if samples
                .last()
                .is_some_and(|&(_, senders, _)| senders >= target)
                || origin.elapsed() > TIMEOUT
                || last_change.elapsed() > STALL.max(SPLAY * 2)
            {
                return samples;
            }
            tokio::time::sleep(POLL * 5).await;
        }
    });
    let fleet = Fleet::start(FleetConfig {
        nodes,
        servers: vec![url.to_string()],
        security: Security::Insecure,
        registration_interval: SPLAY,
        splay: true,
        ..FleetConfig::default()
    })
    .await
    .expect("the registering fleet starts");
    let mut published = None;
    while origin.elapsed() < TIMEOUT {
        if fleet.stats().registrations_published >= target {
            published = Some(origin.elapsed());
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let samples = sampler.await.expect("the registration sampler");
    let stored = samples
        .iter()
        .find(|&&(_, senders, _)| senders >= target)
        .map(|&(t, _, _)| t);
    let senders = samples.last().map_or(0, |&(_, s, _)| s);
    let busiest_second = samples
        .iter()
        .enumerate()
        .filter_map(|(i, &(t, _, stored))| {
            let &(t0, _, before) = samples[..i]
                .iter()
                .rev()
                .find(|&&(t0, _, _)| t - t0 >= Duration::from_secs(1))?;
            Some(stored.saturating_sub(before) as f64 / (t - t0).as_secs_f64())
        })
        .fold(0.0, f64::max);
    (
        Registration {
            start_time: fleet.start_time(),
            published,
            stored,
            senders,
            busiest_second,
        },
        fleet,
    )
}

/// One ping round on one path: time to all replies (None: not all came) and CPU
/// seconds of this process and of nats-server meanwhile.
struct Round {
    took: Option<Duration>,
    /// Adapter path only: time until `CHORIA_RPC_INBOX` held every reply.
    inbox: Option<Duration>,
    replies: u64,
    cpu_self: f64,
    cpu_nats: f64,
}

async fn direct_ping(
    client: &async_nats::Client,
    nodes: usize,
    nats_pid: u32,
    timeout: Duration,
) -> Round {
    let request = RpcRequest::new("rpcutil", "ping");
    let cpu = (cpu_seconds(std::process::id()), cpu_seconds(nats_pid));
    let start = Instant::now();
    let (_, replies) = rpc::call(client, &request, Some(nodes), timeout, |_| {})
        .await
        .expect("the direct ping is sent");
    let took = start.elapsed();
    let n = replies.replies.len();
    Round {
        took: (n >= nodes).then_some(took),
        inbox: None,
        replies: n as u64,
        cpu_self: cpu_seconds(std::process::id()) - cpu.0,
        cpu_nats: cpu_seconds(nats_pid) - cpu.1,
    }
}

async fn adapter_ping(
    client: &async_nats::Client,
    nodes: usize,
    nats_pid: u32,
    inbox: &jetstream::stream::Stream,
    replies: &jetstream::stream::Stream,
) -> Round {
    let mut request = RpcRequest::new("rpcutil", "ping");
    let id = request.new_request_id().expect("a request id");
    request.reply_to = Some(format!("mcollective.reply.async.{id}"));
    // The streams keep earlier rounds: count from where they are.
    let inbox_before = stream_state(inbox).await.expect("CHORIA_RPC_INBOX info").0;
    let replies_before = stream_state(replies).await.expect("CHORIA_REPLIES info").0;
    let target = nodes as u64;
    let cpu = (cpu_seconds(std::process::id()), cpu_seconds(nats_pid));
    let start = Instant::now();
    rpc::publish_with_id(client, &request, &id)
        .await
        .expect("the async ping is sent");
    let (mut inbox_at, mut done_at, mut stored) = (None, None, 0);
    let mut last_change = Instant::now();
    while start.elapsed() < TIMEOUT && last_change.elapsed() < STALL {
        if inbox_at.is_none()
            && stream_state(inbox)
                .await
                .is_some_and(|(n, _)| n >= inbox_before + target)
        {
            inbox_at = Some(start.elapsed());
        }
        let now = stream_state(replies)
            .await
            .map_or(0, |(n, _)| n.saturating_sub(replies_before));
        if now > stored {
            stored = now;
            last_change = Instant::now();
        }
        if stored >= target {
            done_at = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Round {
        took: done_at,
        inbox: inbox_at,
        replies: stored,
        cpu_self: cpu_seconds(std::process::id()) - cpu.0,
        cpu_nats: cpu_seconds(nats_pid) - cpu.1,
    }
}

fn rate(n: usize, d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| {
        format!("{:.0}/s", n as f64 / d.as_secs_f64())
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("incomplete".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let nodes = env_usize("CORO_BENCH_NODES", NODES).max(1);
    let rounds = env_usize("CORO_BENCH_ROUNDS", ROUNDS).max(1);
    let dir = tempfile::tempdir().expect("a temp dir");
    let nats_server = find_nats_server().unwrap_or_else(|e| panic!("{e}"));
    let nats_version = std::process::Command::new(&nats_server)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    // 1. The network broker, from the Choria keys a broker.conf would hold.
    let store = dir.path().join("jetstream");
    let choria = ChoriaConfig::parse(
        "bench-broker.conf",
        &format!(
            "plugin.choria.broker_network = true\nidentity = bench-broker\n\
             plugin.choria.network.listen_address = 127.0.0.1\n\
             plugin.choria.network.client_port = {}\n\
             plugin.choria.network.stream.store = {}\n\
             plugin.choria.network.soft_shutdown_timeout = 5\n",
            free_port(),
            store.display()
        ),
    );
    let network = NetworkConfig::from_choria(&choria)
        .unwrap_or_else(|e| panic!("bench broker config: {e}"))
        .expect("broker_network is on");
    let registry = prometheus::Registry::new();
    let broker = NetworkBroker::start(network, &nats_server, &registry)
        .await
        .unwrap_or_else(|e| panic!("starting the network broker: {e}"));
    let url = broker.client_url().to_string();
    let nats_pid = broker.pid().expect("nats-server is running");

    // 2. The streams Choria's async RPC and the adapters write to.
    let client = rpc::connect(&url).await.expect("connecting the RPC client");
    let js = jetstream::new(client.clone());
    let mut streams = Vec::new();
    for (name, subject, per_subject) in [
        ("CHORIA_RPC_INBOX", "mcollective.reply.async.>", -1),
        ("CHORIA_REPLIES", "choria.replies.>", -1),
        // The latest registration per node, as a registry of nodes: the message count
        // is then the number of distinct senders.
        ("CHORIA_REGISTRATION", "choria.registration.>", 1),
    ] {
        streams.push(
            js.create_stream(jetstream::stream::Config {
                name: name.to_string(),
                subjects: vec![subject.to_string()],
                max_messages_per_subject: per_subject,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("creating stream {name}: {e}")),
        );
    }
    let registration_stream = streams.pop().expect("CHORIA_REGISTRATION");
    let replies_stream = streams.pop().expect("CHORIA_REPLIES");
    let inbox_stream = streams.pop().expect("CHORIA_RPC_INBOX");

    // 3. The adapters.
    let (config, sinks) = coro::sinks::config::parse(
        Path::new("bench-adapters.toml"),
        &adapters_toml(&url, dir.path()),
    )
    .unwrap_or_else(|e| panic!("bench adapters config: {e}"));
    let adapters = Adapters::start(&config, &sinks, &registry)
        .await
        .unwrap_or_else(|e| panic!("starting the adapters: {e}"));

    // 4. Registration. The registering fleet is stopped afterwards: with a 10 s interval
    // it would keep re-registering at nodes/10 per second during the pings.
    let (reg, fleet) = registration(&url, nodes, registration_stream.clone()).await;
    let connections = fleet.stats().connections;
    // Core NATS ingest is at-most-once: a registration dropped here is filled in by the
    // node's next one, SPLAY later, so the drops are reported next to the sender count.
    let registration_dropped = counter_sum(&registry, "coro_ingest_dropped_total");
    fleet.shutdown().await;

    // 5. Pings to a fleet that does not register.
    let origin = Instant::now();
    let fleet = Fleet::start(FleetConfig {
        nodes,
        servers: vec![url.clone()],
        security: Security::Insecure,
        registration_interval: Duration::ZERO,
        ..FleetConfig::default()
    })
    .await
    .expect("the ping fleet starts");
    let ping_fleet_start = fleet.start_time();
    // The first broadcast wakes every node task for the first time: not measured. Ping
    // until every node answers, which also shows whether Fleet::start returned only
    // once nats-server had every subscription (before it waited for a round trip, a
    // ping right after start missed up to 95% of 50,000 nodes).
    let (mut reachable, mut first_probe) = (None, None);
    while reachable.is_none() && origin.elapsed() < TIMEOUT {
        let probe = direct_ping(&client, nodes, nats_pid, Duration::from_secs(2)).await;
        first_probe.get_or_insert(probe.replies);
        if probe.took.is_some() {
            reachable = Some(origin.elapsed());
        }
    }
    let (mut direct, mut adapter) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which path goes first, so neither always runs on a warmer system.
        if round % 2 == 0 {
            direct.push(direct_ping(&client, nodes, nats_pid, TIMEOUT).await);
            adapter
                .push(adapter_ping(&client, nodes, nats_pid, &inbox_stream, &replies_stream).await);
        } else {
            adapter
                .push(adapter_ping(&client, nodes, nats_pid, &inbox_stream, &replies_stream).await);
            direct.push(direct_ping(&client, nodes, nats_pid, TIMEOUT).await);
        }
    }
    // Every node answered once per adapter round: one subject per sender.
    let mut per_sender = replies_stream
        .info_with_subjects("choria.replies.>")
        .await
        .unwrap_or_else(|e| panic!("reading CHORIA_REPLIES subjects: {e}"));
    let (mut reply_senders, mut reply_records) = (0u64, 0u64);
    while let Some(Ok((_, count))) = per_sender.next().await {
        reply_senders += 1;
        reply_records += count as u64;
    }

    let ingest_dropped = counter_sum(&registry, "coro_ingest_dropped_total");
    let dead_letters = lines_in(&dir.path().join("registration.dead.jsonl"))
        + lines_in(&dir.path().join("replies.dead.jsonl"));
    let log_warnings: Vec<String> = broker
        .last_log_lines()
        .into_iter()
        .filter(|l| l.contains("[WRN]") || l.contains("[ERR]"))
        .collect();
    fleet.shutdown().await;
    let drained = adapters.shutdown(Duration::from_secs(10)).await;
    broker.shutdown().await;

    // 6. The table.
    let complete = |rounds: &[Round]| rounds.iter().all(|r| r.took.is_some());
    let med = |rounds: &[Round], f: fn(&Round) -> Option<Duration>| {
        let v: Vec<f64> = rounds
            .iter()
            .filter_map(f)
            .map(|d| d.as_secs_f64())
            .collect();
        (v.len() == rounds.len()).then(|| Duration::from_secs_f64(median(v)))
    };
    let direct_time = med(&direct, |r| r.took);
    let adapter_time = med(&adapter, |r| r.took);
    let inbox_time = med(&adapter, |r| r.inbox);
    let cpu = |rounds: &[Round]| {
        format!(
            "CPU {:.2} s coro+fleet, {:.2} s nats-server",
            median(rounds.iter().map(|r| r.cpu_self).collect()),
            median(rounds.iter().map(|r| r.cpu_nats).collect())
        )
    };
    let per_second = |d: Option<Duration>| d.map(|d| nodes as f64 / d.as_secs_f64());
    let choria_rate = CHORIA_NODES / CHORIA_SECONDS;

    println!(
        "fleet benchmark: {nodes} simulated Choria servers (insecure, {connections} connections), \
         {nats_version} via NetworkBroker on loopback, JetStream file store, \
         {rounds} ping rounds per path (medians)"
    );
    println!();
    let row = |what: &str, time: String, rate: String, note: String| {
        println!("{what:<52} {time:>11} {rate:>10}  {note}");
    };
    row("what", "time".into(), "per second".into(), "note".into());
    row(
        &format!("fleet start ({nodes} nodes subscribed)"),
        secs(Some(reg.start_time)),
        "-".into(),
        format!(
            "ping fleet (no registration): {:.2} s; a ping right after reached {} nodes, \
             all answered after {}",
            ping_fleet_start.as_secs_f64(),
            first_probe.unwrap_or(0),
            secs(reachable)
        ),
    );
    row(
        &format!("registration published (splay {} s)", SPLAY.as_secs()),
        secs(reg.published),
        rate(nodes, reg.published),
        "from Fleet::start to one registration per node".into(),
    );
    row(
        "registration stored in CHORIA_REGISTRATION",
        secs(reg.stored),
        rate(nodes, reg.stored),
        format!(
            "{} of {nodes} senders, {registration_dropped} dropped at ingest; \
             busiest second {:.0} records/s; last stored {} after last published",
            reg.senders,
            reg.busiest_second,
            match (reg.published, reg.stored) {
                (Some(p), Some(s)) => format!("{:.0} ms", s.saturating_sub(p).as_secs_f64() * 1e3),
                _ => "-".into(),
            }
        ),
    );
    row(
        "ping → CHORIA_RPC_INBOX (JetStream, no adapter)",
        secs(inbox_time),
        rate(nodes, inbox_time),
        "reply-to mcollective.reply.async.<id>".into(),
    );
    row(
        "ping → CHORIA_RPC_INBOX → adapter → CHORIA_REPLIES",
        secs(adapter_time),
        rate(nodes, adapter_time),
        format!(
            "{}; {reply_senders} senders, {reply_records} records",
            cpu(&adapter)
        ),
    );
    row(
        "ping, direct collect on the client (rpc::call)",
        secs(direct_time),
        rate(nodes, direct_time),
        cpu(&direct),
    );
    row(
        "ratio adapter path / direct",
        "".into(),
        match (per_second(adapter_time), per_second(direct_time)) {
            (Some(a), Some(d)) => format!("{:.2}x", a / d),
            _ => "-".into(),
        },
        "replies/s into CHORIA_REPLIES ÷ replies/s collected directly".into(),
    );
    row(
        "Choria: RPC to 50,000 nodes, one broker",
        format!("~{CHORIA_SECONDS:.0} s"),
        format!("{choria_rate:.0}/s"),
        "published figure (Choria announcement), other hardware; not measured here".into(),
    );
    row(
        "ours (adapter path) / Choria's figure",
        "".into(),
        per_second(adapter_time).map_or("-".into(), |a| format!("{:.2}x", a / choria_rate)),
        format!("{nodes} nodes here against 50,000 there"),
    );
    println!();
    for (name, rounds) in [("direct", &direct), ("adapter", &adapter)] {
        let each: Vec<String> = rounds
            .iter()
            .map(|r| match r.took {
                Some(d) => format!("{:.2} s", d.as_secs_f64()),
                None => format!("incomplete ({} replies)", r.replies),
            })
            .collect();
        println!("{name} rounds: {}", each.join(", "));
    }
    println!(
        "adapters: {ingest_dropped} ingest drops, {dead_letters} dead letters, drained at stop: {drained}"
    );
    for l in &log_warnings {
        println!("nats-server: {l}");
    }

    let registered = reg.stored.is_some();
    let answered = reachable.is_some()
        && complete(&direct)
        && complete(&adapter)
        && reply_senders == nodes as u64;
    if registered && answered {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "fleet bench: not everything arrived within {} s (registrations complete: {registered}, \
             replies complete: {answered})",
            TIMEOUT.as_secs()
        );
        ExitCode::FAILURE
    }
}
