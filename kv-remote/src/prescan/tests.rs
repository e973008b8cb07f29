use kv_core::limits::MAX_DELAY_MS;
use kv_core::{Error, Limit};
use prost::Message;

use super::{MAX_REQUEST_BODY, atomic_write, snapshot_read, watch};
use crate::convert;
use crate::proto;

const NOW_MS: u64 = 1_700_000_000_000;

fn check(key: Vec<u8>) -> proto::Check {
    proto::Check {
        key,
        versionstamp: vec![0; 10],
    }
}

fn set(key: Vec<u8>) -> proto::Mutation {
    proto::Mutation {
        key,
        value: Some(proto::KvValue {
            data: vec![1],
            encoding: proto::ValueEncoding::VeBytes as i32,
        }),
        mutation_type: proto::MutationType::MSet as i32,
        ..Default::default()
    }
}

fn enqueue(keys: usize, intervals: usize) -> proto::Enqueue {
    proto::Enqueue {
        payload: vec![0xff, 0x10, 0x49, 0x02],
        deadline_ms: NOW_MS as i64,
        keys_if_undelivered: (0..keys).map(|i| vec![2, b'd', i as u8, 0]).collect(),
        backoff_schedule: vec![1000; intervals],
    }
}

fn key(i: usize) -> Vec<u8> {
    let mut key = vec![2, b'k'];
    key.extend_from_slice(&(i as u32).to_be_bytes());
    key.push(0);
    key
}

fn limit_of(r: kv_core::Result<impl Sized>) -> Option<(Limit, u64)> {
    match r {
        Err(Error::LimitExceeded { limit, actual, .. }) => Some((limit, actual)),
        _ => None,
    }
}

/// At every count boundary the scan refuses exactly what the limits refuse
/// once the message is decoded, with the same limit: the scan changes when
/// a request is refused, not whether or why.
#[test]
fn the_scan_refuses_what_the_decoded_checks_refuse() {
    let writes = [
        (100, 0, vec![]),
        (101, 0, vec![]),
        (0, 1000, vec![]),
        (0, 1001, vec![]),
        (0, 600, vec![enqueue(0, 0); 400]),
        (0, 600, vec![enqueue(0, 0); 401]),
        (0, 1, vec![enqueue(10, 10)]),
        (0, 1, vec![enqueue(11, 0)]),
        (0, 1, vec![enqueue(0, 11)]),
        (101, 1001, vec![]),
    ];
    for (checks, mutations, enqueues) in writes {
        let write = proto::AtomicWrite {
            checks: (0..checks).map(key).map(check).collect(),
            mutations: (0..mutations).map(key).map(set).collect(),
            enqueues,
        };
        let body = write.encode_to_vec();
        let scanned = limit_of(atomic_write(&body));
        let decoded = limit_of(convert::write_request(write, NOW_MS, false));
        assert_eq!(
            scanned.map(|l| l.0),
            decoded.map(|l| l.0),
            "{checks} checks, {mutations} mutations"
        );
        assert_eq!(scanned, decoded, "the first one over is the count seen");
    }
    for n in [10, 11] {
        let read = proto::SnapshotRead {
            ranges: (0..n)
                .map(|i| proto::ReadRange {
                    start: key(i),
                    end: key(i + 1),
                    limit: 1,
                    reverse: false,
                })
                .collect(),
        };
        let scanned = limit_of(snapshot_read(&read.encode_to_vec()));
        let decoded = limit_of(convert::read_request(read, false));
        assert_eq!(scanned, decoded, "{n} ranges");
        let keys = proto::Watch {
            keys: (0..n).map(|i| proto::WatchKey { key: key(i) }).collect(),
        };
        let scanned = limit_of(watch(&keys.encode_to_vec()));
        let decoded = limit_of(convert::watch_request(keys, false));
        assert_eq!(scanned, decoded, "{n} watched keys");
    }
}

/// The scan stops at the first mutation over the limit, however many
/// follow.
#[test]
fn the_scan_stops_at_the_first_mutation_over_the_limit() {
    let write = proto::AtomicWrite {
        mutations: (0..160_000).map(key).map(set).collect(),
        ..Default::default()
    };
    assert!(matches!(
        atomic_write(&write.encode_to_vec()),
        Err(Error::LimitExceeded {
            limit: Limit::Mutations,
            max: 1000,
            actual: 1001
        })
    ));
}

/// What the scan cannot read is left to prost, which says what is wrong.
#[test]
fn unreadable_bytes_are_left_to_prost() {
    let cases: [&[u8]; 5] = [
        &[0xff, 0xff, 0xff],
        // A mutation whose length runs past the end.
        &[0x12, 0x05, 0x00],
        // A group.
        &[0x13, 0x14],
        // A varint of 11 bytes.
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        &[],
    ];
    for body in cases {
        assert!(atomic_write(body).is_ok(), "{body:?}");
        assert!(snapshot_read(body).is_ok(), "{body:?}");
        assert!(watch(body).is_ok(), "{body:?}");
    }
}

/// The largest commits the limits allow, with every framing byte at its
/// largest, fit in the body limit, and fill most of it: it is close to the
/// protocol's real maximum, not an arbitrary round number (893,600 and
/// 854,000 bytes of 917,000).
#[test]
fn the_largest_valid_commits_fit_the_body_limit() {
    // 100 checks of 2048-byte keys with versionstamps (204,800 bytes of the
    // total), and 1000 sums of 1-byte keys and 612-byte values (614,000:
    // keys count twice) with two 21-byte bounds and an expiry of -1.
    let sums = proto::AtomicWrite {
        checks: (0..100u8)
            .map(|i| check([vec![2, i], vec![1; 2046]].concat()))
            .collect(),
        mutations: (0..1000)
            .map(|_| proto::Mutation {
                key: vec![2],
                value: Some(proto::KvValue {
                    data: vec![1; 612],
                    encoding: proto::ValueEncoding::VeV8 as i32,
                }),
                mutation_type: proto::MutationType::MSum as i32,
                expire_at_ms: -1,
                sum_min: vec![0xff; 21],
                sum_max: vec![0xff; 21],
                sum_clamp: true,
            })
            .collect(),
        enqueues: Vec::new(),
    };
    // 1000 enqueues of 679-byte payloads, ten 10-byte dead-letter keys and
    // ten one-hour intervals each: 819,000 bytes counted as denokv counts.
    let enqueues = proto::AtomicWrite {
        enqueues: (0..1000)
            .map(|_| proto::Enqueue {
                payload: vec![1; 679],
                deadline_ms: (NOW_MS + MAX_DELAY_MS) as i64,
                keys_if_undelivered: (0..10u8)
                    .map(|i| vec![2, i, 0, 0, 0, 0, 0, 0, 0, 0])
                    .collect(),
                backoff_schedule: vec![3_600_000; 10],
            })
            .collect(),
        ..Default::default()
    };
    for write in [sums, enqueues] {
        let len = write.encoded_len();
        let body = write.encode_to_vec();
        assert!(atomic_write(&body).is_ok());
        convert::write_request(write, NOW_MS, false).expect("a valid commit");
        assert!(len <= MAX_REQUEST_BODY, "{len} > {MAX_REQUEST_BODY}");
        assert!(
            len * 100 >= MAX_REQUEST_BODY * 90,
            "{len} bytes: a loose limit"
        );
    }
}
