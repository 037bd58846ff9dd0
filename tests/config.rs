//! Configuration: the repo's adapters.toml, every kind of error with its exact message
//! (file, line, column, key, what to write instead), and a Choria broker.conf adapter
//! section mapped onto the same model.

mod common;

use coro::core::config::{
    self, toml, AdaptersConfig, ChoriaConfig, ConfigErrors, IngestConfig, NatsIngest, Protocol,
};
use coro::core::pipeline::PipelineSettings;
use coro::sinks::config::{check_sinks, SinkConfig};
use coro::sinks::encoding::Encoding;
use coro::sinks::jetstream::config::JetStreamConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// `text` read as `adapters.toml`, sinks typed too, as `coro validate` does.
fn check(name: &str, text: &str) -> Result<AdaptersConfig, ConfigErrors> {
    coro::sinks::config::parse(Path::new(name), text).map(|(config, _)| config)
}

/// The errors for `text` as `adapters.toml`, one string each.
fn errors(text: &str) -> Vec<String> {
    errors_in("adapters.toml", text)
}

fn errors_in(name: &str, text: &str) -> Vec<String> {
    match check(name, text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// A valid adapter; tests append to it or replace a line of it.
const BASE: &str = r#"[[adapter]]
name = "registration"

[adapter.ingest]
type = "nats"
servers = ["nats://127.0.0.1:4222"]
subject = "*.broadcast.agent.registration"

[[adapter.sink]]
type = "jetstream"
servers = ["nats://127.0.0.1:4222"]
subject = "choria.registration.%s"
"#;

/// `BASE` with `from` replaced by `to` (which must be there once).
fn base_with(from: &str, to: &str) -> String {
    assert_eq!(BASE.matches(from).count(), 1, "{from}");
    BASE.replace(from, to)
}

#[test]
fn repo_adapters_toml_validates() {
    let path = repo_file("adapters.toml");
    let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = config.adapters.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["registration", "replies"]);
    let a = &config.adapters[0];
    let mut expected = NatsIngest::new(
        "registration",
        vec!["nats://127.0.0.1:4222".into()],
        "*.broadcast.agent.registration",
    );
    expected.protocol = Protocol::Request;
    assert_eq!(a.ingest, IngestConfig::Nats(expected));
    assert_eq!(a.pipeline, PipelineSettings::default());
    assert_eq!(a.dead_letter.as_ref().unwrap().kind, "file");
    let sinks: Vec<_> = a.sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sinks, ["jetstream", "file"]);
    assert_eq!(
        SinkConfig::from_spec(&a.sinks[0]).unwrap(),
        SinkConfig::JetStream(JetStreamConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            subject: "choria.registration.%s".into(),
            encoding: Encoding::ChoriaStreams,
            stream: Some("CHORIA_REGISTRATION".into()),
            max_in_flight: 256,
            ack_timeout: Duration::from_secs(5),
        })
    );
    let IngestConfig::JetStream(replies) = &config.adapters[1].ingest else {
        panic!("replies should consume JetStream");
    };
    assert_eq!(replies.stream, "CHORIA_RPC_INBOX");
    assert_eq!(replies.consumer, "coro_replies");
    assert_eq!(replies.protocol, Protocol::Reply);
    assert_eq!(
        config.http.listen,
        "127.0.0.1:8222".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.http.drain_timeout, Duration::from_secs(30));
    assert!(!config.http.identity.is_empty());
    check_sinks(&config).unwrap();
}

/// Every commented-out setting in adapters.toml (`# key = value`, `# [table]`) is valid
/// too once uncommented, so the examples do not rot.
#[test]
fn repo_adapters_toml_examples_validate_uncommented() {
    let text = std::fs::read_to_string(repo_file("adapters.toml")).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest
            }
            _ => line,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let config =
        check("adapters.toml", &uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let registration = &config.adapters[0];
    assert_eq!(
        registration.pipeline.batch.timeout,
        Duration::from_millis(100)
    );
    assert_eq!(config.http.identity, "broker1");
    let IngestConfig::JetStream(replies) = &config.adapters[1].ingest else {
        panic!("replies should consume JetStream");
    };
    assert_eq!(replies.fetch_batch, 100);
    assert_eq!(replies.max_ack_pending, 1000);
    assert_eq!(replies.ack_wait, Duration::from_secs(30));
}

#[test]
fn defaults_and_sink_names() {
    let text = format!(
        "{BASE}\n[[adapter.sink]]\ntype = \"jetstream\"\nservers = [\"nats://h:4222\"]\n\
         subject = \"x.{{kind}}\"\n[[adapter.sink]]\ntype = \"blackhole\"\nname = \"jetstream_2\"\n\
         [[adapter.sink]]\ntype = \"blackhole\"\n[adapter.dead_letter]\ntype = \"blackhole\"\n"
    );
    let config = check("adapters.toml", &text).unwrap();
    let a = &config.adapters[0];
    let names: Vec<_> = a.sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["jetstream", "jetstream_3", "jetstream_2", "blackhole"]
    );
    assert_eq!(a.dead_letter.as_ref().unwrap().name, "blackhole");
    let IngestConfig::Nats(n) = &a.ingest else {
        panic!()
    };
    assert_eq!(n.queue_group, "nats_ingest_registration");
    assert_eq!((n.workers, n.queue_len), (10, 1000));
    assert_eq!(n.block_for, Duration::from_secs(1));
    assert_eq!(n.protocol, Protocol::Any);
    let http = config::parse(
        Path::new("adapters.toml"),
        &format!(
            "[http]\nlisten = \"0.0.0.0:9000\"\nidentity = \"b1\"\ndrain_timeout = \"5s\"\n{BASE}"
        ),
    )
    .unwrap()
    .http;
    assert_eq!(http.listen, "0.0.0.0:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(http.identity, "b1");
    assert_eq!(http.drain_timeout, Duration::from_secs(5));
}

#[test]
fn invalid_toml() {
    assert_eq!(
        errors("[[adapter]]\nname = \n"),
        ["adapters.toml:2:8: invalid TOML: string values must be quoted, expected literal string"]
    );
}

#[test]
fn unknown_keys_suggest_the_closest() {
    assert_eq!(
        errors(&format!("[htp]\nlisten = \"127.0.0.1:1\"\n{BASE}")),
        ["adapters.toml:1:2: unknown key `htp`; did you mean `http`?"]
    );
    assert_eq!(
        errors(&base_with("name = \"registration\"", "name = \"registration\"\nsinks = 1")),
        ["adapters.toml:3:1: adapter \"registration\": unknown key `sinks`; did you mean `sink`?"]
    );
    assert_eq!(
        errors(&base_with("subject = \"*.", "subjet = \"*.")),
        ["adapters.toml:7:1: adapter \"registration\".ingest: unknown key `subjet`; did you mean `subject`?"]
    );
    assert_eq!(
        errors(&base_with("type = \"nats\"", "type = \"nats\"\ncolour = \"blue\"")),
        [
            "adapters.toml:6:1: adapter \"registration\".ingest: unknown key `colour`; expected one of \
             `servers`, `subject`, `queue_group`, `workers`, `queue_len`, `block_for`, `protocol`"
        ]
    );
    assert_eq!(
        errors(&format!("{BASE}[adapter.pipeline.batch]\nmax_recrds = 5\n")),
        ["adapters.toml:14:1: adapter \"registration\".pipeline.batch: unknown key `max_recrds`; did you mean `max_records`?"]
    );
    assert_eq!(
        errors(&format!("{BASE}stram = \"S\"\n")),
        ["adapters.toml:13:1: adapter \"registration\": sink \"jetstream\": unknown key `stram`; did you mean `stream`?"]
    );
    assert_eq!(
        errors(&format!("[http]\nlisen = \"127.0.0.1:1\"\n{BASE}")),
        ["adapters.toml:2:1: http: unknown key `lisen`; did you mean `listen`?"]
    );
}

#[test]
fn unknown_values_suggest_the_closest() {
    assert_eq!(
        errors(&base_with("type = \"nats\"", "type = \"nast\"")),
        ["adapters.toml:5:8: adapter \"registration\".ingest.type: unknown ingest type `nast`; did you mean `nats`?"]
    );
    assert_eq!(
        errors(&base_with("type = \"nats\"", "type = \"kafka\"")),
        ["adapters.toml:5:8: adapter \"registration\".ingest.type: unknown ingest type `kafka`; expected one of `nats`, `jetstream`"]
    );
    assert_eq!(
        errors(&base_with("type = \"nats\"", "type = \"nats\"\nprotocol = \"requests\"")),
        ["adapters.toml:6:12: adapter \"registration\".ingest.protocol: unknown value `requests`; did you mean `request`?"]
    );
    assert_eq!(
        errors(&base_with("type = \"jetstream\"", "type = \"jetstraem\"")),
        [
            "adapters.toml:10:1: adapter \"registration\": sink \"jetstraem\": type: unknown sink type \
             `jetstraem`; did you mean `jetstream`? known types: blackhole, elasticsearch, file, \
             jetstream, kafka, kinesis, plugin, pubsub"
        ]
    );
    assert_eq!(
        errors(&format!("{BASE}encoding = \"json\"\n")),
        [
            "adapters.toml:13:1: adapter \"registration\": sink \"jetstream\": encoding: unknown value \
             `json`; expected one of `choria_streams`, `record`, `raw`"
        ]
    );
}

#[test]
fn missing_keys_say_what_to_write() {
    assert_eq!(
        errors(&base_with("name = \"registration\"\n", "")),
        ["adapters.toml:1:1: adapter[0]: missing required key `name`; write e.g. name = \"registration\""]
    );
    assert_eq!(
        errors(&base_with("type = \"nats\"\n", "")),
        [
            "adapters.toml:4:1: adapter \"registration\".ingest: missing required key `type`; write type = \
             \"nats\" (core NATS, at-most-once) or type = \"jetstream\" (durable consumer, at-least-once)"
        ]
    );
    assert_eq!(
        errors(&base_with("subject = \"*.broadcast.agent.registration\"\n", "")),
        [
            "adapters.toml:4:1: adapter \"registration\".ingest: missing required key `subject`; write e.g. \
             subject = \"*.broadcast.agent.registration\""
        ]
    );
    assert_eq!(
        errors("[[adapter]]\nname = \"a\"\n[[adapter.sink]]\ntype = \"blackhole\"\n"),
        [
            "adapters.toml:1:1: adapter \"a\": missing required key `ingest`; add an [adapter.ingest] table \
             with type = \"nats\" or type = \"jetstream\""
        ]
    );
    assert_eq!(
        errors(&base_with("subject = \"choria.registration.%s\"\n", "")),
        [
            "adapters.toml:9:1: adapter \"registration\": sink \"jetstream\": missing required key `subject`; \
             write e.g. subject = \"choria.registration.%s\""
        ]
    );
    assert_eq!(
        errors(&format!("{BASE}[[adapter.sink]]\nname = \"copy\"\n")),
        ["adapters.toml:13:1: adapter \"registration\": sink[1]: missing required key `type`; write e.g. type = \"jetstream\""]
    );
    assert_eq!(
        errors("# nothing yet\n"),
        ["adapters.toml: no adapters configured; add an [[adapter]] table"]
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        errors(&base_with("type = \"nats\"", "type = \"nats\"\nworkers = \"ten\"")),
        ["adapters.toml:6:11: adapter \"registration\".ingest.workers: invalid type: string \"ten\", expected usize"]
    );
    assert_eq!(
        errors(&base_with("type = \"nats\"", "type = \"nats\"\nblock_for = \"soon\"")),
        [
            "adapters.toml:6:13: adapter \"registration\".ingest.block_for: \"soon\" is not a duration \
             (expected number at 0); write e.g. \"250ms\", \"30s\" or \"5m\""
        ]
    );
    assert_eq!(
        errors(&format!("[http]\nlisten = \"localhost\"\n{BASE}")),
        ["adapters.toml:2:10: http.listen: not a socket address; write e.g. \"127.0.0.1:8222\" or \"[::1]:8222\""]
    );
    assert_eq!(
        errors(&base_with("name = \"registration\"", "name = 7")),
        ["adapters.toml:2:8: adapter[0].name: must be a string, not integer; write e.g. name = \"registration\""]
    );
    assert_eq!(
        errors("[adapter]\nname = \"a\"\n"),
        ["adapters.toml:1:2: adapter: must be a list of tables; write each adapter as an [[adapter]] table"]
    );
    assert_eq!(
        errors(&format!("{BASE}max_in_flight = -1\n")),
        [
            "adapters.toml:13:1: adapter \"registration\": sink \"jetstream\": max_in_flight: invalid value: \
             integer `-1`, expected usize"
        ]
    );
}

#[test]
fn semantic_checks() {
    assert_eq!(
        errors(&base_with("type = \"nats\"", "type = \"nats\"\nworkers = 0\nqueue_len = 0")),
        [
            "adapters.toml:6:1: adapter \"registration\".ingest.workers: must be at least 1; write e.g. workers = 10",
            "adapters.toml:7:1: adapter \"registration\".ingest.queue_len: must be at least 1; write e.g. queue_len = 1000",
        ]
    );
    assert_eq!(
        errors(&base_with("\"*.broadcast.agent.registration\"", "\"a..b\"")),
        [
            "adapters.toml:7:1: adapter \"registration\".ingest.subject: `a..b` is not a valid subject: it has an \
             empty token (tokens are separated by single dots); write e.g. subject = \"*.broadcast.agent.registration\""
        ]
    );
    assert_eq!(
        errors(&base_with("\"*.broadcast.agent.registration\"", "\"choria.>.x\"")),
        [
            "adapters.toml:7:1: adapter \"registration\".ingest.subject: `choria.>.x` is not a valid subject: `>` \
             may only be the last token; write e.g. subject = \"*.broadcast.agent.registration\""
        ]
    );
    assert_eq!(
        errors(&base_with("\"*.broadcast.agent.registration\"", "\"choria broadcast\"")),
        [
            "adapters.toml:7:1: adapter \"registration\".ingest.subject: `choria broadcast` is not a valid subject: \
             it contains whitespace; write e.g. subject = \"*.broadcast.agent.registration\""
        ]
    );
    assert_eq!(
        errors(&BASE.replacen("nats://127.0.0.1:4222", "http://127.0.0.1:4222", 1)),
        [
            "adapters.toml:6:1: adapter \"registration\".ingest.servers: `http://127.0.0.1:4222` is not a NATS URL \
             (scheme `http`); use nats:// or tls:// URLs, e.g. nats://127.0.0.1:4222"
        ]
    );
    assert_eq!(
        errors(&BASE.replacen("[\"nats://127.0.0.1:4222\"]", "[]", 1)),
        [
            "adapters.toml:6:1: adapter \"registration\".ingest.servers: needs at least one server; write e.g. \
             servers = [\"nats://127.0.0.1:4222\"]"
        ]
    );
    assert_eq!(
        errors(&base_with("name = \"registration\"", "name = \"node.registration\"")),
        [
            "adapters.toml:2:1: adapter \"node.registration\".name: `node.registration` is not a valid adapter name: \
             '.' is not allowed; use letters, digits, `_` and `-`, e.g. name = \"registration\""
        ]
    );
    assert_eq!(
        errors(&format!("{BASE}\n{BASE}")),
        [
            "adapters.toml:15:8: adapter \"registration\".name: duplicate adapter name `registration`; adapter \
             names must be unique; the first is at line 2"
        ]
    );
    assert_eq!(
        errors(&BASE.replace("\n[[adapter.sink]]\ntype = \"jetstream\"\nservers = [\"nats://127.0.0.1:4222\"]\nsubject = \"choria.registration.%s\"\n", "")),
        [
            "adapters.toml:1:1: adapter \"registration\".sink: no sinks: every adapter needs at least one; add an \
             [[adapter.sink]] table, e.g. with type = \"jetstream\""
        ]
    );
    assert_eq!(
        errors(&format!(
            "{BASE}name = \"out\"\n[[adapter.sink]]\ntype = \"blackhole\"\nname = \"out\"\n"
        )),
        [
            "adapters.toml:16:1: adapter \"registration\": sink \"out\": name: duplicate sink name `out`; sink names \
             must be unique within an adapter; the first is at line 13"
        ]
    );
    assert_eq!(
        errors(&format!(
            "{BASE}[adapter.pipeline]\nconcurrency = 0\n[adapter.pipeline.retry]\nmax_attempts = 0\n"
        )),
        [
            "adapters.toml:14:1: adapter \"registration\".pipeline.concurrency: must be at least 1; write e.g. \
             concurrency = 4",
            "adapters.toml:16:1: adapter \"registration\".pipeline.retry.max_attempts: must be at least 1; leave it \
             out to retry without limit, or write e.g. max_attempts = 5",
        ]
    );
}

#[test]
fn jetstream_ingest_checks() {
    let text = "[[adapter]]\nname = \"replies\"\n[adapter.ingest]\ntype = \"jetstream\"\n\
                servers = [\"tls://nats.example.net:4222\"]\nstream = \"CHORIA.REPLIES\"\n\
                fetch_batch = 0\n[[adapter.sink]]\ntype = \"blackhole\"\n";
    assert_eq!(
        errors(text),
        [
            "adapters.toml:3:1: adapter \"replies\".ingest: missing required key `consumer`; write e.g. consumer = \
             \"coro_registration\""
        ]
    );
    let text = text.replace("fetch_batch", "consumer = \"c\"\nfetch_batch");
    assert_eq!(
        errors(&text),
        [
            "adapters.toml:6:1: adapter \"replies\".ingest.stream: `CHORIA.REPLIES` is not a valid name: '.' is not \
             allowed; use letters, digits, `_` and `-`, e.g. CHORIA_REGISTRATION",
            "adapters.toml:8:1: adapter \"replies\".ingest.fetch_batch: must be at least 1; write e.g. fetch_batch = 100",
        ]
    );
}

#[test]
fn sink_option_checks() {
    assert_eq!(
        errors(&base_with("\"choria.registration.%s\"", "\"choria.{sendr}\"")),
        [
            "adapters.toml:12:1: adapter \"registration\": sink \"jetstream\": subject: unknown placeholder \
             `{sendr}`; did you mean `{sender}`?"
        ]
    );
    assert_eq!(
        errors(&base_with("\"choria.registration.%s\"", "\"choria.>\"")),
        [
            "adapters.toml:12:1: adapter \"registration\": sink \"jetstream\": subject: `choria.>` is not a valid \
             subject: wildcards cannot be published to; write e.g. subject = \"choria.registration.%s\""
        ]
    );
    assert_eq!(
        errors(&format!("{BASE}[[adapter.sink]]\ntype = \"file\"\nmax_bytes = 0\nfsync = \"sometimes\"\n")),
        [
            "adapters.toml:13:1: adapter \"registration\": sink \"file\": missing required key `path`; write e.g. \
             path = \"/var/lib/coro/registration.jsonl\"",
            "adapters.toml:16:1: adapter \"registration\": sink \"file\": fsync: unknown value `sometimes`; expected \
             one of `always`, `never`",
        ]
    );
    assert_eq!(
        errors(&format!("{BASE}[[adapter.sink]]\ntype = \"blackhole\"\npath = \"/x\"\n")),
        ["adapters.toml:15:1: adapter \"registration\": sink \"blackhole\": unknown key `path`; this table takes no keys"]
    );
    assert_eq!(
        errors(&format!("{BASE}[adapter.dead_letter]\ntype = \"file\"\npth = \"/x\"\n")),
        [
            "adapters.toml:15:1: adapter \"registration\": dead_letter \"file\": unknown key `pth`; did you mean \
             `path`?"
        ]
    );
}

/// Several problems in one file are all reported, in line order.
#[test]
fn every_error_is_reported_in_file_order() {
    let text = r#"[[adapter]]
name = "registration"
[adapter.ingest]
type = "nats"
servers = ["nats://127.0.0.1:4222"]
subject = "a..b"
workers = 0
[[adapter.sink]]
type = "file"
pth = "/tmp/x"

[[adapter]]
name = "registration"
[adapter.ingest]
typo = "nats"
[[adapter.sink]]
type = "blackhole"
"#;
    assert_eq!(
        errors(text),
        [
            "adapters.toml:6:1: adapter \"registration\".ingest.subject: `a..b` is not a valid subject: it has an \
             empty token (tokens are separated by single dots); write e.g. subject = \"*.broadcast.agent.registration\"",
            "adapters.toml:7:1: adapter \"registration\".ingest.workers: must be at least 1; write e.g. workers = 10",
            "adapters.toml:10:1: adapter \"registration\": sink \"file\": unknown key `pth`; did you mean `path`?",
            "adapters.toml:13:8: adapter \"registration\".name: duplicate adapter name `registration`; adapter names \
             must be unique; the first is at line 2",
            "adapters.toml:14:1: adapter \"registration\".ingest: missing required key `type`; write type = \"nats\" \
             (core NATS, at-most-once) or type = \"jetstream\" (durable consumer, at-least-once)",
        ]
    );
}

/// PROTOCOL.md §5.2's machine-room pairing, as a Go broker's broker.conf holds it.
const MACHINE_ROOM: &str = "\
identity = broker1.example.net
loglevel = info

plugin.choria.broker_network = true
plugin.choria.middleware_hosts = nats1.example.net:4222, tls://nats2.example.net:4222

# Node registration into JetStream, as choria-io/machine-room's broker does it.
plugin.choria.adapters = registration
plugin.choria.adapter.registration.type = choria_streams
plugin.choria.adapter.registration.queue_len = 500
plugin.choria.adapter.registration.ingest.topic = choria.broadcast.agent.registration
plugin.choria.adapter.registration.ingest.protocol = request
plugin.choria.adapter.registration.ingest.workers = 3
plugin.choria.adapter.registration.stream.topic = machine_room.nodes.%s
plugin.choria.adapter.registration.stream.workers = 3
";

#[test]
fn choria_broker_conf_maps_to_the_same_model() {
    let dir = std::env::temp_dir().join(format!("coro-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.conf");
    std::fs::write(&path, MACHINE_ROOM).unwrap();
    let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(config.file, path);
    assert_eq!(config.http.identity, "broker1.example.net");
    assert_eq!(config.adapters.len(), 1);
    let a = &config.adapters[0];
    assert_eq!(a.name, "registration");
    let servers = vec![
        "nats://nats1.example.net:4222".to_string(),
        "tls://nats2.example.net:4222".to_string(),
    ];
    assert_eq!(
        a.ingest,
        IngestConfig::Nats(NatsIngest {
            servers: servers.clone(),
            subject: "choria.broadcast.agent.registration".into(),
            queue_group: "nats_ingest_registration".into(),
            workers: 3,
            queue_len: 500,
            block_for: Duration::ZERO,
            protocol: Protocol::Request,
        })
    );
    assert_eq!(
        a.pipeline,
        PipelineSettings {
            concurrency: 3,
            ..PipelineSettings::default()
        }
    );
    assert!(a.dead_letter.is_none());
    assert_eq!(a.sinks.len(), 1);
    let sink = &a.sinks[0];
    assert_eq!(
        (sink.kind.as_str(), sink.name.as_str()),
        ("jetstream", "jetstream")
    );
    let expected: toml::Table = toml::from_str(
        "servers = [\"nats://nats1.example.net:4222\", \"tls://nats2.example.net:4222\"]\n\
         subject = \"machine_room.nodes.%s\"\nencoding = \"choria_streams\"\n",
    )
    .unwrap();
    assert_eq!(sink.options, expected);
    assert_eq!(
        SinkConfig::from_spec(sink).unwrap(),
        SinkConfig::JetStream(JetStreamConfig {
            servers,
            subject: "machine_room.nodes.%s".into(),
            encoding: Encoding::ChoriaStreams,
            stream: None,
            max_in_flight: 256,
            ack_timeout: Duration::from_secs(5),
        })
    );
    assert_eq!(sink.location.line, 9);
    check_sinks(&config).unwrap();
}

#[test]
fn choria_defaults() {
    let text = "plugin.choria.adapters = cmdb, replies\n\
                plugin.choria.adapter.cmdb.type = jetstream\n\
                plugin.choria.adapter.cmdb.ingest.topic = mcollective.broadcast.agent.discovery\n\
                plugin.choria.adapter.cmdb.ingest.protocol = request # or reply\n\
                plugin.choria.adapter.replies.type = choria_streams\n\
                plugin.choria.adapter.replies.ingest.topic = mcollective.reply.>\n\
                plugin.choria.adapter.replies.stream.servers = stan1:4222,stan2:4222\n";
    let config = config::parse(Path::new("broker.conf"), text).unwrap();
    let [cmdb, replies] = &config.adapters[..] else {
        panic!()
    };
    let mut expected = NatsIngest::new(
        "cmdb",
        vec!["nats://localhost:4222".into()],
        "mcollective.broadcast.agent.discovery",
    );
    expected.block_for = Duration::ZERO;
    // Choria compares the whole value: a comment after it makes it "anything else".
    expected.protocol = Protocol::Reply;
    assert_eq!(cmdb.ingest, IngestConfig::Nats(expected));
    assert_eq!(cmdb.pipeline.concurrency, 10);
    let SinkConfig::JetStream(js) = SinkConfig::from_spec(&cmdb.sinks[0]).unwrap() else {
        panic!()
    };
    assert_eq!(js.subject, "cmdb");
    assert_eq!(js.servers, ["nats://localhost:4222"]);
    let SinkConfig::JetStream(js) = SinkConfig::from_spec(&replies.sinks[0]).unwrap() else {
        panic!()
    };
    assert_eq!(js.subject, "replies");
    assert_eq!(js.servers, ["nats://stan1:4222", "nats://stan2:4222"]);
    assert_eq!(replies.ingest.protocol(), Protocol::Reply);
}

#[test]
fn choria_errors_cite_the_line_of_the_key() {
    let text = "plugin.choria.adapters = cmdb,legacy,x\n\
                plugin.choria.adapter.cmdb.type = jetstream\n\
                plugin.choria.adapter.cmdb.ingest.topic = mcollective.broadcast..discovery\n\
                plugin.choria.adapter.cmdb.ingest.workers = 10 # default\n\
                plugin.choria.adapter.cmdb.stream.topik = my.cmdb\n\
                plugin.choria.adapter.legacy.type = nats_stream\n\
                plugin.choria.adapter.legacy.ingest.topic = x\n\
                plugin.choria.adapter.legacy.stream.clusterid = prod\n\
                plugin.choria.adapter.x.type = kafka\n";
    assert_eq!(
        errors_in("broker.conf", text),
        [
            "broker.conf:4:1: plugin.choria.adapter.cmdb.ingest.workers: `10 # default` is not a whole number; \
             Choria config has no comments after a value; write e.g. plugin.choria.adapter.cmdb.ingest.workers = 10",
            "broker.conf:5:1: plugin.choria.adapter.cmdb.stream.topik: unknown key `stream.topik`; did you mean \
             `stream.topic`?",
            "broker.conf:6:1: plugin.choria.adapter.legacy.type: `nats_stream` is deprecated upstream; use jetstream",
            "broker.conf:8:1: plugin.choria.adapter.legacy.stream.clusterid: unknown key `stream.clusterid`; known \
             keys: type, queue_len, ingest.topic, ingest.protocol, ingest.workers, stream.topic, stream.workers, \
             stream.servers",
            "broker.conf:9:1: plugin.choria.adapter.x.type: unknown adapter type `kafka`; expected one of \
             `jetstream`, `choria_streams`",
            "broker.conf:9:1: plugin.choria.adapter.x.ingest.topic: missing required key; write e.g. \
             plugin.choria.adapter.x.ingest.topic = choria.broadcast.agent.registration",
        ]
    );
    let text = "plugin.choria.adapters = cmdb\n\
                plugin.choria.adapter.cmdb.type = jetstream\n\
                plugin.choria.adapter.cmdb.ingest.topic = mcollective.broadcast..discovery\n\
                plugin.choria.adapter.cmdb.stream.workers = 0\n\
                plugin.choria.adapter.cmdb.stream.topic = my.{sendr}\n";
    assert_eq!(
        errors_in("broker.conf", text),
        [
            "broker.conf:3:1: plugin.choria.adapter.cmdb.ingest.topic: `mcollective.broadcast..discovery` is not a \
             valid subject: it has an empty token (tokens are separated by single dots); write e.g. \
             plugin.choria.adapter.cmdb.ingest.topic = *.broadcast.agent.registration",
            "broker.conf:4:1: plugin.choria.adapter.cmdb.stream.workers: must be at least 1; write e.g. \
             plugin.choria.adapter.cmdb.stream.workers = 4",
            "broker.conf:5:1: plugin.choria.adapter.cmdb.stream.topic: unknown placeholder `{sendr}`; did you \
             mean `{sender}`?",
        ]
    );
}

#[test]
fn choria_config_without_adapters() {
    let template =
        common::fixtures_dir().join("go-choria/packager/templates/el/global/broker.conf");
    let errors: Vec<String> = config::load(&template)
        .unwrap_err()
        .iter()
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(errors, ["is not set: no adapters configured"]);
    let parsed = ChoriaConfig::parse(&template, &std::fs::read_to_string(&template).unwrap());
    assert_eq!(parsed.get("plugin.choria.broker_network"), Some("false"));
    assert_eq!(parsed.get("plugin.choria.adapters"), None);
    assert_eq!(
        errors_in("broker.conf", "plugin.choria.adapters = ,\n"),
        ["broker.conf:1:1: plugin.choria.adapters: lists no adapters; list them, e.g. plugin.choria.adapters = registration"]
    );
}
