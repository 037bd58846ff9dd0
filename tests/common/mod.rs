//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/choria/fixtures`, beside the clone (or `$CORO_SHARED/choria/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    let shared = std::env::var_os("CORO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let dir = shared.join("choria/fixtures");
    assert!(
        dir.is_dir(),
        "fixtures not found at {}: clone beside the steering repo's shared/ or set CORO_SHARED",
        dir.display()
    );
    dir
}

/// The bytes of a fixture, by path under `fixtures/`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = fixtures_dir().join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A synthetic fixture, without the trailing newline the files end with.
pub fn synthetic(name: &str) -> Vec<u8> {
    let mut bytes = fixture(&format!("synthetic/{name}"));
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}

/// Lossless text for assertion messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
