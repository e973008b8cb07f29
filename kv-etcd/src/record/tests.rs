use super::*;

#[test]
fn records_round_trip() {
    let stamp = Versionstamp::from_counter(7);
    for value in [
        KvValue::V8(vec![0xff, 0x0f, 0x49, 0x02]),
        KvValue::Bytes(vec![]),
        KvValue::Bytes(b"hello".to_vec()),
        KvValue::U64(u64::MAX),
    ] {
        for expire_at_ms in [None, Some(0), Some(1_700_000_000_000)] {
            for versionstamp in [None, Some(stamp)] {
                let bytes = encode(&value, expire_at_ms, versionstamp);
                let record = decode(&bytes).expect("decodes");
                assert_eq!(
                    record,
                    Record {
                        value: value.clone(),
                        expire_at_ms,
                        versionstamp
                    }
                );
            }
        }
    }
}

#[test]
fn golden_record() {
    let bytes = encode(&KvValue::U64(1), Some(2), None);
    assert_eq!(
        bytes,
        [1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn bad_records_are_refused() {
    for bad in [
        &[][..],
        &[1, 1][..],
        &[2, 1, 0][..],
        &[1, 9, 0][..],
        &[1, 2, 0, 1][..],
        &[1, 1, 1, 0][..],
        &[1, 1, 2, 0][..],
        &[1, 1, 4][..],
    ] {
        assert!(decode(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn stamps_prefer_the_stored_one() {
    let plain = decode(&encode(&KvValue::U64(1), None, None)).expect("decodes");
    assert_eq!(plain.stamp(42), Versionstamp::from_counter(42));
    let stored = Versionstamp::from_counter(9);
    let with = decode(&encode(&KvValue::U64(1), None, Some(stored))).expect("decodes");
    assert_eq!(with.stamp(42), stored);
    assert!(with.is_live(u64::MAX));
    let expiring = decode(&encode(&KvValue::U64(1), Some(10), None)).expect("decodes");
    assert!(expiring.is_live(9));
    assert!(!expiring.is_live(10));
}
