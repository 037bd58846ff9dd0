//! HTTP for the network broker, served by Coro's own HTTP server on
//! `plugin.choria.stats_port` as the Go broker serves them on one port:
//!
//! * `/choria/`: Go's JSON build and system information (`statistics/stats.go`), with a
//!   `rust` field where Go has `go`.
//! * The NATS monitoring paths ([`NATS_PATHS`]: `/varz`, `/connz`, `/routez`, `/jsz`,
//!   ...), forwarded to nats-server's internal monitoring port, so scrapers of `:8222/varz`
//!   keep working. `/healthz` stays Coro's own; only a `/healthz` with nats-server's
//!   parameters (`?js-enabled-only=true`, [`is_nats_healthz_query`]) goes to nats-server.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// nats-server's monitoring paths that are forwarded. `/healthz` is not among them:
/// Coro serves its own (see [`is_nats_healthz_query`]).
pub const NATS_PATHS: [&str; 15] = [
    "/varz",
    "/connz",
    "/routez",
    "/gatewayz",
    "/leafz",
    "/subsz",
    "/subscriptionsz",
    "/accountz",
    "/accstatz",
    "/jsz",
    "/raftz",
    "/ipqueuesz",
    "/expvarz",
    "/stacksz",
    "/profilez",
];

/// The `/healthz` parameters only nats-server knows.
const NATS_HEALTHZ_PARAMS: [&str; 8] = [
    "js-enabled-only",
    "js-server-only",
    "js-meta-only",
    "js-enabled",
    "account",
    "stream",
    "consumer",
    "details",
];

/// Whether a `/healthz` query string is meant for nats-server (it names one of
/// nats-server's health check parameters), so that probes written for the Go broker,
/// such as `/healthz?js-enabled-only=true`, get nats-server's answer.
pub fn is_nats_healthz_query(query: &str) -> bool {
    query
        .split('&')
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
        .any(|k| NATS_HEALTHZ_PARAMS.contains(&k))
}

/// What `/choria/` reports.
#[derive(Debug, Clone)]
pub struct ChoriaInfo {
    /// `identity`.
    pub identity: String,
    /// `config_file`: the Choria config the daemon runs with.
    pub config_file: PathBuf,
    /// `build.max_broker_clients`.
    pub max_broker_clients: u32,
    /// The running nats-server's PID (0 while none runs), whose memory and CPU are added
    /// to Coro's in `system`, as the Go broker is one process.
    pub nats_pid: Option<Arc<AtomicU32>>,
}

impl ChoriaInfo {
    /// The information for a daemon named `identity` running with `config_file`, and no
    /// network broker.
    pub fn new(identity: impl Into<String>, config_file: impl Into<PathBuf>) -> Self {
        ChoriaInfo {
            identity: identity.into(),
            config_file: config_file.into(),
            max_broker_clients: super::config::MAX_BROKER_CLIENTS,
            nats_pid: None,
        }
    }

    /// The `/choria/` document, in Go's shape.
    pub fn to_json(&self) -> serde_json::Value {
        let mut usage = ProcessUsage::of("self").unwrap_or_default();
        let pid = self
            .nats_pid
            .as_ref()
            .map(|p| p.load(Ordering::SeqCst))
            .unwrap_or(0);
        if pid != 0 {
            if let Some(child) = ProcessUsage::of(&pid.to_string()) {
                usage.rss += child.rss;
                usage.cpu_percent += child.cpu_percent;
            }
        }
        json!({
            "build": {
                "version": super::stats::VERSION,
                "sha": super::stats::git_sha(),
                "build_date": option_env!("CORO_BUILD_DATE").unwrap_or("unknown"),
                "license": env!("CARGO_PKG_LICENSE"),
                "tls": true,
                "secure": true,
                "rust": option_env!("CORO_RUSTC_VERSION")
                    .unwrap_or(concat!("rust ", env!("CARGO_PKG_RUST_VERSION"), "+")),
                "max_broker_clients": self.max_broker_clients,
            },
            "system": {
                "rss": usage.rss,
                "cpu_percent": usage.cpu_percent,
                "cpu_cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            "config_file": self.config_file.display().to_string(),
            "identity": self.identity,
        })
    }
}

impl Default for ChoriaInfo {
    /// The host name as identity and no config file.
    fn default() -> Self {
        ChoriaInfo::new(
            rustix::system::uname().nodename().to_string_lossy(),
            PathBuf::new(),
        )
    }
}

/// Memory and CPU of one process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ProcessUsage {
    /// Resident memory, bytes.
    rss: u64,
    /// CPU time over the process's lifetime, percent of one core (as `ps` and Go's
    /// `pse.ProcUsage`).
    cpu_percent: f64,
}

impl ProcessUsage {
    /// `pid` is a number or `self`.
    fn of(pid: &str) -> Option<ProcessUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Self::parse(
            &stat,
            uptime,
            rustix::param::clock_ticks_per_second() as f64,
            rustix::param::page_size() as u64,
        )
    }

    fn parse(stat: &str, uptime: f64, ticks: f64, page: u64) -> Option<ProcessUsage> {
        // The command name is in parentheses and may hold anything; fields follow the
        // last `)`, starting with field 3 (state).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        let cpu = (field(14)? + field(15)?) / ticks;
        let elapsed = uptime - field(22)? / ticks;
        let rss = field(24)? as u64 * page;
        let cpu_percent = if elapsed > 0.0 {
            cpu / elapsed * 100.0
        } else {
            0.0
        };
        Some(ProcessUsage { rss, cpu_percent })
    }
}

/// Forwards requests to nats-server's monitoring endpoint.
#[derive(Debug, Clone)]
pub struct MonitorProxy {
    base: String,
    client: reqwest::Client,
}

impl MonitorProxy {
    /// A proxy to `base` (`http://127.0.0.1:<port>`).
    pub fn new(base: impl Into<String>) -> Self {
        MonitorProxy {
            base: base.into(),
            client: http_client(Duration::from_secs(10)),
        }
    }

    /// Where requests go.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// nats-server's answer to `GET path?query`: its status, content type and body, or
    /// 502 when it does not answer (it is restarting).
    pub async fn forward(&self, path: &str, query: Option<&str>) -> Response {
        let url = match query {
            Some(q) => format!("{}{path}?{q}", self.base),
            None => format!("{}{path}", self.base),
        };
        let answer = async {
            let r = self.client.get(&url).send().await?;
            let status = r.status();
            let content_type = r.headers().get(header::CONTENT_TYPE).cloned();
            let body = r.bytes().await?;
            Ok::<_, reqwest::Error>((status, content_type, body))
        };
        match answer.await {
            Ok((status, content_type, body)) => {
                let content_type =
                    content_type.unwrap_or(HeaderValue::from_static("application/json"));
                (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
            }
            Err(e) => (
                StatusCode::BAD_GATEWAY,
                format!("nats-server's monitoring endpoint is not answering: {e}\n"),
            )
                .into_response(),
        }
    }
}

/// A client for loopback requests: no proxy from the environment, a short timeout.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// `/choria/`, and the NATS monitoring paths when `nats` is set. Merge it into a router
/// that serves neither (axum refuses overlapping routes).
pub fn routes(info: ChoriaInfo, nats: Option<MonitorProxy>) -> Router {
    let info = Arc::new(info);
    let choria = {
        let info = info.clone();
        move || {
            let info = info.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    info.to_json().to_string(),
                )
            }
        }
    };
    let mut router = Router::new()
        .route("/choria", get(choria.clone()))
        .route("/choria/", get(choria));
    if let Some(proxy) = nats {
        let mut forwarded = Router::new();
        for path in NATS_PATHS {
            forwarded = forwarded.route(path, get(forward));
        }
        router = router.merge(forwarded.with_state(proxy));
    }
    router
}

async fn forward(State(proxy): State<MonitorProxy>, uri: Uri) -> Response {
    proxy.forward(uri.path(), uri.query()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_healthz_queries_for_nats() {
        assert!(is_nats_healthz_query("js-enabled-only=true"));
        assert!(is_nats_healthz_query("x=1&js-server-only"));
        assert!(is_nats_healthz_query("account=A&stream=S"));
        assert!(!is_nats_healthz_query(""));
        assert!(!is_nats_healthz_query("verbose=1"));
    }

    #[test]
    fn network_process_usage_from_proc_stat() {
        // Field 14/15 utime/stime, 22 starttime, 24 rss; a command name with `) (`.
        let stat = "42 (nats) (x) S 1 42 42 0 -1 4194560 100 0 0 0 300 100 0 0 20 0 8 0 1000 \
                    123456 2500 18446744073709551615";
        let u = ProcessUsage::parse(stat, 30.0, 100.0, 4096).unwrap();
        assert_eq!(u.rss, 2500 * 4096);
        // 4 s of CPU over 20 s of life.
        assert!((u.cpu_percent - 20.0).abs() < 1e-9, "{u:?}");
        assert!(ProcessUsage::of("self").is_some_and(|u| u.rss > 0));
    }

    #[test]
    fn network_choria_json_has_gos_shape() {
        let v = ChoriaInfo::new("n1", "/etc/choria/broker.conf").to_json();
        assert_eq!(v["identity"], "n1");
        assert_eq!(v["config_file"], "/etc/choria/broker.conf");
        assert_eq!(v["build"]["max_broker_clients"], 50000);
        assert_eq!(v["build"]["license"], "Apache-2.0");
        for k in ["version", "sha", "build_date", "tls", "secure", "rust"] {
            assert!(!v["build"][k].is_null(), "{k}: {v}");
        }
        assert!(v["system"]["rss"].as_u64().unwrap() > 0);
        assert!(v["system"]["cpu_cores"].as_u64().unwrap() >= 1);
        assert!(v["system"]["cpu_percent"].as_f64().is_some());
    }
}
