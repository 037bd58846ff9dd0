//! Runs nats-server as a child process and keeps it running.
//!
//! The config is written to a private temp dir (mode 0700, the file 0600: it may hold
//! the peer password). The child runs in its own process group, so a Ctrl-C in the
//! terminal reaches Coro, which then stops it in order, rather than both at once. Its
//! log lines go to `tracing` (target `coro::nats`) at their own level, and the last
//! ones are kept for error messages.

use super::config::NetworkConfig;
use super::monitor::{http_client, ChoriaInfo, MonitorProxy};
use super::render::render;
use super::stats::{self, NetworkMetrics};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Log lines kept for error messages.
const LOG_TAIL: usize = 40;
/// After this much uptime a death is not part of a crash loop: the backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// The command that installs nats-server, named in errors.
const INSTALL_HINT: &str =
    "install it with scripts/install-nats.sh (or `make setup`), or set CORO_NATS_SERVER to its path";

/// Why the network broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No nats-server binary was found.
    #[error("nats-server not found (looked at {searched}); {INSTALL_HINT}")]
    NatsServerNotFound {
        /// Where it was looked for.
        searched: String,
    },
    /// A port the broker needs is taken by another process.
    #[error("{what} port {port} on {address} is in use: {hint}")]
    PortInUse {
        /// Which port: `client`, `peer`, `pprof` or `monitoring`.
        what: &'static str,
        /// The listen address.
        address: String,
        /// The port.
        port: u16,
        /// What to do.
        hint: String,
    },
    /// A listen address cannot be used on this host.
    #[error("cannot listen on {address} port {port} ({what}): {source}")]
    Listen {
        /// Which port.
        what: &'static str,
        /// The listen address.
        address: String,
        /// The port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// Preparing the child's files failed.
    #[error("{doing}: {source}")]
    Setup {
        /// What was being done.
        doing: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The binary could not be run.
    #[error("cannot run {}: {source}; {INSTALL_HINT}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// nats-server exited while starting.
    #[error("nats-server exited at start ({status}); its last log lines:\n{log}")]
    ExitedAtStart {
        /// How it exited.
        status: String,
        /// Its last log lines.
        log: String,
    },
    /// nats-server did not become ready in time.
    #[error("nats-server was not ready after {timeout:?} (client port {client}, health check {health}); its last log lines:\n{log}")]
    NotReady {
        /// How long it was given.
        timeout: Duration,
        /// The client address tried.
        client: String,
        /// The health check's last answer.
        health: String,
        /// Its last log lines.
        log: String,
    },
    /// The metrics could not be registered (a name is taken on the registry).
    #[error("registering the network broker's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Finds the nats-server binary: `$CORO_NATS_SERVER`, then `nats-server` on `PATH`,
/// then `~/.cache/coro-tools/nats-venv/bin/nats-server` (where
/// `scripts/install-nats.sh` puts it; `$CORO_TOOLS` replaces `~/.cache/coro-tools`).
pub fn find_nats_server() -> Result<PathBuf, NetworkError> {
    if let Some(p) = std::env::var_os("CORO_NATS_SERVER") {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        return Err(NetworkError::NatsServerNotFound {
            searched: format!(
                "CORO_NATS_SERVER={}, which is not an executable file",
                p.display()
            ),
        });
    }
    let mut searched = vec!["CORO_NATS_SERVER (unset)".to_string()];
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    searched.push("nats-server on PATH".into());
    let tools = std::env::var_os("CORO_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/coro-tools")));
    if let Some(tools) = tools {
        let candidate = tools.join("nats-venv/bin/nats-server");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        searched.push(candidate.display().to_string());
    }
    Err(NetworkError::NatsServerNotFound {
        searched: searched.join(", "),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running network broker: a supervised nats-server child.
///
/// Dropping it stops the child too (in the background); [`shutdown`](Self::shutdown)
/// stops it and waits.
#[derive(Debug)]
pub struct NetworkBroker {
    identity: String,
    config_file: PathBuf,
    client_url: String,
    monitor_url: String,
    pid: Arc<AtomicU32>,
    metrics: NetworkMetrics,
    registry: prometheus::Registry,
    log: LogTail,
    stop: watch::Sender<bool>,
    supervisor: Option<JoinHandle<()>>,
    stats: Option<JoinHandle<()>>,
}

impl NetworkBroker {
    /// Starts nats-server (the binary at `nats_server`, see [`find_nats_server`]) with
    /// `cfg`, waits until it accepts clients and its health check passes, and keeps it
    /// running: when it dies it is started again, waiting
    /// [`restart_backoff`](NetworkConfig::restart_backoff) (doubling up to
    /// [`restart_backoff_max`](NetworkConfig::restart_backoff_max)), and
    /// `coro_network_restarts_total` counts it. Its metrics are registered on
    /// `registry` and refreshed every [`stats_interval`](NetworkConfig::stats_interval).
    ///
    /// Fails, with nats-server's last log lines where it got that far, when a port is
    /// taken (checked before starting and read from its log), when nats-server exits
    /// or is not ready within [`start_timeout`](NetworkConfig::start_timeout).
    ///
    /// Must be called within a Tokio runtime.
    pub async fn start(
        cfg: NetworkConfig,
        nats_server: &Path,
        registry: &prometheus::Registry,
    ) -> Result<NetworkBroker, NetworkError> {
        check_ports(&cfg)?;
        if cfg.tls.is_none() {
            tracing::warn!(
                identity = %cfg.identity,
                "the network broker's clients connect without TLS: set plugin.security.provider = file \
                 and plugin.security.file.certificate, .key and .ca to require it"
            );
        }
        if cfg.stream_store.is_some() {
            tracing::info!(
                "JetStream is on; Coro does not create Choria's managed streams (CHORIA_EVENTS, ...)"
            );
        }
        let monitor = free_loopback_port().map_err(|source| NetworkError::Setup {
            doing: "choosing a port for nats-server's internal monitoring".into(),
            source,
        })?;
        let dir = tempfile::Builder::new()
            .prefix("coro-nats-")
            .tempdir()
            .map_err(|source| NetworkError::Setup {
                doing: "creating a private temp dir for the nats-server config".into(),
                source,
            })?;
        let conf = dir.path().join("nats-server.conf");
        write_private(&conf, &render(&cfg, monitor)).map_err(|source| NetworkError::Setup {
            doing: format!("writing {}", conf.display()),
            source,
        })?;

        let metrics =
            NetworkMetrics::register(registry, &cfg.identity, cfg.stream_store.is_some())?;
        let monitor_url = format!("http://{monitor}");
        let client_host = connect_host(&cfg.listen_address);
        let client_url = format!("nats://{client_host}:{}", cfg.client_port);
        let log = LogTail::default();
        let child = match spawn(nats_server, &conf, &cfg.identity, &log) {
            Ok(c) => c,
            Err(e) => {
                metrics.unregister(registry);
                return Err(e);
            }
        };
        let child = match wait_ready(child, &cfg, &client_host, &monitor_url, monitor, &log).await {
            Ok(c) => c,
            Err(e) => {
                metrics.unregister(registry);
                return Err(e);
            }
        };
        tracing::info!(
            identity = %cfg.identity,
            listen = %cfg.listen_address,
            port = cfg.client_port,
            pid = child.pid,
            config = %conf.display(),
            "network broker ready"
        );

        let pid = Arc::new(AtomicU32::new(child.pid));
        let (stop, stopped) = watch::channel(false);
        let supervision = Supervision {
            nats_server: nats_server.to_path_buf(),
            conf: conf.clone(),
            _dir: dir,
            identity: cfg.identity.clone(),
            backoff: cfg.restart_backoff,
            backoff_max: cfg.restart_backoff_max.max(cfg.restart_backoff),
            shutdown_timeout: cfg.shutdown_timeout,
            pid: pid.clone(),
            metrics: metrics.clone(),
            log: log.clone(),
        };
        let supervisor = tokio::spawn(supervision.run(child, stopped));
        let stats = tokio::spawn(stats::run(
            http_client(Duration::from_secs(5)),
            monitor_url.clone(),
            metrics.clone(),
            cfg.stats_interval,
        ));
        Ok(NetworkBroker {
            identity: cfg.identity,
            config_file: cfg.config_file,
            client_url,
            monitor_url,
            pid,
            metrics,
            registry: registry.clone(),
            log,
            stop,
            supervisor: Some(supervisor),
            stats: Some(stats),
        })
    }

    /// A URL for NATS clients in this process: the client port on loopback when the
    /// broker listens on every address (`::`, `0.0.0.0`), else on the listen address.
    /// With TLS, clients need the CA, a client certificate when the broker has a CA,
    /// and a server certificate valid for this host name or address.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// nats-server's internal monitoring endpoint, `http://127.0.0.1:<port>`.
    pub fn monitor_url(&self) -> &str {
        &self.monitor_url
    }

    /// The running nats-server's PID; `None` while it is being restarted.
    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// The broker's identity (nats-server's `server_name`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The broker's metrics, registered on the registry given to [`start`](Self::start).
    pub fn metrics(&self) -> &NetworkMetrics {
        &self.metrics
    }

    /// nats-server's last log lines, oldest first.
    pub fn last_log_lines(&self) -> Vec<String> {
        self.log.lines()
    }

    /// A proxy to nats-server's monitoring endpoint, for the HTTP server's NATS paths.
    pub fn monitor_proxy(&self) -> MonitorProxy {
        MonitorProxy::new(self.monitor_url.clone())
    }

    /// `/choria/`'s information for this broker: its identity and config file, with
    /// nats-server's memory and CPU counted in.
    pub fn choria_info(&self) -> ChoriaInfo {
        ChoriaInfo {
            nats_pid: Some(self.pid.clone()),
            ..ChoriaInfo::new(self.identity.clone(), self.config_file.clone())
        }
    }

    /// Stops nats-server: SIGTERM, then SIGKILL if it has not exited within
    /// [`shutdown_timeout`](NetworkConfig::shutdown_timeout); waits until it is gone and
    /// removes its metrics from the registry.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.supervisor.take() {
            let _ = task.await;
        }
    }
}

impl Drop for NetworkBroker {
    fn drop(&mut self) {
        // The supervisor stops the child when it sees this (or the sender dropped).
        let _ = self.stop.send(true);
        if let Some(stats) = self.stats.take() {
            stats.abort();
        }
        self.metrics.unregister(&self.registry);
    }
}

/// One run of the child.
struct Running {
    child: Child,
    pid: u32,
    started: Instant,
    logs: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits (briefly) until its log lines are all read, so errors quote the last ones.
    async fn drain_logs(&mut self) {
        for task in self.logs.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

/// What the supervising task needs.
struct Supervision {
    nats_server: PathBuf,
    conf: PathBuf,
    /// Removed when supervision ends.
    _dir: tempfile::TempDir,
    identity: String,
    backoff: Duration,
    backoff_max: Duration,
    shutdown_timeout: Duration,
    pid: Arc<AtomicU32>,
    metrics: NetworkMetrics,
    log: LogTail,
}

impl Supervision {
    async fn run(self, first: Running, mut stop: watch::Receiver<bool>) {
        let mut running = Some(first);
        let mut backoff = self.backoff;
        loop {
            if let Some(r) = running.as_mut() {
                tokio::select! {
                    status = r.child.wait() => {
                        r.drain_logs().await;
                        self.pid.store(0, Ordering::SeqCst);
                        if r.started.elapsed() >= STABLE_AFTER {
                            backoff = self.backoff;
                        }
                        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                        tracing::error!(
                            identity = %self.identity,
                            %status,
                            "nats-server exited (its log is above); starting it again in {backoff:?}"
                        );
                    }
                    // A dropped sender means the broker was dropped: stop too.
                    _ = stop_requested(&mut stop) => {
                        terminate(r, self.shutdown_timeout).await;
                        self.pid.store(0, Ordering::SeqCst);
                        return;
                    }
                }
                running = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop_requested(&mut stop) => return,
            }
            backoff = (backoff * 2).min(self.backoff_max);
            match spawn(&self.nats_server, &self.conf, &self.identity, &self.log) {
                Ok(r) => {
                    // Counted before the PID shows, so whoever sees the new PID sees the count.
                    self.metrics.restarted();
                    self.pid.store(r.pid, Ordering::SeqCst);
                    tracing::warn!(identity = %self.identity, pid = r.pid, "nats-server restarted");
                    running = Some(r);
                }
                Err(e) => {
                    tracing::error!(identity = %self.identity, error = %e, "starting nats-server again");
                }
            }
        }
    }
}

/// Returns when the broker asks to stop, or was dropped.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// SIGTERM, then SIGKILL after `timeout`.
async fn terminate(r: &mut Running, timeout: Duration) {
    let pid = rustix::process::Pid::from_raw(r.pid as i32);
    if let Some(pid) = pid {
        if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
            tracing::debug!(error = %e, "SIGTERM to nats-server");
        }
    }
    match tokio::time::timeout(timeout, r.child.wait()).await {
        Ok(_) => tracing::info!(pid = r.pid, "nats-server stopped"),
        Err(_) => {
            tracing::warn!(
                pid = r.pid,
                ?timeout,
                "nats-server did not stop after SIGTERM; sending SIGKILL"
            );
            let _ = r.child.kill().await;
        }
    }
    r.drain_logs().await;
}

/// Starts the child with its output forwarded to `log`.
fn spawn(
    nats_server: &Path,
    conf: &Path,
    identity: &str,
    log: &LogTail,
) -> Result<Running, NetworkError> {
    let mut child = Command::new(nats_server)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NetworkError::Spawn {
            path: nats_server.to_path_buf(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    let mut logs = Vec::new();
    if let Some(out) = child.stdout.take() {
        logs.push(tokio::spawn(forward_log(
            out,
            identity.to_string(),
            log.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        logs.push(tokio::spawn(forward_log(
            err,
            identity.to_string(),
            log.clone(),
        )));
    }
    Ok(Running {
        child,
        pid,
        started: Instant::now(),
        logs,
    })
}

/// Polls until the client port accepts connections and nats-server's health check
/// passes. The check skips JetStream's cluster state (`js-server-only`): a clustered
/// JetStream waits for its peers, which may start later.
async fn wait_ready(
    mut r: Running,
    cfg: &NetworkConfig,
    client_host: &str,
    monitor_url: &str,
    monitor: SocketAddr,
    log: &LogTail,
) -> Result<Running, NetworkError> {
    let client = http_client(Duration::from_secs(2));
    let health_url = format!("{monitor_url}/healthz?js-server-only=true");
    let deadline = Instant::now() + cfg.start_timeout;
    let client_addr = format!("{client_host}:{}", cfg.client_port);
    let bare_host = client_host.trim_start_matches('[').trim_end_matches(']');
    let mut health = "not tried".to_string();
    loop {
        if let Ok(Some(status)) = r.child.try_wait() {
            r.drain_logs().await;
            if let Some(e) = port_in_use(&log.lines(), cfg, monitor) {
                return Err(e);
            }
            return Err(NetworkError::ExitedAtStart {
                status: status.to_string(),
                log: log.text(),
            });
        }
        let accepting = tokio::net::TcpStream::connect((bare_host, cfg.client_port))
            .await
            .is_ok();
        if accepting {
            match client.get(&health_url).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(r),
                Ok(resp) => {
                    health = format!(
                        "{} {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    )
                }
                Err(e) => health = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            terminate(&mut r, Duration::from_secs(2)).await;
            return Err(NetworkError::NotReady {
                timeout: cfg.start_timeout,
                client: client_addr,
                health,
                log: log.text(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The host clients in this process connect to: loopback for a wildcard listener.
fn connect_host(listen: &str) -> String {
    match listen.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ if listen.is_empty() => Ipv4Addr::LOCALHOST.to_string(),
        _ => listen.to_string(),
    }
}

/// Every port nats-server will listen on must be free: finding out here gives a clear
/// error rather than a child that dies at start.
fn check_ports(cfg: &NetworkConfig) -> Result<(), NetworkError> {
    let mut ports = vec![(
        "client",
        cfg.client_port,
        "plugin.choria.network.client_port".to_string(),
    )];
    if let Some(cluster) = &cfg.cluster {
        ports.push((
            "peer",
            cluster.port,
            "plugin.choria.network.peer_port".into(),
        ));
    }
    if let Some(port) = cfg.pprof_port {
        ports.push(("pprof", port, "plugin.choria.network.pprof_port".into()));
    }
    for (what, port, key) in ports {
        let address = cfg.listen_address.clone();
        let listen = |source| NetworkError::Listen {
            what,
            address: address.clone(),
            port,
            source,
        };
        let addrs: Vec<SocketAddr> = match cfg.listen_address.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => (cfg.listen_address.as_str(), port)
                .to_socket_addrs()
                .map_err(listen)?
                .collect(),
        };
        for addr in addrs {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(NetworkError::PortInUse {
                        what,
                        address: cfg.listen_address.clone(),
                        port,
                        hint: format!(
                            "another process listens there; stop it, or set {key} to a free port"
                        ),
                    })
                }
                Err(e) => return Err(listen(e)),
            }
        }
    }
    Ok(())
}

/// A port-in-use error from nats-server's log (`listen tcp 127.0.0.1:4222: bind: address
/// already in use`), for the ports taken between the check and the start.
fn port_in_use(lines: &[String], cfg: &NetworkConfig, monitor: SocketAddr) -> Option<NetworkError> {
    let line = lines
        .iter()
        .find(|l| l.contains("address already in use"))?;
    let (_, rest) = line.split_once("listen tcp ")?;
    let addr = rest.split(": ").next()?;
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let (what, hint) = if port == monitor.port() {
        (
            "monitoring",
            "it is chosen at start: start again".to_string(),
        )
    } else if cfg.cluster.as_ref().is_some_and(|c| c.port == port) {
        (
            "peer",
            "set plugin.choria.network.peer_port to a free port".to_string(),
        )
    } else if cfg.pprof_port == Some(port) {
        (
            "pprof",
            "set plugin.choria.network.pprof_port to a free port".to_string(),
        )
    } else {
        (
            "client",
            "set plugin.choria.network.client_port to a free port".to_string(),
        )
    };
    Some(NetworkError::PortInUse {
        what,
        address: host,
        port,
        hint: format!("another process listens there; {hint}"),
    })
}

fn free_loopback_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// The last lines nats-server logged.
#[derive(Debug, Clone, Default)]
struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == LOG_TAIL {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for l in self.lines() {
            let _ = writeln!(out, "  {l}");
        }
        out
    }
}

/// Forwards each line to `tracing` at nats-server's level (`[INF]`, `[WRN]`, ...).
async fn forward_log(out: impl AsyncRead + Unpin, identity: String, tail: LogTail) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let (level, message) = split_log_line(&line);
        match level {
            "ERR" | "FTL" => tracing::error!(target: "coro::nats", %identity, "{message}"),
            "WRN" => tracing::warn!(target: "coro::nats", %identity, "{message}"),
            "DBG" => tracing::debug!(target: "coro::nats", %identity, "{message}"),
            "TRC" => tracing::trace!(target: "coro::nats", %identity, "{message}"),
            _ => tracing::info!(target: "coro::nats", %identity, "{message}"),
        }
        tail.push(line);
    }
}

/// `[1234] [INF] message` into `("INF", "message")`; other lines are `("", line)`.
fn split_log_line(line: &str) -> (&str, &str) {
    let rest = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => line,
    };
    match rest.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        Some((level, message)) if level.len() == 3 => (level, message),
        _ => ("", rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coro_core::config::ChoriaConfig;

    fn config(text: &str) -> NetworkConfig {
        NetworkConfig::from_choria(&ChoriaConfig::parse("broker.conf", text))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn network_log_lines_split_by_level() {
        assert_eq!(split_log_line("[42] [WRN] careful"), ("WRN", "careful"));
        assert_eq!(
            split_log_line("[42] [INF]   Version:  2.15.1"),
            ("INF", "  Version:  2.15.1")
        );
        assert_eq!(
            split_log_line("[42] 2026/01/01 00:00:00.000000 [FTL] bad"),
            ("", "2026/01/01 00:00:00.000000 [FTL] bad")
        );
        assert_eq!(split_log_line("plain"), ("", "plain"));
    }

    #[test]
    fn network_port_in_use_from_the_log() {
        let cfg = config(
            "plugin.choria.broker_network = true\nplugin.choria.network.client_port = 14222\n\
             plugin.choria.network.peers = nats://a:15222\nplugin.choria.network.peer_port = 15222\n",
        );
        let monitor: SocketAddr = "127.0.0.1:18222".parse().unwrap();
        let line = |s: &str| vec!["[1] [INF] Starting".to_string(), s.to_string()];
        let e = port_in_use(
            &line(r#"[1] [FTL] Error listening on port: [::]:14222, "listen tcp [::]:14222: bind: address already in use""#),
            &cfg,
            monitor,
        )
        .unwrap();
        assert_eq!(
            e.to_string(),
            "client port 14222 on :: is in use: another process listens there; set \
             plugin.choria.network.client_port to a free port"
        );
        let e = port_in_use(
            &line("[1] [FTL] Error listening on router port: 15222 - listen tcp 0.0.0.0:15222: bind: address already in use"),
            &cfg,
            monitor,
        )
        .unwrap();
        assert!(
            e.to_string()
                .starts_with("peer port 15222 on 0.0.0.0 is in use"),
            "{e}"
        );
        assert!(port_in_use(&line("[1] [INF] Server is ready"), &cfg, monitor).is_none());
    }

    #[test]
    fn network_connect_host_is_loopback_for_wildcards() {
        assert_eq!(connect_host("::"), "127.0.0.1");
        assert_eq!(connect_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(connect_host("::1"), "[::1]");
        assert_eq!(connect_host("10.1.2.3"), "10.1.2.3");
        assert_eq!(connect_host("broker.example.net"), "broker.example.net");
    }

    #[test]
    fn network_missing_binary_names_the_installer() {
        let e = NetworkError::NatsServerNotFound {
            searched: "nats-server on PATH".into(),
        };
        assert_eq!(
            e.to_string(),
            "nats-server not found (looked at nats-server on PATH); install it with \
             scripts/install-nats.sh (or `make setup`), or set CORO_NATS_SERVER to its path"
        );
    }

    #[test]
    fn network_log_tail_keeps_the_last_lines() {
        let t = LogTail::default();
        for i in 0..100 {
            t.push(format!("line {i}"));
        }
        let lines = t.lines();
        assert_eq!(lines.len(), LOG_TAIL);
        assert_eq!(lines.last().map(String::as_str), Some("line 99"));
    }
}
