//! `coro run`: start the HTTP endpoints and the adapters, run until SIGTERM or SIGINT,
//! then drain: stop taking messages, let in-flight batches finish within the drain
//! timeout, acknowledge what was delivered, and exit 0.

use coro_broker::adapters::Adapters;
use coro_broker::http;
use std::path::Path;
use std::process::ExitCode;
use tokio::sync::watch;

/// sysexits(3): configuration error.
const EX_CONFIG: u8 = 78;
/// sysexits(3): a service is unavailable.
const EX_UNAVAILABLE: u8 = 69;

/// Runs `coro run`.
pub fn run(config_path: &Path) -> ExitCode {
    // Loading through the sinks crate checks every sink's options too, so a typo fails
    // here with the file and line, before anything connects.
    let (config, sinks) = match coro_sinks::config::load(config_path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("error: {e}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
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
    runtime.block_on(async move {
        let registry = prometheus::Registry::new();
        let listener = match http::bind(config.http.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: http.listen {}: {e}", config.http.listen);
                return ExitCode::from(EX_CONFIG);
            }
        };
        let (stop_http, http_stopped) = watch::channel(false);
        let (set_readiness, readiness) = watch::channel(None);
        let server = tokio::spawn(http::serve(listener, registry.clone(), readiness, http_stopped));
        tracing::info!(listen = %config.http.listen, "serving /metrics, /healthz and /readyz");

        let adapters = match Adapters::start(&config, &sinks, &registry).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                let _ = stop_http.send(true);
                return ExitCode::from(EX_UNAVAILABLE);
            }
        };
        let _ = set_readiness.send(Some(adapters.readiness()));
        tracing::info!(adapters = config.adapters.len(), "adapters running");

        let signal = wait_for_signal().await;
        tracing::info!(signal, drain_timeout = ?config.http.drain_timeout, "draining");
        let clean = adapters.shutdown(config.http.drain_timeout).await;
        if !clean {
            tracing::warn!("drain timeout passed with messages in flight; they will be redelivered (JetStream) or are lost (core NATS)");
        }
        let _ = stop_http.send(true);
        let _ = server.await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
