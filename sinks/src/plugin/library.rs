//! Loading a plugin library, checking it before any use, and every call across the C
//! boundary. Nothing here trusts the plugin: each failure it can report becomes a
//! [`PluginError`] or an [`Outcome`].

use super::PluginError;
use crate::encoding::{self, Encoding};
use coro_core::plugin::{
    self as abi, CheckFn, CoroOutcome, CoroPluginApi, CoroRecord, CreateFn, DestroyFn, EntryFn,
    FlushFn, FreeStringFn, SendFn,
};
use coro_core::sink::{Batch, Outcome};
use std::borrow::Cow;
use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A loaded plugin library whose entry point, ABI version and function table were
/// checked. The library is never unloaded (see the ownership rules of
/// [`coro_core::plugin`]), so the function pointers stay valid for the process.
#[derive(Debug, Clone)]
pub struct Plugin {
    path: PathBuf,
    flags: u32,
    check: Option<CheckFn>,
    create: CreateFn,
    send: SendFn,
    flush: Option<FlushFn>,
    destroy: DestroyFn,
    free_string: FreeStringFn,
}

impl Plugin {
    /// Loads the library at `path` and checks its entry point and table.
    pub fn load(path: &Path) -> Result<Plugin, PluginError> {
        let shown = path.to_path_buf();
        // SAFETY: loading runs the library's initialisers. That the library is a Coro
        // plugin, fit to run in this process, is the operator's decision, made by
        // naming it in the config; everything after this is checked.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| PluginError::Load {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let symbol = format!("{}\0", abi::ENTRY_SYMBOL);
        // SAFETY: the symbol is declared by the ABI as `EntryFn`; a library exporting
        // the name with another type is not a Coro plugin and outside what can be
        // checked.
        let entry: EntryFn = match unsafe { library.get::<EntryFn>(symbol.as_bytes()) } {
            Ok(f) => *f,
            Err(_) => return Err(PluginError::MissingSymbol { path: shown }),
        };
        // Once plugin code has run, the library stays loaded for good.
        std::mem::forget(library);
        // SAFETY: the entry function takes nothing and returns a pointer (ABI v1 and
        // every later version keep this signature and `abi_version` as the first field).
        let table = unsafe { entry() };
        if table.is_null() {
            return Err(PluginError::NoTable { path: shown });
        }
        // SAFETY: non-null, and the first field of the table in every ABI version is
        // the u32 version, so reading it alone is valid whatever version it is.
        let version = unsafe { table.cast::<u32>().read_unaligned() };
        if version != abi::ABI_VERSION {
            return Err(PluginError::AbiVersion {
                path: shown,
                found: version,
            });
        }
        // SAFETY: a version 1 table is a `CoroPluginApi`, static in the plugin.
        let api: CoroPluginApi = unsafe { table.read_unaligned() };
        let missing = |name: &'static str| PluginError::MissingFunction {
            path: shown.clone(),
            function: name,
        };
        Ok(Plugin {
            flags: api.flags,
            check: api.check,
            create: api.create.ok_or_else(|| missing("create"))?,
            send: api.send.ok_or_else(|| missing("send"))?,
            flush: api.flush,
            destroy: api.destroy.ok_or_else(|| missing("destroy"))?,
            free_string: api.free_string.ok_or_else(|| missing("free_string"))?,
            path: shown,
        })
    }

    /// The library's path, as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the plugin declared that `send` may run concurrently on one instance.
    pub fn thread_safe(&self) -> bool {
        self.flags & abi::FLAG_THREAD_SAFE != 0
    }

    /// Asks the plugin whether `config` is acceptable (a plugin without `check` accepts
    /// everything here and may still refuse it in `create`).
    pub fn check(&self, config: &serde_json::Value) -> Result<(), PluginError> {
        let Some(check) = self.check else {
            return Ok(());
        };
        let json = config_json(config);
        let mut error = std::ptr::null_mut();
        // SAFETY: `json` is NUL-terminated and outlives the call; `error` is a valid
        // out-pointer.
        let status = unsafe { check(json.as_ptr().cast(), json.len() - 1, &mut error) };
        let message = self.take_string(error);
        self.status(status, "check", message)
            .map_err(|message| PluginError::Config {
                path: self.path.clone(),
                message,
            })
    }

    /// Makes a sink instance from `config`. Blocks as long as the plugin does: call it
    /// from a plugin thread.
    pub(crate) fn create(&self, config: &serde_json::Value) -> Result<Instance, PluginError> {
        let json = config_json(config);
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut error = std::ptr::null_mut();
        // SAFETY: as for `check`; `handle` is a valid out-pointer.
        let status = unsafe {
            (self.create)(
                json.as_ptr().cast(),
                json.len() - 1,
                &mut handle,
                &mut error,
            )
        };
        let message = self.take_string(error);
        match self.status(status, "create", message) {
            Ok(()) => Ok(Instance {
                plugin: self.clone(),
                handle,
            }),
            Err(message) => Err(PluginError::Create {
                path: self.path.clone(),
                message,
            }),
        }
    }

    /// Copies and frees a string the plugin handed over.
    fn take_string(&self, s: *mut c_char) -> Option<String> {
        if s.is_null() {
            return None;
        }
        // SAFETY: the ABI says a non-null string from the plugin is NUL-terminated and
        // ours until given back with `free_string`, once, which happens right here.
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        // SAFETY: see above.
        unsafe { (self.free_string)(s) };
        Some(text)
    }

    /// `Ok` for `STATUS_OK`, otherwise the message for a failed `function`.
    fn status(&self, status: i32, function: &str, message: Option<String>) -> Result<(), String> {
        let message = message.unwrap_or_else(|| "no reason given".to_string());
        match status {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_RETRY | abi::STATUS_FATAL => Err(message),
            abi::STATUS_PANIC => {
                tracing::error!(plugin = %self.path.display(), function, "plugin panicked: {message}");
                Err(format!("plugin panicked in {function}: {message}"))
            }
            other => Err(format!(
                "{function} returned unknown status {other} ({message})"
            )),
        }
    }
}

/// The config as the plugin gets it: JSON text with a NUL after it, so C code may use
/// it as a C string. JSON text never contains a raw NUL (serde_json escapes it).
fn config_json(config: &serde_json::Value) -> Vec<u8> {
    let mut json = serde_json::to_vec(config).unwrap_or_else(|_| b"{}".to_vec());
    json.push(0);
    json
}

/// What became of one `send`.
#[derive(Debug)]
pub(crate) struct Sent {
    /// One per record of the batch.
    pub(crate) outcomes: Vec<Outcome>,
    /// Whether the plugin reported a panic.
    pub(crate) panicked: bool,
}

/// One sink instance made by a plugin's `create`; `flush` and `destroy` are called when
/// it is dropped.
#[derive(Debug)]
pub(crate) struct Instance {
    plugin: Plugin,
    handle: *mut c_void,
}

// SAFETY: the handle is only used from the host's plugin threads, which the ABI allows.
// Concurrent `send`s on it (through `&Instance` from several threads) happen only when
// the plugin set FLAG_THREAD_SAFE: `service::PluginSink::open` refuses `threads > 1`
// otherwise. `flush` and `destroy` run in `Drop`, when no other reference is left.
unsafe impl Send for Instance {}
// SAFETY: see `Send`.
unsafe impl Sync for Instance {}

impl Instance {
    /// Sends `batch`, its records in `encoding`, and answers one outcome per record:
    /// records that cannot be encoded are rejected without reaching the plugin; a
    /// failed call answers every other record with the failure.
    pub(crate) fn send(&self, batch: &Batch, encoding: Encoding) -> Sent {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        // Bytes and keys must outlive the call, so they are made first.
        let mut data: Vec<(usize, Cow<'_, [u8]>, String)> = Vec::with_capacity(batch.len());
        for (i, record) in batch.records.iter().enumerate() {
            let bytes = match encoding {
                Encoding::Raw => Cow::Borrowed(&record.body[..]),
                other => match encoding::encode(record, other) {
                    Ok(bytes) => Cow::Owned(bytes),
                    Err(e) => {
                        outcomes[i] = Some(Outcome::reject(format!("encode: {e}")));
                        continue;
                    }
                },
            };
            data.push((i, bytes, record.idempotency_key()));
        }
        let records: Vec<CoroRecord> = data
            .iter()
            .map(|(i, bytes, key)| {
                let r = &batch.records[*i];
                CoroRecord {
                    data: bytes.as_ptr(),
                    data_len: bytes.len(),
                    subject: r.subject.as_ptr().cast(),
                    subject_len: r.subject.len(),
                    sender: r.sender.as_ptr().cast(),
                    sender_len: r.sender.len(),
                    request_id: r.request_id.as_ptr().cast(),
                    request_id_len: r.request_id.len(),
                    idempotency_key: key.as_ptr().cast(),
                    idempotency_key_len: key.len(),
                    agent: r.agent.as_ptr().cast(),
                    agent_len: r.agent.len(),
                    kind: abi::kind_code(r.kind),
                    protocol_version: u32::from(r.version.number()),
                    time_ns: i64::try_from(r.time_ns).unwrap_or(if r.time_ns < 0 {
                        i64::MIN
                    } else {
                        i64::MAX
                    }),
                }
            })
            .collect();
        let mut panicked = false;
        if !records.is_empty() {
            let mut answers = vec![CoroOutcome::UNSET; records.len()];
            let mut error = std::ptr::null_mut();
            // SAFETY: `records` (and the bytes and strings they point into) and
            // `answers` hold `records.len()` elements and outlive the call; `error` is
            // a valid out-pointer; the handle came from this plugin's `create` and is
            // used as the threading rules allow (see `unsafe impl Sync`).
            let status = unsafe {
                (self.plugin.send)(
                    self.handle,
                    records.as_ptr(),
                    records.len(),
                    answers.as_mut_ptr(),
                    &mut error,
                )
            };
            let message = self.plugin.take_string(error);
            // Reasons are the host's to free whatever the status.
            let reasons: Vec<Option<String>> = answers
                .iter()
                .map(|a| self.plugin.take_string(a.reason))
                .collect();
            panicked = status == abi::STATUS_PANIC;
            let failure = match self.plugin.status(status, "send", message) {
                Ok(()) => None,
                Err(reason) if status == abi::STATUS_RETRY || panicked => {
                    Some(Outcome::retry(reason))
                }
                Err(reason) => Some(Outcome::reject(reason)),
            };
            for (((i, _, _), answer), reason) in data.iter().zip(&answers).zip(reasons) {
                outcomes[*i] = Some(match &failure {
                    Some(f) => f.clone(),
                    None => outcome(answer, reason),
                });
            }
        }
        Sent {
            outcomes: outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Outcome::reject("no outcome")))
                .collect(),
            panicked,
        }
    }
}

/// The outcome a plugin filled in, checked.
fn outcome(answer: &CoroOutcome, reason: Option<String>) -> Outcome {
    match answer.kind {
        abi::OUTCOME_DELIVERED => Outcome::Delivered,
        abi::OUTCOME_RETRY => Outcome::Retry {
            after: (answer.retry_after_ms > 0)
                .then(|| Duration::from_millis(answer.retry_after_ms)),
            reason: reason.unwrap_or_else(|| "plugin asked for a retry".into()),
        },
        abi::OUTCOME_REJECT => {
            Outcome::reject(reason.unwrap_or_else(|| "plugin rejected the record".into()))
        }
        abi::OUTCOME_UNSET => Outcome::reject("plugin left the outcome unset"),
        other => Outcome::reject(format!("plugin returned unknown outcome kind {other}")),
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let path = self.plugin.path.display().to_string();
        if let Some(flush) = self.plugin.flush {
            let mut error = std::ptr::null_mut();
            // SAFETY: the handle is live and nothing else uses it any more (`drop`).
            let status = unsafe { flush(self.handle, &mut error) };
            let message = self.plugin.take_string(error);
            if let Err(e) = self.plugin.status(status, "flush", message) {
                tracing::warn!(plugin = %path, "flush before destroy failed: {e}");
            }
        }
        // SAFETY: the last call on the handle, made once.
        unsafe { (self.plugin.destroy)(self.handle) };
        tracing::debug!(plugin = %path, "plugin sink destroyed");
    }
}
