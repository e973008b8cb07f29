use super::*;

fn v8(hex: &str) -> KvValue {
    KvValue::V8(hex::decode(hex.replace(' ', "")).expect("hex"))
}

fn sum(value: KvValue) -> MutationKind {
    MutationKind::Sum {
        value,
        min: None,
        max: None,
        clamp: false,
    }
}

fn stored(applied: Applied) -> KvValue {
    match applied {
        Applied::Put { value, .. } => value,
        Applied::Deleted => panic!("expected a value"),
    }
}

#[test]
fn u64_sum_wraps_and_min_max_compare() {
    let r = apply(&sum(KvValue::U64(10)), Some(&KvValue::U64(u64::MAX))).expect("ok");
    assert_eq!(stored(r), KvValue::U64(9));
    let r = apply(&MutationKind::Min(KvValue::U64(3)), Some(&KvValue::U64(5))).expect("ok");
    assert_eq!(stored(r), KvValue::U64(3));
    let r = apply(&MutationKind::Max(KvValue::U64(3)), Some(&KvValue::U64(5))).expect("ok");
    assert_eq!(stored(r), KvValue::U64(5));
    let r = apply(&MutationKind::Max(KvValue::U64(3)), None).expect("ok");
    assert_eq!(stored(r), KvValue::U64(3));
}

#[test]
fn u64_ops_reject_other_types_with_deno_messages() {
    let err = apply(&sum(KvValue::U64(1)), Some(&KvValue::Bytes(vec![1]))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Failed to perform 'sum' mutation on a non-U64 value in the database"
    );
    let err = apply(&MutationKind::Min(v8("ff104902")), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Failed to perform 'min' mutation on a non-U64 operand"
    );
}

#[test]
fn v8_sum_reserialises_like_deno() {
    // Deno stores the operand of a sum on an absent key re-encoded, version 15.
    let r = apply(&sum(v8("ff104902")), None).expect("ok");
    assert_eq!(stored(r), v8("ff0f4e000000000000f03f"));
    let r = apply(&sum(v8("ff105a100100000000000000")), None).expect("ok");
    assert_eq!(stored(r), v8("ff0f5a0201"));
    let r = apply(
        &sum(v8(&format!(
            "ff105a20{}01{}",
            "00".repeat(8),
            "00".repeat(7)
        ))),
        None,
    )
    .expect("ok");
    assert_eq!(stored(r), v8("ff0f5a12000000000000000001"));
    let r = apply(&sum(v8("ff105a00")), None).expect("ok");
    assert_eq!(stored(r), v8("ff0f5a0200"));
    // 1.5 + 2 = 3.5
    let r = apply(&sum(v8("ff104904")), Some(&v8("ff0f4e000000000000f83f"))).expect("ok");
    assert_eq!(stored(r), v8("ff0f4e0000000000000c40"));
}

#[test]
fn v8_sum_type_errors() {
    let big = v8("ff105a100100000000000000");
    let num = v8("ff104902");
    let e = apply(&sum(num.clone()), Some(&big)).unwrap_err();
    assert_eq!(e.to_string(), "Cannot sum BigInt with Number");
    let e = apply(&sum(big.clone()), Some(&num)).unwrap_err();
    assert_eq!(e.to_string(), "Cannot sum Number with BigInt");
    let e = apply(&sum(num.clone()), Some(&KvValue::U64(1))).unwrap_err();
    assert_eq!(e.to_string(), "Cannot sum KvU64 with Number");
    // A bigint in u64 range on a KvU64 is a wrapping KvU64 sum.
    let r = apply(&sum(big), Some(&KvValue::U64(u64::MAX))).expect("ok");
    assert_eq!(stored(r), KvValue::U64(0));
    let e = apply(&sum(v8("ff10220568656c6c6f")), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Some of the parameters are not valid V8 values"
    );
    let e = apply(&sum(num), Some(&v8("ff10220568656c6c6f"))).unwrap_err();
    assert_eq!(e.to_string(), "unsupported value type");
}

#[test]
fn v8_sum_bounds() {
    let bounded = |clamp| MutationKind::Sum {
        value: v8("ff104914"), // 10
        min: None,
        max: Some(hex::decode("ff10490a").expect("hex")), // 5
        clamp,
    };
    let current = v8("ff104902"); // 1
    let e = apply(&bounded(false), Some(&current)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "The result of a Sum operation would exceed its range limit"
    );
    let r = apply(&bounded(true), Some(&current)).expect("ok");
    assert_eq!(stored(r), v8("ff0f4e0000000000001440"));
    let mixed = MutationKind::Sum {
        value: v8("ff104914"),
        min: Some(hex::decode("ff105a00").expect("hex")),
        max: None,
        clamp: false,
    };
    let e = apply(&mixed, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Min/max parameters have different types than the operand"
    );
}

#[test]
fn versionstamped_key_appends_a_string_part() {
    let k = versionstamped_key(&[0x02, b'l', b'o', b'g', 0], Versionstamp::from_counter(5));
    let key = crate::Key::decode(&k).expect("decodable");
    assert_eq!(key, crate::key!["log", "00000000000000050000"]);
}
