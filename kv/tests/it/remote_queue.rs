//! Enqueues through `kv::open("http://…")` reach `kv serve`'s queue layer
//! with the retry schedule the caller asked for, including "no retry" (an
//! empty schedule), which the standard KV Connect endpoint cannot carry.

use std::time::Duration;

use kv::{EnqueueOptions, Queue, key};

use crate::Served;

const TOKEN: &str = "remote-queue-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_enqueues_keep_their_backoff_schedule() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("kv.sqlite3").display());
    let backend = kv::open_backend(&url).await?;
    let served = Served::start(backend.clone(), TOKEN).await?;
    let remote = &served.client;
    let day = Duration::from_secs(86_400);
    let later = |o: EnqueueOptions| o.with_delay(day);
    remote
        .enqueue(vec![1], later(EnqueueOptions::default()))
        .await?;
    remote
        .enqueue(
            vec![2],
            later(EnqueueOptions::default().with_backoff_schedule(vec![])),
        )
        .await?;
    // In one commit with a message on the default schedule.
    let mut op = remote.atomic();
    op.enqueue(
        vec![3],
        later(EnqueueOptions::default().with_backoff_schedule(vec![])),
    )
    .enqueue(vec![4], later(EnqueueOptions::default()))
    .set(key!["with", "enqueues"], kv::KvValue::U64(1));
    op.commit().await?;
    remote
        .enqueue(
            vec![5],
            later(EnqueueOptions::default().with_backoff_schedule(vec![Duration::from_millis(7)])),
        )
        .await?;

    let mut stored: Vec<(Vec<u8>, Vec<u32>)> = Queue::new(backend.clone())
        .peek(10)
        .await?
        .into_iter()
        .map(|m| {
            let schedule = m
                .backoff_schedule
                .unwrap_or(kv::backend::DEFAULT_BACKOFF_SCHEDULE.to_vec());
            (m.payload, schedule)
        })
        .collect();
    stored.sort();
    let default = kv::backend::DEFAULT_BACKOFF_SCHEDULE.to_vec();
    assert_eq!(
        stored,
        vec![
            (vec![1], default.clone()),
            (vec![2], vec![]),
            (vec![3], vec![]),
            (vec![4], default),
            (vec![5], vec![7]),
        ]
    );

    served.stop().await?;
    backend.close().await;
    Ok(())
}
