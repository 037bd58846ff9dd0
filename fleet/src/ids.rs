//! Request ids in the shapes Go uses: v1 a UUIDv4 without dashes (32 hex), v2 a ksuid
//! (27 base62 characters).

use std::time::{SystemTime, UNIX_EPOCH};

/// A v1 request id: 32 lowercase hex characters, as go-choria's `NewRequestID`.
pub fn v1_request_id() -> String {
    let mut bytes = [0u8; 16];
    fastrand::fill(&mut bytes);
    // UUIDv4 version and variant bits, so the id is what Go would send.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    hex::encode(bytes)
}

/// The ksuid epoch (2014-05-13T16:53:20Z) in unix seconds.
const KSUID_EPOCH: u64 = 1_400_000_000;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A v2 request id: a ksuid (4-byte timestamp and 16 random bytes, base62, 27 chars).
pub fn ksuid() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = u32::try_from(now.saturating_sub(KSUID_EPOCH)).unwrap_or(u32::MAX);
    let mut bytes = [0u8; 20];
    bytes[..4].copy_from_slice(&stamp.to_be_bytes());
    fastrand::fill(&mut bytes[4..]);
    base62_27(bytes)
}

/// Base62 of a 160-bit big-endian number, left-padded with `0` to 27 characters.
fn base62_27(mut number: [u8; 20]) -> String {
    let mut out = [b'0'; 27];
    let mut pos = out.len();
    while number.iter().any(|b| *b != 0) && pos > 0 {
        // Long division of the whole number by 62, most significant byte first.
        let mut rem = 0u32;
        for byte in number.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        pos -= 1;
        out[pos] = BASE62[rem as usize];
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = v1_request_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        let k = ksuid();
        assert_eq!(k.len(), 27);
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn base62_of_max_is_ksuid_max() {
        // The largest ksuid, from the ksuid reference implementation's docs.
        assert_eq!(base62_27([0xff; 20]), "aWgEPTl1tmebfsQzFP4bxwgy80V");
        assert_eq!(base62_27([0; 20]), "000000000000000000000000000");
    }
}
