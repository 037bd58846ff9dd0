//! Decode cost: a v1 reply transport of about 1 KiB decoded through all three layers
//! (transport, secure reply, reply) into a Record, against one plain
//! `serde_json::from_slice::<Value>` of the same outer bytes, measured in one run.
//!
//! Goal: our full decode costs at most 2x the plain parse. Run with `make bench`.

use bytes::Bytes;
use coro::core::gojson;
use coro::core::protocol::{self, v1, Message};
use coro::core::Record;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A reply transport as a Go server sends it, about 1 KiB on the wire.
fn payload() -> Vec<u8> {
    let body = serde_json::json!({
        "action": "inventory", "statuscode": 0, "statusmsg": "OK",
        "data": {
            "agents": ["rpcutil", "choria_util", "discovery", "package", "service"],
            "collectives": ["mcollective"], "main_collective": "mcollective", "version": "0.28.0"
        }
    });
    let req = v1::Request::new(
        "rpcutil",
        "client.example.net",
        "choria=rip.mcollective",
        60,
        "a2f0ca717c694f2086cfa81b6c494648",
        "mcollective",
        1_700_000_000,
    );
    let reply = v1::Reply::for_request(&req, "node1.example.net", 1_700_000_001, &body.to_string());
    let secure = v1::SecureReply::new(&gojson::to_string(&reply));
    let headers = v1::Headers {
        sender: "node1.example.net".into(),
        seen_by: vec![vec![
            "nats://broker1.example.net:4222".into(),
            "node1.example.net".into(),
            "nats://broker1.example.net:4222".into(),
        ]],
        ..Default::default()
    };
    gojson::to_vec(&v1::Transport::new(&gojson::to_vec(&secure), headers))
}

/// Ingest hands the decoder the NATS payload as `Bytes`, so keeping it as the record's
/// raw form is a reference count, not a copy.
fn ours(bytes: &Bytes) -> Record {
    match protocol::decode(bytes) {
        Ok(m @ Message::Rpc(_)) => Record::from_message("mcollective.reply.x", m, bytes.clone()),
        other => panic!("benchmark payload did not decode: {other:?}"),
    }
}

fn plain(bytes: &Bytes) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_default()
}

/// Messages per second over `iterations` calls.
fn rate<T>(iterations: u32, bytes: &Bytes, f: fn(&Bytes) -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f(black_box(bytes)));
    }
    f64::from(iterations) / start.elapsed().as_secs_f64()
}

/// The same work split by layer, to show where the time goes.
fn layers(bytes: &Bytes) -> [(&'static str, f64); 4] {
    let t: v1::Transport = serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}"));
    let secure_json = t.data_bytes().unwrap_or_default();
    let s: v1::SecureReply = serde_json::from_slice(&secure_json).unwrap_or_else(|e| panic!("{e}"));
    let n = 100_000u32;
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_nanos() as f64 / f64::from(n)
    };
    [
        (
            "transport JSON (typed)",
            time(&|| {
                black_box(serde_json::from_slice::<v1::Transport>(black_box(bytes)).ok());
            }),
        ),
        (
            "base64 of data",
            time(&|| {
                black_box(t.data_bytes().ok());
            }),
        ),
        (
            "secure reply JSON (typed)",
            time(&|| {
                black_box(serde_json::from_slice::<v1::SecureReply>(black_box(&secure_json)).ok());
            }),
        ),
        (
            "reply JSON (typed)",
            time(&|| {
                black_box(serde_json::from_str::<v1::Reply>(black_box(&s.message)).ok());
            }),
        ),
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bytes = Bytes::from(payload());
    // Calibrate to about 100 ms per round, then alternate the two so that machine noise
    // hits both alike.
    let mut iterations = 1_000u32;
    while rate(iterations, &bytes, ours) * 0.1 > f64::from(iterations) && iterations < 10_000_000 {
        iterations *= 2;
    }
    let deadline = Instant::now() + Duration::from_secs(6);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while Instant::now() < deadline || a.len() < 5 {
        a.push(rate(iterations, &bytes, ours));
        b.push(rate(iterations, &bytes, plain));
    }
    let rounds = b.len();
    let (ours_rate, plain_rate) = (median(a), median(b));
    let ratio = plain_rate / ours_rate;
    println!(
        "decode benchmark: v1 reply transport of {} bytes, {rounds} rounds of {iterations}",
        bytes.len()
    );
    println!();
    println!("{:<58} {:>14}", "what", "msgs/s");
    println!(
        "{:<58} {:>14.0}",
        "coro: transport + secure reply + reply -> Record", ours_rate
    );
    println!(
        "{:<58} {:>14.0}",
        "serde_json::from_slice::<Value> of the outer bytes", plain_rate
    );
    println!();
    println!("cost ratio (ours / one plain parse): {ratio:.2}x  (goal: at most 2.00x)");
    println!();
    println!("{:<58} {:>14}", "where the time goes", "ns/msg");
    for (what, ns) in layers(&bytes) {
        println!("{what:<58} {ns:>14.0}");
    }
    println!(
        "{:<58} {:>14.0}",
        "whole decode into a Record",
        1e9 / ours_rate
    );
    println!(
        "{:<58} {:>14.0}",
        "plain serde_json::Value parse",
        1e9 / plain_rate
    );
}
