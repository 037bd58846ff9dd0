//! `coro rpc` against the real nats-server from `scripts/with-servers.sh`.
//!
//! There is no simulated fleet here: small responders written below answer requests
//! with coro-core's reply constructors, the way Choria servers do. Each test uses its
//! own collective, so tests running at once never see each other's requests.

mod common;

use common::{free_port, nats_url, unique};
use coro_broker::rpc::{self, RpcRequest};
use coro_core::gojson;
use coro_core::protocol::{decode, v1, v2, Inner, Message, RpcMessage, Secure, Version};
use futures::StreamExt;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn coro_sync(args: &[String], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coro"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs `coro` off the async runtime, so responders keep answering meanwhile.
async fn coro(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || coro_sync(&args, b""))
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

async fn client() -> async_nats::Client {
    async_nats::connect(nats_url()).await.unwrap()
}

/// Subscribes (and makes sure the server knows) before anything is published.
async fn subscribe(client: &async_nats::Client, subject: &str) -> async_nats::Subscriber {
    let sub = client.subscribe(subject.to_string()).await.unwrap();
    client.flush().await.unwrap();
    sub
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no message within 10s")
        .unwrap()
}

fn rpc_of(payload: &[u8]) -> Box<RpcMessage> {
    match decode(payload).unwrap() {
        Message::Rpc(m) => m,
        other => panic!("not an RPC message: {other:?}"),
    }
}

/// A Choria server stand-in: answers every request on `subject` as `identity` with
/// `statuscode`, to the request's `reply-to`, in the request's protocol version.
async fn responder(subject: &str, identity: &str, statuscode: i64) -> tokio::task::JoinHandle<()> {
    let client = client().await;
    let mut sub = subscribe(&client, subject).await;
    let identity = identity.to_string();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let Ok(Message::Rpc(rpc)) = decode(&msg.payload) else {
                continue;
            };
            let reply_to = rpc.transport.as_ref().unwrap().reply_to().to_string();
            let request: serde_json::Value = serde_json::from_slice(rpc.body()).unwrap();
            let body = gojson::to_string(&serde_json::json!({
                "action": request["action"],
                "statuscode": statuscode,
                "statusmsg": if statuscode == 0 { "OK" } else { "Unknown Action" },
                "data": {"pong": 1_700_000_001, "who": identity},
            }));
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let payload = match &rpc.inner {
                Inner::V1Request(req) => {
                    let secs = now.as_secs() as i64;
                    let reply = v1::Reply::for_request(req, &identity, secs, &body);
                    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
                    let headers = v1::Headers {
                        sender: identity.clone(),
                        ..v1::Headers::default()
                    };
                    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
                }
                Inner::V2Request(req) => {
                    let ns = now.as_nanos() as i64;
                    let reply = v2::Reply::for_request(req, &identity, ns, body.as_bytes());
                    let secure = v2::SecureReply::new(&gojson::to_vec(&reply));
                    let headers = v2::Headers {
                        sender: identity.clone(),
                        ..v2::Headers::default()
                    };
                    gojson::to_vec(&v2::Transport::new(&gojson::to_vec(&secure), headers))
                }
                _ => continue,
            };
            client.publish(reply_to, payload.into()).await.unwrap();
            client.flush().await.unwrap();
        }
    })
}

#[tokio::test]
async fn async_request_publishes_a_real_request_and_exits() {
    let url = nats_url();
    let collective = unique("c");
    let reply_to = format!("{}.adapter.replies", unique("r"));
    let watcher = client().await;
    let mut sub = subscribe(&watcher, &format!("{collective}.broadcast.agent.rpcutil")).await;

    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--collective",
        &collective,
        "--reply-to",
        &reply_to,
        "--caller",
        "choria=rip.mcollective",
        "--sender",
        "client.example",
        "-I",
        "node1",
        "-I",
        "/web/",
        "-C",
        "apache",
        "-F",
        "country=mt",
        "-F",
        "cpus>=4",
        "-A",
        "puppet",
        "-S",
        "with('apache')",
        "count=3",
        "name=web",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    let request_id = out.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(request_id.len(), 32);
    assert!(request_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(
        out.contains(&format!("{collective}.broadcast.agent.rpcutil")),
        "{out}"
    );
    assert!(out.contains(&reply_to), "{out}");

    let msg = next(&mut sub).await;
    let rpc = rpc_of(&msg.payload);
    assert_eq!(rpc.version(), Version::V1);
    assert_eq!(rpc.inner.request_id(), request_id);
    assert_eq!(rpc.inner.agent(), "rpcutil");
    assert_eq!(rpc.inner.collective(), Some(collective.as_str()));
    assert_eq!(rpc.inner.caller(), Some("choria=rip.mcollective"));
    assert_eq!(rpc.inner.sender(), "client.example");
    assert_eq!(rpc.inner.ttl(), Some(60));
    let transport = rpc.transport.as_ref().unwrap();
    assert_eq!(transport.reply_to(), reply_to);
    assert_eq!(transport.sender(), "client.example");
    assert_eq!(
        std::str::from_utf8(rpc.body()).unwrap(),
        r#"{"agent":"rpcutil","action":"ping","data":{"count":3,"name":"web"}}"#
    );
    let filter = rpc.inner.filter().unwrap();
    assert_eq!(filter.identity, ["node1", "/web/"]);
    assert_eq!(filter.cf_class, ["apache"]);
    assert_eq!(filter.agent, ["puppet", "rpcutil"]);
    let facts: Vec<_> = filter
        .fact
        .iter()
        .map(|f| (f.fact.as_str(), f.operator.as_str(), f.value.as_str()))
        .collect();
    assert_eq!(facts, [("country", "==", "mt"), ("cpus", ">=", "4")]);
    assert_eq!(
        filter.compound,
        [serde_json::json!([{"expr": "with('apache')"}])]
    );
    let Some(Secure::V1Request(secure)) = &rpc.secure else {
        panic!("no v1 secure request")
    };
    assert_eq!(secure.signature, "insecure");

    // `coro decode` reads the very bytes that went out.
    let decoded = tokio::task::spawn_blocking(move || {
        coro_sync(&["decode".to_string(), "-".to_string()], &msg.payload)
    })
    .await
    .unwrap();
    assert!(decoded.status.success(), "{}", stderr(&decoded));
    let record: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
    assert_eq!(record["kind"], "request");
    assert_eq!(record["requestid"], request_id.as_str());
    assert_eq!(record["agent"], "rpcutil");
    assert_eq!(record["body"]["action"], "ping");
}

#[tokio::test]
async fn async_request_as_json_and_v2() {
    let url = nats_url();
    let collective = unique("c");
    let watcher = client().await;
    let mut sub = subscribe(&watcher, &format!("{collective}.broadcast.agent.rpcutil")).await;
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--collective",
        &collective,
        "--reply-to",
        "stream.replies",
        "--protocol",
        "v2",
        "--json",
        "--data",
        r#"{"b":[1],"a":"x"}"#,
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = line["requestid"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 27);
    assert_eq!(line["reply_to"], "stream.replies");
    let rpc = rpc_of(&next(&mut sub).await.payload);
    assert_eq!(rpc.version(), Version::V2);
    assert_eq!(rpc.inner.request_id(), id);
    assert_eq!(rpc.transport.as_ref().unwrap().reply_to(), "stream.replies");
    assert_eq!(
        rpc.body(),
        br#"{"agent":"rpcutil","action":"ping","data":{"a":"x","b":[1]}}"#
    );
}

#[tokio::test]
async fn wait_collects_three_replies_into_a_table() {
    let url = nats_url();
    let collective = unique("c");
    let subject = format!("{collective}.broadcast.agent.rpcutil");
    let mut responders = Vec::new();
    for id in ["node3.example", "node1.example", "node2.example"] {
        responders.push(responder(&subject, id, 0).await);
    }
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--collective",
        &collective,
        "--wait",
        "--expect",
        "3",
        "--timeout",
        "20s",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("SENDER"), "{out}");
    assert!(lines[1].starts_with("node1.example  "), "{out}");
    assert!(lines[2].starts_with("node2.example  "), "{out}");
    assert!(lines[3].starts_with("node3.example  "), "{out}");
    // Columns line up under their headers.
    let col = lines[0].find("STATUSCODE").unwrap();
    for line in &lines[1..4] {
        assert_eq!(&line[col..col + 1], "0", "{out}");
        assert!(line.contains("OK"), "{out}");
        assert!(line.contains(r#""pong":1700000001"#), "{out}");
    }
    assert!(out.contains("Finished processing 3 / 3 hosts in "), "{out}");
    assert!(out.contains("statuscode 0 (OK): 3"), "{out}");
    assert!(out.contains("no responses: 0"), "{out}");
    for r in responders {
        r.abort();
    }
}

#[tokio::test]
async fn wait_on_a_custom_reply_subject_as_json_lines() {
    let url = nats_url();
    let collective = unique("c");
    let subject = format!("{collective}.broadcast.agent.rpcutil");
    let r1 = responder(&subject, "b.example", 0).await;
    let r2 = responder(&subject, "a.example", 0).await;
    let reply_to = format!("{}.replies", unique("adapter"));
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--collective",
        &collective,
        "--reply-to",
        &reply_to,
        "--wait",
        "--expect",
        "2",
        "--json",
        "--protocol",
        "v2",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let replies: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0]["sender"], "a.example");
    assert_eq!(replies[1]["sender"], "b.example");
    assert_eq!(replies[0]["statuscode"], 0);
    assert_eq!(replies[0]["data"]["who"], "a.example");
    assert!(stderr(&o).contains("Finished processing 2 / 2 hosts"));
    r1.abort();
    r2.abort();
}

#[tokio::test]
async fn directed_requests_go_to_each_node() {
    let url = nats_url();
    let collective = unique("c");
    let watcher = client().await;
    let mut a = subscribe(&watcher, &format!("{collective}.node.a")).await;
    let mut b = subscribe(&watcher, &format!("{collective}.node.b")).await;
    let mut broadcast = subscribe(&watcher, &format!("{collective}.broadcast.>")).await;
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--collective",
        &collective,
        "--reply-to",
        "x.y",
        "--node",
        "a",
        "--target",
        "b",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = stdout(&o).split_whitespace().nth(1).unwrap().to_string();
    for sub in [&mut a, &mut b] {
        let rpc = rpc_of(&next(sub).await.payload);
        assert_eq!(rpc.inner.request_id(), id);
        assert_eq!(rpc.transport.as_ref().unwrap().reply_to(), "x.y");
    }
    let nothing = tokio::time::timeout(Duration::from_millis(300), broadcast.next()).await;
    assert!(nothing.is_err(), "a directed request was also broadcast");
}

#[tokio::test]
async fn directed_wait_reports_the_node_that_did_not_answer() {
    let url = nats_url();
    let collective = unique("c");
    let r = responder(&format!("{collective}.node.up"), "up", 0).await;
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--collective",
        &collective,
        "--node",
        "up",
        "--node",
        "down",
        "--timeout",
        "1s",
    ])
    .await;
    assert_eq!(o.status.code(), Some(75), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Finished processing 1 / 2 hosts"), "{out}");
    assert!(out.contains("no responses: 1"), "{out}");
    r.abort();
}

#[tokio::test]
async fn a_failed_status_code_exits_1() {
    let url = nats_url();
    let collective = unique("c");
    let subject = format!("{collective}.broadcast.agent.rpcutil");
    let ok = responder(&subject, "good", 0).await;
    let bad = responder(&subject, "bad", 2).await;
    let o = coro(&[
        "rpc",
        "rpcutil",
        "nosuch",
        "--server",
        &url,
        "--collective",
        &collective,
        "--expect",
        "2",
    ])
    .await;
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("statuscode 2 (Unknown Action): 1"), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("bad "), "{out}");
    ok.abort();
    bad.abort();
}

#[tokio::test]
async fn nobody_answering_exits_75() {
    let url = nats_url();
    let collective = unique("c");
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--collective",
        &collective,
        "--timeout",
        "300ms",
    ])
    .await;
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert!(stdout(&o).contains("Finished processing 0 hosts"));
}

#[tokio::test]
async fn bad_inputs_are_usage_errors() {
    let url = nats_url();
    for args in [
        vec!["rpc", "rpcutil", "ping", "--server", &url, "novalue"],
        vec!["rpc", "rpcutil", "ping", "--server", &url, "=x"],
        vec!["rpc", "rpcutil", "ping", "--server", &url, "-F", "country"],
        vec!["rpc", "rpcutil", "ping", "--server", &url, "-F", "a!b"],
        vec!["rpc", "rpcutil", "ping", "--server", &url, "--data", "[1]"],
        vec!["rpc", "rpc util", "ping", "--server", &url],
        vec!["rpc", "rpcutil", "ping", "--server", &url, "--node", "a.*"],
        vec!["rpc", "rpcutil", "ping", "--server", &url, "--ttl", "5"],
    ] {
        let o = coro(&args).await;
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.starts_with("error: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(o.stdout.is_empty());
    }
}

#[tokio::test]
async fn unreachable_server_exits_69() {
    let port = free_port();
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &format!("nats://127.0.0.1:{port}"),
        "--reply-to",
        "x",
    ])
    .await;
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("error: connecting to "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn unreadable_credentials_exit_66() {
    let url = nats_url();
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--cert",
        "/nonexistent/c.pem",
        "--key",
        "/nonexistent/k.pem",
    ])
    .await;
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("error: /nonexistent/c.pem: "));
}

#[tokio::test]
async fn v2_signed_requests_carry_the_jwt_caller() {
    use base64::Engine;
    use ed25519_dalek::Verifier;
    let url = nats_url();
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("caller.seed");
    std::fs::write(&seed, format!("{}\n", "07".repeat(32))).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"callerid":"up=rip","purpose":"choria_client_id"}"#);
    let jwt = dir.path().join("caller.jwt");
    std::fs::write(&jwt, format!("eyJhbGciOiJFZERTQSJ9.{claims}.c2ln")).unwrap();
    let collective = unique("c");
    let watcher = client().await;
    let mut sub = subscribe(&watcher, &format!("{collective}.broadcast.agent.rpcutil")).await;
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--collective",
        &collective,
        "--reply-to",
        "x",
        "--seed",
        seed.to_str().unwrap(),
        "--jwt",
        jwt.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rpc = rpc_of(&next(&mut sub).await.payload);
    assert_eq!(rpc.version(), Version::V2);
    assert_eq!(rpc.inner.caller(), Some("up=rip"));
    assert_eq!(rpc.inner.request_id().len(), 27);
    let Some(Secure::V2Request(secure)) = &rpc.secure else {
        panic!("no v2 secure request")
    };
    assert!(secure.caller.ends_with(".c2ln"));
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&secure.signature)
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    key.verify(
        &secure.request_bytes().unwrap(),
        &ed25519_dalek::Signature::from_slice(&signature).unwrap(),
    )
    .unwrap();
}

/// A throwaway self-signed test certificate (CN rip.mcollective) and its 1024-bit key,
/// made with openssl for these tests only.
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIICEjCCAXugAwIBAgIUUVmeJx3/7J9FGCg9XXQmiIrImDAwDQYJKoZIhvcNAQEL\nBQAwGjEYMBYGA1UEAwwPcmlwLm1jb2xsZWN0aXZlMCAXDTI2MTEyNTAyMTE1OVoY\nDzIxMjYxMTAxMDIxMTU5WjAaMRgwFgYDVQQDDA9yaXAubWNvbGxlY3RpdmUwgZ8w\nDQYJKoZIhvcNAQEBBQADgY0AMIGJAoGBALd9CNaEoOQ+FUqcWUKbfQKjXueQFPxZ\nOLfVEHaEI1SgTr7M8ePT1m6blp+4TO9v3GW/M535qGN94T99pSizWhrjfpXzFjm8\nk746R59Z4VJP07bMcOGPKqgJzwOPoVpkrahmo81GRFpFvkI3OUxFXaFkoE7kZwI+\n5gERU/21fqAJAgMBAAGjUzBRMB0GA1UdDgQWBBR9wbJofXRVcp0HrfsNhNXuVprU\nXDAfBgNVHSMEGDAWgBR9wbJofXRVcp0HrfsNhNXuVprUXDAPBgNVHRMBAf8EBTAD\nAQH/MA0GCSqGSIb3DQEBCwUAA4GBAFXHkI0LhACTlTCY/Hly9Ce0zicIhWM/G2da\nChcpYJ9ttimwIXE8hvdsyiYYoBaPVmlkv6PyRZ1gULHX8KJrYurl9hc4TQ0NTZMQ\nEKfCGeARK2k+wSHBnY6Tgg4DX//Bs9LcdHU2tDmitflYNdGDaZvE0VyNT5XH8Bbs\nB+ic6qRR\n-----END CERTIFICATE-----\n";
/// [`TEST_CERT`]'s key, PKCS#1 as Puppet writes it.
const TEST_KEY_PKCS1: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIICXAIBAAKBgQC3fQjWhKDkPhVKnFlCm30Co17nkBT8WTi31RB2hCNUoE6+zPHj\n09Zum5afuEzvb9xlvzOd+ahjfeE/faUos1oa436V8xY5vJO+OkefWeFST9O2zHDh\njyqoCc8Dj6FaZK2oZqPNRkRaRb5CNzlMRV2hZKBO5GcCPuYBEVP9tX6gCQIDAQAB\nAoGAEljNPm3qjIfspxY1EqTrfg0J20ub3ZOqSS9jwwX5ZmfVF9z0Ptyar1qdWAEc\nqEBeIEpbBevFu5UFpcyRbB1q3+P4TyOQ0nYlSEJ61d829b14CZXU0aZudowmVP+6\neLRYsofvglx3mVvSQ5qs0bC1NjkLhdpwWkc2JFs6X9yvzQECQQDn6VytqmfJUdfM\nBlZYzzSkk7MgAddy0hNt8E1Ht29yUEKgPIXx3XkCffri83GxUkRI6XMD9Y0giDvX\n3FijHjchAkEAyowT98xj8QBo17DOGbBf1IM0tOUyEMctaVK7g26bulQQyBTqbnXj\nWxicJN6CgLXjzE2KbOqwyh+YFrWFnwcT6QJBAKIt4QEV5SS1lmr4l5Pdu5vIKoEc\nqJWEcc/1N6YKkuZnWGCEUst0rTZf8X6a7owp0tUGZMeFBd+VRfxL/LR94eECQAu6\njtFzmXn0Lx4GU/jy2KnCq0OqXfrQvdVyf/89YXEpuwsLAwRAeVjmFOyhoeb4IWfM\nOa7S7EfYCoOOIV2zGDkCQE7FcIZDCAvJG+4DCIl+uDdQMfFAitwXpyt6e7Jdwsjj\nsCQ8KJfaDkjPs8/0xkjgbq7qBB6SQvMfNABM5ypu4hE=\n-----END RSA PRIVATE KEY-----\n";
/// [`TEST_CERT`]'s key, PKCS#8.
const TEST_KEY_PKCS8: &str = "-----BEGIN PRIVATE KEY-----\nMIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBALd9CNaEoOQ+FUqc\nWUKbfQKjXueQFPxZOLfVEHaEI1SgTr7M8ePT1m6blp+4TO9v3GW/M535qGN94T99\npSizWhrjfpXzFjm8k746R59Z4VJP07bMcOGPKqgJzwOPoVpkrahmo81GRFpFvkI3\nOUxFXaFkoE7kZwI+5gERU/21fqAJAgMBAAECgYASWM0+beqMh+ynFjUSpOt+DQnb\nS5vdk6pJL2PDBflmZ9UX3PQ+3JqvWp1YARyoQF4gSlsF68W7lQWlzJFsHWrf4/hP\nI5DSdiVIQnrV3zb1vXgJldTRpm52jCZU/7p4tFiyh++CXHeZW9JDmqzRsLU2OQuF\n2nBaRzYkWzpf3K/NAQJBAOfpXK2qZ8lR18wGVljPNKSTsyAB13LSE23wTUe3b3JQ\nQqA8hfHdeQJ9+uLzcbFSREjpcwP1jSCIO9fcWKMeNyECQQDKjBP3zGPxAGjXsM4Z\nsF/UgzS05TIQxy1pUruDbpu6VBDIFOpudeNbGJwk3oKAtePMTYps6rDKH5gWtYWf\nBxPpAkEAoi3hARXlJLWWaviXk927m8gqgRyolYRxz/U3pgqS5mdYYIRSy3StNl/x\nfprujCnS1QZkx4UF35VF/Ev8tH3h4QJAC7qO0XOZefQvHgZT+PLYqcKrQ6pd+tC9\n1XJ//z1hcSm7CwsDBEB5WOYU7KGh5vghZ8w5rtLsR9gKg44hXbMYOQJATsVwhkMI\nC8kb7gMIiX64N1Ax8UCK3BenK3p7sl3CyOOwJDwol9oOSM+zz/TGSOBuruoEHpJC\n8x80AEznKm7iEQ==\n-----END PRIVATE KEY-----\n";

#[tokio::test]
async fn x509_signed_requests_verify() {
    let url = nats_url();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, TEST_CERT).unwrap();
    for (name, key_pem) in [("pkcs1.pem", TEST_KEY_PKCS1), ("pkcs8.pem", TEST_KEY_PKCS8)] {
        let key = dir.path().join(name);
        std::fs::write(&key, key_pem).unwrap();
        let collective = unique("c");
        let watcher = client().await;
        let mut sub = subscribe(&watcher, &format!("{collective}.broadcast.agent.rpcutil")).await;
        let o = coro(&[
            "rpc",
            "rpcutil",
            "ping",
            "--server",
            &url,
            "--collective",
            &collective,
            "--reply-to",
            "x",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .await;
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        let rpc = rpc_of(&next(&mut sub).await.payload);
        let Some(Secure::V1Request(secure)) = &rpc.secure else {
            panic!("no v1 secure request")
        };
        assert_eq!(secure.pubcert, TEST_CERT);
        let verified = coro_core::protocol::verify::verify_v1_request(secure).unwrap();
        assert_eq!(
            verified,
            coro_core::protocol::verify::Verified::Signed {
                signer: "rip.mcollective".into()
            },
            "{name}"
        );
    }

    // A key file that is not a key is bad data (65); v2 with x509 is a usage error.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "junk").unwrap();
    let (c, j) = (cert.to_str().unwrap(), junk.to_str().unwrap());
    let o = coro(&[
        "rpc", "rpcutil", "ping", "--server", &url, "--cert", c, "--key", j,
    ])
    .await;
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    let k = dir.path().join("pkcs1.pem");
    let o = coro(&[
        "rpc",
        "rpcutil",
        "ping",
        "--server",
        &url,
        "--cert",
        c,
        "--key",
        k.to_str().unwrap(),
        "--protocol",
        "v2",
    ])
    .await;
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
}

/// The library call the demo and benchmarks use: subscribe, publish, collect.
#[tokio::test]
async fn call_in_process() {
    let collective = unique("c");
    let subject = format!("{collective}.broadcast.agent.rpcutil");
    let r1 = responder(&subject, "n1", 0).await;
    let r2 = responder(&subject, "n2", 0).await;
    let nats = rpc::connect(&nats_url()).await.unwrap();
    let mut request = RpcRequest::new("rpcutil", "ping");
    request.collective = collective.clone();
    let mut seen = 0;
    let (published, replies) = rpc::call(&nats, &request, Some(2), Duration::from_secs(10), |_| {
        seen += 1;
    })
    .await
    .unwrap();
    assert_eq!(seen, 2);
    assert_eq!(published.subjects, [subject]);
    assert!(published
        .reply_to
        .starts_with(&format!("{collective}.reply.")));
    assert!(published.reply_to.ends_with(&published.request_id));
    let senders: Vec<_> = replies.sorted().iter().map(|r| r.sender.clone()).collect();
    assert_eq!(senders, ["n1", "n2"]);
    assert_eq!(replies.failed(), 0);
    assert!(replies.replies.iter().all(|r| r.statuscode == Some(0)));

    // Replies to other requests and junk on the subject are counted, not fatal.
    let junk = format!("{}.replies", unique("junk"));
    let sub = rpc::subscribe(&nats, &junk).await.unwrap();
    nats.publish(junk.clone(), "not choria".into())
        .await
        .unwrap();
    let request = v1::Request::new("rpcutil", "me", "choria=me", 60, "other", "mc", 0);
    let reply = v1::Reply::for_request(&request, "n1", 0, "{}");
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let transport = v1::Transport::new(&gojson::to_vec(&secure), v1::Headers::default());
    nats.publish(junk, gojson::to_vec(&transport).into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let replies = sub
        .collect("id", None, Duration::from_millis(500), |_| {})
        .await;
    assert_eq!(replies.undecodable, 1, "{replies:?}");
    assert_eq!(replies.unrelated, 1, "{replies:?}");
    assert!(replies.replies.is_empty());
    r1.abort();
    r2.abort();
}
