//! Human output for collected replies: an aligned table and a summary, as `choria req`
//! prints them, and one JSON line per reply for scripts.

use super::collect::{Replies, RpcReply};
use std::fmt::Write;

/// Longest data summary shown in a table cell, in characters.
pub const DATA_WIDTH: usize = 60;

/// The status code names Choria's RPC layer uses.
pub fn status_name(code: i64) -> &'static str {
    match code {
        0 => "OK",
        1 => "Aborted",
        2 => "Unknown Action",
        3 => "Missing Data",
        4 => "Invalid Data",
        5 => "Unknown Error",
        _ => "Unknown Status",
    }
}

/// The reply data as compact JSON (a plain string without quotes), cut to
/// [`DATA_WIDTH`] characters with `...`.
pub fn data_summary(data: &serde_json::Value) -> String {
    let text = match data {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    // Control characters would break the table's rows.
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() <= DATA_WIDTH {
        return text;
    }
    let cut: String = text.chars().take(DATA_WIDTH - 3).collect();
    format!("{cut}...")
}

/// The table of replies, sorted by sender, with a header row and columns padded to
/// line up. Empty when there are no replies.
pub fn render_table(replies: &Replies) -> String {
    let rows: Vec<[String; 4]> = replies
        .sorted()
        .into_iter()
        .map(|r| {
            [
                r.sender.clone(),
                r.statuscode
                    .map_or_else(|| "-".to_string(), |c| c.to_string()),
                r.statusmsg.clone(),
                data_summary(&r.data),
            ]
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let header = [
        "SENDER".to_string(),
        "STATUSCODE".to_string(),
        "STATUSMSG".to_string(),
        "DATA".to_string(),
    ];
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The summary: `Finished processing N / M hosts in X ms` (`N hosts` without an
/// expectation), one line per status code, and the missing and skipped counts.
pub fn render_summary(replies: &Replies, expected: Option<usize>) -> String {
    let mut out = String::new();
    let n = replies.replies.len();
    let ms = replies.elapsed.as_millis();
    let _ = match expected {
        Some(m) => writeln!(out, "Finished processing {n} / {m} hosts in {ms} ms"),
        None => writeln!(out, "Finished processing {n} hosts in {ms} ms"),
    };
    for (code, count) in replies.status_counts() {
        let _ = match code {
            Some(c) => writeln!(out, "  statuscode {c} ({}): {count}", status_name(c)),
            None => writeln!(out, "  not an RPC reply: {count}"),
        };
    }
    if let Some(m) = expected {
        let _ = writeln!(out, "  no responses: {}", replies.missing(m));
    }
    for (what, count) in [
        ("undecodable messages", replies.undecodable),
        ("messages for other requests", replies.unrelated),
        ("duplicate replies", replies.duplicates),
    ] {
        if count > 0 {
            let _ = writeln!(out, "  {what}: {count}");
        }
    }
    out
}

/// One reply as a JSON line: sender, statuscode, statusmsg, data, latency_ms.
pub fn json_line(reply: &RpcReply) -> String {
    serde_json::json!({
        "sender": reply.sender,
        "statuscode": reply.statuscode,
        "statusmsg": reply.statusmsg,
        "data": reply.data,
        "latency_ms": reply.latency.as_secs_f64() * 1000.0,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reply(sender: &str, code: Option<i64>, data: serde_json::Value) -> RpcReply {
        RpcReply {
            sender: sender.into(),
            statuscode: code,
            statusmsg: code.map(status_name).unwrap_or_default().into(),
            data,
            latency: Duration::from_millis(3),
        }
    }

    #[test]
    fn table_is_sorted_and_aligned() {
        let r = Replies {
            replies: vec![
                reply("node-b.example", Some(0), serde_json::json!({"pong": 1})),
                reply("a", Some(4), serde_json::json!({})),
            ],
            elapsed: Duration::from_millis(12),
            ..Replies::default()
        };
        let table = render_table(&r);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("a  "));
        assert!(lines[2].starts_with("node-b.example  0"));
        let col = lines[0].find("STATUSCODE").unwrap();
        assert_eq!(lines[1].find('4'), Some(col));
        let summary = render_summary(&r, Some(3));
        assert!(summary.starts_with("Finished processing 2 / 3 hosts in 12 ms\n"));
        assert!(summary.contains("statuscode 4 (Invalid Data): 1"));
        assert!(summary.contains("no responses: 1"));
    }

    #[test]
    fn long_data_is_cut() {
        let s = data_summary(&serde_json::json!("x".repeat(100)));
        assert_eq!(s.chars().count(), DATA_WIDTH);
        assert!(s.ends_with("..."));
        assert_eq!(data_summary(&serde_json::json!("a\nb")), "a b");
    }
}
