//! `coro fleet`: run a simulated Choria fleet until SIGINT or SIGTERM, with a live
//! status line on a terminal and a summary table at the end.

use coro_fleet::{Fleet, FleetConfig, FleetError, FleetStats, Security, StartPhase, StartProgress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// sysexits(3): bad arguments.
const EX_USAGE: u8 = 64;
/// sysexits(3): a service is unavailable.
const EX_UNAVAILABLE: u8 = 69;

/// Security mode of the simulated servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SecurityArg {
    /// Protocol v1, unsigned; requests are not checked.
    Insecure,
    /// Protocol v1 with a CA made at start and a certificate per node; requests must be
    /// signed by a certificate from that CA.
    X509,
    /// Protocol v2 with ed25519 keys and JWTs from an issuer made at start.
    V2,
}

impl From<SecurityArg> for Security {
    fn from(s: SecurityArg) -> Self {
        match s {
            SecurityArg::Insecure => Security::Insecure,
            SecurityArg::X509 => Security::X509,
            SecurityArg::V2 => Security::V2,
        }
    }
}

/// Arguments of `coro fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// How many servers to simulate.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub nodes: usize,
    /// NATS server URL; repeat or separate with commas for several.
    #[arg(
        long = "server",
        short = 's',
        default_value = "nats://127.0.0.1:4222",
        value_delimiter = ','
    )]
    pub servers: Vec<String>,
    /// The collective the servers are in.
    #[arg(long, default_value = "mcollective")]
    pub collective: String,
    /// Protocol and signing.
    #[arg(long, value_enum, default_value_t = SecurityArg::Insecure)]
    pub security: SecurityArg,
    /// How often each server publishes registration, e.g. `300s`, `5m`; `0s` disables
    /// registration.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub registration_interval: Duration,
    /// Register at start instead of after a random delay up to the interval.
    #[arg(long)]
    pub no_splay: bool,
    /// Put the registration JSON in `content` instead of gzipped in `zcontent`.
    #[arg(long)]
    pub no_compression: bool,
    /// NATS connections the servers share; 0 opens one per 250 servers.
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Identities are this prefix and the server's index, e.g. `node-00042`.
    #[arg(long, default_value = "node-")]
    pub identity_prefix: String,
    /// Seed of the generated facts; the same seed gives the same fleet.
    #[arg(long, default_value_t = 1)]
    pub facts_seed: u64,
}

impl FleetArgs {
    fn config(&self) -> FleetConfig {
        FleetConfig {
            nodes: self.nodes,
            servers: self.servers.clone(),
            collective: self.collective.clone(),
            identity_prefix: self.identity_prefix.clone(),
            security: self.security.into(),
            registration_interval: self.registration_interval,
            splay: !self.no_splay,
            registration_compression: !self.no_compression,
            connections: self.connections,
            facts_seed: self.facts_seed,
            ..FleetConfig::default()
        }
    }
}

/// Runs `coro fleet`.
pub fn run(args: &FleetArgs) -> ExitCode {
    let interactive = std::io::stderr().is_terminal();
    // Log lines would tear the status line; on a terminal they are opt-in.
    if !interactive || std::env::var_os("RUST_LOG").is_some() {
        crate::init_logging();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_fleet(args.config(), interactive))
}

async fn run_fleet(cfg: FleetConfig, interactive: bool) -> ExitCode {
    let bar = if interactive {
        ProgressBar::with_draw_target(Some(cfg.nodes as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner:.green} {msg} [{bar:30.cyan/blue}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));

    let progress = Arc::new(StartProgress::default());
    let watcher = {
        let (bar, progress) = (bar.clone(), progress.clone());
        tokio::spawn(async move {
            loop {
                let phase = progress.phase();
                bar.set_message(match phase {
                    StartPhase::Keys => "making keys".to_string(),
                    StartPhase::Connecting => "connecting".to_string(),
                    StartPhase::Nodes | StartPhase::Running => {
                        format!("starting servers ({} made)", progress.nodes_prepared())
                    }
                });
                bar.set_position(progress.nodes_started() as u64);
                if phase == StartPhase::Running {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let security = cfg.security;
    // Watch for signals from the start: a stop while starting drops the half-started
    // fleet (its nodes stop when their stop channel goes) instead of killing the process.
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let started = tokio::select! {
        started = Fleet::start_with_progress(cfg, progress) => started,
        _ = &mut stop => {
            watcher.abort();
            bar.finish_and_clear();
            eprintln!("stopped while starting");
            return ExitCode::SUCCESS;
        }
    };
    let fleet = match started {
        Ok(fleet) => fleet,
        Err(e) => {
            watcher.abort();
            bar.finish_and_clear();
            eprintln!("error: {e}");
            return ExitCode::from(match e {
                FleetError::Config(_) => EX_USAGE,
                FleetError::Connect { .. } => EX_UNAVAILABLE,
                _ => 1,
            });
        }
    };
    let _ = watcher.await;
    let up = Instant::now();
    let stats = fleet.stats();
    let started = format!(
        "{} servers ({security}, {} connections) started in {}",
        stats.nodes,
        stats.connections,
        seconds(fleet.start_time())
    );
    if interactive {
        bar.println(started);
    } else {
        eprintln!("{started}");
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner:.green} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );

    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => bar.set_message(status_line(&fleet.stats(), up.elapsed())),
        }
    }
    bar.set_message("stopping: unsubscribing and flushing");
    let start_time = fleet.start_time();
    let final_stats = fleet.stats();
    fleet.shutdown().await;
    bar.finish_and_clear();
    print!(
        "{}",
        summary(&final_stats, security, start_time, up.elapsed())
    );
    ExitCode::SUCCESS
}

/// SIGINT or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn status_line(s: &FleetStats, up: Duration) -> String {
    format!(
        "{} servers up {} | registrations {} | requests {} answered {} filtered {} expired {} invalid {}",
        s.nodes,
        humantime::format_duration(Duration::from_secs(up.as_secs())),
        s.registrations_published,
        s.requests_received,
        s.requests_answered,
        s.requests_filtered,
        s.requests_expired,
        s.requests_invalid,
    )
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The final table: one `label  value` row per counter, values right-aligned.
fn summary(s: &FleetStats, security: Security, start: Duration, up: Duration) -> String {
    let rows: [(&str, String); 13] = [
        ("servers", s.nodes.to_string()),
        ("connections", s.connections.to_string()),
        ("security", security.to_string()),
        ("start time", seconds(start)),
        (
            "uptime",
            humantime::format_duration(Duration::from_secs(up.as_secs())).to_string(),
        ),
        (
            "registrations published",
            s.registrations_published.to_string(),
        ),
        ("requests received", s.requests_received.to_string()),
        ("requests answered", s.requests_answered.to_string()),
        ("requests silent", s.requests_silent.to_string()),
        ("requests filtered", s.requests_filtered.to_string()),
        ("requests expired", s.requests_expired.to_string()),
        ("requests invalid", s.requests_invalid.to_string()),
        ("publish errors", s.publish_errors.to_string()),
    ];
    let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let mut out = String::from("coro fleet summary\n");
    for (label, value) in &rows {
        out.push_str(&format!("  {label:<label_width$}  {value:>value_width$}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_aligned() {
        let stats = FleetStats {
            nodes: 10_000,
            connections: 40,
            requests_received: 123_456,
            ..FleetStats::default()
        };
        let table = summary(
            &stats,
            Security::X509,
            Duration::from_millis(1500),
            Duration::from_secs(61),
        );
        let lines: Vec<&str> = table.lines().skip(1).collect();
        assert_eq!(lines.len(), 13);
        let width = lines[0].len();
        assert!(lines.iter().all(|l| l.len() == width), "{table}");
        assert!(table.contains("requests received        123456"), "{table}");
        assert!(table.contains("start time"), "{table}");
        assert!(table.contains("1m 1s"), "{table}");
    }
}
