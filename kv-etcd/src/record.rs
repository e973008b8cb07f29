//! The stored form of a value: a small header, then the value's bytes.
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 1 | format version, 1 |
//! | 1 | value encoding: 1 = V8, 2 = little-endian u64, 3 = bytes |
//! | 1 | flags: bit 0 = an expiry follows, bit 1 = a versionstamp follows |
//! | 8 | expiry, Unix ms, big-endian (with bit 0) |
//! | 10 | versionstamp (with bit 1; otherwise the key's `mod_revision`) |
//! | rest | the value (8 little-endian bytes for a u64) |

use kv_core::{KvValue, Versionstamp};

const FORMAT: u8 = 1;
const HAS_EXPIRY: u8 = 1;
const HAS_STAMP: u8 = 2;

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) value: KvValue,
    pub(crate) expire_at_ms: Option<u64>,
    /// Set by commits with versionstamped keys, whose stamp is chosen
    /// before the commit's revision is known.
    pub(crate) versionstamp: Option<Versionstamp>,
}

impl Record {
    /// Whether the record is visible at `now_ms`.
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_none_or(|e| e > now_ms)
    }

    /// The versionstamp readers see, given the etcd key's `mod_revision`.
    pub(crate) fn stamp(&self, mod_revision: i64) -> Versionstamp {
        self.versionstamp
            .unwrap_or_else(|| stamp_of_revision(mod_revision))
    }
}

/// The versionstamp of etcd revision `rev`: 8 bytes big-endian, 2 zero bytes.
pub(crate) fn stamp_of_revision(rev: i64) -> Versionstamp {
    Versionstamp::from_counter(u64::try_from(rev).unwrap_or(0))
}

/// Encodes a record.
pub(crate) fn encode(
    value: &KvValue,
    expire_at_ms: Option<u64>,
    versionstamp: Option<Versionstamp>,
) -> Vec<u8> {
    let mut flags = 0;
    if expire_at_ms.is_some() {
        flags |= HAS_EXPIRY;
    }
    if versionstamp.is_some() {
        flags |= HAS_STAMP;
    }
    let mut out = Vec::with_capacity(21 + value.size());
    out.push(FORMAT);
    out.push(value.encoding() as u8);
    out.push(flags);
    if let Some(e) = expire_at_ms {
        out.extend_from_slice(&e.to_be_bytes());
    }
    if let Some(v) = versionstamp {
        out.extend_from_slice(v.as_bytes());
    }
    match value {
        KvValue::V8(b) | KvValue::Bytes(b) => out.extend_from_slice(b),
        KvValue::U64(n) => out.extend_from_slice(&n.to_le_bytes()),
    }
    out
}

/// Decodes a record; the error says what is wrong.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record, String> {
    let [format, encoding, flags, rest @ ..] = bytes else {
        return Err(format!("{} bytes is too short for a record", bytes.len()));
    };
    if *format != FORMAT {
        return Err(format!(
            "record format {format} is unknown (this build reads {FORMAT})"
        ));
    }
    if flags & !(HAS_EXPIRY | HAS_STAMP) != 0 {
        return Err(format!("unknown record flags {flags:#04x}"));
    }
    let mut rest = rest;
    let expire_at_ms = if flags & HAS_EXPIRY != 0 {
        let (e, r) = rest
            .split_first_chunk::<8>()
            .ok_or("the record's expiry is truncated")?;
        rest = r;
        Some(u64::from_be_bytes(*e))
    } else {
        None
    };
    let versionstamp = if flags & HAS_STAMP != 0 {
        let (v, r) = rest
            .split_first_chunk::<10>()
            .ok_or("the record's versionstamp is truncated")?;
        rest = r;
        Some(Versionstamp(*v))
    } else {
        None
    };
    let value =
        KvValue::from_encoded(i64::from(*encoding), rest.to_vec()).map_err(|e| e.to_string())?;
    Ok(Record {
        value,
        expire_at_ms,
        versionstamp,
    })
}

#[cfg(test)]
mod tests;
