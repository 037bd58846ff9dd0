//! The parts of the `coro` daemon that are also a library, so that tests and other
//! crates can use them directly: the network broker ([`network`]), which runs and
//! supervises a real `nats-server` from a Choria `broker.conf`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod network;
pub mod rpc;
