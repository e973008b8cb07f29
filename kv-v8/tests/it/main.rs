//! kv-v8 integration tests: golden bytes, property tests, the serde mapping,
//! round trips through the real Deno binary, kv-utils' typed JSON against
//! Deno (throughput is
//! `cargo xtask bench v8`).

mod codec;
mod deno;
mod kv_utils;
mod props;
mod serde_map;

/// Bytes from a hex string with optional spaces.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
