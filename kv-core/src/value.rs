//! Values and entries.

use crate::{Key, Versionstamp};

/// A stored value, in one of the three encodings Deno KV knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvValue {
    /// V8 structured-clone bytes (encoding 1): every JavaScript value that is
    /// not a top-level `Uint8Array` or `Deno.KvU64`. Kept byte for byte.
    V8(Vec<u8>),
    /// Raw bytes (encoding 3): a top-level `Uint8Array`.
    Bytes(Vec<u8>),
    /// An unsigned 64-bit integer (encoding 2): `Deno.KvU64`, the operand and
    /// result type of `sum`, `min` and `max`.
    U64(u64),
}

/// Wire and storage encoding numbers of [`KvValue`].
pub mod encoding {
    /// V8 structured clone.
    pub const V8: i64 = 1;
    /// Little-endian u64.
    pub const LE64: i64 = 2;
    /// Raw bytes.
    pub const BYTES: i64 = 3;
}

impl KvValue {
    /// The encoding number (1 = V8, 2 = LE64, 3 = bytes).
    pub fn encoding(&self) -> i64 {
        match self {
            KvValue::V8(_) => encoding::V8,
            KvValue::Bytes(_) => encoding::BYTES,
            KvValue::U64(_) => encoding::LE64,
        }
    }

    /// The value's stored bytes (8 little-endian bytes for `U64`).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            KvValue::V8(b) | KvValue::Bytes(b) => b.clone(),
            KvValue::U64(n) => n.to_le_bytes().to_vec(),
        }
    }

    /// The size that counts against the value size limit.
    pub fn size(&self) -> usize {
        match self {
            KvValue::V8(b) | KvValue::Bytes(b) => b.len(),
            KvValue::U64(_) => 8,
        }
    }

    /// Rebuilds a value from its encoding number and bytes.
    ///
    /// # Errors
    /// [`crate::Error::InvalidValue`] for an unknown encoding or LE64 data
    /// that is not exactly 8 bytes.
    pub fn from_encoded(encoding: i64, data: Vec<u8>) -> Result<Self, crate::Error> {
        // Checked on the borrowed form, so both share one rule; the bytes
        // are then kept, not copied.
        match ValueRef::from_encoded(encoding, &data)? {
            ValueRef::V8(_) => Ok(KvValue::V8(data)),
            ValueRef::Bytes(_) => Ok(KvValue::Bytes(data)),
            ValueRef::U64(n) => Ok(KvValue::U64(n)),
        }
    }

    /// The value borrowed.
    pub fn as_value_ref(&self) -> ValueRef<'_> {
        match self {
            KvValue::V8(b) => ValueRef::V8(b),
            KvValue::Bytes(b) => ValueRef::Bytes(b),
            KvValue::U64(n) => ValueRef::U64(*n),
        }
    }
}

impl From<ValueRef<'_>> for KvValue {
    fn from(value: ValueRef<'_>) -> Self {
        value.to_value()
    }
}

/// A value borrowed from where it is stored or received: what a
/// [`ReadSink`](crate::backend::ReadSink) is handed, so passing a value on
/// needs no copy of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// V8 structured-clone bytes (encoding 1).
    V8(&'a [u8]),
    /// Raw bytes (encoding 3).
    Bytes(&'a [u8]),
    /// An unsigned 64-bit integer (encoding 2).
    U64(u64),
}

impl<'a> ValueRef<'a> {
    /// Reads a value from its encoding number and stored bytes.
    ///
    /// # Errors
    /// As [`KvValue::from_encoded`].
    pub fn from_encoded(encoding: i64, data: &'a [u8]) -> Result<Self, crate::Error> {
        match encoding {
            encoding::V8 => Ok(ValueRef::V8(data)),
            encoding::BYTES => Ok(ValueRef::Bytes(data)),
            encoding::LE64 => {
                let arr: [u8; 8] = data.try_into().map_err(|_| {
                    crate::Error::InvalidValue(format!(
                        "a KvU64 value must be 8 bytes, got {}",
                        data.len()
                    ))
                })?;
                Ok(ValueRef::U64(u64::from_le_bytes(arr)))
            }
            other => Err(crate::Error::InvalidValue(format!(
                "the value encoding {other} is unknown"
            ))),
        }
    }

    /// The encoding number (1 = V8, 2 = LE64, 3 = bytes).
    pub fn encoding(&self) -> i64 {
        match self {
            ValueRef::V8(_) => encoding::V8,
            ValueRef::Bytes(_) => encoding::BYTES,
            ValueRef::U64(_) => encoding::LE64,
        }
    }

    /// An owned copy.
    pub fn to_value(&self) -> KvValue {
        match *self {
            ValueRef::V8(b) => KvValue::V8(b.to_vec()),
            ValueRef::Bytes(b) => KvValue::Bytes(b.to_vec()),
            ValueRef::U64(n) => KvValue::U64(n),
        }
    }
}

impl From<u64> for KvValue {
    fn from(v: u64) -> Self {
        KvValue::U64(v)
    }
}

impl From<Vec<u8>> for KvValue {
    fn from(v: Vec<u8>) -> Self {
        KvValue::Bytes(v)
    }
}

impl From<&[u8]> for KvValue {
    fn from(v: &[u8]) -> Self {
        KvValue::Bytes(v.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for KvValue {
    fn from(v: &[u8; N]) -> Self {
        KvValue::Bytes(v.to_vec())
    }
}

/// A key that exists, with its value and the versionstamp of the commit that
/// last wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct KvEntry {
    /// The key.
    pub key: Key,
    /// The value.
    pub value: KvValue,
    /// The versionstamp of the last write.
    pub versionstamp: Versionstamp,
}
