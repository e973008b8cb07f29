//! Reads, writes and lifecycle through `Kv` on a file.

use std::path::Path;

use anyhow::{Context, ensure};
use futures::FutureExt;
use kv_core::backend::{
    AtomicWrite, ENQUEUE_WITHOUT_QUEUE_LAYER, Enqueue, ReadRange, ReadSink, read_into,
};
use kv_core::{
    Consistency, Error, Kv, KvValue, ListOptions, PrefixBackend, Selector, ValueRef, Versionstamp,
    key,
};

use super::{FileBackend, OpenOptions, TempDb};

/// Sets, gets, lists (both directions, with a limit) and deletes, and the
/// backend reports its name.
///
/// # Errors
/// When a step fails or returns something else than expected.
pub async fn set_get_list_delete(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    ensure!(kv.backend().name() == b.name(), "{}", kv.backend().name());

    let v8 = KvValue::V8(vec![0xff, 0x0f, 0x49, 0x02]);
    kv.set(key!["fruit", "apple"], KvValue::U64(3)).await?;
    kv.set(key!["fruit", "pear"], KvValue::Bytes(b"green".to_vec()))
        .await?;
    kv.set(key!["fruit", "fig"], v8.clone()).await?;
    kv.set(key!["veg", "leek"], KvValue::U64(1)).await?;

    let apple = kv
        .get(key!["fruit", "apple"])
        .await?
        .context("apple was set")?;
    ensure!(apple.value == KvValue::U64(3), "{:?}", apple.value);
    ensure!(kv.get(key!["fruit", "kiwi"]).await?.is_none());

    let fruit = kv
        .list(Selector::prefix(key!["fruit"]), ListOptions::default())
        .collect_all()
        .await?;
    let names: Vec<_> = fruit.iter().map(|e| e.key.clone()).collect();
    ensure!(
        names
            == vec![
                key!["fruit", "apple"],
                key!["fruit", "fig"],
                key!["fruit", "pear"]
            ],
        "{names:?}"
    );
    ensure!(fruit[1].value == v8, "V8 bytes are kept as they are");

    let last_two = kv
        .list(
            Selector::prefix(key!["fruit"]),
            ListOptions::default().with_reverse(true).with_limit(2),
        )
        .collect_all()
        .await?;
    let names: Vec<_> = last_two.iter().map(|e| e.key.clone()).collect();
    ensure!(
        names == vec![key!["fruit", "pear"], key!["fruit", "fig"]],
        "{names:?}"
    );

    let many = kv
        .get_many(&[key!["veg", "leek"], key!["nope"], key!["fruit", "fig"]])
        .await?;
    let found: Vec<_> = many.iter().map(Option::is_some).collect();
    ensure!(found == [true, false, true], "{found:?}");

    kv.delete(key!["fruit", "apple"]).await?;
    kv.delete(key!["fruit", "absent"]).await?;
    ensure!(kv.get(key!["fruit", "apple"]).await?.is_none());
    let fruit = kv
        .list(Selector::prefix(key!["fruit"]), ListOptions::default())
        .collect_all()
        .await?;
    ensure!(fruit.len() == 2, "{} fruit left", fruit.len());
    kv.close().await;
    Ok(())
}

/// Every commit takes the next versionstamp, empty ones too; a failed check
/// takes none; the file's counter ends at the last stamp.
///
/// # Errors
/// When a stamp is out of order or the file disagrees.
pub async fn versionstamps_strictly_increase(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    let mut last = Versionstamp::ZERO;
    for i in 0..20u64 {
        let stamp = kv.set(key!["n"], KvValue::U64(i)).await?;
        ensure!(stamp > last, "{stamp} after {last}");
        last = stamp;
    }
    // An empty commit and a delete of an absent key still take a stamp.
    let empty = kv
        .atomic()
        .commit()
        .await?
        .versionstamp()
        .context("an empty commit has no checks to fail")?;
    ensure!(empty > last, "{empty} after {last}");
    // A failed check does not advance the counter.
    let failed = kv
        .atomic()
        .check(key!["n"], None)
        .set(key!["n"], KvValue::U64(0))
        .commit()
        .await?;
    ensure!(!failed.is_ok(), "the check of an existing key passed");
    let next = kv.set(key!["m"], KvValue::U64(0)).await?;
    ensure!(
        next.counter() == empty.counter() + 1,
        "{next} after {empty}"
    );
    let n = kv.get(key!["n"]).await?.context("n was set")?;
    ensure!(n.value == KvValue::U64(19), "{:?}", n.value);
    kv.close().await;
    let counter = db.inspect()?.counter;
    ensure!(
        counter == next.counter(),
        "file counter {counter}, last {next}"
    );
    Ok(())
}

/// The mutations of one commit apply in order, each seeing the ones before
/// it, and a versionstamped key carries the commit's stamp.
///
/// # Errors
/// When a key ends with another value or stamp.
pub async fn mutations_see_each_other_in_order(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    let stamp = kv
        .atomic()
        .set(key!["a"], KvValue::U64(1))
        .sum(key!["a"], 10)
        .set(key!["b"], KvValue::U64(1))
        .delete(key!["b"])
        .delete(key!["c"])
        .set(key!["c"], KvValue::U64(5))
        .max(key!["c"], 9)
        .min(key!["d"], 4)
        .set_versionstamped(key!["log"], KvValue::U64(0), Default::default())
        .commit()
        .await?
        .versionstamp()
        .context("no checks")?;
    let a = kv.get(key!["a"]).await?.context("a was set")?;
    ensure!(a.value == KvValue::U64(11), "{:?}", a.value);
    ensure!(kv.get(key!["b"]).await?.is_none(), "b was deleted last");
    let c = kv.get(key!["c"]).await?.context("c was set")?;
    ensure!(
        (&c.value, c.versionstamp) == (&KvValue::U64(9), stamp),
        "{c:?}"
    );
    let d = kv.get(key!["d"]).await?.context("d was set by min")?;
    ensure!(d.value == KvValue::U64(4), "{:?}", d.value);
    let log = kv
        .get(key!["log", stamp.to_string()])
        .await?
        .context("versionstamped key")?;
    ensure!(log.versionstamp == stamp, "{log:?}");
    Ok(())
}

/// What was committed before a close is there, with its stamps, after
/// reopening, and later commits get larger stamps.
///
/// # Errors
/// When data or stamps do not survive.
pub async fn reopen_keeps_data(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let stamp = {
        let kv = db.kv()?;
        kv.set(key!["a"], KvValue::Bytes(b"kept".to_vec())).await?;
        let stamp = kv.set(key!["b"], KvValue::U64(7)).await?;
        kv.close().await;
        stamp
    };
    let kv = db.kv()?;
    let b = kv.get(key!["b"]).await?.context("b survives reopen")?;
    ensure!(
        (&b.value, b.versionstamp) == (&KvValue::U64(7), stamp),
        "{b:?}"
    );
    let a = kv.get(key!["a"]).await?.context("a survives reopen")?;
    ensure!(a.value == KvValue::Bytes(b"kept".to_vec()), "{:?}", a.value);
    let next = kv.set(key!["c"], KvValue::U64(0)).await?;
    ensure!(next > stamp, "{next} after {stamp}");
    Ok(())
}

/// Dropping the last handle without `close` keeps the data and releases
/// the file; a clone alone keeps the database open.
///
/// # Errors
/// When the file stays held or data is lost.
pub async fn dropped_handle_without_close_keeps_data(
    b: &'static dyn FileBackend,
) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    {
        let kv = db.kv()?;
        let clone = kv.clone();
        kv.set(key!["a"], KvValue::U64(1)).await?;
        ensure!(db.is_held()?, "an open handle does not hold the file");
        drop(kv);
        // A remaining clone keeps the database open.
        clone.set(key!["b"], KvValue::U64(2)).await?;
    }
    // Dropping the last handle stopped the threads, which closed the file.
    ensure!(!db.is_held()?, "the file is still held after the drop");
    let kv = db.kv()?;
    let values: Vec<_> = kv
        .get_many(&[key!["a"], key!["b"]])
        .await?
        .into_iter()
        .map(|e| e.map(|e| e.value))
        .collect();
    ensure!(
        values == [Some(KvValue::U64(1)), Some(KvValue::U64(2))],
        "{values:?}"
    );
    Ok(())
}

/// A second close does nothing; after the first, every operation of the
/// handle and its clones fails with `Closed` and the file is released.
///
/// # Errors
/// When an operation succeeds after close or the file stays held.
pub async fn close_is_idempotent_and_final(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    kv.set(key!["a"], KvValue::U64(1)).await?;
    kv.close().await;
    ensure!(!db.is_held()?, "close left the file held");
    kv.close().await;
    let get = kv.get(key!["a"]).await;
    ensure!(matches!(get, Err(Error::Closed)), "{get:?}");
    let set = kv.set(key!["a"], KvValue::U64(2)).await;
    ensure!(matches!(set, Err(Error::Closed)), "{set:?}");
    // A clone shares the closed state.
    let get = kv.clone().get(key!["a"]).await;
    ensure!(matches!(get, Err(Error::Closed)), "{get:?}");
    Ok(())
}

/// `kv` works under `futures::executor::block_on`, without any async
/// runtime, and is closed at the end.
///
/// # Errors
/// When a step fails.
pub fn works_without_a_runtime(kv: Kv) -> anyhow::Result<()> {
    futures::executor::block_on(async {
        kv.set(key!["a"], KvValue::U64(1)).await?;
        kv.atomic().sum(key!["a"], 2).commit().await?;
        let a = kv.get(key!["a"]).await?.context("a was set")?;
        ensure!(a.value == KvValue::U64(3), "{:?}", a.value);
        kv.close().await;
        Ok(())
    })
}

/// An empty path is an `InvalidArgument`, not a file created somewhere.
///
/// # Errors
/// When the open succeeds or fails otherwise.
pub fn an_empty_path_is_refused(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    match b.open(Path::new(""), &OpenOptions::default()) {
        Err(Error::InvalidArgument(_)) => Ok(()),
        Err(other) => anyhow::bail!("wrong error for an empty path: {other:?}"),
        Ok(backend) => anyhow::bail!("an empty path opened {backend:?}"),
    }
}

/// A storage backend refuses `enqueues` with `Unsupported`, naming itself:
/// the queue layer must turn them into mutations first.
///
/// # Errors
/// When the write succeeds or fails otherwise.
pub async fn enqueue_is_unsupported(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let backend = db.backend()?;
    let write = AtomicWrite {
        enqueues: vec![Enqueue {
            payload: vec![0xff, 0x0f, 0x5f],
            deadline_ms: 0,
            keys_if_undelivered: vec![],
            backoff_schedule: None,
        }],
        ..AtomicWrite::default()
    };
    match backend.atomic_write(write).await {
        Err(Error::Unsupported { backend, op })
            if backend == b.name() && op == ENQUEUE_WITHOUT_QUEUE_LAYER =>
        {
            Ok(())
        }
        Err(other) => anyhow::bail!("wrong error for an enqueue: {other:?}"),
        Ok(outcome) => anyhow::bail!("an enqueue was accepted: {outcome:?}"),
    }
}

/// Small reads from many threads at once — more than the backend has
/// inline read connections, so some take its reader threads — while a
/// counter is incremented: every read sees a committed value, never one
/// older than a value the same reader saw before, and the last read sees
/// the final count.
///
/// # Errors
/// When a read goes back in time, a step fails, or the count is wrong.
pub fn small_reads_from_many_threads_agree(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let kv = db.kv()?;
    futures::executor::block_on(kv.set(key!["n"], KvValue::U64(0)))?;
    let writes = 200u64;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let writer = scope.spawn(|| -> anyhow::Result<()> {
            for _ in 0..writes {
                futures::executor::block_on(kv.atomic().sum(key!["n"], 1).commit())?;
            }
            Ok(())
        });
        let readers: Vec<_> = (0..8)
            .map(|reader| {
                let kv = &kv;
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut last = 0;
                    for _ in 0..300 {
                        let entry =
                            futures::executor::block_on(kv.get(key!["n"]))?.context("n was set")?;
                        let KvValue::U64(n) = entry.value else {
                            anyhow::bail!("n holds {:?}", entry.value);
                        };
                        ensure!(n >= last, "reader {reader} read {n} after {last}");
                        last = n;
                    }
                    Ok(())
                })
            })
            .collect();
        for r in readers {
            r.join()
                .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
        }
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer panicked"))?
    })?;
    let last = futures::executor::block_on(kv.get(key!["n"]))?.map(|e| e.value);
    ensure!(last == Some(KvValue::U64(writes)), "final count {last:?}");
    futures::executor::block_on(kv.close());
    Ok(())
}

/// Reads through a namespace ([`PrefixBackend`]) into a sink, on the
/// caller's thread and on the backend's own, including a read that
/// overruns the caller's-thread budget and starts over: the sink ends with
/// exactly the read's entries, keys without the namespace.
///
/// # Errors
/// When the sink holds other entries than the read, or a step fails.
pub async fn a_namespace_reads_into_a_sink(b: &'static dyn FileBackend) -> anyhow::Result<()> {
    let db = TempDb::new(b)?;
    let namespace = PrefixBackend::new(db.backend()?, b"tenant-1".to_vec());
    let kv = Kv::new(namespace.clone());
    let wide = |i: u64| KvValue::Bytes(vec![i as u8; 60_000]);
    for i in 0..12u64 {
        kv.set(key!["wide", i], wide(i)).await?;
    }
    kv.set(key!["small"], KvValue::U64(1)).await?;
    for (limit, reverse) in [(100, false), (1000, true), (5, false)] {
        let bounds = Selector::prefix(key!["wide"]).bounds()?;
        let range = ReadRange {
            start: bounds.start,
            end: bounds.end,
            limit,
            reverse,
        };
        let got = read_into(&namespace, vec![range], Consistency::Strong, Vec::new()).await?;
        let mut want: Vec<u64> = (0..12u64.min(u64::from(limit))).collect();
        if reverse {
            want.reverse();
        }
        ensure!(got.len() == 1, "{} ranges", got.len());
        let got: Vec<(Vec<u8>, &KvValue)> =
            got[0].iter().map(|e| (e.key.clone(), &e.value)).collect();
        let want_keys: Vec<Vec<u8>> = want
            .iter()
            .map(|&i| key!["wide", i].encode())
            .collect::<Result<_, _>>()?;
        ensure!(
            got.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>() == want_keys,
            "limit {limit}: {} keys, or keys that keep the namespace",
            got.len()
        );
        ensure!(
            got.iter().zip(&want).all(|((_, v), &i)| **v == wide(i)),
            "limit {limit}: values"
        );
    }
    Ok(())
}

/// A sink that panics fails its own read and nothing else: a read on the
/// backend's threads answers with an error (more times than it has
/// threads), one on the caller's thread panics there, and afterwards reads
/// of every size work and see new commits (no snapshot left open).
///
/// # Errors
/// When a read after the panics fails or sees an old state.
pub async fn a_panicking_sink_fails_only_its_read(
    b: &'static dyn FileBackend,
) -> anyhow::Result<()> {
    /// Panics at its first entry.
    struct Panics;
    impl ReadSink for Panics {
        fn begin_range(&mut self) {}
        fn entry(&mut self, _: &[u8], _: ValueRef<'_>, _: Versionstamp) {
            std::panic::panic_any("a sink that panics (expected by the test)");
        }
        fn clear(&mut self) {}
    }
    let db = TempDb::new(b)?;
    let backend = db.backend()?;
    let kv = Kv::from_arc(backend.clone());
    for i in 0..3u64 {
        kv.set(key!["k", i], KvValue::U64(i)).await?;
    }
    let range = |limit| -> anyhow::Result<ReadRange> {
        let bounds = Selector::prefix(key!["k"]).bounds()?;
        Ok(ReadRange {
            start: bounds.start,
            end: bounds.end,
            limit,
            reverse: false,
        })
    };
    // Large reads go to the backend's threads.
    for _ in 0..5 {
        let read = read_into(&*backend, vec![range(1000)?], Consistency::Strong, Panics).await;
        ensure!(
            matches!(read, Err(Error::Backend { .. })),
            "a panicking sink on a reader thread: {:?}",
            read.err()
        );
    }
    // Small ones run on this thread: the panic is the caller's, here. The
    // second range's panic happens inside a read transaction.
    for ranges in [vec![range(10)?], vec![range(1)?, range(10)?]] {
        let read = read_into(&*backend, ranges, Consistency::Strong, Panics);
        let caught = std::panic::AssertUnwindSafe(read).catch_unwind().await;
        ensure!(caught.is_err(), "the sink's panic reaches its caller");
    }
    for round in 3..8u64 {
        kv.set(key!["k", round], KvValue::U64(round)).await?;
        for limit in [10, 1000] {
            let read = backend
                .snapshot_read(vec![range(1)?, range(limit)?], Consistency::Strong)
                .await?;
            ensure!(
                read.len() == 2 && read[1].len() as u64 == round + 1,
                "round {round}, limit {limit}: {:?} entries, an old snapshot",
                read.iter().map(Vec::len).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}
