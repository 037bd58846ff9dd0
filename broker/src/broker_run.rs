//! `coro broker run --config broker.conf [--adapters adapters.toml]`: one process, as
//! `choria broker run` is (PROTOCOL.md §4.1).
//!
//! * The network broker (a supervised `nats-server`, see [`crate::network`]) runs when
//!   `plugin.choria.broker_network = true`.
//! * The data adapters run when `plugin.choria.adapters` lists some (with their
//!   `plugin.choria.adapter.<name>.*` keys, PROTOCOL.md §5.2), and those of an
//!   `adapters.toml` given with `--adapters`. Adapter names must be unique across both.
//! * The federation broker (see [`crate::federation`]) runs when
//!   `plugin.choria.broker_federation = true`: cluster `plugin.choria.federation.cluster`
//!   between `plugin.choria.federation_middleware_hosts` and the collective's
//!   `plugin.choria.middleware_hosts` (unset: the embedded network broker when one
//!   runs).
//! * Nothing enabled is an error, as in Choria.
//!
//! Adapters of `broker.conf` whose servers are Choria's default (no
//! `plugin.choria.middleware_hosts`, no `.stream.servers`) connect to the embedded
//! network broker when one runs, as Go's connect in-process.
//!
//! One HTTP server serves `/metrics` (the adapter metrics, `choria_network_*` and
//! `choria_build_info` on one registry), `/choria/`, the forwarded NATS monitoring paths
//! (`/varz`, `/connz`, ...), `/healthz` (fails, naming the side, while a federation
//! broker connection is down) and `/readyz` (ready when nats-server runs and every
//! adapter and federation connection is up). It listens on `plugin.choria.stats_address` and
//! `plugin.choria.stats_port`; without a stats port, on the `[http] listen` of the
//! `--adapters` file, else on `127.0.0.1:8222`. The stats port wins over an
//! `adapters.toml` `listen` (a warning says so): there is one listener, and a stats port
//! equal to a port of the network broker is an error.
//!
//! SIGTERM or SIGINT drains the adapters (within the `adapters.toml` `drain_timeout`,
//! default 30 s), then stops nats-server, and exits 0.
//!
//! Exit codes (sysexits): 78 for a bad config, with every problem on its own line as
//! `error: file:line:column: key: message; hint`, and for a port that is taken (naming
//! the port and its key); 69 when nats-server cannot be found or does not start, or an
//! adapter's server cannot be reached; 73 when the nats-server config cannot be
//! written; 70 for an internal error.
//!
//! ```no_run
//! # async fn example() -> Result<(), coro_broker::broker_run::DaemonError> {
//! use coro_broker::broker_run::{Daemon, DaemonConfig};
//! let config = DaemonConfig::load("/etc/choria/broker.conf".as_ref(), None)?;
//! let daemon = Daemon::start(config).await?;
//! println!("HTTP on {}", daemon.http_addr());
//! // ... until it is time to stop:
//! daemon.shutdown().await;
//! # Ok(())
//! # }
//! ```

use crate::adapters::{self, Adapters, Readiness};
use crate::choria_keys::parse_bool;
use crate::federation::{FederationBroker, FederationConfig, FederationError};
use crate::http;
use crate::network::{find_nats_server, ChoriaInfo, NetworkBroker, NetworkConfig, NetworkError};
use coro_core::config::choria::DEFAULT_SERVER;
use coro_core::config::{
    AdaptersConfig, ChoriaConfig, ConfigError, ConfigErrors, HttpSettings, IngestConfig, Location,
};
use coro_sinks::config::{AdapterSinks, SinkConfig};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// sysexits(3): configuration error.
pub const EX_CONFIG: u8 = 78;
/// sysexits(3): a service is unavailable.
pub const EX_UNAVAILABLE: u8 = 69;
/// sysexits(3): an internal software error.
pub const EX_SOFTWARE: u8 = 70;
/// sysexits(3): a file could not be created.
pub const EX_CANTCREAT: u8 = 73;

const BROKER_NETWORK: &str = "plugin.choria.broker_network";
const BROKER_FEDERATION: &str = "plugin.choria.broker_federation";
const ADAPTERS: &str = "plugin.choria.adapters";
const MIDDLEWARE_HOSTS: &str = "plugin.choria.middleware_hosts";
const STATS_ADDRESS: &str = "plugin.choria.stats_address";
const STATS_PORT: &str = "plugin.choria.stats_port";

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config is wrong, or a port it names is taken: every problem, one per line.
    #[error("{0}")]
    Config(ConfigErrors),
    /// The network broker did not start.
    #[error(transparent)]
    Network(NetworkError),
    /// An adapter did not start.
    #[error(transparent)]
    Adapters(adapters::StartError),
    /// The federation broker did not start.
    #[error(transparent)]
    Federation(FederationError),
    /// The async runtime could not be built.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

impl DaemonError {
    /// The process exit code for this error (sysexits): 78 for config errors and taken
    /// ports, 69 when nats-server or a NATS server is not available, 73 when the
    /// nats-server config cannot be written, 70 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) => EX_CONFIG,
            DaemonError::Network(e) => match e {
                NetworkError::PortInUse { .. } | NetworkError::Listen { .. } => EX_CONFIG,
                NetworkError::NatsServerNotFound { .. }
                | NetworkError::Spawn { .. }
                | NetworkError::ExitedAtStart { .. }
                | NetworkError::NotReady { .. } => EX_UNAVAILABLE,
                NetworkError::Setup { .. } => EX_CANTCREAT,
                NetworkError::Metrics(_) => EX_SOFTWARE,
            },
            DaemonError::Adapters(adapters::StartError::Metrics(_)) => EX_SOFTWARE,
            DaemonError::Adapters(_) => EX_UNAVAILABLE,
            DaemonError::Federation(FederationError::Metrics(_)) => EX_SOFTWARE,
            DaemonError::Federation(_) => EX_UNAVAILABLE,
            DaemonError::Runtime(_) => EX_SOFTWARE,
        }
    }

    /// The lines to print, each to be prefixed with `error: `.
    pub fn lines(&self) -> Vec<String> {
        match self {
            DaemonError::Config(errors) => errors.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

impl From<ConfigErrors> for DaemonError {
    fn from(e: ConfigErrors) -> Self {
        DaemonError::Config(e)
    }
}

/// Which servers of one adapter are Choria's default and so mean the embedded broker.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Embedded {
    /// Index in [`DaemonConfig::adapters`].
    adapter: usize,
    /// The ingest servers are the default.
    ingest: bool,
    /// Indexes of the sinks whose servers are the default.
    sinks: Vec<usize>,
}

/// What `coro broker run` runs, read from a Choria config (and an `adapters.toml`).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The Choria config file.
    pub file: PathBuf,
    /// The network broker, when `plugin.choria.broker_network = true`.
    pub network: Option<NetworkConfig>,
    /// The federation broker, when `plugin.choria.broker_federation = true`.
    pub federation: Option<FederationConfig>,
    /// The federation broker's collective side is the embedded network broker
    /// (`plugin.choria.middleware_hosts` is not set and the network broker runs).
    federation_embedded: bool,
    /// Every adapter: `broker.conf`'s, then the `--adapters` file's. Its `http` is what
    /// the daemon uses: `listen` as described in the module docs; `identity` (the
    /// adapter metrics' label) from `broker.conf` when it sets one, else from the
    /// `--adapters` file, else the host name, as the network broker's; `drain_timeout`
    /// from the `--adapters` file, else 30 s.
    pub adapters: AdaptersConfig,
    /// The typed sinks of each adapter, in the same order.
    pub sinks: Vec<AdapterSinks>,
    /// The nats-server binary; `None` looks for it with [`find_nats_server`].
    pub nats_server: Option<PathBuf>,
    /// The setting that chose the HTTP listener, named when its port is taken.
    listen_origin: ListenOrigin,
    /// Where the network broker's port and address keys are written, for port errors.
    port_keys: BTreeMap<&'static str, Location>,
    embedded: Vec<Embedded>,
}

/// Which setting chose the HTTP listener.
#[derive(Debug, Clone)]
struct ListenOrigin {
    /// The file to name: broker.conf, or the adapters file.
    file: PathBuf,
    /// `plugin.choria.stats_port` or `http.listen`.
    key: String,
    /// Where the key is written, when it is.
    at: Option<Location>,
}

impl ListenOrigin {
    fn error(&self, message: String) -> ConfigError {
        match &self.at {
            Some(at) => ConfigError::at(at, self.key.clone(), message),
            None => ConfigError::new(&self.file, self.key.clone(), message),
        }
    }
}

/// The network broker's keys whose ports or address may be unusable at start.
const PORT_KEYS: [&str; 4] = [
    "plugin.choria.network.client_port",
    "plugin.choria.network.peer_port",
    "plugin.choria.network.pprof_port",
    "plugin.choria.network.listen_address",
];

impl DaemonConfig {
    /// Reads the Choria config at `config` and, when given, the adapters file at
    /// `adapters` (`*.toml` as adapters.toml). Every problem in either is returned,
    /// sorted by file and line.
    pub fn load(config: &Path, adapters: Option<&Path>) -> Result<DaemonConfig, ConfigErrors> {
        let text = std::fs::read_to_string(config)
            .map_err(|e| ConfigError::new(config, "", format!("cannot read the file: {e}")))?;
        let extra = adapters.map(|p| (p.to_path_buf(), coro_sinks::config::load(p)));
        DaemonConfig::build(config, &text, extra)
    }

    /// [`load`](Self::load) for `text` as if read from `config`, with the adapters file
    /// `adapters` given as its path and text.
    pub fn parse(
        config: &Path,
        text: &str,
        adapters: Option<(&Path, &str)>,
    ) -> Result<DaemonConfig, ConfigErrors> {
        let extra = adapters.map(|(p, t)| (p.to_path_buf(), coro_sinks::config::parse(p, t)));
        DaemonConfig::build(config, text, extra)
    }

    #[allow(clippy::type_complexity)]
    fn build(
        path: &Path,
        text: &str,
        extra: Option<(
            PathBuf,
            Result<(AdaptersConfig, Vec<AdapterSinks>), ConfigErrors>,
        )>,
    ) -> Result<DaemonConfig, ConfigErrors> {
        let choria = ChoriaConfig::parse(path, text);
        let mut errors = ConfigErrors::default();

        let federation = match FederationConfig::from_choria(&choria) {
            Ok(f) => f,
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        // Asked for, even when its other keys are wrong: not "nothing to run".
        let federation_on = choria.get(BROKER_FEDERATION).and_then(parse_bool) == Some(true);

        // `None` inside: the network broker is off; the outer `None`: it is not known.
        let network = match NetworkConfig::from_choria(&choria) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.extend(e);
                None
            }
        };

        let choria_adapters = if choria.entry(ADAPTERS).is_some() {
            match coro_sinks::config::parse(path, text) {
                Ok(loaded) => Some(loaded),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            }
        } else {
            None
        };
        let (extra_path, extra) = match extra {
            Some((p, Ok(loaded))) => (Some(p), Some(loaded)),
            Some((p, Err(e))) => {
                errors.extend(e);
                (Some(p), None)
            }
            None => (None, None),
        };

        if matches!(network, Some(None))
            && !federation_on
            && choria.entry(ADAPTERS).is_none()
            && extra_path.is_none()
        {
            let message = format!("is not true and {ADAPTERS} is not set: nothing to run");
            let error = match choria.entry(BROKER_NETWORK) {
                Some(e) => ConfigError::at(&e.location, BROKER_NETWORK, message),
                None => ConfigError::new(path, BROKER_NETWORK, message),
            };
            errors.push(error.with_hint(format!(
                "set {BROKER_NETWORK} = true to run the network broker, or list adapters in \
                 {ADAPTERS} (with plugin.choria.adapter.<name>.* keys), or give --adapters \
                 adapters.toml"
            )));
        }

        // The HTTP listener.
        let default = HttpSettings::default();
        let (stats, stats_errors) = stats_listen(&choria);
        errors.extend(stats_errors);
        let mut http = HttpSettings {
            identity: choria
                .get("identity")
                .map(str::to_string)
                .or_else(|| extra.as_ref().map(|(c, _)| c.http.identity.clone()))
                .unwrap_or(default.identity.clone()),
            ..default.clone()
        };
        let mut listen_origin = ListenOrigin {
            file: path.to_path_buf(),
            key: STATS_PORT.to_string(),
            at: None,
        };
        if let Some((extra_config, _)) = &extra {
            http.drain_timeout = extra_config.http.drain_timeout;
            http.listen = extra_config.http.listen;
            listen_origin = ListenOrigin {
                file: extra_config.file.clone(),
                key: "http.listen".into(),
                at: None,
            };
        }
        if let Some((listen, at)) = stats {
            if let Some((extra_config, _)) = &extra {
                if extra_config.http.listen != default.listen && extra_config.http.listen != listen
                {
                    tracing::warn!(
                        "{}: [http] listen = {} is not used: {STATS_PORT} in {} sets the one HTTP \
                         listener to {listen}",
                        extra_config.file.display(),
                        extra_config.http.listen,
                        path.display()
                    );
                }
            }
            http.listen = listen;
            listen_origin = ListenOrigin {
                file: path.to_path_buf(),
                key: STATS_PORT.to_string(),
                at: Some(at),
            };
        }

        // Every adapter, names unique across both files.
        let mut adapters = AdaptersConfig {
            file: path.to_path_buf(),
            http,
            adapters: Vec::new(),
        };
        let mut sinks = Vec::new();
        let mut embedded = Vec::new();
        let running_network = network.as_ref().and_then(|n| n.as_ref());
        if let Some((config, typed)) = choria_adapters {
            for (adapter, typed) in config.adapters.into_iter().zip(typed) {
                if running_network.is_some() {
                    let index = adapters.adapters.len();
                    if let Some(e) = embedded_servers(&choria, index, &adapter.name, &typed) {
                        embedded.push(e);
                    }
                }
                adapters.adapters.push(adapter);
                sinks.push(typed);
            }
        }
        if let Some((config, typed)) = extra {
            for (adapter, typed) in config.adapters.into_iter().zip(typed) {
                if adapters.adapters.iter().any(|a| a.name == adapter.name) {
                    errors.push(
                        adapter
                            .error(
                                "name",
                                format!(
                                    "adapter `{}` is also in {} ({ADAPTERS})",
                                    adapter.name,
                                    path.display()
                                ),
                            )
                            .with_hint("adapter names must be unique: rename one"),
                    );
                    continue;
                }
                adapters.adapters.push(adapter);
                sinks.push(typed);
            }
        }

        if let Some(net) = running_network {
            check_ports(net, &adapters.http.listen, &listen_origin, &mut errors);
            if net.tls.is_some() {
                for e in &embedded {
                    let adapter = &adapters.adapters[e.adapter];
                    errors.push(
                        adapter
                            .error(
                                "",
                                format!(
                                    "would connect to the embedded network broker, whose client \
                                     port requires TLS (plugin.security.provider = file), and \
                                     Coro's adapters do not connect with TLS yet; it uses the \
                                     network broker because {MIDDLEWARE_HOSTS} is not set"
                                ),
                            )
                            .with_hint(format!(
                                "set {MIDDLEWARE_HOSTS} to a broker the adapters reach without \
                                 TLS, or run the adapters elsewhere with `coro run`"
                            )),
                    );
                }
            }
        }

        let federation_embedded = federation.is_some()
            && running_network.is_some()
            && choria.entry(MIDDLEWARE_HOSTS).is_none();
        let errors = dedup(errors);
        errors.into_result(DaemonConfig {
            file: path.to_path_buf(),
            network: network.flatten(),
            federation,
            federation_embedded,
            adapters,
            sinks,
            nats_server: None,
            listen_origin,
            port_keys: PORT_KEYS
                .iter()
                .filter_map(|&k| choria.entry(k).map(|e| (k, e.location.clone())))
                .collect(),
            embedded,
        })
    }

    /// Points the adapters of `broker.conf` that use Choria's default servers at
    /// `client_url` (the embedded network broker's, [`NetworkBroker::client_url`]).
    /// [`Daemon::start`] does this once the network broker runs.
    pub fn use_embedded_broker(&mut self, client_url: &str) {
        for e in &self.embedded {
            let Some(adapter) = self.adapters.adapters.get_mut(e.adapter) else {
                continue;
            };
            if e.ingest {
                if let IngestConfig::Nats(n) = &mut adapter.ingest {
                    n.servers = vec![client_url.to_string()];
                }
            }
            let Some(typed) = self.sinks.get_mut(e.adapter) else {
                continue;
            };
            for &i in &e.sinks {
                if let Some((_, SinkConfig::JetStream(js))) = typed.sinks.get_mut(i) {
                    js.servers = vec![client_url.to_string()];
                }
            }
        }
    }

    /// The names of the adapters that connect to the embedded network broker because
    /// their servers are Choria's default.
    pub fn embedded_adapters(&self) -> Vec<&str> {
        self.embedded
            .iter()
            .filter_map(|e| self.adapters.adapters.get(e.adapter))
            .map(|a| a.name.as_str())
            .collect()
    }

    /// One line describing the network broker, for `coro validate`; `None` when it is
    /// off. E.g. `network broker: broker1, clients on [::]:4222, cluster CHORIA with 3
    /// peers on port 5222, JetStream in /var/lib/choria, no TLS; HTTP on [::]:8222`.
    pub fn network_summary(&self) -> Option<String> {
        let n = self.network.as_ref()?;
        let host = match n.listen_address.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]", n.listen_address),
            _ => n.listen_address.clone(),
        };
        let mut parts = vec![format!("clients on {host}:{}", n.client_port)];
        if let Some(c) = &n.cluster {
            parts.push(format!(
                "cluster {} with {} peers on port {}",
                n.cluster_name,
                c.routes.len(),
                c.port
            ));
        }
        parts.push(match &n.stream_store {
            Some(dir) => format!("JetStream in {}", dir.display()),
            None => "no JetStream".into(),
        });
        parts.push(match &n.tls {
            Some(t) if t.ca.is_some() => "TLS with client certificates".into(),
            Some(_) => "TLS".into(),
            None => "no TLS".into(),
        });
        Some(format!(
            "network broker: {}, {}; HTTP on {}",
            n.identity,
            parts.join(", "),
            self.adapters.http.listen
        ))
    }

    /// One line describing the federation broker, for `coro validate`; `None` when it
    /// is off. E.g. `federation broker: cluster london, federation
    /// [nats://fed1:4222], collective [nats://localhost:4222], 10 workers, hardening on`.
    pub fn federation_summary(&self) -> Option<String> {
        let f = self.federation.as_ref()?;
        let collective = if self.federation_embedded {
            "the network broker".to_string()
        } else {
            format!("{:?}", f.collective_servers)
        };
        let h = &f.hardening;
        let hardening = if *h == crate::federation::Hardening::off() {
            "hardening off (as Go)"
        } else {
            "hardening on"
        };
        Some(format!(
            "federation broker: cluster {}, federation {:?}, collective {collective}, {} \
             workers, {hardening}{}",
            f.cluster,
            f.federation_servers,
            f.workers,
            if f.tls.is_some() { ", TLS" } else { "" }
        ))
    }

    /// The error for an HTTP listener that cannot be bound, at the key that sets it.
    fn listen_error(&self, e: &std::io::Error) -> ConfigError {
        let listen = self.adapters.http.listen;
        let (message, hint) = if e.kind() == std::io::ErrorKind::AddrInUse {
            (
                format!("HTTP port {} on {} is in use", listen.port(), listen.ip()),
                format!(
                    "another process listens there; stop it, or set {} to a free port",
                    self.listen_origin.key
                ),
            )
        } else {
            (
                format!("cannot listen for HTTP on {listen}: {e}"),
                format!("set {STATS_ADDRESS} to an address of this host"),
            )
        };
        self.listen_origin.error(message).with_hint(hint)
    }

    /// A network port error at the key that sets the port.
    fn port_error(&self, e: &NetworkError) -> Option<ConfigError> {
        let (key, message, hint) = match e {
            NetworkError::PortInUse {
                what,
                address,
                port,
                hint,
            } => {
                let key = match *what {
                    "client" => "plugin.choria.network.client_port",
                    "peer" => "plugin.choria.network.peer_port",
                    "pprof" => "plugin.choria.network.pprof_port",
                    _ => return None,
                };
                (
                    key,
                    format!("{what} port {port} on {address} is in use"),
                    hint.clone(),
                )
            }
            NetworkError::Listen {
                what,
                address,
                port,
                source,
            } => (
                "plugin.choria.network.listen_address",
                format!("cannot listen on {address} port {port} ({what}): {source}"),
                "set it to an address of this host, or :: for every address".to_string(),
            ),
            _ => return None,
        };
        let error = match self.port_keys.get(key) {
            Some(at) => ConfigError::at(at, key, message),
            None => ConfigError::new(&self.file, key, message),
        };
        Some(error.with_hint(hint))
    }
}

/// `plugin.choria.stats_address:stats_port` when the port is set and not 0, with where
/// the port is written; and the problems with either key.
fn stats_listen(choria: &ChoriaConfig) -> (Option<(SocketAddr, Location)>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let address = match choria.entry(STATS_ADDRESS) {
        Some(e) => match e.value.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                errors.push(
                    ConfigError::at(
                        &e.location,
                        STATS_ADDRESS,
                        format!("`{}` is not an IP address", e.value),
                    )
                    .with_hint(format!(
                        "write e.g. {STATS_ADDRESS} = 127.0.0.1 (or :: for every address)"
                    )),
                );
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
        },
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let Some(e) = choria.entry(STATS_PORT) else {
        return (None, errors);
    };
    match e.value.parse::<u16>() {
        Ok(0) => (None, errors),
        Ok(port) => (
            Some((SocketAddr::new(address, port), e.location.clone())),
            errors,
        ),
        Err(_) => {
            errors.push(
                ConfigError::at(
                    &e.location,
                    STATS_PORT,
                    format!("`{}` is not a port number", e.value),
                )
                .with_hint(format!("write e.g. {STATS_PORT} = 8222")),
            );
            (None, errors)
        }
    }
}

/// Which servers of `broker.conf`'s adapter `name` are Choria's default, and so mean the
/// embedded network broker; `None` when none are.
fn embedded_servers(
    choria: &ChoriaConfig,
    index: usize,
    name: &str,
    typed: &AdapterSinks,
) -> Option<Embedded> {
    // Written servers are honoured even when they name the default URL: only servers
    // that nothing in the file set are Choria's default (see choria.rs's mapping).
    if choria.entry(MIDDLEWARE_HOSTS).is_some() {
        return None;
    }
    let stream_servers = format!("plugin.choria.adapter.{name}.stream.servers");
    let sinks: Vec<usize> = if choria.entry(&stream_servers).is_some() {
        Vec::new()
    } else {
        typed
            .sinks
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| {
                matches!(s, SinkConfig::JetStream(js) if js.servers == [DEFAULT_SERVER])
            })
            .map(|(i, _)| i)
            .collect()
    };
    Some(Embedded {
        adapter: index,
        ingest: true,
        sinks,
    })
}

/// The HTTP listener must not take a port the network broker listens on.
fn check_ports(
    net: &NetworkConfig,
    listen: &SocketAddr,
    origin: &ListenOrigin,
    errors: &mut ConfigErrors,
) {
    let listen_key = &origin.key;
    let mut ports = vec![("plugin.choria.network.client_port", net.client_port)];
    if let Some(c) = &net.cluster {
        ports.push(("plugin.choria.network.peer_port", c.port));
    }
    if let Some(p) = net.pprof_port {
        ports.push(("plugin.choria.network.pprof_port", p));
    }
    for (key, port) in ports {
        if port == listen.port() {
            errors.push(
                origin
                    .error(format!(
                        "the HTTP listener {listen} takes port {port}, which is {key}"
                    ))
                    .with_hint(format!(
                        "two listeners cannot share a port: change one of {listen_key} and {key}"
                    )),
            );
        }
    }
}

/// The network broker's and the adapters' readers both check the stats keys: one error
/// per stats key and place, preferring the one that names the line.
fn dedup(errors: ConfigErrors) -> ConfigErrors {
    let stats = |e: &ConfigError| e.key == STATS_PORT || e.key == STATS_ADDRESS;
    let placed: HashSet<(PathBuf, String)> = errors
        .iter()
        .filter(|e| stats(e) && e.line.is_some())
        .map(|e| (e.file.clone(), e.key.clone()))
        .collect();
    let mut seen = HashSet::new();
    errors
        .into_iter()
        .filter(|e| {
            if !stats(e) {
                return true;
            }
            if e.line.is_none() && placed.contains(&(e.file.clone(), e.key.clone())) {
                return false;
            }
            seen.insert((e.file.clone(), e.key.clone(), e.line))
        })
        .collect::<Vec<_>>()
        .into()
}

/// The running daemon: the network broker, the federation broker, the adapters and the
/// HTTP server.
pub struct Daemon {
    http_addr: SocketAddr,
    registry: prometheus::Registry,
    network: Option<NetworkBroker>,
    federation: Option<FederationBroker>,
    adapters: Option<Adapters>,
    stop_http: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    drain_timeout: Duration,
}

impl Daemon {
    /// Starts everything `config` enables, in order: binds the HTTP port, starts the
    /// network broker (waiting until it is ready), serves HTTP, then starts the adapters
    /// (pointing those that use Choria's default servers at the network broker). What
    /// was started is stopped again when a later step fails.
    ///
    /// Must be called within a Tokio runtime.
    pub async fn start(mut config: DaemonConfig) -> Result<Daemon, DaemonError> {
        let registry = prometheus::Registry::new();
        let listener = http::bind(config.adapters.http.listen)
            .await
            .map_err(|e| DaemonError::Config(config.listen_error(&e).into()))?;
        let http_addr = listener.local_addr().unwrap_or(config.adapters.http.listen);

        let network = match config.network.clone() {
            Some(net) => {
                let nats_server = match &config.nats_server {
                    Some(p) => p.clone(),
                    None => find_nats_server().map_err(DaemonError::Network)?,
                };
                let broker = NetworkBroker::start(net, &nats_server, &registry)
                    .await
                    .map_err(|e| match config.port_error(&e) {
                        Some(c) => DaemonError::Config(c.into()),
                        None => DaemonError::Network(e),
                    })?;
                config.use_embedded_broker(broker.client_url());
                for name in config.embedded_adapters() {
                    tracing::info!(
                        adapter = name,
                        url = broker.client_url(),
                        "the adapter connects to the network broker ({MIDDLEWARE_HOSTS} is not set)"
                    );
                }
                Some(broker)
            }
            None => None,
        };
        warn_no_jetstream(&config);

        let federation = match config.federation.clone() {
            Some(mut fed) => {
                if let (true, Some(n)) = (config.federation_embedded, &network) {
                    tracing::info!(
                        url = n.client_url(),
                        "the federation broker's collective side is the network broker \
                         ({MIDDLEWARE_HOSTS} is not set)"
                    );
                    fed.collective_servers = vec![n.client_url().to_string()];
                }
                match FederationBroker::start(fed, &registry).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        if let Some(n) = network {
                            n.shutdown().await;
                        }
                        return Err(DaemonError::Federation(e));
                    }
                }
            }
            None => None,
        };

        let (choria, proxy) = match &network {
            Some(n) => (n.choria_info(), Some(n.monitor_proxy())),
            None => (
                ChoriaInfo::new(config.adapters.http.identity.clone(), config.file.clone()),
                None,
            ),
        };
        let nats_pid = choria.nats_pid.clone();
        let (stop_http, http_stopped) = watch::channel(false);
        let (set_readiness, readiness) = watch::channel(None);
        let server = tokio::spawn(http::serve_with(
            listener,
            registry.clone(),
            readiness,
            http_stopped,
            choria,
            proxy,
        ));
        tracing::info!(listen = %http_addr, "serving /metrics, /choria/, /healthz and /readyz");

        let adapters = if config.adapters.adapters.is_empty() {
            None
        } else {
            match Adapters::start(&config.adapters, &config.sinks, &registry).await {
                Ok(a) => {
                    tracing::info!(
                        adapters = config.adapters.adapters.len(),
                        "adapters running"
                    );
                    Some(a)
                }
                Err(e) => {
                    let _ = stop_http.send(true);
                    let _ = server.await;
                    if let Some(f) = federation {
                        f.shutdown().await;
                    }
                    if let Some(n) = network {
                        n.shutdown().await;
                    }
                    return Err(DaemonError::Adapters(e));
                }
            }
        };
        let mut ready = adapters
            .as_ref()
            .map_or_else(Readiness::default, Adapters::readiness);
        if let Some(pid) = nats_pid {
            // nats-server runs (the PID is 0 while it is being restarted).
            ready = ready.and(move || pid.load(Ordering::SeqCst) != 0);
        }
        if let Some(f) = &federation {
            // Ready with every connection up; unhealthy, naming the side, without.
            let (r, h) = (f.readiness(), f.readiness());
            ready = ready.and(move || r.ready()).and_healthy(move || {
                let health = h.health();
                if health.ok() {
                    Ok(())
                } else {
                    Err(health.to_string())
                }
            });
        }
        let _ = set_readiness.send(Some(ready));

        Ok(Daemon {
            http_addr,
            registry,
            network,
            federation,
            adapters,
            stop_http,
            http: server,
            drain_timeout: config.adapters.http.drain_timeout,
        })
    }

    /// Where the HTTP server listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// The network broker, when it runs.
    pub fn network(&self) -> Option<&NetworkBroker> {
        self.network.as_ref()
    }

    /// The federation broker, when it runs.
    pub fn federation(&self) -> Option<&FederationBroker> {
        self.federation.as_ref()
    }

    /// Drains the adapters (in-flight batches get the drain timeout), stops nats-server
    /// and then the HTTP server. Returns whether the adapters drained in time.
    pub async fn shutdown(self) -> bool {
        let mut clean = true;
        if let Some(federation) = self.federation {
            // Stops taking requests and replies, forwards what it holds.
            federation.shutdown().await;
        }
        if let Some(adapters) = self.adapters {
            tracing::info!(drain_timeout = ?self.drain_timeout, "draining the adapters");
            clean = adapters.shutdown(self.drain_timeout).await;
            if !clean {
                tracing::warn!("drain timeout passed with messages in flight; they will be redelivered (JetStream) or are lost (core NATS)");
            }
        }
        if let Some(network) = self.network {
            network.shutdown().await;
        }
        let _ = self.stop_http.send(true);
        let _ = self.http.await;
        clean
    }
}

/// Adapters that publish to JetStream on a network broker without JetStream cannot
/// deliver: say so at start.
fn warn_no_jetstream(config: &DaemonConfig) {
    let Some(net) = &config.network else {
        return;
    };
    if net.stream_store.is_some() {
        return;
    }
    for e in &config.embedded {
        if e.sinks.is_empty() {
            continue;
        }
        if let Some(a) = config.adapters.adapters.get(e.adapter) {
            tracing::warn!(
                adapter = a.name,
                "the adapter publishes to JetStream on the network broker, which runs without \
                 JetStream: set plugin.choria.network.stream.store, or its records are retried \
                 until a stream captures them"
            );
        }
    }
}

/// Runs `coro broker run`: exits 0 after SIGTERM or SIGINT and a drain, otherwise with
/// the codes in the module docs. Errors go to stderr as `error: ...`, one per line.
pub fn run(config: &Path, adapters: Option<&Path>) -> ExitCode {
    let daemon_config = match DaemonConfig::load(config, adapters) {
        Ok(c) => c,
        Err(errors) => return fail(&DaemonError::Config(errors)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&DaemonError::Runtime(e)),
    };
    runtime.block_on(async move {
        // Handlers first: a signal during start must stop the children, not kill Coro.
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => return fail(&DaemonError::Runtime(e)),
        };
        let daemon = tokio::select! {
            started = Daemon::start(daemon_config) => match started {
                Ok(d) => d,
                Err(e) => return fail(&e),
            },
            signal = signals.recv() => {
                // Dropping the start stops what it started (the nats-server child is
                // killed with its handle).
                tracing::info!(signal, "stopped while starting");
                return ExitCode::SUCCESS;
            }
        };
        let signal = signals.recv().await;
        tracing::info!(signal, "stopping");
        daemon.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

fn fail(e: &DaemonError) -> ExitCode {
    for line in e.lines() {
        eprintln!("error: {line}");
    }
    ExitCode::from(e.exit_code())
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DaemonConfig, ConfigErrors> {
        DaemonConfig::parse(Path::new("broker.conf"), text, None)
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const ADAPTER: &str = "plugin.choria.adapters = registration\n\
        plugin.choria.adapter.registration.type = choria_streams\n\
        plugin.choria.adapter.registration.ingest.topic = *.broadcast.agent.registration\n\
        plugin.choria.adapter.registration.stream.topic = choria.registration.%s\n";

    #[test]
    fn broker_run_nothing_enabled_names_both_keys() {
        assert_eq!(
            errors("identity = x\n"),
            ["broker.conf: plugin.choria.broker_network: is not true and plugin.choria.adapters \
              is not set: nothing to run; set plugin.choria.broker_network = true to run the \
              network broker, or list adapters in plugin.choria.adapters (with \
              plugin.choria.adapter.<name>.* keys), or give --adapters adapters.toml"]
        );
        assert!(errors("plugin.choria.broker_network = false\n")[0]
            .starts_with("broker.conf:1:1: plugin.choria.broker_network: is not true"));
        // An adapters file alone is something to run.
        let toml = "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
                    servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n\
                    [[adapter.sink]]\ntype = \"blackhole\"\n";
        let c = DaemonConfig::parse(
            Path::new("broker.conf"),
            "",
            Some((Path::new("adapters.toml"), toml)),
        )
        .unwrap();
        assert!(c.network.is_none());
        assert_eq!(c.adapters.adapters.len(), 1);
    }

    #[test]
    fn broker_run_federation_is_read() {
        // The federation side must be named; nothing else is needed to run.
        assert_eq!(
            errors("plugin.choria.broker_federation = true\n"),
            [
                "broker.conf:1:1: plugin.choria.federation_middleware_hosts: missing: the \
                 federation broker needs its federation side; Coro does not look it up in SRV \
                 records (_mcollective-federation_server._tcp); write e.g. \
                 plugin.choria.federation_middleware_hosts = nats://fed1.example.net:4222, \
                 nats://fed2.example.net:4222"
            ]
        );
        let c = parse(
            "plugin.choria.broker_federation = true\n\
             plugin.choria.federation_middleware_hosts = fed1:4222\n",
        )
        .unwrap();
        let fed = c.federation.as_ref().unwrap();
        assert_eq!(fed.federation_servers, ["nats://fed1:4222"]);
        assert!(!c.federation_embedded);
        // With the network broker and no middleware_hosts, the collective side is it.
        let c = parse(
            "plugin.choria.broker_network = true\nplugin.choria.broker_federation = true\n\
             plugin.choria.federation_middleware_hosts = fed1:4222\n",
        )
        .unwrap();
        assert!(c.federation_embedded);
        assert!(parse(
            "plugin.choria.broker_network = true\nplugin.choria.broker_federation = no\n"
        )
        .unwrap()
        .federation
        .is_none());
    }

    #[test]
    fn broker_run_network_errors_with_the_line() {
        let e = errors(
            "plugin.choria.broker_network = true\nplugin.choria.network.client_port = abc\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "broker.conf:2:1: plugin.choria.network.client_port: `abc` is not a port number"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn broker_run_default_servers_mean_the_embedded_broker() {
        let mut c = parse(&format!(
            "plugin.choria.broker_network = true\nplugin.choria.stats_port = 8300\n{ADAPTER}"
        ))
        .unwrap();
        assert_eq!(c.embedded_adapters(), ["registration"]);
        assert_eq!(c.adapters.http.listen, "127.0.0.1:8300".parse().unwrap());
        c.use_embedded_broker("nats://127.0.0.1:14222");
        assert_eq!(
            c.adapters.adapters[0].ingest.servers(),
            ["nats://127.0.0.1:14222"]
        );
        let SinkConfig::JetStream(js) = &c.sinks[0].sinks[0].1 else {
            panic!("not a JetStream sink")
        };
        assert_eq!(js.servers, ["nats://127.0.0.1:14222"]);

        // Servers written in the file are honoured.
        let c = parse(&format!(
            "plugin.choria.broker_network = true\nplugin.choria.middleware_hosts = n1:4222\n{ADAPTER}"
        ))
        .unwrap();
        assert!(c.embedded_adapters().is_empty());
        let c = parse(&format!(
            "plugin.choria.broker_network = true\n{ADAPTER}\
             plugin.choria.adapter.registration.stream.servers = s1:4222\n"
        ))
        .unwrap();
        assert_eq!(c.embedded[0].sinks, Vec::<usize>::new());
        // Without the network broker nothing changes.
        let c = parse(ADAPTER).unwrap();
        assert!(c.embedded_adapters().is_empty());
        assert_eq!(c.adapters.adapters[0].ingest.servers(), [DEFAULT_SERVER]);
    }

    #[test]
    fn broker_run_adapter_names_are_unique_across_files() {
        let toml = "[[adapter]]\nname = \"registration\"\n[adapter.ingest]\ntype = \"nats\"\n\
                    servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n\
                    [[adapter.sink]]\ntype = \"blackhole\"\n";
        let e = DaemonConfig::parse(
            Path::new("broker.conf"),
            ADAPTER,
            Some((Path::new("adapters.toml"), toml)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("adapters.toml:2:1: ") && e.contains("is also in broker.conf"),
            "{e}"
        );
    }

    #[test]
    fn broker_run_stats_port_wins_and_may_not_share_a_port() {
        let toml = "[http]\nlisten = \"127.0.0.1:9999\"\ndrain_timeout = \"5s\"\n\
                    [[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"nats\"\n\
                    servers = [\"nats://127.0.0.1:4222\"]\nsubject = \"x\"\n\
                    [[adapter.sink]]\ntype = \"blackhole\"\n";
        let c = DaemonConfig::parse(
            Path::new("broker.conf"),
            "plugin.choria.broker_network = true\nplugin.choria.stats_port = 8300\n",
            Some((Path::new("adapters.toml"), toml)),
        )
        .unwrap();
        assert_eq!(c.adapters.http.listen, "127.0.0.1:8300".parse().unwrap());
        assert_eq!(c.adapters.http.drain_timeout, Duration::from_secs(5));
        let c = DaemonConfig::parse(
            Path::new("broker.conf"),
            "plugin.choria.broker_network = true\n",
            Some((Path::new("adapters.toml"), toml)),
        )
        .unwrap();
        assert_eq!(c.adapters.http.listen, "127.0.0.1:9999".parse().unwrap());
        let e = DaemonConfig::parse(
            Path::new("broker.conf"),
            "plugin.choria.broker_network = true\nplugin.choria.network.client_port = 9999\n",
            Some((Path::new("adapters.toml"), toml)),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "adapters.toml: http.listen: the HTTP listener 127.0.0.1:9999 takes port 9999"
            ),
            "{e}"
        );

        let e = errors(
            "plugin.choria.broker_network = true\nplugin.choria.network.client_port = 8300\n\
             plugin.choria.stats_port = 8300\n",
        );
        assert_eq!(
            e,
            ["broker.conf:3:1: plugin.choria.stats_port: the HTTP listener 127.0.0.1:8300 takes port \
              8300, which is plugin.choria.network.client_port; two listeners cannot share a \
              port: change one of plugin.choria.stats_port and plugin.choria.network.client_port"]
        );
        // A bad stats port is reported once, though two readers check it.
        let e = errors(&format!(
            "plugin.choria.broker_network = true\nplugin.choria.stats_port = x\n{ADAPTER}"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn broker_run_tls_network_refuses_embedded_adapters() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let e = errors(&format!(
            "plugin.choria.broker_network = true\nplugin.security.provider = file\n\
             plugin.security.file.certificate = {0}/cert.pem\n\
             plugin.security.file.key = {0}/key.pem\n{ADAPTER}",
            dir.path().display()
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("requires TLS"), "{e:?}");
    }

    #[test]
    fn broker_run_network_summary() {
        let c = parse(
            "identity = b1\nplugin.choria.broker_network = true\n\
             plugin.choria.network.peers = nats://b1:5222,nats://b2:5222,nats://b3:5222\n\
             plugin.choria.stats_address = ::\nplugin.choria.stats_port = 8222\n",
        )
        .unwrap();
        assert_eq!(
            c.network_summary().unwrap(),
            "network broker: b1, clients on [::]:4222, cluster CHORIA with 3 peers on port \
             5222, no JetStream, no TLS; HTTP on [::]:8222"
        );
    }

    #[test]
    fn broker_run_exit_codes() {
        let e = DaemonError::Network(NetworkError::NatsServerNotFound {
            searched: "PATH".into(),
        });
        assert_eq!(e.exit_code(), EX_UNAVAILABLE);
        assert!(e.to_string().contains("scripts/install-nats.sh"));
        assert_eq!(
            DaemonError::Config(ConfigErrors::default()).exit_code(),
            EX_CONFIG
        );
    }
}
