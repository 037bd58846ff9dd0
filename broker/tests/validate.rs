//! `coro validate` as a user runs it: exit 0 and a table for a good config, exit 78 and
//! one line per problem for a bad one, and never a connection.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn coro_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A fresh directory holding `name` with `text`.
fn config_dir(test: &str, name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coro-validate-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
    dir
}

const REPO_TABLE: &str = "\
ADAPTER       INGEST                                         SUBJECT                         SINKS                                                                      DEAD LETTER
registration  nats request                                   *.broadcast.agent.registration  jetstream: choria.registration.%s, file: /var/lib/coro/registration.jsonl  file: /var/lib/coro/registration.dead.jsonl
replies       jetstream CHORIA_RPC_INBOX/coro_replies reply  -                               jetstream: choria.replies.%s                                               file: /var/lib/coro/replies.dead.jsonl
";

#[test]
fn repo_config_is_valid() {
    let o = coro_in(&repo_root(), &["validate", "adapters.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), REPO_TABLE);
    assert_eq!(stderr(&o), "");
}

#[test]
fn config_defaults_to_adapters_toml() {
    let o = coro_in(&repo_root(), &["validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), REPO_TABLE);
}

#[test]
fn every_problem_one_line_each_exit_78() {
    let dir = config_dir(
        "bad",
        "adapters.toml",
        r#"[[adapter]]
name = "registration"
[adapter.ingest]
type = "nats"
servers = ["nats://127.0.0.1:4222"]
subjet = "*.broadcast.agent.registration"
[[adapter.sink]]
type = "jetstream"
servers = ["nats://127.0.0.1:4222"]
subject = "choria.registration.%s"

[[adapter]]
name = "replies"
[adapter.ingest]
type = "nats"
servers = ["nats://127.0.0.1:4222"]
subject = "*.reply.>"
workers = 0
[[adapter.sink]]
type = "fiel"
"#,
    );
    let o = coro_in(&dir, &["validate"]);
    assert_eq!(o.status.code(), Some(78));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "adapters.toml:6:1: adapter \"registration\".ingest: unknown key `subjet`; did you mean `subject`?\n\
         adapters.toml:18:1: adapter \"replies\".ingest.workers: must be at least 1; write e.g. workers = 10\n\
         adapters.toml:20:1: adapter \"replies\": sink \"fiel\": type: unknown sink type `fiel`; did you mean \
         `file`? known types: blackhole, elasticsearch, file, jetstream, kafka, kinesis, plugin, pubsub\n"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_file_exit_78() {
    let o = coro_in(&repo_root(), &["validate", "no-such-adapters.toml"]);
    assert_eq!(o.status.code(), Some(78));
    assert_eq!(
        stderr(&o),
        "no-such-adapters.toml: cannot read the file: No such file or directory (os error 2)\n"
    );
}

#[test]
fn choria_broker_conf() {
    let dir = config_dir(
        "choria",
        "broker.conf",
        "plugin.choria.middleware_hosts = nats1.example.net:4222\n\
         plugin.choria.adapters = registration\n\
         plugin.choria.adapter.registration.type = choria_streams\n\
         plugin.choria.adapter.registration.ingest.topic = choria.broadcast.agent.registration\n\
         plugin.choria.adapter.registration.ingest.protocol = request\n\
         plugin.choria.adapter.registration.ingest.workers = 3\n\
         plugin.choria.adapter.registration.stream.topic = machine_room.nodes.%s\n\
         plugin.choria.adapter.registration.stream.workers = 3\n",
    );
    let o = coro_in(&dir, &["validate", "broker.conf"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "\
ADAPTER       INGEST        SUBJECT                              SINKS                             DEAD LETTER
registration  nats request  choria.broadcast.agent.registration  jetstream: machine_room.nodes.%s  -
"
    );
    std::fs::write(
        dir.join("broker.conf"),
        "plugin.choria.adapters = registration\nplugin.choria.adapter.registration.type = nats_stream\n\
         plugin.choria.adapter.registration.ingest.topic = x\n",
    )
    .unwrap();
    let o = coro_in(&dir, &["validate", "broker.conf"]);
    assert_eq!(o.status.code(), Some(78));
    assert_eq!(
        stderr(&o),
        "broker.conf:2:1: plugin.choria.adapter.registration.type: `nats_stream` is deprecated upstream; use \
         jetstream\n"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Validation is offline: a listener named as every server sees no connection.
#[test]
fn does_not_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    let dir = config_dir(
        "offline",
        "adapters.toml",
        &format!(
            "[[adapter]]\nname = \"a\"\n[adapter.ingest]\ntype = \"jetstream\"\nservers = [\"{url}\"]\n\
             stream = \"S\"\nconsumer = \"c\"\n[[adapter.sink]]\ntype = \"jetstream\"\nservers = [\"{url}\"]\n\
             subject = \"x.%s\"\nstream = \"X\"\n"
        ),
    );
    let o = coro_in(&dir, &["validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "\
ADAPTER  INGEST             SUBJECT  SINKS            DEAD LETTER
a        jetstream S/c any  -        jetstream: x.%s  -
"
    );
    assert_eq!(
        listener.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock)
    );
    std::fs::remove_dir_all(dir).unwrap();
}
