//! The network broker: Coro runs a real `nats-server` (2.15) as a supervised child,
//! configured from a Choria `broker.conf` the way go-choria configures the nats-server
//! it embeds (PROTOCOL.md §4).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use coro_broker::network::{find_nats_server, NetworkBroker, NetworkConfig};
//! use coro_core::config::ChoriaConfig;
//!
//! let path = std::path::Path::new("/etc/choria/broker.conf");
//! let choria = ChoriaConfig::parse(path, &std::fs::read_to_string(path)?);
//! if let Some(cfg) = NetworkConfig::from_choria(&choria)? {
//!     let registry = prometheus::Registry::new();
//!     let broker = NetworkBroker::start(cfg, &find_nats_server()?, &registry).await?;
//!     println!("clients connect to {}", broker.client_url());
//!     // ... serve `monitor::routes(broker.choria_info(), Some(broker.monitor_proxy()))`
//!     broker.shutdown().await;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! * [`config`]: the Choria keys read, the defaults, and the keys refused.
//! * [`render`]: the nats-server config file written for the child.
//! * [`NetworkBroker`]: starting, restarting and stopping the child.
//! * [`stats`]: the `choria_network_*` metrics, read from nats-server's monitoring.
//! * [`monitor`]: `/choria/` and the forwarded NATS monitoring paths for the HTTP server.

pub mod config;
pub mod monitor;
pub mod render;
pub mod stats;
mod supervisor;

pub use config::{ClusterConfig, NetworkConfig, TlsConfig};
pub use monitor::{ChoriaInfo, MonitorProxy};
pub use stats::NetworkMetrics;
pub use supervisor::{find_nats_server, NetworkBroker, NetworkError};
