//! `coro demo`: the whole system on one machine, with nothing but the nats-server
//! child. It starts the network broker on loopback with JetStream, the repo's default
//! `adapters.toml` (registration into a JetStream stream and a JSON-lines file; RPC
//! replies into a stream), a simulated fleet, then sends one asynchronous
//! `rpcutil ping` whose replies go to a stream instead of back to the caller. It ends
//! with a table and exits 0 only when every node's registration and reply arrived.

mod report;

use coro_broker::adapters::Adapters;
use coro_broker::network::{find_nats_server, NetworkBroker, NetworkConfig};
use coro_broker::{http, rpc};
use coro_core::config::ChoriaConfig;
use coro_fleet::{Fleet, FleetConfig, Security};
use futures::TryStreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::{Report, Row};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// The configuration the demo runs: the repo's own, so what it shows is what users get.
const ADAPTERS_TOML: &str = include_str!("../../../adapters.toml");

/// Written into the demo directory so a later run only ever clears its own output.
const MARKER: &str = ".coro-demo";

/// Streams the demo creates; `coro validate --online` expects them in production.
const STREAMS: [(&str, &str); 3] = [
    ("CHORIA_REGISTRATION", "choria.registration.>"),
    ("CHORIA_RPC_INBOX", "mcollective.reply.async.>"),
    ("CHORIA_REPLIES", "choria.replies.>"),
];

/// Arguments of `coro demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How many Choria servers to simulate.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub nodes: usize,
    /// Where the output goes (JSON lines, the JetStream store, the configs); cleared
    /// at start when an earlier demo made it.
    #[arg(long, default_value = "coro-demo")]
    pub dir: PathBuf,
    /// How long to wait for registration and for replies before giving up.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Failures that end the demo early, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {reason}")]
struct DemoError {
    doing: String,
    reason: String,
}

fn fail(doing: impl Into<String>) -> impl FnOnce(String) -> DemoError {
    let doing = doing.into();
    move |reason| DemoError { doing, reason }
}

/// Runs `coro demo`.
pub fn run(args: &DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(args)) {
        Ok(report) => {
            print!("{}", report.render());
            if report.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Progress bars on a terminal; nothing when stderr is not one.
struct Progress {
    bars: MultiProgress,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }

    fn step(&self, message: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }

    fn counter(&self, message: &str, total: u64) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{msg:<24} [{bar:40}] {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(message.to_string());
        bar
    }
}

async fn demo(args: &DemoArgs) -> Result<Report, DemoError> {
    if args.nodes == 0 {
        return Err(fail("--nodes")("must be at least 1".into()));
    }
    let dir = prepare_dir(&args.dir)?;
    let progress = Progress::new();
    let registry = prometheus::Registry::new();

    let step = progress.step("starting the network broker (nats-server with JetStream)");
    let network = start_network(&dir, &registry).await?;
    let url = network.client_url().to_string();
    step.finish_with_message(format!("network broker ready on {url}"));

    let client = async_nats::connect(&url)
        .await
        .map_err(|e| fail(format!("connecting to {url}"))(e.to_string()))?;
    let js = async_nats::jetstream::new(client.clone());
    for (name, subject) in STREAMS {
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![subject.to_string()],
            ..Default::default()
        })
        .await
        .map_err(|e| fail(format!("creating stream {name}"))(e.to_string()))?;
    }

    let step = progress.step("starting the adapters of adapters.toml");
    let (config_path, http_addr) = write_adapters_config(&dir, &url)?;
    let (config, sinks) = coro_sinks::config::load(&config_path).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        fail(format!("loading {}", config_path.display()))(lines.join("\n"))
    })?;
    let listener = http::bind(http_addr)
        .await
        .map_err(|e| fail(format!("listening on {http_addr}"))(e.to_string()))?;
    let (stop_http, http_stopped) = watch::channel(false);
    let (set_readiness, readiness) = watch::channel(None);
    let server = tokio::spawn(http::serve_with(
        listener,
        registry.clone(),
        readiness,
        http_stopped,
        network.choria_info(),
        Some(network.monitor_proxy()),
    ));
    let adapters = Adapters::start(&config, &sinks, &registry)
        .await
        .map_err(|e| fail("starting the adapters")(e.to_string()))?;
    let _ = set_readiness.send(Some(adapters.readiness()));
    step.finish_with_message(format!(
        "{} adapters running; metrics on http://{http_addr}/metrics",
        config.adapters.len()
    ));

    let nodes = args.nodes;
    let started = Instant::now();
    let step = progress.step(&format!("starting {nodes} simulated Choria servers"));
    let fleet = Fleet::start(FleetConfig {
        nodes,
        servers: vec![url.clone()],
        security: Security::Insecure,
        // Splayed over a few seconds so registration arrives as a flow, as from a
        // real fleet, rather than one burst; Choria's default interval is 300 s.
        registration_interval: Duration::from_secs(5),
        splay: true,
        ..FleetConfig::default()
    })
    .await
    .map_err(|e| fail("starting the fleet")(e.to_string()))?;
    step.finish_with_message(format!(
        "{nodes} servers started in {:.2?}",
        fleet.start_time()
    ));

    let bar = progress.counter("nodes registered", nodes as u64);
    let registered = wait_for_subjects(
        &js,
        "CHORIA_REGISTRATION",
        "choria.registration.>",
        nodes,
        args.timeout,
        &bar,
    )
    .await?;
    let registration_time = started.elapsed();
    bar.finish();

    let mut request = rpc::RpcRequest::new("rpcutil", "ping");
    let request_id = request
        .new_request_id()
        .map_err(|e| fail("making a request id")(e.to_string()))?;
    request.reply_to = Some(format!("mcollective.reply.async.{request_id}"));
    let sent = SystemTime::now();
    let sent_at = Instant::now();
    let published = rpc::publish_with_id(&client, &request, &request_id)
        .await
        .map_err(|e| fail("publishing the rpcutil ping")(e.to_string()))?;
    let bar = progress.counter("replies in CHORIA_REPLIES", nodes as u64);
    let replied = wait_for_subjects(
        &js,
        "CHORIA_REPLIES",
        "choria.replies.>",
        nodes,
        args.timeout,
        &bar,
    )
    .await?;
    let reply_time = sent_at.elapsed();
    bar.finish();
    let latencies = reply_latencies(&js, sent).await?;

    let step = progress.step("draining the adapters and stopping");
    let fleet_stats = fleet.stats();
    fleet.shutdown().await;
    let clean = adapters.shutdown(config.http.drain_timeout).await;
    let metrics = report::Metrics::gather(&registry);
    let _ = stop_http.send(true);
    let _ = server.await;
    network.shutdown().await;
    step.finish_with_message(if clean {
        "stopped cleanly".to_string()
    } else {
        "stopped with messages in flight".to_string()
    });

    let sample = first_line(&dir.join("registration.jsonl"));
    Ok(Report {
        nodes,
        registered,
        registration_time,
        registrations_published: fleet_stats.registrations_published,
        request_id: published.request_id,
        reply_to: published.reply_to,
        replied,
        reply_time,
        latencies,
        rows: config
            .adapters
            .iter()
            .flat_map(|a| {
                let sink_rows: Vec<Row> = a
                    .sinks
                    .iter()
                    .map(|s| metrics.row(&a.name, &s.name, &s.kind))
                    .collect();
                sink_rows
            })
            .collect(),
        dead_letters: metrics.dead_letters,
        dropped: metrics.dropped,
        dir,
        http: http_addr,
        sample,
    })
}

/// Makes (or clears, when an earlier demo made it) the output directory.
fn prepare_dir(dir: &Path) -> Result<PathBuf, DemoError> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(fail(format!("using {}", dir.display()))(
                "it exists and was not made by coro demo; pass another --dir".into(),
            ));
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| fail(format!("clearing {}", dir.display()))(e.to_string()))?;
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(MARKER), "made by coro demo\n"))
        .map_err(|e| fail(format!("creating {}", dir.display()))(e.to_string()))?;
    std::fs::canonicalize(dir)
        .map_err(|e| fail(format!("resolving {}", dir.display()))(e.to_string()))
}

/// A free loopback port, for the broker and the HTTP endpoints.
fn free_port() -> Result<u16, DemoError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| fail("choosing a free port")(e.to_string()))
}

/// The network broker, from a Choria broker.conf the demo writes (so it can be read and
/// reused), on loopback with JetStream in the demo directory.
async fn start_network(
    dir: &Path,
    registry: &prometheus::Registry,
) -> Result<NetworkBroker, DemoError> {
    let port = free_port()?;
    let conf = dir.join("broker.conf");
    let text = format!(
        "# Written by coro demo: the network broker it runs.\n\
         identity = coro-demo\n\
         plugin.choria.broker_network = true\n\
         plugin.choria.network.listen_address = 127.0.0.1\n\
         plugin.choria.network.client_port = {port}\n\
         plugin.choria.network.stream.store = {}\n",
        dir.join("jetstream").display()
    );
    std::fs::write(&conf, &text)
        .map_err(|e| fail(format!("writing {}", conf.display()))(e.to_string()))?;
    let choria = ChoriaConfig::parse(&conf, &text);
    let cfg = match NetworkConfig::from_choria(&choria) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return Err(fail("reading broker.conf")("no network broker".into())),
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(fail("reading broker.conf")(lines.join("\n")));
        }
    };
    let nats_server = find_nats_server().map_err(|e| fail("finding nats-server")(e.to_string()))?;
    NetworkBroker::start(cfg, &nats_server, registry)
        .await
        .map_err(|e| fail("starting the network broker")(e.to_string()))
}

/// The repo's adapters.toml with every server pointed at the demo broker, every file
/// in the demo directory and the HTTP endpoints on a free port.
fn write_adapters_config(
    dir: &Path,
    url: &str,
) -> Result<(PathBuf, std::net::SocketAddr), DemoError> {
    let mut doc: toml::Table = ADAPTERS_TOML
        .parse()
        .map_err(|e: toml::de::Error| fail("reading the built-in adapters.toml")(e.to_string()))?;
    retarget(&mut doc, url, dir);
    let http: std::net::SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut section = toml::Table::new();
    section.insert("listen".into(), http.to_string().into());
    section.insert("identity".into(), "coro-demo".into());
    doc.insert("http".into(), section.into());
    let path = dir.join("adapters.toml");
    let text = format!(
        "# Written by coro demo: the repo's adapters.toml pointed at the demo broker.\n{}",
        toml::to_string_pretty(&doc).map_err(|e| fail("writing adapters.toml")(e.to_string()))?
    );
    std::fs::write(&path, text)
        .map_err(|e| fail(format!("writing {}", path.display()))(e.to_string()))?;
    Ok((path, http))
}

/// Rewrites `servers` and file `path`s anywhere in the document.
fn retarget(doc: &mut toml::Table, url: &str, dir: &Path) {
    for (key, value) in doc.iter_mut() {
        match (key.as_str(), value) {
            ("servers", v) => *v = toml::Value::Array(vec![url.into()]),
            ("path", toml::Value::String(p)) => {
                let name = Path::new(p.as_str())
                    .file_name()
                    .map_or_else(|| "output.jsonl".into(), |n| n.to_os_string());
                *p = dir.join(name).display().to_string();
            }
            (_, toml::Value::Table(t)) => retarget(t, url, dir),
            (_, toml::Value::Array(items)) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        retarget(t, url, dir);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Waits until `stream` holds messages on `want` distinct subjects under `filter` (one
/// per node, since the sinks put the sender in the subject), or the timeout passes.
async fn wait_for_subjects(
    js: &async_nats::jetstream::Context,
    stream: &str,
    filter: &str,
    want: usize,
    timeout: Duration,
    bar: &ProgressBar,
) -> Result<usize, DemoError> {
    let deadline = Instant::now() + timeout;
    let handle = js
        .get_stream(stream)
        .await
        .map_err(|e| fail(format!("opening stream {stream}"))(e.to_string()))?;
    loop {
        let mut subjects = handle
            .info_with_subjects(filter)
            .await
            .map_err(|e| fail(format!("reading stream {stream}"))(e.to_string()))?;
        let mut seen = 0usize;
        while subjects
            .try_next()
            .await
            .map_err(|e| fail(format!("reading stream {stream}"))(e.to_string()))?
            .is_some()
        {
            seen += 1;
        }
        bar.set_position(seen as u64);
        if seen >= want || Instant::now() >= deadline {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// For each reply in CHORIA_REPLIES: the time from publishing the request to the reply
/// being stored in the stream, i.e. through the nodes, the inbox stream and the adapter.
async fn reply_latencies(
    js: &async_nats::jetstream::Context,
    sent: SystemTime,
) -> Result<Vec<Duration>, DemoError> {
    let stream = js
        .get_stream("CHORIA_REPLIES")
        .await
        .map_err(|e| fail("opening stream CHORIA_REPLIES")(e.to_string()))?;
    let info = stream
        .get_info()
        .await
        .map_err(|e| fail("reading stream CHORIA_REPLIES")(e.to_string()))?;
    let sent = time::OffsetDateTime::from(sent);
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await {
            let took = message.time - sent;
            out.push(Duration::try_from(took).unwrap_or_default());
        }
    }
    out.sort();
    Ok(out)
}

/// The first line of a JSON-lines file, to show what a record looks like.
fn first_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next().map(str::to_string)
}
