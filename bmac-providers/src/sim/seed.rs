//! Seeded, portable randomness for the simulated cloud.
//!
//! Every "random" choice the simulator makes — a latency jitter, whether a fault fires, how
//! long a new resource stays invisible, what its id looks like — is a pure function of the
//! run's seed and a few identifying values (the step id, the attempt number, a purpose label).
//! That is what makes a simulated run reproducible: the same seed and spec replay the same
//! latencies, faults and ids, whatever order concurrent steps happen to finish in.
//!
//! The derivation is SHA-256 (through [`bmac_core::step::Fingerprint::of_value`], whose encoding
//! is stable by contract) rather than a PRNG from `rand`: `rand`'s small and standard
//! generators make no promise to produce the same stream across versions or platforms, and
//! a simulated cloud whose ids change after a dependency bump would show spurious drift.

use bmac_core::step::Fingerprint;
use serde_json::json;

/// 32 bytes derived from the seed, a purpose label, a subject (usually a step id) and a
/// number (usually an attempt or a generation).
pub(crate) fn digest(seed: u64, purpose: &str, subject: &str, n: u64) -> [u8; 32] {
    Fingerprint::of_value(&json!([seed, purpose, subject, n])).0
}

/// A uniform draw in `[0, 1)` for `(seed, purpose, subject, n)`.
pub(crate) fn unit(seed: u64, purpose: &str, subject: &str, n: u64) -> f64 {
    let bytes = digest(seed, purpose, subject, n);
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    // The top 53 bits make an exactly representable fraction in [0, 1).
    (u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

/// The first `len` lowercase hex digits of `(seed, purpose, subject)`'s digest (`len` ≤ 64).
pub(crate) fn hex(seed: u64, purpose: &str, subject: &str, len: usize) -> String {
    let mut out = String::with_capacity(64);
    for b in digest(seed, purpose, subject, 0) {
        out.push_str(&format!("{b:02x}"));
    }
    out.truncate(len);
    out
}

/// Standard base64 (RFC 4648, with padding) — enough to make certificate-looking data
/// without a dependency.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_stable_and_spread() {
        assert_eq!(unit(7, "p", "a", 1), unit(7, "p", "a", 1));
        assert_ne!(unit(7, "p", "a", 1), unit(7, "p", "a", 2));
        assert_ne!(unit(7, "p", "a", 1), unit(8, "p", "a", 1));
        let draws: Vec<f64> = (0..1000).map(|i| unit(1, "spread", "x", i)).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let below_half = draws.iter().filter(|d| **d < 0.5).count();
        assert!((400..600).contains(&below_half), "{below_half}");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn hex_has_requested_length() {
        let h = hex(1, "id", "cluster", 12);
        assert_eq!(h.len(), 12);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
