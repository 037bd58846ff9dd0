//! `coro validate`: load a config, type every sink, and either list every problem or
//! print what would run. Nothing connects anywhere.

use crate::cli::ValidateArgs;
use coro_core::config::{AdapterConfig, AdaptersConfig, IngestConfig, SinkSpec};
use coro_sinks::config::SinkConfig;
use std::process::ExitCode;

/// sysexits(3): configuration error.
const EX_CONFIG: u8 = 78;

/// Runs `coro validate`: exit 0 with a table of the adapters on stdout, or 78 with every
/// problem on stderr, one per line.
pub fn run(args: &ValidateArgs) -> ExitCode {
    match coro_sinks::config::load(&args.config) {
        Ok((config, _)) => {
            print!("{}", summary(&config));
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
        _ => None,
    };
    match target {
        Some(t) => format!("{label}: {t}"),
        None => label,
    }
}
