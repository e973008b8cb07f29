//! Request limits: every limit of Deno KV, at its boundary.

use anyhow::ensure;
use kv_core::backend::{AtomicWrite, Mutation, MutationKind};
use kv_core::{Error, Key, KeyPart, KvValue, Limit, key};

use crate::Cx;
use crate::util::b;

declare_cases!("limits":
    value_size_limit,
    get_many_of_10_and_11,
    checks_100_and_101,
    mutations_1000_and_1001,
    total_mutation_size_boundary,
    total_key_size_boundary,
    watch_of_10_and_11_keys,
    system_key_space_is_unreachable,
    limit_errors_write_nothing,
);

fn bytes_key(tag: u8, len: usize) -> Key {
    // Key [Uint8Array(len)] filled with `tag`, encoded as len + 2 bytes.
    Key(vec![KeyPart::Bytes(vec![tag; len])])
}

async fn value_size_limit(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["v"], KvValue::Bytes(vec![0; 65536])).await?;
    assert_err!(
        cx.kv.set(key!["v"], KvValue::Bytes(vec![0; 65537])).await,
        Error::LimitExceeded {
            limit: Limit::ValueSize,
            max: 65536,
            actual: 65537
        }
    );
    assert_err!(
        cx.kv.set(key!["v"], KvValue::V8(vec![0; 65537])).await,
        Error::LimitExceeded {
            limit: Limit::ValueSize,
            ..
        }
    );
    Ok(())
}

async fn get_many_of_10_and_11(cx: Cx) -> anyhow::Result<()> {
    let keys: Vec<Key> = (0..11).map(|i| key!["k", i]).collect();
    ensure!(cx.kv.get_many(&keys[..10]).await?.len() == 10);
    assert_err!(
        cx.kv.get_many(&keys).await,
        Error::LimitExceeded {
            limit: Limit::Ranges,
            max: 10,
            actual: 11
        }
    );
    Ok(())
}

async fn checks_100_and_101(cx: Cx) -> anyhow::Result<()> {
    let mut op = cx.kv.atomic();
    for i in 0..100 {
        op.check(key!["c", i], None);
    }
    ensure!(
        op.commit().await?.is_ok(),
        "100 checks are accepted (Deno's limit, not denokv's 10)"
    );
    let mut op = cx.kv.atomic();
    for i in 0..101 {
        op.check(key!["c", i], None);
    }
    assert_err!(
        op.commit().await,
        Error::LimitExceeded {
            limit: Limit::Checks,
            max: 100,
            actual: 101
        }
    );
    Ok(())
}

async fn mutations_1000_and_1001(cx: Cx) -> anyhow::Result<()> {
    let mut op = cx.kv.atomic();
    for i in 0..1000 {
        op.set(key!["m", i], KvValue::U64(i));
    }
    ensure!(op.commit().await?.is_ok());
    let mut op = cx.kv.atomic();
    for i in 0..1001 {
        op.delete(key!["m", i]);
    }
    assert_err!(
        op.commit().await,
        Error::LimitExceeded {
            limit: Limit::Mutations,
            max: 1000,
            actual: 1001
        }
    );
    ensure!(cx.kv.get(key!["m", 0]).await?.is_some());
    Ok(())
}

async fn total_mutation_size_boundary(cx: Cx) -> anyhow::Result<()> {
    // 13 × (2 × 507 + 62000) = 819182 ≤ 819200; with 508-byte keys 819208.
    for (key_len, ok) in [(507usize, true), (508, false)] {
        let mut op = cx.kv.atomic();
        for i in 0..13u8 {
            op.set(
                bytes_key(i + 1, key_len - 2 - cx.ns_len()),
                KvValue::Bytes(vec![0; 62000]),
            );
        }
        let r = op.commit().await;
        if ok {
            ensure!(r?.is_ok(), "{key_len}-byte keys fit");
        } else {
            assert_err!(
                r,
                // Checked by the client, or by a server when a namespace
                // hides some of the size from the client.
                Error::LimitExceeded {
                    limit: Limit::TotalMutationSize,
                    max: 819200,
                    ..
                }
            );
        }
    }
    Ok(())
}

async fn total_key_size_boundary(cx: Cx) -> anyhow::Result<()> {
    let keys: Vec<Key> = (0..41u8)
        .map(|i| bytes_key(i + 1, 2046 - cx.ns_len()))
        .collect();
    let mut op = cx.kv.atomic();
    for k in &keys[..40] {
        op.set(k.clone(), b("x"));
    }
    ensure!(
        op.commit().await?.is_ok(),
        "40 keys of 2048 bytes = 81920 fit"
    );
    let mut op = cx.kv.atomic();
    for k in &keys {
        op.set(k.clone(), b("x"));
    }
    assert_err!(
        op.commit().await,
        Error::LimitExceeded {
            limit: Limit::TotalKeySize,
            max: 81920,
            ..
        }
    );
    let mut op = cx.kv.atomic();
    for k in &keys {
        op.delete(k.clone());
    }
    ensure!(
        op.commit().await?.is_ok(),
        "deletes do not count toward the key total"
    );
    let mut op = cx.kv.atomic();
    for k in &keys {
        op.check(k.clone(), None);
    }
    ensure!(
        op.commit().await?.is_ok(),
        "checks do not count toward the key total"
    );
    Ok(())
}

async fn watch_of_10_and_11_keys(cx: Cx) -> anyhow::Result<()> {
    let keys: Vec<Key> = (0..11).map(|i| key!["w", i]).collect();
    ensure!(cx.kv.watch(&keys[..10]).is_ok());
    assert_err!(
        cx.kv.watch(&keys).map(|_| ()),
        Error::LimitExceeded {
            limit: Limit::WatchKeys,
            max: 10,
            ..
        }
    );
    Ok(())
}

async fn system_key_space_is_unreachable(cx: Cx) -> anyhow::Result<()> {
    // The Kv API cannot name such a key; a raw commit through the user-level
    // validation is refused before it reaches the backend.
    let write = AtomicWrite {
        mutations: vec![Mutation {
            key: vec![0xff, 0x01],
            kind: MutationKind::Set {
                value: b("x"),
                expire_at_ms: None,
            },
        }],
        ..AtomicWrite::default()
    };
    assert_err!(kv_core::limits::check_write(&write), Error::InvalidKey(_));
    let everything = cx
        .kv
        .list(kv_core::Selector::prefix(Key::empty()), Default::default())
        .collect_all()
        .await?;
    ensure!(everything.is_empty());
    Ok(())
}

async fn limit_errors_write_nothing(cx: Cx) -> anyhow::Result<()> {
    let r = cx
        .kv
        .atomic()
        .set(key!["a"], b("1"))
        .set(key!["b"], KvValue::Bytes(vec![0; 70000]))
        .commit()
        .await;
    assert_err!(r, Error::LimitExceeded { .. });
    ensure!(cx.kv.get(key!["a"]).await?.is_none());
    Ok(())
}
