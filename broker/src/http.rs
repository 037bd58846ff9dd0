//! HTTP: `/metrics` (Prometheus text; also at Choria's `/choria/prometheus` and
//! `/choria/metrics`, so existing scrape configs work), `/healthz` (the process is up),
//! `/readyz` (every ingest and sink connection is up).

use crate::adapters::Readiness;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use tokio::sync::watch;

#[derive(Clone)]
struct AppState {
    registry: prometheus::Registry,
    readiness: watch::Receiver<Option<Readiness>>,
}

/// Serves until `stop` turns true. `readiness` is `None` until the adapters started.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: prometheus::Registry,
    readiness: watch::Receiver<Option<Readiness>>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/choria/prometheus", get(metrics))
        .route("/choria/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AppState {
            registry,
            readiness,
        });
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
