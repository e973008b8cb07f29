//! Protobuf ↔ kv-core conversions, with the validation a server owes its
//! clients. The one home of the protobuf mapping
//! (`wire` hand-writes the read response, the one message that grows with
//! the data).
//!
//! Both sides compile all of it; each uses its half (the server validates
//! requests and builds responses, the client the reverse).

#![cfg_attr(
    not(all(feature = "client", feature = "server")),
    allow(dead_code, unused_imports)
)]

use kv_core::backend::{
    AtomicWrite, Check, CommitOutcome, DEFAULT_BACKOFF_SCHEDULE, Enqueue, Mutation, MutationKind,
    RawEntry, ReadRange, ReadSink, SYSTEM_PREFIX,
};
use kv_core::limits::{self, MAX_DELAY_MS};
use kv_core::{Error, KvValue, Result, Versionstamp};

use prost::Message;

use crate::proto;
use crate::wire::{ReadOutput, ReadStatus};

fn invalid(msg: &str) -> Error {
    Error::InvalidArgument(msg.to_owned())
}

/// Keeps a range inside the user key space: a client never sees or touches
/// the reserved system keys, whatever bytes it sends.
fn clamp_to_user_space(mut range: ReadRange) -> ReadRange {
    let system = vec![SYSTEM_PREFIX];
    if range.end > system {
        range.end = system;
    }
    range
}

/// Validates a client's `SnapshotRead`.
/// `system` admits the reserved key space (kv's own extension endpoints).
pub(crate) fn read_request(req: proto::SnapshotRead, system: bool) -> Result<Vec<ReadRange>> {
    let mut ranges = Vec::with_capacity(req.ranges.len());
    for r in req.ranges {
        let limit = u32::try_from(r.limit)
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| {
                invalid("The read range limit of the snapshot read request is invalid.")
            })?;
        ranges.push(ReadRange {
            start: r.start,
            end: r.end,
            limit,
            reverse: r.reverse,
        });
    }
    limits::check_read(&ranges)?;
    if system {
        return Ok(ranges);
    }
    Ok(ranges.into_iter().map(clamp_to_user_space).collect())
}

fn value(v: Option<proto::KvValue>) -> Result<KvValue> {
    let v = v.ok_or_else(|| invalid("Invalid mutation kind or arguments."))?;
    KvValue::from_encoded(i64::from(v.encoding), v.data)
}

fn expiry(ms: i64) -> Result<Option<u64>> {
    match ms {
        0 | -1 => Ok(None),
        ms if ms > 0 => Ok(Some(ms as u64)),
        _ => Err(invalid("Invalid mutation expire at.")),
    }
}

fn bound(b: Vec<u8>) -> Option<Vec<u8>> {
    (!b.is_empty()).then_some(b)
}

/// Validates a client's `AtomicWrite`; `now_ms` bounds enqueue deadlines.
pub(crate) fn write_request(
    req: proto::AtomicWrite,
    now_ms: u64,
    system: bool,
) -> Result<AtomicWrite> {
    let mut write = AtomicWrite::default();
    for c in req.checks {
        let versionstamp = match c.versionstamp.len() {
            0 => None,
            _ => Some(Versionstamp::from_slice(&c.versionstamp)?),
        };
        write.checks.push(Check {
            key: c.key,
            versionstamp,
        });
    }
    for m in req.mutations {
        use proto::MutationType as T;
        let kind = match T::try_from(m.mutation_type) {
            Ok(T::MSet) => MutationKind::Set {
                value: value(m.value)?,
                expire_at_ms: expiry(m.expire_at_ms)?,
            },
            Ok(T::MDelete) => MutationKind::Delete,
            Ok(T::MSum) => MutationKind::Sum {
                value: value(m.value)?,
                min: bound(m.sum_min),
                max: bound(m.sum_max),
                clamp: m.sum_clamp,
            },
            Ok(T::MMin) => MutationKind::Min(value(m.value)?),
            Ok(T::MMax) => MutationKind::Max(value(m.value)?),
            Ok(T::MSetSuffixVersionstampedKey) => MutationKind::SetSuffixVersionstampedKey {
                value: value(m.value)?,
                expire_at_ms: expiry(m.expire_at_ms)?,
            },
            Ok(T::MUnspecified) | Err(_) => {
                return Err(invalid("Invalid mutation kind or arguments."));
            }
        };
        write.mutations.push(Mutation { key: m.key, kind });
    }
    for e in req.enqueues {
        let deadline_ms = u64::try_from(e.deadline_ms).map_err(|_| {
            invalid("Invalid mutation enqueue deadline: it is negative (Unix ms expected).")
        })?;
        if deadline_ms > now_ms.saturating_add(MAX_DELAY_MS) {
            return Err(invalid(
                "Invalid mutation enqueue deadline: it must be at most 30 days from now.",
            ));
        }
        write.enqueues.push(Enqueue {
            payload: e.payload,
            deadline_ms,
            keys_if_undelivered: e.keys_if_undelivered,
            // On the standard endpoint an empty list means "none given", as
            // on denokv; kv's clients send "no retry" to the extension
            // endpoint, where they spell the default out.
            backoff_schedule: (system || !e.backoff_schedule.is_empty())
                .then_some(e.backoff_schedule),
        });
    }
    if system {
        limits::check_system_write(&write)?;
    } else {
        limits::check_received_write(&write)?;
    }
    Ok(write)
}

/// Validates a client's `Watch`.
pub(crate) fn watch_request(req: proto::Watch, system: bool) -> Result<Vec<Vec<u8>>> {
    let keys: Vec<Vec<u8>> = req.keys.into_iter().map(|k| k.key).collect();
    limits::check_watch(&keys)?;
    if !system && keys.iter().any(|k| kv_core::backend::is_system_key(k)) {
        return Err(Error::InvalidKey(
            "key is in the reserved system key space".into(),
        ));
    }
    Ok(keys)
}

fn entry(e: RawEntry) -> proto::KvEntry {
    proto::KvEntry {
        key: e.key,
        encoding: e.value.encoding() as i32,
        value: match e.value {
            KvValue::V8(b) | KvValue::Bytes(b) => b,
            KvValue::U64(n) => n.to_le_bytes().to_vec(),
        },
        versionstamp: e.versionstamp.0.to_vec(),
    }
}

/// A successful read's response as prost builds it ([`wire`](crate::wire)
/// encodes the same bytes without building it).
#[cfg(test)]
pub(crate) fn read_output(ranges: Vec<Vec<RawEntry>>) -> proto::SnapshotReadOutput {
    proto::SnapshotReadOutput {
        ranges: ranges
            .into_iter()
            .map(|r| proto::ReadRangeOutput {
                values: r.into_iter().map(entry).collect(),
            })
            .collect(),
        read_disabled: false,
        read_is_strongly_consistent: true,
        status: proto::SnapshotReadStatus::SrSuccess as i32,
    }
}

/// A commit's response.
pub(crate) fn write_output(outcome: CommitOutcome) -> proto::AtomicWriteOutput {
    match outcome {
        CommitOutcome::Committed { versionstamp } => proto::AtomicWriteOutput {
            status: proto::AtomicWriteStatus::AwSuccess as i32,
            versionstamp: versionstamp.0.to_vec(),
            failed_checks: Vec::new(),
        },
        CommitOutcome::CheckFailed => proto::AtomicWriteOutput {
            status: proto::AtomicWriteStatus::AwCheckFailure as i32,
            versionstamp: Vec::new(),
            failed_checks: Vec::new(),
        },
    }
}

/// A watch frame: every key marked changed, with its current entry (what
/// Deno's client needs, see docs/kv-connect.md).
pub(crate) fn watch_output(entries: Vec<Option<RawEntry>>) -> proto::WatchOutput {
    proto::WatchOutput {
        status: proto::SnapshotReadStatus::SrSuccess as i32,
        keys: entries
            .into_iter()
            .map(|e| proto::WatchKeyOutput {
                changed: true,
                entry_if_changed: e.map(entry),
            })
            .collect(),
    }
}

// ---- client side -------------------------------------------------------

/// A read request.
pub(crate) fn read_to_proto(ranges: Vec<ReadRange>) -> proto::SnapshotRead {
    proto::SnapshotRead {
        ranges: ranges
            .into_iter()
            .map(|r| proto::ReadRange {
                start: r.start,
                end: r.end,
                limit: i32::try_from(r.limit).unwrap_or(i32::MAX),
                reverse: r.reverse,
            })
            .collect(),
    }
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::InvalidValue(format!("KV Connect protocol error: {}", msg.into()))
}

fn raw_entry(e: proto::KvEntry) -> Result<RawEntry> {
    Ok(RawEntry {
        key: e.key,
        value: KvValue::from_encoded(i64::from(e.encoding), e.value)?,
        versionstamp: Versionstamp::from_slice(&e.versionstamp)
            .map_err(|_| protocol("an entry's versionstamp is not 10 bytes"))?,
    })
}

/// A read response, checked against the request, into `sink`: decoded by
/// [`wire`](crate::wire), or by prost when that steps aside. Without
/// `values` it is the keys-only form, and every value reaches `sink` as
/// `ValueRef::Bytes(&[])`.
pub(crate) fn read_response(
    body: &[u8],
    ranges: usize,
    strong: bool,
    values: bool,
    sink: &mut dyn ReadSink,
) -> Result<()> {
    if let Some(status) = crate::wire::decode_read_output_into(body, values, sink) {
        return check_read(status, ranges, strong);
    }
    sink.clear();
    let out = proto::SnapshotReadOutput::decode(body)
        .map_err(|e| Error::InvalidValue(format!("KV Connect failed to decode response: {e}")))?;
    let out = ReadOutput {
        ranges: out.ranges.into_iter().map(|r| r.values).collect(),
        read_disabled: out.read_disabled,
        read_is_strongly_consistent: out.read_is_strongly_consistent,
        status: out.status,
    };
    // The entries convert only after the answer as a whole is checked.
    check_read(out.status(), ranges, strong)?;
    for range in out.ranges {
        sink.begin_range();
        for e in range {
            if values {
                let e = raw_entry(e)?;
                sink.entry(&e.key, e.value.as_value_ref(), e.versionstamp);
            } else {
                let versionstamp = Versionstamp::from_slice(&e.versionstamp)
                    .map_err(|_| protocol("an entry's versionstamp is not 10 bytes"))?;
                sink.entry(&e.key, kv_core::ValueRef::Bytes(&[]), versionstamp);
            }
        }
    }
    Ok(())
}

fn check_read(out: ReadStatus, ranges: usize, strong: bool) -> Result<()> {
    let status = out.status;
    if out.read_disabled || status == proto::SnapshotReadStatus::SrReadDisabled as i32 {
        return Err(Error::Unavailable {
            backend: "remote".into(),
            message: "Reads are disabled for this database".into(),
        });
    }
    if status != proto::SnapshotReadStatus::SrSuccess as i32 {
        return Err(protocol(format!("Unspecified read error (code={status})")));
    }
    if strong && !out.read_is_strongly_consistent {
        return Err(Error::Unavailable {
            backend: "remote".into(),
            message: "Strong consistency reads are not available for this database".into(),
        });
    }
    let got = out.ranges;
    if got != ranges {
        return Err(protocol(format!("asked for {ranges} ranges, got {got}")));
    }
    Ok(())
}

fn value_to_proto(v: KvValue) -> proto::KvValue {
    proto::KvValue {
        encoding: v.encoding() as i32,
        data: match v {
            KvValue::V8(b) | KvValue::Bytes(b) => b,
            KvValue::U64(n) => n.to_le_bytes().to_vec(),
        },
    }
}

/// Response header of the metadata exchange listing what kv's extension
/// endpoints can do beyond the standard ones (comma-separated); standard
/// clients ignore it.
pub(crate) const EXTENSIONS_HEADER: &str = "x-kv-extensions";

/// In [`EXTENSIONS_HEADER`]: an empty backoff schedule on the extension
/// `atomic_write` means no retry.
pub(crate) const NO_RETRY: &str = "no-retry";

/// In [`EXTENSIONS_HEADER`]: `x-kv/snapshot_read_keys` answers reads with
/// keys and versionstamps only.
pub(crate) const KEYS_ONLY: &str = "keys-only";

/// The [`EXTENSIONS_HEADER`] value kv's server sends: every extension it
/// has.
pub(crate) const ANNOUNCED: &str = "no-retry, keys-only";

/// Whether a metadata response's headers announce `feature`.
pub(crate) fn announces(headers: &http::HeaderMap, feature: &str) -> bool {
    headers
        .get_all(EXTENSIONS_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == feature)
}

/// A commit request. `extension`: for kv's `/x-kv/` endpoint, where an
/// empty backoff schedule means no retry, so an absent one is sent as the
/// default list; on the standard endpoints an empty list means the default.
pub(crate) fn write_to_proto(write: AtomicWrite, extension: bool) -> proto::AtomicWrite {
    use proto::MutationType as T;
    let expire = |e: Option<u64>| e.map_or(0, |ms| i64::try_from(ms.max(1)).unwrap_or(i64::MAX));
    proto::AtomicWrite {
        checks: write
            .checks
            .into_iter()
            .map(|c| proto::Check {
                key: c.key,
                versionstamp: c.versionstamp.map(|v| v.0.to_vec()).unwrap_or_default(),
            })
            .collect(),
        mutations: write
            .mutations
            .into_iter()
            .map(|m| {
                let mut out = proto::Mutation {
                    key: m.key,
                    ..Default::default()
                };
                match m.kind {
                    MutationKind::Set {
                        value,
                        expire_at_ms,
                    } => {
                        out.mutation_type = T::MSet as i32;
                        out.value = Some(value_to_proto(value));
                        out.expire_at_ms = expire(expire_at_ms);
                    }
                    MutationKind::Delete => {
                        out.mutation_type = T::MDelete as i32;
                        out.value = Some(value_to_proto(KvValue::Bytes(Vec::new())));
                    }
                    MutationKind::Sum {
                        value,
                        min,
                        max,
                        clamp,
                    } => {
                        out.mutation_type = T::MSum as i32;
                        out.value = Some(value_to_proto(value));
                        out.sum_min = min.unwrap_or_default();
                        out.sum_max = max.unwrap_or_default();
                        out.sum_clamp = clamp;
                    }
                    MutationKind::Min(value) => {
                        out.mutation_type = T::MMin as i32;
                        out.value = Some(value_to_proto(value));
                    }
                    MutationKind::Max(value) => {
                        out.mutation_type = T::MMax as i32;
                        out.value = Some(value_to_proto(value));
                    }
                    MutationKind::SetSuffixVersionstampedKey {
                        value,
                        expire_at_ms,
                    } => {
                        out.mutation_type = T::MSetSuffixVersionstampedKey as i32;
                        out.value = Some(value_to_proto(value));
                        out.expire_at_ms = expire(expire_at_ms);
                    }
                }
                out
            })
            .collect(),
        enqueues: write
            .enqueues
            .into_iter()
            .map(|e| proto::Enqueue {
                payload: e.payload,
                deadline_ms: i64::try_from(e.deadline_ms).unwrap_or(i64::MAX),
                keys_if_undelivered: e.keys_if_undelivered,
                backoff_schedule: match e.backoff_schedule {
                    Some(schedule) => schedule,
                    None if extension => DEFAULT_BACKOFF_SCHEDULE.to_vec(),
                    None => Vec::new(),
                },
            })
            .collect(),
    }
}

/// A commit response.
pub(crate) fn write_from_proto(out: proto::AtomicWriteOutput) -> Result<CommitOutcome> {
    use proto::AtomicWriteStatus as S;
    match S::try_from(out.status) {
        Ok(S::AwSuccess) => Ok(CommitOutcome::Committed {
            versionstamp: Versionstamp::from_slice(&out.versionstamp)
                .map_err(|_| protocol("the commit versionstamp is not 10 bytes"))?,
        }),
        Ok(S::AwCheckFailure) => Ok(CommitOutcome::CheckFailed),
        Ok(S::AwWriteDisabled) => Err(Error::ReadOnly),
        _ => Err(protocol(format!(
            "Unspecified write error (code={})",
            out.status
        ))),
    }
}

/// A watch request.
pub(crate) fn watch_to_proto(keys: Vec<Vec<u8>>) -> proto::Watch {
    proto::Watch {
        keys: keys
            .into_iter()
            .map(|key| proto::WatchKey { key })
            .collect(),
    }
}

/// Applies a watch frame to the last known state of the keys.
pub(crate) fn watch_from_proto(
    out: proto::WatchOutput,
    state: &mut [Option<RawEntry>],
) -> Result<()> {
    if out.status != proto::SnapshotReadStatus::SrSuccess as i32 {
        return Err(protocol(format!(
            "Unspecified read error (code={})",
            out.status
        )));
    }
    if out.keys.len() != state.len() {
        return Err(protocol("a watch frame does not cover every watched key"));
    }
    for (slot, k) in state.iter_mut().zip(out.keys) {
        if k.changed {
            *slot = k.entry_if_changed.map(raw_entry).transpose()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::{ANNOUNCED, EXTENSIONS_HEADER, KEYS_ONLY, NO_RETRY, announces};

    /// Only a server that lists the feature gets "no retry" enqueues: an
    /// older kv server or denokv would read the empty schedule as the
    /// default one and retry.
    #[test]
    fn features_are_read_from_the_extensions_header() {
        let mut headers = HeaderMap::new();
        assert!(
            !announces(&headers, NO_RETRY),
            "denokv sends no such header"
        );
        headers.insert(
            EXTENSIONS_HEADER,
            HeaderValue::from_static("other, no-retry"),
        );
        assert!(announces(&headers, NO_RETRY));
        headers.insert(
            EXTENSIONS_HEADER,
            HeaderValue::from_static("no-retry-later"),
        );
        assert!(!announces(&headers, NO_RETRY), "whole names only");
        headers.insert(EXTENSIONS_HEADER, HeaderValue::from_static(ANNOUNCED));
        assert!(announces(&headers, NO_RETRY) && announces(&headers, KEYS_ONLY));
    }
}
