//! `coro replies`: the "later processing" side of asynchronous RPC. Reads the replies
//! that an adapter's Kafka sink wrote, keeps those of one request, and prints them as
//! `coro rpc` does: a table sorted by sender and a summary, or JSON lines.
//!
//! It reads every encoding the sink writes (`choria_streams`, `record`, `raw` with the
//! sink's headers, and whole Choria transports), so it needs no settings from the
//! adapter but the brokers and topic.
//!
//! Exit codes: 0 when every reply (at least one; with --expect, that many) has status
//! code 0; 1 when a reply had a non-zero status code; 75 when fewer than --expect nodes
//! (or none) answered; 64 for bad arguments; 69 when the brokers cannot be reached or
//! the topic does not exist; 70 when reading fails.

use coro_broker::rpc::collect::parse_body;
use coro_broker::rpc::command::{outcome, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE};
use coro_broker::rpc::table::{render_summary, render_table};
use coro_broker::rpc::{Replies, RpcReply};
use coro_sinks::kafka::encode::header;
use coro_sinks::kafka::read::{self, Event, ReaderError, Received, Start, TopicReader};
use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `coro replies`.
#[derive(Debug, clap::Args)]
pub struct RepliesArgs {
    /// Kafka bootstrap brokers, `host:port`; several separated by commas.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092",
        value_delimiter = ','
    )]
    pub brokers: Vec<String>,
    /// The topic the Kafka sink writes the replies to.
    #[arg(long)]
    pub topic: String,
    /// The request whose replies to show, as `coro rpc` printed it.
    #[arg(long, value_name = "ID")]
    pub request_id: String,
    /// Read as consumer group NAME: start where the group left off (the beginning for
    /// a new group) and commit what was read, so the next run sees only newer
    /// messages. Without it every partition is read from the beginning and nothing is
    /// committed.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// With --group: read every partition from the beginning anyway (and commit from
    /// there). Without --group reading always starts at the beginning.
    #[arg(long, requires = "group")]
    pub from_beginning: bool,
    /// Stop after this long without a new message (`5s`, `500ms`, `1m`; a bare number
    /// is seconds). A topic that does not exist yet is waited for as long; joining a
    /// group comes on top.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Stop once N nodes answered; fewer makes the exit code 75.
    #[arg(long, value_name = "N")]
    pub expect: Option<usize>,
    /// Print one JSON line per reply (sorted by sender) instead of the table; the
    /// summary goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// A librdkafka consumer property, e.g. `-X security.protocol=SASL_SSL`
    /// `-X sasl.mechanisms=SCRAM-SHA-512`; repeatable.
    #[arg(short = 'X', long = "property", value_name = "NAME=VALUE")]
    pub properties: Vec<String>,
}

/// Most time allowed for the brokers to answer and a group to be joined before the
/// first message or partition end.
const START_LIMIT: Duration = Duration::from_secs(30);

/// One reply as read, with where it was in Kafka.
struct Found {
    reply: RpcReply,
    time: Option<String>,
    partition: i32,
    offset: i64,
}

/// What reading found.
#[derive(Default)]
struct Collected {
    replies: Replies,
    found: Vec<Found>,
    messages: usize,
}

/// Runs `coro replies`.
pub fn run(args: &RepliesArgs) -> ExitCode {
    let properties = match parse_properties(&args.properties) {
        Ok(p) => p,
        Err(e) => return fail(EX_USAGE, &e),
    };
    let start = match (&args.group, args.from_beginning) {
        (None, _) => Start::Beginning,
        (Some(g), false) => Start::Group(g.clone()),
        (Some(g), true) => Start::GroupFromBeginning(g.clone()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(EX_SOFTWARE, &format!("starting the runtime: {e}")),
    };
    let collected = runtime.block_on(async {
        let reader = open(args, &start, &properties).await?;
        let collected = collect(&reader, args).await?;
        reader.commit()?;
        Ok::<_, ReaderError>(collected)
    });
    match collected {
        Ok(c) => {
            print(&c, args);
            ExitCode::from(outcome(&c.replies, args.expect))
        }
        Err(e @ ReaderError::Config(_)) => fail(EX_USAGE, &e.to_string()),
        Err(e @ (ReaderError::Metadata(_) | ReaderError::NoTopic(_))) => {
            fail(EX_UNAVAILABLE, &e.to_string())
        }
        Err(e @ ReaderError::Read(_)) => fail(EX_SOFTWARE, &e.to_string()),
    }
}

/// The reader; a topic that does not exist yet (the sink creates it with its first
/// reply) is waited for up to --timeout.
async fn open(
    args: &RepliesArgs,
    start: &Start,
    properties: &[(String, String)],
) -> Result<TopicReader, ReaderError> {
    let deadline = Instant::now() + args.timeout;
    loop {
        // Making the reader fetches metadata, which blocks.
        let (brokers, topic) = (args.brokers.clone(), args.topic.clone());
        let (start, properties) = (start.clone(), properties.to_vec());
        let made = tokio::task::spawn_blocking(move || {
            TopicReader::new(&brokers, &topic, &start, &properties)
        })
        .await
        .map_err(|e| ReaderError::Metadata(e.to_string()))?;
        match made {
            Err(ReaderError::NoTopic(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// Reads until --expect nodes answered or nothing came for --timeout.
async fn collect(reader: &TopicReader, args: &RepliesArgs) -> Result<Collected, ReaderError> {
    let started = Instant::now();
    let mut out = Collected::default();
    let mut seen = HashSet::new();
    let mut idle = args.timeout.max(START_LIMIT);
    while args.expect.is_none_or(|n| out.replies.replies.len() < n) {
        let Some(event) = reader.next(idle).await else {
            break;
        };
        // Reading has begun: from now on only --timeout of silence ends it.
        idle = args.timeout;
        let m = match event? {
            Event::Message(m) => m,
            Event::PartitionEnd(_) => continue,
        };
        out.messages += 1;
        add(&mut out, &mut seen, &m, &args.request_id, started);
    }
    out.replies.elapsed = started.elapsed();
    Ok(out)
}

/// Counts one message: a reply of the request (once per sender), a reply of another
/// request, or something that is not a reply the sink wrote.
fn add(
    out: &mut Collected,
    seen: &mut HashSet<String>,
    m: &Received,
    request_id: &str,
    started: Instant,
) {
    // The sink's header says whose reply it is without decoding the value.
    if m.header(header::REQUEST_ID)
        .is_some_and(|id| id != request_id)
    {
        out.replies.unrelated += 1;
        return;
    }
    let written = match read::decode(&m.payload, &m.headers) {
        Ok(w) => w,
        Err(e) => {
            tracing::debug!(
                partition = m.partition,
                offset = m.offset,
                "undecodable: {e}"
            );
            out.replies.undecodable += 1;
            return;
        }
    };
    if written.request_id != request_id {
        out.replies.unrelated += 1;
        return;
    }
    // At-least-once delivery may write a reply twice; a node answers once.
    if !seen.insert(written.sender.clone()) {
        out.replies.duplicates += 1;
        return;
    }
    let (statuscode, statusmsg, data) = parse_body(&written.body);
    let reply = RpcReply {
        sender: written.sender,
        statuscode,
        statusmsg,
        data,
        latency: started.elapsed(),
    };
    out.replies.replies.push(reply.clone());
    out.found.push(Found {
        reply,
        time: written.time,
        partition: m.partition,
        offset: m.offset,
    });
}

fn print(c: &Collected, args: &RepliesArgs) {
    let mut summary = render_summary(&c.replies, args.expect);
    summary.push_str(&format!(
        "  messages read from {}: {}\n",
        args.topic, c.messages
    ));
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not our error to report.
    if args.json {
        let mut found: Vec<&Found> = c.found.iter().collect();
        found.sort_by(|a, b| a.reply.sender.cmp(&b.reply.sender));
        for f in found {
            let line = serde_json::json!({
                "sender": f.reply.sender,
                "requestid": args.request_id,
                "statuscode": f.reply.statuscode,
                "statusmsg": f.reply.statusmsg,
                "data": f.reply.data,
                "time": f.time,
                "topic": args.topic,
                "partition": f.partition,
                "offset": f.offset,
            });
            let _ = writeln!(out, "{line}");
        }
        eprint!("{summary}");
    } else {
        let table = render_table(&c.replies);
        let _ = if table.is_empty() {
            write!(out, "{summary}")
        } else {
            write!(out, "{table}\n{summary}")
        };
    }
    if c.replies.replies.is_empty() && args.expect != Some(0) {
        eprintln!(
            "no replies to {} in {}{}",
            args.request_id,
            args.topic,
            if args.group.is_some() && !args.from_beginning {
                " (a group reads only what it has not read before: add --from-beginning)"
            } else {
                ""
            }
        );
    }
}

/// `NAME=VALUE` pairs.
fn parse_properties(items: &[String]) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("-X {item:?} is not NAME=VALUE")),
        })
        .collect()
}

/// A duration: `10s`, `500ms`, `1m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse() {
        assert_eq!(
            parse_properties(&["security.protocol=SSL".into(), "a=b=c".into()]).unwrap(),
            vec![
                ("security.protocol".into(), "SSL".into()),
                ("a".into(), "b=c".into())
            ]
        );
        assert!(parse_properties(&["nope".into()]).is_err());
        assert!(parse_properties(&["=x".into()]).is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }
}
