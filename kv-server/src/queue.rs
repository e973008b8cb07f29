//! `kv queue` and `kv listen`: look at a database's queue, and handle its
//! messages.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kv::Clock;

use crate::db::DbArgs;
use crate::say;

#[derive(clap::Args)]
pub(crate) struct Listen {
    /// The database to listen on (it must exist).
    #[command(flatten)]
    db: DbArgs,
    /// Stop after this many messages (handled one at a time; the rest stay
    /// queued).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after this many seconds without a message.
    #[arg(long)]
    idle_timeout: Option<u64>,
}

pub(crate) async fn listen(args: Listen, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (_, backend) = args.db.open_existing(sqlite_path.as_deref()).await?;
    let mut queue = kv::Queue::new(backend.clone());
    if args.count.is_some() {
        // One at a time, so that no message beyond the count is claimed.
        queue = queue.with_concurrency(1);
    }
    let handled = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(kv::SystemClock.now_ms()));
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let count = args.count;
    let unread = Arc::new(AtomicBool::new(false));
    let (h, l, u) = (handled.clone(), last.clone(), unread.clone());
    let handler = move |d: kv::Delivery| {
        let value = kv_v8::display_value(&kv::KvValue::V8(d.payload));
        let line = serde_json::json!({"attempt": d.attempt, "value": value});
        if writeln!(std::io::stdout(), "{line}").is_err() {
            // Nobody reads the output any more: this message fails (it is
            // retried, not acknowledged) and the listener stops.
            u.store(true, Ordering::SeqCst);
            let _ = done_tx.send(true);
            let failed: Result<(), kv::HandlerError> = Err("standard output is closed".into());
            return std::future::ready(failed);
        }
        l.store(kv::SystemClock.now_ms(), Ordering::SeqCst);
        let n = h.fetch_add(1, Ordering::SeqCst) + 1;
        if count.is_some_and(|c| n >= c) {
            let _ = done_tx.send(true);
        }
        std::future::ready(Ok(()))
    };
    let idle = args.idle_timeout;
    let stop = async move {
        loop {
            tokio::select! {
                _ = done_rx.wait_for(|d| *d) => return,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    if let Some(secs) = idle
                        && kv::SystemClock.now_ms() - last.load(Ordering::SeqCst) > secs * 1000
                    {
                        return;
                    }
                }
            }
        }
    };
    queue.listen(handler, stop).await?;
    backend.close().await;
    anyhow::ensure!(
        !unread.load(Ordering::SeqCst),
        "standard output was closed: stopped (the message being printed will be retried)"
    );
    if let Some(c) = count {
        anyhow::ensure!(
            handled.load(Ordering::SeqCst) >= c,
            "only {} of {c} messages arrived",
            handled.load(Ordering::SeqCst)
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct Queue {
    /// The database to inspect (it must exist).
    #[command(flatten)]
    db: DbArgs,
}

pub(crate) async fn queue(args: Queue, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let url = args.db.url(sqlite_path.as_deref());
    // Looking must not change the file (nor create one): SQLite files open
    // read-only; other backends have no such mode.
    let read_only = kv::OpenOptions::new().with_read_only(true);
    let backend = match read_only.open_backend(&url).await {
        Err(kv::Error::Unsupported { .. }) => {
            args.db.open_existing(sqlite_path.as_deref()).await?.1
        }
        opened => opened.with_context(|| format!("cannot open {url}"))?,
    };
    // Every message, a page at a time: one read would stop at its limit.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = kv_queue::layout::read_messages_after(
            backend.as_ref(),
            after.as_deref(),
            kv_queue::layout::MESSAGE_PAGE,
        )
        .await?;
        let last_page = page.len() < kv_queue::layout::MESSAGE_PAGE as usize;
        for (key, m) in page {
            let line = serde_json::json!({
                "due_ms": m.due_ms,
                "attempts": m.attempts,
                "backoff_schedule": m.backoff_schedule,
                "keys_if_undelivered": m.keys_if_undelivered.len(),
                "payload_bytes": m.payload.len(),
            });
            say(line);
            after = Some(key);
        }
        if last_page {
            break;
        }
    }
    backend.close().await;
    Ok(())
}
