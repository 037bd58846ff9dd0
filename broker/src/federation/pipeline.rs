//! The workers of one direction (PROTOCOL.md §3.2): `workers` instances of
//! ingest → transformer → egest, each with its own queue subscription:
//!
//! ```text
//! choria.federation.<cluster>.federation ─┬▶ worker 0: ingest:0 → transformer:0 → egest:0 ─┬▶ targets
//!   (queue <cluster>_federation)          ├▶ worker 1: ...                                 │
//!                                         └▶ worker N-1                                    ┘
//! ```
//!
//! Go runs each stage as its own pool, joined by channels (1000 and 10000 messages);
//! here the three stages of a worker run in one task, which saves two task hand-offs
//! per message (the broker forwards at close to the rate of a bare relay), and the
//! buffers are the NATS client's: the subscription's on the way in, the connection's
//! on the way out. Nothing on the way stops a worker: a message that cannot be
//! forwarded is counted, logged at a rate limit and dropped.

use super::config::Hardening;
use super::connection::Connection;
use super::hardening::{is_choria_target, passed_before, ReplyPolicy, TokenBucket};
use super::metrics::{FederationMetrics, WorkerMetrics};
use super::wire::{not_a_transport, Wire};
use super::Side;
use coro_core::protocol::federation::{self, hop_processor, FederationError as Rewrite};
use coro_core::protocol::{v1, v2, Protocol, Version};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often each reason for dropping messages is logged at most.
pub(crate) const LOG_PERIOD: Duration = Duration::from_secs(5);

/// Which way messages flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Federation → collective: clients' requests.
    Request,
    /// Collective → federation: servers' replies.
    Reply,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Reply => "reply",
        }
    }

    /// Where ingest subscribes.
    pub fn ingest_side(self) -> Side {
        match self {
            Direction::Request => Side::Federation,
            Direction::Reply => Side::Collective,
        }
    }

    /// Where egest publishes.
    pub fn egest_side(self) -> Side {
        match self {
            Direction::Request => Side::Collective,
            Direction::Reply => Side::Federation,
        }
    }

    fn hop_side(self) -> federation::Side {
        match self {
            Direction::Request => federation::Side::Request,
            Direction::Reply => federation::Side::Reply,
        }
    }

    fn transformer(self) -> &'static str {
        match self {
            Direction::Request => "choria_request_transformer",
            Direction::Reply => "choria_reply_transformer",
        }
    }
}

/// Why a message was not forwarded: the `reason` label of
/// `coro_federation_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Invalid,
    NotFederated,
    NoTargets,
    NoReplyTo,
    BadTarget,
    BadReplyTo,
    TooManyTargets,
    Loop,
    RateLimited,
    Publish,
}

impl Reason {
    const ALL: [Reason; 10] = [
        Reason::Invalid,
        Reason::NotFederated,
        Reason::NoTargets,
        Reason::NoReplyTo,
        Reason::BadTarget,
        Reason::BadReplyTo,
        Reason::TooManyTargets,
        Reason::Loop,
        Reason::RateLimited,
        Reason::Publish,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "invalid",
            Reason::NotFederated => "not_federated",
            Reason::NoTargets => "no_targets",
            Reason::NoReplyTo => "no_reply_to",
            Reason::BadTarget => "bad_target",
            Reason::BadReplyTo => "bad_reply_to",
            Reason::TooManyTargets => "too_many_targets",
            Reason::Loop => "loop",
            Reason::RateLimited => "rate_limited",
            Reason::Publish => "publish",
        }
    }
}

/// A message on its way through the stages (Go's `chainmessage`).
pub(crate) struct Chain {
    transport: Wire,
    request_id: String,
    targets: Vec<String>,
    /// The server ingest received it from: the hop's first element.
    in_server: Arc<str>,
}

/// What every worker of one direction shares.
pub(crate) struct Context {
    pub direction: Direction,
    pub cluster: String,
    pub identity: String,
    /// `<identity> (`: how this broker's hops start.
    hop_prefix: String,
    /// `choria.federation.<cluster>.collective`
    collective_subject: String,
    check_subjects: bool,
    reply_policy: ReplyPolicy,
    max_targets: usize,
    loop_guard: bool,
    bucket: Option<TokenBucket>,
    pub metrics: FederationMetrics,
    dropped: Vec<prometheus::IntCounter>,
    /// One per reason, so a flood of one kind does not hide another.
    logs: Vec<LogLimiter>,
}

impl Context {
    pub fn new(
        direction: Direction,
        cluster: &str,
        identity: &str,
        hardening: &Hardening,
        metrics: FederationMetrics,
    ) -> Self {
        let rate = match direction {
            Direction::Request => hardening.request_rate,
            Direction::Reply => hardening.reply_rate,
        };
        Context {
            direction,
            cluster: cluster.to_string(),
            identity: identity.to_string(),
            hop_prefix: format!("{identity} ("),
            collective_subject: federation::collective_subject(cluster),
            check_subjects: hardening.check_subjects,
            reply_policy: ReplyPolicy::new(hardening.allowed_reply_subjects.clone()),
            max_targets: hardening.max_targets,
            loop_guard: hardening.loop_guard,
            bucket: rate.map(TokenBucket::new),
            dropped: Reason::ALL
                .iter()
                .map(|r| {
                    metrics
                        .dropped
                        .with_label_values(&[cluster, direction.as_str(), r.as_str()])
                })
                .collect(),
            metrics,
            logs: Reason::ALL
                .iter()
                .map(|_| LogLimiter::new(LOG_PERIOD))
                .collect(),
        }
    }

    pub fn worker_metrics(&self, name: &str, worker: usize, connected_to: &str) -> WorkerMetrics {
        WorkerMetrics::new(
            &self.metrics,
            name,
            worker,
            connected_to,
            &self.cluster,
            &self.identity,
        )
    }

    /// Counts and logs (at a rate limit) a message that is not forwarded.
    fn drop_message(&self, errors: &prometheus::IntCounter, reason: Reason, what: &str) {
        errors.inc();
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.dropped[i].inc();
            self.logs[i].warn(
                &self.cluster,
                self.direction.as_str(),
                reason.as_str(),
                what,
            );
        }
    }

    /// Ingest: the rate limit, then Go's checks: a transport of either version with a
    /// federation header.
    fn accept(
        &self,
        subject: &str,
        payload: &axum::body::Bytes,
    ) -> Result<(Wire, String), (Reason, String)> {
        if let Some(bucket) = &self.bucket {
            if !bucket.try_take() {
                return Err((
                    Reason::RateLimited,
                    format!("message on {subject} is over the cluster's rate limit"),
                ));
            }
        }
        let transport = transport_version(payload)
            .ok_or_else(not_a_transport)
            .and_then(|v| Wire::decode(v, payload))
            .map_err(|e| {
                (
                    Reason::Invalid,
                    format!("could not parse the message on {subject} into a transport: {e}"),
                )
            })?;
        let Some(request_id) = transport.federation_request_id() else {
            return Err((
                Reason::NotFederated,
                format!("received a message on {subject} that was not federated"),
            ));
        };
        let request_id = request_id.to_string();
        Ok((transport, request_id))
    }

    /// The transformer's work: Go's rewrite, then the hardening checks.
    fn transform(&self, cm: &mut Chain) -> Result<(), (Reason, String)> {
        let id = &cm.request_id;
        // The client's reply subject, either way: the request's own reply-to, or the
        // one the reply carries back.
        let client_reply_to = match self.direction {
            Direction::Request => cm.transport.reply_to().to_string(),
            Direction::Reply => String::new(),
        };
        let rewritten = match self.direction {
            Direction::Request => cm.transport.transform_request(&self.cluster),
            Direction::Reply => cm.transport.transform_reply(),
        };
        let sender = cm.transport.sender();
        let targets = rewritten.map_err(|e| match e {
            Rewrite::NotFederated => (
                Reason::NotFederated,
                format!("received a message from {sender} that is not federated"),
            ),
            Rewrite::NoTargets => (
                Reason::NoTargets,
                format!("received a message {id} from {sender} that does not have any targets"),
            ),
            Rewrite::NoReplyTo => (
                Reason::NoReplyTo,
                format!("received a message {id} with no reply-to set"),
            ),
        })?;
        if self.loop_guard
            && passed_before(
                cm.transport.hops(),
                &self.hop_prefix,
                self.direction.transformer(),
            )
        {
            return Err((
                Reason::Loop,
                format!(
                    "message {id} from {sender} passed this broker's {} side before; dropping it to break a loop",
                    self.direction.as_str()
                ),
            ));
        }
        let reply_to = match self.direction {
            Direction::Request => client_reply_to.as_str(),
            Direction::Reply => targets.first().map_or("", String::as_str),
        };
        if self.direction == Direction::Request
            && self.max_targets > 0
            && targets.len() > self.max_targets
        {
            return Err((
                Reason::TooManyTargets,
                format!(
                    "message {id} from {sender} has {} targets, more than the {} allowed",
                    targets.len(),
                    self.max_targets
                ),
            ));
        }
        if self.check_subjects {
            if self.direction == Direction::Request {
                if let Some(bad) = targets.iter().find(|t| !is_choria_target(t)) {
                    return Err((
                        Reason::BadTarget,
                        format!("message {id} from {sender} has target {bad:?}, not a Choria agent or node subject"),
                    ));
                }
            }
            if !self.reply_policy.allows(reply_to) {
                return Err((
                    Reason::BadReplyTo,
                    format!("message {id} from {sender} has reply-to {reply_to:?}, not a reply subject or an allowed one"),
                ));
            }
        }
        cm.targets = targets;
        Ok(())
    }

    /// The subject servers reply to in this cluster.
    pub fn collective_subject(&self) -> &str {
        &self.collective_subject
    }
}

/// The transport version named by the payload's `protocol`; Go puts it first, so the
/// usual case is read off the front.
pub(crate) fn transport_version(payload: &[u8]) -> Option<Version> {
    const PREFIX: &[u8] = b"{\"protocol\":\"";
    if let Some(rest) = payload.strip_prefix(PREFIX) {
        for (name, version) in [(v1::TRANSPORT, Version::V1), (v2::TRANSPORT, Version::V2)] {
            if rest
                .strip_prefix(name.as_bytes())
                .is_some_and(|r| r.first() == Some(&b'"'))
            {
                return Some(version);
            }
        }
    }
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        protocol: Option<std::borrow::Cow<'a, str>>,
    }
    let peek: Peek<'_> = serde_json::from_slice(payload).ok()?;
    match Protocol::from_name(&peek.protocol?) {
        Some(Protocol::Transport(v)) => Some(v),
        _ => None,
    }
}

/// One worker of a direction: ingest `i`, transformer `i` and egest `i` in one task
/// (the "pool of 10, 3 micro services each" Choria's docs describe), so a message
/// goes from the subscription to its targets without a hand-off between tasks. Each
/// stage counts in its own series (`nats_ingest`, `choria_<side>_transformer`,
/// `nats_egest`, worker `i`), as Go's separate pools do. Runs until `stop`, then
/// drains its subscription: what the client already holds is still forwarded.
pub(crate) async fn worker(
    ctx: Arc<Context>,
    i: usize,
    input: Connection,
    mut subscription: async_nats::Subscriber,
    output: Connection,
    mut stop: watch::Receiver<bool>,
) {
    let stages = Stages {
        ingest: ctx.worker_metrics("nats_ingest", i, ctx.direction.ingest_side().as_str()),
        transform: ctx.worker_metrics(ctx.direction.transformer(), i, "unconnected"),
        egest: ctx.worker_metrics("nats_egest", i, ctx.direction.egest_side().as_str()),
        processor: hop_processor(&ctx.identity, ctx.direction.hop_side(), i, i, i),
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = subscription.next() => match msg {
                Some(m) => m,
                None => break,
            },
        };
        forward(&ctx, &stages, &input, &output, msg).await;
    }
    // No more from the server; what the client holds for us still goes out. A side
    // that is down cannot confirm a drain or take a flush: nothing to wait for then.
    let up =
        |c: &Connection| c.client.connection_state() == async_nats::connection::State::Connected;
    if up(&input) && subscription.drain().await.is_ok() {
        while let Some(msg) = subscription.next().await {
            forward(&ctx, &stages, &input, &output, msg).await;
        }
    }
    if up(&output) {
        let _ = output.client.flush().await;
    }
    tracing::debug!(
        cluster = ctx.cluster,
        direction = ctx.direction.as_str(),
        worker = i,
        "worker stopped"
    );
}

/// A worker's series per stage, and the processor text of its hop.
struct Stages {
    ingest: WorkerMetrics,
    transform: WorkerMetrics,
    egest: WorkerMetrics,
    processor: String,
}

/// One message through the three stages.
async fn forward(
    ctx: &Context,
    stages: &Stages,
    input: &Connection,
    output: &Connection,
    msg: async_nats::Message,
) {
    // Ingest: a federated transport.
    let started = Instant::now();
    let accepted = ctx.accept(&msg.subject, &msg.payload);
    drop(msg);
    let (transport, request_id) = match accepted {
        Ok(ok) => ok,
        Err((reason, what)) => {
            ctx.drop_message(&stages.ingest.errors, reason, &what);
            stages.ingest.time.observe(started.elapsed().as_secs_f64());
            return;
        }
    };
    let mut cm = Chain {
        transport,
        request_id,
        targets: Vec::new(),
        in_server: input.connected_url(),
    };
    stages.ingest.received.inc();
    let now = Instant::now();
    stages.ingest.time.observe((now - started).as_secs_f64());

    // Transform: Go's rewrite and the hardening checks.
    let started = now;
    let transformed = ctx.transform(&mut cm);
    let now = Instant::now();
    stages.transform.time.observe((now - started).as_secs_f64());
    if let Err((reason, what)) = transformed {
        ctx.drop_message(&stages.transform.errors, reason, &what);
        return;
    }
    stages.transform.received.inc();
    tracing::debug!(
        request_id = cm.request_id,
        sender = cm.transport.sender(),
        targets = cm.targets.len(),
        "{} message",
        ctx.direction.as_str()
    );

    // Egest: the hop, then the same bytes to every target.
    let started = now;
    stages.egest.received.inc();
    cm.transport
        .record_hop(&cm.in_server, &stages.processor, &output.connected_url());
    // One buffer for every target (axum re-exports the `bytes` crate NATS uses).
    let payload = axum::body::Bytes::from(cm.transport.encode());
    for target in cm.targets {
        match output.client.publish(target, payload.clone()).await {
            Ok(()) => {
                if let Some(p) = &stages.egest.published {
                    p.inc();
                }
            }
            Err(e) => {
                let what = format!("could not publish message '{}': {e}", cm.request_id);
                ctx.drop_message(&stages.egest.errors, Reason::Publish, &what);
            }
        }
    }
    stages.egest.time.observe(started.elapsed().as_secs_f64());
}

/// Logs at most once per period, with a count of what was held back, so a flood of bad
/// messages cannot flood the log.
pub(crate) struct LogLimiter {
    period: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub fn new(period: Duration) -> Self {
        LogLimiter {
            period,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs a warning unless one was logged within the period; says whether it did.
    pub fn warn(&self, cluster: &str, direction: &str, reason: &str, what: &str) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < self.period) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        *last = Some(Instant::now());
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            cluster,
            direction,
            reason,
            suppressed,
            "federation: not forwarded: {what}"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test subscriber writes, shared with the test.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// go-choria's transformer tests check the error log lines for unfederated,
    /// target-less and reply-to-less messages: each is logged, and a flood of them once
    /// per reason and period, with the count held back on the next line.
    #[test]
    fn drops_are_logged_once_per_reason_and_period() {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let metrics = FederationMetrics::register(&prometheus::Registry::new()).unwrap();
        let ctx = Context::new(
            Direction::Request,
            "london",
            "fb1",
            &Hardening::default(),
            metrics.clone(),
        );
        let errors = prometheus::IntCounter::new("e", "e").unwrap();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..50 {
                for (reason, what) in [
                    (
                        Reason::NotFederated,
                        "received a message on x that was not federated",
                    ),
                    (
                        Reason::NoTargets,
                        "received a message r1 from c that does not have any targets",
                    ),
                    (
                        Reason::NoReplyTo,
                        "received a message r1 with no reply-to set",
                    ),
                ] {
                    ctx.drop_message(&errors, reason, what);
                }
            }
        });
        assert_eq!(errors.get(), 150);
        let dropped = |reason: &str| {
            metrics
                .dropped
                .with_label_values(&["london", "request", reason])
                .get()
        };
        assert_eq!(dropped("not_federated"), 50);
        assert_eq!(dropped("no_reply_to"), 50);
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let lines = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(lines("that was not federated"), 1, "{text}");
        assert_eq!(lines("that does not have any targets"), 1, "{text}");
        assert_eq!(lines("with no reply-to set"), 1, "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.contains("federation: not forwarded: received a message r1 with no reply-to set"),
            "{text}"
        );
        assert!(text.contains("reason=\"no_reply_to\""), "{text}");

        // After the period the next one is logged with what was held back.
        let limiter = LogLimiter::new(Duration::from_millis(1));
        assert!(limiter.warn("c", "request", "loop", "x"));
        assert!(!limiter.warn("c", "request", "loop", "x"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.warn("c", "request", "loop", "x"));
    }

    #[test]
    fn versions_are_read_off_the_front() {
        assert_eq!(
            transport_version(br#"{"protocol":"choria:transport:1","data":""}"#),
            Some(Version::V1)
        );
        assert_eq!(
            transport_version(br#"{"protocol":"io.choria.protocol.v2.transport"}"#),
            Some(Version::V2)
        );
        assert_eq!(
            transport_version(br#"{ "data":"", "protocol":"choria:transport:1"}"#),
            Some(Version::V1)
        );
        assert_eq!(
            transport_version(br#"{"protocol":"choria:transport:10"}"#),
            None
        );
        assert_eq!(
            transport_version(br#"{"protocol":"choria:request:1"}"#),
            None
        );
        assert_eq!(transport_version(b"{}"), None);
        assert_eq!(transport_version(b"not json"), None);
    }
}
