//! The checks the Go broker lacks (PROTOCOL.md §3.6): what a target and a reply
//! subject may be, the loop guard, and the rate limit.

use super::config::RateLimit;
use coro_core::protocol::Hop;
use std::sync::Mutex;
use std::time::Instant;

/// A literal NATS subject: tokens separated by single dots, none empty, no wildcards,
/// whitespace or control characters.
fn is_literal(subject: &str) -> bool {
    // Byte by byte while ASCII (every subject Choria makes): whitespace and control
    // characters are the bytes up to space, and DEL. Starting as if after a dot, an
    // empty subject, or an empty first or last token, fails.
    let mut prev = b'.';
    for &c in subject.as_bytes() {
        if c >= 0x80 {
            return is_literal_unicode(subject);
        }
        if c <= b' ' || c == 0x7f || c == b'*' || c == b'>' || (c == b'.' && prev == b'.') {
            return false;
        }
        prev = c;
    }
    prev != b'.'
}

/// [`is_literal`] for subjects with characters beyond ASCII.
fn is_literal_unicode(subject: &str) -> bool {
    !subject.is_empty()
        && !subject
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
        && subject.split('.').all(|t| !t.is_empty())
}

/// Whether `subject` is one a Choria server listens on:
/// `<collective>.broadcast.agent.<agent>`, `<collective>.broadcast.service.<agent>` or
/// `<collective>.node.<identity>` (identities may hold dots). The Ruby broker's rule,
/// with the service subjects Go clients also send.
pub fn is_choria_target(subject: &str) -> bool {
    if !is_literal(subject) {
        return false;
    }
    let mut tokens = subject.split('.').skip(1);
    matches!(
        (tokens.next(), tokens.next(), tokens.next(), tokens.next()),
        (Some("broadcast"), Some("agent" | "service"), Some(_), None)
            | (Some("node"), Some(_), _, _)
    )
}

/// Whether `subject` is a Choria reply subject: a `reply` token after the first one
/// with something after it (`<collective>.reply.<hash>.<id>` from Go,
/// `<collective>.reply.<hash>.<pid>.<n>` from Ruby), literal, and not one of the
/// federation's own subjects.
pub fn is_reply_subject(subject: &str) -> bool {
    // In a literal subject (no empty tokens) a `reply` token with tokens before and
    // after it is a `.reply.`.
    is_literal(subject) && !is_federation_subject(subject) && subject.contains(".reply.")
}

/// `choria.federation.…`: the brokers' own subjects, never a target or reply.
pub fn is_federation_subject(subject: &str) -> bool {
    subject.starts_with("choria.federation.")
}

/// Whether the NATS pattern `pattern` (`*` one token, `>` the rest) matches the literal
/// `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// Which reply subjects are accepted.
#[derive(Debug, Clone, Default)]
pub struct ReplyPolicy {
    allowed: Vec<String>,
}

impl ReplyPolicy {
    /// Reply subjects, plus any literal subject matching one of `allowed`.
    pub fn new(allowed: Vec<String>) -> Self {
        ReplyPolicy { allowed }
    }

    /// Whether `subject` may receive replies.
    pub fn allows(&self, subject: &str) -> bool {
        is_reply_subject(subject)
            || (is_literal(subject)
                && !is_federation_subject(subject)
                && self.allowed.iter().any(|p| subject_matches(p, subject)))
    }
}

/// Whether `hops` holds a hop this broker recorded for the same direction before:
/// its processor starts with `<identity> (` and names `transformer` (Go's hop text,
/// `<identity> (choria_nats_ingest:i, choria_request_transformer:j, ...)`).
pub fn passed_before(hops: &[Hop], identity_prefix: &str, transformer: &str) -> bool {
    passed_before_processors(
        hops.iter().filter_map(|hop| hop.get(1).map(String::as_str)),
        identity_prefix,
        transformer,
    )
}

/// [`passed_before`] over the hops' processors (their second elements).
pub fn passed_before_processors<'a>(
    mut processors: impl Iterator<Item = &'a str>,
    identity_prefix: &str,
    transformer: &str,
) -> bool {
    processors.any(|p| p.starts_with(identity_prefix) && p.contains(transformer))
}

/// A token bucket shared by the workers of one direction.
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        TokenBucket {
            limit,
            state: Mutex::new((f64::from(limit.burst), Instant::now())),
        }
    }

    /// Takes one token when there is one.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens =
            (*tokens + elapsed * f64::from(self.limit.per_second)).min(f64::from(self.limit.burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn targets() {
        for ok in [
            "mcollective.broadcast.agent.rpcutil",
            "choria.broadcast.service.puppet",
            "mcollective.node.node1.example.net",
            "mcollective.node.x",
        ] {
            assert!(is_choria_target(ok), "{ok}");
        }
        for bad in [
            "mcollective.discovery",
            "mcollective.broadcast.agent.*",
            "mcollective.broadcast.agent.>",
            "mcollective.broadcast.agent.a.b",
            "mcollective.node",
            "mcollective.node.",
            "choria.federation.london.federation",
            "mcollective.reply.abc.1",
            "a..node.b",
            "mcollective.node.a b",
            "",
        ] {
            assert!(!is_choria_target(bad), "{bad}");
        }
    }

    #[test]
    fn reply_subjects() {
        for ok in [
            "mcollective.reply.37bdf08389145a56c13096c178802d3b.a2f0ca717c694f2086cfa81b6c494648",
            "mcollective.reply.abc.1234.1",
            "mcollective.reply.async.x",
            "a.b.reply.c",
        ] {
            assert!(is_reply_subject(ok), "{ok}");
        }
        for bad in [
            "reply.x.y",
            "mcollective.reply",
            "mcollective.reply.*",
            "mcollective.reply.>",
            "mcollective.broadcast.agent.rpcutil",
            "choria.federation.reply.x",
            "choria.federation.london.collective",
            "dev.null",
            "",
        ] {
            assert!(!is_reply_subject(bad), "{bad}");
        }
        let policy = ReplyPolicy::new(vec!["choria.replies.>".into(), "*.async.*".into()]);
        assert!(policy.allows("choria.replies.x.y"));
        assert!(policy.allows("a.async.b"));
        assert!(policy.allows("mcollective.reply.x"));
        assert!(!policy.allows("a.async.b.c"));
        assert!(!policy.allows("choria.replies.*"));
        assert!(!ReplyPolicy::new(vec![">".into()]).allows("choria.federation.x.federation"));
    }

    #[test]
    fn patterns() {
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.c.d"));
        assert!(subject_matches("a.>", "a.b.c.d"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
    }

    #[test]
    fn loop_guard_reads_hops() {
        let hop = |p: &str| {
            vec![
                "nats://a:4222".to_string(),
                p.to_string(),
                "nats://b:4222".to_string(),
            ]
        };
        let hops = vec![
            hop("client.example.net"),
            hop("fb1.example.net (choria_nats_ingest:0, choria_request_transformer:3, choria_nats_egest:7)"),
        ];
        assert!(passed_before(
            &hops,
            "fb1.example.net (",
            "choria_request_transformer:"
        ));
        assert!(!passed_before(
            &hops,
            "fb1.example.net (",
            "choria_reply_transformer:"
        ));
        assert!(!passed_before(
            &hops,
            "fb2.example.net (",
            "choria_request_transformer:"
        ));
        // Ruby's two-element hops and odd ones are fine.
        assert!(!passed_before(
            &[vec!["x".into()], vec![]],
            "fb1 (",
            "choria_request_transformer:"
        ));
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let b = TokenBucket::new(RateLimit {
            per_second: 10,
            burst: 2,
        });
        let t0 = Instant::now();
        assert!(b.try_take_at(t0));
        assert!(b.try_take_at(t0));
        assert!(!b.try_take_at(t0));
        assert!(b.try_take_at(t0 + Duration::from_millis(100)));
        assert!(!b.try_take_at(t0 + Duration::from_millis(100)));
        // Never more than the burst, however long it waited.
        let later = t0 + Duration::from_secs(60);
        assert!(b.try_take_at(later));
        assert!(b.try_take_at(later));
        assert!(!b.try_take_at(later));
    }
}
