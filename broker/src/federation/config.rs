//! The federation broker's settings, read from a Choria `broker.conf`
//! ([`FederationConfig::from_choria`]).
//!
//! Choria's keys (`config/choria.go`, PROTOCOL.md §3.7) mean what they mean in Go:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.choria.broker_federation` | `false` | the federation broker runs only when true |
//! | `plugin.choria.federation.cluster` | `mcollective` | the cluster served: subjects `choria.federation.<cluster>.{federation,collective}`, queue groups `<cluster>_federation`, `<cluster>_collective` |
//! | `plugin.choria.federation_middleware_hosts` | required | the federation side: comma list of `host:port` or URLs |
//! | `plugin.choria.middleware_hosts` | `nats://localhost:4222` | the collective side (the member collective's brokers) |
//! | `plugin.security.provider = file` | | TLS on both sides with `plugin.security.file.certificate`, `.key` (the broker's client certificate) and `.ca` (verifies the servers) |
//! | `identity` | the host name | the `identity` metric label, and the name in the hops the broker records |
//!
//! Go finds missing middleware in SRV records; Coro does not resolve SRV, so the
//! federation side must be listed. `plugin.choria.federation.collectives` is a client
//! setting: in a Go broker's config it points the collective side at the federation
//! middleware, so it is an error here. `plugin.choria.federation.instance` (the old Ruby
//! broker's) is accepted and ignored, as Go ignores it.
//!
//! Coro's own keys, none of which Go has:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.coro.federation.workers` | `10` | workers per direction, as Go's fixed 10: worker `i` is ingest `i`, transformer `i` and egest `i`, with its own queue subscription |
//! | `plugin.coro.federation.connections` | `1` | NATS connections per stage and side that the workers share (at most `workers`); Go opens one per worker (`= workers`, 40 connections). The workers on one ingest connection run in one task, so this is also how many tasks forward each direction: more helps only when one task or one connection's reader is the limit |
//! | `plugin.coro.federation.hardening` | `true` | the default of the checks below; `false` forwards what Go forwards |
//! | `plugin.coro.federation.check_subjects` | hardening | request targets must be `<collective>.broadcast.agent.<agent>`, `<collective>.broadcast.service.<agent>` or `<collective>.node.<identity>`; reply subjects must have a `reply` token after the first (`<collective>.reply.…`, as the Ruby broker required) or match `allowed_reply_subjects`; neither may be a `choria.federation.` subject or hold wildcards |
//! | `plugin.coro.federation.allowed_reply_subjects` | none | comma list of NATS subject patterns (`*`, `>`) also accepted as reply subjects, e.g. the subjects of a stream that collects asynchronous replies: `choria.replies.>` |
//! | `plugin.coro.federation.max_targets` | `200` with hardening, else `0` | targets one request message may carry (Go and Ruby clients send at most 200); `0` is no limit |
//! | `plugin.coro.federation.loop_guard` | hardening | drop a message whose hop list shows it passed this broker (same identity, same direction) already |
//! | `plugin.coro.federation.request_rate` | `1000` with hardening, else `0` | request messages per second this broker takes for its cluster; over it they are dropped and counted; `0` is no limit |
//! | `plugin.coro.federation.request_burst` | the rate | requests taken at once above the rate |
//! | `plugin.coro.federation.reply_rate` | `0` | reply messages per second; off by default: replies only answer requests, which are limited already, and a dropped reply is a lost answer |
//! | `plugin.coro.federation.reply_burst` | the rate | |
//!
//! Every problem is reported with its file, line and key, and what to write instead.

use crate::choria_keys::Keys;
use coro_core::config::adapters::default_identity;
use coro_core::config::checks::{check_server_url, check_subject};
use coro_core::config::choria::server_list;
use coro_core::config::{did_you_mean, ChoriaConfig, ConfigErrors};
use std::path::PathBuf;
use std::time::Duration;

/// `plugin.choria.federation.cluster` when unset, as Go.
pub const DEFAULT_CLUSTER: &str = "mcollective";
/// Workers per stage and direction, as Go's fixed pool.
pub const DEFAULT_WORKERS: usize = 10;
/// NATS connections per stage and side (Go: one per worker, 40 in all).
pub const DEFAULT_CONNECTIONS: usize = 1;
/// The collective side when `plugin.choria.middleware_hosts` is unset (as the adapters).
pub const DEFAULT_COLLECTIVE_SERVER: &str = "nats://localhost:4222";
/// Node targets Go and Ruby clients put in one federated request.
pub const CLIENT_TARGETS_PER_MESSAGE: usize = 200;
/// Request messages per second with hardening on.
pub const DEFAULT_REQUEST_RATE: u32 = 1000;

const CORO: &str = "plugin.coro.federation.";

/// The `plugin.coro.federation.*` settings (after the prefix).
const CORO_KEYS: [&str; 11] = [
    "workers",
    "connections",
    "hardening",
    "check_subjects",
    "allowed_reply_subjects",
    "max_targets",
    "loop_guard",
    "request_rate",
    "request_burst",
    "reply_rate",
    "reply_burst",
];

/// The `plugin.choria.federation.*` settings (after the prefix) Go knows.
const CHORIA_KEYS: [&str; 3] = ["cluster", "collectives", "instance"];

/// The federation broker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationConfig {
    /// The Choria config file these settings were read from.
    pub config_file: PathBuf,
    /// `identity`: the `identity` metric label and the name in the recorded hops.
    pub identity: String,
    /// The cluster served (`plugin.choria.federation.cluster`).
    pub cluster: String,
    /// Federation side servers, as URLs.
    pub federation_servers: Vec<String>,
    /// Collective side servers, as URLs.
    pub collective_servers: Vec<String>,
    /// TLS for every connection, when `plugin.security.provider = file`.
    pub tls: Option<ClientTls>,
    /// Workers per stage and direction.
    pub workers: usize,
    /// NATS connections per stage and side, shared by that stage's workers (at most
    /// one per worker); also the tasks per direction that run the workers.
    pub connections: usize,
    /// The checks Go does not make.
    pub hardening: Hardening,
    /// How long the first connection of each worker may take (not a Choria key).
    pub connect_timeout: Duration,
    /// How long shutdown waits for messages in flight (not a Choria key).
    pub drain_timeout: Duration,
}

/// The broker's client certificate and the CA that verifies the servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// `plugin.security.file.certificate` (PEM).
    pub certificate: PathBuf,
    /// `plugin.security.file.key` (PEM).
    pub key: PathBuf,
    /// `plugin.security.file.ca` (PEM); without it the system roots verify the servers.
    pub ca: Option<PathBuf>,
}

/// The checks Coro makes and Go does not (see the module docs for the keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// Targets must be Choria agent, service or node subjects; reply subjects must be
    /// reply subjects or match [`allowed_reply_subjects`](Self::allowed_reply_subjects).
    pub check_subjects: bool,
    /// NATS subject patterns also accepted as reply subjects.
    pub allowed_reply_subjects: Vec<String>,
    /// Targets one request message may carry; 0 is no limit.
    pub max_targets: usize,
    /// Drop messages that passed this broker in the same direction before.
    pub loop_guard: bool,
    /// Request messages taken per second; `None` is no limit.
    pub request_rate: Option<RateLimit>,
    /// Reply messages taken per second; `None` is no limit.
    pub reply_rate: Option<RateLimit>,
}

/// A token bucket: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages per second.
    pub per_second: u32,
    /// Messages at once.
    pub burst: u32,
}

impl Default for Hardening {
    /// Everything on: Coro's default.
    fn default() -> Self {
        Hardening {
            check_subjects: true,
            allowed_reply_subjects: Vec::new(),
            max_targets: CLIENT_TARGETS_PER_MESSAGE,
            loop_guard: true,
            request_rate: Some(RateLimit {
                per_second: DEFAULT_REQUEST_RATE,
                burst: DEFAULT_REQUEST_RATE,
            }),
            reply_rate: None,
        }
    }
}

impl Hardening {
    /// Everything off: forwards what the Go broker forwards.
    pub fn off() -> Self {
        Hardening {
            check_subjects: false,
            allowed_reply_subjects: Vec::new(),
            max_targets: 0,
            loop_guard: false,
            request_rate: None,
            reply_rate: None,
        }
    }
}

impl FederationConfig {
    /// Settings for `cluster` between two lists of servers, with Coro's defaults
    /// (for tests and benchmarks; a daemon reads [`from_choria`](Self::from_choria)).
    pub fn new(
        cluster: &str,
        federation_servers: Vec<String>,
        collective_servers: Vec<String>,
    ) -> Self {
        FederationConfig {
            config_file: PathBuf::new(),
            identity: default_identity(),
            cluster: cluster.to_string(),
            federation_servers,
            collective_servers,
            tls: None,
            workers: DEFAULT_WORKERS,
            connections: DEFAULT_CONNECTIONS,
            hardening: Hardening::default(),
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// The federation broker's settings in `config`, `None` when
    /// `plugin.choria.broker_federation` is not true. Every problem is reported, each
    /// naming the file, line and key, and what to write instead.
    pub fn from_choria(config: &ChoriaConfig) -> Result<Option<FederationConfig>, ConfigErrors> {
        let mut r = Keys::new(config);
        if !r.bool("plugin.choria.broker_federation", false) {
            return r.errors.into_result(None);
        }
        r.check_federation_keys();
        let identity = config
            .get("identity")
            .map_or_else(default_identity, str::to_string);
        let cluster = r.cluster_name();
        let federation_servers = r.servers("plugin.choria.federation_middleware_hosts", None);
        let collective_servers = r.servers(
            "plugin.choria.middleware_hosts",
            Some(DEFAULT_COLLECTIVE_SERVER),
        );
        let tls = r.client_tls();
        let workers = r.number(&coro("workers"), DEFAULT_WORKERS as u64, 1, 1000) as usize;
        let connections =
            r.number(&coro("connections"), DEFAULT_CONNECTIONS as u64, 1, 1000) as usize;

        let on = r.bool(&coro("hardening"), true);
        let check_subjects = r.bool(&coro("check_subjects"), on);
        let allowed_reply_subjects = r.patterns(&coro("allowed_reply_subjects"));
        let max_targets = r.number(
            &coro("max_targets"),
            if on {
                CLIENT_TARGETS_PER_MESSAGE as u64
            } else {
                0
            },
            0,
            1_000_000,
        ) as usize;
        let loop_guard = r.bool(&coro("loop_guard"), on);
        let request_rate = r.rate(
            "request",
            if on {
                u64::from(DEFAULT_REQUEST_RATE)
            } else {
                0
            },
        );
        let reply_rate = r.rate("reply", 0);

        let cfg = FederationConfig {
            config_file: config.file().to_path_buf(),
            identity,
            cluster,
            federation_servers,
            collective_servers,
            tls,
            workers,
            connections: connections.min(workers),
            hardening: Hardening {
                check_subjects,
                allowed_reply_subjects,
                max_targets,
                loop_guard,
                request_rate,
                reply_rate,
            },
            ..FederationConfig::new("", Vec::new(), Vec::new())
        };
        r.errors.into_result(Some(cfg))
    }

    /// `choria.federation.<cluster>.federation`: where federated clients publish.
    pub fn federation_subject(&self) -> String {
        format!("choria.federation.{}.federation", self.cluster)
    }

    /// `choria.federation.<cluster>.collective`: where the member collective's servers
    /// reply.
    pub fn collective_subject(&self) -> String {
        coro_core::protocol::federation::collective_subject(&self.cluster)
    }
}

fn coro(setting: &str) -> String {
    format!("{CORO}{setting}")
}

/// The federation broker's keys.
impl Keys<'_> {
    /// A whole number from `min` to `max`.
    fn number(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(e) = self.config.entry(key) else {
            return default;
        };
        match e.value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                let mut hint =
                    format!("write a whole number from {min} to {max}, e.g. {key} = {default}");
                if e.value.contains('#') {
                    hint = format!("Choria config has no comments after a value; {hint}");
                }
                self.error(
                    e,
                    key,
                    format!("`{}` is not a whole number from {min} to {max}", e.value),
                    hint,
                );
                default
            }
        }
    }

    /// `<what>_rate` and `<what>_burst`: `None` when the rate is 0.
    fn rate(&mut self, what: &str, default: u64) -> Option<RateLimit> {
        let max = 10_000_000;
        let per_second = self.number(&coro(&format!("{what}_rate")), default, 0, max);
        let burst = self.number(&coro(&format!("{what}_burst")), per_second, 1, max);
        let per_second = u32::try_from(per_second).ok().filter(|r| *r > 0)?;
        Some(RateLimit {
            per_second,
            burst: u32::try_from(burst).unwrap_or(per_second).max(1),
        })
    }

    fn cluster_name(&mut self) -> String {
        let key = "plugin.choria.federation.cluster";
        let Some(e) = self.config.entry(key) else {
            return DEFAULT_CLUSTER.to_string();
        };
        let token = !e.value.is_empty()
            && !e
                .value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>'));
        if !token {
            self.error(
                e,
                key,
                format!(
                    "`{}` cannot be part of the subjects choria.federation.<cluster>.*",
                    e.value
                ),
                format!("write one word without dots, spaces or wildcards, e.g. {key} = london"),
            );
            return DEFAULT_CLUSTER.to_string();
        }
        e.value.clone()
    }

    /// A comma list of servers as URLs; `default` when unset, else an error.
    fn servers(&mut self, key: &str, default: Option<&str>) -> Vec<String> {
        let Some(e) = self.config.entry(key) else {
            if let Some(d) = default {
                return vec![d.to_string()];
            }
            // Point at the switch that asked for the broker.
            if let Some(e) = self.config.entry("plugin.choria.broker_federation") {
                self.error(
                    e,
                    key,
                    "missing: the federation broker needs its federation side; Coro does not \
                     look it up in SRV records (_mcollective-federation_server._tcp)"
                        .into(),
                    format!("write e.g. {key} = nats://fed1.example.net:4222, nats://fed2.example.net:4222"),
                );
            }
            return Vec::new();
        };
        let urls = server_list(&e.value);
        if urls.is_empty() {
            self.error(
                e,
                key,
                "lists no servers".into(),
                format!("write e.g. {key} = nats://broker1.example.net:4222"),
            );
        }
        let mut good = Vec::new();
        for url in urls {
            match check_server_url(&url) {
                Ok(()) => good.push(url),
                Err(why) => self.error(
                    e,
                    key,
                    why,
                    format!("write e.g. {key} = nats://broker1.example.net:4222"),
                ),
            }
        }
        good
    }

    /// A comma list of NATS subject patterns.
    fn patterns(&mut self, key: &str) -> Vec<String> {
        let Some(e) = self.config.entry(key) else {
            return Vec::new();
        };
        let mut good = Vec::new();
        for p in e.value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match check_subject(p, true) {
                Ok(()) => good.push(p.to_string()),
                Err(why) => self.error(
                    e,
                    key,
                    why,
                    format!(
                        "write NATS subject patterns, e.g. {key} = choria.replies.>, *.async.>"
                    ),
                ),
            }
        }
        good
    }

    fn client_tls(&mut self) -> Option<ClientTls> {
        let files = self.provider_files("federation broker")?;
        Some(ClientTls {
            certificate: files.certificate,
            key: files.key,
            ca: files.ca,
        })
    }

    /// Unknown federation keys are errors with a suggestion; the client's cluster list
    /// does not belong in a broker's config.
    fn check_federation_keys(&mut self) {
        let config = self.config;
        for (key, e) in config.entries() {
            if let Some(setting) = key.strip_prefix(CORO) {
                if !CORO_KEYS.contains(&setting) {
                    let hint = match did_you_mean(setting, CORO_KEYS) {
                        Some(s) => format!("did you mean `{CORO}{s}`?"),
                        None => format!(
                            "Coro's federation broker reads {CORO}{{{}}}",
                            CORO_KEYS.join(",")
                        ),
                    };
                    self.error(e, key, "unknown federation broker key".into(), hint);
                }
            } else if let Some(setting) = key.strip_prefix("plugin.choria.federation.") {
                if setting == "collectives" {
                    self.error(
                        e,
                        key,
                        "is a client setting: in a federation broker's config it makes Go \
                         connect the collective side to the federation middleware"
                            .into(),
                        "remove it from the broker's config",
                    );
                } else if !CHORIA_KEYS.contains(&setting) {
                    let hint = match did_you_mean(setting, CHORIA_KEYS) {
                        Some(s) => format!("did you mean `plugin.choria.federation.{s}`?"),
                        None => "the federation keys are plugin.choria.federation.cluster and \
                                 plugin.choria.federation_middleware_hosts"
                            .to_string(),
                    };
                    self.error(e, key, "unknown federation key".into(), hint);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Option<FederationConfig>, ConfigErrors> {
        FederationConfig::from_choria(&ChoriaConfig::parse("broker.conf", text))
    }

    fn errors(text: &str) -> Vec<String> {
        match read(text) {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    const ON: &str = "plugin.choria.broker_federation = true\n\
                      plugin.choria.federation_middleware_hosts = fed1:4222, nats://fed2:4222\n";

    #[test]
    fn off_unless_broker_federation_is_true() {
        assert_eq!(read("identity = a\n").unwrap(), None);
        assert_eq!(
            read("plugin.choria.broker_federation = no\n").unwrap(),
            None
        );
        // Federation keys do not matter when the broker is off.
        assert_eq!(read("plugin.coro.federation.wrkers = 1\n").unwrap(), None);
        let e = errors("plugin.choria.broker_federation = maybe\n");
        assert!(e[0].starts_with(
            "broker.conf:1:1: plugin.choria.broker_federation: `maybe` is not a boolean"
        ));
    }

    #[test]
    fn defaults_like_go_with_hardening() {
        let c = read(&format!("{ON}identity = fb1\n")).unwrap().unwrap();
        assert_eq!(c.identity, "fb1");
        assert_eq!(c.cluster, "mcollective");
        assert_eq!(
            c.federation_servers,
            ["nats://fed1:4222", "nats://fed2:4222"]
        );
        assert_eq!(c.collective_servers, ["nats://localhost:4222"]);
        assert_eq!(c.workers, 10);
        assert_eq!(c.connections, 1);
        assert_eq!(c.tls, None);
        assert_eq!(c.hardening, Hardening::default());
        assert_eq!(
            c.federation_subject(),
            "choria.federation.mcollective.federation"
        );
        assert_eq!(
            c.collective_subject(),
            "choria.federation.mcollective.collective"
        );
        assert_eq!(
            c.hardening.request_rate,
            Some(RateLimit {
                per_second: 1000,
                burst: 1000
            })
        );
    }

    #[test]
    fn every_key_is_read() {
        let c = read(&format!(
            "{ON}plugin.choria.federation.cluster = london\n\
             plugin.choria.middleware_hosts = c1:4222,c2:4222\n\
             plugin.choria.federation.instance = x\n\
             plugin.coro.federation.workers = 3\n\
             plugin.coro.federation.connections = 5\n\
             plugin.coro.federation.allowed_reply_subjects = choria.replies.>, *.async.*\n\
             plugin.coro.federation.max_targets = 500\n\
             plugin.coro.federation.request_rate = 50\n\
             plugin.coro.federation.reply_rate = 10\n\
             plugin.coro.federation.reply_burst = 100\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(c.cluster, "london");
        assert_eq!(c.collective_servers, ["nats://c1:4222", "nats://c2:4222"]);
        assert_eq!(c.workers, 3);
        // Never more connections than workers.
        assert_eq!(c.connections, 3);
        assert_eq!(
            c.hardening.allowed_reply_subjects,
            ["choria.replies.>", "*.async.*"]
        );
        assert_eq!(c.hardening.max_targets, 500);
        assert_eq!(
            c.hardening.request_rate,
            Some(RateLimit {
                per_second: 50,
                burst: 50
            })
        );
        assert_eq!(
            c.hardening.reply_rate,
            Some(RateLimit {
                per_second: 10,
                burst: 100
            })
        );
    }

    #[test]
    fn hardening_off_is_go() {
        let c = read(&format!("{ON}plugin.coro.federation.hardening = false\n"))
            .unwrap()
            .unwrap();
        assert_eq!(c.hardening, Hardening::off());
        // One check back on.
        let c = read(&format!(
            "{ON}plugin.coro.federation.hardening = false\nplugin.coro.federation.loop_guard = yes\n"
        ))
        .unwrap()
        .unwrap();
        assert!(c.hardening.loop_guard);
        assert!(!c.hardening.check_subjects);
    }

    #[test]
    fn problems_name_the_line() {
        let e = errors(
            "plugin.choria.broker_federation = true\n\
             plugin.choria.federation.cluster = lon.don\n\
             plugin.choria.federation.collectives = a,b\n\
             plugin.coro.federation.wrkers = 3\n\
             plugin.coro.federation.workers = 0\n\
             plugin.coro.federation.allowed_reply_subjects = a..b\n\
             plugin.choria.federation.clutser = x\n\
             plugin.choria.middleware_hosts = http://x:1\n",
        );
        assert_eq!(e.len(), 8, "{e:#?}");
        assert!(e[0].contains(":1:1: plugin.choria.federation_middleware_hosts: missing"));
        assert!(e[1].contains(":2:1: plugin.choria.federation.cluster: `lon.don`"));
        assert!(e[2].contains(":3:1: plugin.choria.federation.collectives: is a client setting"));
        assert!(e[3].contains(
            ":4:1: plugin.coro.federation.wrkers: unknown federation broker key; did you mean `plugin.coro.federation.workers`?"
        ));
        assert!(e[4].contains(
            ":5:1: plugin.coro.federation.workers: `0` is not a whole number from 1 to 1000"
        ));
        assert!(e[5].contains(":6:1: plugin.coro.federation.allowed_reply_subjects:"));
        assert!(e[6].contains(":7:1: plugin.choria.federation.clutser: unknown federation key; did you mean `plugin.choria.federation.cluster`?"));
        assert!(
            e[7].contains(":8:1: plugin.choria.middleware_hosts: `http://x:1` is not a NATS URL")
        );
    }

    #[test]
    fn tls_from_the_file_provider() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let d = dir.path().display();
        let c = read(&format!(
            "{ON}plugin.security.provider = file\n\
             plugin.security.file.certificate = {d}/cert.pem\n\
             plugin.security.file.key = {d}/key.pem\n\
             plugin.security.file.ca = {d}/ca.pem\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            c.tls,
            Some(ClientTls {
                certificate: dir.path().join("cert.pem"),
                key: dir.path().join("key.pem"),
                ca: Some(dir.path().join("ca.pem")),
            })
        );
        let e = errors(&format!("{ON}plugin.security.provider = puppet\n"));
        assert!(e[0]
            .contains("plugin.security.provider: the `puppet` security provider is not supported"));
        let e = errors(&format!("{ON}plugin.security.provider = file\n"));
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].contains("plugin.security.file.certificate: missing"));
    }
}
