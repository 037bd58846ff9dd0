//! HTTP: `/metrics` (Prometheus text; also at Choria's `/choria/prometheus` and
//! `/choria/metrics`, so existing scrape configs work), `/healthz` (the process is up,
//! and the added health checks hold, e.g. both sides of the federation broker),
//! `/readyz` (every ingest and sink connection is up), Choria's `/choria/` (build and
//! system information) and, when a network broker runs, nats-server's monitoring paths
//! (`/varz`, `/connz`, ...; see `coro_broker::network::monitor`), as the Go broker serves
//! them all on the stats port.

use crate::adapters::Readiness;
use crate::network::monitor::{self, is_nats_healthz_query};
use crate::network::{ChoriaInfo, MonitorProxy};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use tokio::sync::watch;

#[derive(Clone)]
struct AppState {
    registry: prometheus::Registry,
    readiness: watch::Receiver<Option<Readiness>>,
    nats: Option<MonitorProxy>,
}

/// Serves until `stop` turns true. `readiness` is `None` until the adapters started.
/// `/choria/` names the host as identity and no config file.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: prometheus::Registry,
    readiness: watch::Receiver<Option<Readiness>>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_with(
        listener,
        registry,
        readiness,
        stop,
        ChoriaInfo::default(),
        None,
    )
    .await
}

/// [`serve`], with `/choria/` reporting `choria`, and nats-server's monitoring paths
/// forwarded through `nats` when a network broker runs
/// (`NetworkBroker::choria_info` and `NetworkBroker::monitor_proxy`).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    registry: prometheus::Registry,
    readiness: watch::Receiver<Option<Readiness>>,
    mut stop: watch::Receiver<bool>,
    choria: ChoriaInfo,
    nats: Option<MonitorProxy>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/choria/prometheus", get(metrics))
        .route("/choria/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .with_state(AppState {
            registry,
            readiness,
            nats: nats.clone(),
        })
        .merge(monitor::routes(choria, nats));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}

/// Binds the listener early so a bad address fails before anything starts.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match prometheus::TextEncoder::new().encode_to_string(&state.registry.gather()) {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("encoding metrics: {e}\n"),
        ),
    }
}

/// Coro is up; with nats-server's parameters (`?js-enabled-only=true`, written for the
/// Go broker's probes) nats-server's own health check answers.
async fn healthz(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    match (&state.nats, query) {
        (Some(nats), Some(q)) if is_nats_healthz_query(&q) => {
            nats.forward("/healthz", Some(&q)).await
        }
        _ => {
            // Health checks that were added (the federation broker's two sides).
            let unhealthy = state
                .readiness
                .borrow()
                .as_ref()
                .map(Readiness::unhealthy)
                .unwrap_or_default();
            if unhealthy.is_empty() {
                "ok\n".into_response()
            } else {
                let body = format!("unhealthy: {}\n", unhealthy.join("\n"));
                (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
            }
        }
    }
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.borrow().as_ref() {
        Some(r) if r.ready() => (StatusCode::OK, "ready\n"),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: a NATS connection is down\n",
        ),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting\n"),
    }
}
