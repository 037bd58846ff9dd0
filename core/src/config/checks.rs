//! Semantic checks that serde cannot make: valid and unique names, counts of at least
//! one, valid NATS subjects and server URLs. They run on the typed config, so
//! `adapters.toml` and a Choria `broker.conf` get the same checks, each error at the
//! line the setting was written on.

use super::adapters::{AdapterConfig, AdaptersConfig, IngestConfig, SinkSpec};
use super::error::ConfigError;
use std::collections::BTreeMap;

/// Every semantic problem in `config`, in adapter order. (Adapter names are checked
/// for duplicates by the readers, which see the adapters that could not be read too.)
pub fn check(config: &AdaptersConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for adapter in &config.adapters {
        if let Err(why) = check_name(&adapter.name) {
            errors.push(
                adapter
                    .error(
                        "name",
                        format!("`{}` is not a valid adapter name: {why}", adapter.name),
                    )
                    .with_hint(format!(
                        "use letters, digits, `_` and `-`, e.g. {}",
                        adapter.origins.example("name", "registration")
                    )),
            );
        }
        check_adapter(adapter, &mut errors);
    }
    errors
}

fn at_least_one(
    adapter: &AdapterConfig,
    rel: &str,
    value: usize,
    example: usize,
) -> Option<ConfigError> {
    (value == 0).then(|| {
        adapter.error(rel, "must be at least 1").with_hint(format!(
            "write e.g. {}",
            adapter.origins.example(rel, example as i64)
        ))
    })
}

fn check_adapter(adapter: &AdapterConfig, errors: &mut Vec<ConfigError>) {
    let servers = adapter.ingest.servers();
    if servers.is_empty() {
        errors.push(
            adapter
                .error("ingest.servers", "needs at least one server")
                .with_hint(format!(
                    "write e.g. {}",
                    adapter
                        .origins
                        .example("ingest.servers", vec!["nats://127.0.0.1:4222"])
                )),
        );
    }
    for server in servers {
        if let Err(why) = check_server_url(server) {
            errors.push(
                adapter
                    .error("ingest.servers", why)
                    .with_hint("use nats:// or tls:// URLs, e.g. nats://127.0.0.1:4222"),
            );
        }
    }
    let subject_hint = |rel: &str| {
        format!(
            "write e.g. {}",
            adapter
                .origins
                .example(rel, "*.broadcast.agent.registration")
        )
    };
    match &adapter.ingest {
        IngestConfig::Nats(n) => {
            if let Err(why) = check_subject(&n.subject, true) {
                errors.push(
                    adapter
                        .error("ingest.subject", why)
                        .with_hint(subject_hint("ingest.subject")),
                );
            }
            errors.extend(at_least_one(adapter, "ingest.workers", n.workers, 10));
            errors.extend(at_least_one(adapter, "ingest.queue_len", n.queue_len, 1000));
        }
        IngestConfig::JetStream(j) => {
            if let Some(subject) = &j.subject {
                if let Err(why) = check_subject(subject, true) {
                    errors.push(
                        adapter
                            .error("ingest.subject", why)
                            .with_hint(subject_hint("ingest.subject")),
                    );
                }
            }
            for (rel, value) in [
                ("ingest.stream", &j.stream),
                ("ingest.consumer", &j.consumer),
            ] {
                if let Err(why) = check_stream_name(value) {
                    errors.push(
                        adapter.error(rel, why).with_hint(
                            "use letters, digits, `_` and `-`, e.g. CHORIA_REGISTRATION",
                        ),
                    );
                }
            }
            errors.extend(at_least_one(
                adapter,
                "ingest.fetch_batch",
                j.fetch_batch,
                100,
            ));
            errors.extend(at_least_one(
                adapter,
                "ingest.max_ack_pending",
                j.max_ack_pending,
                1000,
            ));
        }
    }
    let p = &adapter.pipeline;
    errors.extend(at_least_one(
        adapter,
        "pipeline.concurrency",
        p.concurrency,
        4,
    ));
    errors.extend(at_least_one(
        adapter,
        "pipeline.batch.max_records",
        p.batch.max_records,
        100,
    ));
    if p.retry.max_attempts == Some(0) {
        errors.push(
            adapter
                .error("pipeline.retry.max_attempts", "must be at least 1")
                .with_hint("leave it out to retry without limit, or write e.g. max_attempts = 5"),
        );
    }
    let mut seen: BTreeMap<&str, &SinkSpec> = BTreeMap::new();
    for sink in adapter.sinks.iter().chain(&adapter.dead_letter) {
        if let Err(why) = check_name(&sink.name) {
            errors.push(
                sink.error(
                    "name",
                    format!("`{}` is not a valid sink name: {why}", sink.name),
                )
                .with_hint("use letters, digits, `_` and `-`"),
            );
        }
    }
    for sink in &adapter.sinks {
        if let Some(first) = seen.get(sink.name.as_str()) {
            let at = first
                .origins
                .get_exact("name")
                .map_or(first.location.line, |o| o.location.line);
            errors.push(
                sink.error("name", format!("duplicate sink name `{}`", sink.name))
                    .with_hint(format!(
                        "sink names must be unique within an adapter; the first is at line {at}"
                    )),
            );
        } else {
            seen.insert(&sink.name, sink);
        }
    }
}

/// Checks an adapter or sink name: `[A-Za-z0-9_-]+`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(c) => Err(format!("{c:?} is not allowed")),
        None => Ok(()),
    }
}

/// Checks a NATS subject: not empty, no whitespace, no empty tokens, and with
/// `wildcards`, `>` only as the last token; without, no `*` or `>` tokens at all
/// (a subject to publish to).
pub fn check_subject(subject: &str, wildcards: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{subject}` is not a valid subject: {why}"));
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    if subject.chars().any(char::is_whitespace) {
        return bad("it contains whitespace");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return bad("it has an empty token (tokens are separated by single dots)");
    }
    let last = tokens.len() - 1;
    for (i, t) in tokens.iter().enumerate() {
        match *t {
            "*" | ">" if !wildcards => return bad("wildcards cannot be published to"),
            ">" if i != last => return bad("`>` may only be the last token"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a NATS server URL: `nats://` or `tls://`, then a host, an optional port.
pub fn check_server_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{url}` has no scheme"));
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "nats" | "tls") {
        return Err(format!("`{url}` is not a NATS URL (scheme `{scheme}`)"));
    }
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host_port = host_port.trim_end_matches('/');
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, tail)) => match tail.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("`{url}` has no valid host")),
            },
            None => return Err(format!("`{url}` has no valid host")),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err(format!("`{url}` has no valid host"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!("`{url}` has an invalid port `{port}`"));
        }
    }
    Ok(())
}

/// Checks a JetStream stream or consumer name: not empty, and none of whitespace, `.`,
/// `*`, `>`, `/`, `\`.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    match name
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        Some(c) => Err(format!(
            "`{name}` is not a valid name: {c:?} is not allowed"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert!(check_subject("*.broadcast.agent.registration", true).is_ok());
        assert!(check_subject("choria.>", true).is_ok());
        assert_eq!(
            check_subject("a.>.b", true).unwrap_err(),
            "`a.>.b` is not a valid subject: `>` may only be the last token"
        );
        assert!(check_subject("a..b", true).is_err());
        assert!(check_subject(".a", true).is_err());
        assert!(check_subject("a b", true).is_err());
        assert!(check_subject("", true).is_err());
        assert!(check_subject("a.*", false).is_err());
        assert!(check_subject("a.b", false).is_ok());
    }

    #[test]
    fn server_urls() {
        for ok in [
            "nats://127.0.0.1:4222",
            "tls://broker.example.net:4222",
            "nats://user:pass@host",
            "NATS://host:4222/",
            "nats://[::1]:4222",
        ] {
            assert_eq!(check_server_url(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_server_url("http://x:1").unwrap_err(),
            "`http://x:1` is not a NATS URL (scheme `http`)"
        );
        assert_eq!(
            check_server_url("127.0.0.1:4222").unwrap_err(),
            "`127.0.0.1:4222` has no scheme"
        );
        assert!(check_server_url("nats://").is_err());
        assert!(check_server_url("nats://h:port").is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("registration-2_x").is_ok());
        assert_eq!(check_name("a.b").unwrap_err(), "'.' is not allowed");
        assert!(check_name("").is_err());
        assert!(check_stream_name("CHORIA_REGISTRATION").is_ok());
        assert!(check_stream_name("a.b").is_err());
    }
}
