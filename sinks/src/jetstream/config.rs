//! JetStream sink settings, and the subject template.

use crate::encoding::Encoding;
use coro_core::config::checks::{check_server_url, check_stream_name, check_subject};
use coro_core::config::{unknown_hint, ConfigError, SinkSpec};
use coro_core::Record;
use serde::Deserialize;
use std::time::Duration;

/// `type = "jetstream"`: publish to a subject a JetStream stream captures, awaiting
/// the PubAck.
///
/// ```toml
/// [[adapter.sink]]
/// type = "jetstream"
/// servers = ["nats://127.0.0.1:4222"]
/// subject = "choria.registration.%s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStreamConfig {
    /// NATS servers, `nats://` or `tls://` URLs, e.g. `["nats://127.0.0.1:4222"]`.
    /// Required, at least one.
    pub servers: Vec<String>,
    /// Subject template. Required. `%s` (Choria's form) and `{sender}` become the
    /// sender identity, `{agent}` the agent, `{collective}` the sub-collective (`none`
    /// when the record has none, as replies do) and `{kind}` the record kind
    /// (`request`, `reply`, `registration`, `lifecycle`).
    pub subject: String,
    /// How each record is written: `choria_streams` (default), `record` or `raw`.
    #[serde(default)]
    pub encoding: Encoding,
    /// The stream expected to capture the subject; when set, `coro validate --online`
    /// checks that it exists and covers the subject.
    #[serde(default)]
    pub stream: Option<String>,
    /// PubAcks awaited at once. Default 256, at least 1.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long to wait for a PubAck. Default 5 s.
    #[serde(default = "default_ack_timeout", with = "coro_core::config::duration")]
    pub ack_timeout: Duration,
}

const fn default_max_in_flight() -> usize {
    256
}

const fn default_ack_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The `{placeholders}` a subject template may use (besides `%s`).
pub const PLACEHOLDERS: [&str; 4] = ["sender", "agent", "collective", "kind"];

/// What `{collective}` becomes for a record without a sub-collective.
pub const NO_COLLECTIVE: &str = "none";

/// A piece of a subject template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// `%s` or `{sender}`.
    Sender,
    Agent,
    Collective,
    Kind,
    /// `{anything else}`, without the braces.
    Unknown(&'a str),
}

/// Splits a template into text and placeholders. A `{` without a `}` is text.
fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['%', '{']) {
        let tail = &rest[i..];
        let (piece, len) = if tail.starts_with("%s") {
            (Some(Piece::Sender), 2)
        } else if let Some(end) = tail.strip_prefix('{').and_then(|t| t.find('}')) {
            let name = &tail[1..=end];
            let piece = match name {
                "sender" => Piece::Sender,
                "agent" => Piece::Agent,
                "collective" => Piece::Collective,
                "kind" => Piece::Kind,
                other => Piece::Unknown(other),
            };
            (Some(piece), end + 2)
        } else {
            (None, 1)
        };
        match piece {
            Some(p) => {
                if i > 0 {
                    out.push(Piece::Text(&rest[..i]));
                }
                out.push(p);
            }
            None => out.push(Piece::Text(&rest[..i + len])),
        }
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

impl JetStreamConfig {
    /// Examples for the required keys, for hints.
    pub(crate) const EXAMPLES: &'static [(&'static str, &'static str)] = &[
        ("servers", "servers = [\"nats://127.0.0.1:4222\"]"),
        ("subject", "subject = \"choria.registration.%s\""),
    ];

    /// The subject for `record`: the template with its placeholders filled in. Values
    /// are inserted as they are (a sender `node1.example.net` adds three tokens), as
    /// Choria does.
    pub fn subject_for(&self, record: &Record) -> String {
        let mut out = String::with_capacity(self.subject.len() + record.sender.len());
        for piece in pieces(&self.subject) {
            let value: &str = match piece {
                Piece::Text(t) => t,
                Piece::Sender => &record.sender,
                Piece::Agent => &record.agent,
                Piece::Collective => record.collective.as_deref().unwrap_or(NO_COLLECTIVE),
                Piece::Kind => record.kind.as_str(),
                Piece::Unknown(name) => {
                    // Rejected by `check`; kept verbatim if it gets here anyway.
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                    continue;
                }
            };
            out.push_str(value);
        }
        out
    }

    /// The problems serde cannot see, each at the line of its key in `spec`.
    pub fn check(&self, spec: &SinkSpec) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.servers.is_empty() {
            errors.push(
                spec.error("servers", "needs at least one server")
                    .with_hint(format!("write e.g. {}", Self::EXAMPLES[0].1)),
            );
        }
        for server in &self.servers {
            if let Err(why) = check_server_url(server) {
                errors.push(
                    spec.error("servers", why)
                        .with_hint("use nats:// or tls:// URLs, e.g. nats://127.0.0.1:4222"),
                );
            }
        }
        errors.extend(self.check_subject(spec));
        if let Some(stream) = &self.stream {
            if let Err(why) = check_stream_name(stream) {
                errors.push(spec.error("stream", why).with_hint(format!(
                    "write e.g. {}",
                    spec.example("stream", "CHORIA_REGISTRATION")
                )));
            }
        }
        if self.max_in_flight == 0 {
            errors.push(
                spec.error("max_in_flight", "must be at least 1")
                    .with_hint(format!(
                        "write e.g. {}",
                        spec.example("max_in_flight", default_max_in_flight() as i64)
                    )),
            );
        }
        if self.ack_timeout.is_zero() {
            errors.push(
                spec.error("ack_timeout", "must be longer than 0s")
                    .with_hint(format!("write e.g. {}", spec.example("ack_timeout", "5s"))),
            );
        }
        errors
    }

    fn check_subject(&self, spec: &SinkSpec) -> Option<ConfigError> {
        let example = || {
            format!(
                "write e.g. {}",
                spec.example("subject", "choria.registration.%s")
            )
        };
        let mut sample = String::new();
        for piece in pieces(&self.subject) {
            match piece {
                Piece::Text(t) => sample.push_str(t),
                Piece::Unknown(name) => {
                    let hint = match coro_core::config::did_you_mean(name, PLACEHOLDERS) {
                        Some(best) => format!("did you mean `{{{best}}}`?"),
                        None => format!(
                            "{}, or %s for the sender",
                            unknown_hint(name, PLACEHOLDERS).replace('`', "")
                        ),
                    };
                    return Some(
                        spec.error("subject", format!("unknown placeholder `{{{name}}}`"))
                            .with_hint(hint),
                    );
                }
                _ => sample.push('x'),
            }
        }
        check_subject(&sample, false).err().map(|why| {
            spec.error("subject", why.replace(&sample, &self.subject))
                .with_hint(example())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coro_core::protocol::Version;
    use coro_core::Kind;

    fn config(subject: &str) -> JetStreamConfig {
        JetStreamConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            subject: subject.into(),
            encoding: Encoding::ChoriaStreams,
            stream: None,
            max_in_flight: default_max_in_flight(),
            ack_timeout: default_ack_timeout(),
        }
    }

    fn record(collective: Option<&str>) -> Record {
        Record {
            subject: "mcollective.broadcast.agent.registration".into(),
            version: Version::V1,
            kind: Kind::Registration,
            sender: "node1.example.net".into(),
            request_id: "r1".into(),
            agent: "registration".into(),
            collective: collective.map(str::to_string),
            time_ns: 0,
            body: bytes::Bytes::new(),
            raw: bytes::Bytes::new(),
        }
    }

    #[test]
    fn choria_style_sender() {
        let c = config("choria.registration.%s");
        assert_eq!(
            c.subject_for(&record(None)),
            "choria.registration.node1.example.net"
        );
    }

    #[test]
    fn named_placeholders() {
        let c = config("coro.{kind}.{collective}.{agent}.{sender}");
        assert_eq!(
            c.subject_for(&record(Some("mcollective"))),
            "coro.registration.mcollective.registration.node1.example.net"
        );
        assert_eq!(
            c.subject_for(&record(None)),
            "coro.registration.none.registration.node1.example.net"
        );
    }

    #[test]
    fn text_without_placeholders_is_kept() {
        assert_eq!(config("a.b").subject_for(&record(None)), "a.b");
        assert_eq!(config("a.{b").subject_for(&record(None)), "a.{b");
        assert_eq!(config("100%.x").subject_for(&record(None)), "100%.x");
        assert_eq!(
            config("%s%s").subject_for(&record(None)),
            "node1.example.netnode1.example.net"
        );
    }

    #[test]
    fn values_are_not_expanded_again() {
        let mut r = record(None);
        r.sender = "{agent}".into();
        assert_eq!(config("x.%s").subject_for(&r), "x.{agent}");
    }

    #[test]
    fn pieces_split_the_template() {
        assert_eq!(
            pieces("a.%s.{kind}.{bogus}"),
            vec![
                Piece::Text("a."),
                Piece::Sender,
                Piece::Text("."),
                Piece::Kind,
                Piece::Text("."),
                Piece::Unknown("bogus"),
            ]
        );
    }
}
