//! Fuzzes the Choria payload decoder with arbitrary bytes.
//!
//! Every decoded message is also turned into a `Record`; RPC messages additionally go
//! through registration parsing, the Choria Streams adapter output, and a transport
//! re-encode. The only assertion is a genuine invariant: a transport that decoded
//! re-encodes to bytes that decode again, to the same transport.
#![no_main]

use bytes::Bytes;
use coro_core::protocol::output::ChoriaStreamsOutput;
use coro_core::protocol::registration::Registration;
use coro_core::protocol::{decode_with, Limits, Message};
use coro_core::Record;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_payload: 1024 * 1024,
    max_gunzip: 4 * 1024 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode_with(data, &LIMITS) else {
        return;
    };

    if let Message::Rpc(rpc) = &message {
        if let Ok(registration) = Registration::decode(rpc.body()) {
            let _ = registration.is_compressed();
            let _ = registration.content(&LIMITS);
        }

        if let Ok(output) = ChoriaStreamsOutput::from_message(rpc) {
            let _ = output.to_json();
        }

        if let Some(transport) = &rpc.transport {
            let encoded = transport.encode();
            match decode_with(&encoded, &LIMITS) {
                Ok(Message::Rpc(again)) => {
                    assert_eq!(
                        again.transport.as_ref(),
                        Some(transport),
                        "re-encoded transport decoded to a different transport: {}",
                        String::from_utf8_lossy(&encoded)
                    );
                }
                Ok(Message::Lifecycle(_)) => panic!(
                    "re-encoded transport decoded as a lifecycle event: {}",
                    String::from_utf8_lossy(&encoded)
                ),
                Err(e) => panic!(
                    "re-encoded transport does not decode ({e}): {}",
                    String::from_utf8_lossy(&encoded)
                ),
            }
        }
    }

    let record = Record::from_message("fuzz.subject", message, Bytes::copy_from_slice(data));
    let _ = record.idempotency_key();
    let _ = record.kind.as_str();
    if let Some(Ok(output)) = ChoriaStreamsOutput::from_record(&record) {
        let _ = output.to_json();
    }
});
