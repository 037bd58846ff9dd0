//! The federation broker (PROTOCOL.md §3): it joins one member collective (cluster) to
//! a federation network, so that federated clients reach every cluster's servers
//! through one NATS network.
//!
//! ```text
//!  federation network                    member collective <cluster>
//!  choria.federation.<cluster>.federation ─▶ request side ─▶ <collective>.broadcast.agent.<agent>
//!    (queue <cluster>_federation)                          └▶ <collective>.node.<identity> …
//!  client's reply subject ◀─ reply side ◀─ choria.federation.<cluster>.collective
//!                                            (queue <cluster>_collective)
//! ```
//!
//! Each direction is a pool of workers (10 by default, as Go), each an ingest, a
//! transformer and an egest with its own queue subscription; the workers of a stage
//! share NATS connections (one per stage and side by default, one per worker as Go
//! with `plugin.coro.federation.connections`), and the workers on one ingest
//! connection run in one task (a message is never handed between tasks). See
//! [`config`] for the keys.
//!
//! * **Request side**: a client publishes a transport whose `federation` header lists
//!   the target subjects (one broadcast subject, or up to 200 `<collective>.node.<id>`
//!   subjects; clients split larger directed requests, see [`client`]). The broker
//!   moves `reply-to` into `federation.reply-to`, sets `reply-to` to
//!   `choria.federation.<cluster>.collective`, empties the target list, and publishes
//!   the same bytes to every target.
//! * **Reply side**: a server's reply carries the federation header back; the broker
//!   publishes it to `federation.reply-to` without the header.
//! * Each pass adds one hop (`seen-by` in v1, `trace` in v2):
//!   `[in server, "<identity> (choria_nats_ingest:i, choria_<side>_transformer:i, choria_nats_egest:i)", out server]`
//!   for worker `i` (Go's stages are separate pools, so its three numbers differ).
//!   Only the headers change; `data`, and so every signature, passes through as is.
//! * Messages that cannot be forwarded (not a transport, not federated, no targets, no
//!   reply subject, and with hardening a bad target or reply subject, too many targets,
//!   a loop, or over the rate limit) are counted in `choria_federation_errors` and
//!   `coro_federation_dropped_total{reason}`, logged at most every 5 seconds per
//!   reason (with the number held back), and dropped; the broker keeps running.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use coro_broker::federation::{FederationBroker, FederationConfig};
//! use coro_core::config::ChoriaConfig;
//!
//! let path = std::path::Path::new("/etc/choria/broker.conf");
//! let choria = ChoriaConfig::parse(path, &std::fs::read_to_string(path)?);
//! if let Some(cfg) = FederationConfig::from_choria(&choria)? {
//!     let registry = prometheus::Registry::new();
//!     let broker = FederationBroker::start(cfg, &registry).await?;
//!     assert!(broker.health().ok());
//!     broker.shutdown().await;
//! }
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod config;
mod connection;
pub mod hardening;
pub mod metrics;
mod pipeline;
mod splice;
mod wire;

pub use config::{ClientTls, FederationConfig, Hardening, RateLimit};
pub use metrics::FederationMetrics;

use connection::{ConnectSpec, Connection};
use pipeline::{Context, Direction};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Messages each ingest subscription may buffer in the NATS client before the server
/// counts it a slow consumer (Go: 64 in its channel plus nats.go's pending buffer).
const SUBSCRIPTION_CAPACITY: usize = 4096;

/// One of the two NATS networks the broker joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `plugin.choria.federation_middleware_hosts`: where federated clients are.
    Federation,
    /// `plugin.choria.middleware_hosts`: the member collective's servers.
    Collective,
}

impl Side {
    /// `federation` or `collective`, as the `connected_to` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Federation => "federation",
            Side::Collective => "collective",
        }
    }

    /// The direction of the messages ingest receives on this side.
    fn direction_in(self) -> &'static str {
        match self {
            Side::Federation => "request",
            Side::Collective => "reply",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the federation broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// A NATS connection could not be made.
    #[error("federation broker: connecting to the {side} side {servers:?}: {reason}")]
    Connect {
        /// Which side.
        side: Side,
        /// The servers tried.
        servers: Vec<String>,
        /// What went wrong.
        reason: String,
    },
    /// A queue subscription failed.
    #[error("federation broker: subscribing to {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What went wrong.
        reason: String,
    },
    /// Metrics could not be registered (a name clash).
    #[error("federation broker metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A running federation broker.
pub struct FederationBroker {
    cluster: String,
    stop: watch::Sender<bool>,
    workers_running: Vec<JoinHandle<()>>,
    readiness: FederationReadiness,
    drain_timeout: Duration,
    connect_timeout: Duration,
    workers: usize,
}

impl FederationBroker {
    /// Connects (`connections` per stage and side: ingest and egest on both sides, shared
    /// by the workers of that stage), subscribes every ingest worker, and starts
    /// forwarding. Metrics go into `registry`.
    pub async fn start(
        cfg: FederationConfig,
        registry: &prometheus::Registry,
    ) -> Result<FederationBroker, FederationError> {
        let metrics = FederationMetrics::register(registry)?;
        let workers = cfg.workers.max(1);
        let connections = cfg.connections.clamp(1, workers);
        let connect = |side: Side, name: &'static str| {
            let servers = match side {
                Side::Federation => &cfg.federation_servers,
                Side::Collective => &cfg.collective_servers,
            };
            let metrics = &metrics;
            let cfg = &cfg;
            async move {
                futures::future::try_join_all((0..connections).map(|_| {
                    Connection::connect(ConnectSpec {
                        side,
                        servers,
                        name,
                        tls: cfg.tls.as_ref(),
                        timeout: cfg.connect_timeout,
                        subscription_capacity: SUBSCRIPTION_CAPACITY,
                        metrics,
                        cluster: &cfg.cluster,
                    })
                }))
                .await
            }
        };
        let (fed_in, coll_out, coll_in, fed_out) = tokio::try_join!(
            connect(Side::Federation, "choria_nats_ingest"),
            connect(Side::Collective, "choria_nats_egest"),
            connect(Side::Collective, "choria_nats_ingest"),
            connect(Side::Federation, "choria_nats_egest"),
        )?;
        let readiness = FederationReadiness {
            cluster: cfg.cluster.clone(),
            federation: fed_in
                .iter()
                .chain(&fed_out)
                .map(|c| c.client.clone())
                .collect(),
            collective: coll_in
                .iter()
                .chain(&coll_out)
                .map(|c| c.client.clone())
                .collect(),
            federation_servers: cfg.federation_servers.clone(),
            collective_servers: cfg.collective_servers.clone(),
        };

        let (stop, stopped) = watch::channel(false);
        let mut broker = FederationBroker {
            cluster: cfg.cluster.clone(),
            stop,
            workers_running: Vec::new(),
            readiness,
            drain_timeout: cfg.drain_timeout,
            connect_timeout: cfg.connect_timeout,
            workers,
        };
        for (direction, ins, outs) in [
            (Direction::Request, fed_in, coll_out),
            (Direction::Reply, coll_in, fed_out),
        ] {
            let ctx = Arc::new(Context::new(
                direction,
                &cfg.cluster,
                &cfg.identity,
                &cfg.hardening,
                metrics.clone(),
            ));
            let (subject, group) = match direction {
                Direction::Request => (
                    cfg.federation_subject(),
                    format!("{}_federation", cfg.cluster),
                ),
                Direction::Reply => (
                    ctx.collective_subject().to_string(),
                    format!("{}_collective", cfg.cluster),
                ),
            };
            if let Err(e) = broker
                .start_direction(ctx, ins, outs, &subject, &group, &stopped)
                .await
            {
                broker.shutdown().await;
                return Err(e);
            }
        }
        broker.workers_running.push(tokio::spawn(monitor(
            broker.readiness.clone(),
            metrics,
            stopped,
        )));
        tracing::info!(
            cluster = cfg.cluster,
            identity = cfg.identity,
            workers,
            federation = ?cfg.federation_servers,
            collective = ?cfg.collective_servers,
            hardening = ?cfg.hardening,
            "federation broker started"
        );
        Ok(broker)
    }

    async fn start_direction(
        &mut self,
        ctx: Arc<Context>,
        ins: Vec<Connection>,
        outs: Vec<Connection>,
        subject: &str,
        group: &str,
        stopped: &watch::Receiver<bool>,
    ) -> Result<(), FederationError> {
        let fail = |e: String| FederationError::Subscribe {
            subject: subject.to_string(),
            reason: e,
        };
        // Worker i uses connection i modulo the connections of its stage and side.
        let mut subscriptions = Vec::with_capacity(self.workers);
        for i in 0..self.workers {
            let conn = ins[i % ins.len().max(1)].clone();
            let subscription = conn
                .client
                .queue_subscribe(subject.to_string(), group.to_string())
                .await
                .map_err(|e| fail(e.to_string()))?;
            subscriptions.push((conn, subscription));
        }
        // The subscriptions are in place at the server when start returns.
        for conn in &ins {
            conn.round_trip(self.connect_timeout).await.map_err(fail)?;
        }
        // One task per ingest connection runs the workers on it (see
        // `pipeline::worker`); it publishes on the egest connection of the same index.
        let mut tasks: Vec<(Connection, Vec<(usize, async_nats::Subscriber)>)> =
            ins.iter().map(|c| (c.clone(), Vec::new())).collect();
        for (i, (_, subscription)) in subscriptions.into_iter().enumerate() {
            if let Some((_, workers)) = tasks.get_mut(i % ins.len().max(1)) {
                workers.push((i, subscription));
            }
        }
        for (c, (conn, workers)) in tasks.into_iter().enumerate() {
            if workers.is_empty() {
                continue;
            }
            let out = outs[c % outs.len().max(1)].clone();
            self.workers_running.push(tokio::spawn(pipeline::worker(
                ctx.clone(),
                workers,
                conn,
                out,
                stopped.clone(),
            )));
        }
        tracing::debug!(
            cluster = self.cluster,
            direction = ctx.direction.as_str(),
            subject,
            group,
            "federation workers running"
        );
        Ok(())
    }

    /// Whether both sides' connections are up, per side.
    pub fn health(&self) -> Health {
        self.readiness.health()
    }

    /// A cheap, cloneable handle answering [`health`](Self::health) after the broker
    /// moved elsewhere (for `/healthz` and `/readyz`).
    pub fn readiness(&self) -> FederationReadiness {
        self.readiness.clone()
    }

    /// The cluster served.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Stops taking messages, forwards what was taken (up to the drain timeout), flushes
    /// and closes the connections. Returns whether everything in flight was forwarded.
    pub async fn shutdown(self) -> bool {
        let _ = self.stop.send(true);
        let all = async {
            futures::future::join_all(self.workers_running).await;
        };
        let drained = tokio::time::timeout(self.drain_timeout, all).await.is_ok();
        if !drained {
            tracing::warn!(
                cluster = self.cluster,
                "federation broker: drain timeout passed with messages in flight"
            );
        }
        tracing::info!(cluster = self.cluster, "federation broker stopped");
        drained
    }
}

/// Keeps `coro_federation_connections` current until the broker stops.
async fn monitor(
    readiness: FederationReadiness,
    metrics: FederationMetrics,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let health = readiness.health();
        for (side, h) in [
            (Side::Federation, &health.federation),
            (Side::Collective, &health.collective),
        ] {
            let set = |state: &str, n: usize| {
                metrics
                    .connections
                    .with_label_values(&[&readiness.cluster, side.as_str(), state])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            };
            set("up", h.connected);
            set("down", h.connections - h.connected);
        }
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Answers whether the federation broker's connections are up; clone freely.
#[derive(Clone)]
pub struct FederationReadiness {
    cluster: String,
    federation: Vec<async_nats::Client>,
    collective: Vec<async_nats::Client>,
    federation_servers: Vec<String>,
    collective_servers: Vec<String>,
}

impl FederationReadiness {
    /// Both sides, connection by connection.
    pub fn health(&self) -> Health {
        let side = |clients: &[async_nats::Client], servers: &[String]| SideHealth {
            servers: servers.to_vec(),
            connections: clients.len(),
            connected: clients
                .iter()
                .filter(|c| c.connection_state() == async_nats::connection::State::Connected)
                .count(),
        };
        Health {
            cluster: self.cluster.clone(),
            federation: side(&self.federation, &self.federation_servers),
            collective: side(&self.collective, &self.collective_servers),
        }
    }

    /// Whether every connection on both sides is up.
    pub fn ready(&self) -> bool {
        self.federation
            .iter()
            .chain(&self.collective)
            .all(|c| c.connection_state() == async_nats::connection::State::Connected)
    }
}

/// The state of both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The cluster served.
    pub cluster: String,
    /// The federation side.
    pub federation: SideHealth,
    /// The collective side.
    pub collective: SideHealth,
}

/// The connections of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideHealth {
    /// The configured servers.
    pub servers: Vec<String>,
    /// Connections the workers hold on this side.
    pub connections: usize,
    /// How many of them are up.
    pub connected: usize,
}

impl Health {
    /// Every connection on both sides is up.
    pub fn ok(&self) -> bool {
        self.federation.connected == self.federation.connections
            && self.collective.connected == self.collective.connections
    }
}

impl fmt::Display for Health {
    /// `federation broker <cluster>: federation 20/20 up, collective 20/20 up`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "federation broker {}: federation {}/{} up, collective {}/{} up",
            self.cluster,
            self.federation.connected,
            self.federation.connections,
            self.collective.connected,
            self.collective.connections
        )
    }
}
