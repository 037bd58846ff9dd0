use super::config::{FileConfig, FsyncPolicy};
use super::FileSink;
use crate::encoding::Encoding;
use coro_core::protocol::Version;
use coro_core::sink::{Batch, Outcome};
use coro_core::{Kind, Record};
use tower::ServiceExt;

fn record(id: usize, kind: Kind) -> Record {
    Record {
        subject: "s".into(),
        version: Version::V1,
        kind,
        sender: "node1.example.net".into(),
        request_id: format!("{id:032}"),
        agent: "rpcutil".into(),
        collective: None,
        time_ns: 1_700_000_000_000_000_000,
        body: bytes::Bytes::from(format!(r#"{{"n":{id}}}"#)),
        raw: bytes::Bytes::new(),
    }
}

fn config(dir: &std::path::Path, max_bytes: u64, keep: usize) -> FileConfig {
    FileConfig {
        path: dir.join("out/records.jsonl"),
        encoding: Encoding::ChoriaStreams,
        max_bytes,
        keep,
        fsync: FsyncPolicy::Always,
    }
}

#[tokio::test]
async fn writes_one_line_per_record_and_rejects_what_cannot_be_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::open(config(dir.path(), 1 << 20, 2)).unwrap();
    let batch = Batch::new(vec![
        record(1, Kind::Reply),
        record(2, Kind::Lifecycle),
        record(3, Kind::Request),
    ]);
    let out = sink.clone().oneshot(batch).await.unwrap();
    assert_eq!(out[0], Outcome::Delivered);
    assert!(matches!(&out[1], Outcome::Reject { reason } if reason.contains("lifecycle")));
    assert_eq!(out[2], Outcome::Delivered);
    let text = std::fs::read_to_string(dir.path().join("out/records.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        r#"{"protocol":"choria:adapters:choria_streams:output:1","data":"{\"n\":1}","sender":"node1.example.net","time":"2023-11-14T22:13:20Z","requestid":"00000000000000000000000000000001"}"#
    );
}

#[tokio::test]
async fn rotates_by_size_and_keeps_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    // Each line is about 190 bytes: three lines per file.
    let sink = FileSink::open(config(dir.path(), 600, 2)).unwrap();
    for i in 0..12 {
        let out = sink
            .clone()
            .oneshot(Batch::new(vec![record(i, Kind::Reply)]))
            .await
            .unwrap();
        assert_eq!(out, [Outcome::Delivered]);
    }
    let base = dir.path().join("out/records.jsonl");
    let lines = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let current = lines(&base);
    let first = lines(&base.with_extension("jsonl.1"));
    let second = lines(&base.with_extension("jsonl.2"));
    assert!(!base.with_extension("jsonl.3").exists(), "keep = 2");
    assert_eq!(first, 3);
    assert_eq!(second, 3);
    assert_eq!(current, 3);
    for file in [&base, &base.with_extension("jsonl.1")] {
        assert!(std::fs::metadata(file).unwrap().len() <= 600);
    }
    // The newest records are in the current file.
    assert!(std::fs::read_to_string(&base)
        .unwrap()
        .contains("00000000000000000000000000000011"));
}

#[tokio::test]
async fn a_torn_last_line_is_cut_off_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, 2);
    std::fs::create_dir_all(cfg.path.parent().unwrap()).unwrap();
    std::fs::write(&cfg.path, "{\"whole\":1}\n{\"torn\":").unwrap();
    let sink = FileSink::open(cfg.clone()).unwrap();
    sink.oneshot(Batch::new(vec![record(5, Kind::Reply)]))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], "{\"whole\":1}");
    assert!(lines[1].contains("00000000000000000000000000000005"));
}
