//! Filter: keep only the records an adapter wants. A record passes when every rule that
//! is set matches (within a rule, any entry may match). Left-out records are answered
//! [`Outcome::Filtered`], which ingest acknowledges.

use crate::sink::Outcome;
use crate::{Kind, Record};
use futures::future::{self, Either, Ready};
use serde::Deserialize;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Which records to keep. Empty lists keep everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRules {
    /// NATS subject patterns (`*` one token, `>` the rest).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Agent names.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Sub-collectives (records without one, replies, never match a set list).
    #[serde(default)]
    pub collectives: Vec<String>,
    /// Sender identities; `*` matches any run of characters (`*.example.net`).
    #[serde(default)]
    pub senders: Vec<String>,
    /// Record kinds: `request`, `reply`, `registration`, `lifecycle`.
    #[serde(default)]
    pub kinds: Vec<Kind>,
}

impl FilterRules {
    /// Whether `record` passes every rule that is set.
    pub fn matches(&self, record: &Record) -> bool {
        (self.subjects.is_empty()
            || self
                .subjects
                .iter()
                .any(|p| subject_matches(p, &record.subject)))
            && (self.agents.is_empty() || self.agents.contains(&record.agent))
            && (self.collectives.is_empty()
                || record
                    .collective
                    .as_ref()
                    .is_some_and(|c| self.collectives.contains(c)))
            && (self.senders.is_empty()
                || self.senders.iter().any(|p| glob_matches(p, &record.sender)))
            && (self.kinds.is_empty() || self.kinds.contains(&record.kind))
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        *self == FilterRules::default()
    }
}

/// NATS subject matching: tokens split on `.`, `*` matches exactly one token, a final
/// `>` matches one or more.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// `*` matches any run of characters, everything else itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Applies [`FilterRules`].
#[derive(Debug, Clone)]
pub struct FilterLayer {
    rules: Arc<FilterRules>,
}

impl FilterLayer {
    /// A filter layer with `rules`.
    pub fn new(rules: FilterRules) -> Self {
        FilterLayer {
            rules: Arc::new(rules),
        }
    }
}

impl<S> Layer<S> for FilterLayer {
    type Service = Filter<S>;

    fn layer(&self, inner: S) -> Filter<S> {
        Filter {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The filter service; see [`FilterLayer`].
#[derive(Debug, Clone)]
pub struct Filter<S> {
    inner: S,
    rules: Arc<FilterRules>,
}

impl<S> Service<Record> for Filter<S>
where
    S: Service<Record, Response = Outcome>,
{
    type Response = Outcome;
    type Error = S::Error;
    type Future = Either<Ready<Result<Outcome, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, record: Record) -> Self::Future {
        if self.rules.matches(&record) {
            Either::Right(self.inner.call(record))
        } else {
            Either::Left(future::ready(Ok(Outcome::Filtered)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Version;

    fn record(subject: &str, sender: &str, kind: Kind) -> Record {
        Record {
            subject: subject.into(),
            version: Version::V1,
            kind,
            sender: sender.into(),
            request_id: "r".into(),
            agent: "rpcutil".into(),
            collective: Some("mcollective".into()),
            time_ns: 0,
            body: Default::default(),
            raw: Default::default(),
        }
    }

    #[test]
    fn nats_wildcards() {
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.c.d"));
        assert!(subject_matches("a.>", "a.b.c.d"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches(
            "*.broadcast.agent.registration",
            "mcollective.broadcast.agent.registration"
        ));
        assert!(!subject_matches("a.b", "a"));
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*.example.net", "node1.example.net"));
        assert!(glob_matches("node*", "node1"));
        assert!(glob_matches("n*e*t", "node1.example.net"));
        assert!(!glob_matches("*.example.com", "node1.example.net"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(glob_matches("*", ""));
    }

    #[test]
    fn every_set_rule_must_match() {
        let rules = FilterRules {
            subjects: vec!["*.reply.>".into()],
            senders: vec!["*.example.net".into()],
            kinds: vec![Kind::Reply],
            ..Default::default()
        };
        assert!(rules.matches(&record(
            "mcollective.reply.x.y",
            "n1.example.net",
            Kind::Reply
        )));
        assert!(!rules.matches(&record(
            "mcollective.reply.x.y",
            "n1.example.com",
            Kind::Reply
        )));
        assert!(!rules.matches(&record(
            "mcollective.reply.x.y",
            "n1.example.net",
            Kind::Request
        )));
        assert!(!rules.matches(&record("other", "n1.example.net", Kind::Reply)));
        assert!(FilterRules::default().matches(&record("x", "y", Kind::Lifecycle)));
        let coll = FilterRules {
            collectives: vec!["mcollective".into()],
            ..Default::default()
        };
        let mut reply = record("x", "y", Kind::Reply);
        assert!(coll.matches(&reply));
        reply.collective = None;
        assert!(!coll.matches(&reply));
    }
}
