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
use super::hardening::{
    is_choria_target, passed_before, passed_before_processors, ReplyPolicy, TokenBucket,
};
use super::metrics::{FederationMetrics, WorkerMetrics};
use super::splice::{hop_json, List, Splice, Strs};
use super::wire::{not_a_transport, sub, Wire};
use super::Side;
use coro_core::protocol::federation::{self, hop_processor, FederationError as Rewrite};
use coro_core::protocol::{v1, v2, Protocol, Version};
use futures::{FutureExt, StreamExt};
use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::IntCounter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
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

/// A transport in flight: edited where it lies when it is the usual compact form
/// ([`Splice`]), else decoded ([`Wire`]).
pub(crate) enum Msg<'a> {
    Splice(Splice<'a>),
    Wire(Wire),
}

impl<'a> Msg<'a> {
    fn request_id(&self) -> Option<&str> {
        match self {
            Msg::Splice(s) => s.federation_request_id(),
            Msg::Wire(w) => w.federation_request_id(),
        }
    }

    fn sender(&self) -> &str {
        match self {
            Msg::Splice(s) => s.sender(),
            Msg::Wire(w) => w.sender(),
        }
    }

    /// The client's reply subject once the request transformer moved it.
    fn federation_reply_to(&self) -> &str {
        match self {
            Msg::Splice(s) => s.federation_reply_to(),
            Msg::Wire(w) => w.federation_reply_to(),
        }
    }

    fn passed_before(&self, identity_prefix: &str, transformer: &str) -> bool {
        match self {
            Msg::Splice(s) => {
                passed_before_processors(s.hop_processors(), identity_prefix, transformer)
            }
            Msg::Wire(w) => passed_before(w.hops(), identity_prefix, transformer),
        }
    }

    fn transform(
        &mut self,
        direction: Direction,
        collective: &'a str,
    ) -> Result<Targets<'a>, Rewrite> {
        match (self, direction) {
            (Msg::Splice(s), Direction::Request) => {
                s.transform_request(collective).map(Targets::List)
            }
            (Msg::Splice(s), Direction::Reply) => s.transform_reply().map(Targets::One),
            (Msg::Wire(w), Direction::Request) => {
                w.transform_request_to(collective).map(Targets::Owned)
            }
            (Msg::Wire(w), Direction::Reply) => w.transform_reply().map(Targets::Owned),
        }
    }
}

/// The subjects a message goes to.
pub(crate) enum Targets<'a> {
    List(List<'a>),
    One(&'a str),
    Owned(Vec<String>),
}

impl<'a> Targets<'a> {
    fn len(&self) -> usize {
        match self {
            Targets::List(l) => l.len(),
            Targets::One(_) => 1,
            Targets::Owned(v) => v.len(),
        }
    }

    fn first(&self) -> Option<&str> {
        self.iter().next()
    }

    fn iter(&self) -> TargetIter<'_, 'a> {
        match self {
            Targets::List(l) => TargetIter::List(l.iter()),
            Targets::One(t) => TargetIter::One(Some(t)),
            Targets::Owned(v) => TargetIter::Owned(v.iter()),
        }
    }
}

/// The subjects of [`Targets`], without boxing.
pub(crate) enum TargetIter<'t, 'a> {
    List(Strs<'a>),
    One(Option<&'a str>),
    Owned(std::slice::Iter<'t, String>),
}

impl<'t, 'a: 't> Iterator for TargetIter<'t, 'a> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        match self {
            TargetIter::List(l) => l.next(),
            TargetIter::One(t) => t.take(),
            TargetIter::Owned(v) => v.next().map(String::as_str),
        }
    }
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
    fn accept<'a>(
        &self,
        subject: &str,
        payload: &'a axum::body::Bytes,
    ) -> Result<Msg<'a>, (Reason, String)> {
        if let Some(bucket) = &self.bucket {
            if !bucket.try_take() {
                return Err((
                    Reason::RateLimited,
                    format!("message on {subject} is over the cluster's rate limit"),
                ));
            }
        }
        let invalid = |e: coro_core::protocol::DecodeError| {
            (
                Reason::Invalid,
                format!("could not parse the message on {subject} into a transport: {e}"),
            )
        };
        let version = transport_version(payload)
            .ok_or_else(not_a_transport)
            .map_err(invalid)?;
        let transport = match Splice::parse(version, payload) {
            Some(s) => Msg::Splice(s),
            None => Msg::Wire(Wire::decode(version, payload).map_err(invalid)?),
        };
        if transport.request_id().is_none() {
            return Err((
                Reason::NotFederated,
                format!("received a message on {subject} that was not federated"),
            ));
        }
        Ok(transport)
    }

    /// The transformer's work: Go's rewrite, then the hardening checks.
    fn transform<'a>(&'a self, msg: &mut Msg<'a>) -> Result<Targets<'a>, (Reason, String)> {
        let rewritten = msg.transform(self.direction, &self.collective_subject);
        let id = msg.request_id().unwrap_or_default();
        let sender = msg.sender();
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
        if self.loop_guard && msg.passed_before(&self.hop_prefix, self.direction.transformer()) {
            return Err((
                Reason::Loop,
                format!(
                    "message {id} from {sender} passed this broker's {} side before; dropping it to break a loop",
                    self.direction.as_str()
                ),
            ));
        }
        // The client's reply subject, either way: the request's own reply-to (now in
        // the federation header), or the one the reply carries back.
        let reply_to = match self.direction {
            Direction::Request => msg.federation_reply_to(),
            Direction::Reply => targets.first().unwrap_or_default(),
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
        Ok(targets)
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

/// The workers of a direction that share an ingest connection (all of them with the
/// default one connection), in one task: worker `i` is ingest `i`, transformer `i`
/// and egest `i` with its own queue subscription (the "pool of 10, 3 micro services
/// each" Choria's docs describe), and each stage counts in its own series
/// (`nats_ingest`, `choria_<side>_transformer`, `nats_egest`, worker `i`), as Go's
/// separate pools do. A message goes from a subscription to its targets without a
/// hand-off between tasks, and the task takes what its subscriptions hold in turn
/// before it waits. One task per connection, not per worker: a connection's messages
/// arrive one after another from its reader anyway, and ten tasks each woken for
/// every tenth message cost a 2-core host a third more CPU per message than one task
/// taking them in bursts (measured; see benches/RESULTS.md). `connections` sets how
/// many tasks run, up to one per worker as Go. Runs until `stop`, then drains the
/// subscriptions: what the client already holds is still forwarded.
pub(crate) async fn worker(
    ctx: Arc<Context>,
    workers: Vec<(usize, async_nats::Subscriber)>,
    input: Connection,
    output: Connection,
    mut stop: watch::Receiver<bool>,
) {
    /// Messages taken from one subscription before the next one's turn.
    const TURN: usize = 32;
    let mut slots: Vec<(async_nats::Subscriber, Stages)> = workers
        .into_iter()
        .map(|(i, subscription)| (subscription, Stages::new(&ctx, i)))
        .collect();
    // When one message follows another with no wait, the clock read that ended the
    // last one starts the next (one read fewer per message under load).
    let mut last_end = None;
    'run: loop {
        // What the client already holds goes first, subscription by subscription,
        // with an atomic load per message for the stop signal.
        let mut any = false;
        for (subscription, stages) in &mut slots {
            for _ in 0..TURN {
                if stop.has_changed().unwrap_or(true) && *stop.borrow_and_update() {
                    break 'run;
                }
                let msg = match subscription.next().now_or_never() {
                    Some(Some(m)) => m,
                    Some(None) => break 'run,
                    None => break,
                };
                let started = last_end.unwrap_or_else(Instant::now);
                last_end = Some(forward(&ctx, stages, &input, &output, msg, started).await);
                any = true;
            }
        }
        if any {
            continue;
        }
        // Nothing held: count what was buffered, and wait for any subscription (or
        // stop; a select registers with the stop signal's lock, so only when idle).
        slots.iter_mut().for_each(|(_, stages)| stages.flush());
        last_end = None;
        let next = std::future::poll_fn(|cx| {
            for (k, (subscription, _)) in slots.iter_mut().enumerate() {
                if let Poll::Ready(msg) = subscription.poll_next_unpin(cx) {
                    return Poll::Ready((k, msg));
                }
            }
            Poll::Pending
        });
        let (k, msg) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            next = next => next,
        };
        let Some(msg) = msg else {
            break;
        };
        if let Some((_, stages)) = slots.get_mut(k) {
            last_end = Some(forward(&ctx, stages, &input, &output, msg, Instant::now()).await);
        }
    }
    // No more from the server; what the client holds for us still goes out. A side
    // that is down cannot confirm a drain or take a flush: nothing to wait for then.
    let up =
        |c: &Connection| c.client.connection_state() == async_nats::connection::State::Connected;
    for (subscription, stages) in &mut slots {
        if up(&input) && subscription.drain().await.is_ok() {
            while let Some(msg) = subscription.next().await {
                forward(&ctx, stages, &input, &output, msg, Instant::now()).await;
            }
        }
        stages.flush();
    }
    if up(&output) {
        let _ = output.client.flush().await;
    }
    tracing::debug!(
        cluster = ctx.cluster,
        direction = ctx.direction.as_str(),
        workers = ?slots.iter().map(|(_, s)| s.worker).collect::<Vec<_>>(),
        "workers stopped"
    );
}

/// Messages a worker counts and times on its own before adding them to the shared
/// series.
const BUFFERED: u32 = 256;

/// A worker's series per stage, and its hop.
struct Stages {
    worker: usize,
    ingest: WorkerMetrics,
    transform: WorkerMetrics,
    egest: WorkerMetrics,
    /// The stages' times and counts of forwarded messages (`received` of ingest,
    /// transform and egest, and egest's `published`), kept by the worker (no atomic
    /// operations per message) and added to the shared series when it waits for
    /// messages or every [`BUFFERED`] messages. Errors count at once.
    times: [LocalHistogram; 3],
    received: [LocalIntCounter; 3],
    published: Option<LocalIntCounter>,
    buffered: u32,
    hop: HopCache,
    /// Where the headers are written, kept between messages.
    scratch: Vec<u8>,
}

impl Stages {
    fn new(ctx: &Context, i: usize) -> Self {
        let ingest = ctx.worker_metrics("nats_ingest", i, ctx.direction.ingest_side().as_str());
        let transform = ctx.worker_metrics(ctx.direction.transformer(), i, "unconnected");
        let egest = ctx.worker_metrics("nats_egest", i, ctx.direction.egest_side().as_str());
        let times = [
            ingest.time.local(),
            transform.time.local(),
            egest.time.local(),
        ];
        let received = [
            ingest.received.local(),
            transform.received.local(),
            egest.received.local(),
        ];
        let published = egest.published.as_ref().map(IntCounter::local);
        Stages {
            worker: i,
            ingest,
            transform,
            egest,
            times,
            received,
            published,
            buffered: 0,
            scratch: Vec::new(),
            hop: HopCache {
                processor: hop_processor(&ctx.identity, ctx.direction.hop_side(), i, i, i),
                generations: None,
                in_server: Arc::from(""),
                out_server: Arc::from(""),
                json: Vec::new(),
            },
        }
    }

    /// Records one message's stage times `[ingest, transform, egest]` (`None`: the
    /// stage did not run).
    fn observe(&mut self, times: [Option<Duration>; 3]) {
        for (h, t) in self.times.iter().zip(times) {
            if let Some(t) = t {
                h.observe(t.as_secs_f64());
            }
        }
        self.buffered += 1;
        if self.buffered >= BUFFERED {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buffered > 0 {
            self.times.iter().for_each(LocalHistogram::flush);
            self.received.iter().for_each(LocalIntCounter::flush);
            if let Some(p) = &self.published {
                p.flush();
            }
            self.buffered = 0;
        }
    }
}

/// This worker's hop `[in server, processor, out server]`, written once per
/// (re)connect of either connection instead of once per message.
struct HopCache {
    processor: String,
    /// The connections' generations the servers were looked up in.
    generations: Option<(u64, u64)>,
    in_server: Arc<str>,
    out_server: Arc<str>,
    /// The hop as Go writes it.
    json: Vec<u8>,
}

impl HopCache {
    fn refresh(&mut self, input: &Connection, output: &Connection) {
        let now = (input.generation(), output.generation());
        if self.generations != Some(now) {
            self.in_server = input.connected_url();
            self.out_server = output.connected_url();
            self.json = hop_json([&self.in_server, &self.processor, &self.out_server]);
            self.generations = Some(now);
        }
    }
}

/// One message through the three stages, from `started`; returns when it ended.
async fn forward(
    ctx: &Context,
    stages: &mut Stages,
    input: &Connection,
    output: &Connection,
    msg: async_nats::Message,
    started: Instant,
) -> Instant {
    // Ingest: a federated transport.
    let mut transport = match ctx.accept(&msg.subject, &msg.payload) {
        Ok(t) => t,
        Err((reason, what)) => {
            ctx.drop_message(&stages.ingest.errors, reason, &what);
            let now = Instant::now();
            stages.observe([Some(now - started), None, None]);
            return now;
        }
    };
    stages.received[0].inc();
    let ingested = Instant::now();

    // Transform: Go's rewrite and the hardening checks.
    let transformed = ctx.transform(&mut transport);
    let now = Instant::now();
    let times = [Some(ingested - started), Some(now - ingested)];
    let targets = match transformed {
        Ok(t) => t,
        Err((reason, what)) => {
            ctx.drop_message(&stages.transform.errors, reason, &what);
            stages.observe([times[0], times[1], None]);
            return now;
        }
    };
    stages.received[1].inc();
    tracing::debug!(
        request_id = transport.request_id(),
        sender = transport.sender(),
        targets = targets.len(),
        "{} message",
        ctx.direction.as_str()
    );

    // Egest: the hop, then the same bytes to every target.
    let started = now;
    stages.received[2].inc();
    stages.hop.refresh(input, output);
    let hop = &stages.hop;
    let encoded = match &mut transport {
        Msg::Splice(s) => s.encode_with_hop(&hop.json, &mut stages.scratch),
        Msg::Wire(w) => {
            w.record_hop(&hop.in_server, &hop.processor, &hop.out_server);
            w.encode()
        }
    };
    // One buffer for every target (axum re-exports the `bytes` crate NATS uses); the
    // last target takes it, so one target costs no reference count.
    let mut payload = axum::body::Bytes::from(encoded);
    let last = targets.len().saturating_sub(1);
    for (k, target) in targets.iter().enumerate() {
        let body = if k < last {
            payload.clone()
        } else {
            std::mem::take(&mut payload)
        };
        // The subject as a slice of the received message where it is one (no copy).
        let subject = sub(&msg.payload, target.as_bytes())
            .and_then(|b| async_nats::Subject::from_utf8(b).ok())
            .unwrap_or_else(|| async_nats::Subject::from(target));
        match output.client.publish(subject, body).await {
            Ok(()) => {
                if let Some(p) = &stages.published {
                    p.inc();
                }
            }
            Err(e) => {
                let id = transport.request_id().unwrap_or_default();
                let what = format!("could not publish message '{id}': {e}");
                ctx.drop_message(&stages.egest.errors, Reason::Publish, &what);
            }
        }
    }
    let now = Instant::now();
    stages.observe([times[0], times[1], Some(now - started)]);
    now
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
