//! Runs every conformance case against every target, as
//! `<target>::<area>::<case>`.
//!
//! With `KV_TEST_URL` unset: the in-process targets (memory, sqlite, redb,
//! remote), and `etcd` when `KV_ETCD_ENDPOINTS` names a cluster
//! (`host:port,host:port`, as `scripts/etcd-cluster.sh start` prints it).
//! With `KV_TEST_URL` set: only that URL, opened with `kv::open_backend`
//! (one client per case; cases are namespaced and may run concurrently).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kv_conformance::{Opened, Target, cases, run};
use kv_core::Clock;
use kv_core::{ManualClock, MemoryBackend, SystemClock};
use libtest_mimic::{Arguments, Failed, Trial};

struct Memory;

impl Target for Memory {
    fn name(&self) -> &str {
        "memory"
    }

    fn open(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<Opened>> + Send + '_>> {
        Box::pin(async {
            let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
            let backend = MemoryBackend::new().with_clock(clock.clone());
            Ok(Opened {
                backend: Arc::new(backend),
                clock: Some(clock),
                shared: false,
            })
        })
    }
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Target for Sqlite {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn open(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<Opened>> + Send + '_>> {
        Box::pin(async {
            let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
            let path = self.dir.path().join(format!("{}.sqlite3", rand_name()));
            let backend = kv_sqlite::SqliteConfig::new(path)
                .with_clock(clock.clone())
                .open()?;
            Ok(Opened {
                backend: Arc::new(backend),
                clock: Some(clock),
                shared: false,
            })
        })
    }
}

struct Redb {
    dir: tempfile::TempDir,
}

impl Target for Redb {
    fn name(&self) -> &str {
        "redb"
    }

    fn open(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<Opened>> + Send + '_>> {
        Box::pin(async {
            let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
            let path = self.dir.path().join(format!("{}.redb", rand_name()));
            let backend = kv_redb::RedbConfig::new(path)
                .with_clock(clock.clone())
                .open()?;
            Ok(Opened {
                backend: Arc::new(backend),
                clock: Some(clock),
                shared: false,
            })
        })
    }
}

/// kv's own KV Connect server in this process, over SQLite, reached through
/// `RemoteBackend`: one server per case.
struct Remote {
    dir: tempfile::TempDir,
}

const TOKEN: &str = "conformance-token-0123456789";

impl Target for Remote {
    fn name(&self) -> &str {
        "remote"
    }

    fn open(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<Opened>> + Send + '_>> {
        Box::pin(async {
            let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
            let path = self.dir.path().join(format!("{}.sqlite3", rand_name()));
            let storage = kv_sqlite::SqliteConfig::new(path)
                .with_clock(clock.clone())
                .open()?;
            let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse()?).await?;
            let config = kv_remote::ServerConfig::new([TOKEN]).with_clock(clock.clone());
            tokio::spawn(kv_remote::serve(
                listener,
                Arc::new(storage),
                config,
                std::future::pending(),
            ));
            let client = kv_remote::RemoteConfig::new(format!("http://{addr}"), TOKEN)
                .connect()
                .await?;
            Ok(Opened {
                backend: Arc::new(client),
                clock: Some(clock),
                shared: false,
            })
        })
    }
}

/// An etcd cluster (`KV_ETCD_ENDPOINTS`). Each case gets a key prefix of
/// its own, so no case sees another's data, and a manual clock.
struct Etcd {
    endpoints: String,
}

impl Target for Etcd {
    fn name(&self) -> &str {
        "etcd"
    }

    fn open(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<Opened>> + Send + '_>> {
        Box::pin(async {
            let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
            let url = format!(
                "etcd://{}/kv-conformance/{:016x}/{}",
                self.endpoints,
                rand::random::<u64>(),
                rand_name()
            );
            let backend = kv_etcd::EtcdConfig::from_url(&url)?
                .with_clock(clock.clone())
                .connect()
                .await?;
            Ok(Opened {
                backend: Arc::new(backend),
                clock: Some(clock),
                shared: false,
            })
        })
    }
}

struct Url(String);

impl Target for Url {
    fn name(&self) -> &str {
        "url"
    }

    fn open(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<Opened>> + Send + '_>> {
        Box::pin(async {
            Ok(Opened {
                backend: kv::open_backend(&self.0).await?,
                clock: None,
                shared: true,
            })
        })
    }
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("case-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn main() -> anyhow::Result<()> {
    let args = Arguments::from_args();
    let mut targets: Vec<Arc<dyn Target>> = match std::env::var("KV_TEST_URL") {
        Ok(url) if !url.is_empty() => vec![Arc::new(Url(url))],
        _ => vec![
            Arc::new(Memory),
            Arc::new(Sqlite {
                dir: tempfile::tempdir()?,
            }),
            Arc::new(Redb {
                dir: tempfile::tempdir()?,
            }),
            Arc::new(Remote {
                dir: tempfile::tempdir()?,
            }),
        ],
    };
    if let Ok(endpoints) = std::env::var("KV_ETCD_ENDPOINTS")
        && !endpoints.is_empty()
        && !std::env::var("KV_TEST_URL").is_ok_and(|u| !u.is_empty())
    {
        targets.push(Arc::new(Etcd { endpoints }));
    }
    let mut trials = Vec::new();
    for target in &targets {
        for case in cases() {
            let target = target.clone();
            let name = format!("{}::{}::{}", target.name(), case.area, case.name);
            trials.push(Trial::test(name, move || {
                run(target, case).map_err(|e| Failed::from(format!("{e:#}")))
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit()
}
