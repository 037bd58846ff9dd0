//! `coro rpc`: publish one Choria RPC request and, when waiting, print the replies.
//!
//! Exit codes: 0 when every expected node (or, without an expectation, every node
//! that answered, at least one) replied with status code 0; 1 when a reply had a
//! non-zero status code; 75 when an expected node did not answer, or nobody did;
//! 64 for bad arguments; 65/66 for bad or unreadable credential files; 69 when the
//! NATS server cannot be reached; 70 when the connection fails after connecting.

use super::table::{json_line, render_summary, render_table};
use super::{call, connect, publish, Published, Replies, RpcError, RpcRequest, Security};
use coro_core::protocol::{Filter, Version};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// 1: at least one reply carried a non-zero status code.
pub const EXIT_FAILED: u8 = 1;
/// sysexits(3) EX_USAGE: bad arguments.
pub const EX_USAGE: u8 = 64;
/// sysexits(3) EX_DATAERR: a credential file is not a key or certificate.
pub const EX_DATAERR: u8 = 65;
/// sysexits(3) EX_NOINPUT: a credential file cannot be read.
pub const EX_NOINPUT: u8 = 66;
/// sysexits(3) EX_UNAVAILABLE: the NATS server cannot be reached.
pub const EX_UNAVAILABLE: u8 = 69;
/// sysexits(3) EX_SOFTWARE: the connection failed after connecting, or no runtime.
pub const EX_SOFTWARE: u8 = 70;
/// sysexits(3) EX_TEMPFAIL: expected nodes did not answer in time (or nobody did).
pub const EX_TEMPFAIL: u8 = 75;

/// Protocol generation on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    /// `choria:*:1`, x509 or insecure.
    V1,
    /// `io.choria.protocol.v2.*`, ed25519 + JWT or insecure.
    V2,
}

/// Arguments of `coro rpc`.
#[derive(Debug, clap::Args)]
pub struct RpcArgs {
    /// The agent, e.g. `rpcutil`; `discovery` sends Choria's discovery ping.
    pub agent: String,
    /// The action, e.g. `ping`.
    pub action: String,
    /// Action inputs; a value that parses as JSON is sent as that JSON (`count=3`,
    /// `force=true`, `list=[1,2]`), anything else as a string, as `choria req` does.
    #[arg(value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// Action inputs as one JSON object, instead of KEY=VALUE arguments.
    #[arg(long, value_name = "JSON", conflicts_with = "inputs")]
    pub data: Option<String>,
    /// NATS server URL (several separated by commas).
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    pub server: String,
    /// Sub-collective to address.
    #[arg(long, default_value = "mcollective")]
    pub collective: String,
    /// Send replies to this subject instead of the caller's own reply subject, e.g. one
    /// an adapter ingests. Without --wait, coro publishes, prints the request id and
    /// exits at once (asynchronous RPC).
    #[arg(long, value_name = "SUBJECT")]
    pub reply_to: Option<String>,
    /// Collect the replies and print them (implied without --reply-to).
    #[arg(long)]
    pub wait: bool,
    /// Stop waiting once N nodes answered; missing answers are reported and make the
    /// exit code 75. Defaults to the number of --target identities.
    #[arg(long, value_name = "N")]
    pub expect: Option<usize>,
    /// How long to wait for replies in total, counted from publishing (`10s`, `500ms`,
    /// `1m`; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Only nodes with this identity (`/regex/` allowed); repeatable, any of them.
    #[arg(short = 'I', long = "identity", value_name = "IDENTITY")]
    pub identity: Vec<String>,
    /// Only nodes with this configuration management class; repeatable, all of them.
    #[arg(short = 'C', long = "class", value_name = "CLASS")]
    pub class: Vec<String>,
    /// Only nodes whose fact compares true: `fact=value`, or an operator among
    /// `== != >= <= > < =~` (`fact=/re/` is `=~`); repeatable, all of them.
    #[arg(short = 'F', long = "fact", value_name = "FACT=VALUE")]
    pub fact: Vec<String>,
    /// Only nodes that also run this agent; repeatable, all of them.
    #[arg(short = 'A', long = "with-agent", value_name = "AGENT")]
    pub with_agent: Vec<String>,
    /// Only nodes matching this compound filter expression (evaluated by the servers).
    #[arg(short = 'S', long = "select", value_name = "EXPR")]
    pub select: Vec<String>,
    /// Send one directed copy to `<collective>.node.<IDENTITY>` instead of a
    /// broadcast; repeatable.
    #[arg(long = "target", visible_alias = "node", value_name = "IDENTITY")]
    pub targets: Vec<String>,
    /// Send through the federation broker of this cluster (`--server` is then the
    /// federation network): to `choria.federation.<CLUSTER>.federation`, as a client
    /// with `plugin.choria.federation.collectives` does; repeatable, or comma separated.
    #[arg(long, value_name = "CLUSTER", value_delimiter = ',')]
    pub federation: Vec<String>,
    /// Seconds the request stays valid (v1 servers want at least 30).
    #[arg(long, default_value_t = 60)]
    pub ttl: i64,
    /// Caller id [default: `choria=<$USER>.mcollective`, or the JWT's `callerid`].
    #[arg(long, value_name = "CALLERID")]
    pub caller: Option<String>,
    /// Client identity sent as `senderid` [default: the host name].
    #[arg(long, value_name = "IDENTITY")]
    pub sender: Option<String>,
    /// Print one JSON line per reply (sorted by sender) instead of the table; the
    /// summary goes to stderr. Without waiting, print the request as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Protocol version [default: v2 with --seed/--jwt, else v1].
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// v1 x509 security: the caller's PEM certificate (with --key).
    #[arg(long, value_name = "PEM", requires = "key", conflicts_with_all = ["seed", "jwt"])]
    pub cert: Option<PathBuf>,
    /// v1 x509 security: the caller's PEM RSA private key (with --cert).
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// v2 security: the caller's ed25519 seed file, hex (with --jwt).
    #[arg(long, value_name = "FILE", requires = "jwt")]
    pub seed: Option<PathBuf>,
    /// v2 security: the caller's client JWT file (with --seed).
    #[arg(long, value_name = "FILE", requires = "seed")]
    pub jwt: Option<PathBuf>,
}

/// Runs `coro rpc`.
pub fn run(args: &RpcArgs) -> ExitCode {
    let request = match request_from(args) {
        Ok(r) => r,
        Err((code, message)) => return fail(code, &message),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(EX_SOFTWARE, &format!("starting the runtime: {e}")),
    };
    runtime.block_on(execute(args, &request))
}

async fn execute(args: &RpcArgs, request: &RpcRequest) -> ExitCode {
    let client = match connect(&args.server).await {
        Ok(c) => c,
        Err(e) => return fail(EX_UNAVAILABLE, &e.to_string()),
    };
    let wait = args.wait || args.reply_to.is_none();
    if !wait {
        return match publish(&client, request).await {
            Ok(published) => {
                print_published(&published, args.json);
                ExitCode::SUCCESS
            }
            Err(e) => fail(code_of(&e), &e.to_string()),
        };
    }
    let expected = args.expect.or_else(|| request.expected());
    let bar = progress_bar(expected);
    let result = call(&client, request, expected, args.timeout, |_| {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    })
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok((published, replies)) => {
            tracing::debug!(request_id = %published.request_id, "collected");
            print_replies(&replies, expected, args.json);
            ExitCode::from(outcome(&replies, expected))
        }
        Err(e) => fail(code_of(&e), &e.to_string()),
    }
}

/// The exit code for what was collected (see the module docs).
pub fn outcome(replies: &Replies, expected: Option<usize>) -> u8 {
    if replies.failed() > 0 {
        EXIT_FAILED
    } else if replies.replies.is_empty() || expected.is_some_and(|m| replies.missing(m) > 0) {
        EX_TEMPFAIL
    } else {
        0
    }
}

fn code_of(e: &RpcError) -> u8 {
    match e {
        RpcError::InvalidRequest(_) => EX_USAGE,
        RpcError::Read(_) => EX_NOINPUT,
        RpcError::Credentials(_) => EX_DATAERR,
        RpcError::Connect { .. } => EX_UNAVAILABLE,
        RpcError::Random(_) | RpcError::Nats(_) => EX_SOFTWARE,
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// A progress bar on stderr, only when both stdout and stderr are terminals.
fn progress_bar(expected: Option<usize>) -> Option<indicatif::ProgressBar> {
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return None;
    }
    let target = indicatif::ProgressDrawTarget::stderr();
    let bar = match expected {
        Some(n) => {
            let bar = indicatif::ProgressBar::with_draw_target(Some(n as u64), target);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} replies {elapsed}")
            {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = indicatif::ProgressBar::with_draw_target(None, target);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {pos} replies {elapsed}")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        }
    };
    Some(bar)
}

fn print_published(published: &Published, json: bool) {
    let mut out = std::io::stdout().lock();
    let line = if json {
        serde_json::json!({
            "requestid": published.request_id,
            "subjects": published.subjects,
            "reply_to": published.reply_to,
        })
        .to_string()
    } else {
        format!(
            "request {} sent to {}; replies go to {}",
            published.request_id,
            published.subjects.join(", "),
            published.reply_to
        )
    };
    // A closed stdout (e.g. `| head`) is not our error to report.
    let _ = writeln!(out, "{line}");
}

fn print_replies(replies: &Replies, expected: Option<usize>, json: bool) {
    let summary = render_summary(replies, expected);
    if json {
        let mut out = std::io::stdout().lock();
        for reply in replies.sorted() {
            let _ = writeln!(out, "{}", json_line(reply));
        }
        eprint!("{summary}");
    } else {
        let table = render_table(replies);
        let mut out = std::io::stdout().lock();
        let _ = if table.is_empty() {
            write!(out, "{summary}")
        } else {
            write!(out, "{table}\n{summary}")
        };
    }
}

/// Turns the arguments into a request; errors carry their exit code.
fn request_from(args: &RpcArgs) -> Result<RpcRequest, (u8, String)> {
    let usage = |m: String| (EX_USAGE, m);
    let mut request = RpcRequest::new(&args.agent, &args.action);
    request.data = match &args.data {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => return Err(usage("--data must be a JSON object".into())),
            Err(e) => return Err(usage(format!("--data is not JSON: {e}"))),
        },
        None => serde_json::Value::Object(parse_inputs(&args.inputs).map_err(usage)?),
    };
    request.collective.clone_from(&args.collective);
    request.ttl = args.ttl;
    request.filter = filter_from(args).map_err(usage)?;
    request.targets.clone_from(&args.targets);
    request.reply_to.clone_from(&args.reply_to);
    request.federation.clone_from(&args.federation);
    if let Some(sender) = &args.sender {
        request.sender.clone_from(sender);
    }
    request.security = match (&args.cert, &args.key, &args.seed, &args.jwt) {
        (Some(cert), Some(key), _, _) => Security::x509_from_files(cert, key),
        (_, _, Some(seed), Some(jwt)) => Security::choria_from_files(seed, jwt),
        _ => Ok(Security::Insecure),
    }
    .map_err(|e| (code_of(&e), e.to_string()))?;
    let required = request.security.required_version();
    request.version = match (args.protocol, required) {
        (Some(ProtocolArg::V1), Some(Version::V2)) | (Some(ProtocolArg::V2), Some(Version::V1)) => {
            return Err(usage(
                "--protocol does not match the security: --cert/--key is v1, --seed/--jwt is v2"
                    .into(),
            ))
        }
        (Some(ProtocolArg::V1), _) => Version::V1,
        (Some(ProtocolArg::V2), _) => Version::V2,
        (None, required) => required.unwrap_or(Version::V1),
    };
    request.caller = match (&args.caller, request.security.caller()) {
        (Some(caller), _) => caller.clone(),
        (None, Some(from_token)) => from_token,
        (None, None) => request.caller,
    };
    // Checking now gives a usage error before anything connects.
    request
        .build("00000000000000000000000000000000")
        .map_err(|e| (code_of(&e), e.to_string()))?;
    Ok(request)
}

/// `key=value` arguments as a JSON object: values that parse as JSON are kept as that
/// JSON, anything else is a string.
pub fn parse_inputs(
    inputs: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut data = serde_json::Map::new();
    for input in inputs {
        let Some((key, value)) = input.split_once('=') else {
            return Err(format!("input {input:?} is not key=value"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("input {input:?} has an empty key"));
        }
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        data.insert(key.to_string(), value);
    }
    Ok(data)
}

/// The filter from -I, -C, -F, -A and -S.
fn filter_from(args: &RpcArgs) -> Result<Filter, String> {
    let mut filter = Filter::default();
    for identity in &args.identity {
        filter.add_identity(identity);
    }
    for class in &args.class {
        filter.add_class(class);
    }
    for agent in &args.with_agent {
        filter.add_agent(agent);
    }
    for fact in &args.fact {
        let (name, operator, value) = parse_fact(fact)?;
        filter
            .add_fact(&name, &operator, &value)
            .map_err(|e| format!("fact filter {fact:?}: {e}"))?;
    }
    for expr in &args.select {
        filter.add_compound(expr);
    }
    Ok(filter)
}

/// `fact<op>value` as Choria reads it: `=` means `==`, and `=` with a `/regex/` value
/// means `=~`.
pub fn parse_fact(text: &str) -> Result<(String, String, String), String> {
    let bad = || format!("fact filter {text:?} is not fact=value or fact<operator>value");
    let at = text.find(['=', '<', '>', '!']).ok_or_else(bad)?;
    let (name, rest) = text.split_at(at);
    const OPERATORS: [&str; 8] = ["==", "!=", ">=", "<=", "=~", "=", "<", ">"];
    let op = OPERATORS
        .iter()
        .find(|op| rest.starts_with(*op))
        .ok_or_else(bad)?;
    let value = &rest[op.len()..];
    let name = name.trim();
    if name.is_empty() || value.is_empty() {
        return Err(bad());
    }
    let op = match *op {
        "=" if value.len() > 1 && value.starts_with('/') && value.ends_with('/') => "=~",
        "=" => "==",
        other => other,
    };
    Ok((name.to_string(), op.to_string(), value.to_string()))
}

/// A duration: `10s`, `500ms`, `1m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_json_or_strings() {
        let data = parse_inputs(&[
            "count=3".into(),
            "force=true".into(),
            "name=web".into(),
            "list=[1,2]".into(),
            "eq=a=b".into(),
        ])
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(data),
            serde_json::json!({"count": 3, "force": true, "name": "web", "list": [1, 2], "eq": "a=b"})
        );
        assert!(parse_inputs(&["novalue".into()]).is_err());
        assert!(parse_inputs(&["=x".into()]).is_err());
    }

    #[test]
    fn facts_parse_like_choria() {
        let f = |s: &str| parse_fact(s).unwrap();
        assert_eq!(
            f("country=mt"),
            ("country".into(), "==".into(), "mt".into())
        );
        assert_eq!(f("os=/deb/"), ("os".into(), "=~".into(), "/deb/".into()));
        assert_eq!(f("cpus>=4"), ("cpus".into(), ">=".into(), "4".into()));
        assert_eq!(f("cpus<4"), ("cpus".into(), "<".into(), "4".into()));
        assert_eq!(f("a!=b"), ("a".into(), "!=".into(), "b".into()));
        assert!(parse_fact("country").is_err());
        assert!(parse_fact("=mt").is_err());
        assert!(parse_fact("country=").is_err());
        assert!(parse_fact("a!b").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }
}
