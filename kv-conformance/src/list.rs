//! `list`: selectors, order, limits, batches and cursors.

use anyhow::ensure;
use futures::StreamExt;
use kv_core::backend::{ReadRange, read_into};
use kv_core::{Consistency, Error, Key, KvValue, Limit, ListOptions, Selector, key};

use crate::Cx;
use crate::util::b;

declare_cases!("list":
    prefix_lists_children_in_order,
    prefix_excludes_the_prefix_key,
    prefix_matches_whole_parts_only,
    empty_prefix_lists_everything,
    prefix_with_start,
    prefix_with_end,
    start_equal_to_prefix_is_rejected,
    start_outside_prefix_is_rejected,
    end_outside_prefix_is_rejected,
    range_is_half_open,
    range_includes_nested_keys,
    range_reverse,
    range_with_limit,
    start_after_end_is_rejected,
    start_equal_to_end_is_empty,
    invalid_selectors_are_rejected,
    reverse_lists_descending,
    limit_stops_early,
    zero_limit_is_rejected,
    small_batches_return_everything,
    small_batches_with_limit_and_reverse,
    batch_size_over_1000_is_rejected,
    cursor_is_deno_format,
    cursor_resumes_forward_and_reverse,
    range_cursor_is_relative_to_common_prefix,
    cursor_from_deno_resumes,
    malformed_cursor_is_rejected,
    cursor_outside_range_is_rejected,
    empty_cursor_restarts,
    cursor_is_empty_after_exhaustion,
    cursor_after_the_limit_is_the_last_entry,
    a_batch_of_large_values_comes_back_whole,
    a_read_into_a_sink_sees_what_a_read_returns,
    list_hides_deleted_keys,
    list_returns_values_and_versionstamps,
    large_listing_spans_many_batches,
);

async fn seed(cx: &Cx) -> anyhow::Result<()> {
    let mut op = cx.kv.atomic();
    op.set(key!["a"], b("a"));
    for c in ["a", "b", "c", "d", "e"] {
        op.set(key!["a", c], b(c));
    }
    op.set(key!["a", "b", "x"], b("bx"));
    op.set(key!["b"], b("b"));
    op.set(key!["ab"], b("ab"));
    op.commit().await?;
    Ok(())
}

async fn keys(cx: &Cx, sel: Selector, opts: ListOptions) -> anyhow::Result<Vec<Key>> {
    Ok(cx
        .kv
        .list(sel, opts)
        .collect_all()
        .await?
        .into_iter()
        .map(|e| e.key)
        .collect())
}

fn ks(parts: &[&[&str]]) -> Vec<Key> {
    parts
        .iter()
        .map(|p| Key(p.iter().map(|s| (*s).into()).collect()))
        .collect()
}

async fn prefix_lists_children_in_order(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(&cx, Selector::prefix(key!["a"]), ListOptions::default()).await?;
    let want = ks(&[
        &["a", "a"],
        &["a", "b"],
        &["a", "b", "x"],
        &["a", "c"],
        &["a", "d"],
        &["a", "e"],
    ]);
    ensure!(got == want, "{got:?}");
    Ok(())
}

async fn prefix_excludes_the_prefix_key(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(&cx, Selector::prefix(key!["a"]), ListOptions::default()).await?;
    ensure!(!got.contains(&key!["a"]));
    Ok(())
}

async fn prefix_matches_whole_parts_only(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["users", "alice"], b("1")).await?;
    cx.kv.set(key!["users", "a"], b("2")).await?;
    let got = keys(
        &cx,
        Selector::prefix(key!["users", "a"]),
        ListOptions::default(),
    )
    .await?;
    ensure!(
        got.is_empty(),
        "[users, a] is not a prefix of [users, alice]: {got:?}"
    );
    Ok(())
}

async fn empty_prefix_lists_everything(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(&cx, Selector::prefix(Key::empty()), ListOptions::default()).await?;
    ensure!(got.len() == 9, "{got:?}");
    ensure!(got.first() == Some(&key!["a"]) && got.last() == Some(&key!["b"]));
    Ok(())
}

async fn prefix_with_start(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::prefix(key!["a"]).with_start(key!["a", "c"]),
        ListOptions::default(),
    )
    .await?;
    ensure!(
        got == ks(&[&["a", "c"], &["a", "d"], &["a", "e"]]),
        "{got:?}"
    );
    Ok(())
}

async fn prefix_with_end(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::prefix(key!["a"]).with_end(key!["a", "c"]),
        ListOptions::default(),
    )
    .await?;
    ensure!(
        got == ks(&[&["a", "a"], &["a", "b"], &["a", "b", "x"]]),
        "{got:?}"
    );
    Ok(())
}

async fn start_equal_to_prefix_is_rejected(cx: Cx) -> anyhow::Result<()> {
    let r = keys(
        &cx,
        Selector::prefix(key!["a"]).with_start(key!["a"]),
        ListOptions::default(),
    )
    .await;
    ensure!(
        r.is_err_and(|e| e.to_string() == "Start key is not in the keyspace defined by prefix")
    );
    Ok(())
}

async fn start_outside_prefix_is_rejected(cx: Cx) -> anyhow::Result<()> {
    let r = cx.kv.list(
        Selector::prefix(key!["a"]).with_start(key!["b", "x"]),
        ListOptions::default(),
    );
    assert_err!(
        r.collect_all().await,
        Error::InvalidSelector("Start key is not in the keyspace defined by prefix")
    );
    Ok(())
}

async fn end_outside_prefix_is_rejected(cx: Cx) -> anyhow::Result<()> {
    let r = cx.kv.list(
        Selector::prefix(key!["a"]).with_end(key!["b"]),
        ListOptions::default(),
    );
    assert_err!(
        r.collect_all().await,
        Error::InvalidSelector("End key is not in the keyspace defined by prefix")
    );
    let r = cx.kv.list(
        Selector::prefix(key!["a"]).with_end(key!["a"]),
        ListOptions::default(),
    );
    assert_err!(r.collect_all().await, Error::InvalidSelector(_));
    Ok(())
}

async fn range_is_half_open(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::range(key!["a", "b"], key!["a", "d"]),
        ListOptions::default(),
    )
    .await?;
    ensure!(
        got == ks(&[&["a", "b"], &["a", "b", "x"], &["a", "c"]]),
        "{got:?}"
    );
    Ok(())
}

async fn range_includes_nested_keys(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::range(key!["a"], key!["a", "d"]),
        ListOptions::default(),
    )
    .await?;
    ensure!(
        got == ks(&[
            &["a"],
            &["a", "a"],
            &["a", "b"],
            &["a", "b", "x"],
            &["a", "c"]
        ]),
        "{got:?}"
    );
    Ok(())
}

async fn range_reverse(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::range(key!["a", "b"], key!["a", "d"]),
        ListOptions::default().with_reverse(true),
    )
    .await?;
    ensure!(
        got == ks(&[&["a", "c"], &["a", "b", "x"], &["a", "b"]]),
        "{got:?}"
    );
    Ok(())
}

async fn range_with_limit(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::range(key!["a", "a"], key!["a", "z"]),
        ListOptions::default().with_limit(2),
    )
    .await?;
    ensure!(got == ks(&[&["a", "a"], &["a", "b"]]), "{got:?}");
    Ok(())
}

async fn start_after_end_is_rejected(cx: Cx) -> anyhow::Result<()> {
    let r = cx.kv.list(
        Selector::range(key!["b"], key!["a"]),
        ListOptions::default(),
    );
    assert_err!(
        r.collect_all().await,
        Error::InvalidSelector("Start key is greater than end key")
    );
    Ok(())
}

async fn start_equal_to_end_is_empty(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    ensure!(
        keys(
            &cx,
            Selector::range(key!["a"], key!["a"]),
            ListOptions::default()
        )
        .await?
        .is_empty()
    );
    Ok(())
}

async fn invalid_selectors_are_rejected(cx: Cx) -> anyhow::Result<()> {
    let all = Selector {
        prefix: Some(key!["a"]),
        start: Some(key!["a", "b"]),
        end: Some(key!["a", "c"]),
    };
    assert_err!(
        cx.kv.list(all, ListOptions::default()).collect_all().await,
        Error::InvalidSelector(
            "Selector can not specify both 'start' and 'end' key when specifying 'prefix'"
        )
    );
    for sel in [
        Selector {
            prefix: None,
            start: Some(key!["a"]),
            end: None,
        },
        Selector {
            prefix: None,
            start: None,
            end: Some(key!["a"]),
        },
        Selector::default(),
    ] {
        assert_err!(
            cx.kv.list(sel, ListOptions::default()).collect_all().await,
            Error::InvalidSelector(
                "Selector must specify either 'prefix' or both 'start' and 'end' key"
            )
        );
    }
    Ok(())
}

async fn reverse_lists_descending(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let mut fwd = keys(&cx, Selector::prefix(key!["a"]), ListOptions::default()).await?;
    let rev = keys(
        &cx,
        Selector::prefix(key!["a"]),
        ListOptions::default().with_reverse(true),
    )
    .await?;
    fwd.reverse();
    ensure!(fwd == rev);
    Ok(())
}

async fn limit_stops_early(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::prefix(key!["a"]),
        ListOptions::default().with_limit(3),
    )
    .await?;
    ensure!(got == ks(&[&["a", "a"], &["a", "b"], &["a", "b", "x"]]));
    let got = keys(
        &cx,
        Selector::prefix(key!["a"]),
        ListOptions::default().with_limit(2).with_reverse(true),
    )
    .await?;
    ensure!(got == ks(&[&["a", "e"], &["a", "d"]]));
    Ok(())
}

async fn zero_limit_is_rejected(cx: Cx) -> anyhow::Result<()> {
    let r = cx.kv.list(
        Selector::prefix(key!["a"]),
        ListOptions::default().with_limit(0),
    );
    assert_err!(r.collect_all().await, Error::InvalidArgument(_));
    let r = cx.kv.list(
        Selector::prefix(key!["a"]),
        ListOptions::default().with_batch_size(0),
    );
    assert_err!(r.collect_all().await, Error::InvalidArgument(_));
    Ok(())
}

async fn small_batches_return_everything(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let all = keys(&cx, Selector::prefix(key!["a"]), ListOptions::default()).await?;
    for batch in [1, 2, 3, 5, 6, 7] {
        let got = keys(
            &cx,
            Selector::prefix(key!["a"]),
            ListOptions::default().with_batch_size(batch),
        )
        .await?;
        ensure!(got == all, "batch size {batch}: {got:?}");
    }
    Ok(())
}

async fn small_batches_with_limit_and_reverse(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::prefix(key!["a"]),
        ListOptions::default()
            .with_batch_size(2)
            .with_limit(5)
            .with_reverse(true),
    )
    .await?;
    ensure!(
        got == ks(&[
            &["a", "e"],
            &["a", "d"],
            &["a", "c"],
            &["a", "b", "x"],
            &["a", "b"]
        ]),
        "{got:?}"
    );
    Ok(())
}

async fn batch_size_over_1000_is_rejected(cx: Cx) -> anyhow::Result<()> {
    let ok = cx.kv.list(
        Selector::prefix(key!["a"]),
        ListOptions::default().with_batch_size(1000),
    );
    ok.collect_all().await?;
    let r = cx.kv.list(
        Selector::prefix(key!["a"]),
        ListOptions::default().with_batch_size(1001),
    );
    assert_err!(
        r.collect_all().await,
        Error::LimitExceeded {
            limit: Limit::Entries,
            max: 1000,
            ..
        }
    );
    // A limit above 1000 is fine: the derived batch size is capped at 500.
    cx.kv
        .list(
            Selector::prefix(key!["a"]),
            ListOptions::default().with_limit(1001),
        )
        .collect_all()
        .await?;
    Ok(())
}

async fn cursor_is_deno_format(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let mut it = cx.kv.list(
        Selector::prefix(key!["a"]),
        ListOptions::default().with_limit(2),
    );
    ensure!(it.cursor().is_none(), "no cursor before the first entry");
    it.next().await.transpose()?;
    it.next().await.transpose()?;
    ensure!(
        it.cursor() == Some("AmIA"),
        "after [a, b]: {:?}",
        it.cursor()
    );
    let mut it = cx.kv.list(
        Selector::prefix(key!["a"]),
        ListOptions::default().with_limit(2).with_reverse(true),
    );
    it.next().await.transpose()?;
    it.next().await.transpose()?;
    ensure!(
        it.cursor() == Some("AmQA"),
        "after [a, d] in reverse: {:?}",
        it.cursor()
    );
    Ok(())
}

async fn cursor_resumes_forward_and_reverse(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let got = keys(
        &cx,
        Selector::prefix(key!["a"]),
        ListOptions::default().with_cursor("AmIA"),
    )
    .await?;
    ensure!(
        got == ks(&[&["a", "b", "x"], &["a", "c"], &["a", "d"], &["a", "e"]]),
        "{got:?}"
    );
    let got = keys(
        &cx,
        Selector::prefix(key!["a"]),
        ListOptions::default()
            .with_cursor("AmQA")
            .with_reverse(true),
    )
    .await?;
    ensure!(
        got == ks(&[&["a", "c"], &["a", "b", "x"], &["a", "b"], &["a", "a"]]),
        "{got:?}"
    );
    Ok(())
}

async fn range_cursor_is_relative_to_common_prefix(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["a", "a"], b("1")).await?;
    cx.kv.set(key!["b"], b("2")).await?;
    let mut it = cx.kv.list(
        Selector::range(key!["a"], key!["c"]),
        ListOptions::default(),
    );
    let first = it
        .next()
        .await
        .transpose()?
        .ok_or_else(|| anyhow::anyhow!("empty"))?;
    ensure!(first.key == key!["a", "a"]);
    ensure!(it.cursor() == Some("YQACYQA="), "{:?}", it.cursor());
    let rest = keys(
        &cx,
        Selector::range(key!["a"], key!["c"]),
        ListOptions::default().with_cursor("YQACYQA="),
    )
    .await?;
    ensure!(rest == vec![key!["b"]]);
    Ok(())
}

async fn cursor_from_deno_resumes(cx: Cx) -> anyhow::Result<()> {
    for k in ["alice", "bob"] {
        cx.kv.set(key!["users", k], b(k)).await?;
    }
    // Cursors produced by Deno 2.9.6 for these positions.
    let got = keys(
        &cx,
        Selector::prefix(key!["users"]),
        ListOptions::default().with_cursor("AmFsaWNlAA=="),
    )
    .await?;
    ensure!(got == vec![key!["users", "bob"]]);
    Ok(())
}

async fn malformed_cursor_is_rejected(cx: Cx) -> anyhow::Result<()> {
    for bad in ["AmI", "!!!!", "AmIA="] {
        let r = cx.kv.list(
            Selector::prefix(key!["a"]),
            ListOptions::default().with_cursor(bad),
        );
        assert_err!(
            r.collect_all().await,
            Error::InvalidCursor("invalid cursor")
        );
    }
    Ok(())
}

async fn cursor_outside_range_is_rejected(cx: Cx) -> anyhow::Result<()> {
    // Range [a, b] → [a, d]: a cursor at ["a", "a"] lies before the start.
    let sel = || Selector::range(key!["a", "b"], key!["a", "d"]);
    let bounds = sel().bounds()?;
    let before = bounds.cursor_after(&key!["a", "a"].encode()?)?;
    let r = cx
        .kv
        .list(sel(), ListOptions::default().with_cursor(before.clone()));
    assert_err!(
        r.collect_all().await,
        Error::InvalidCursor("cursor out of bounds")
    );
    let after = bounds.cursor_after(&key!["a", "z"].encode()?)?;
    let r = cx.kv.list(
        sel(),
        ListOptions::default().with_cursor(after).with_reverse(true),
    );
    assert_err!(
        r.collect_all().await,
        Error::InvalidCursor("cursor out of bounds")
    );
    Ok(())
}

async fn empty_cursor_restarts(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let all = keys(&cx, Selector::prefix(key!["a"]), ListOptions::default()).await?;
    let got = keys(
        &cx,
        Selector::prefix(key!["a"]),
        ListOptions::default().with_cursor(""),
    )
    .await?;
    ensure!(
        got == all,
        "an empty cursor means no cursor (Deno quirk kept)"
    );
    Ok(())
}

async fn cursor_is_empty_after_exhaustion(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let mut it = cx
        .kv
        .list(Selector::prefix(key!["a"]), ListOptions::default());
    while let Some(e) = it.next().await {
        e?;
    }
    ensure!(it.cursor() == Some(""), "{:?}", it.cursor());
    Ok(())
}

/// A listing that stops at its `limit` is a page, not the end: its cursor
/// is the last entry's (Deno's), so paging by limit reaches every key.
async fn cursor_after_the_limit_is_the_last_entry(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut options = ListOptions::default().with_limit(2);
        if !cursor.is_empty() {
            options = options.with_cursor(cursor.clone());
        }
        let mut it = cx.kv.list(Selector::prefix(key!["a"]), options);
        let mut page = Vec::new();
        while let Some(e) = it.next().await {
            page.push(e?.key);
        }
        cursor = it.cursor().unwrap_or_default().to_owned();
        if pages.is_empty() {
            ensure!(cursor == "AmIA", "after the first page of 2: {cursor:?}");
        }
        let last = page.is_empty();
        pages.push(page);
        ensure!(pages.len() <= 5, "paging does not end: {pages:?}");
        if last || cursor.is_empty() {
            break;
        }
    }
    let got: Vec<Key> = pages.concat();
    let want = keys(&cx, Selector::prefix(key!["a"]), ListOptions::default()).await?;
    ensure!(got == want, "pages {pages:?} against {want:?}");
    Ok(())
}

/// A batch of 60 KB values: more than a backend copies on the caller's
/// thread, so the embedded backends stop such a read and do it again on a
/// thread of their own; the listing and a `getMany` must still be whole.
async fn a_batch_of_large_values_comes_back_whole(cx: Cx) -> anyhow::Result<()> {
    let value = |i: u64| KvValue::Bytes(vec![i as u8; 60_000]);
    for chunk in 0..3u64 {
        let mut op = cx.kv.atomic();
        for i in chunk * 10..chunk * 10 + 10 {
            op.set(key!["big", i], value(i));
        }
        op.commit().await?;
    }
    for reverse in [false, true] {
        let got = cx
            .kv
            .list(
                Selector::prefix(key!["big"]),
                ListOptions::default().with_reverse(reverse),
            )
            .collect_all()
            .await?;
        ensure!(got.len() == 30, "{} of 30 entries", got.len());
        for (n, e) in got.iter().enumerate() {
            let i = if reverse { 29 - n as u64 } else { n as u64 };
            ensure!(e.key == key!["big", i] && e.value == value(i), "entry {n}");
        }
    }
    let keys: Vec<Key> = (0..10u64).map(|i| key!["big", i]).collect();
    let many = cx.kv.get_many(&keys).await?;
    ensure!(
        many.iter()
            .enumerate()
            .all(|(i, e)| e.as_ref().is_some_and(|e| e.value == value(i as u64))),
        "getMany of 10 large values"
    );
    Ok(())
}

/// `Backend::snapshot_read_into` (how `kv serve` reads, straight into its
/// response) hands over exactly what `snapshot_read` returns: every range
/// of a read in order, small reads and one too large for the caller's
/// thread, values of every encoding.
async fn a_read_into_a_sink_sees_what_a_read_returns(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    let mut op = cx.kv.atomic();
    op.set(key!["n", 1], KvValue::U64(7));
    op.set(key!["n", 2], KvValue::V8(vec![0xff, 0x0f, 0x54]));
    for i in 0..12u64 {
        op.set(key!["wide", i], KvValue::Bytes(vec![i as u8; 60_000]));
    }
    op.commit().await?;
    let range = |sel: Selector, limit: u32, reverse: bool| -> anyhow::Result<ReadRange> {
        let bounds = sel.bounds()?;
        Ok(ReadRange {
            start: bounds.start,
            end: bounds.end,
            limit,
            reverse,
        })
    };
    let a_b = key!["a", "b"].encode()?;
    let mut after_a_b = a_b.clone();
    after_a_b.push(0);
    let reads = vec![
        vec![range(Selector::prefix(key!["a"]), 100, false)?],
        vec![
            range(Selector::prefix(key!["a"]), 3, true)?,
            ReadRange {
                start: a_b,
                end: after_a_b,
                limit: 1,
                reverse: false,
            },
            range(Selector::prefix(key!["n"]), 10, false)?,
            range(Selector::prefix(key!["none"]), 10, false)?,
        ],
        vec![range(Selector::prefix(key!["wide"]), 100, false)?],
        vec![range(Selector::prefix(key!["wide"]), 1000, true)?],
    ];
    let entry = |k: Key, v: KvValue| (k, v);
    let a = |c: &str| entry(key!["a", c], b(c));
    let wide = |i: u64| entry(key!["wide", i], KvValue::Bytes(vec![i as u8; 60_000]));
    let expected = vec![
        vec![vec![
            a("a"),
            a("b"),
            entry(key!["a", "b", "x"], b("bx")),
            a("c"),
            a("d"),
            a("e"),
        ]],
        vec![
            vec![a("e"), a("d"), a("c")],
            vec![a("b")],
            vec![
                entry(key!["n", 1], KvValue::U64(7)),
                entry(key!["n", 2], KvValue::V8(vec![0xff, 0x0f, 0x54])),
            ],
            vec![],
        ],
        vec![(0..12).map(wide).collect()],
        vec![(0..12).rev().map(wide).collect()],
    ];
    let backend = cx.kv.backend();
    for (ranges, expected) in reads.into_iter().zip(expected) {
        let read = backend
            .snapshot_read(ranges.clone(), Consistency::Strong)
            .await?;
        let sunk = read_into(&**backend, ranges, Consistency::Strong, Vec::new()).await?;
        for got in [&read, &sunk] {
            let got: Vec<Vec<(Key, KvValue)>> = got
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|e| Ok((Key::decode(&e.key)?, e.value.clone())))
                        .collect::<Result<_, Error>>()
                })
                .collect::<Result<_, _>>()?;
            ensure!(
                got == expected,
                "{:?}",
                got.iter().map(Vec::len).collect::<Vec<_>>()
            );
        }
        ensure!(
            sunk == read,
            "the sink got other versionstamps than the read"
        );
    }
    Ok(())
}

async fn list_hides_deleted_keys(cx: Cx) -> anyhow::Result<()> {
    seed(&cx).await?;
    cx.kv.delete(key!["a", "c"]).await?;
    let got = keys(&cx, Selector::prefix(key!["a"]), ListOptions::default()).await?;
    ensure!(!got.contains(&key!["a", "c"]) && got.len() == 5);
    Ok(())
}

async fn list_returns_values_and_versionstamps(cx: Cx) -> anyhow::Result<()> {
    let s1 = cx.kv.set(key!["p", 1], KvValue::U64(1)).await?;
    let s2 = cx.kv.set(key!["p", 2], KvValue::U64(2)).await?;
    let got = cx
        .kv
        .list(Selector::prefix(key!["p"]), ListOptions::default())
        .collect_all()
        .await?;
    ensure!(got.len() == 2);
    ensure!(got[0].value == KvValue::U64(1) && got[0].versionstamp == s1);
    ensure!(got[1].value == KvValue::U64(2) && got[1].versionstamp == s2);
    Ok(())
}

async fn large_listing_spans_many_batches(cx: Cx) -> anyhow::Result<()> {
    for chunk in 0..5u64 {
        let mut op = cx.kv.atomic();
        for i in 0..250u64 {
            op.set(key!["big", chunk * 250 + i], KvValue::U64(chunk * 250 + i));
        }
        op.commit().await?;
    }
    let got = cx
        .kv
        .list(Selector::prefix(key!["big"]), ListOptions::default())
        .collect_all()
        .await?;
    ensure!(got.len() == 1250);
    ensure!(
        got.iter()
            .enumerate()
            .all(|(i, e)| e.value == KvValue::U64(i as u64))
    );
    let got = cx
        .kv
        .list(
            Selector::prefix(key!["big"]),
            ListOptions::default().with_reverse(true).with_limit(1001),
        )
        .collect_all()
        .await?;
    ensure!(got.len() == 1001 && got[0].value == KvValue::U64(1249));
    Ok(())
}
