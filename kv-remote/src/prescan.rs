//! The counts of a request's repeated fields, checked on its bytes before
//! prost decodes it, and the largest request body a server reads.
//!
//! Prost builds every element of a repeated field before the limits can
//! look at the message: a 4 MB `AtomicWrite` of 160,000 mutations cost
//! the server 42 ms of CPU (release build) to be refused, and 16
//! connections sending it cut other clients to 12 % of their throughput.
//! Here each count is taken by walking the fields' keys and lengths,
//! allocating nothing, and the walk stops at the first element over a
//! limit: the 1,001st mutation, the 101st check. The refusal is the
//! `LimitExceeded` that `kv_core::limits` gives for the decoded message,
//! with the count seen so far as its size. Bytes the walk cannot read
//! (a bad varint, a length past the end, a group) end the walk without a
//! verdict: prost then decodes and refuses them with its own message.
//!
//! With both, the 4 MB body costs 1.1 ms (refused with 413 once 917,000
//! bytes are read) and a 750 kB body of 30,000 mutations 0.6 ms, against
//! 5.6 ms when decoded (the `oversized` test, release build).

use kv_core::limits::{
    MAX_CHECKS, MAX_MUTATIONS, MAX_READ_RANGES, MAX_SERVER_BACKOFF_INTERVALS,
    MAX_TOTAL_MUTATION_SIZE, MAX_UNDELIVERED_KEYS, MAX_WATCHED_KEYS,
};
use kv_core::{Error, Limit, Result};

#[cfg(test)]
mod tests;

/// Bytes of protobuf framing one mutation may take beyond its key and
/// value bytes, with room for a sum's bounds: the field key and a 3-byte
/// length of the mutation (4), of its key (3), its `KvValue` (4) and the
/// value's bytes (4); the value's encoding (2), the mutation type (2), an
/// `expire_at_ms` of -1, which is a 10-byte varint (11), and `sum_clamp`
/// (2): 32 bytes. Sum bounds are V8 numbers (a double is 10 bytes, a
/// 128-bit BigInt 21): 64 bytes more hold two of up to 30 bytes with their
/// framing. An enqueue takes less beyond what the total counts: its key and
/// length (4), its payload's (4), a deadline (11), the backoff list's key
/// and length (2) and ten dead-letter keys' keys and lengths (30): 51.
/// Fields the server ignores (the value of a delete) are taken to be
/// empty, as clients send them.
const MUTATION_FRAMING: usize = 96;

/// Bytes one check takes beyond its key: its field key and length (3), its
/// key's (3) and a versionstamp with its framing (12).
const CHECK_FRAMING: usize = 18;

/// The largest request body the server reads by default: the largest
/// `AtomicWrite` within the limits. A read (10 ranges of two 2049-byte
/// bounds, about 41 kB) and a watch (10 keys, about 21 kB) are far
/// smaller.
///
/// The limits bound what a commit carries, and the framing around it is
/// bounded per element:
/// - 819,200 bytes (`MAX_TOTAL_MUTATION_SIZE`) of check and mutation keys,
///   values, enqueue payloads and backoff intervals, which the total size
///   counts (keys of value-carrying mutations twice, intervals at 4 bytes,
///   the most a varint of at most one hour takes). Dead-letter keys are
///   taken to fit in it too, as denokv counts them (`kv_core::limits`
///   does not, so a commit of more than about 800 kB of them is refused
///   here with 413);
/// - per mutation or enqueue, at most 1000 of them, [`MUTATION_FRAMING`];
/// - per check, at most 100, [`CHECK_FRAMING`].
///
/// 819,200 + 1000 × 96 + 100 × 18 = 917,000 bytes. denokv reads up to
/// 2 MiB (axum's default); the old limit here was 4 MiB.
pub(crate) const MAX_REQUEST_BODY: usize =
    MAX_TOTAL_MUTATION_SIZE + MAX_MUTATIONS * MUTATION_FRAMING + MAX_CHECKS * CHECK_FRAMING;

/// Wire types (the low three bits of a field's key).
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;

/// One field of a message: its number and, for a length-delimited field,
/// its bytes.
struct Field<'a> {
    number: u64,
    wire_type: u64,
    bytes: &'a [u8],
}

/// The fields of a message, in order. Stops at the first field it cannot
/// read (prost will say what is wrong with it).
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let key = varint(&mut self.0)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let len = match wire_type {
            VARINT => {
                varint(&mut self.0)?;
                0
            }
            I64 => 8,
            I32 => 4,
            LEN => usize::try_from(varint(&mut self.0)?).ok()?,
            // Groups (3, 4) and unknown types: prost's to judge.
            _ => return None,
        };
        if len > self.0.len() {
            return None;
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(Field {
            number,
            wire_type,
            bytes,
        })
    }
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Counts elements towards a limit; refuses the first one over it.
struct Count {
    limit: Limit,
    max: usize,
    seen: usize,
}

impl Count {
    fn new(limit: Limit, max: usize) -> Self {
        Count {
            limit,
            max,
            seen: 0,
        }
    }

    fn add(&mut self, n: usize) -> Result<()> {
        self.seen = self.seen.saturating_add(n);
        if self.seen > self.max {
            return Err(Error::LimitExceeded {
                limit: self.limit,
                max: self.max as u64,
                actual: self.seen as u64,
            });
        }
        Ok(())
    }
}

/// Checks the counts of an `AtomicWrite`'s checks, of its mutations and
/// enqueues together, and of each enqueue's dead-letter keys and backoff
/// intervals.
///
/// # Errors
/// `LimitExceeded` at the first element over a limit.
pub(crate) fn atomic_write(body: &[u8]) -> Result<()> {
    let mut checks = Count::new(Limit::Checks, MAX_CHECKS);
    let mut mutations = Count::new(Limit::Mutations, MAX_MUTATIONS);
    for field in Fields(body) {
        match (field.number, field.wire_type) {
            (1, LEN) => checks.add(1)?,
            (2, LEN) => mutations.add(1)?,
            (3, LEN) => {
                mutations.add(1)?;
                enqueue(field.bytes)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn enqueue(body: &[u8]) -> Result<()> {
    let mut keys = Count::new(Limit::UndeliveredKeys, MAX_UNDELIVERED_KEYS);
    // The server's limit, the larger one: the system endpoint's smaller
    // one is checked on the decoded message.
    let mut intervals = Count::new(Limit::BackoffIntervals, MAX_SERVER_BACKOFF_INTERVALS);
    for field in Fields(body) {
        match (field.number, field.wire_type) {
            (3, LEN) => keys.add(1)?,
            // Packed, as proto3 sends it: one varint per interval.
            (4, LEN) => {
                let varints = field.bytes.iter().filter(|b| *b & 0x80 == 0).count();
                intervals.add(varints)?;
            }
            (4, VARINT) => intervals.add(1)?,
            _ => {}
        }
    }
    Ok(())
}

/// Checks the count of a `SnapshotRead`'s ranges.
///
/// # Errors
/// `LimitExceeded` at the 11th range.
pub(crate) fn snapshot_read(body: &[u8]) -> Result<()> {
    repeated(body, 1, Limit::Ranges, MAX_READ_RANGES)
}

/// Checks the count of a `Watch`'s keys.
///
/// # Errors
/// `LimitExceeded` at the 11th key.
pub(crate) fn watch(body: &[u8]) -> Result<()> {
    repeated(body, 1, Limit::WatchKeys, MAX_WATCHED_KEYS)
}

fn repeated(body: &[u8], number: u64, limit: Limit, max: usize) -> Result<()> {
    let mut count = Count::new(limit, max);
    for field in Fields(body) {
        if field.number == number && field.wire_type == LEN {
            count.add(1)?;
        }
    }
    Ok(())
}
