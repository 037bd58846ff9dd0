//! A sink plugin for testing hosts (and for benchmarks): by default it delivers
//! everything and keeps nothing, like the compiled-in blackhole. Its config makes it
//! fail in the ways a plugin can:
//!
//! * `panic_in`: `"check"`, `"new"`, `"send"` or `"flush"` panics there;
//! * `fail`: `"retry"` or `"fatal"` fails every `send` as a whole;
//! * `sleep_ms`: each `send` sleeps that long first;
//! * `reject_containing`: records whose data contains this text are rejected.
//!
//! Built as a shared library: `cargo build -p coro-plugin-sdk --example testsink`.

use coro_plugin_sdk::{export_sink, Error, Outcome, RecordRef, Sink, Value};
use std::time::Duration;

struct TestSink {
    config: Value,
}

impl TestSink {
    fn panics_in(config: &Value, function: &str) -> bool {
        config.get("panic_in").and_then(Value::as_str) == Some(function)
    }
}

impl Sink for TestSink {
    fn check(config: &Value) -> Result<(), String> {
        if Self::panics_in(config, "check") {
            panic!("testsink: asked to panic in check");
        }
        match config.get("fail").and_then(Value::as_str) {
            None | Some("retry" | "fatal") => Ok(()),
            Some(other) => Err(format!(
                "fail must be \"retry\" or \"fatal\", not {other:?}"
            )),
        }
    }

    fn new(config: Value) -> Result<Self, String> {
        Self::check(&config)?;
        if Self::panics_in(&config, "new") {
            panic!("testsink: asked to panic in new");
        }
        Ok(TestSink { config })
    }

    fn send(&mut self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, Error> {
        if let Some(ms) = self.config.get("sleep_ms").and_then(Value::as_u64) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if Self::panics_in(&self.config, "send") {
            panic!("testsink: asked to panic in send");
        }
        match self.config.get("fail").and_then(Value::as_str) {
            Some("retry") => return Err(Error::Retry("testsink: asked to fail (retry)".into())),
            Some("fatal") => return Err(Error::Fatal("testsink: asked to fail (fatal)".into())),
            _ => {}
        }
        let reject = self
            .config
            .get("reject_containing")
            .and_then(Value::as_str)
            .map(str::as_bytes);
        Ok(records
            .iter()
            .map(|r| match reject {
                Some(needle) if r.data.windows(needle.len().max(1)).any(|w| w == needle) => {
                    Outcome::reject(format!(
                        "testsink: {} contains the rejected text",
                        r.request_id
                    ))
                }
                _ => Outcome::Delivered,
            })
            .collect())
    }

    fn flush(&mut self) -> Result<(), String> {
        if Self::panics_in(&self.config, "flush") {
            panic!("testsink: asked to panic in flush");
        }
        Ok(())
    }
}

export_sink!(TestSink);
