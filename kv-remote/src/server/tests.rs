use std::sync::Arc;

use async_trait::async_trait;
use kv_core::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, RawEntry, ReadRange, ReadSink, WatchStream,
};
use kv_core::{ManualClock, MemoryBackend};
use prost::Message;

use super::{ServerConfig, bind, serve};
use crate::proto;
use crate::test_log::capture;

const TOKEN: &str = "server-unit-token-01";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// A disk that is full: every commit fails.
#[derive(Debug, Default)]
struct FullDisk(MemoryBackend);

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Backend for FullDisk {
    fn name(&self) -> &str {
        "full"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        c: Consistency,
    ) -> kv_core::Result<Vec<Vec<RawEntry>>> {
        self.0.snapshot_read(ranges, c).await
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        c: Consistency,
        sink: Box<dyn ReadSink>,
    ) -> kv_core::Result<Box<dyn ReadSink>> {
        self.0.snapshot_read_into(ranges, c, sink).await
    }

    async fn atomic_write(&self, _: AtomicWrite) -> kv_core::Result<CommitOutcome> {
        Err(kv_core::Error::backend("full", "database or disk is full"))
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        self.0.watch(keys)
    }

    async fn close(&self) {
        self.0.close().await;
    }
}

/// Runs `f` against a server on `backend` and `clock`, on one thread so
/// that everything it logs is captured.
fn with_server<F: Future<Output = ()>>(
    backend: Arc<dyn Backend>,
    clock: Arc<ManualClock>,
    f: impl FnOnce(String) -> F,
) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    capture(|| {
        runtime.block_on(async {
            let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let config = ServerConfig::new([TOKEN]).with_clock(clock);
            tokio::spawn(serve(listener, backend, config, std::future::pending()));
            f(format!("http://{addr}")).await;
        });
    })
    .1
}

async fn commit(http: &reqwest::Client, base: &str) -> u16 {
    http.post(format!("{base}/v2/atomic_write"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-denokv-version", "3")
        .header("x-denokv-database-id", NIL)
        .body(proto::AtomicWrite::default().encode_to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// On a full disk every write fails; the log says so once per interval,
/// then how many more failed, instead of a line per write.
#[test]
fn failed_writes_are_logged_once_per_interval_with_a_count() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let lines = with_server(
        Arc::new(FullDisk::default()),
        clock.clone(),
        |base| async move {
            let http = reqwest::Client::new();
            for _ in 0..30 {
                assert_eq!(commit(&http, &base).await, 500);
            }
            clock.advance(5000);
            assert_eq!(commit(&http, &base).await, 500);
        },
    );
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert_eq!(failed.len(), 2, "{lines:#?}");
    assert!(failed[0].starts_with("WARN"), "{failed:?}");
    assert!(failed[0].contains("database or disk is full"), "{failed:?}");
    assert!(
        failed[1].contains("request failed (… 29 more in the last 5 s)"),
        "{failed:?}"
    );
}
