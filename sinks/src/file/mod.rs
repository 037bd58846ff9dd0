//! JSON lines into a local file, rotated by size.

pub mod config;
pub mod service;

pub use service::FileSink;

#[cfg(test)]
mod tests;
