//! `sum`, `min` and `max` on KvU64 and V8 numbers.

use std::time::Duration;

use anyhow::ensure;
use kv_core::backend::MutationKind;
use kv_core::{Error, KvValue, SetOptions, key};

use crate::Cx;
use crate::util::{b, unhex, v8};

declare_cases!("sum":
    sum_on_absent_key_stores_operand,
    sum_wraps_around,
    min_and_max,
    min_max_on_absent_key_store_operand,
    sum_on_non_u64_value_is_a_type_mismatch,
    min_with_non_u64_operand_is_a_type_mismatch,
    v8_number_sum,
    v8_bigint_sum,
    v8_bigint_on_kvu64_is_a_kvu64_sum,
    v8_sum_of_mixed_types_fails,
    v8_sum_bounds_and_clamp,
    v8_sum_clamps_to_the_minimum_then_the_maximum,
    sum_clears_expiry,
);

async fn value(cx: &Cx, k: &str) -> anyhow::Result<Option<KvValue>> {
    Ok(cx.kv.get(key![k]).await?.map(|e| e.value))
}

fn v8_sum(value: KvValue) -> MutationKind {
    MutationKind::Sum {
        value,
        min: None,
        max: None,
        clamp: false,
    }
}

async fn sum_on_absent_key_stores_operand(cx: Cx) -> anyhow::Result<()> {
    cx.kv.atomic().sum(key!["n"], 5).commit().await?;
    ensure!(value(&cx, "n").await? == Some(KvValue::U64(5)));
    Ok(())
}

async fn sum_wraps_around(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["n"], KvValue::U64(u64::MAX)).await?;
    cx.kv.atomic().sum(key!["n"], 10).commit().await?;
    ensure!(value(&cx, "n").await? == Some(KvValue::U64(9)));
    // Decrement by adding the two's complement.
    cx.kv.atomic().sum(key!["n"], u64::MAX).commit().await?;
    ensure!(value(&cx, "n").await? == Some(KvValue::U64(8)));
    Ok(())
}

async fn min_and_max(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["lo"], KvValue::U64(10)).await?;
    cx.kv.set(key!["hi"], KvValue::U64(10)).await?;
    cx.kv
        .atomic()
        .min(key!["lo"], 5)
        .max(key!["hi"], 5)
        .commit()
        .await?;
    ensure!(value(&cx, "lo").await? == Some(KvValue::U64(5)));
    ensure!(value(&cx, "hi").await? == Some(KvValue::U64(10)));
    cx.kv
        .atomic()
        .min(key!["lo"], 7)
        .max(key!["hi"], 70)
        .commit()
        .await?;
    ensure!(value(&cx, "lo").await? == Some(KvValue::U64(5)));
    ensure!(value(&cx, "hi").await? == Some(KvValue::U64(70)));
    Ok(())
}

async fn min_max_on_absent_key_store_operand(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .atomic()
        .min(key!["lo"], 3)
        .max(key!["hi"], 4)
        .commit()
        .await?;
    ensure!(value(&cx, "lo").await? == Some(KvValue::U64(3)));
    ensure!(value(&cx, "hi").await? == Some(KvValue::U64(4)));
    Ok(())
}

async fn sum_on_non_u64_value_is_a_type_mismatch(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["s"], b("text")).await?;
    for (op, r) in [
        ("sum", cx.kv.atomic().sum(key!["s"], 1).commit().await),
        ("min", cx.kv.atomic().min(key!["s"], 1).commit().await),
        ("max", cx.kv.atomic().max(key!["s"], 1).commit().await),
    ] {
        let expected =
            format!("Failed to perform '{op}' mutation on a non-U64 value in the database");
        assert_err!(r, Error::TypeMismatch(m) if m == expected);
    }
    ensure!(value(&cx, "s").await? == Some(b("text")));
    Ok(())
}

async fn min_with_non_u64_operand_is_a_type_mismatch(cx: Cx) -> anyhow::Result<()> {
    let r = cx
        .kv
        .atomic()
        .mutate(key!["m"], MutationKind::Min(v8("ff104902")))
        .commit()
        .await;
    assert_err!(r, Error::TypeMismatch(m) if m == "Failed to perform 'min' mutation on a non-U64 operand");
    let r = cx
        .kv
        .atomic()
        .mutate(key!["m"], MutationKind::Max(b("x")))
        .commit()
        .await;
    assert_err!(r, Error::TypeMismatch(m) if m == "Failed to perform 'max' mutation on a non-U64 operand");
    ensure!(value(&cx, "m").await?.is_none());
    Ok(())
}

async fn v8_number_sum(cx: Cx) -> anyhow::Result<()> {
    // 1 (int32) on an absent key is stored as the double 1.0, version 15.
    cx.kv
        .atomic()
        .mutate(key!["f"], v8_sum(v8("ff104902")))
        .commit()
        .await?;
    ensure!(value(&cx, "f").await? == Some(v8("ff0f4e000000000000f03f")));
    // + 0.5 = 1.5
    cx.kv
        .atomic()
        .mutate(key!["f"], v8_sum(v8("ff104e000000000000e03f")))
        .commit()
        .await?;
    ensure!(value(&cx, "f").await? == Some(v8("ff0f4e000000000000f83f")));
    Ok(())
}

async fn v8_bigint_sum(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["i"], v8("ff105a100100000000000000")).await?; // 1n
    cx.kv
        .atomic()
        .mutate(key!["i"], v8_sum(v8("ff105a110500000000000000")))
        .commit()
        .await?; // -5n
    ensure!(
        value(&cx, "i").await? == Some(v8("ff0f5a0304")),
        "1n + -5n = -4n"
    );
    Ok(())
}

async fn v8_bigint_on_kvu64_is_a_kvu64_sum(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["u"], KvValue::U64(1)).await?;
    cx.kv
        .atomic()
        .mutate(key!["u"], v8_sum(v8("ff105a100200000000000000")))
        .commit()
        .await?;
    ensure!(value(&cx, "u").await? == Some(KvValue::U64(3)));
    let r = cx
        .kv
        .atomic()
        .mutate(key!["u"], v8_sum(v8("ff105a110100000000000000")))
        .commit()
        .await;
    assert_err!(r, Error::TypeMismatch(m) if m == "Cannot sum KvU64 with BigInt");
    Ok(())
}

async fn v8_sum_of_mixed_types_fails(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["i"], v8("ff105a100100000000000000")).await?;
    let r = cx
        .kv
        .atomic()
        .mutate(key!["i"], v8_sum(v8("ff104902")))
        .commit()
        .await;
    assert_err!(r, Error::TypeMismatch(m) if m == "Cannot sum BigInt with Number");
    let r = cx
        .kv
        .atomic()
        .mutate(key!["x"], v8_sum(v8("ff10220568656c6c6f")))
        .commit()
        .await;
    assert_err!(r, Error::TypeMismatch(m) if m == "Some of the parameters are not valid V8 values");
    cx.kv.set(key!["s"], v8("ff10220568656c6c6f")).await?;
    let r = cx
        .kv
        .atomic()
        .mutate(key!["s"], v8_sum(v8("ff104902")))
        .commit()
        .await;
    assert_err!(r, Error::TypeMismatch(m) if m == "unsupported value type");
    Ok(())
}

/// Sums V8 `operand` into `start` with bounds: without `clamp` the commit
/// fails as out of range, with it the key ends up holding `clamped`.
async fn bounded_v8_sum(
    cx: &Cx,
    start: &str,
    operand: &str,
    min: Option<&str>,
    max: Option<&str>,
    clamped: &str,
) -> anyhow::Result<()> {
    cx.kv.set(key!["n"], v8(start)).await?;
    let sum = |clamp| MutationKind::Sum {
        value: v8(operand),
        min: min.map(unhex),
        max: max.map(unhex),
        clamp,
    };
    let r = cx.kv.atomic().mutate(key!["n"], sum(false)).commit().await;
    assert_err!(r, Error::TypeMismatch(m) if m == "The result of a Sum operation would exceed its range limit");
    cx.kv.atomic().mutate(key!["n"], sum(true)).commit().await?;
    let got = value(cx, "n").await?;
    ensure!(
        got == Some(v8(clamped)),
        "clamped to {clamped}, got {got:?}"
    );
    Ok(())
}

async fn v8_sum_bounds_and_clamp(cx: Cx) -> anyhow::Result<()> {
    // 1 + 10 with a maximum of 5 (the stored result is a double).
    bounded_v8_sum(
        &cx,
        "ff104902",
        "ff104914",
        None,
        Some("ff10490a"),
        "ff0f4e0000000000001440",
    )
    .await
}

async fn v8_sum_clamps_to_the_minimum_then_the_maximum(cx: Cx) -> anyhow::Result<()> {
    // 5 + 0 with a minimum (10) above the maximum (3), as a client may send
    // them: raised to 10, then lowered to 3, in Deno's order.
    bounded_v8_sum(
        &cx,
        "ff10490a",
        "ff104900",
        Some("ff104914"),
        Some("ff104906"),
        "ff0f4e0000000000000840",
    )
    .await
}

async fn sum_clears_expiry(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .set_with(
            key!["n"],
            KvValue::U64(1),
            SetOptions::default().with_expire_in(Duration::from_millis(500)),
        )
        .await?;
    cx.kv.atomic().sum(key!["n"], 1).commit().await?;
    cx.advance(1500).await;
    ensure!(
        value(&cx, "n").await? == Some(KvValue::U64(2)),
        "sum writes without expiry, like Deno"
    );
    Ok(())
}
