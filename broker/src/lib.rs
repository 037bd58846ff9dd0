//! The parts of the `coro` daemon that are also a library, so that tests, benchmarks
//! and `coro demo` use them directly: the data adapters ([`adapters`]), the HTTP
//! endpoints ([`http`]), the network broker ([`network`]), which runs and supervises a
//! real `nats-server` from a Choria `broker.conf`, the federation broker
//! ([`federation`]), the RPC client ([`rpc`]), and
//! `coro broker run`, which runs them together ([`broker_run`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapters;
pub mod broker_run;
mod choria_keys;
pub mod federation;
pub mod http;
pub mod network;
pub mod rpc;
