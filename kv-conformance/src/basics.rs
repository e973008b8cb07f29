//! Get, set, delete, values and versionstamps.

use anyhow::ensure;
use kv_core::{Consistency, Key, KvValue, Versionstamp, key};

use crate::Cx;
use crate::util::{b, v8};

declare_cases!("basics":
    set_then_get_returns_value_and_versionstamp,
    get_of_missing_key_is_none,
    delete_removes_key,
    delete_of_missing_key_commits,
    overwrite_replaces_value_and_versionstamp,
    versionstamps_strictly_increase,
    first_versionstamp_is_above_zero,
    every_value_encoding_round_trips,
    v8_bytes_are_kept_byte_for_byte,
    null_and_undefined_values_are_present,
    empty_values_are_present,
    get_many_returns_in_order,
    get_many_with_duplicates,
    eventual_reads_see_committed_data,
    versionstamp_text_form,
);

async fn set_then_get_returns_value_and_versionstamp(cx: Cx) -> anyhow::Result<()> {
    let stamp = cx.kv.set(key!["a"], b("1")).await?;
    let e = cx
        .kv
        .get(key!["a"])
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(e.key == key!["a"]);
    ensure!(e.value == b("1"));
    ensure!(e.versionstamp == stamp);
    Ok(())
}

async fn get_of_missing_key_is_none(cx: Cx) -> anyhow::Result<()> {
    ensure!(cx.kv.get(key!["nope"]).await?.is_none());
    ensure!(
        cx.kv.get(Key::empty()).await?.is_none(),
        "get([]) is simply absent"
    );
    Ok(())
}

async fn delete_removes_key(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["a"], b("1")).await?;
    cx.kv.delete(key!["a"]).await?;
    ensure!(cx.kv.get(key!["a"]).await?.is_none());
    Ok(())
}

async fn delete_of_missing_key_commits(cx: Cx) -> anyhow::Result<()> {
    let before = cx.kv.set(key!["marker"], b("x")).await?;
    let outcome = cx.kv.atomic().delete(key!["never"]).commit().await?;
    let stamp = outcome
        .versionstamp()
        .ok_or_else(|| anyhow::anyhow!("not committed"))?;
    ensure!(
        stamp > before,
        "deleting an absent key still consumes a versionstamp"
    );
    Ok(())
}

async fn overwrite_replaces_value_and_versionstamp(cx: Cx) -> anyhow::Result<()> {
    let s1 = cx.kv.set(key!["a"], b("1")).await?;
    let s2 = cx.kv.set(key!["a"], KvValue::U64(2)).await?;
    ensure!(s2 > s1);
    let e = cx
        .kv
        .get(key!["a"])
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(e.value == KvValue::U64(2) && e.versionstamp == s2);
    Ok(())
}

async fn versionstamps_strictly_increase(cx: Cx) -> anyhow::Result<()> {
    let mut last = Versionstamp::ZERO;
    for i in 0..20u64 {
        let s = cx.kv.set(key!["n", i], KvValue::U64(i)).await?;
        ensure!(s > last, "{s} after {last}");
        last = s;
    }
    Ok(())
}

async fn first_versionstamp_is_above_zero(cx: Cx) -> anyhow::Result<()> {
    let s = cx.kv.set(key!["first"], b("x")).await?;
    ensure!(s.to_string() > "00000000000000000000".to_string());
    Ok(())
}

async fn every_value_encoding_round_trips(cx: Cx) -> anyhow::Result<()> {
    let values = [
        KvValue::Bytes(vec![]),
        KvValue::Bytes((0..=255).collect()),
        KvValue::U64(0),
        KvValue::U64(u64::MAX),
        v8("ff104902"),
        v8("ff10220568656c6c6f"),
        v8("ff0f4e000000000000f83f"),
    ];
    for (i, v) in values.iter().enumerate() {
        cx.kv.set(key!["v", i], v.clone()).await?;
    }
    for (i, v) in values.iter().enumerate() {
        let e = cx
            .kv
            .get(key!["v", i])
            .await?
            .ok_or_else(|| anyhow::anyhow!("missing {i}"))?;
        ensure!(&e.value == v, "value {i}: {:?} != {v:?}", e.value);
    }
    Ok(())
}

async fn v8_bytes_are_kept_byte_for_byte(cx: Cx) -> anyhow::Result<()> {
    // An object {a: [1, "x"]} as Deno 2.9 serialises it; the backend must not
    // reinterpret it.
    let blob = v8("ff106f220161410249020122017824000201");
    cx.kv.set(key!["obj"], blob.clone()).await?;
    let e = cx
        .kv
        .get(key!["obj"])
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(e.value == blob);
    Ok(())
}

async fn null_and_undefined_values_are_present(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["null"], v8("ff1030")).await?;
    cx.kv.set(key!["undefined"], v8("ff105f")).await?;
    for k in ["null", "undefined"] {
        let e = cx.kv.get(key![k]).await?;
        ensure!(
            e.is_some(),
            "presence is decided by the versionstamp, not the value ({k})"
        );
    }
    Ok(())
}

async fn empty_values_are_present(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["empty"], KvValue::Bytes(vec![])).await?;
    let e = cx
        .kv
        .get(key!["empty"])
        .await?
        .ok_or_else(|| anyhow::anyhow!("missing"))?;
    ensure!(e.value == KvValue::Bytes(vec![]));
    Ok(())
}

async fn get_many_returns_in_order(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["a"], b("A")).await?;
    cx.kv.set(key!["c"], b("C")).await?;
    let got = cx.kv.get_many(&[key!["c"], key!["b"], key!["a"]]).await?;
    ensure!(got.len() == 3);
    ensure!(got[0].as_ref().map(|e| &e.value) == Some(&b("C")));
    ensure!(got[1].is_none());
    ensure!(got[2].as_ref().map(|e| &e.value) == Some(&b("A")));
    Ok(())
}

async fn get_many_with_duplicates(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["a"], b("A")).await?;
    let got = cx.kv.get_many(&[key!["a"], key!["a"]]).await?;
    ensure!(
        got.iter()
            .all(|e| e.as_ref().map(|e| &e.value) == Some(&b("A")))
    );
    Ok(())
}

async fn eventual_reads_see_committed_data(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["a"], b("A")).await?;
    // An eventual read may lag (etcd answers it from any member) but shows
    // only committed data and catches up; embedded and single-server
    // backends answer from the primary and see the write at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let e = cx.kv.get_with(key!["a"], Consistency::Eventual).await?;
        match e.map(|e| e.value) {
            Some(value) => {
                ensure!(value == b("A"), "an eventual read showed {value:?}");
                return Ok(());
            }
            None => {
                ensure!(
                    std::time::Instant::now() < deadline,
                    "an eventual read still misses the write after 5 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn versionstamp_text_form(cx: Cx) -> anyhow::Result<()> {
    let s = cx.kv.set(key!["a"], b("A")).await?;
    let text = s.to_string();
    ensure!(
        text.len() == 20
            && text
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    ensure!(text.parse::<Versionstamp>()? == s);
    ensure!(
        text.to_uppercase().parse::<Versionstamp>()? == s,
        "upper case is accepted"
    );
    for bad in ["", &"xx".repeat(10), &"aa".repeat(11)] {
        ensure!(
            bad.parse::<Versionstamp>().is_err(),
            "{bad:?} must not parse"
        );
    }
    Ok(())
}
