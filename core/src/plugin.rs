//! The C ABI that run-time sink plugins implement, version 1.
//!
//! A plugin is a shared library (`.so`, `.dylib`) named in `adapters.toml`:
//!
//! ```toml
//! [[adapter.sink]]
//! type = "plugin"
//! path = "/usr/lib/coro/libmysink.so"
//! config = { url = "https://example.net/hook" }   # handed to the plugin as JSON
//! ```
//!
//! It exports one function, [`ENTRY_SYMBOL`] (`coro_sink_plugin_v1`), that returns a
//! pointer to a [`CoroPluginApi`]: the ABI version, flags, and a table of `extern "C"`
//! functions. Everything that crosses the boundary is a `#[repr(C)]` struct, an integer,
//! or a pointer with a length; no Rust type does, so a plugin can be written in any
//! language that can export C functions. The C declarations are in
//! `core/include/coro_plugin.h`; Rust plugins use the `coro-plugin-sdk` crate, which
//! implements all of this behind a trait.
//!
//! # The calls
//!
//! 1. The host loads the library, looks up [`ENTRY_SYMBOL`], calls it, and checks that
//!    the table's `abi_version` is [`ABI_VERSION`] and that the required functions are
//!    there, before anything else.
//! 2. `check(config)` (optional) answers whether a config is acceptable without acting
//!    on it; `coro validate` calls it.
//! 3. `create(config)` makes one sink instance (an opaque handle) per configured sink.
//! 4. `send(handle, records, count, outcomes)` is called for each batch and must fill
//!    `outcomes[i]` for every `records[i]`: delivered, retry (optionally after N ms) or
//!    reject, each with an optional reason. Answer delivered only when the destination
//!    has the record durably. A non-zero status instead answers the whole batch:
//!    [`STATUS_RETRY`] (try again later), [`STATUS_FATAL`] (never: dead-letter it).
//! 5. `flush(handle)` (optional) is called once before `destroy`, to write out anything
//!    buffered; `destroy(handle)` is the last call on a handle.
//!
//! Every function that can fail takes an `error` out-parameter; on failure it may set
//! it to a NUL-terminated message allocated by the plugin.
//!
//! # Ownership
//!
//! * Everything the host passes in (the config JSON, the records and their bytes) is
//!   borrowed for the duration of the call only: copy what you need to keep.
//! * Every string the plugin hands out (an `error`, an outcome's `reason`) is allocated
//!   by the plugin and owned by the host from then on; the host copies it and gives it
//!   back with `free_string`, exactly once. So allocate with whatever `free_string`
//!   frees (the SDK uses `CString`; C plugins typically `malloc`/`free`).
//! * The handle `create` returns belongs to the plugin; the host passes it back
//!   unchanged and calls `destroy` on it exactly once. A stateless plugin may return
//!   NULL as its handle.
//! * The [`CoroPluginApi`] table must stay valid for as long as the library is loaded
//!   (a `static`). The host never unloads a plugin library once loaded: unloading code
//!   that may still run thread-local destructors or threads of its own is a classic
//!   crash at exit, and a sink lives as long as the daemon anyway.
//!
//! # Threading
//!
//! * The entry function and `check` may be called from any thread, at any time; they
//!   must not depend on sink instances.
//! * All calls on one handle (`create`, `send`, `flush`, `destroy`) are made from the
//!   host's dedicated plugin threads, never from its async executor, so a plugin may
//!   block (network, disk, `sleep`) without stalling other pipelines. With the default
//!   `threads = 1` every call on a handle comes from the same single thread, one at a
//!   time.
//! * `send` is called concurrently on one handle only when the plugin sets
//!   [`FLAG_THREAD_SAFE`] in `flags` and the sink is configured with `threads > 1`;
//!   `flush` and `destroy` are never concurrent with anything on that handle.
//! * A call that does not return within the sink's `timeout` is abandoned: the host
//!   answers retry for its records and keeps the thread waiting for the plugin. So a
//!   record may reach the destination and be sent again: delivery is at least once,
//!   and [`CoroRecord::idempotency_key`] is there to de-duplicate.
//! * A plugin must not let a panic or exception unwind out of these functions (Rust
//!   aborts the process when one does); the SDK catches panics and returns
//!   [`STATUS_PANIC`] with the message. Plugins run in the daemon's process: memory
//!   errors in a plugin cannot be contained, only these documented failures can.

use crate::Kind;
use std::ffi::{c_char, c_void};

/// The ABI version this build of Coro speaks; a plugin's table must carry the same.
pub const ABI_VERSION: u32 = 1;

/// The name of the function every plugin exports:
/// `const CoroPluginApi *coro_sink_plugin_v1(void)`. The version is in the name too, so
/// a plugin built for another ABI fails to load with a clear message rather than being
/// called with the wrong layout.
pub const ENTRY_SYMBOL: &str = "coro_sink_plugin_v1";

/// `flags` bit: `send` may be called concurrently on one handle.
pub const FLAG_THREAD_SAFE: u32 = 1;

/// Status: success.
pub const STATUS_OK: i32 = 0;
/// Status: the whole call failed, worth trying again (connection lost, disk full).
pub const STATUS_RETRY: i32 = 1;
/// Status: the whole call failed and would fail again (records go to the dead letter;
/// for `check` and `create`: the config is refused).
pub const STATUS_FATAL: i32 = 2;
/// Status: the plugin caught a panic (or exception) of its own; `error` says what.
pub const STATUS_PANIC: i32 = 3;

/// Outcome kind the host pre-fills: a plugin that leaves it has answered nothing.
pub const OUTCOME_UNSET: u32 = 0;
/// Outcome kind: the destination has the record durably.
pub const OUTCOME_DELIVERED: u32 = 1;
/// Outcome kind: send it again, no sooner than `retry_after_ms` (0: no wait asked).
pub const OUTCOME_RETRY: u32 = 2;
/// Outcome kind: never; the record goes to the dead letter with `reason`.
pub const OUTCOME_REJECT: u32 = 3;

/// Record kind: an RPC request.
pub const KIND_REQUEST: u32 = 1;
/// Record kind: an RPC reply.
pub const KIND_REPLY: u32 = 2;
/// Record kind: a registration request.
pub const KIND_REGISTRATION: u32 = 3;
/// Record kind: a lifecycle event.
pub const KIND_LIFECYCLE: u32 = 4;
/// Record kind: a dead letter (a JSON document describing a failed message).
pub const KIND_DEAD_LETTER: u32 = 5;

/// The `kind` code of a record kind.
pub const fn kind_code(kind: Kind) -> u32 {
    match kind {
        Kind::Request => KIND_REQUEST,
        Kind::Reply => KIND_REPLY,
        Kind::Registration => KIND_REGISTRATION,
        Kind::Lifecycle => KIND_LIFECYCLE,
        Kind::DeadLetter => KIND_DEAD_LETTER,
    }
}

/// The record kind of a `kind` code, if it is one.
pub const fn kind_from_code(code: u32) -> Option<Kind> {
    match code {
        KIND_REQUEST => Some(Kind::Request),
        KIND_REPLY => Some(Kind::Reply),
        KIND_REGISTRATION => Some(Kind::Registration),
        KIND_LIFECYCLE => Some(Kind::Lifecycle),
        KIND_DEAD_LETTER => Some(Kind::DeadLetter),
        _ => None,
    }
}

/// One record of a batch, borrowed for the duration of `send`. Strings are UTF-8 and
/// not NUL-terminated: each is a pointer and a length in bytes (a length of 0 may come
/// with any pointer, NULL included).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CoroRecord {
    /// The record's bytes in the sink's `encoding` (by default the body exactly as the
    /// sender wrote it).
    pub data: *const u8,
    /// Length of `data` in bytes.
    pub data_len: usize,
    /// The NATS subject it arrived on.
    pub subject: *const c_char,
    /// Length of `subject`.
    pub subject_len: usize,
    /// The sender identity.
    pub sender: *const c_char,
    /// Length of `sender`.
    pub sender_len: usize,
    /// The request id.
    pub request_id: *const c_char,
    /// Length of `request_id`.
    pub request_id_len: usize,
    /// A stable key for de-duplication: the same message redelivered has the same key.
    pub idempotency_key: *const c_char,
    /// Length of `idempotency_key`.
    pub idempotency_key_len: usize,
    /// The agent (or lifecycle component).
    pub agent: *const c_char,
    /// Length of `agent`.
    pub agent_len: usize,
    /// One of the `KIND_*` codes.
    pub kind: u32,
    /// The Choria protocol generation: 1 or 2.
    pub protocol_version: u32,
    /// The Choria time in unix nanoseconds (clamped to the `i64` range).
    pub time_ns: i64,
}

/// What happened to one record, filled in by `send`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CoroOutcome {
    /// One of the `OUTCOME_*` kinds; pre-filled with [`OUTCOME_UNSET`].
    pub kind: u32,
    /// Must be 0 (keeps the layout the same on every platform).
    pub reserved: u32,
    /// For [`OUTCOME_RETRY`]: the wait the destination asked for, 0 for none.
    pub retry_after_ms: u64,
    /// Why (retry and reject; optional): a NUL-terminated string the plugin allocated,
    /// which the host frees with `free_string`. Pre-filled with NULL.
    pub reason: *mut c_char,
}

impl CoroOutcome {
    /// What the host pre-fills: unset, no reason.
    pub const UNSET: CoroOutcome = CoroOutcome {
        kind: OUTCOME_UNSET,
        reserved: 0,
        retry_after_ms: 0,
        reason: std::ptr::null_mut(),
    };
}

/// `check`: 0 when `config` (`config_len` bytes of a JSON object, followed by a NUL)
/// is acceptable; otherwise a status and, optionally, `*error`.
pub type CheckFn =
    unsafe extern "C" fn(config: *const c_char, config_len: usize, error: *mut *mut c_char) -> i32;

/// `create`: makes a sink instance from `config` (as for [`CheckFn`]) and stores its
/// handle in `*sink`; 0 on success, otherwise a status and, optionally, `*error`.
pub type CreateFn = unsafe extern "C" fn(
    config: *const c_char,
    config_len: usize,
    sink: *mut *mut c_void,
    error: *mut *mut c_char,
) -> i32;

/// `send`: delivers `count` records and fills `outcomes[0..count]` (0 returned), or
/// fails the whole batch (a status, optionally `*error`; the outcomes are then ignored,
/// though reasons set in them are still freed).
pub type SendFn = unsafe extern "C" fn(
    sink: *mut c_void,
    records: *const CoroRecord,
    count: usize,
    outcomes: *mut CoroOutcome,
    error: *mut *mut c_char,
) -> i32;

/// `flush`: writes out anything buffered; 0, or a status and optionally `*error`.
pub type FlushFn = unsafe extern "C" fn(sink: *mut c_void, error: *mut *mut c_char) -> i32;

/// `destroy`: releases a sink instance; the last call on its handle.
pub type DestroyFn = unsafe extern "C" fn(sink: *mut c_void);

/// `free_string`: frees a string the plugin handed to the host.
pub type FreeStringFn = unsafe extern "C" fn(s: *mut c_char);

/// The entry function's type: returns the plugin's function table (never NULL for a
/// working plugin).
pub type EntryFn = unsafe extern "C" fn() -> *const CoroPluginApi;

/// The table a plugin's entry function returns. `check` and `flush` may be NULL; the
/// others are required.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CoroPluginApi {
    /// Must be [`ABI_VERSION`].
    pub abi_version: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Optional config check.
    pub check: Option<CheckFn>,
    /// Makes a sink instance.
    pub create: Option<CreateFn>,
    /// Sends a batch.
    pub send: Option<SendFn>,
    /// Optional: writes out what is buffered, before `destroy`.
    pub flush: Option<FlushFn>,
    /// Releases a sink instance.
    pub destroy: Option<DestroyFn>,
    /// Frees strings the plugin returned.
    pub free_string: Option<FreeStringFn>,
}

// The C header states the same sizes (`_Static_assert`), so a drift between the two
// declarations fails the build on one side or the other.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<CoroRecord>() == 112);
    assert!(std::mem::size_of::<CoroOutcome>() == 24);
    assert!(std::mem::size_of::<CoroPluginApi>() == 56);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip() {
        for kind in [
            Kind::Request,
            Kind::Reply,
            Kind::Registration,
            Kind::Lifecycle,
            Kind::DeadLetter,
        ] {
            assert_eq!(kind_from_code(kind_code(kind)), Some(kind));
        }
        assert_eq!(kind_from_code(0), None);
        assert_eq!(kind_from_code(99), None);
    }

    #[test]
    fn header_matches() {
        let header = include_str!("../include/coro_plugin.h");
        for (name, value) in [
            ("CORO_PLUGIN_ABI_VERSION", ABI_VERSION.to_string()),
            ("CORO_PLUGIN_FLAG_THREAD_SAFE", FLAG_THREAD_SAFE.to_string()),
            ("CORO_STATUS_OK", STATUS_OK.to_string()),
            ("CORO_STATUS_RETRY", STATUS_RETRY.to_string()),
            ("CORO_STATUS_FATAL", STATUS_FATAL.to_string()),
            ("CORO_STATUS_PANIC", STATUS_PANIC.to_string()),
            ("CORO_OUTCOME_UNSET", OUTCOME_UNSET.to_string()),
            ("CORO_OUTCOME_DELIVERED", OUTCOME_DELIVERED.to_string()),
            ("CORO_OUTCOME_RETRY", OUTCOME_RETRY.to_string()),
            ("CORO_OUTCOME_REJECT", OUTCOME_REJECT.to_string()),
            ("CORO_KIND_REQUEST", KIND_REQUEST.to_string()),
            ("CORO_KIND_REPLY", KIND_REPLY.to_string()),
            ("CORO_KIND_REGISTRATION", KIND_REGISTRATION.to_string()),
            ("CORO_KIND_LIFECYCLE", KIND_LIFECYCLE.to_string()),
            ("CORO_KIND_DEAD_LETTER", KIND_DEAD_LETTER.to_string()),
            ("CORO_PLUGIN_ENTRY", format!("\"{ENTRY_SYMBOL}\"")),
        ] {
            // `#define NAME VALUE`, maybe with a comment after it.
            let found = header.lines().find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some("#define") && words.next() == Some(name))
                    .then(|| words.next())
                    .flatten()
            });
            assert_eq!(found, Some(value.as_str()), "coro_plugin.h: {name}");
        }
        assert!(header.contains(&format!("{ENTRY_SYMBOL}(void)")));
    }
}
