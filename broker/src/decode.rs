//! `coro decode`: one payload in, one line of JSON out.

use crate::cli::{DecodeArgs, DecodeOutput};
use coro_core::protocol::verify::{self, hex_key, TrustAnchor, Verified};
use coro_core::protocol::{self, Limits, Message};
use coro_core::Record;
use coro_sinks::encoding::{self, Encoding};
use std::io::{Read, Write};
use std::process::ExitCode;

/// sysexits(3): the input data was incorrect.
const EX_DATAERR: u8 = 65;
/// sysexits(3): the input file could not be read.
const EX_NOINPUT: u8 = 66;

/// Runs `coro decode`.
pub fn run(args: &DecodeArgs) -> ExitCode {
    let limits = Limits {
        max_payload: args.max_payload,
        ..Limits::DEFAULT
    };
    let payload = match read_input(args, &limits) {
        Ok(p) => p,
        Err(e) => return fail(EX_NOINPUT, &e),
    };
    if payload.len() > limits.max_payload {
        // Only max_payload + 1 bytes were read, so the real size is unknown.
        let limit = limits.max_payload;
        return fail(
            EX_DATAERR,
            &format!("payload: input is over the {limit} byte limit"),
        );
    }
    match decode(args, &limits, payload) {
        Ok(line) => {
            let mut out = std::io::stdout().lock();
            // A closed stdout (e.g. `| head`) is not our error to report.
            let _ = out.write_all(&line).and_then(|()| out.write_all(b"\n"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(EX_DATAERR, &e),
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// Reads at most one byte past the limit, so a huge input fails fast without being
/// held in memory.
fn read_input(args: &DecodeArgs, limits: &Limits) -> Result<Vec<u8>, String> {
    let cap = u64::try_from(limits.max_payload)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut payload = Vec::new();
    let result = match args.file.as_deref() {
        None => std::io::stdin().lock().take(cap).read_to_end(&mut payload),
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin().lock().take(cap).read_to_end(&mut payload)
        }
        Some(path) => std::fs::File::open(path)
            .and_then(|f| f.take(cap).read_to_end(&mut payload))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    result.map_err(|e| e.to_string())?;
    Ok(payload)
}

fn decode(args: &DecodeArgs, limits: &Limits, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let message = protocol::decode_with(&payload, limits).map_err(|e| e.to_string())?;
    if args.verify {
        check(&message, args.issuer.as_deref())?;
    }
    let record = Record::from_message(&args.subject, message, payload.into());
    let encoding = match args.output {
        DecodeOutput::Record => Encoding::Record,
        DecodeOutput::ChoriaStreams => Encoding::ChoriaStreams,
    };
    encoding::encode(&record, encoding).map_err(|e| format!("output: {e}"))
}

fn check(message: &Message, issuer: Option<&str>) -> Result<Verified, String> {
    let Message::Rpc(rpc) = message else {
        return Err("verify: lifecycle events carry no signature".into());
    };
    let Some(secure) = &rpc.secure else {
        return Err("verify: the payload has no secure layer to check".into());
    };
    let key = issuer.map(read_issuer).transpose()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let anchor = TrustAnchor {
        issuer: key.as_ref(),
        now,
    };
    verify::verify(secure, rpc.inner.caller(), &anchor).map_err(|e| format!("verify: {e}"))
}

fn read_issuer(text: &str) -> Result<[u8; 32], String> {
    let hex = if std::path::Path::new(text).is_file() {
        std::fs::read_to_string(text).map_err(|e| format!("issuer: {text}: {e}"))?
    } else {
        text.to_string()
    };
    hex_key(&hex).map_err(|e| format!("issuer: {e}"))
}
