//! The byte layout of queue records: the only place that knows it.
//!
//! A message waiting for delivery is one key
//!
//! ```text
//! FF 'q' 'm' <due: u64 BE ms> <index: u16 BE> 02 <20 hex chars: versionstamp> 00
//! ```
//!
//! so messages sort by due time; the versionstamp (appended by a
//! versionstamped set) makes keys unique across commits and the index
//! within one. The value is a `Bytes` record:
//!
//! ```text
//! 01                                  format version
//! u32 LE attempts so far
//! u8  has_schedule, then u32 LE count + u32 LE delays (ms)
//! u32 LE count of dead-letter keys, each u32 LE length + bytes
//! rest: the V8 payload
//! ```
//!
//! A message's *id* is the key's tail after the due time (index and
//! versionstamp part); it stays the same when the message is retried. While
//! a listener handles a message, the message key is replaced by
//!
//! ```text
//! FF 'q' 'r' <id>    value: u64 LE lease deadline (ms) ++ the record
//! ```
//!
//! and `FF 'q' 'n'` is rewritten by every enqueue and retry, so that
//! listeners can watch one key.

use kv_core::backend::{
    AtomicWrite, Backend, Consistency, Enqueue, Mutation, MutationKind, ReadRange, SYSTEM_PREFIX,
};
use kv_core::{Error, KvValue, Result};

/// Prefix of every message key.
pub const MESSAGE_PREFIX: [u8; 3] = [SYSTEM_PREFIX, b'q', b'm'];
/// Prefix of the keys of messages being handled (leased).
pub const RUNNING_PREFIX: [u8; 3] = [SYSTEM_PREFIX, b'q', b'r'];
/// A key every enqueue and requeue writes, so listeners can watch it.
pub const NOTIFY_KEY: [u8; 3] = [SYSTEM_PREFIX, b'q', b'n'];

const FORMAT: u8 = 1;

/// A stored queue message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// When it becomes deliverable, Unix ms.
    pub due_ms: u64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Remaining retry delays; `None` means the default schedule.
    pub backoff_schedule: Option<Vec<u32>>,
    /// Keys that receive the payload if delivery finally fails.
    pub keys_if_undelivered: Vec<Vec<u8>>,
    /// The V8 payload.
    pub payload: Vec<u8>,
}

fn message_key_prefix(due_ms: u64, index: u16) -> Vec<u8> {
    let mut key = MESSAGE_PREFIX.to_vec();
    key.extend_from_slice(&due_ms.to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The key of a message with this id due at `due_ms`.
pub fn message_key(due_ms: u64, id: &[u8]) -> Vec<u8> {
    let mut key = MESSAGE_PREFIX.to_vec();
    key.extend_from_slice(&due_ms.to_be_bytes());
    key.extend_from_slice(id);
    key
}

/// The id of a message key (everything after the due time).
pub fn message_id(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(&MESSAGE_PREFIX[..])
        .and_then(|k| k.get(8..))
}

/// The due time (Unix ms) of a message key.
pub fn message_due(key: &[u8]) -> Option<u64> {
    let due = key.strip_prefix(&MESSAGE_PREFIX[..])?.first_chunk::<8>()?;
    Some(u64::from_be_bytes(*due))
}

/// The key of a running message.
pub fn running_key(id: &[u8]) -> Vec<u8> {
    let mut key = RUNNING_PREFIX.to_vec();
    key.extend_from_slice(id);
    key
}

/// The range of every message key due at or before `now_ms`, or of every
/// message when `now_ms` is `u64::MAX`.
pub fn due_range(now_ms: u64, limit: u32) -> ReadRange {
    let end = match now_ms.checked_add(1) {
        Some(after) => {
            let mut end = MESSAGE_PREFIX.to_vec();
            end.extend_from_slice(&after.to_be_bytes());
            end
        }
        None => prefix_end(&MESSAGE_PREFIX),
    };
    ReadRange {
        start: MESSAGE_PREFIX.to_vec(),
        end,
        limit,
        reverse: false,
    }
}

/// The range of every key starting with `prefix` (`prefix` ends below 0xFF).
pub fn prefix_range(prefix: &[u8], limit: u32) -> ReadRange {
    ReadRange {
        start: prefix.to_vec(),
        end: prefix_end(prefix),
        limit,
        reverse: false,
    }
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    end.push(0xff);
    end
}

/// Encodes a running record: the lease deadline, then the message record.
pub fn encode_running(deadline_ms: u64, m: &Message) -> Vec<u8> {
    let mut out = deadline_ms.to_le_bytes().to_vec();
    out.extend_from_slice(&encode_message(m));
    out
}

/// Decodes a running record into its lease deadline and message (whose
/// `due_ms` is 0: a running message is not due).
///
/// # Errors
/// `InvalidValue` for a record this version cannot read.
pub fn decode_running(record: &[u8]) -> Result<(u64, Message)> {
    let (deadline, rest) = record
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::InvalidValue("truncated running record".into()))?;
    let mut key = MESSAGE_PREFIX.to_vec();
    key.extend_from_slice(&[0; 8]);
    Ok((u64::from_le_bytes(*deadline), decode_message(&key, rest)?))
}

/// Encodes a message record.
pub fn encode_message(m: &Message) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend_from_slice(&m.attempts.to_le_bytes());
    match &m.backoff_schedule {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            for d in s {
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&(m.keys_if_undelivered.len() as u32).to_le_bytes());
    for k in &m.keys_if_undelivered {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
    }
    out.extend_from_slice(&m.payload);
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(Error::InvalidValue("truncated queue record".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Decodes a message from its key and record.
///
/// # Errors
/// `InvalidValue` for a record this version cannot read.
pub fn decode_message(key: &[u8], record: &[u8]) -> Result<Message> {
    let due_ms =
        message_due(key).ok_or_else(|| Error::InvalidValue("not a queue message key".into()))?;
    let mut r = Reader(record);
    if r.take(1)? != [FORMAT] {
        return Err(Error::InvalidValue("unknown queue record format".into()));
    }
    let attempts = r.u32()?;
    let backoff_schedule = match r.take(1)?[0] {
        0 => None,
        _ => {
            let n = r.u32()? as usize;
            Some((0..n).map(|_| r.u32()).collect::<Result<Vec<_>>>()?)
        }
    };
    let n = r.u32()? as usize;
    let mut keys_if_undelivered = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        let len = r.u32()? as usize;
        keys_if_undelivered.push(r.take(len)?.to_vec());
    }
    Ok(Message {
        due_ms,
        attempts,
        backoff_schedule,
        keys_if_undelivered,
        payload: r.0.to_vec(),
    })
}

/// Moves the enqueues of `write` into mutations that store them, in the
/// same commit.
pub fn encode_enqueues(write: &mut AtomicWrite) {
    if write.enqueues.is_empty() {
        return;
    }
    let earliest = write
        .enqueues
        .iter()
        .map(|e| e.deadline_ms)
        .min()
        .unwrap_or(0);
    for (index, e) in std::mem::take(&mut write.enqueues).into_iter().enumerate() {
        let Enqueue {
            payload,
            deadline_ms,
            keys_if_undelivered,
            backoff_schedule,
        } = e;
        let message = Message {
            due_ms: deadline_ms,
            attempts: 0,
            backoff_schedule,
            keys_if_undelivered,
            payload,
        };
        write.mutations.push(Mutation {
            key: message_key_prefix(deadline_ms, index as u16),
            kind: MutationKind::SetSuffixVersionstampedKey {
                value: KvValue::Bytes(encode_message(&message)),
                expire_at_ms: None,
            },
        });
    }
    write.mutations.push(notify(earliest));
}

/// The mutation that wakes listeners, telling them the earliest due time.
pub fn notify(due_ms: u64) -> Mutation {
    Mutation {
        key: NOTIFY_KEY.to_vec(),
        kind: MutationKind::Set {
            value: KvValue::U64(due_ms),
            expire_at_ms: None,
        },
    }
}

/// The messages a page of [`read_messages_after`] holds at most.
pub const MESSAGE_PAGE: u32 = 1000;

/// Reads up to [`MESSAGE_PAGE`] stored messages in due order (for
/// inspection and tests); [`read_messages_after`] pages through the rest.
///
/// # Errors
/// Backend errors, or a record this version cannot read.
pub async fn read_messages(backend: &dyn Backend) -> Result<Vec<(Vec<u8>, Message)>> {
    read_messages_after(backend, None, MESSAGE_PAGE).await
}

/// Reads up to `limit` stored messages in due order whose record key comes
/// after `after` (a key this function returned; `None` for the first
/// page). A page shorter than `limit` is the last.
///
/// # Errors
/// Backend errors, or a record this version cannot read;
/// [`Error::InvalidArgument`] for a `limit` of 0.
pub async fn read_messages_after(
    backend: &dyn Backend,
    after: Option<&[u8]>,
    limit: u32,
) -> Result<Vec<(Vec<u8>, Message)>> {
    if limit == 0 {
        return Err(Error::InvalidArgument("a page of 0 messages".into()));
    }
    let start = match after {
        // The smallest key after `after`.
        Some(key) => [key, &[0]].concat(),
        None => MESSAGE_PREFIX.to_vec(),
    };
    let mut end = MESSAGE_PREFIX.to_vec();
    end.push(0xff);
    let range = ReadRange {
        start,
        end,
        limit,
        reverse: false,
    };
    let mut out = Vec::new();
    for entry in backend
        .snapshot_read(vec![range], Consistency::Strong)
        .await?
        .into_iter()
        .flatten()
    {
        let KvValue::Bytes(record) = &entry.value else {
            return Err(Error::InvalidValue("queue record is not bytes".into()));
        };
        let m = decode_message(&entry.key, record)?;
        out.push((entry.key, m));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_core::MemoryBackend;
    use kv_core::backend::Check;

    fn enqueue(deadline_ms: u64) -> Enqueue {
        Enqueue {
            payload: vec![0xff, 0x10, 0x22, 0x01, b'x'],
            deadline_ms,
            keys_if_undelivered: vec![vec![2, b'd', 0]],
            backoff_schedule: Some(vec![10, 20]),
        }
    }

    #[test]
    fn records_round_trip() {
        let m = Message {
            due_ms: 42,
            attempts: 3,
            backoff_schedule: Some(vec![1, 2]),
            keys_if_undelivered: vec![vec![1], vec![]],
            payload: vec![9, 9],
        };
        let key = message_key_prefix(42, 0);
        assert_eq!(
            decode_message(&key, &encode_message(&m)).expect("decodes"),
            m
        );
        let none = Message {
            backoff_schedule: None,
            ..m
        };
        assert_eq!(
            decode_message(&key, &encode_message(&none)).expect("decodes"),
            none
        );
        assert!(decode_message(&key, &[1, 0]).is_err());
    }

    #[test]
    fn enqueues_are_stored_with_the_commit_only() {
        futures::executor::block_on(async {
            let backend = crate::QueueBackend::new(MemoryBackend::new());
            let w = AtomicWrite {
                enqueues: vec![enqueue(7), enqueue(5)],
                ..Default::default()
            };
            assert!(backend.atomic_write(w).await.expect("commits").is_ok());
            let failing = AtomicWrite {
                checks: vec![Check {
                    key: vec![2, b'x', 0],
                    versionstamp: Some(kv_core::Versionstamp::ZERO),
                }],
                enqueues: vec![enqueue(1)],
                ..Default::default()
            };
            assert!(!backend.atomic_write(failing).await.expect("runs").is_ok());
            let stored = read_messages(&backend).await.expect("reads");
            let dues: Vec<u64> = stored.iter().map(|(_, m)| m.due_ms).collect();
            assert_eq!(
                dues,
                vec![5, 7],
                "sorted by due time; the failed commit enqueued nothing"
            );
            assert_eq!(stored[0].1.backoff_schedule, Some(vec![10, 20]));
            assert_eq!(stored[0].1.keys_if_undelivered, vec![vec![2, b'd', 0]]);
        });
    }
}
