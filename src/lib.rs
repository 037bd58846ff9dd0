//! Coro: a broker for Choria networks.
//!
//! This root package is a facade over the workspace crates; it owns the cross-crate
//! tests in `tests/` and the benchmarks in `benches/`. The `coro` binary lives in
//! `coro-broker`.

pub use coro_core as core;
pub use coro_sinks as sinks;
