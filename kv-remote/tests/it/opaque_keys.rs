//! Keys are opaque bytes to a KV Connect server, as on denokv: bytes that
//! are not an encoded key tuple are written, checked, read, summed and
//! watched like any others (denokv's own integration tests use the key
//! `[1]`). The reserved system space stays refused (`bad_requests`).

use std::sync::Arc;

use futures::StreamExt;
use kv_core::backend::{AtomicWrite, Check, CommitOutcome, Mutation, MutationKind, ReadRange};
use kv_core::{Backend, Consistency, KvValue, MemoryBackend};
use kv_remote::{RemoteConfig, ServerConfig, bind, serve};

const TOKEN: &str = "opaque-keys-token-1234";

async fn connect() -> kv_remote::RemoteBackend {
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    tokio::spawn(serve(
        listener,
        Arc::new(MemoryBackend::new()),
        ServerConfig::new([TOKEN]),
        std::future::pending(),
    ));
    RemoteConfig::new(format!("http://{addr}"), TOKEN)
        .connect()
        .await
        .unwrap()
}

fn write(checks: Vec<Check>, mutations: Vec<Mutation>) -> AtomicWrite {
    AtomicWrite {
        checks,
        mutations,
        enqueues: Vec::new(),
    }
}

fn set(key: &[u8], value: KvValue) -> Mutation {
    Mutation {
        key: key.to_vec(),
        kind: MutationKind::Set {
            value,
            expire_at_ms: None,
        },
    }
}

fn sum(key: &[u8], n: u64) -> Mutation {
    Mutation {
        key: key.to_vec(),
        kind: MutationKind::Sum {
            value: KvValue::U64(n),
            min: None,
            max: None,
            clamp: false,
        },
    }
}

async fn read_all(remote: &kv_remote::RemoteBackend) -> Vec<(Vec<u8>, KvValue)> {
    let range = ReadRange {
        start: Vec::new(),
        end: vec![0xff],
        limit: 100,
        reverse: false,
    };
    let mut ranges = remote
        .snapshot_read(vec![range], Consistency::Strong)
        .await
        .unwrap();
    ranges
        .remove(0)
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect()
}

#[tokio::test]
async fn keys_that_are_not_tuples_are_stored_as_given() {
    let remote = connect().await;
    // Not tuples: a lone bytes tag, an unterminated string, an unknown tag.
    let odd: [&[u8]; 3] = [&[1], &[2, b'a'], &[0x30, 7]];
    let mut watch = remote.watch(vec![odd[0].to_vec()]);
    let first = watch.next().await.unwrap().unwrap();
    assert!(first[0].is_none(), "nothing stored yet");

    let mutations = odd
        .iter()
        .map(|k| set(k, KvValue::Bytes(k.to_vec())))
        .collect();
    let outcome = remote.atomic_write(write(vec![], mutations)).await.unwrap();
    let CommitOutcome::Committed { versionstamp } = outcome else {
        panic!("the commit applies: {outcome:?}");
    };
    let stored = read_all(&remote).await;
    let mut expected: Vec<_> = odd
        .iter()
        .map(|k| (k.to_vec(), KvValue::Bytes(k.to_vec())))
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(stored, expected);

    // The watcher of `[1]` sees the write.
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let snapshot = watch.next().await.unwrap().unwrap();
            if let Some(entry) = snapshot[0].clone() {
                return entry;
            }
        }
    })
    .await
    .expect("the watch reports the write within 10 s");
    assert_eq!(seen.key, vec![1]);
    assert_eq!(seen.versionstamp, versionstamp);

    // Checks and sums on such keys, as denokv's tests do with `[1]`.
    let checked = write(
        vec![Check {
            key: vec![2, b'a'],
            versionstamp: Some(versionstamp),
        }],
        vec![sum(&[9], 41), sum(&[9], 1)],
    );
    assert!(remote.atomic_write(checked).await.unwrap().is_ok());
    let stored = read_all(&remote).await;
    assert!(stored.contains(&(vec![9], KvValue::U64(42))), "{stored:?}");
    let stale = write(
        vec![Check {
            key: vec![2, b'a'],
            versionstamp: None,
        }],
        vec![sum(&[9], 1)],
    );
    assert_eq!(
        remote.atomic_write(stale).await.unwrap(),
        CommitOutcome::CheckFailed
    );
}

/// The same through the standard endpoints as any client calls them, so
/// the test does not depend on which endpoint `RemoteBackend` picks.
#[tokio::test]
async fn the_standard_endpoints_take_keys_that_are_not_tuples() {
    use crate::bad_requests::{Server, bytes, set, write};
    use kv_remote::proto;
    use prost::Message;

    let s = Server::start().await;
    let (status, body) = s
        .data(
            "atomic_write",
            write(proto::AtomicWrite {
                checks: vec![proto::Check {
                    key: vec![2, b'a'],
                    versionstamp: vec![],
                }],
                mutations: vec![set(vec![0x30, 7], bytes(vec![1]))],
                // (Enqueues, with their undelivered keys, need the queue
                // layer; this server stores into a bare MemoryBackend.)
                enqueues: vec![],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .data(
            "snapshot_read",
            proto::SnapshotRead {
                ranges: vec![proto::ReadRange {
                    start: vec![0x30],
                    end: vec![0x31],
                    limit: 10,
                    reverse: false,
                }],
            }
            .encode_to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.as_bytes().windows(2).any(|w| w == [0x30, 7]),
        "{body:?}"
    );
    let watch = s
        .data_stream_status(
            "watch",
            proto::Watch {
                keys: vec![proto::WatchKey { key: vec![0x15] }],
            }
            .encode_to_vec(),
        )
        .await;
    assert_eq!(watch, 200);
}
