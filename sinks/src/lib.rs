//! Coro sinks. [`encoding`] turns a record into the bytes a destination stores.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod encoding;
