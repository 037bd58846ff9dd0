//! Helpers for tests that run the `coro` binary against the real nats-server that
//! `scripts/with-servers.sh` starts once per test run.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test NATS server's URL.
pub fn nats_url() -> String {
    std::env::var("CORO_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!("CORO_TEST_NATS_URL is not set: run the tests with `make test` (scripts/with-servers.sh starts nats-server; scripts/install-nats.sh installs it)")
    })
}

/// A synthetic Choria fixture, trimmed of its trailing newline.
pub fn synthetic(name: &str) -> Vec<u8> {
    let shared = std::env::var_os("CORO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let path = shared.join("choria/fixtures/synthetic").join(name);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}

/// A unique name for streams and subjects of one test.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}{:x}",
        nanos ^ (u128::from(std::process::id()) << 64)
    )
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A running `coro run`, killed by PID when dropped.
pub struct Coro {
    pub child: Child,
    pub http: u16,
    pub log: PathBuf,
}

impl Coro {
    /// Starts `coro run --config <config>` and waits until /readyz says ready.
    pub fn start(config: &Path, http: u16, log: &Path) -> Coro {
        Coro::start_env(config, http, log, &[])
    }

    /// [`Coro::start`] with extra environment variables (a private emulator's host, say).
    pub fn start_env(config: &Path, http: u16, log: &Path, env: &[(&str, &str)]) -> Coro {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_coro"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut coro = Coro {
            child,
            http,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = coro.child.try_wait().unwrap() {
                panic!("coro exited at start ({status}):\n{}", coro.log_text());
            }
            if coro.get("/readyz").is_some_and(|(code, _)| code == 200) {
                return coro;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("coro not ready after 20s:\n{}", coro.log_text());
    }

    /// Waits up to `timeout` until `sink` of `adapter` has answered `n` records
    /// delivered or rejected; whether it did.
    pub async fn settled(&self, adapter: &str, sink: &str, n: usize, timeout: Duration) -> bool {
        let (delivered, rejected) = (
            records(adapter, "delivered", sink),
            records(adapter, "rejected", sink),
        );
        eventually(timeout, || {
            let done =
                self.metric(&delivered).unwrap_or(0.0) + self.metric(&rejected).unwrap_or(0.0);
            Box::pin(async move { done >= n as f64 })
        })
        .await
    }

    /// What [`Coro::settled`] waited for, for its assertion's message: the delivered
    /// and rejected counts of `n`, and the log.
    pub fn settled_report(&self, adapter: &str, sink: &str, n: usize) -> String {
        format!(
            "delivered {:?} + rejected {:?} of {n}:\n{}",
            self.metric(&records(adapter, "delivered", sink)),
            self.metric(&records(adapter, "rejected", sink)),
            self.log_text()
        )
    }

    /// `GET path` on the HTTP port: status code and body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())?;
        Some((code, body))
    }

    /// The value of one metric line (exact name with labels) from /metrics.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    /// The sum of every series of a metric (`name{` prefix) whose labels contain `label`.
    pub fn metric_sum(&self, name: &str, label: &str) -> f64 {
        let Some((_, body)) = self.get("/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    /// SIGTERM, then wait for the exit code.
    pub fn terminate(mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child
            .wait()
            .map(|s| s.code().unwrap_or(-1))
            .unwrap_or(-1)
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What coro logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coro {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(
    timeout: Duration,
    mut f: impl FnMut() -> futures::future::BoxFuture<'static, bool>,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A private nats-server for tests that stop and restart it; killed by PID on drop.
pub struct PrivateNats {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl PrivateNats {
    /// Starts the `CORO_NATS_SERVER` binary on `port` (0 picks one) and waits until ready.
    pub fn start(port: u16, dir: &Path) -> PrivateNats {
        let bin = std::env::var("CORO_NATS_SERVER").unwrap_or_else(|_| {
            panic!("CORO_NATS_SERVER is not set: run the tests with `make test` (scripts/install-nats.sh installs nats-server)")
        });
        let port = if port == 0 { free_port() } else { port };
        let log = dir.join(format!("nats-{port}.log"));
        // Owned by the guard at once, so a failed start still kills it.
        let nats = PrivateNats {
            child: Command::new(bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir.join("js"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Server is ready") {
                return nats;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "private nats-server not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `coro_sink_records_total` series of one adapter's sink and outcome.
pub fn records(adapter: &str, outcome: &str, sink: &str) -> String {
    format!(r#"coro_sink_records_total{{adapter="{adapter}",outcome="{outcome}",sink="{sink}"}}"#)
}

/// Creates the JetStream stream `name` over `subjects`, with the server's defaults.
pub async fn js_stream(
    js: &async_nats::jetstream::Context,
    name: &str,
    subjects: Vec<String>,
) -> async_nats::jetstream::stream::Stream {
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.to_string(),
        subjects,
        ..Default::default()
    })
    .await
    .unwrap()
}
