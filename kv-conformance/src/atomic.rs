//! Atomic commits: checks, mutation order, versionstamped keys, atomicity.

use anyhow::ensure;
use kv_core::{BigInt, CommitOutcome, Error, Key, KeyPart, KvValue, SetOptions, key};

use crate::Cx;
use crate::util::b;

declare_cases!("atomic":
    check_absent_passes_for_missing_key,
    check_absent_fails_for_existing_key,
    check_versionstamp_passes_when_unchanged,
    check_fails_when_key_changed,
    failed_check_writes_nothing,
    failed_check_consumes_no_versionstamp,
    one_failing_check_among_many_fails_commit,
    all_keys_of_a_commit_share_a_versionstamp,
    set_then_delete_leaves_key_absent,
    delete_then_set_leaves_key_present,
    sums_in_one_commit_accumulate,
    empty_commit_gets_a_versionstamp,
    failed_mutation_rolls_back_whole_commit,
    versionstamped_key_gets_commit_stamp,
    versionstamped_keys_sort_in_commit_order,
    versionstamped_key_with_empty_prefix_is_rejected,
    compare_and_swap_loop,
    committing_again_sends_the_same_write,
    a_key_error_fails_every_commit_of_the_operation,
    a_type_mismatch_fails_every_commit_of_the_operation,
);

fn stamp(o: CommitOutcome) -> anyhow::Result<kv_core::Versionstamp> {
    o.versionstamp()
        .ok_or_else(|| anyhow::anyhow!("commit reported a failed check"))
}

async fn check_absent_passes_for_missing_key(cx: Cx) -> anyhow::Result<()> {
    let o = cx
        .kv
        .atomic()
        .check(key!["a"], None)
        .set(key!["a"], b("1"))
        .commit()
        .await?;
    ensure!(o.is_ok());
    Ok(())
}

async fn check_absent_fails_for_existing_key(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["a"], b("1")).await?;
    let o = cx
        .kv
        .atomic()
        .check(key!["a"], None)
        .set(key!["a"], b("2"))
        .commit()
        .await?;
    ensure!(o == CommitOutcome::CheckFailed);
    Ok(())
}

async fn check_versionstamp_passes_when_unchanged(cx: Cx) -> anyhow::Result<()> {
    let s = cx.kv.set(key!["a"], b("1")).await?;
    let o = cx
        .kv
        .atomic()
        .check(key!["a"], Some(s))
        .set(key!["a"], b("2"))
        .commit()
        .await?;
    ensure!(o.is_ok());
    ensure!(cx.kv.get(key!["a"]).await?.map(|e| e.value) == Some(b("2")));
    Ok(())
}

async fn check_fails_when_key_changed(cx: Cx) -> anyhow::Result<()> {
    let s = cx.kv.set(key!["a"], b("1")).await?;
    cx.kv.set(key!["a"], b("other")).await?;
    let o = cx
        .kv
        .atomic()
        .check(key!["a"], Some(s))
        .set(key!["a"], b("2"))
        .commit()
        .await?;
    ensure!(o == CommitOutcome::CheckFailed);
    cx.kv.delete(key!["a"]).await?;
    let o = cx.kv.atomic().check(key!["a"], Some(s)).commit().await?;
    ensure!(
        o == CommitOutcome::CheckFailed,
        "a deleted key fails a versionstamp check"
    );
    Ok(())
}

async fn failed_check_writes_nothing(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["guard"], b("x")).await?;
    let o = cx
        .kv
        .atomic()
        .check(key!["guard"], None)
        .set(key!["a"], b("1"))
        .delete(key!["guard"])
        .sum(key!["n"], 1)
        .commit()
        .await?;
    ensure!(o == CommitOutcome::CheckFailed);
    ensure!(cx.kv.get(key!["a"]).await?.is_none());
    ensure!(cx.kv.get(key!["guard"]).await?.is_some());
    ensure!(cx.kv.get(key!["n"]).await?.is_none());
    Ok(())
}

async fn failed_check_consumes_no_versionstamp(cx: Cx) -> anyhow::Result<()> {
    let s1 = cx.kv.set(key!["a"], b("1")).await?;
    for _ in 0..3 {
        let o = cx.kv.atomic().check(key!["a"], None).commit().await?;
        ensure!(o == CommitOutcome::CheckFailed);
    }
    let s2 = cx.kv.set(key!["b"], b("1")).await?;
    ensure!(s2 > s1);
    Ok(())
}

async fn one_failing_check_among_many_fails_commit(cx: Cx) -> anyhow::Result<()> {
    let s1 = cx.kv.set(key!["a"], b("1")).await?;
    let s2 = cx.kv.set(key!["b"], b("1")).await?;
    let o = cx
        .kv
        .atomic()
        .check(key!["a"], Some(s1))
        .check(key!["b"], Some(s1))
        .check(key!["c"], None)
        .set(key!["d"], b("1"))
        .commit()
        .await?;
    ensure!(o == CommitOutcome::CheckFailed);
    let o = cx
        .kv
        .atomic()
        .check(key!["a"], Some(s1))
        .check(key!["b"], Some(s2))
        .check(key!["c"], None)
        .set(key!["d"], b("1"))
        .commit()
        .await?;
    ensure!(o.is_ok());
    Ok(())
}

async fn all_keys_of_a_commit_share_a_versionstamp(cx: Cx) -> anyhow::Result<()> {
    let s = stamp(
        cx.kv
            .atomic()
            .set(key!["a"], b("1"))
            .set(key!["b"], b("2"))
            .sum(key!["c"], 3)
            .commit()
            .await?,
    )?;
    let got = cx.kv.get_many(&[key!["a"], key!["b"], key!["c"]]).await?;
    for e in got {
        ensure!(e.map(|e| e.versionstamp) == Some(s));
    }
    Ok(())
}

async fn set_then_delete_leaves_key_absent(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .atomic()
        .set(key!["a"], b("1"))
        .delete(key!["a"])
        .commit()
        .await?;
    ensure!(cx.kv.get(key!["a"]).await?.is_none());
    Ok(())
}

async fn delete_then_set_leaves_key_present(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["a"], b("0")).await?;
    cx.kv
        .atomic()
        .delete(key!["a"])
        .set(key!["a"], b("1"))
        .commit()
        .await?;
    ensure!(cx.kv.get(key!["a"]).await?.map(|e| e.value) == Some(b("1")));
    Ok(())
}

async fn sums_in_one_commit_accumulate(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .atomic()
        .sum(key!["n"], 1)
        .sum(key!["n"], 2)
        .sum(key!["n"], 3)
        .commit()
        .await?;
    ensure!(cx.kv.get(key!["n"]).await?.map(|e| e.value) == Some(KvValue::U64(6)));
    Ok(())
}

async fn empty_commit_gets_a_versionstamp(cx: Cx) -> anyhow::Result<()> {
    let s1 = cx.kv.set(key!["a"], b("1")).await?;
    let s2 = stamp(cx.kv.atomic().commit().await?)?;
    ensure!(s2 > s1);
    Ok(())
}

async fn failed_mutation_rolls_back_whole_commit(cx: Cx) -> anyhow::Result<()> {
    // Deno keeps the mutations before a failing sum (semantics §6.7); we roll
    // the whole commit back.
    cx.kv.set(key!["str"], b("not a number")).await?;
    let before = cx.kv.set(key!["marker"], b("x")).await?;
    let result = cx
        .kv
        .atomic()
        .set(key!["a"], b("1"))
        .sum(key!["str"], 1)
        .set(key!["b"], b("2"))
        .commit()
        .await;
    assert_err!(
        result,
        Error::TypeMismatch(m) if m == "Failed to perform 'sum' mutation on a non-U64 value in the database"
    );
    ensure!(
        cx.kv.get(key!["a"]).await?.is_none(),
        "earlier mutation must not be applied"
    );
    ensure!(cx.kv.get(key!["b"]).await?.is_none());
    let after = cx.kv.set(key!["marker"], b("y")).await?;
    ensure!(after > before);
    Ok(())
}

async fn versionstamped_key_gets_commit_stamp(cx: Cx) -> anyhow::Result<()> {
    let s = stamp(
        cx.kv
            .atomic()
            .set_versionstamped(key!["log"], b("entry"), SetOptions::default())
            .commit()
            .await?,
    )?;
    let k = key!["log", s.to_string()];
    let e = cx
        .kv
        .get(k.clone())
        .await?
        .ok_or_else(|| anyhow::anyhow!("{k} missing"))?;
    ensure!(e.versionstamp == s && e.value == b("entry"));
    Ok(())
}

async fn versionstamped_keys_sort_in_commit_order(cx: Cx) -> anyhow::Result<()> {
    for i in 0..5u64 {
        cx.kv
            .atomic()
            .set_versionstamped(key!["log"], KvValue::U64(i), SetOptions::default())
            .commit()
            .await?;
    }
    let listed = cx
        .kv
        .list(kv_core::Selector::prefix(key!["log"]), Default::default())
        .collect_all()
        .await?;
    let values: Vec<_> = listed.into_iter().map(|e| e.value).collect();
    ensure!(values == (0..5).map(KvValue::U64).collect::<Vec<_>>());
    Ok(())
}

async fn versionstamped_key_with_empty_prefix_is_rejected(cx: Cx) -> anyhow::Result<()> {
    let r = cx
        .kv
        .atomic()
        .set_versionstamped(Key::empty(), b("x"), SetOptions::default())
        .commit()
        .await;
    assert_err!(r, Error::InvalidKey(m) if m == "key cannot be empty");
    Ok(())
}

async fn compare_and_swap_loop(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["balance", "a"], KvValue::U64(100)).await?;
    cx.kv.set(key!["balance", "b"], KvValue::U64(0)).await?;
    let a = cx
        .kv
        .get(key!["balance", "a"])
        .await?
        .ok_or_else(|| anyhow::anyhow!("a"))?;
    let bb = cx
        .kv
        .get(key!["balance", "b"])
        .await?
        .ok_or_else(|| anyhow::anyhow!("b"))?;
    let o = cx
        .kv
        .atomic()
        .check(key!["balance", "a"], Some(a.versionstamp))
        .check(key!["balance", "b"], Some(bb.versionstamp))
        .set(key!["balance", "a"], KvValue::U64(70))
        .set(key!["balance", "b"], KvValue::U64(30))
        .commit()
        .await?;
    ensure!(o.is_ok());
    // The same transfer with stale versionstamps must fail.
    let o = cx
        .kv
        .atomic()
        .check(key!["balance", "a"], Some(a.versionstamp))
        .set(key!["balance", "a"], KvValue::U64(0))
        .commit()
        .await?;
    ensure!(o == CommitOutcome::CheckFailed);
    Ok(())
}

/// A commit retried after an error resends the operation (Deno keeps an
/// operation's checks and mutations): the check is evaluated again and the
/// mutations apply again.
async fn committing_again_sends_the_same_write(cx: Cx) -> anyhow::Result<()> {
    let mut op = cx.kv.atomic();
    op.sum(key!["n"], 1);
    let first = stamp(op.commit().await?)?;
    let second = stamp(op.commit().await?)?;
    ensure!(second > first, "{second:?} after {first:?}");
    let n = cx.kv.get(key!["n"]).await?.map(|e| e.value);
    ensure!(
        n == Some(KvValue::U64(2)),
        "two commits of sum 1 left {n:?}"
    );

    let mut op = cx.kv.atomic();
    op.check(key!["a"], None).set(key!["a"], b("1"));
    ensure!(op.commit().await?.is_ok());
    let again = op.commit().await?;
    ensure!(
        again == CommitOutcome::CheckFailed,
        "the check was not evaluated again: {again:?}"
    );
    Ok(())
}

/// An operation that met a bad key while being built fails every time it
/// is committed; its valid mutations are never written on their own.
async fn a_key_error_fails_every_commit_of_the_operation(cx: Cx) -> anyhow::Result<()> {
    let huge = Key(vec![KeyPart::Int(BigInt::from(1) << (255usize * 8))]);
    let mut op = cx.kv.atomic();
    op.set(key!["r1"], b("1"))
        .set(huge, b("x"))
        .set(key!["r2"], b("2"));
    for attempt in 1..=2 {
        assert_err!(op.commit().await, Error::InvalidKey(m) if m.contains("255 bytes"));
        ensure!(
            cx.kv.get(key!["r1"]).await?.is_none() && cx.kv.get(key!["r2"]).await?.is_none(),
            "commit {attempt} wrote part of a failed operation"
        );
    }
    Ok(())
}

/// A commit rolled back by a failed `sum` fails the same way when sent
/// again, and still writes nothing.
async fn a_type_mismatch_fails_every_commit_of_the_operation(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["str"], b("not a number")).await?;
    let mut op = cx.kv.atomic();
    op.set(key!["a"], b("1")).sum(key!["str"], 1);
    for attempt in 1..=2 {
        assert_err!(op.commit().await, Error::TypeMismatch(_));
        ensure!(
            cx.kv.get(key!["a"]).await?.is_none(),
            "commit {attempt} wrote part of a rolled-back operation"
        );
    }
    Ok(())
}
