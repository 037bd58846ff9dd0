//! The demo's closing table: what arrived, where, and how fast.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Records each sink answered, from `coro_sink_records_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub adapter: String,
    pub sink: String,
    pub kind: String,
    pub delivered: u64,
    pub retried: u64,
    pub rejected: u64,
}

/// The counters the report reads from the Prometheus registry.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (adapter, sink, outcome) → records.
    records: BTreeMap<(String, String, String), u64>,
    pub dead_letters: u64,
    pub dropped: u64,
}

impl Metrics {
    /// Reads the counters as `/metrics` would show them.
    pub fn gather(registry: &prometheus::Registry) -> Metrics {
        let mut out = Metrics::default();
        for family in registry.gather() {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                // Counters hold whole numbers of records.
                let value = metric.get_counter().get_value() as u64;
                match family.name() {
                    "coro_sink_records_total" => {
                        out.records
                            .insert((label("adapter"), label("sink"), label("outcome")), value);
                    }
                    "coro_dead_letters_total" => out.dead_letters += value,
                    "coro_ingest_dropped_total" => out.dropped += value,
                    _ => {}
                }
            }
        }
        out
    }

    /// The row of one sink.
    pub fn row(&self, adapter: &str, sink: &str, kind: &str) -> Row {
        let get = |outcome: &str| {
            self.records
                .get(&(adapter.to_string(), sink.to_string(), outcome.to_string()))
                .copied()
                .unwrap_or(0)
        };
        Row {
            adapter: adapter.to_string(),
            sink: sink.to_string(),
            kind: kind.to_string(),
            delivered: get("delivered"),
            retried: get("retry"),
            rejected: get("rejected"),
        }
    }
}

/// Everything the demo measured.
#[derive(Debug)]
pub struct Report {
    pub nodes: usize,
    pub registered: usize,
    pub registration_time: Duration,
    pub registrations_published: u64,
    pub request_id: String,
    pub reply_to: String,
    pub replied: usize,
    pub reply_time: Duration,
    /// Request published → reply stored in CHORIA_REPLIES, sorted.
    pub latencies: Vec<Duration>,
    pub rows: Vec<Row>,
    pub dead_letters: u64,
    pub dropped: u64,
    pub dir: PathBuf,
    pub http: SocketAddr,
    pub sample: Option<String>,
}

impl Report {
    /// Whether every node's registration and reply arrived.
    pub fn complete(&self) -> bool {
        self.registered == self.nodes && self.replied == self.nodes
    }

    /// The `q` quantile of the latencies (nearest rank).
    fn quantile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies.get(rank - 1).copied()
    }

    /// The closing text: a summary table, the sinks table, and where to look.
    pub fn render(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_string(),
                |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
            )
        };
        let mark = |ok: bool| if ok { "ok" } else { "MISSING" };
        let summary = vec![
            vec![
                "nodes registered".to_string(),
                format!("{} / {}", self.registered, self.nodes),
                format!(
                    "{} within {:.1} s of the fleet starting ({} registrations published)",
                    mark(self.registered == self.nodes),
                    self.registration_time.as_secs_f64(),
                    self.registrations_published
                ),
            ],
            vec![
                "replies received".to_string(),
                format!("{} / {}", self.replied, self.nodes),
                format!(
                    "{} within {:.1} s of the async rpcutil ping",
                    mark(self.replied == self.nodes),
                    self.reply_time.as_secs_f64()
                ),
            ],
            vec![
                "reply latency p50".to_string(),
                ms(self.quantile(0.50)),
                "request published → reply stored in CHORIA_REPLIES".to_string(),
            ],
            vec![
                "reply latency p99".to_string(),
                ms(self.quantile(0.99)),
                String::new(),
            ],
            vec![
                "dead letters".to_string(),
                self.dead_letters.to_string(),
                "records no sink could take".to_string(),
            ],
            vec![
                "dropped at ingest".to_string(),
                self.dropped.to_string(),
                "core NATS messages coro could not queue".to_string(),
            ],
        ];
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\ncoro demo: {} simulated Choria servers\n",
            self.nodes
        );
        out.push_str(&table(&["WHAT", "COUNT", "NOTE"], &summary));
        let sinks: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.adapter.clone(),
                    if r.sink == r.kind {
                        r.sink.clone()
                    } else {
                        format!("{} ({})", r.sink, r.kind)
                    },
                    r.delivered.to_string(),
                    r.retried.to_string(),
                    r.rejected.to_string(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["ADAPTER", "SINK", "DELIVERED", "RETRIED", "REJECTED"],
            &sinks,
        ));
        let dir = self.dir.display();
        let _ = write!(
            out,
            "\nThe async RPC: request {} went to every node with reply-to {};\n\
             the replies landed in stream CHORIA_RPC_INBOX, and the `replies` adapter wrote\n\
             them as Choria's adapter would into CHORIA_REPLIES (choria.replies.<sender>).\n\
             \nWhere to look (kept after the demo):\n\
             \x20 {dir}/registration.jsonl   every registration as a choria_streams JSON line\n\
             \x20 {dir}/jetstream/            the JetStream store (streams CHORIA_REGISTRATION, CHORIA_RPC_INBOX, CHORIA_REPLIES)\n\
             \x20 {dir}/broker.conf           the network broker's Choria config\n\
             \x20 {dir}/adapters.toml         the adapters it ran (the repo's adapters.toml, retargeted)\n\
             \x20 coro broker run --config {dir}/broker.conf --adapters {dir}/adapters.toml\n\
             \x20                              runs it all again; metrics on http://{}/metrics\n",
            self.request_id, self.reply_to, self.http
        );
        if let Some(sample) = &self.sample {
            let shown: String = sample.chars().take(300).collect();
            let more = if shown.len() < sample.len() {
                " ..."
            } else {
                ""
            };
            let _ = writeln!(out, "\nOne registration record:\n  {shown}{more}");
        }
        let _ = writeln!(
            out,
            "\n{}",
            if self.complete() {
                "Every node's registration and reply arrived."
            } else {
                "Not every registration or reply arrived: see the counts above."
            }
        );
        out
    }
}

/// Columns padded to their widest cell, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["A", "BB"],
            &[
                vec!["xxx".into(), "y".into()],
                vec!["z".into(), "wwww".into()],
            ],
        );
        assert_eq!(text, "A    BB\nxxx  y\nz    wwww\n");
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut report = Report {
            nodes: 4,
            registered: 4,
            registration_time: Duration::ZERO,
            registrations_published: 4,
            request_id: "r".into(),
            reply_to: "x".into(),
            replied: 4,
            reply_time: Duration::ZERO,
            latencies: (1..=100).map(Duration::from_millis).collect(),
            rows: vec![],
            dead_letters: 0,
            dropped: 0,
            dir: PathBuf::from("/tmp"),
            http: ([127, 0, 0, 1], 1).into(),
            sample: None,
        };
        assert_eq!(report.quantile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(report.quantile(0.99), Some(Duration::from_millis(99)));
        assert!(report.complete());
        report.replied = 3;
        assert!(!report.complete());
        assert!(report.render().contains("MISSING"));
    }
}
