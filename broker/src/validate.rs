//! `coro validate`: load a config, type every sink, and either list every problem or
//! print what would run. Nothing connects anywhere unless `--online` asks for it.

use crate::cli::ValidateArgs;
use coro_core::config::{AdapterConfig, AdaptersConfig, IngestConfig, SinkSpec};
use coro_sinks::config::{AdapterSinks, SinkConfig};
use std::process::ExitCode;

/// sysexits(3): configuration error.
const EX_CONFIG: u8 = 78;

/// Runs `coro validate`: exit 0 with a table of the adapters on stdout, or 78 with every
/// problem on stderr, one per line.
pub fn run(args: &ValidateArgs) -> ExitCode {
    let toml = args
        .config
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if !toml {
        return choria(args);
    }
    match coro_sinks::config::load(&args.config) {
        Ok((config, sinks)) => {
            // Plugin sinks: load each library and ask it about its config.
            if let Err(errors) = coro_sinks::config::check_plugins(&config) {
                for e in &errors {
                    eprintln!("{e}");
                }
                return ExitCode::from(EX_CONFIG);
            }
            print!("{}", summary(&config));
            if args.online && !online(&config, &sinks) {
                return ExitCode::from(EX_CONFIG);
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// A Choria config, checked as `coro broker run` reads it: the network broker's keys
/// too, and a line for the network broker above the adapters' table.
fn choria(args: &ValidateArgs) -> ExitCode {
    match coro_broker::broker_run::DaemonConfig::load(&args.config, None) {
        Ok(config) => {
            if let Some(line) = config.network_summary() {
                println!("{line}");
            }
            if let Some(line) = config.federation_summary() {
                println!("{line}");
            }
            if !config.adapters.adapters.is_empty() {
                print!("{}", summary(&config.adapters));
                if args.online && !online(&config.adapters, &config.sinks) {
                    return ExitCode::from(EX_CONFIG);
                }
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// The table `coro validate` prints: one row per adapter, columns aligned.
pub fn summary(config: &AdaptersConfig) -> String {
    let mut rows = vec![[
        "ADAPTER".to_string(),
        "INGEST".to_string(),
        "SUBJECT".to_string(),
        "SINKS".to_string(),
        "DEAD LETTER".to_string(),
    ]];
    rows.extend(config.adapters.iter().map(row));
    let mut widths = [0usize; 5];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < r.len() {
                line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(adapter: &AdapterConfig) -> [String; 5] {
    let (ingest, subject) = match &adapter.ingest {
        IngestConfig::Nats(n) => (format!("nats {}", n.protocol.as_str()), n.subject.clone()),
        IngestConfig::JetStream(j) => (
            format!(
                "jetstream {}/{} {}",
                j.stream,
                j.consumer,
                j.protocol.as_str()
            ),
            j.subject.clone().unwrap_or_else(|| "-".into()),
        ),
    };
    let sinks = adapter
        .sinks
        .iter()
        .map(sink)
        .collect::<Vec<_>>()
        .join(", ");
    let dead_letter = adapter.dead_letter.as_ref().map_or("-".into(), sink);
    [adapter.name.clone(), ingest, subject, sinks, dead_letter]
}

/// `name (type): target`, the name left out when it is the type.
fn sink(spec: &SinkSpec) -> String {
    let label = if spec.name == spec.kind {
        spec.kind.clone()
    } else {
        format!("{} ({})", spec.name, spec.kind)
    };
    let target = match SinkConfig::from_spec(spec) {
        Ok(SinkConfig::JetStream(c)) => Some(c.subject),
        Ok(SinkConfig::File(c)) => Some(c.path.display().to_string()),
        Ok(SinkConfig::Elasticsearch(c)) => Some(format!("{} {}", c.model.as_str(), c.index)),
        Ok(SinkConfig::Plugin(c)) => Some(c.path.display().to_string()),
        Ok(SinkConfig::Kafka(c)) => Some(format!("topic {}", c.topic)),
        Ok(SinkConfig::Kinesis(c)) => Some(format!("stream {}", c.stream)),
        Ok(SinkConfig::PubSub(c)) => Some(format!("topic {}", c.topic_name())),
        _ => None,
    };
    match target {
        Some(t) => format!("{label}: {t}"),
        None => label,
    }
}

/// `--online`: connects to every server the config names and checks what can only be
/// checked there. Prints one line per check; false when any failed.
fn online(config: &AdaptersConfig, sinks: &[AdapterSinks]) -> bool {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("error: could not start the runtime for --online checks");
        return false;
    };
    let checks = runtime.block_on(online_checks(config, sinks));
    println!();
    let mut all_ok = true;
    for (ok, what) in checks {
        all_ok &= ok;
        println!("{}  {what}", if ok { "ok  " } else { "FAIL" });
    }
    all_ok
}

async fn online_checks(config: &AdaptersConfig, sinks: &[AdapterSinks]) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for (adapter, typed) in config.adapters.iter().zip(sinks) {
        let name = &adapter.name;
        match &adapter.ingest {
            IngestConfig::Nats(n) => match connect(&n.servers).await {
                Ok(_) => out.push((
                    true,
                    format!("adapter {name:?}: ingest: connected to {:?}", n.servers),
                )),
                Err(e) => out.push((false, format!("adapter {name:?}: ingest: {e}"))),
            },
            IngestConfig::JetStream(j) => match connect(&j.servers).await {
                Err(e) => out.push((false, format!("adapter {name:?}: ingest: {e}"))),
                Ok(client) => {
                    let js = async_nats::jetstream::new(client);
                    match js.get_stream(&j.stream).await {
                        Err(e) => out.push((
                            false,
                            format!("adapter {name:?}: ingest: stream {}: {e}", j.stream),
                        )),
                        Ok(stream) => {
                            out.push((
                                true,
                                format!("adapter {name:?}: ingest: stream {} exists", j.stream),
                            ));
                            out.push(consumer_check(name, &stream, &j.consumer).await);
                        }
                    }
                }
            },
        }
        for (sink, config) in typed.sinks.iter().chain(typed.dead_letter.as_ref()) {
            let checks = match config {
                SinkConfig::JetStream(js_config) => {
                    out.push(sink_check(name, sink, js_config).await);
                    continue;
                }
                SinkConfig::Kafka(c) => coro_sinks::kafka::check_online(c).await,
                SinkConfig::Kinesis(c) => coro_sinks::kinesis::check_online(c).await,
                SinkConfig::PubSub(c) => coro_sinks::pubsub::check_online(c).await,
                SinkConfig::Elasticsearch(c) => coro_sinks::elasticsearch::check_online(c).await,
                SinkConfig::Blackhole(_) | SinkConfig::File(_) | SinkConfig::Plugin(_) => continue,
            };
            let who = format!("adapter {name:?}: sink {sink:?}");
            out.extend(checks.into_iter().map(|check| match check {
                Ok(what) => (true, format!("{who}: {what}")),
                Err(what) => (false, format!("{who}: {what}")),
            }));
        }
    }
    out
}

async fn connect(servers: &[String]) -> Result<async_nats::Client, String> {
    let addrs = coro_sinks::nats::servers(servers)?;
    async_nats::ConnectOptions::new()
        .name("coro validate")
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(|e| format!("connecting to {servers:?}: {e}"))
}

async fn consumer_check(
    adapter: &str,
    stream: &async_nats::jetstream::stream::Stream,
    consumer: &str,
) -> (bool, String) {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    match stream.get_consumer::<pull::Config>(consumer).await {
        Ok(mut c) => match c.info().await {
            Ok(info) if info.config.ack_policy == AckPolicy::Explicit => (
                true,
                format!("adapter {adapter:?}: ingest: consumer {consumer} acks explicitly ({} pending)", info.num_pending),
            ),
            Ok(info) => (
                false,
                format!(
                    "adapter {adapter:?}: ingest: consumer {consumer} has ack policy {:?}; at-least-once needs explicit acks: delete it and coro creates it right",
                    info.config.ack_policy
                ),
            ),
            Err(e) => (false, format!("adapter {adapter:?}: ingest: consumer {consumer}: {e}")),
        },
        Err(_) => (
            true,
            format!("adapter {adapter:?}: ingest: consumer {consumer} does not exist yet; coro creates it with explicit acks"),
        ),
    }
}

async fn sink_check(
    adapter: &str,
    sink: &str,
    config: &coro_sinks::jetstream::config::JetStreamConfig,
) -> (bool, String) {
    let who = format!("adapter {adapter:?}: sink {sink:?}");
    let client = match connect(&config.servers).await {
        Ok(c) => c,
        Err(e) => return (false, format!("{who}: {e}")),
    };
    // The subject a sample record would go to: every template part filled in.
    let subject = config.subject_for(&sample_record());
    let js = async_nats::jetstream::new(client);
    match js.stream_by_subject(&subject).await {
        Ok(stream) if config.stream.as_ref().is_none_or(|s| *s == stream) => {
            (true, format!("{who}: stream {stream} captures {}", config.subject))
        }
        Ok(stream) => (
            false,
            format!("{who}: {} is captured by stream {stream}, not {}", config.subject, config.stream.as_deref().unwrap_or("")),
        ),
        Err(e) => (
            false,
            format!("{who}: no stream captures {} ({e}); create one, or publishes will be retried until one does", config.subject),
        ),
    }
}

/// A reply record from `node1`, for filling subject templates.
fn sample_record() -> coro_core::Record {
    coro_core::Record {
        subject: String::new(),
        version: coro_core::protocol::Version::V1,
        kind: coro_core::Kind::Reply,
        sender: "node1".into(),
        request_id: String::new(),
        agent: "rpcutil".into(),
        collective: Some("mcollective".into()),
        time_ns: 0,
        body: Default::default(),
        raw: Default::default(),
    }
}
