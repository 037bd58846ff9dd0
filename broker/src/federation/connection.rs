//! One NATS connection of an ingest or egest worker: TLS from the config, Go's
//! connector metrics, and the URL of the server it is connected to (the first and last
//! element of the hops the broker records).

use super::config::ClientTls;
use super::metrics::FederationMetrics;
use super::{FederationError, Side};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A worker's connection.
#[derive(Clone)]
pub(crate) struct Connection {
    pub client: async_nats::Client,
    servers: Arc<[String]>,
    /// Counts (re)connects: the URL is looked up again on next use after one.
    generation: Arc<AtomicU64>,
}

/// What a connection is for.
pub(crate) struct ConnectSpec<'a> {
    pub side: Side,
    pub servers: &'a [String],
    /// `choria_nats_ingest` or `choria_nats_egest`, as Go names its connections.
    pub name: &'a str,
    pub tls: Option<&'a ClientTls>,
    pub timeout: Duration,
    /// Messages a subscription may buffer in the client (ingest).
    pub subscription_capacity: usize,
    pub metrics: &'a FederationMetrics,
    pub cluster: &'a str,
}

impl Connection {
    /// Connects, or fails naming the side and servers.
    pub async fn connect(spec: ConnectSpec<'_>) -> Result<Connection, FederationError> {
        let side = spec.side;
        let fail = |reason: String| FederationError::Connect {
            side,
            servers: spec.servers.to_vec(),
            reason,
        };
        let addrs = coro_sinks::nats::servers(spec.servers).map_err(fail)?;
        let generation = Arc::new(AtomicU64::new(0));
        let mut options = async_nats::ConnectOptions::new()
            .name(spec.name)
            .connection_timeout(spec.timeout)
            .subscription_capacity(spec.subscription_capacity.max(1))
            .event_callback({
                let generation = generation.clone();
                let m = spec.metrics.clone();
                let (cluster, name) = (spec.cluster.to_string(), spec.name.to_string());
                let dropped = spec.metrics.dropped.with_label_values(&[
                    spec.cluster,
                    side.direction_in(),
                    "slow_consumer",
                ]);
                let disconnected = Arc::new(AtomicBool::new(false));
                move |event| {
                    let (generation, m, dropped) = (generation.clone(), m.clone(), dropped.clone());
                    let disconnected = disconnected.clone();
                    let (cluster, name) = (cluster.clone(), name.clone());
                    async move {
                        let side = side.as_str();
                        match event {
                            async_nats::Event::Connected => {
                                generation.fetch_add(1, Ordering::Relaxed);
                                if disconnected.swap(false, Ordering::Relaxed) {
                                    m.reconnections.inc();
                                }
                                tracing::info!(cluster, side, connection = name, "NATS connected");
                            }
                            async_nats::Event::Disconnected => {
                                disconnected.store(true, Ordering::Relaxed);
                                tracing::warn!(
                                    cluster,
                                    side,
                                    connection = name,
                                    "NATS disconnected"
                                );
                            }
                            async_nats::Event::Closed => m.closed.inc(),
                            async_nats::Event::SlowConsumer(_) => {
                                // The client dropped messages this ingest could not take.
                                m.connection_errors.inc();
                                dropped.inc();
                            }
                            async_nats::Event::ServerError(e) => {
                                m.connection_errors.inc();
                                tracing::warn!(
                                    cluster,
                                    side,
                                    connection = name,
                                    "NATS server error: {e}"
                                );
                            }
                            async_nats::Event::ClientError(e) => {
                                m.connection_errors.inc();
                                tracing::warn!(
                                    cluster,
                                    side,
                                    connection = name,
                                    "NATS client error: {e}"
                                );
                            }
                            other => tracing::debug!(
                                cluster,
                                side,
                                connection = name,
                                "NATS event: {other}"
                            ),
                        }
                    }
                }
            });
        if let Some(tls) = spec.tls {
            // With both of rustls' crypto back ends in the build (ring for NATS, aws-lc
            // for other clients) rustls cannot pick one and would panic; NATS uses ring.
            // An error only says a process default is already installed.
            let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
            options = options
                .require_tls(true)
                .add_client_certificate(tls.certificate.clone(), tls.key.clone());
            if let Some(ca) = &tls.ca {
                options = options.add_root_certificates(ca.clone());
            }
        }
        let started = Instant::now();
        spec.metrics.connect_attempts.inc();
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| fail(e.to_string()))?;
        spec.metrics
            .connect_time
            .observe(started.elapsed().as_secs_f64());
        Ok(Connection {
            client,
            servers: spec.servers.into(),
            generation,
        })
    }

    /// Returns once the server has handled everything sent on this connection before
    /// (its subscriptions are in place): a message to a fresh inbox comes back. A
    /// client `flush` only empties the client's buffer.
    pub async fn round_trip(&self, timeout: Duration) -> Result<(), String> {
        let inbox = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .publish(inbox, axum::body::Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        let back = tokio::time::timeout(timeout, futures::StreamExt::next(&mut sub)).await;
        let _ = sub.unsubscribe().await;
        match back {
            Ok(Some(_)) => Ok(()),
            _ => Err(format!("the server did not answer within {timeout:?}")),
        }
    }

    /// The URL of the server this connection is on, as Go's `ConnectedServer()`: the
    /// configured URL that the server's host and port match, else one built from them.
    /// Looked up each time: callers keep it until the [`generation`](Self::generation)
    /// changes.
    pub fn connected_url(&self) -> Arc<str> {
        let info = self.client.server_info();
        Arc::from(connected_url(&self.servers, &info.host, info.port))
    }

    /// Changes on every (re)connect: one atomic load, so that workers can keep what
    /// they derive from [`connected_url`](Self::connected_url) until it changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// The configured server matching `host:port` exactly, else the only one with that
/// port, else `nats://host:port`.
fn connected_url(servers: &[String], host: &str, port: u16) -> String {
    let parsed: Vec<(&String, Option<(&str, u16)>)> =
        servers.iter().map(|s| (s, host_port(s))).collect();
    if let Some((s, _)) = parsed
        .iter()
        .find(|(_, hp)| hp.is_some_and(|(h, p)| p == port && h.eq_ignore_ascii_case(host)))
    {
        return (*s).clone();
    }
    let same_port: Vec<&String> = parsed
        .iter()
        .filter(|(_, hp)| hp.is_some_and(|(_, p)| p == port))
        .map(|(s, _)| *s)
        .collect();
    if let [only] = same_port[..] {
        return only.clone();
    }
    if host.contains(':') {
        format!("nats://[{host}]:{port}")
    } else {
        format!("nats://{host}:{port}")
    }
}

/// Host and port of `scheme://[user@]host:port`.
fn host_port(url: &str) -> Option<(&str, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_url_prefers_the_configured_one() {
        let servers = vec![
            "nats://fed1.example.net:4222".to_string(),
            "nats://fed2.example.net:4223".to_string(),
        ];
        // nats-server reports the address it listens on, not the name we dialled.
        assert_eq!(
            connected_url(&servers, "0.0.0.0", 4223),
            "nats://fed2.example.net:4223"
        );
        assert_eq!(
            connected_url(&servers, "fed1.example.net", 4222),
            "nats://fed1.example.net:4222"
        );
        assert_eq!(
            connected_url(&servers, "10.0.0.1", 5222),
            "nats://10.0.0.1:5222"
        );
        assert_eq!(connected_url(&servers, "::1", 5222), "nats://[::1]:5222");
        let same = vec!["nats://a:4222".to_string(), "nats://b:4222".to_string()];
        assert_eq!(connected_url(&same, "b", 4222), "nats://b:4222");
        assert_eq!(connected_url(&same, "c", 4222), "nats://c:4222");
        assert_eq!(host_port("tls://u:p@[::1]:4222/"), Some(("::1", 4222)));
    }
}
