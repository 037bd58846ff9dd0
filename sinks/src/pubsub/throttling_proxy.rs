//! Test support: a fault-injecting gRPC proxy in front of the real Pub/Sub emulator
//! that answers chosen real `Publish` requests as throttled (`RESOURCE_EXHAUSTED`).
//!
//! Pub/Sub stores all of a `Publish` request's messages or none, so the request is the
//! unit that is throttled: its messages are then not stored, and only a later request
//! carrying them again (the client's retry, or the pipeline sending the records
//! again) stores them.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;

const PUBLISH: &str = "/google.pubsub.v1.Publisher/Publish";

/// A gRPC (HTTP/2 cleartext) reverse proxy in front of the emulator. Every request is
/// forwarded unchanged, except that of the `Publish` requests whose messages it has
/// not seen before, every second one is answered `RESOURCE_EXHAUSTED` by the proxy
/// itself, unforwarded. A request carrying a throttled message again is throttled too
/// until `hold` has passed since the first time (zero: only that first time), so a
/// throttling can outlast the client's own retries.
pub(crate) struct ThrottlingProxy {
    /// `host:port`, for a sink's endpoint `http://{host}`.
    pub(crate) host: String,
    requests: Arc<AtomicUsize>,
    messages: Arc<AtomicUsize>,
}

struct State {
    upstream: String,
    hold: Duration,
    requests: Arc<AtomicUsize>,
    messages: Arc<AtomicUsize>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Every message (its encoded bytes) forwarded or throttled so far.
    messages: HashSet<Vec<u8>>,
    /// When each throttled message was first throttled.
    throttled: HashMap<Vec<u8>, Instant>,
    /// Requests made of new messages only.
    fresh: usize,
}

impl ThrottlingProxy {
    /// A proxy to the emulator at `upstream` (`host:port`).
    pub(crate) async fn start(upstream: &str, hold: Duration) -> ThrottlingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let messages = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(State {
            upstream: upstream.trim_start_matches("http://").to_string(),
            hold,
            requests: requests.clone(),
            messages: messages.clone(),
            seen: Mutex::default(),
        });
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, state.clone()));
            }
        });
        ThrottlingProxy {
            host,
            requests,
            messages,
        }
    }

    /// `Publish` requests answered as throttled.
    pub(crate) fn throttled_requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Messages in those requests (a message throttled twice counts twice).
    pub(crate) fn throttled_messages(&self) -> usize {
        self.messages.load(Ordering::SeqCst)
    }
}

/// One client connection, over a connection of its own to the emulator.
async fn serve(client: TcpStream, state: Arc<State>) {
    let Ok(upstream) = TcpStream::connect(&state.upstream).await else {
        return;
    };
    let Ok((sender, connection)) = hyper::client::conn::http2::handshake::<_, _, Body>(
        TokioExecutor::new(),
        TokioIo::new(upstream),
    )
    .await
    else {
        return;
    };
    tokio::spawn(connection);
    let service = hyper::service::service_fn(move |request| {
        let (sender, state) = (sender.clone(), state.clone());
        async move { forward(request, sender, &state).await }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(client), service)
        .await;
}

async fn forward(
    request: Request<Incoming>,
    mut upstream: hyper::client::conn::http2::SendRequest<Body>,
    state: &State,
) -> Result<Response<Body>, hyper::Error> {
    let (mut parts, body) = request.into_parts();
    let body = if parts.uri.path() == PUBLISH {
        // Unary: the whole request is one gRPC message, read to look into it.
        let bytes = body.collect().await?.to_bytes();
        if state.throttle(&bytes) {
            return Ok(throttled());
        }
        Full::new(bytes).map_err(|never| match never {}).boxed()
    } else {
        body.boxed()
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{}{path}", state.upstream)
        .parse()
        .expect("a valid URI");
    let response = upstream
        .send_request(Request::from_parts(parts, body))
        .await?;
    Ok(response.map(BodyExt::boxed))
}

/// A gRPC "trailers-only" response: the status in the headers, no body.
fn throttled() -> Response<Body> {
    Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "8")
        .header(
            "grpc-message",
            "Throughput exceeded (injected by the test proxy)",
        )
        .body(Empty::new().map_err(|never| match never {}).boxed())
        .expect("a valid response")
}

impl State {
    /// Whether to answer this `Publish` request (a gRPC frame) as throttled.
    fn throttle(&self, frame: &[u8]) -> bool {
        let Some(messages) = publish_messages(frame) else {
            return false;
        };
        let mut seen = self.seen.lock().unwrap();
        let held = messages.iter().any(|m| {
            seen.throttled
                .get(*m)
                .is_some_and(|at| at.elapsed() < self.hold)
        });
        let fresh = messages.iter().all(|m| !seen.messages.contains(*m));
        for m in &messages {
            seen.messages.insert(m.to_vec());
        }
        let throttle = held
            || (fresh && {
                seen.fresh += 1;
                seen.fresh.is_multiple_of(2)
            });
        if throttle {
            let now = Instant::now();
            for m in &messages {
                seen.throttled.entry(m.to_vec()).or_insert(now);
            }
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.messages.fetch_add(messages.len(), Ordering::SeqCst);
        }
        throttle
    }
}

/// The encoded messages (field 2) of the `PublishRequest` in an uncompressed gRPC
/// frame; `None` for anything else.
fn publish_messages(frame: &[u8]) -> Option<Vec<&[u8]>> {
    let (&compressed, rest) = frame.split_first()?;
    let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let mut proto = rest.get(4..4 + length)?;
    if compressed != 0 {
        return None;
    }
    let mut messages = Vec::new();
    while !proto.is_empty() {
        let tag = varint(&mut proto)?;
        let len = match tag & 7 {
            0 => {
                varint(&mut proto)?;
                continue;
            }
            1 => 8,
            2 => usize::try_from(varint(&mut proto)?).ok()?,
            5 => 4,
            _ => return None,
        };
        let (field, rest) = (proto.get(..len)?, proto.get(len..)?);
        if tag >> 3 == 2 && tag & 7 == 2 {
            messages.push(field);
        }
        proto = rest;
    }
    (!messages.is_empty()).then_some(messages)
}

/// Reads a protobuf varint off the front of `buf`.
fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
