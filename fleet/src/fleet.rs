//! Many nodes in one process over a small pool of NATS connections.
//!
//! Nodes are spread over the connections in contiguous blocks. Each node keeps its own
//! subscriptions (no queue groups), so the broker delivers a broadcast once per node, as
//! to a real fleet, while the process holds `connections` sockets rather than one per
//! node. Each node runs as one task that handles its requests in order and publishes
//! its registration on its own schedule.

use crate::agents::AgentSet;
use crate::error::FleetError;
use crate::facts;
use crate::node::{Node, NodeSpec, Outcome};
use crate::security::{Authority, ClientCredentials, Security};
use futures::stream::{SelectAll, StreamExt};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How many nodes share one NATS connection when `connections` is 0 (automatic).
pub const NODES_PER_CONNECTION: usize = 250;

/// What to simulate and where.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// How many nodes.
    pub nodes: usize,
    /// NATS server URLs, e.g. `nats://127.0.0.1:4222`.
    pub servers: Vec<String>,
    /// The collective every node is in (its main collective).
    pub collective: String,
    /// Identities are `<identity_prefix><index>`, the index zero-padded to 5 digits.
    pub identity_prefix: String,
    /// Protocol and signing; see [`Security`].
    pub security: Security,
    /// How often each node publishes registration; zero disables registration.
    pub registration_interval: Duration,
    /// Whether the first registration waits a random time up to the interval (Choria's
    /// `registration_splay`); without it every node registers at start.
    pub splay: bool,
    /// Gzip registration into `zcontent` (go-choria's default) rather than embedding
    /// the JSON in `content`.
    pub registration_compression: bool,
    /// NATS connections the nodes share; 0 means one per [`NODES_PER_CONNECTION`]
    /// nodes.
    pub connections: usize,
    /// Seed of the generated facts: the same seed gives the same fleet.
    pub facts_seed: u64,
    /// The agents every node runs; by default `discovery` and `rpcutil`.
    pub agents: Arc<AgentSet>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            nodes: 10,
            servers: vec!["nats://127.0.0.1:4222".to_string()],
            collective: "mcollective".to_string(),
            identity_prefix: "node-".to_string(),
            security: Security::Insecure,
            registration_interval: Duration::from_secs(300),
            splay: true,
            registration_compression: true,
            connections: 0,
            facts_seed: 1,
            agents: Arc::new(AgentSet::standard()),
        }
    }
}

impl FleetConfig {
    /// The identity of node `index` (0-based).
    pub fn identity(&self, index: usize) -> String {
        format!("{}{index:05}", self.identity_prefix)
    }

    /// The number of NATS connections the fleet will open.
    pub fn connection_count(&self) -> usize {
        let wanted = if self.connections == 0 {
            self.nodes.div_ceil(NODES_PER_CONNECTION)
        } else {
            self.connections
        };
        wanted.clamp(1, self.nodes.max(1))
    }

    fn validate(&self) -> Result<(), FleetError> {
        let bad = |m: &str| Err(FleetError::Config(m.to_string()));
        if self.nodes == 0 {
            return bad("nodes must be at least 1");
        }
        if self.servers.is_empty() {
            return bad("at least one server is needed");
        }
        if !is_subject_token(&self.collective) {
            return bad(
                "the collective must be one NATS subject token (no '.', '*', '>' or spaces)",
            );
        }
        // The identity becomes part of subjects and (x509) a certificate name.
        if self.identity_prefix.is_empty()
            || self
                .identity_prefix
                .chars()
                .any(|c| c.is_whitespace() || "*>,+=\"\\<>;".contains(c))
        {
            return bad("the identity prefix must be non-empty, without spaces, '*', '>', ',', '+', '=', quotes, '\\', '<', ';'");
        }
        Ok(())
    }
}

fn is_subject_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '.' || c == '*' || c == '>')
}

/// Counters over every node of a fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// Nodes running.
    pub nodes: usize,
    /// NATS connections the nodes share.
    pub connections: usize,
    /// Registration messages published.
    pub registrations_published: u64,
    /// Requests received, counted once per node that received one.
    pub requests_received: u64,
    /// Replies published.
    pub requests_answered: u64,
    /// Requests a node passed but did not answer (agent chose not to, or no reply
    /// subject).
    pub requests_silent: u64,
    /// Requests whose filter, collective or agent did not match the node.
    pub requests_filtered: u64,
    /// Requests outside now ± ttl.
    pub requests_expired: u64,
    /// Requests dropped as undecodable, unsigned or badly signed.
    pub requests_invalid: u64,
    /// Publishes (replies or registration) the client refused.
    pub publish_errors: u64,
}

#[derive(Default)]
struct Counters {
    registrations: AtomicU64,
    received: AtomicU64,
    answered: AtomicU64,
    silent: AtomicU64,
    filtered: AtomicU64,
    expired: AtomicU64,
    invalid: AtomicU64,
    publish_errors: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where [`Fleet::start_with_progress`] has got to, for showing progress.
#[derive(Debug, Default)]
pub struct StartProgress {
    phase: AtomicU8,
    nodes_prepared: AtomicUsize,
    nodes_started: AtomicUsize,
}

/// A phase of starting a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPhase {
    /// Making keys, CA and certificates or the token issuer.
    Keys,
    /// Opening NATS connections.
    Connecting,
    /// Making nodes and their subscriptions.
    Nodes,
    /// Every node is subscribed.
    Running,
}

impl StartProgress {
    /// The current phase.
    pub fn phase(&self) -> StartPhase {
        match self.phase.load(Ordering::Relaxed) {
            0 => StartPhase::Keys,
            1 => StartPhase::Connecting,
            2 => StartPhase::Nodes,
            _ => StartPhase::Running,
        }
    }

    /// Nodes made so far (identity, facts, certificate or token), not yet subscribed.
    pub fn nodes_prepared(&self) -> usize {
        self.nodes_prepared.load(Ordering::Relaxed)
    }

    /// Nodes subscribed so far.
    pub fn nodes_started(&self) -> usize {
        self.nodes_started.load(Ordering::Relaxed)
    }

    fn set(&self, phase: StartPhase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }
}

/// A running fleet. Dropping it stops the nodes; [`Fleet::shutdown`] also waits for
/// them and flushes what they published.
pub struct Fleet {
    config: FleetConfig,
    authority: Arc<Authority>,
    clients: Vec<async_nats::Client>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
    start_time: Duration,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Starts `cfg.nodes` nodes and returns once every node's subscriptions are in
    /// place on the server (confirmed by a round trip), so a request published
    /// afterwards reaches all of them.
    pub async fn start(cfg: FleetConfig) -> Result<Fleet, FleetError> {
        Fleet::start_with_progress(cfg, Arc::new(StartProgress::default())).await
    }

    /// [`Fleet::start`], reporting its progress into `progress` as it goes.
    pub async fn start_with_progress(
        cfg: FleetConfig,
        progress: Arc<StartProgress>,
    ) -> Result<Fleet, FleetError> {
        cfg.validate()?;
        let started = Instant::now();
        progress.set(StartPhase::Keys);
        let mode = cfg.security;
        // RSA key generation takes a while; keep it off the async threads.
        let authority = tokio::task::spawn_blocking(move || Authority::new(mode))
            .await
            .map_err(|e| FleetError::Start(e.to_string()))??;
        let authority = Arc::new(authority);

        progress.set(StartPhase::Connecting);
        let clients = connect_all(&cfg).await?;

        progress.set(StartPhase::Nodes);
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = watch::channel(false);
        let per_connection = cfg.nodes.div_ceil(clients.len());
        let mut starters = tokio::task::JoinSet::new();
        for (k, client) in clients.iter().enumerate() {
            let first = k * per_connection;
            let last = ((k + 1) * per_connection).min(cfg.nodes);
            if first >= last {
                continue;
            }
            let env = NodeEnv {
                cfg: cfg.clone(),
                authority: authority.clone(),
                client: client.clone(),
                counters: counters.clone(),
                stop: stop_rx.clone(),
                progress: progress.clone(),
            };
            starters.spawn(start_block(env, first..last));
        }
        let mut tasks = Vec::with_capacity(cfg.nodes);
        let mut failure = None;
        while let Some(joined) = starters.join_next().await {
            match joined {
                Ok(Ok(mut block)) => tasks.append(&mut block),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(e) => failure = failure.or(Some(FleetError::Start(e.to_string()))),
            }
        }
        if let Some(e) = failure {
            let _ = stop.send(true);
            for task in tasks {
                let _ = task.await;
            }
            return Err(e);
        }
        for client in &clients {
            round_trip(client).await?;
        }
        progress.set(StartPhase::Running);
        let start_time = started.elapsed();
        tracing::info!(
            nodes = cfg.nodes,
            connections = clients.len(),
            security = %cfg.security,
            ms = start_time.as_millis() as u64,
            "fleet started"
        );
        Ok(Fleet {
            config: cfg,
            authority,
            clients,
            tasks,
            stop,
            counters,
            start_time,
        })
    }

    /// The configuration the fleet runs with.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// How long [`Fleet::start`] took.
    pub fn start_time(&self) -> Duration {
        self.start_time
    }

    /// The identities of all nodes, in index order.
    pub fn identities(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.config.nodes).map(|i| self.config.identity(i))
    }

    /// The facts and classes of node `index`.
    pub fn node_facts(&self, index: usize) -> facts::Generated {
        facts::generate(self.config.facts_seed, index)
    }

    /// Counters over every node so far.
    pub fn stats(&self) -> FleetStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FleetStats {
            nodes: self.config.nodes,
            connections: self.clients.len(),
            registrations_published: get(&c.registrations),
            requests_received: get(&c.received),
            requests_answered: get(&c.answered),
            requests_silent: get(&c.silent),
            requests_filtered: get(&c.filtered),
            requests_expired: get(&c.expired),
            requests_invalid: get(&c.invalid),
            publish_errors: get(&c.publish_errors),
        }
    }

    /// Credentials for a client called `name` that the fleet's nodes accept: a
    /// certificate from the fleet CA (x509), a client JWT from the fleet issuer (v2),
    /// or nothing to sign with (insecure).
    pub fn client_credentials(&self, name: &str) -> Result<ClientCredentials, FleetError> {
        self.authority.client_credentials(name)
    }

    /// The fleet CA's certificate, PEM, in x509 mode.
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.authority.ca_pem()
    }

    /// The org issuer's ed25519 public key, in v2 mode.
    pub fn issuer_public_key(&self) -> Option<[u8; 32]> {
        self.authority.issuer_public_key()
    }

    /// Stops every node (their subscriptions go), waits for them, and flushes the
    /// connections so that everything already published reaches the server.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        for client in &self.clients {
            if let Err(e) = client.flush().await {
                tracing::debug!(error = %e, "flush at shutdown");
            }
        }
        tracing::info!(stats = ?self.stats(), "fleet stopped");
    }
}

async fn connect_all(cfg: &FleetConfig) -> Result<Vec<async_nats::Client>, FleetError> {
    let servers = cfg.servers.join(",");
    let addrs = cfg
        .servers
        .iter()
        .map(|s| s.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FleetError::Config(format!("server {servers}: {e}")))?;
    let connects = (0..cfg.connection_count()).map(|k| {
        let addrs = addrs.clone();
        let servers = servers.clone();
        async move {
            async_nats::ConnectOptions::new()
                .name(format!("coro-fleet-{k}"))
                .connect(addrs)
                .await
                .map_err(|e| FleetError::Connect {
                    server: servers,
                    reason: e.to_string(),
                })
        }
    });
    futures::future::try_join_all(connects).await
}

/// What every node on one connection shares.
struct NodeEnv {
    cfg: FleetConfig,
    authority: Arc<Authority>,
    client: async_nats::Client,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    progress: Arc<StartProgress>,
}

/// Makes the nodes `range` on one connection, subscribes them and starts their tasks.
async fn start_block(
    env: NodeEnv,
    range: std::ops::Range<usize>,
) -> Result<Vec<JoinHandle<()>>, FleetError> {
    let env = Arc::new(env);
    // Certificates cost an RSA signature each: make the block's nodes on a blocking
    // thread, so blocks build in parallel without stalling the runtime.
    let builder = env.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        range
            .map(|i| {
                let node = make_node(&builder, i);
                builder
                    .progress
                    .nodes_prepared
                    .fetch_add(1, Ordering::Relaxed);
                node
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| FleetError::Start(e.to_string()))??;
    let mut tasks = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mut subs = SelectAll::new();
        for subject in node.subjects() {
            let sub =
                env.client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|e| FleetError::Subscribe {
                        subject,
                        reason: e.to_string(),
                    })?;
            subs.push(sub);
        }
        tasks.push(tokio::spawn(run_node(node, subs, env.clone())));
        env.progress.nodes_started.fetch_add(1, Ordering::Relaxed);
    }
    Ok(tasks)
}

fn make_node(env: &NodeEnv, index: usize) -> Result<Node, FleetError> {
    let identity = env.cfg.identity(index);
    let generated = facts::generate(env.cfg.facts_seed, index);
    let collectives = vec![env.cfg.collective.clone()];
    let credentials = env.authority.node_credentials(&identity, &collectives)?;
    let server: Arc<str> = env.cfg.servers.first().map_or("", String::as_str).into();
    Ok(Node::build(
        NodeSpec {
            identity,
            collectives,
            facts: generated.facts,
            classes: generated.classes,
        },
        env.cfg.agents.clone(),
        env.authority.clone(),
        credentials,
        server,
    ))
}

/// One node's life: answer requests as they come, register on schedule, stop when the
/// fleet stops (or is dropped).
async fn run_node(mut node: Node, mut subs: SelectAll<async_nats::Subscriber>, env: Arc<NodeEnv>) {
    let mut stop = env.stop.clone();
    let counters = &env.counters;
    let interval = env.cfg.registration_interval;
    let registering = !interval.is_zero();
    let first = if env.cfg.splay && registering {
        interval.mul_f64(fastrand::f64())
    } else {
        Duration::ZERO
    };
    let registration = tokio::time::sleep(first);
    tokio::pin!(registration);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = subs.next() => {
                let Some(msg) = msg else { break };
                let outcome = node.handle(&msg.payload);
                let counter = match &outcome {
                    Outcome::Reply { .. } => &counters.answered,
                    Outcome::Silent => &counters.silent,
                    Outcome::Filtered => &counters.filtered,
                    Outcome::Expired => &counters.expired,
                    Outcome::Invalid(why) => {
                        tracing::debug!(node = node.identity(), %why, "dropped invalid request");
                        &counters.invalid
                    }
                };
                Counters::bump(&counters.received);
                Counters::bump(counter);
                if let Outcome::Reply { subject, payload } = outcome {
                    if let Err(e) = env.client.publish(subject, payload.into()).await {
                        tracing::debug!(node = node.identity(), error = %e, "reply not published");
                        Counters::bump(&counters.publish_errors);
                    }
                }
            }
            _ = &mut registration, if registering => {
                let (subject, payload) = node.registration(env.cfg.registration_compression);
                match env.client.publish(subject, payload.into()).await {
                    Ok(()) => Counters::bump(&counters.registrations),
                    Err(e) => {
                        tracing::debug!(node = node.identity(), error = %e, "registration not published");
                        Counters::bump(&counters.publish_errors);
                    }
                }
                let next = registration.deadline() + interval;
                registration.as_mut().reset(next);
            }
        }
    }
}

/// Waits until the server has processed everything sent on `client` so far, so every
/// node's subscriptions are in place when [`Fleet::start`] returns. async-nats' `flush`
/// only writes the buffer out; a message to ourselves is a true round trip, since the
/// server handles one connection's SUBs and PUBs in order.
async fn round_trip(client: &async_nats::Client) -> Result<(), FleetError> {
    use futures::StreamExt;
    let subject = client.new_inbox();
    let failed = |reason: String| FleetError::Subscribe {
        subject: subject.clone(),
        reason,
    };
    let mut echo = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| failed(e.to_string()))?;
    client
        .publish(subject.clone(), Vec::<u8>::new().into())
        .await
        .map_err(|e| failed(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(30), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(failed("the connection closed".to_string())),
        Err(_) => Err(failed(
            "the server did not confirm the subscriptions within 30 s".to_string(),
        )),
    }
}
