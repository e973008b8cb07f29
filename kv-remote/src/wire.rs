//! `SnapshotReadOutput`, the one message that grows with the data, written
//! and read by hand.
//!
//! Through prost, a 1000-entry listing cost the server a message tree built
//! only to be encoded and dropped, and the client a quarter of its CPU
//! (a `Vec` per versionstamp, a reference count per field, another tree to
//! drop). Here the server encodes entries as the backend reads them
//! ([`ReadOutputEncoder`]), byte for byte what prost writes, and the client
//! decodes straight into its caller's [`ReadSink`], entries borrowed from
//! the response. Input the
//! decoder does not expect (groups, a known field with another wire type, an
//! entry that does not convert) returns `None`, and the caller decodes it
//! with prost, so odd messages get exactly prost's reading and errors.
//!
//! The keys-only form of the message (kv's `x-kv/snapshot_read_keys`, see
//! docs/kv-connect.md) is the same message with every entry's value and
//! encoding left out, as prost leaves out fields at their defaults: an
//! entry is its key and versionstamp.

// The server uses the encoder, the client the decoder.
#![cfg_attr(
    not(all(feature = "client", feature = "server")),
    allow(dead_code, unused_imports)
)]

use kv_core::backend::{RawEntry, ReadSink};
use kv_core::{ValueRef, Versionstamp};

use crate::proto::SnapshotReadStatus;

/// Wire types (the low three bits of a field's key).
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

// ---- encoding -------------------------------------------------------------

fn varint_len(v: u64) -> usize {
    // One byte per started 7 bits; 0 still takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: key byte, length, bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// How prost sends a value: its encoding and its bytes.
fn value_parts(value: ValueRef<'_>) -> (u64, ValueBytes<'_>) {
    // An `int32` field travels as its sign-extended 64-bit varint.
    let encoding = i64::from(value.encoding() as i32) as u64;
    let bytes = match value {
        ValueRef::V8(b) | ValueRef::Bytes(b) => ValueBytes::Slice(b),
        ValueRef::U64(n) => ValueBytes::Le64(n.to_le_bytes()),
    };
    (encoding, bytes)
}

enum ValueBytes<'a> {
    Slice(&'a [u8]),
    Le64([u8; 8]),
}

impl ValueBytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            ValueBytes::Slice(b) => b,
            ValueBytes::Le64(b) => b,
        }
    }
}

/// Bytes kept free for a range's length before its entries: lengths below
/// 2 MiB then need no move once known.
const RANGE_LEN_ROOM: usize = 3;

/// Writes a successful read's response, as prost would encode it, while a
/// backend hands over the entries ([`ReadSink`]): each entry is copied once,
/// from the backend's storage into the response.
#[derive(Debug)]
pub(crate) struct ReadOutputEncoder {
    out: Vec<u8>,
    /// Where the current range's entries start.
    range: Option<usize>,
    /// `false`: the keys-only form, entries without their values.
    values: bool,
}

impl ReadOutputEncoder {
    pub(crate) fn new() -> Self {
        ReadOutputEncoder {
            out: Vec::new(),
            range: None,
            values: true,
        }
    }

    /// An encoder of the keys-only form, which tells the backend that it
    /// needs no values ([`ReadSink::wants_values`]).
    pub(crate) fn keys_only() -> Self {
        ReadOutputEncoder {
            values: false,
            ..Self::new()
        }
    }

    /// Writes the current range's length into the room left for it.
    fn end_range(&mut self) {
        let Some(start) = self.range.take() else {
            return;
        };
        let len = self.out.len() - start;
        let need = varint_len(len as u64);
        if need != RANGE_LEN_ROOM {
            let end = self.out.len();
            let to = start - RANGE_LEN_ROOM + need;
            if need > RANGE_LEN_ROOM {
                self.out.resize(end + need - RANGE_LEN_ROOM, 0);
            }
            self.out.copy_within(start..end, to);
            self.out.truncate(to + len);
        }
        let mut at = start - RANGE_LEN_ROOM;
        let mut v = len as u64;
        while v >= 0x80 {
            self.out[at] = v as u8 | 0x80;
            v >>= 7;
            at += 1;
        }
        self.out[at] = v as u8;
    }

    /// The whole response.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.end_range();
        // read_disabled = false is left out; read_is_strongly_consistent = true.
        self.out.extend_from_slice(&[4 << 3 | VARINT, 1]);
        self.out.push(8 << 3 | VARINT);
        put_varint(&mut self.out, SnapshotReadStatus::SrSuccess as u64);
        self.out
    }
}

impl ReadSink for ReadOutputEncoder {
    fn begin_range(&mut self) {
        self.end_range();
        self.out.push(1 << 3 | LEN);
        self.out.extend_from_slice(&[0; RANGE_LEN_ROOM]);
        self.range = Some(self.out.len());
    }

    fn entry(&mut self, key: &[u8], value: ValueRef<'_>, versionstamp: Versionstamp) {
        debug_assert!(self.range.is_some(), "an entry before its range");
        let (encoding, value) = if self.values {
            value_parts(value)
        } else {
            (0, ValueBytes::Slice(&[]))
        };
        let value = value.as_slice();
        // Like prost, fields holding their default (empty bytes, encoding
        // 0) are left out.
        let mut len = field_len(versionstamp.0.len());
        if !key.is_empty() {
            len += field_len(key.len());
        }
        if !value.is_empty() {
            len += field_len(value.len());
        }
        if encoding != 0 {
            len += 1 + varint_len(encoding);
        }
        let out = &mut self.out;
        out.reserve(field_len(len));
        out.push(1 << 3 | LEN);
        put_varint(out, len as u64);
        if !key.is_empty() {
            put_bytes(out, 1, key);
        }
        if !value.is_empty() {
            put_bytes(out, 2, value);
        }
        if encoding != 0 {
            out.push(3 << 3 | VARINT);
            put_varint(out, encoding);
        }
        put_bytes(out, 4, &versionstamp.0);
    }

    fn clear(&mut self) {
        self.out.clear();
        self.range = None;
    }

    fn wants_values(&self) -> bool {
        self.values
    }
}

/// A successful read's response, as prost would encode it.
#[cfg(test)]
fn encode_read_output(ranges: &[Vec<RawEntry>]) -> Vec<u8> {
    let mut encoder = ReadOutputEncoder::new();
    for range in ranges {
        encoder.begin_range();
        for e in range {
            encoder.entry(&e.key, e.value.as_value_ref(), e.versionstamp);
        }
    }
    encoder.finish()
}

// ---- decoding -------------------------------------------------------------

/// A `SnapshotReadOutput` read straight into entries (or, from prost,
/// into its own entries still to convert).
#[derive(Debug, PartialEq)]
pub(crate) struct ReadOutput<E = RawEntry> {
    pub(crate) ranges: Vec<Vec<E>>,
    pub(crate) read_disabled: bool,
    pub(crate) read_is_strongly_consistent: bool,
    pub(crate) status: i32,
}

#[inline]
fn varint(buf: &mut &[u8]) -> Option<u64> {
    // Field keys and most lengths of an entry take one byte.
    match buf.split_first() {
        Some((&b, rest)) if b < 0x80 => {
            *buf = rest;
            Some(u64::from(b))
        }
        _ => varint_long(buf),
    }
}

fn varint_long(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        // prost refuses a tenth byte above 1 (bits past 64).
        if i == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// A field's number and wire type; `None` where prost would refuse the key.
fn field_key(buf: &mut &[u8]) -> Option<(u32, u8)> {
    let key = u32::try_from(varint(buf)?).ok()?;
    let (field, wire) = (key >> 3, (key & 7) as u8);
    (field != 0).then_some((field, wire))
}

fn len_delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Some(head)
}

/// Skips an unknown field; groups are left to prost.
fn skip(buf: &mut &[u8], wire: u8) -> Option<()> {
    let fixed = |buf: &mut &[u8], n: usize| {
        *buf = buf.get(n..)?;
        Some(())
    };
    match wire {
        VARINT => varint(buf).map(drop),
        I64 => fixed(buf, 8),
        LEN => len_delimited(buf).map(drop),
        I32 => fixed(buf, 4),
        _ => None,
    }
}

/// What a `SnapshotReadOutput` says beside its entries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ReadStatus {
    /// How many ranges it answered.
    pub(crate) ranges: usize,
    pub(crate) read_disabled: bool,
    pub(crate) read_is_strongly_consistent: bool,
    pub(crate) status: i32,
}

impl<E> ReadOutput<E> {
    pub(crate) fn status(&self) -> ReadStatus {
        ReadStatus {
            ranges: self.ranges.len(),
            read_disabled: self.read_disabled,
            read_is_strongly_consistent: self.read_is_strongly_consistent,
            status: self.status,
        }
    }
}

/// Reads a `SnapshotReadOutput`; `None` sends the caller to prost.
#[cfg(test)]
fn decode_read_output(buf: &[u8]) -> Option<ReadOutput> {
    let mut ranges = Vec::new();
    let status = decode_read_output_into(buf, true, &mut ranges)?;
    Some(ReadOutput {
        ranges,
        read_disabled: status.read_disabled,
        read_is_strongly_consistent: status.read_is_strongly_consistent,
        status: status.status,
    })
}

/// Reads a `SnapshotReadOutput`, handing its entries to `sink` borrowed
/// from `buf`; `None` sends the caller to prost, and `sink` then holds part
/// of the answer, to be cleared. Without `values` (the keys-only form)
/// every value is handed as `ValueRef::Bytes(&[])`, whatever the entry
/// holds.
pub(crate) fn decode_read_output_into(
    mut buf: &[u8],
    values: bool,
    sink: &mut dyn ReadSink,
) -> Option<ReadStatus> {
    let mut out = ReadStatus {
        ranges: 0,
        read_disabled: false,
        read_is_strongly_consistent: false,
        status: 0,
    };
    while !buf.is_empty() {
        match field_key(&mut buf)? {
            (1, LEN) => {
                out.ranges += 1;
                range(len_delimited(&mut buf)?, values, sink)?;
            }
            (2, VARINT) => out.read_disabled = varint(&mut buf)? != 0,
            (4, VARINT) => out.read_is_strongly_consistent = varint(&mut buf)? != 0,
            (8, VARINT) => out.status = varint(&mut buf)? as i32,
            (1 | 2 | 4 | 8, _) => return None,
            (_, wire) => skip(&mut buf, wire)?,
        }
    }
    Some(out)
}

fn range(mut buf: &[u8], values: bool, sink: &mut dyn ReadSink) -> Option<()> {
    sink.begin_range();
    while !buf.is_empty() {
        match field_key(&mut buf)? {
            (1, LEN) => entry(len_delimited(&mut buf)?, values, sink)?,
            (1, _) => return None,
            (_, wire) => skip(&mut buf, wire)?,
        }
    }
    Some(())
}

fn entry(mut buf: &[u8], values: bool, sink: &mut dyn ReadSink) -> Option<()> {
    // Proto3: a field left out holds its default; a repeated one, the last.
    let (mut key, mut value, mut encoding, mut stamp): (&[u8], &[u8], i32, &[u8]) =
        (&[], &[], 0, &[]);
    while !buf.is_empty() {
        match field_key(&mut buf)? {
            (1, LEN) => key = len_delimited(&mut buf)?,
            (2, LEN) => value = len_delimited(&mut buf)?,
            (3, VARINT) => encoding = varint(&mut buf)? as i32,
            (4, LEN) => stamp = len_delimited(&mut buf)?,
            (1..=4, _) => return None,
            (_, wire) => skip(&mut buf, wire)?,
        }
    }
    let value = if values {
        ValueRef::from_encoded(i64::from(encoding), value).ok()?
    } else {
        ValueRef::Bytes(&[])
    };
    sink.entry(key, value, Versionstamp::from_slice(stamp).ok()?);
    Some(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use kv_core::KvValue;

    use super::*;
    use crate::proto;

    fn raw_entry() -> impl Strategy<Value = RawEntry> {
        let value = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(KvValue::V8),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(KvValue::Bytes),
            any::<u64>().prop_map(KvValue::U64),
        ];
        (
            proptest::collection::vec(any::<u8>(), 0..20),
            value,
            any::<[u8; 10]>(),
        )
            .prop_map(|(key, value, stamp)| RawEntry {
                key,
                value,
                versionstamp: Versionstamp(stamp),
            })
    }

    fn ranges() -> impl Strategy<Value = Vec<Vec<RawEntry>>> {
        proptest::collection::vec(proptest::collection::vec(raw_entry(), 0..6), 0..4)
    }

    /// Any message prost can produce, including fields kv never sends
    /// (bad encodings, short versionstamps, a disabled read).
    fn any_output() -> impl Strategy<Value = proto::SnapshotReadOutput> {
        let entry = (
            proptest::collection::vec(any::<u8>(), 0..12),
            proptest::collection::vec(any::<u8>(), 0..12),
            prop_oneof![Just(1), Just(2), Just(3), -2..6i32],
            proptest::collection::vec(any::<u8>(), 9..12),
        )
            .prop_map(|(key, value, encoding, versionstamp)| proto::KvEntry {
                key,
                value,
                encoding,
                versionstamp,
            });
        let range = proptest::collection::vec(entry, 0..4)
            .prop_map(|values| proto::ReadRangeOutput { values });
        (
            proptest::collection::vec(range, 0..3),
            any::<bool>(),
            any::<bool>(),
            -1..4i32,
        )
            .prop_map(|(ranges, read_disabled, strong, status)| {
                proto::SnapshotReadOutput {
                    ranges,
                    read_disabled,
                    read_is_strongly_consistent: strong,
                    status,
                }
            })
    }

    /// What prost reads, in the decoder's terms; `None` if it refuses.
    fn by_prost(bytes: &[u8]) -> Option<Option<ReadOutput>> {
        let out = proto::SnapshotReadOutput::decode(bytes).ok()?;
        let ranges: Option<Vec<Vec<RawEntry>>> = out
            .ranges
            .into_iter()
            .map(|r| {
                r.values
                    .into_iter()
                    .map(|e| {
                        Some(RawEntry {
                            key: e.key,
                            value: KvValue::from_encoded(i64::from(e.encoding), e.value).ok()?,
                            versionstamp: Versionstamp::from_slice(&e.versionstamp).ok()?,
                        })
                    })
                    .collect()
            })
            .collect();
        Some(ranges.map(|ranges| ReadOutput {
            ranges,
            read_disabled: out.read_disabled,
            read_is_strongly_consistent: out.read_is_strongly_consistent,
            status: out.status,
        }))
    }

    proptest! {
        #[test]
        fn encodes_what_prost_encodes(ranges in ranges()) {
            let expected = crate::convert::read_output(ranges.clone()).encode_to_vec();
            prop_assert_eq!(encode_read_output(&ranges), expected);
        }

        #[test]
        fn decodes_what_it_encodes(ranges in ranges()) {
            let out = decode_read_output(&encode_read_output(&ranges)).unwrap();
            prop_assert_eq!(out.ranges, ranges);
            prop_assert!(out.read_is_strongly_consistent && !out.read_disabled);
            prop_assert_eq!(out.status, SnapshotReadStatus::SrSuccess as i32);
        }

        /// Whenever the decoder answers, prost reads the same; where prost
        /// reads entries that convert, the decoder answers.
        #[test]
        fn agrees_with_prost(
            msg in any_output(),
            cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            truncate in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut bytes = msg.encode_to_vec();
            for (at, byte) in &cuts {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = *byte;
                }
            }
            if let Some(at) = truncate {
                bytes.truncate(at.index(bytes.len() + 1));
            }
            let ours = decode_read_output(&bytes);
            match by_prost(&bytes) {
                Some(Some(theirs)) if cuts.is_empty() => prop_assert_eq!(ours, Some(theirs)),
                Some(Some(theirs)) => if let Some(ours) = ours {
                    prop_assert_eq!(ours, theirs);
                },
                // prost refuses it, or an entry does not convert: prost's
                // reading decides, so the decoder must step aside.
                Some(None) | None => prop_assert!(ours.is_none()),
            }
        }
    }

    #[test]
    fn varint_lengths() {
        for (v, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), len, "{v}");
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), len);
            assert_eq!(varint(&mut out.as_slice()), Some(v));
        }
    }

    /// Ranges whose lengths take one to four varint bytes: the room left
    /// for a range's length (three bytes) is shrunk, kept or grown.
    #[test]
    fn ranges_of_every_length_size_encode_as_prost_does() {
        let range = |entries: usize, value_len: usize| -> Vec<RawEntry> {
            (0..entries)
                .map(|i| RawEntry {
                    key: format!("key-{i:06}").into_bytes(),
                    value: KvValue::Bytes(vec![i as u8; value_len]),
                    versionstamp: Versionstamp::from_counter(i as u64),
                })
                .collect()
        };
        let ranges = vec![
            range(0, 0),
            range(1, 10),
            range(30, 400),
            range(200, 100),
            range(40, 64 * 1024),
            range(2, 0),
        ];
        let expected = crate::convert::read_output(ranges.clone()).encode_to_vec();
        assert!(expected.len() > 2 << 20, "one range needs a 4-byte length");
        assert_eq!(encode_read_output(&ranges), expected);
        let out = decode_read_output(&expected).unwrap();
        assert_eq!(out.ranges, ranges);
    }

    /// A backend that starts a read over clears the sink: what it wrote
    /// first leaves no trace.
    #[test]
    fn a_cleared_encoder_starts_afresh() {
        let entry = RawEntry {
            key: b"k".to_vec(),
            value: KvValue::U64(7),
            versionstamp: Versionstamp::from_counter(1),
        };
        let mut encoder = ReadOutputEncoder::new();
        encoder.begin_range();
        encoder.entry(b"stale", ValueRef::V8(&[1, 2, 3]), entry.versionstamp);
        encoder.begin_range();
        encoder.clear();
        encoder.begin_range();
        encoder.entry(&entry.key, entry.value.as_value_ref(), entry.versionstamp);
        let prost = crate::convert::read_output(vec![vec![entry]]).encode_to_vec();
        assert_eq!(encoder.finish(), prost);
    }

    /// A response the fast decoder gives up on after handing over entries
    /// (an unknown group, which prost skips) is read again by prost, into
    /// a cleared sink.
    #[test]
    fn a_response_read_again_by_prost_is_not_doubled() {
        let ranges = vec![vec![RawEntry {
            key: b"k".to_vec(),
            value: KvValue::U64(3),
            versionstamp: Versionstamp::from_counter(5),
        }]];
        let mut body = encode_read_output(&ranges);
        body.extend_from_slice(&[9 << 3 | 3, 9 << 3 | 4]);
        let mut sink = Vec::new();
        crate::convert::read_response(&body, 1, true, true, &mut sink).unwrap();
        assert_eq!(sink, ranges);
    }

    /// The keys-only form is what prost writes for entries without value
    /// and encoding; read as keys-only, any response (by the fast decoder
    /// or by prost) hands every value as empty bytes.
    #[test]
    fn the_keys_only_form_leaves_values_out() {
        let entry = |key: &[u8], value, n| RawEntry {
            key: key.to_vec(),
            value,
            versionstamp: Versionstamp::from_counter(n),
        };
        let ranges = vec![
            vec![
                entry(b"a", KvValue::V8(vec![0xff, 0x0f, 0x49, 0x02]), 1),
                entry(b"b", KvValue::U64(9), 2),
            ],
            vec![],
            vec![entry(b"c", KvValue::Bytes(vec![7; 300]), 3)],
        ];
        let mut encoder = ReadOutputEncoder::keys_only();
        assert!(!encoder.wants_values());
        for range in &ranges {
            encoder.begin_range();
            for e in range {
                encoder.entry(&e.key, e.value.as_value_ref(), e.versionstamp);
            }
        }
        let body = encoder.finish();
        let mut expected = crate::convert::read_output(ranges.clone());
        for e in expected.ranges.iter_mut().flat_map(|r| &mut r.values) {
            e.value.clear();
            e.encoding = 0;
        }
        assert_eq!(body, expected.encode_to_vec());

        let keys_only: Vec<Vec<RawEntry>> = ranges
            .iter()
            .map(|r| {
                let empty = |e: &RawEntry| RawEntry {
                    value: KvValue::Bytes(Vec::new()),
                    ..e.clone()
                };
                r.iter().map(empty).collect()
            })
            .collect();
        let mut with_group = encode_read_output(&ranges);
        with_group.extend_from_slice(&[9 << 3 | 3, 9 << 3 | 4]);
        for response in [body, encode_read_output(&ranges), with_group] {
            let mut sink = Vec::new();
            crate::convert::read_response(&response, 3, true, false, &mut sink).unwrap();
            assert_eq!(sink, keys_only);
        }
    }

    #[test]
    fn groups_and_misplaced_fields_go_to_prost() {
        // Field 9 as a start group, then its end.
        assert_eq!(decode_read_output(&[9 << 3 | 3, 9 << 3 | 4]), None);
        // `ranges` as a varint.
        assert_eq!(decode_read_output(&[1 << 3, 1]), None);
        // An unknown field is skipped.
        let out = decode_read_output(&[15 << 3 | LEN, 2, 0xaa, 0xbb, 8 << 3, 1]).unwrap();
        assert_eq!(out.status, 1);
    }
}
