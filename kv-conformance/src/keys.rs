//! Key shapes, ordering and key limits.

use anyhow::ensure;
use kv_core::{BigInt, Error, Key, KeyPart, Limit, ListOptions, Selector, key};

use crate::Cx;
use crate::util::b;

declare_cases!("keys":
    key_ordering_across_types,
    valid_key_shapes_round_trip,
    empty_key_is_rejected_for_writes,
    write_key_size_limit,
    read_key_size_limit,
    oversized_integer_part_is_rejected,
    numbers_and_bigints_are_different_keys,
    negative_zero_and_zero_are_different_keys,
    strings_with_nul_are_ordered_correctly,
);

fn bytes(b: &[u8]) -> KeyPart {
    KeyPart::Bytes(b.to_vec())
}

async fn key_ordering_across_types(cx: Cx) -> anyhow::Result<()> {
    let expected = vec![
        Key(vec![bytes(&[1])]),
        key!["a"],
        key![1],
        key![2.5],
        key![false],
        key![true],
    ];
    for k in expected.iter().rev() {
        cx.kv.set(k.clone(), b("x")).await?;
    }
    let listed: Vec<Key> = cx
        .kv
        .list(Selector::prefix(Key::empty()), ListOptions::default())
        .collect_all()
        .await?
        .into_iter()
        .map(|e| e.key)
        .collect();
    ensure!(
        listed == expected,
        "bytes < string < bigint < number < false < true, got {listed:?}"
    );
    Ok(())
}

async fn valid_key_shapes_round_trip(cx: Cx) -> anyhow::Result<()> {
    let shapes = vec![
        key!["a"],
        key!["a", "b"],
        key![""],
        key!["\0"],
        key!["a\0b"],
        key!["日本", "😀"],
        Key(vec![bytes(&[])]),
        Key(vec![bytes(&[0, 0xff, 0])]),
        key![0],
        key![-1],
        key![i64::MIN],
        key![u64::MAX],
        Key(vec![KeyPart::Int(BigInt::from(1) << 2000usize)]),
        Key(vec![KeyPart::Int(-(BigInt::from(1) << 2000usize))]),
        key![0.5],
        key![-0.0],
        key![f64::INFINITY],
        key![f64::NEG_INFINITY],
        key![f64::NAN],
        key![true, false, "mixed", 1, 1.5],
    ];
    for (i, k) in shapes.iter().enumerate() {
        cx.kv
            .set(k.clone(), kv_core::KvValue::U64(i as u64))
            .await?;
    }
    for (i, k) in shapes.iter().enumerate() {
        let e = cx
            .kv
            .get(k.clone())
            .await?
            .ok_or_else(|| anyhow::anyhow!("{k} missing"))?;
        ensure!(e.value == kv_core::KvValue::U64(i as u64), "{k}");
    }
    let listed = cx
        .kv
        .list(Selector::prefix(Key::empty()), ListOptions::default())
        .collect_all()
        .await?;
    ensure!(listed.len() == shapes.len());
    for e in &listed {
        let kv_core::KvValue::U64(i) = e.value else {
            anyhow::bail!("wrong value type")
        };
        ensure!(
            e.key.encode()? == shapes[i as usize].encode()?,
            "listed key {} decodes to the key written",
            e.key
        );
    }
    Ok(())
}

async fn empty_key_is_rejected_for_writes(cx: Cx) -> anyhow::Result<()> {
    assert_err!(cx.kv.set(Key::empty(), b("x")).await, Error::InvalidKey(m) if m == "key cannot be empty");
    assert_err!(cx.kv.delete(Key::empty()).await, Error::InvalidKey(_));
    assert_err!(
        cx.kv.atomic().check(Key::empty(), None).commit().await,
        Error::InvalidKey(_)
    );
    assert_err!(
        cx.kv
            .atomic()
            .set_versionstamped(Key::empty(), b("x"), Default::default())
            .commit()
            .await,
        Error::InvalidKey(_)
    );
    Ok(())
}

async fn write_key_size_limit(cx: Cx) -> anyhow::Result<()> {
    // 1 tag + 2046 bytes + 1 terminator = 2048 bytes (less the namespace).
    let n = 2046 - cx.ns_len();
    let ok = Key(vec![bytes(&vec![1; n])]);
    cx.kv.set(ok.clone(), b("x")).await?;
    ensure!(cx.kv.get(ok).await?.is_some());
    let too_big = Key(vec![bytes(&[1; 2047])]);
    assert_err!(
        cx.kv.set(too_big.clone(), b("x")).await,
        Error::LimitExceeded {
            limit: Limit::WriteKeySize,
            max: 2048,
            actual: 2049
        }
    );
    assert_err!(
        cx.kv.atomic().check(too_big, None).commit().await,
        Error::LimitExceeded {
            limit: Limit::WriteKeySize,
            ..
        }
    );
    Ok(())
}

async fn read_key_size_limit(cx: Cx) -> anyhow::Result<()> {
    // A get reads [key, key ++ 00), so the largest readable key is 2048 bytes,
    // like the largest writable one; Deno rejects `get` of a 2049-byte key.
    let n = 2046 - cx.ns_len();
    ensure!(cx.kv.get(Key(vec![bytes(&vec![1; n])])).await?.is_none());
    let too_big = Key(vec![bytes(&vec![1; n + 1])]);
    assert_err!(
        cx.kv.get(too_big.clone()).await,
        Error::LimitExceeded {
            limit: Limit::ReadKeySize,
            max: 2049,
            ..
        }
    );
    // A watched key may be 2049 bytes, one more is refused.
    ensure!(cx.kv.watch(&[too_big]).is_ok());
    let too_big = Key(vec![bytes(&[1; 2048])]);
    assert_err!(
        cx.kv.watch(&[too_big]).map(|_| ()),
        Error::LimitExceeded { .. }
    );
    Ok(())
}

async fn oversized_integer_part_is_rejected(cx: Cx) -> anyhow::Result<()> {
    let huge = Key(vec![KeyPart::Int(BigInt::from(1) << (255usize * 8))]);
    assert_err!(cx.kv.set(huge.clone(), b("x")).await, Error::InvalidKey(m) if m.contains("255 bytes"));
    assert_err!(cx.kv.get(huge).await, Error::InvalidKey(_));
    Ok(())
}

async fn numbers_and_bigints_are_different_keys(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["n", 1], b("bigint")).await?;
    cx.kv.set(key!["n", 1.0], b("number")).await?;
    ensure!(cx.kv.get(key!["n", 1]).await?.map(|e| e.value) == Some(b("bigint")));
    ensure!(cx.kv.get(key!["n", 1.0]).await?.map(|e| e.value) == Some(b("number")));
    Ok(())
}

async fn negative_zero_and_zero_are_different_keys(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key![0.0], b("zero")).await?;
    cx.kv.set(key![-0.0], b("minus zero")).await?;
    let listed = cx
        .kv
        .list(Selector::prefix(Key::empty()), ListOptions::default())
        .collect_all()
        .await?;
    ensure!(listed.len() == 2);
    ensure!(listed[0].value == b("minus zero"), "-0 sorts first");
    Ok(())
}

async fn strings_with_nul_are_ordered_correctly(cx: Cx) -> anyhow::Result<()> {
    let ordered = vec![
        key!["a"],
        key!["a", "b"],
        key!["a\0"],
        key!["a\0", "b"],
        key!["b"],
    ];
    for k in ordered.iter().rev() {
        cx.kv.set(k.clone(), b("x")).await?;
    }
    let listed: Vec<Key> = cx
        .kv
        .list(Selector::prefix(Key::empty()), ListOptions::default())
        .collect_all()
        .await?
        .into_iter()
        .map(|e| e.key)
        .collect();
    ensure!(listed == ordered, "{listed:?}");
    Ok(())
}
