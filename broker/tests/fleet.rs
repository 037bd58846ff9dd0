//! `coro fleet` end to end: start it against the test nats-server, ping the simulated
//! servers, stop it with SIGTERM and read its summary.

use coro_core::gojson;
use coro_core::protocol::{self, v1, Message};
use futures::StreamExt;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn nats_url() -> String {
    std::env::var("CORO_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!("CORO_TEST_NATS_URL is not set: run the tests with `make test` (scripts/with-servers.sh starts nats-server; scripts/install-nats.sh installs it)")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_answers_pings_and_prints_a_summary_on_sigterm() {
    let collective = format!(
        "clifleet{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let nc = async_nats::connect(nats_url()).await.unwrap();
    let mut regs = nc
        .subscribe(format!("{collective}.broadcast.agent.registration"))
        .await
        .unwrap();
    nc.flush().await.unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["fleet", "--nodes", "20", "--no-splay", "--connections", "2"])
        .args(["--server", &nats_url(), "--collective", &collective])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Without a terminal, progress is one line on stderr once every server is up.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("coro fleet did not report its start");
        if line.contains("20 servers (insecure, 2 connections) started in") {
            break;
        }
    }

    // Every server registered once at start (no splay).
    let mut registered = 0;
    while registered < 20 {
        let msg = tokio::time::timeout(Duration::from_secs(10), regs.next())
            .await
            .expect("registration")
            .unwrap();
        assert!(matches!(
            protocol::decode(&msg.payload),
            Ok(Message::Rpc(_))
        ));
        registered += 1;
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut req = v1::Request::new(
        "rpcutil",
        "tester",
        "choria=tester",
        60,
        "0123456789abcdef0123456789abcdef",
        &collective,
        now,
    );
    req.message = r#"{"agent":"rpcutil","action":"ping","data":{}}"#.to_string();
    let secure = v1::SecureRequest::insecure(&gojson::to_string(&req));
    let inbox = format!("{collective}.reply.cli");
    let headers = v1::Headers {
        reply_to: inbox.clone(),
        sender: "tester".into(),
        ..Default::default()
    };
    let payload = gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers));
    let mut replies = nc.subscribe(inbox).await.unwrap();
    nc.flush().await.unwrap();
    nc.publish(
        format!("{collective}.broadcast.agent.rpcutil"),
        payload.into(),
    )
    .await
    .unwrap();
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .expect("20 replies")
            .unwrap();
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.starts_with("coro fleet summary\n"), "{out}");
    let row = |label: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no {label} row in {out}"))
            .to_string()
    };
    assert_eq!(row("servers"), "20");
    assert_eq!(row("registrations published"), "20");
    assert_eq!(row("requests received"), "20");
    assert_eq!(row("requests answered"), "20");
    assert_eq!(row("requests invalid"), "0");
}

#[test]
fn bad_arguments_exit_64() {
    let out = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["fleet", "--nodes", "0", "--server", "nats://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nodes must be at least 1"));
}

#[test]
fn unreachable_server_exits_69() {
    let out = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(["fleet", "--nodes", "1", "--server", "nats://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{out:?}");
}
