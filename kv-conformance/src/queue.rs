//! Queues: durable, at-least-once delivery with retries and dead letters,
//! shared by every listener of a database.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use kv_core::{EnqueueOptions, Error, KvValue, Limit, key};
use kv_queue::{Delivery, Queue};
use tokio::sync::{mpsc, oneshot};

use crate::Cx;

declare_cases!("queue":
    enqueued_message_is_delivered,
    enqueue_in_atomic_only_when_commit_succeeds,
    delayed_message_waits_for_its_time,
    failed_handler_is_retried_then_dead_lettered,
    panicking_handler_counts_as_failure,
    handler_panicking_before_its_future_counts_as_failure,
    exhausted_message_without_dead_letter_keys_is_dropped,
    empty_backoff_schedule_means_no_retry,
    several_listeners_handle_each_message_once,
    slow_handler_keeps_its_lease,
    message_of_a_dead_listener_is_redelivered,
    concurrency_limit_is_respected,
    stats_and_peek,
    invalid_enqueue_options_are_rejected,
);

/// A V8 payload: the string `s` (one-byte form).
fn payload(s: &str) -> Vec<u8> {
    let mut v = vec![0xff, 0x0f, b'"', s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

struct Listener {
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<kv_core::Result<()>>,
}

impl Listener {
    /// Listens with a handler that reports each delivery and succeeds when
    /// `ok(delivery)` says so.
    fn start(queue: Queue, ok: impl Fn(&Delivery) -> bool + Send + Sync + 'static) -> Listener {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let ok = Arc::new(ok);
        let task = tokio::spawn(async move {
            queue
                .listen(
                    move |d: Delivery| {
                        let tx = tx.clone();
                        let ok = ok.clone();
                        async move {
                            let good = ok(&d);
                            let _ = tx.send(d);
                            if good {
                                Ok(())
                            } else {
                                Err("handler failed".into())
                            }
                        }
                    },
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
        });
        Listener {
            deliveries,
            stop: Some(stop),
            task,
        }
    }

    async fn next(&mut self) -> anyhow::Result<Delivery> {
        tokio::time::timeout(Duration::from_secs(10), self.deliveries.recv())
            .await
            .context("no delivery within 10 s")?
            .context("listener ended")
    }

    async fn nothing_for(&mut self, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), self.deliveries.recv())
            .await
            .is_err()
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .context("listener did not stop")???;
        Ok(())
    }
}

/// Waits (in real time) until the queue's counts satisfy `done`: a retry is
/// scheduled relative to the clock at the moment the failure is recorded,
/// so tests move the manual clock only after that.
async fn settle(
    cx: &Cx,
    done: impl Fn(&kv_queue::QueueStats) -> bool + Send + Sync,
) -> anyhow::Result<()> {
    if !cx.has_manual_clock() {
        // On real time the retry may already have happened: nothing to wait
        // for before letting time pass.
        return Ok(());
    }
    // Generous: on a loaded machine (a clean-clone CI run, right after its
    // build) this once gave up after 5 s; a state never reached still fails.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if done(&queue(cx).stats().await?) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!(
        "queue did not settle in 30 s: {:?}",
        queue(cx).stats().await?
    )
}

fn queue(cx: &Cx) -> Queue {
    let mut q = Queue::new(cx.backend.clone()).with_poll_interval(Duration::from_millis(200));
    if let Some(clock) = cx.clock() {
        q = q.with_clock(clock);
    }
    q
}

async fn enqueued_message_is_delivered(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .enqueue(payload("hello"), EnqueueOptions::default())
        .await?;
    let mut l = Listener::start(queue(&cx), |_| true);
    let d = l.next().await?;
    ensure!(d.payload == payload("hello") && d.attempt == 0);
    l.stop().await?;
    let stats = queue(&cx).stats().await?;
    ensure!(stats == Default::default(), "nothing left: {stats:?}");
    Ok(())
}

async fn enqueue_in_atomic_only_when_commit_succeeds(cx: Cx) -> anyhow::Result<()> {
    cx.kv.set(key!["guard"], KvValue::U64(1)).await?;
    let failed = cx
        .kv
        .atomic()
        .check(key!["guard"], None)
        .enqueue(payload("lost"), EnqueueOptions::default())
        .commit()
        .await?;
    ensure!(!failed.is_ok());
    let ok = cx
        .kv
        .atomic()
        .set(key!["outbox"], KvValue::U64(1))
        .enqueue(payload("kept"), EnqueueOptions::default())
        .commit()
        .await?;
    ensure!(ok.is_ok());
    let peeked = queue(&cx).peek(10).await?;
    ensure!(
        peeked.len() == 1 && peeked[0].payload == payload("kept"),
        "{peeked:?}"
    );
    Ok(())
}

async fn delayed_message_waits_for_its_time(cx: Cx) -> anyhow::Result<()> {
    let mut l = Listener::start(queue(&cx), |_| true);
    cx.kv
        .enqueue(
            payload("later"),
            EnqueueOptions::default().with_delay(Duration::from_millis(1500)),
        )
        .await?;
    ensure!(l.nothing_for(300).await, "delivered before its delay");
    ensure!(queue(&cx).stats().await?.delayed == 1);
    cx.advance(1500).await;
    ensure!(l.next().await?.payload == payload("later"));
    l.stop().await
}

async fn failed_handler_is_retried_then_dead_lettered(cx: Cx) -> anyhow::Result<()> {
    let options = EnqueueOptions::default()
        .with_backoff_schedule(vec![Duration::from_millis(10), Duration::from_millis(20)])
        .with_key_if_undelivered(key!["dead", 1])
        .with_key_if_undelivered(key!["dead", 2]);
    cx.kv.enqueue(payload("doomed"), options).await?;
    let mut l = Listener::start(queue(&cx), |_| false);
    for attempt in 0..3 {
        let d = l.next().await?;
        ensure!(d.attempt == attempt, "attempt {attempt}: {}", d.attempt);
        if attempt < 2 {
            settle(&cx, |s| s.delayed == 1).await?;
            cx.advance(30).await;
        }
    }
    // The dead letters are written atomically with removing the message.
    for _ in 0..100 {
        let got = cx.kv.get_many(&[key!["dead", 1], key!["dead", 2]]).await?;
        if got.iter().all(Option::is_some) {
            for e in got.into_iter().flatten() {
                ensure!(e.value == KvValue::V8(payload("doomed")));
            }
            ensure!(l.nothing_for(200).await, "no fourth attempt");
            ensure!(queue(&cx).stats().await? == Default::default());
            return l.stop().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("dead letters were not written")
}

async fn panicking_handler_counts_as_failure(cx: Cx) -> anyhow::Result<()> {
    panicking_handler(cx, false).await
}

/// A handler that panics while making its future (not inside it) fails
/// the attempt the same way; it used to end the task, so the message came
/// back only when its lease ran out.
async fn handler_panicking_before_its_future_counts_as_failure(cx: Cx) -> anyhow::Result<()> {
    panicking_handler(cx, true).await
}

async fn panicking_handler(cx: Cx, before_future: bool) -> anyhow::Result<()> {
    let options = EnqueueOptions::default()
        .with_backoff_schedule(vec![Duration::from_millis(10)])
        .with_key_if_undelivered(key!["dead"]);
    cx.kv.enqueue(payload("boom"), options).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let q = queue(&cx);
    let task = tokio::spawn(async move {
        q.listen(
            move |d: Delivery| {
                let _ = tx.send(d.attempt);
                assert!(!before_future, "handler panics before its future");
                async move { panic!("handler panics on purpose") }
            },
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    for attempt in 0..2 {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await?
            .context("ended")?;
        ensure!(got == attempt);
        if attempt == 0 {
            settle(&cx, |s| s.delayed == 1).await?;
            cx.advance(20).await;
        }
    }
    for _ in 0..100 {
        if cx.kv.get(key!["dead"]).await?.is_some() {
            let _ = stop.send(());
            task.await??;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("a panicking handler must fail the attempt and dead-letter the message")
}

async fn exhausted_message_without_dead_letter_keys_is_dropped(cx: Cx) -> anyhow::Result<()> {
    let options = EnqueueOptions::default().with_backoff_schedule(vec![Duration::from_millis(10)]);
    cx.kv.enqueue(payload("gone"), options).await?;
    let mut l = Listener::start(queue(&cx), |_| false);
    l.next().await?;
    settle(&cx, |s| s.delayed == 1).await?;
    cx.advance(20).await;
    ensure!(l.next().await?.attempt == 1);
    for _ in 0..100 {
        if queue(&cx).stats().await? == Default::default() {
            return l.stop().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the message should be gone")
}

async fn empty_backoff_schedule_means_no_retry(cx: Cx) -> anyhow::Result<()> {
    let options = EnqueueOptions::default()
        .with_backoff_schedule(vec![])
        .with_key_if_undelivered(key!["dead"]);
    cx.kv.enqueue(payload("once"), options).await?;
    let mut l = Listener::start(queue(&cx), |_| false);
    l.next().await?;
    // Longer than the first default retry delay (100 ms).
    cx.advance(1_000).await;
    ensure!(l.nothing_for(300).await, "no retry");
    ensure!(cx.kv.get(key!["dead"]).await?.is_some());
    l.stop().await
}

async fn several_listeners_handle_each_message_once(cx: Cx) -> anyhow::Result<()> {
    let n = 60;
    for chunk in 0..3 {
        let mut op = cx.kv.atomic();
        for i in 0..n / 3 {
            op.enqueue(
                payload(&format!("m{}", chunk * (n / 3) + i)),
                EnqueueOptions::default(),
            );
        }
        op.commit().await?;
    }
    let mut listeners: Vec<Listener> = (0..3)
        .map(|_| Listener::start(queue(&cx), |_| true))
        .collect();
    let mut seen = Vec::new();
    while seen.len() < n {
        let mut progressed = false;
        for l in &mut listeners {
            while let Ok(d) = l.deliveries.try_recv() {
                seen.push(d.payload);
                progressed = true;
            }
        }
        if !progressed {
            tokio::time::sleep(Duration::from_millis(10)).await;
            ensure!(seen.len() <= n);
        }
        if seen.len() < n && listeners.iter().all(|l| l.task.is_finished()) {
            anyhow::bail!("listeners stopped");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for l in &mut listeners {
        while let Ok(d) = l.deliveries.try_recv() {
            seen.push(d.payload);
        }
    }
    let total = seen.len();
    seen.sort();
    seen.dedup();
    ensure!(
        seen.len() == n && total == n,
        "{total} deliveries of {} distinct messages",
        seen.len()
    );
    for l in listeners {
        l.stop().await?;
    }
    Ok(())
}

async fn slow_handler_keeps_its_lease(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .enqueue(payload("slow"), EnqueueOptions::default())
        .await?;
    let lease = Duration::from_millis(300);
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for _ in 0..2 {
        let q = queue(&cx).with_lease(lease);
        let calls = calls.clone();
        let release = release_rx.clone();
        let mut stop = stop_tx.subscribe();
        handles.push(tokio::spawn(async move {
            q.listen(
                move |_d| {
                    let calls = calls.clone();
                    let mut release = release.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = release.wait_for(|r| *r).await;
                        Ok(())
                    }
                },
                async move {
                    let _ = stop.recv().await;
                },
            )
            .await
        }));
    }
    // Let four lease lengths pass while the handler runs.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cx.advance(100).await;
    }
    ensure!(
        calls.load(Ordering::SeqCst) == 1,
        "delivered {} times",
        calls.load(Ordering::SeqCst)
    );
    release_tx.send(true)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_tx.send(());
    for h in handles {
        h.await??;
    }
    ensure!(calls.load(Ordering::SeqCst) == 1);
    ensure!(queue(&cx).stats().await? == Default::default());
    Ok(())
}

async fn message_of_a_dead_listener_is_redelivered(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .enqueue(payload("orphan"), EnqueueOptions::default())
        .await?;
    let lease = Duration::from_millis(300);
    // The first listener takes the message and "dies": its handler never
    // finishes and the listener task is aborted, so the lease is not renewed.
    let q = queue(&cx).with_lease(lease);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let dying = tokio::spawn(async move {
        q.listen(
            move |d: Delivery| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(d.attempt);
                    std::future::pending::<()>().await;
                    Ok(())
                }
            },
            std::future::pending(),
        )
        .await
    });
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await?
        .context("ended")?;
    ensure!(first == 0);
    dying.abort();
    let _ = dying.await;
    ensure!(queue(&cx).stats().await?.running == 1);
    cx.advance(lease.as_millis() as u64 + 1).await;
    let mut l = Listener::start(queue(&cx).with_lease(lease), |_| true);
    // The new listener finds the expired lease and schedules a retry after
    // the first step of the default backoff (100 ms).
    settle(&cx, |s| s.delayed == 1 && s.running == 0).await?;
    cx.advance(100).await;
    let d = l.next().await?;
    ensure!(
        d.payload == payload("orphan") && d.attempt == 1,
        "attempt {}",
        d.attempt
    );
    l.stop().await
}

async fn concurrency_limit_is_respected(cx: Cx) -> anyhow::Result<()> {
    let mut op = cx.kv.atomic();
    for i in 0..8 {
        op.enqueue(payload(&format!("c{i}")), EnqueueOptions::default());
    }
    op.commit().await?;
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let q = queue(&cx).with_concurrency(2);
    let (stop, stopped) = oneshot::channel::<()>();
    let (a, p, d) = (active.clone(), peak.clone(), done.clone());
    let task = tokio::spawn(async move {
        q.listen(
            move |_| {
                let (a, p, d) = (a.clone(), p.clone(), d.clone());
                async move {
                    let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    a.fetch_sub(1, Ordering::SeqCst);
                    d.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    for _ in 0..500 {
        if done.load(Ordering::SeqCst) == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    task.await??;
    ensure!(
        done.load(Ordering::SeqCst) == 8,
        "handled {}",
        done.load(Ordering::SeqCst)
    );
    ensure!(
        peak.load(Ordering::SeqCst) <= 2,
        "peak concurrency {}",
        peak.load(Ordering::SeqCst)
    );
    Ok(())
}

async fn stats_and_peek(cx: Cx) -> anyhow::Result<()> {
    cx.kv
        .enqueue(payload("now"), EnqueueOptions::default())
        .await?;
    cx.kv
        .enqueue(
            payload("later"),
            EnqueueOptions::default().with_delay(Duration::from_secs(3600)),
        )
        .await?;
    let stats = queue(&cx).stats().await?;
    ensure!(
        stats.ready == 1 && stats.delayed == 1 && stats.running == 0,
        "{stats:?}"
    );
    let peeked = queue(&cx).peek(10).await?;
    ensure!(peeked.len() == 2 && peeked[0].payload == payload("now"));
    Ok(())
}

async fn invalid_enqueue_options_are_rejected(cx: Cx) -> anyhow::Result<()> {
    let too_late =
        EnqueueOptions::default().with_delay(Duration::from_millis(30 * 24 * 3_600_000 + 1));
    ensure!(matches!(
        cx.kv.enqueue(payload("x"), too_late).await,
        Err(Error::InvalidArgument(_))
    ));
    let exactly_30_days =
        EnqueueOptions::default().with_delay(Duration::from_millis(30 * 24 * 3_600_000));
    cx.kv.enqueue(payload("x"), exactly_30_days).await?;
    let six = EnqueueOptions::default().with_backoff_schedule(vec![Duration::from_millis(1); 6]);
    ensure!(matches!(
        cx.kv.enqueue(payload("x"), six).await,
        Err(Error::InvalidArgument(_))
    ));
    let long =
        EnqueueOptions::default().with_backoff_schedule(vec![Duration::from_millis(3_600_001)]);
    ensure!(matches!(
        cx.kv.enqueue(payload("x"), long).await,
        Err(Error::InvalidArgument(_))
    ));
    let mut eleven = EnqueueOptions::default();
    for i in 0..11 {
        eleven = eleven.with_key_if_undelivered(key!["d", i]);
    }
    ensure!(matches!(
        cx.kv.enqueue(payload("x"), eleven).await,
        Err(Error::LimitExceeded {
            limit: Limit::UndeliveredKeys,
            ..
        })
    ));
    let big = vec![0u8; 65537];
    ensure!(matches!(
        cx.kv.enqueue(big, EnqueueOptions::default()).await,
        Err(Error::LimitExceeded {
            limit: Limit::EnqueuePayloadSize,
            ..
        })
    ));
    Ok(())
}
