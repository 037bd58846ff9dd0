//! A Choria RPC client: build a request as Go clients do, publish it (with any
//! `reply-to`, so replies can stream into an adapter instead of back to the caller),
//! and collect the replies.
//!
//! In process, the usual sequence is [`connect`], [`RpcRequest::new`] plus field
//! changes, then [`call`] (subscribe, publish, collect) or [`publish`] alone for an
//! asynchronous request whose replies go elsewhere. `coro rpc` ([`command`]) is the
//! same on the command line.

pub mod collect;
pub mod command;
pub mod request;
pub mod table;

pub use collect::{collect, subscribe, Replies, ReplySubscription, RpcReply};
pub use command::RpcArgs;
pub use request::{default_reply_subject, RpcRequest, Security};

use std::time::Duration;

/// Why a request could not be built, sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The request is one servers would drop, or cannot be signed as asked.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A credential file cannot be read.
    #[error("{0}")]
    Read(String),
    /// A credential file holds something else than a key or certificate.
    #[error("{0}")]
    Credentials(String),
    /// The system's random source failed.
    #[error("no randomness for a request id: {0}")]
    Random(String),
    /// The NATS server cannot be reached.
    #[error("connecting to {server}: {reason}")]
    Connect {
        /// The server URL(s) as given.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// Subscribing or publishing failed on an established connection.
    #[error("{0}")]
    Nats(String),
}

/// A request on its way: its id, the subjects it went to and where replies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The request id (32 hex characters for v1, a 27-character KSUID for v2).
    pub request_id: String,
    /// The subjects the request was published to.
    pub subjects: Vec<String>,
    /// The reply subject servers will answer on.
    pub reply_to: String,
}

/// Connects to NATS: `server` is one URL, or several separated by commas, with or
/// without `nats://`. Gives up after 5 seconds per attempt.
pub async fn connect(server: &str) -> Result<async_nats::Client, RpcError> {
    let urls: Vec<String> = server
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let fail = |reason: String| RpcError::Connect {
        server: server.to_string(),
        reason,
    };
    let addrs = coro_sinks::nats::servers(&urls).map_err(fail)?;
    async_nats::ConnectOptions::new()
        .name("coro rpc")
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(|e| fail(e.to_string()))
}

/// Builds `request` with `request_id`, publishes every copy and flushes, so the
/// request has left when this returns.
pub async fn publish_with_id(
    client: &async_nats::Client,
    request: &RpcRequest,
    request_id: &str,
) -> Result<Published, RpcError> {
    // A federated client records its own hop first: [server, identity, server].
    let hop = (!request.federation.is_empty()).then(|| {
        let info = client.server_info();
        crate::federation::client::ClientHop {
            server: format!("nats://{}:{}", info.host, info.port),
            identity: request.sender.clone(),
        }
    });
    let messages =
        request.build_federated_at(request_id, std::time::SystemTime::now(), hop.as_ref())?;
    let mut subjects = Vec::with_capacity(messages.len());
    for (subject, payload) in messages {
        client
            .publish(subject.clone(), payload.into())
            .await
            .map_err(|e| RpcError::Nats(format!("publishing to {subject}: {e}")))?;
        subjects.push(subject);
    }
    client
        .flush()
        .await
        .map_err(|e| RpcError::Nats(format!("flushing the request: {e}")))?;
    tracing::debug!(request_id, ?subjects, "request published");
    Ok(Published {
        request_id: request_id.to_string(),
        subjects,
        reply_to: request.reply_subject(request_id),
    })
}

/// Publishes `request` with a fresh request id (see [`publish_with_id`]).
pub async fn publish(
    client: &async_nats::Client,
    request: &RpcRequest,
) -> Result<Published, RpcError> {
    let id = request.new_request_id()?;
    publish_with_id(client, request, &id).await
}

/// Subscribes to the reply subject, publishes `request` and collects its replies until
/// `expected` nodes answered (default: the number of targets of a directed request,
/// else no limit) or `timeout` passed in total. `progress` sees each reply as it
/// arrives.
pub async fn call(
    client: &async_nats::Client,
    request: &RpcRequest,
    expected: Option<usize>,
    timeout: Duration,
    progress: impl FnMut(&RpcReply),
) -> Result<(Published, Replies), RpcError> {
    let id = request.new_request_id()?;
    let subscription = subscribe(client, &request.reply_subject(&id)).await?;
    let published = publish_with_id(client, request, &id).await?;
    let expected = expected.or_else(|| request.expected());
    let replies = subscription.collect(&id, expected, timeout, progress).await;
    Ok((published, replies))
}
