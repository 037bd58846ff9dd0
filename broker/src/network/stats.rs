//! The network broker's Prometheus metrics: Choria's names and labels (PROTOCOL.md
//! §4.5, `broker/network/stats.go`), so existing dashboards keep working, read from
//! nats-server's monitoring endpoints `/varz` and `/jsz` every
//! [`stats_interval`](super::NetworkConfig::stats_interval), and Coro's own
//! `coro_network_restarts_total`.
//!
//! The leafnode families (`choria_network_leafnode_*{host,port,account}`) are not
//! exported: Coro's broker has no leafnodes. `choria_network_leafnode_remotes` is, and
//! stays 0.

use prometheus::core::Collector;
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use serde::Deserialize;
use std::time::Duration;

/// The version `choria_build_info` and `/choria/` report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit `choria_build_info` and `/choria/` report: `CORO_GIT_SHA` at build time.
pub fn git_sha() -> &'static str {
    option_env!("CORO_GIT_SHA").unwrap_or("unknown")
}

/// The `/varz` fields Choria exports.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Varz {
    /// Current client connections.
    pub connections: f64,
    /// Client connections since start.
    pub total_connections: f64,
    /// Current routes to peers.
    pub routes: f64,
    /// Current remote servers.
    pub remotes: f64,
    /// Current leafnode connections.
    pub leafnodes: f64,
    /// Messages received.
    pub in_msgs: f64,
    /// Messages sent.
    pub out_msgs: f64,
    /// Bytes received.
    pub in_bytes: f64,
    /// Bytes sent.
    pub out_bytes: f64,
    /// Clients that were slow consumers.
    pub slow_consumers: f64,
    /// Current subscriptions.
    pub subscriptions: f64,
}

/// The `/jsz` fields Choria exports.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Jsz {
    /// Memory in use by streams.
    pub memory: f64,
    /// File storage in use by streams.
    pub storage: f64,
    /// Streams.
    pub streams: f64,
    /// Consumers.
    pub consumers: f64,
    /// Messages stored.
    pub messages: f64,
    /// Bytes stored.
    pub bytes: f64,
    /// The limits.
    pub config: JszConfig,
}

/// `/jsz` `config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct JszConfig {
    /// Memory streams may use.
    pub max_memory: f64,
    /// File storage streams may use.
    pub max_storage: f64,
}

/// The network broker's metric families, registered on one registry. Register one
/// broker per registry: the names are fixed and the `identity` label tells brokers
/// apart across processes.
#[derive(Debug, Clone)]
pub struct NetworkMetrics {
    identity: String,
    varz: Vec<(GaugeVec, Getter<Varz>)>,
    jsz: Vec<(GaugeVec, Getter<Jsz>)>,
    /// `coro_network_restarts_total{identity}`: times nats-server died and was started
    /// again.
    pub restarts: IntCounterVec,
    build_info: GaugeVec,
}

/// Reads one gauge's value from a monitoring document.
type Getter<T> = fn(&T) -> f64;
type VarzField = (&'static str, &'static str, Getter<Varz>);
type JszField = (&'static str, &'static str, Getter<Jsz>);

const VARZ: [VarzField; 11] = [
    (
        "choria_network_connections",
        "Current connections on the network broker",
        |v| v.connections,
    ),
    (
        "choria_network_total_connections",
        "Total connections received since start",
        |v| v.total_connections,
    ),
    (
        "choria_network_routes",
        "Current active routes to other brokers",
        |v| v.routes,
    ),
    (
        "choria_network_remotes",
        "Current active connections to other brokers",
        |v| v.remotes,
    ),
    (
        "choria_network_leafnode_remotes",
        "Current active connections to other leafnodes",
        |v| v.leafnodes,
    ),
    (
        "choria_network_in_msgs",
        "Messages received by the network broker",
        |v| v.in_msgs,
    ),
    (
        "choria_network_out_msgs",
        "Messages sent by the network broker",
        |v| v.out_msgs,
    ),
    (
        "choria_network_in_bytes",
        "Total size of messages received by the network broker",
        |v| v.in_bytes,
    ),
    (
        "choria_network_out_bytes",
        "Total size of messages sent by the network broker",
        |v| v.out_bytes,
    ),
    (
        "choria_network_slow_consumers",
        "Total number of clients who were considered slow consumers",
        |v| v.slow_consumers,
    ),
    (
        "choria_network_subscriptions",
        "Number of active subscriptions to subjects on this broker",
        |v| v.subscriptions,
    ),
];

const JSZ: [JszField; 8] = [
    (
        "choria_network_stream_memorystore_max",
        "Maximum amount of Memory Storage allocated to Choria Streams",
        |j| j.config.max_memory,
    ),
    (
        "choria_network_stream_filestore_max",
        "Maximum amount of File Storage allocated to Choria Streams",
        |j| j.config.max_storage,
    ),
    (
        "choria_network_stream_memorystore_used",
        "Memory in use by Choria Streams",
        |j| j.memory,
    ),
    (
        "choria_network_stream_filestore_used",
        "File Storage in use by Choria Streams",
        |j| j.storage,
    ),
    (
        "choria_network_stream_streams",
        "Number of active streams",
        |j| j.streams,
    ),
    (
        "choria_network_stream_consumers",
        "Number of active consumers",
        |j| j.consumers,
    ),
    (
        "choria_network_stream_messages",
        "Number of messages stored",
        |j| j.messages,
    ),
    (
        "choria_network_stream_message_bytes",
        "Size in bytes of messages stored",
        |j| j.bytes,
    ),
];

impl NetworkMetrics {
    /// Creates the families and registers them on `registry`; `jetstream` adds the
    /// `choria_network_stream_*` ones. `choria_build_info{version,sha,identity}` is set
    /// to 1.
    pub fn register(
        registry: &Registry,
        identity: &str,
        jetstream: bool,
    ) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["identity"]);
        let varz = VARZ
            .iter()
            .map(|(name, help, get)| Ok((gauge(name, help)?, *get)))
            .collect::<Result<Vec<_>, prometheus::Error>>()?;
        let jsz = if jetstream {
            JSZ.iter()
                .map(|(name, help, get)| Ok((gauge(name, help)?, *get)))
                .collect::<Result<Vec<_>, prometheus::Error>>()?
        } else {
            Vec::new()
        };
        let restarts = IntCounterVec::new(
            Opts::new(
                "coro_network_restarts_total",
                "Times nats-server died and was started again",
            ),
            &["identity"],
        )?;
        let build_info = GaugeVec::new(
            Opts::new(
                "choria_build_info",
                "Build information about the running server",
            ),
            &["version", "sha", "identity"],
        )?;
        let metrics = NetworkMetrics {
            identity: identity.to_string(),
            varz,
            jsz,
            restarts,
            build_info,
        };
        for (i, c) in metrics.collectors().into_iter().enumerate() {
            if let Err(e) = registry.register(c) {
                // All or nothing, so a failed start can be retried on the same registry.
                for r in metrics.collectors().into_iter().take(i) {
                    let _ = registry.unregister(r);
                }
                return Err(e);
            }
        }
        metrics
            .build_info
            .with_label_values(&[VERSION, git_sha(), identity])
            .set(1.0);
        // Present from the start, so a scrape before the first death shows 0.
        metrics.restarts.with_label_values(&[identity]);
        Ok(metrics)
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        let mut all: Vec<Box<dyn Collector>> = Vec::new();
        all.extend(
            self.varz
                .iter()
                .map(|(g, _)| Box::new(g.clone()) as Box<dyn Collector>),
        );
        all.extend(
            self.jsz
                .iter()
                .map(|(g, _)| Box::new(g.clone()) as Box<dyn Collector>),
        );
        all.push(Box::new(self.restarts.clone()));
        all.push(Box::new(self.build_info.clone()));
        all
    }

    /// Removes the families from `registry`.
    pub fn unregister(&self, registry: &Registry) {
        for c in self.collectors() {
            let _ = registry.unregister(c);
        }
    }

    /// Counts one restart.
    pub fn restarted(&self) {
        self.restarts.with_label_values(&[&self.identity]).inc();
    }

    /// Sets the gauges from `/varz`.
    pub fn set_varz(&self, varz: &Varz) {
        for (gauge, get) in &self.varz {
            gauge.with_label_values(&[&self.identity]).set(get(varz));
        }
    }

    /// Sets the stream gauges from `/jsz` (nothing when JetStream is off).
    pub fn set_jsz(&self, jsz: &Jsz) {
        for (gauge, get) in &self.jsz {
            gauge.with_label_values(&[&self.identity]).set(get(jsz));
        }
    }

    fn jetstream(&self) -> bool {
        !self.jsz.is_empty()
    }
}

/// Reads `/varz` (and `/jsz` with JetStream) from the monitoring endpoint at
/// `monitor` (`http://127.0.0.1:port`) into `metrics`.
pub async fn poll(
    client: &reqwest::Client,
    monitor: &str,
    metrics: &NetworkMetrics,
) -> Result<(), reqwest::Error> {
    let varz: Varz = client
        .get(format!("{monitor}/varz"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    metrics.set_varz(&varz);
    if metrics.jetstream() {
        let jsz: Jsz = client
            .get(format!("{monitor}/jsz?config=true"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        metrics.set_jsz(&jsz);
    }
    Ok(())
}

/// Polls every `interval` until the task is aborted. Failures are logged at debug
/// level only: they happen while nats-server restarts, and the supervisor reports that.
pub(crate) async fn run(
    client: reqwest::Client,
    monitor: String,
    metrics: NetworkMetrics,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = poll(&client, &monitor, &metrics).await {
            tracing::debug!(error = %e, "reading nats-server monitoring endpoints");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(registry: &Registry, name: &str) -> Option<f64> {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == name)
            .and_then(|f| f.get_metric().first().map(|m| m.get_gauge().get_value()))
    }

    #[test]
    fn network_metrics_from_varz_and_jsz() {
        let registry = Registry::new();
        let m = NetworkMetrics::register(&registry, "n1", true).unwrap();
        let varz: Varz = serde_json::from_str(
            r#"{"connections":3,"total_connections":7,"routes":2,"remotes":2,"leafnodes":0,
                "in_msgs":10,"out_msgs":11,"in_bytes":100,"out_bytes":110,"slow_consumers":1,
                "subscriptions":42,"server_id":"x","cluster":{"name":"CHORIA"}}"#,
        )
        .unwrap();
        m.set_varz(&varz);
        let jsz: Jsz = serde_json::from_str(
            r#"{"memory":1,"storage":2,"streams":3,"consumers":4,"messages":5,"bytes":6,
                "config":{"max_memory":100,"max_storage":200,"store_dir":"/x"}}"#,
        )
        .unwrap();
        m.set_jsz(&jsz);
        assert_eq!(value(&registry, "choria_network_connections"), Some(3.0));
        assert_eq!(value(&registry, "choria_network_subscriptions"), Some(42.0));
        assert_eq!(value(&registry, "choria_network_slow_consumers"), Some(1.0));
        assert_eq!(
            value(&registry, "choria_network_stream_filestore_max"),
            Some(200.0)
        );
        assert_eq!(
            value(&registry, "choria_network_stream_message_bytes"),
            Some(6.0)
        );
        assert_eq!(value(&registry, "choria_build_info"), Some(1.0));
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains("choria_network_routes{identity=\"n1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("coro_network_restarts_total{identity=\"n1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "choria_build_info{{identity=\"n1\",sha=\"{}\",version=\"{VERSION}\"}} 1",
                git_sha()
            )),
            "{text}"
        );

        // A second broker on the same registry is refused, and leaves nothing behind.
        assert!(NetworkMetrics::register(&registry, "n2", false).is_err());
        m.unregister(&registry);
        assert!(registry.gather().is_empty());
        NetworkMetrics::register(&registry, "n2", false).unwrap();
        assert_eq!(value(&registry, "choria_network_stream_streams"), None);
    }
}
