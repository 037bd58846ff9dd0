//! `coro demo` end to end: its own nats-server child, the repo's adapters.toml, a
//! simulated fleet and one asynchronous RPC; every registration and reply must arrive.

use std::process::Command;

#[test]
fn demo_delivers_every_registration_and_reply() {
    // The demo finds nats-server itself; with-servers.sh names the one it installed.
    assert!(
        std::env::var_os("CORO_NATS_SERVER").is_some(),
        "CORO_NATS_SERVER is not set: run the tests with `make test` (scripts/install-nats.sh installs nats-server)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["demo", "--nodes", "200", "--timeout", "60s", "--dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("nodes registered   200 / 200  ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("replies received   200 / 200  ok"),
        "{stdout}"
    );
    assert!(stdout.contains("Every node's registration and reply arrived."));
    let replies_row = stdout
        .lines()
        .find(|l| l.starts_with("replies ") && l.contains("jetstream"))
        .unwrap_or_else(|| panic!("no replies row:\n{stdout}"));
    let cells: Vec<&str> = replies_row.split_whitespace().collect();
    assert_eq!(cells, ["replies", "jetstream", "200", "0", "0"], "{stdout}");

    // The file sink wrote one choria_streams line per registration it delivered, each
    // from a simulated node.
    let lines = std::fs::read_to_string(out_dir.join("registration.jsonl")).unwrap();
    let mut senders = std::collections::BTreeSet::new();
    for line in lines.lines() {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(doc["protocol"], "choria:adapters:choria_streams:output:1");
        senders.insert(doc["sender"].as_str().unwrap().to_string());
    }
    assert_eq!(senders.len(), 200);

    // A second run reuses (clears) its own directory; a directory it did not make is
    // refused.
    let again = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["demo", "--nodes", "5", "--dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["demo", "--nodes", "5", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("was not made by coro demo"));
}
