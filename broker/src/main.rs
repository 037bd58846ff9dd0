//! `coro`: the Coro daemon and its tools.

#![forbid(unsafe_code)]

mod cli;
mod decode;
mod demo;
mod fleet_cmd;
mod replies;
mod run;
mod validate;

use std::process::ExitCode;

/// mimalloc: every message allocates small, short-lived buffers on several threads, the
/// pattern glibc's allocator handles worst (a quarter of the adapter's time in profiles).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Both of rustls' crypto back ends are linked (ring, and aws-lc through the AWS SDK),
    // so rustls cannot pick one itself: every TLS client (NATS, Elasticsearch, Pub/Sub)
    // would panic without this choice.
    let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
    let cli = <cli::Cli as clap::Parser>::parse();
    match cli.command {
        cli::Command::Decode(args) => decode::run(&args),
        cli::Command::Run(args) => {
            init_logging();
            run::run(&args.config)
        }
        cli::Command::Validate(args) => validate::run(&args),
        cli::Command::Fleet(args) => fleet_cmd::run(&args),
        cli::Command::Demo(args) => {
            // Quiet unless asked: the output is the progress and the table, not logs.
            if std::env::var_os("RUST_LOG").is_some() {
                init_logging();
            }
            demo::run(&args)
        }
        cli::Command::Rpc(args) => {
            // Quiet unless asked: the output is the table, not logs.
            if std::env::var_os("RUST_LOG").is_some() {
                init_logging();
            }
            coro_broker::rpc::command::run(&args)
        }
        cli::Command::Replies(args) => {
            // Quiet unless asked: the output is the table, not logs.
            if std::env::var_os("RUST_LOG").is_some() {
                init_logging();
            }
            replies::run(&args)
        }
        cli::Command::Broker(cli::BrokerCommand::Run(args)) => {
            init_logging();
            coro_broker::broker_run::run(&args.config, args.adapters.as_deref())
        }
    }
}

/// Logs to stderr; `RUST_LOG` picks the level (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
