//! `cargo xtask bench queue`: enqueue → handler latency and sustained
//! throughput of kv's queue on a durable SQLite file. Prints JSON lines.
//!
//! kv-bench-queue --path FILE [--scale F]

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use kv_core::backend::Backend;
use kv_core::{EnqueueOptions, Kv};
use kv_queue::{Queue, QueueBackend};
use tokio::sync::mpsc;

/// The allocator of the `kv` binary, so the client side pays what a
/// server-grade application would.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: kv-bench-queue --path FILE [--scale F]";

fn pct(lat: &mut [Duration], p: f64) -> f64 {
    lat.sort();
    lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut path = None;
    let mut scale = 1.0f64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--path" => path = it.next(),
            "--scale" => scale = it.next().context("--scale needs a value")?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let path = path.context("--path FILE is required")?;
    let backend: Arc<dyn Backend> =
        Arc::new(QueueBackend::new(kv_sqlite::SqliteBackend::open(&path)?));
    let kv = Kv::from_arc(backend.clone());

    // Latency: one message at a time, enqueue → handler start.
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let queue = Queue::new(backend.clone());
    let listener = tokio::spawn(async move {
        queue
            .listen(
                move |_d| {
                    let _ = tx.send(Instant::now());
                    async { Ok(()) }
                },
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
    });
    let n = ((500.0 * scale) as usize).max(10);
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = Instant::now();
        kv.enqueue(vec![0xff, 0x0f, 0x49, 0x02], EnqueueOptions::default())
            .await?;
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await?
            .context("listener ended")?;
        lat.push(got - sent);
    }
    let p50 = pct(&mut lat, 0.5);
    let p99 = pct(&mut lat, 0.99);
    println!(
        "{}",
        serde_json::json!({"name": "enqueue_to_handler", "ops": n, "p50_us": p50, "p99_us": p99, "goal_p50_us": 5000})
    );
    let _ = stop_tx.send(());
    listener.await??;

    // Throughput: producers enqueue in commits of 10 while one listener
    // (concurrency 100) handles them; messages per second end to end.
    let total = ((20_000.0 * scale) as usize).max(100);
    let handled = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let h = handled.clone();
    let queue = Queue::new(backend.clone()).with_concurrency(100);
    let listener = tokio::spawn(async move {
        queue
            .listen(
                move |_d| {
                    h.fetch_add(1, Ordering::Relaxed);
                    async { Ok(()) }
                },
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
    });
    let started = Instant::now();
    let producers: Vec<_> = (0..8)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                for _ in 0..total / 80 {
                    let mut op = kv.atomic();
                    for _ in 0..10 {
                        op.enqueue(vec![0xff, 0x0f, 0x49, 0x02], EnqueueOptions::default());
                    }
                    op.commit().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for p in producers {
        p.await??;
    }
    let sent = (total / 80) * 80;
    while handled.load(Ordering::Relaxed) < sent {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "queue did not drain"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"name": "sustained", "ops": sent, "secs": secs, "per_sec": sent as f64 / secs, "goal_per_sec": 5000})
    );
    let _ = stop_tx.send(());
    listener.await??;
    backend.close().await;
    Ok(())
}
