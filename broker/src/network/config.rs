//! The network broker's settings, read from a Choria `broker.conf`
//! ([`NetworkConfig::from_choria`]).
//!
//! The keys are go-choria's (`config/choria.go`, PROTOCOL.md §4.4) and mean what they
//! mean there:
//!
//! | key | default | nats-server option |
//! |---|---|---|
//! | `plugin.choria.broker_network` | `false` | the broker runs only when true |
//! | `identity` | the host name | `server_name` |
//! | `plugin.choria.network.listen_address` | `::` | `host`, `cluster.host` |
//! | `plugin.choria.network.client_port` | `4222` | `port` |
//! | `plugin.choria.network.public_url` | `<identity>:<client_port>` | `client_advertise` |
//! | `plugin.choria.network.write_deadline` | `10s` | `write_deadline` |
//! | `plugin.choria.network.auth_timeout` | `2s` (at most 60s) | `authorization.timeout` |
//! | `plugin.choria.network.tls_timeout` | `2s` (at most 60s) | `tls.timeout` |
//! | `plugin.choria.network.gateway_name` | `CHORIA` | `cluster.name` |
//! | `plugin.choria.network.peers` | none | `cluster.routes` (comma list of `nats://host:port`) |
//! | `plugin.choria.network.peer_port` | `5222` when peers are set | `cluster.port` |
//! | `plugin.choria.network.peer_user`, `peer_password` | none | `cluster.authorization`, and the user info of every route (nats-server sends no other credentials to peers) |
//! | `plugin.choria.network.stream.store` | none | `jetstream.store_dir` (enables JetStream) |
//! | `plugin.choria.network.pprof_port` | `0` (off) | `prof_port` |
//! | `plugin.choria.network.soft_shutdown_timeout` | `60` (seconds) | SIGTERM to SIGKILL at shutdown |
//! | `plugin.choria.network.client_tls_force_required` | `false` | requires the TLS settings below |
//! | `plugin.security.provider = file` | | `tls` from `plugin.security.file.{certificate,key,ca}`; `verify` when a CA is set |
//! | `plugin.security.cipher_suites`, `ecc_curves` | | `tls.cipher_suites`, `tls.curve_preferences` |
//! | `plugin.choria.stats_address`, `stats_port` | `127.0.0.1`, off | where Coro's HTTP server forwards the NATS monitoring paths |
//! | `loglevel = debug` | | `debug` |
//!
//! Keys for features Coro's broker does not have (gateways, leafnodes, WebSocket,
//! mappings, accounts, JWT signers and issuers, client_hosts, the puppet, pkcs11,
//! certmanager and choria security providers, Choria's managed streams) are errors
//! naming the line, never silently dropped: a broker that started without them would
//! behave differently from the Go broker it replaces. Other keys outside
//! `plugin.choria.network.` are left to the parts of Coro that read them.
//!
//! Unlike Go, which defaults to the puppet security provider, a config without
//! `plugin.security.provider = file` runs the client port without TLS (the broker logs a
//! warning at start).

use crate::choria_keys::{parse_bool, Keys, PROVIDER};
use coro_core::config::{did_you_mean, ChoriaConfig, ConfigErrors};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `plugin.choria.network.client_port` when unset.
pub const DEFAULT_CLIENT_PORT: u16 = 4222;
/// `plugin.choria.network.peer_port` when peers are set and it is not.
pub const DEFAULT_PEER_PORT: u16 = 5222;
/// The cluster name when `plugin.choria.network.gateway_name` is unset.
pub const DEFAULT_CLUSTER_NAME: &str = "CHORIA";
/// Connections one broker accepts, as Go's default build (`maxBrokerClients`).
pub const MAX_BROKER_CLIENTS: u32 = 50_000;

const NETWORK: &str = "plugin.choria.network.";

/// The `plugin.choria.network.*` settings Coro honours (after the prefix).
/// `connect_timeout` is the Choria servers' (the clients') setting; the broker has no
/// use for it but it is valid in a shared file.
const HONOURED: [&str; 18] = [
    "listen_address",
    "client_port",
    "public_url",
    "client_tls_force_required",
    "write_deadline",
    "tls_timeout",
    "auth_timeout",
    "connect_timeout",
    "soft_shutdown_timeout",
    "pprof_port",
    "peers",
    "peer_port",
    "peer_user",
    "peer_password",
    "gateway_name",
    "stream.store",
    "stream.manage_streams",
    "deny_server_connections",
];

/// A feature of the Go broker that Coro's does not have, and the keys that ask for it.
struct Unsupported {
    /// Keys after `plugin.choria.network.`; a trailing `.` matches every key under it.
    keys: &'static [&'static str],
    /// Only a true value asks for the feature (`deny_server_connections = false` is fine).
    when_true: bool,
    what: &'static str,
    instead: &'static str,
}

const STREAMS_INSTEAD: &str = "set plugin.choria.network.stream.manage_streams = 0 and create \
     the streams you need with `nats stream add`, or keep the Go broker for them";

const UNSUPPORTED: [Unsupported; 11] = [
    Unsupported {
        keys: &["gateway_port", "gateway_remotes", "gateway_remote."],
        when_true: false,
        what: "gateways (super clusters)",
        instead: "remove the key; Coro runs one cluster (plugin.choria.network.peers), keep \
                  the Go broker where a super cluster is needed",
    },
    Unsupported {
        keys: &["leafnode_port", "leafnode_remotes", "leafnode_remote."],
        when_true: false,
        what: "leafnodes",
        instead: "remove the key, or keep the Go broker where leafnodes are needed",
    },
    Unsupported {
        keys: &["websocket_port", "websocket_advertise"],
        when_true: false,
        what: "WebSocket listeners",
        instead: "remove the key; clients connect to plugin.choria.network.client_port",
    },
    Unsupported {
        keys: &["mapping."],
        when_true: false,
        what: "subject mappings",
        instead: "remove the key, or keep the Go broker where mappings are needed",
    },
    Unsupported {
        keys: &["client_signer_cert", "server_signer_cert"],
        when_true: false,
        what: "JWT signed connections (Choria's broker authentication layer)",
        instead: "remove the key; clients and servers connect with mTLS from \
                  plugin.security.file.*",
    },
    Unsupported {
        keys: &["provisioning."],
        when_true: false,
        what: "the provisioning account",
        instead: "remove the key, or keep the Go broker for provisioning",
    },
    Unsupported {
        keys: &["system."],
        when_true: false,
        what: "the system account",
        instead: "remove the key; monitor the broker through the NATS monitoring paths \
                  (/varz, /connz, ...) on plugin.choria.stats_port",
    },
    Unsupported {
        keys: &["client_hosts"],
        when_true: false,
        what: "client IP restrictions (client_hosts)",
        instead: "remove the key and restrict who reaches the client port with a firewall",
    },
    Unsupported {
        keys: &["deny_server_connections"],
        when_true: true,
        what: "denying server connections (Choria's broker authentication layer)",
        instead: "remove the key or set it to false",
    },
    Unsupported {
        keys: &["stream.manage_streams"],
        when_true: true,
        what: "Choria's managed streams (CHORIA_EVENTS, CHORIA_MACHINE, ...)",
        instead: STREAMS_INSTEAD,
    },
    Unsupported {
        keys: &["stream."],
        when_true: false,
        what: "Choria's managed streams (CHORIA_EVENTS, CHORIA_MACHINE, ...)",
        instead: STREAMS_INSTEAD,
    },
];

/// The network broker's settings: what the nats-server child is configured with, and
/// how Coro runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The Choria config file these settings were read from (reported on `/choria/`).
    pub config_file: PathBuf,
    /// `identity`: the server name, and the `identity` label of every metric.
    pub identity: String,
    /// Where clients and peers connect: an address or host name, `::` for all.
    pub listen_address: String,
    /// The client port.
    pub client_port: u16,
    /// `host:port` advertised to clients: `public_url`, else `<identity>:<client_port>`.
    pub client_advertise: String,
    /// How long a client may take to read before it is a slow consumer.
    pub write_deadline: Duration,
    /// How long a client may take to authenticate.
    pub auth_timeout: Duration,
    /// How long a client may take for the TLS handshake.
    pub tls_timeout: Duration,
    /// Connections accepted at most.
    pub max_connections: u32,
    /// The cluster name (`gateway_name`), which every peer must share.
    pub cluster_name: String,
    /// The cluster, when peers are configured.
    pub cluster: Option<ClusterConfig>,
    /// TLS on the client port, when `plugin.security.provider = file`.
    pub tls: Option<TlsConfig>,
    /// The JetStream store directory; JetStream is off without it.
    pub stream_store: Option<PathBuf>,
    /// `plugin.choria.stats_address`: where the HTTP endpoints listen.
    pub stats_address: IpAddr,
    /// `plugin.choria.stats_port`: the HTTP endpoints' port; `None` when off.
    pub stats_port: Option<u16>,
    /// The nats-server profiling port, when set.
    pub pprof_port: Option<u16>,
    /// nats-server debug logging (`loglevel = debug`).
    pub debug: bool,
    /// At shutdown, how long nats-server has after SIGTERM before it gets SIGKILL.
    pub shutdown_timeout: Duration,
    /// How often the monitoring endpoints are read into the metrics (not a Choria key;
    /// 10 s like Go).
    pub stats_interval: Duration,
    /// How long nats-server may take to become ready at start (not a Choria key).
    pub start_timeout: Duration,
    /// The first wait before restarting a nats-server that died; it doubles on every
    /// death up to [`restart_backoff_max`](Self::restart_backoff_max) and starts again
    /// after a minute of uptime (not Choria keys).
    pub restart_backoff: Duration,
    /// The longest wait between restarts.
    pub restart_backoff_max: Duration,
}

/// The broker cluster: peers connect to each other on the peer port.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The peer port.
    pub port: u16,
    /// Every peer as a URL, this broker included (nats-server drops the route to itself).
    pub routes: Vec<String>,
    /// The user and password peers authenticate with, when set.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for ClusterConfig {
    // The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("port", &self.port)
            .field("routes", &self.routes)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .finish()
    }
}

/// TLS on the client port, from `plugin.security.file.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate (PEM).
    pub certificate: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs client certificates. With it, clients must present a
    /// certificate it signed (nats-server `verify`): Coro has no per-connection Choria
    /// authentication, so verified mTLS is the only way in, as plain verified mTLS is
    /// unrestricted in Go.
    pub ca: Option<PathBuf>,
    /// `plugin.security.cipher_suites` (Go's names, which nats-server shares).
    pub cipher_suites: Vec<String>,
    /// `plugin.security.ecc_curves`.
    pub curve_preferences: Vec<String>,
}

impl NetworkConfig {
    /// The network broker's settings in `config`, `None` when
    /// `plugin.choria.broker_network` is not true. Every problem is reported, each
    /// naming the file, line and key, and what to write instead.
    pub fn from_choria(config: &ChoriaConfig) -> Result<Option<NetworkConfig>, ConfigErrors> {
        let mut r = Keys::new(config);
        if !r.bool("plugin.choria.broker_network", false) {
            return r.errors.into_result(None);
        }
        r.check_network_keys();

        let identity = match config.get("identity") {
            Some(id) => id.to_string(),
            None => hostname(),
        };
        let listen_address = r
            .word(&net("listen_address"))
            .unwrap_or_else(|| "::".to_string());
        let client_port = r
            .port(&net("client_port"), false)
            .unwrap_or(DEFAULT_CLIENT_PORT);
        let client_advertise = r
            .word(&net("public_url"))
            .unwrap_or_else(|| format!("{identity}:{client_port}"));
        let write_deadline = r.duration(&net("write_deadline"), Duration::from_secs(10), None);
        let sixty = Some(Duration::from_secs(60));
        let auth_timeout = r.duration(&net("auth_timeout"), Duration::from_secs(2), sixty);
        let tls_timeout = r.duration(&net("tls_timeout"), Duration::from_secs(2), sixty);
        let cluster_name = r
            .word(&net("gateway_name"))
            .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.to_string());
        let cluster = r.cluster_config();
        let tls = r.server_tls();
        let stream_store = r.path(&net("stream.store"));
        let stats_address = r.stats_address();
        let stats_port = r.port("plugin.choria.stats_port", true);
        let pprof_port = r.port(&net("pprof_port"), true);
        let shutdown_timeout = Duration::from_secs(r.seconds(&net("soft_shutdown_timeout"), 60));
        let debug = config
            .get("loglevel")
            .is_some_and(|l| l.eq_ignore_ascii_case("debug"));

        let cfg = NetworkConfig {
            config_file: config.file().to_path_buf(),
            identity,
            listen_address,
            client_port,
            client_advertise,
            write_deadline,
            auth_timeout,
            tls_timeout,
            max_connections: MAX_BROKER_CLIENTS,
            cluster_name,
            cluster,
            tls,
            stream_store,
            stats_address,
            stats_port,
            pprof_port,
            debug,
            shutdown_timeout,
            stats_interval: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            restart_backoff: Duration::from_millis(500),
            restart_backoff_max: Duration::from_secs(30),
        };
        r.errors.into_result(Some(cfg))
    }
}

fn net(setting: &str) -> String {
    format!("{NETWORK}{setting}")
}

/// The host name, which Go uses as the identity when none is configured.
fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The network broker's keys.
impl Keys<'_> {
    /// A port; 0 means off (`None`) where `zero_is_off`, else is an error.
    fn port(&mut self, key: &str, zero_is_off: bool) -> Option<u16> {
        let e = self.config.entry(key)?;
        match e.value.parse::<u16>() {
            Ok(0) if zero_is_off => None,
            Ok(0) => {
                self.error(
                    e,
                    key,
                    "port 0 is not a port".into(),
                    format!("write e.g. {key} = {DEFAULT_CLIENT_PORT}"),
                );
                None
            }
            Ok(port) => Some(port),
            Err(_) => {
                let mut hint = format!("write a number from 1 to 65535, e.g. {key} = 4222");
                if e.value.contains('#') {
                    hint = format!("Choria config has no comments after a value; {hint}");
                }
                self.error(e, key, format!("`{}` is not a port number", e.value), hint);
                None
            }
        }
    }

    /// Whole seconds, `default` when unset.
    fn seconds(&mut self, key: &str, default: u64) -> u64 {
        let Some(e) = self.config.entry(key) else {
            return default;
        };
        match e.value.parse() {
            Ok(n) => n,
            Err(_) => {
                self.error(
                    e,
                    key,
                    format!("`{}` is not a whole number of seconds", e.value),
                    format!("write e.g. {key} = {default}"),
                );
                default
            }
        }
    }

    /// A Go duration (`10s`, `1m30s`, `500ms`) or whole seconds, at most `max`.
    fn duration(&mut self, key: &str, default: Duration, max: Option<Duration>) -> Duration {
        let Some(e) = self.config.entry(key) else {
            return default;
        };
        match parse_duration(&e.value) {
            Ok(d) if max.is_some_and(|m| d > m) => {
                self.error(
                    e,
                    key,
                    format!("`{}` is longer than the 60s nats-server allows", e.value),
                    format!("write e.g. {key} = 10s"),
                );
                default
            }
            Ok(d) => d,
            Err(why) => {
                self.error(
                    e,
                    key,
                    format!("`{}` is not a duration ({why})", e.value),
                    format!("write e.g. {key} = {}s", default.as_secs().max(1)),
                );
                default
            }
        }
    }

    /// A value without spaces or quotes (addresses, names).
    fn word(&mut self, key: &str) -> Option<String> {
        let e = self.config.entry(key)?;
        if e.value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '#')
        {
            self.error(
                e,
                key,
                format!("`{}` has spaces, quotes or a comment in it", e.value),
                format!("write one word, e.g. {key} = {}", example(key)),
            );
            return None;
        }
        Some(e.value.clone())
    }

    fn stats_address(&mut self) -> IpAddr {
        let key = "plugin.choria.stats_address";
        let default = IpAddr::from([127, 0, 0, 1]);
        let Some(e) = self.config.entry(key) else {
            return default;
        };
        match e.value.parse() {
            Ok(ip) => ip,
            Err(_) => {
                self.error(
                    e,
                    key,
                    format!("`{}` is not an IP address", e.value),
                    format!("write e.g. {key} = 127.0.0.1 (or :: for every address)"),
                );
                default
            }
        }
    }

    fn cluster_config(&mut self) -> Option<ClusterConfig> {
        let peers_key = net("peers");
        let peers = self.config.entry(&peers_key);
        let routes = match peers {
            Some(e) => {
                let mut routes = Vec::new();
                for peer in e.value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    match peer_url(peer) {
                        Ok(url) => routes.push(url),
                        Err(why) => self.error(
                            e,
                            &peers_key,
                            format!("peer `{peer}` {why}"),
                            format!(
                                "write e.g. {peers_key} = nats://choria1:5222, nats://choria2:5222"
                            ),
                        ),
                    }
                }
                routes
            }
            None => Vec::new(),
        };
        self.check_srv(peers.is_some());
        let user = self.config.entry(&net("peer_user"));
        let password = self.config.entry(&net("peer_password"));
        let credentials = match (user, password) {
            (Some(u), Some(p)) => Some((u.value.clone(), p.value.clone())),
            (None, None) => None,
            (Some(e), None) | (None, Some(e)) => {
                let key = if user.is_some() {
                    net("peer_user")
                } else {
                    net("peer_password")
                };
                self.error(
                    e,
                    &key,
                    "is set without the other half of the peer credentials".into(),
                    format!(
                        "set both {} and {}, or neither",
                        net("peer_user"),
                        net("peer_password")
                    ),
                );
                None
            }
        };
        // As Go: without peers there is no cluster, and peer_port is only read then.
        let port = self.port(&net("peer_port"), true);
        if routes.is_empty() {
            return None;
        }
        Some(ClusterConfig {
            port: port.unwrap_or(DEFAULT_PEER_PORT),
            routes,
            credentials,
        })
    }

    /// Go finds peers in the `_mcollective-broker._tcp` SRV record when SRV lookups are
    /// on and a domain is set; Coro does not look them up.
    fn check_srv(&mut self, peers_set: bool) {
        let Some(domain) = self.config.entry("plugin.choria.srv_domain") else {
            return;
        };
        let use_srv = self
            .config
            .get("plugin.choria.use_srv")
            .and_then(parse_bool)
            .unwrap_or(true);
        if use_srv && !peers_set {
            self.error(
                domain,
                "plugin.choria.srv_domain",
                "Coro's network broker does not find its peers in SRV records \
                 (_mcollective-broker._tcp)"
                    .into(),
                format!(
                    "list them in {} = nats://choria1:5222, ..., or set plugin.choria.use_srv = false",
                    net("peers")
                ),
            );
        }
    }

    fn server_tls(&mut self) -> Option<TlsConfig> {
        let force_key = net("client_tls_force_required");
        let force = self.bool(&force_key, false);
        if self.config.entry(PROVIDER).is_none() {
            if let (true, Some(e)) = (force, self.config.entry(&force_key)) {
                self.error(
                    e,
                    &force_key,
                    "TLS is required but no certificates are configured".into(),
                    "set plugin.security.provider = file and plugin.security.file.certificate, .key and .ca",
                );
            }
            return None;
        }
        let files = self.provider_files("network broker")?;
        let list = |key: &str| -> Vec<String> {
            self.config
                .get(key)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let cipher_suites = list("plugin.security.cipher_suites");
        let curve_preferences = list("plugin.security.ecc_curves");
        Some(TlsConfig {
            certificate: files.certificate,
            key: files.key,
            ca: files.ca,
            cipher_suites,
            curve_preferences,
        })
    }

    /// Every key asking for a feature Coro lacks, and every unknown network key, is an
    /// error.
    fn check_network_keys(&mut self) {
        let config = self.config;
        for (key, e) in config.entries() {
            if let Some(setting) = key.strip_prefix(NETWORK) {
                match unsupported(setting) {
                    // A bad boolean asks for the feature too: say what is missing.
                    Some(u) if !u.when_true || parse_bool(&e.value).unwrap_or(true) => {
                        self.error(
                            e,
                            key,
                            format!("{} are not supported by Coro's network broker", u.what),
                            u.instead,
                        );
                        continue;
                    }
                    Some(_) => continue,
                    None => {}
                }
                if !HONOURED.contains(&setting) {
                    let hint = match did_you_mean(setting, HONOURED) {
                        Some(s) => format!("did you mean `{NETWORK}{s}`?"),
                        None => format!(
                            "Coro's network broker reads {NETWORK}{{{}}}",
                            HONOURED.join(",")
                        ),
                    };
                    self.error(e, key, "unknown network broker key".into(), hint);
                }
            } else if key.starts_with("plugin.security.issuer.") {
                self.error(
                    e,
                    key,
                    "organisation issuers (JWT authentication) are not supported by Coro's \
                     network broker"
                        .into(),
                    "remove the key; clients and servers connect with mTLS from \
                     plugin.security.file.*",
                );
            } else if matches!(
                key,
                "plugin.security.server_anon_tls" | "plugin.security.client_anon_tls"
            ) && parse_bool(&e.value).unwrap_or(true)
            {
                self.error(
                    e,
                    key,
                    "anonymous TLS needs JWT authentication, which Coro's network broker \
                     does not have"
                        .into(),
                    "remove the key or set it to false",
                );
            }
        }
    }
}

/// The unsupported feature `setting` (after `plugin.choria.network.`) asks for, if any.
fn unsupported(setting: &str) -> Option<&'static Unsupported> {
    // The one honoured key under the `stream.` prefix.
    if setting == "stream.store" {
        return None;
    }
    UNSUPPORTED.iter().find(|u| {
        u.keys.iter().any(|k| {
            if k.ends_with('.') {
                setting.starts_with(k)
            } else {
                setting == *k
            }
        })
    })
}

fn example(key: &str) -> &'static str {
    if key.ends_with("public_url") {
        "choria1.example.net:4222"
    } else if key.ends_with("gateway_name") {
        DEFAULT_CLUSTER_NAME
    } else {
        "::"
    }
}

/// A Choria duration: whole seconds (`10`), or Go's `time.ParseDuration` form (`10s`,
/// `1m30s`, `1.5h`, `250ms`).
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| "too large".to_string());
    }
    if value.is_empty() {
        return Err("empty".into());
    }
    let mut rest = value;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("a number without a unit")?;
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("unknown unit `{unit}`; use ms, s, m or h")),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| "out of range".to_string())
}

/// A peer as a route URL: `host:port` or `scheme://host:port` (Go takes the scheme from
/// the URL, `nats` when there is none, and needs the port).
fn peer_url(peer: &str) -> Result<String, String> {
    let (scheme, rest) = peer.split_once("://").unwrap_or(("nats", peer));
    // Go keeps only the URL's host: user info and a path are dropped.
    let rest = rest.split('/').next().unwrap_or_default();
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (host, port) = hostport.rsplit_once(':').ok_or("has no port (host:port)")?;
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('"') {
        return Err("has no host".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{scheme}://{host}:{p}")),
        _ => Err(format!("has a bad port `{port}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Option<NetworkConfig>, ConfigErrors> {
        NetworkConfig::from_choria(&ChoriaConfig::parse("broker.conf", text))
    }

    fn errors(text: &str) -> Vec<String> {
        match read(text) {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn network_off_unless_broker_network_is_true() {
        assert_eq!(read("identity = a\n").unwrap(), None);
        assert_eq!(
            read("plugin.choria.broker_network = false\n").unwrap(),
            None
        );
        // Unsupported keys do not matter when the network broker is off.
        assert_eq!(
            read("plugin.choria.network.gateway_port = 7222\n").unwrap(),
            None
        );
        let e = errors("plugin.choria.broker_network = maybe\n");
        assert_eq!(
            e,
            [
                "broker.conf:1:1: plugin.choria.broker_network: `maybe` is not a boolean; \
              write e.g. plugin.choria.broker_network = true (or false)"
            ]
        );
    }

    #[test]
    fn network_defaults_like_go() {
        let c = read("plugin.choria.broker_network = yes\nidentity = b1\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.identity, "b1");
        assert_eq!(c.listen_address, "::");
        assert_eq!(c.client_port, 4222);
        assert_eq!(c.client_advertise, "b1:4222");
        assert_eq!(c.write_deadline, Duration::from_secs(10));
        assert_eq!(c.auth_timeout, Duration::from_secs(2));
        assert_eq!(c.tls_timeout, Duration::from_secs(2));
        assert_eq!(c.max_connections, 50_000);
        assert_eq!(c.cluster_name, "CHORIA");
        assert_eq!(c.cluster, None);
        assert_eq!(c.tls, None);
        assert_eq!(c.stream_store, None);
        assert_eq!(c.stats_address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.stats_port, None);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(60));
        assert!(!c.debug);
    }

    #[test]
    fn network_announcement_cluster() {
        let c = read(
            "plugin.choria.broker_network = true\n\
             plugin.choria.network.peers = nats://choria1:5222, nats://choria2:5222, choria3:5222\n\
             plugin.choria.stats_address = ::\n\
             plugin.choria.network.peer_user = u\n\
             plugin.choria.network.peer_password = s£cret\n\
             plugin.choria.network.gateway_name = EU\n",
        )
        .unwrap()
        .unwrap();
        let cluster = c.cluster.as_ref().unwrap();
        assert_eq!(cluster.port, 5222);
        assert_eq!(
            cluster.routes,
            [
                "nats://choria1:5222",
                "nats://choria2:5222",
                "nats://choria3:5222"
            ]
        );
        assert_eq!(
            cluster.credentials,
            Some(("u".to_string(), "s£cret".to_string()))
        );
        assert!(!format!("{c:?}").contains("s£cret"));
        assert_eq!(c.stats_address, "::".parse::<IpAddr>().unwrap());
        assert_eq!(c.cluster_name, "EU");
    }

    #[test]
    fn network_values_are_typed() {
        let c = read(
            "plugin.choria.broker_network = 1\n\
             plugin.choria.network.client_port = 14222\n\
             plugin.choria.network.write_deadline = 1m30s\n\
             plugin.choria.network.auth_timeout = 5\n\
             plugin.choria.network.tls_timeout = 500ms\n\
             plugin.choria.network.stream.store = /var/lib/choria\n\
             plugin.choria.network.stream.manage_streams = 0\n\
             plugin.choria.network.deny_server_connections = false\n\
             plugin.choria.network.connect_timeout = 4s\n\
             plugin.choria.network.public_url = broker.example.net:443\n\
             plugin.choria.network.pprof_port = 6060\n\
             plugin.choria.network.soft_shutdown_timeout = 5\n\
             plugin.choria.stats_port = 8222\n\
             loglevel = debug\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.client_port, 14222);
        assert_eq!(c.write_deadline, Duration::from_secs(90));
        assert_eq!(c.auth_timeout, Duration::from_secs(5));
        assert_eq!(c.tls_timeout, Duration::from_millis(500));
        assert_eq!(c.stream_store, Some(PathBuf::from("/var/lib/choria")));
        assert_eq!(c.client_advertise, "broker.example.net:443");
        assert_eq!(c.pprof_port, Some(6060));
        assert_eq!(c.stats_port, Some(8222));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert!(c.debug);
    }

    #[test]
    fn network_unsupported_keys_name_the_line() {
        let e = errors(
            "plugin.choria.broker_network = true\n\
             plugin.choria.network.gateway_port = 7222\n\
             plugin.choria.network.leafnode_remote.x.url = nats://x:7422\n\
             plugin.choria.network.system.user = system\n\
             plugin.choria.network.client_hosts = 10.0.0.0/8\n\
             plugin.choria.network.stream.event_retention = 1h\n\
             plugin.choria.network.stream.manage_streams = 1\n\
             plugin.choria.network.deny_server_connections = true\n\
             plugin.security.issuer.names = choria\n\
             plugin.choria.network.clinet_port = 1\n\
             plugin.choria.network.websocket_port = 8080\n",
        );
        assert_eq!(e.len(), 10, "{e:#?}");
        assert!(e[0].starts_with(
            "broker.conf:2:1: plugin.choria.network.gateway_port: gateways (super clusters) \
             are not supported by Coro's network broker; remove the key"
        ));
        assert!(e[1].starts_with(
            "broker.conf:3:1: plugin.choria.network.leafnode_remote.x.url: leafnodes"
        ));
        assert!(e[2]
            .starts_with("broker.conf:4:1: plugin.choria.network.system.user: the system account"));
        assert!(e[3].contains("client_hosts: client IP restrictions"));
        assert!(e[4].contains(
            ":6:1: plugin.choria.network.stream.event_retention: Choria's managed streams"
        ));
        assert!(e[5].contains(
            ":7:1: plugin.choria.network.stream.manage_streams: Choria's managed streams"
        ));
        assert!(e[6].contains(":8:1: plugin.choria.network.deny_server_connections"));
        assert!(e[7].contains(":9:1: plugin.security.issuer.names: organisation issuers"));
        assert_eq!(
            e[8],
            "broker.conf:10:1: plugin.choria.network.clinet_port: unknown network broker key; \
             did you mean `plugin.choria.network.client_port`?"
        );
        assert!(e[9].contains(":11:1: plugin.choria.network.websocket_port: WebSocket"));
    }

    #[test]
    fn network_bad_values_name_the_key() {
        let e = errors(
            "plugin.choria.broker_network = true\n\
             plugin.choria.network.client_port = 42x22\n\
             plugin.choria.network.peers = nats://a:5222, b\n\
             plugin.choria.network.peer_port = 5222 # default\n\
             plugin.choria.network.write_deadline = 10 seconds\n\
             plugin.choria.network.tls_timeout = 2m\n\
             plugin.choria.network.client_tls_force_required = sure\n\
             plugin.choria.stats_address = localhost\n\
             plugin.choria.network.peer_user = u\n",
        );
        assert_eq!(e.len(), 8, "{e:#?}");
        assert_eq!(
            e[0],
            "broker.conf:2:1: plugin.choria.network.client_port: `42x22` is not a port number; \
             write a number from 1 to 65535, e.g. plugin.choria.network.client_port = 4222"
        );
        assert!(
            e[1].starts_with("broker.conf:3:1: plugin.choria.network.peers: peer `b` has no port")
        );
        assert!(e[2].contains(":4:1: plugin.choria.network.peer_port: `5222 # default` is not a port number; Choria config has no comments"));
        assert!(e[3].contains(
            ":5:1: plugin.choria.network.write_deadline: `10 seconds` is not a duration"
        ));
        assert!(
            e[4].contains(":6:1: plugin.choria.network.tls_timeout: `2m` is longer than the 60s")
        );
        assert!(e[5].contains(
            ":7:1: plugin.choria.network.client_tls_force_required: `sure` is not a boolean"
        ));
        assert!(
            e[6].contains(":8:1: plugin.choria.stats_address: `localhost` is not an IP address")
        );
        assert!(
            e[7].contains(":9:1: plugin.choria.network.peer_user: is set without the other half")
        );
    }

    #[test]
    fn network_tls_from_the_file_provider() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let d = dir.path().display();
        let c = read(&format!(
            "plugin.choria.broker_network = true\n\
             plugin.security.provider = file\n\
             plugin.security.file.certificate = {d}/cert.pem\n\
             plugin.security.file.key = {d}/key.pem\n\
             plugin.security.file.ca = {d}/ca.pem\n\
             plugin.security.cipher_suites = TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n"
        ))
        .unwrap()
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.certificate, dir.path().join("cert.pem"));
        assert_eq!(tls.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(
            tls.cipher_suites,
            ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]
        );

        let e = errors(&format!(
            "plugin.choria.broker_network = true\n\
             plugin.security.provider = file\n\
             plugin.security.file.certificate = {d}/missing.pem\n"
        ));
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].contains(":2:1: plugin.security.file.key: missing"));
        assert!(e[1].contains(":3:1: plugin.security.file.certificate: "));
        assert!(e[1].contains("missing.pem does not exist"));

        let e = errors("plugin.choria.broker_network = true\nplugin.security.provider = puppet\n");
        assert!(e[0].contains(
            ":2:1: plugin.security.provider: the `puppet` security provider is not supported"
        ));
        let e = errors(
            "plugin.choria.broker_network = true\nplugin.choria.network.client_tls_force_required = true\n",
        );
        assert!(e[0].contains("TLS is required but no certificates are configured"));
    }

    #[test]
    fn network_srv_peers_are_an_error() {
        let e =
            errors("plugin.choria.broker_network = true\nplugin.choria.srv_domain = example.net\n");
        assert!(e[0].contains(":2:1: plugin.choria.srv_domain: Coro's network broker does not find its peers in SRV records"));
        assert_eq!(
            read("plugin.choria.broker_network = true\nplugin.choria.srv_domain = example.net\nplugin.choria.use_srv = false\n")
                .map(|c| c.is_some()),
            Ok(true)
        );
    }

    #[test]
    fn network_durations_like_go() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10 s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn network_peer_urls() {
        assert_eq!(peer_url("a:1").unwrap(), "nats://a:1");
        assert_eq!(
            peer_url("nats-route://u:p@a:1/x").unwrap(),
            "nats-route://a:1"
        );
        assert_eq!(peer_url("[::1]:5222").unwrap(), "nats://[::1]:5222");
        assert!(peer_url("a").is_err());
        assert!(peer_url("a:0").is_err());
        assert!(peer_url("a:x").is_err());
    }
}
