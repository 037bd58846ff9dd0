//! Write a Coro sink plugin in Rust: implement [`Sink`], export it with
//! [`export_sink!`], build the crate as a `cdylib`, and name the library in
//! `adapters.toml`.
//!
//! ```no_run
//! use coro_plugin_sdk::{export_sink, Error, Outcome, RecordRef, Sink, Value};
//!
//! /// Counts what it is sent, and keeps nothing.
//! struct Counter {
//!     seen: u64,
//! }
//!
//! impl Sink for Counter {
//!     fn new(_config: Value) -> Result<Self, String> {
//!         Ok(Counter { seen: 0 })
//!     }
//!
//!     fn send(&mut self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, Error> {
//!         self.seen += records.len() as u64;
//!         Ok(vec![Outcome::Delivered; records.len()])
//!     }
//! }
//!
//! export_sink!(Counter);
//! ```
//!
//! ```toml
//! # Cargo.toml of the plugin
//! [lib]
//! crate-type = ["cdylib"]
//!
//! # adapters.toml
//! [[adapter.sink]]
//! type = "plugin"
//! path = "target/release/libmy_sink.so"
//! config = { anything = "the plugin's Sink::new gets as JSON" }
//! ```
//!
//! What the macro generates follows the rules of the C ABI in [`abi`]: every call is
//! wrapped in `catch_unwind`, so a panic in your code becomes an error status with the
//! panic message (the host retries the batch) instead of undefined behaviour. Build
//! with the default `panic = "unwind"`: with `panic = "abort"` a panic ends the whole
//! daemon. The host calls one instance from one thread at a time, so [`Sink::send`]
//! takes `&mut self` and needs no locking.

use std::time::Duration;

/// The C ABI (re-exported from `coro-core`), for the macro and the curious.
pub use coro_core::plugin as abi;
/// What a record is (request, reply, registration, lifecycle, dead letter).
pub use coro_core::Kind;
/// Plugin configs arrive as JSON.
pub use serde_json::{self, Value};

/// One record of a batch, borrowed for the duration of [`Sink::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record in the sink's `encoding` (by default the body exactly as sent).
    pub data: &'a [u8],
    /// The NATS subject it arrived on.
    pub subject: &'a str,
    /// The sender identity.
    pub sender: &'a str,
    /// The request id.
    pub request_id: &'a str,
    /// A stable key for de-duplication: the same message redelivered has the same key.
    pub idempotency_key: &'a str,
    /// The agent, or the lifecycle component.
    pub agent: &'a str,
    /// What it is; `None` for a kind newer than this SDK.
    pub kind: Option<Kind>,
    /// The Choria protocol generation, 1 or 2.
    pub protocol_version: u32,
    /// The Choria time in unix nanoseconds.
    pub time_ns: i64,
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination has it durably.
    Delivered,
    /// Send it again, no sooner than `after` when given.
    Retry {
        /// A wait the destination asked for.
        after: Option<Duration>,
        /// Why, for logs and the dead letter once retries run out.
        reason: String,
    },
    /// Never: the record goes to the dead letter.
    Reject {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// A retry with no wait asked for.
    pub fn retry(reason: impl Into<String>) -> Outcome {
        Outcome::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    /// A rejection.
    pub fn reject(reason: impl Into<String>) -> Outcome {
        Outcome::Reject {
            reason: reason.into(),
        }
    }
}

/// A failure of a whole call rather than of single records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Worth trying again (connection lost, disk full): every record is retried.
    Retry(String),
    /// Would fail again: every record goes to the dead letter.
    Fatal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Retry(m) | Error::Fatal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// A sink: what a plugin implements. The host makes one value per configured sink with
/// [`Sink::new`], calls [`Sink::send`] per batch from one thread at a time, and
/// [`Sink::flush`] once before dropping it.
pub trait Sink: Sized + Send + 'static {
    /// Whether `config` is acceptable, without acting on it (`coro validate` asks).
    /// By default everything is; [`Sink::new`] may still refuse it.
    fn check(config: &Value) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// A sink from the `config` table of its `adapters.toml` entry.
    fn new(config: Value) -> Result<Self, String>;

    /// Delivers `records`, answering one outcome per record, in order; or fails the
    /// whole batch. Answer [`Outcome::Delivered`] only once the destination has the
    /// record durably. A different number of outcomes than records fails the batch.
    fn send(&mut self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, Error>;

    /// Writes out anything buffered; called once, before the sink is dropped.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Exports `$sink` (a type implementing [`Sink`]) as this library's Coro sink plugin:
/// generates the `coro_sink_plugin_v1` entry function and its function table. Use it
/// once per library.
#[macro_export]
macro_rules! export_sink {
    ($sink:ty) => {
        /// The Coro sink plugin entry point (ABI version 1): returns the function table.
        #[unsafe(no_mangle)]
        pub extern "C" fn coro_sink_plugin_v1() -> *const $crate::abi::CoroPluginApi {
            static API: $crate::abi::CoroPluginApi = $crate::__private::api::<$sink>();
            &API
        }
    };
}

#[doc(hidden)]
pub mod __private {
    //! The `extern "C"` functions [`export_sink!`](crate::export_sink) puts in the
    //! table, generic over the sink type. Each one catches panics.

    use super::{Error, Outcome, RecordRef, Sink};
    use coro_core::plugin::{self as abi, CoroOutcome, CoroPluginApi, CoroRecord};
    use std::ffi::{c_char, c_void, CString};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// The function table for `S`.
    pub const fn api<S: Sink>() -> CoroPluginApi {
        CoroPluginApi {
            abi_version: abi::ABI_VERSION,
            flags: 0,
            check: Some(check::<S>),
            create: Some(create::<S>),
            send: Some(send::<S>),
            flush: Some(flush::<S>),
            destroy: Some(destroy::<S>),
            free_string: Some(free_string),
        }
    }

    /// Runs `f`, turning its error or panic into a status and `*error`.
    fn guard(error: *mut *mut c_char, f: impl FnOnce() -> Result<(), Error>) -> i32 {
        let (status, message) = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(())) => return abi::STATUS_OK,
            Ok(Err(Error::Retry(m))) => (abi::STATUS_RETRY, m),
            Ok(Err(Error::Fatal(m))) => (abi::STATUS_FATAL, m),
            Err(payload) => (abi::STATUS_PANIC, panic_message(payload.as_ref())),
        };
        if !error.is_null() {
            // SAFETY: the host passes a valid out-pointer (or NULL, checked above).
            unsafe { *error = c_string(message) };
        }
        status
    }

    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic without a message".to_string()
        }
    }

    /// A string handed to the host, freed by [`free_string`].
    fn c_string(s: String) -> *mut c_char {
        let s = if s.contains('\0') {
            s.replace('\0', " ")
        } else {
            s
        };
        CString::new(s).map_or(std::ptr::null_mut(), CString::into_raw)
    }

    /// # Safety
    /// `ptr` points at `len` readable bytes, or `len` is 0.
    unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
        if len == 0 || ptr.is_null() {
            &[]
        } else {
            // SAFETY: see the function's contract.
            unsafe { std::slice::from_raw_parts(ptr, len) }
        }
    }

    /// # Safety
    /// As for [`bytes`].
    unsafe fn text<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a str, Error> {
        // SAFETY: see the function's contract.
        let b = unsafe { bytes(ptr.cast(), len) };
        std::str::from_utf8(b)
            .map_err(|e| Error::Fatal(format!("the host passed a {what} that is not UTF-8: {e}")))
    }

    /// # Safety
    /// `config` points at `len` readable bytes.
    unsafe fn config(config: *const c_char, len: usize) -> Result<serde_json::Value, Error> {
        // SAFETY: see the function's contract.
        let b = unsafe { bytes(config.cast(), len) };
        serde_json::from_slice(b).map_err(|e| Error::Fatal(format!("config is not JSON: {e}")))
    }

    /// # Safety
    /// As the ABI's `check`.
    pub unsafe extern "C" fn check<S: Sink>(
        json: *const c_char,
        len: usize,
        error: *mut *mut c_char,
    ) -> i32 {
        guard(error, || {
            // SAFETY: the ABI: `len` bytes of config.
            let value = unsafe { config(json, len) }?;
            S::check(&value).map_err(Error::Fatal)
        })
    }

    /// # Safety
    /// As the ABI's `create`.
    pub unsafe extern "C" fn create<S: Sink>(
        json: *const c_char,
        len: usize,
        sink: *mut *mut c_void,
        error: *mut *mut c_char,
    ) -> i32 {
        guard(error, || {
            if sink.is_null() {
                return Err(Error::Fatal("no place for the handle".into()));
            }
            // SAFETY: the ABI: `len` bytes of config.
            let value = unsafe { config(json, len) }?;
            let made = S::new(value).map_err(Error::Fatal)?;
            // SAFETY: checked non-null; the host's out-pointer.
            unsafe { *sink = Box::into_raw(Box::new(made)).cast() };
            Ok(())
        })
    }

    /// # Safety
    /// As the ABI's `send`: `sink` from [`create`], `records` and `outcomes` of `count`.
    pub unsafe extern "C" fn send<S: Sink>(
        sink: *mut c_void,
        records: *const CoroRecord,
        count: usize,
        outcomes: *mut CoroOutcome,
        error: *mut *mut c_char,
    ) -> i32 {
        guard(error, || {
            if sink.is_null() || (count > 0 && (records.is_null() || outcomes.is_null())) {
                return Err(Error::Fatal("send called with NULL pointers".into()));
            }
            // SAFETY: a handle from `create`, used by one thread at a time (the host's
            // rule for plugins without FLAG_THREAD_SAFE, which the SDK never sets).
            let sink = unsafe { &mut *sink.cast::<S>() };
            let raw = if count == 0 {
                &[][..]
            } else {
                // SAFETY: the ABI: `count` records.
                unsafe { std::slice::from_raw_parts(records, count) }
            };
            let mut refs = Vec::with_capacity(count);
            for r in raw {
                // SAFETY: the ABI: each pointer with its length is readable for the call.
                refs.push(unsafe {
                    RecordRef {
                        data: bytes(r.data, r.data_len),
                        subject: text(r.subject, r.subject_len, "subject")?,
                        sender: text(r.sender, r.sender_len, "sender")?,
                        request_id: text(r.request_id, r.request_id_len, "request id")?,
                        idempotency_key: text(
                            r.idempotency_key,
                            r.idempotency_key_len,
                            "idempotency key",
                        )?,
                        agent: text(r.agent, r.agent_len, "agent")?,
                        kind: abi::kind_from_code(r.kind),
                        protocol_version: r.protocol_version,
                        time_ns: r.time_ns,
                    }
                });
            }
            let answers = sink.send(&refs)?;
            if answers.len() != count {
                return Err(Error::Fatal(format!(
                    "the sink answered {} outcomes for {count} records",
                    answers.len()
                )));
            }
            if count == 0 {
                return Ok(());
            }
            // SAFETY: the ABI: `count` outcomes, ours to fill.
            let out = unsafe { std::slice::from_raw_parts_mut(outcomes, count) };
            for (slot, answer) in out.iter_mut().zip(answers) {
                *slot = match answer {
                    Outcome::Delivered => CoroOutcome {
                        kind: abi::OUTCOME_DELIVERED,
                        ..CoroOutcome::UNSET
                    },
                    Outcome::Retry { after, reason } => CoroOutcome {
                        kind: abi::OUTCOME_RETRY,
                        retry_after_ms: after.map_or(0, |d| {
                            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
                        }),
                        reason: c_string(reason),
                        ..CoroOutcome::UNSET
                    },
                    Outcome::Reject { reason } => CoroOutcome {
                        kind: abi::OUTCOME_REJECT,
                        reason: c_string(reason),
                        ..CoroOutcome::UNSET
                    },
                };
            }
            Ok(())
        })
    }

    /// # Safety
    /// As the ABI's `flush`: `sink` from [`create`].
    pub unsafe extern "C" fn flush<S: Sink>(sink: *mut c_void, error: *mut *mut c_char) -> i32 {
        guard(error, || {
            if sink.is_null() {
                return Err(Error::Fatal("flush called with a NULL handle".into()));
            }
            // SAFETY: a handle from `create`; nothing else runs on it during flush.
            let sink = unsafe { &mut *sink.cast::<S>() };
            sink.flush().map_err(Error::Retry)
        })
    }

    /// # Safety
    /// As the ABI's `destroy`: `sink` from [`create`], not used afterwards.
    pub unsafe extern "C" fn destroy<S: Sink>(sink: *mut c_void) {
        if sink.is_null() {
            return;
        }
        // SAFETY: a handle from `create` (a `Box<S>`), destroyed once.
        let boxed = unsafe { Box::from_raw(sink.cast::<S>()) };
        // A panicking Drop must not unwind into the host; there is no one to tell but
        // the log (the panic hook has printed it).
        let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
    }

    /// # Safety
    /// `s` is NULL or a string this SDK handed out, not freed before.
    pub unsafe extern "C" fn free_string(s: *mut c_char) {
        if !s.is_null() {
            // SAFETY: made by `CString::into_raw` in `c_string`.
            drop(unsafe { CString::from_raw(s) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::__private as p;
    use super::*;
    use coro_core::plugin::{CoroOutcome, CoroRecord};
    use std::ffi::{c_char, c_void, CStr};

    struct Echo {
        sent: usize,
    }

    impl Sink for Echo {
        fn check(config: &Value) -> Result<(), String> {
            match config.get("bad") {
                Some(_) => Err("bad is bad".into()),
                None => Ok(()),
            }
        }

        fn new(config: Value) -> Result<Self, String> {
            if config.get("panic").is_some() {
                panic!("asked to panic in new");
            }
            Ok(Echo { sent: 0 })
        }

        fn send(&mut self, records: &[RecordRef<'_>]) -> Result<Vec<Outcome>, Error> {
            self.sent += records.len();
            records
                .iter()
                .map(|r| match r.data {
                    b"boom" => panic!("boom in {}", r.subject),
                    b"fail" => Err(Error::Retry("asked to fail".into())),
                    b"no" => Ok(Outcome::reject(format!("no from {}", r.sender))),
                    b"later" => Ok(Outcome::Retry {
                        after: Some(Duration::from_millis(250)),
                        reason: "later".into(),
                    }),
                    _ => Ok(Outcome::Delivered),
                })
                .collect()
        }
    }

    /// An outcome as it came back: kind, retry after, reason.
    type Answer = (u32, u64, Option<String>);

    fn take(s: *mut c_char) -> Option<String> {
        if s.is_null() {
            return None;
        }
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        unsafe { p::free_string(s) };
        Some(text)
    }

    fn record(data: &'static [u8]) -> CoroRecord {
        let s = "sub.ject";
        CoroRecord {
            data: data.as_ptr(),
            data_len: data.len(),
            subject: s.as_ptr().cast(),
            subject_len: s.len(),
            sender: "node1".as_ptr().cast(),
            sender_len: 5,
            request_id: std::ptr::null(),
            request_id_len: 0,
            idempotency_key: "k".as_ptr().cast(),
            idempotency_key_len: 1,
            agent: "a".as_ptr().cast(),
            agent_len: 1,
            kind: abi::KIND_REPLY,
            protocol_version: 1,
            time_ns: 7,
        }
    }

    fn create(json: &str) -> (i32, *mut c_void, Option<String>) {
        let api = p::api::<Echo>();
        let mut handle = std::ptr::null_mut();
        let mut error = std::ptr::null_mut();
        let status = unsafe {
            api.create.unwrap()(json.as_ptr().cast(), json.len(), &mut handle, &mut error)
        };
        (status, handle, take(error))
    }

    fn send(handle: *mut c_void, data: &[&'static [u8]]) -> (i32, Vec<Answer>, Option<String>) {
        let api = p::api::<Echo>();
        let records: Vec<CoroRecord> = data.iter().map(|d| record(d)).collect();
        let mut outcomes = vec![CoroOutcome::UNSET; records.len()];
        let mut error = std::ptr::null_mut();
        let status = unsafe {
            api.send.unwrap()(
                handle,
                records.as_ptr(),
                records.len(),
                outcomes.as_mut_ptr(),
                &mut error,
            )
        };
        let answers = outcomes
            .iter()
            .map(|o| (o.kind, o.retry_after_ms, take(o.reason)))
            .collect();
        (status, answers, take(error))
    }

    #[test]
    fn outcomes_cross_the_boundary() {
        let (status, handle, _) = create("{}");
        assert_eq!(status, abi::STATUS_OK);
        let (status, answers, error) = send(handle, &[b"ok", b"no", b"later"]);
        assert_eq!((status, error), (abi::STATUS_OK, None));
        assert_eq!(
            answers,
            vec![
                (abi::OUTCOME_DELIVERED, 0, None),
                (abi::OUTCOME_REJECT, 0, Some("no from node1".into())),
                (abi::OUTCOME_RETRY, 250, Some("later".into())),
            ]
        );
        let (status, _, error) = send(handle, &[b"ok", b"fail"]);
        assert_eq!(
            (status, error.as_deref()),
            (abi::STATUS_RETRY, Some("asked to fail"))
        );
        let api = p::api::<Echo>();
        let mut error = std::ptr::null_mut();
        assert_eq!(
            unsafe { api.flush.unwrap()(handle, &mut error) },
            abi::STATUS_OK
        );
        unsafe { api.destroy.unwrap()(handle) };
    }

    #[test]
    fn panics_become_a_status() {
        let (status, handle, error) = create(r#"{"panic":1}"#);
        assert_eq!(status, abi::STATUS_PANIC);
        assert!(handle.is_null());
        assert_eq!(error.as_deref(), Some("asked to panic in new"));

        let (_, handle, _) = create("{}");
        let (status, _, error) = send(handle, &[b"ok", b"boom"]);
        assert_eq!(status, abi::STATUS_PANIC);
        assert_eq!(error.as_deref(), Some("boom in sub.ject"));
        // The instance is still usable after a caught panic.
        let (status, answers, _) = send(handle, &[b"ok"]);
        assert_eq!(
            (status, answers[0].0),
            (abi::STATUS_OK, abi::OUTCOME_DELIVERED)
        );
        unsafe { p::api::<Echo>().destroy.unwrap()(handle) };
    }

    #[test]
    fn check_and_bad_config() {
        let api = p::api::<Echo>();
        let mut error = std::ptr::null_mut();
        let json = r#"{"bad":true}"#;
        let status = unsafe { api.check.unwrap()(json.as_ptr().cast(), json.len(), &mut error) };
        assert_eq!(
            (status, take(error).as_deref()),
            (abi::STATUS_FATAL, Some("bad is bad"))
        );
        let (status, _, error) = create("{nope");
        assert_eq!(status, abi::STATUS_FATAL);
        assert!(error.unwrap().starts_with("config is not JSON"));
    }
}
