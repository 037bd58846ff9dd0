//! `coro decode` and `coro --version` as a user runs them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn synthetic(name: &str) -> PathBuf {
    let shared = std::env::var_os("CORO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let path = shared.join("choria/fixtures/synthetic").join(name);
    assert!(path.is_file(), "fixture missing: {}", path.display());
    path
}

fn coro(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A child that exits early closes its stdin; that is not a failure here.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn version() {
    let o = coro(&["--version"], b"");
    assert!(o.status.success());
    assert_eq!(stdout(&o), format!("coro {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn decode_prints_one_record_line() {
    let path = synthetic("v1_transport_reply.wire");
    let o = coro(
        &[
            "decode",
            "--subject",
            "mcollective.reply.x.y",
            path.to_str().unwrap(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["subject"], "mcollective.reply.x.y");
    assert_eq!(v["version"], 1);
    assert_eq!(v["kind"], "reply");
    assert_eq!(v["sender"], "node1.example.net");
    assert_eq!(v["requestid"], "a2f0ca717c694f2086cfa81b6c494648");
    assert_eq!(v["agent"], "rpcutil");
    assert_eq!(v["time"], "2023-11-14T22:13:21Z");
    assert_eq!(v["body_encoding"], "json");
    assert_eq!(v["body"]["data"]["pong"], 1_700_000_001);
}

#[test]
fn decode_from_stdin_as_choria_streams() {
    let bytes = std::fs::read(synthetic("v1_transport_registration.json")).unwrap();
    let o = coro(&["decode", "--as", "choria-streams", "-"], &bytes);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(synthetic("adapter_choria_streams_output.json")).unwrap(),
    )
    .unwrap();
    let got: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(got, expected);
    assert!(
        stdout(&o).starts_with(r#"{"protocol":"choria:adapters:choria_streams:output:1","data":"#)
    );
}

#[test]
fn bad_input_exits_65_with_one_error_line() {
    let o = coro(
        &["decode"],
        br#"{"protocol":"choria:transport:1","data":"aGVsbG8gd29y!GQ=","headers":{}}"#,
    );
    assert_eq!(o.status.code(), Some(65));
    assert_eq!(
        stderr(&o),
        "error: transport: data is not valid base64 at offset 12\n"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn verify_flag_checks_signatures() {
    let ok = coro(
        &[
            "decode",
            "--verify",
            synthetic("v1_transport_request.wire").to_str().unwrap(),
        ],
        b"",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let mut bytes = std::fs::read(synthetic("v1_transport_reply.json")).unwrap();
    // Corrupt the hash inside by editing the secure layer and re-wrapping it.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = v["data"].as_str().unwrap();
    let secure =
        coro_core::protocol::b64_decode(coro_core::protocol::Layer::Transport, "data", data)
            .unwrap();
    let tampered = String::from_utf8(secure)
        .unwrap()
        .replace("\"hash\":\"L", "\"hash\":\"M");
    bytes = text
        .replace(data, &coro_core::protocol::b64_encode(tampered.as_bytes()))
        .into_bytes();
    let bad = coro(&["decode", "--verify", "-"], &bytes);
    assert_eq!(bad.status.code(), Some(65));
    assert_eq!(
        stderr(&bad),
        "error: verify: hash does not match the message\n"
    );
}

#[test]
fn missing_file_exits_66() {
    let o = coro(&["decode", "/nonexistent/payload"], b"");
    assert_eq!(o.status.code(), Some(66));
    assert!(
        stderr(&o).starts_with("error: /nonexistent/payload: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for len in [0usize, 1, 7, 64, 999, 4096] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let o = coro(&["decode"], &bytes);
        assert_eq!(o.status.code(), Some(65), "len {len}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with("error: ") && err.lines().count() == 1,
            "{err}"
        );
    }
    let o = coro(
        &["decode", "--max-payload", "10"],
        &std::fs::read(synthetic("v1_transport_reply.wire")).unwrap(),
    );
    assert_eq!(o.status.code(), Some(65));
    assert_eq!(
        stderr(&o),
        "error: payload: input is over the 10 byte limit\n"
    );
}
