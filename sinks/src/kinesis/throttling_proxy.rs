//! Test support shared by the sink's tests and the `coro run` tests
//! (broker/tests/kinesis_pubsub.rs includes this file): a fault-injecting proxy that
//! marks chosen records of real `PutRecords` requests as throttled.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A fault-injecting HTTP proxy in front of the real server: in each `PutRecords`, the
/// records whose data it has not seen before and whose position is odd are taken out
/// of the request (so the server never stores them) and answered as throttled, in
/// their place in the server's real response. Everything else is forwarded as is.
pub(crate) struct ThrottlingProxy {
    pub(crate) url: String,
    pub(crate) throttled: Arc<Mutex<usize>>,
}

impl ThrottlingProxy {
    pub(crate) async fn start(upstream: &str) -> ThrottlingProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let throttled = Arc::new(Mutex::new(0));
        let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
        let count = throttled.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (upstream, seen, count) = (upstream.clone(), seen.clone(), count.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, &seen, &count).await;
                });
            }
        });
        ThrottlingProxy { url, throttled }
    }
}

/// Reads one HTTP/1.1 message (head, body by Content-Length) from `conn`.
async fn read_message(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 65536];
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            return Some((head, body));
        }
        let mut chunk = [0u8; 65536];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `head` with its Content-Length set to `length`.
fn with_length(head: &str, length: usize) -> String {
    let mut out: Vec<String> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .map(str::to_string)
        .collect();
    out.push(format!("content-length: {length}"));
    out.join("\r\n") + "\r\n\r\n"
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    seen: &Mutex<HashSet<String>>,
    count: &Mutex<usize>,
) -> Option<()> {
    let mut buf = Vec::new();
    loop {
        let (head, mut body) = read_message(&mut client, &mut buf).await?;
        let put = head.contains("Kinesis_20131202.PutRecords");
        let mut dropped: Vec<usize> = Vec::new();
        let mut total = 0;
        if put {
            let mut request: serde_json::Value = serde_json::from_slice(&body).ok()?;
            let records = request["Records"].as_array_mut()?;
            total = records.len();
            let mut kept = Vec::new();
            for (i, r) in records.drain(..).enumerate() {
                let data = r["Data"].as_str().unwrap_or("").to_string();
                let first = seen.lock().ok()?.insert(data);
                if first && i % 2 == 1 {
                    dropped.push(i);
                } else {
                    kept.push(r);
                }
            }
            *records = kept;
            body = serde_json::to_vec(&request).ok()?;
        }
        let mut up = TcpStream::connect(upstream).await.ok()?;
        up.write_all(with_length(&head, body.len()).as_bytes())
            .await
            .ok()?;
        up.write_all(&body).await.ok()?;
        let mut ubuf = Vec::new();
        let (rhead, mut rbody) = read_message(&mut up, &mut ubuf).await?;
        if put && rhead.starts_with("HTTP/1.1 200") {
            let mut response: serde_json::Value = serde_json::from_slice(&rbody).ok()?;
            let mut real = response["Records"].as_array()?.clone().into_iter();
            let throttled = serde_json::json!({
                "ErrorCode": "ProvisionedThroughputExceededException",
                "ErrorMessage": "Rate exceeded for shard (injected by the test proxy)"
            });
            let merged: Vec<serde_json::Value> = (0..total)
                .map(|i| match dropped.contains(&i) {
                    true => throttled.clone(),
                    false => real.next().unwrap_or(serde_json::Value::Null),
                })
                .collect();
            let failed = response["FailedRecordCount"].as_u64().unwrap_or(0) + dropped.len() as u64;
            response["Records"] = serde_json::Value::Array(merged);
            response["FailedRecordCount"] = failed.into();
            rbody = serde_json::to_vec(&response).ok()?;
            *count.lock().ok()? += dropped.len();
        }
        client
            .write_all(with_length(&rhead, rbody.len()).as_bytes())
            .await
            .ok()?;
        client.write_all(&rbody).await.ok()?;
    }
}
