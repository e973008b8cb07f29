//! Versionstamps: the 10-byte commit identifiers of Deno KV.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A 10-byte commit identifier. Every successful commit gets one, strictly
/// greater (as bytes) than every earlier one in the same database, and every
/// key it writes records it.
///
/// Shown as 20 lowercase hex characters; parsing accepts either case.
/// Treat all 10 bytes as opaque: embedded backends use a big-endian commit
/// counter in bytes 0–7 and zeros in 8–9, other backends may not.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Versionstamp(pub [u8; 10]);

impl Versionstamp {
    /// The smallest versionstamp, never returned by a commit.
    pub const ZERO: Versionstamp = Versionstamp([0; 10]);

    /// The versionstamp embedded backends use for commit counter `n`.
    pub fn from_counter(n: u64) -> Self {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&n.to_be_bytes());
        Versionstamp(b)
    }

    /// The commit counter of bytes 0–7 (meaningful for embedded backends).
    pub fn counter(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 10] {
        &self.0
    }

    /// Builds a versionstamp from a 10-byte slice.
    ///
    /// # Errors
    /// [`Error::InvalidVersionstamp`] when `bytes` is not 10 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 10] = bytes.try_into().map_err(|_| {
            Error::InvalidVersionstamp(format!("expected 10 bytes, got {}", bytes.len()))
        })?;
        Ok(Versionstamp(arr))
    }
}

impl fmt::Display for Versionstamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Versionstamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Versionstamp({self})")
    }
}

impl FromStr for Versionstamp {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 20 {
            return Err(Error::InvalidVersionstamp(format!(
                "expected 20 hex characters, got {:?}",
                s
            )));
        }
        let mut out = [0u8; 10];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::InvalidVersionstamp(format!("not hex: {s:?}")))?;
        Ok(Versionstamp(out))
    }
}
