//! Workload driver for `cargo xtask bench embedded` and `cargo xtask etcd
//! bench`: runs Deno-KV-style workloads on kv (SQLite on a file by default,
//! or any `kv::open` URL) and prints one JSON line per workload on stdout:
//! `{"name":..,"ops":..,"secs":..,"p50_us":..,"p99_us":..}`.
//!
//! `bench/deno_embedded.ts` runs the same workloads, with the same keys,
//! values and counts, on Deno's built-in KV; keep the two in step.
//!
//! ```text
//! kv-bench [--path FILE] [--workload NAME,..|all] [--backend sqlite|redb|memory|URL] [--scale F]
//! ```
//!
//! A URL backend (`etcd://…` with the `etcd` feature, `http://…`) needs no
//! `--path`.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kv_core::{Consistency, Key, Kv, KvValue, ListOptions, Selector, key};

/// The allocator of the `kv` binary, so the client side pays what a
/// server-grade application would.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Workload names, in the order `all` runs them.
const WORKLOADS: &[&str] = &[
    "set",
    "get",
    "counter",
    "sum",
    "list1000",
    "get_many10",
    "writers64",
];

/// Workloads that run only when named: Deno's local KV has no eventual
/// reads to compare with.
const NAMED_ONLY: &[&str] = &["get_eventual"];

const SET_N: usize = 20_000;
const GET_N: usize = 100_000;
const GET_KEYS: usize = 10_000;
const COUNTER_N: usize = 10_000;
const SUM_N: usize = 20_000;
const LIST_KEYS: usize = 1_000;
const LIST_N: usize = 500;
const GET_MANY_N: usize = 20_000;
const GET_MANY_KEYS: usize = 1_000;
const WRITERS: usize = 64;
const WRITER_SETS: usize = 1_000;
const WRITERS_MAX_SECS: f64 = 3.0;
/// Keys per untimed setup commit.
const SETUP_BATCH: usize = 100;
const VALUE_LEN: usize = 100;

struct Args {
    path: Option<PathBuf>,
    /// Workload names in the order to run them (`all` expanded).
    workloads: Vec<&'static str>,
    backend: String,
    scale: f64,
}

fn parse_args() -> anyhow::Result<Args> {
    const USAGE: &str = "usage: kv-bench [--path FILE] [--workload NAME,..|all] [--backend sqlite|redb|memory|URL] [--scale F]";
    let mut workload = "all".to_owned();
    let mut args = Args {
        path: None,
        workloads: Vec::new(),
        backend: "sqlite".into(),
        scale: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().context(USAGE);
        match arg.as_str() {
            "--path" => args.path = Some(value()?.into()),
            "--workload" => workload = value()?,
            "--backend" => args.backend = value()?,
            "--scale" => {
                args.scale = value()?.parse().context("--scale takes a number")?;
                if !args.scale.is_finite() || args.scale <= 0.0 {
                    bail!("--scale must be positive");
                }
            }
            "-h" | "--help" => {
                eprintln!(
                    "{USAGE}\nworkloads: {}",
                    WORKLOADS
                        .iter()
                        .chain(NAMED_ONLY)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    for name in workload.split(',') {
        if name == "all" {
            args.workloads.extend(WORKLOADS);
            continue;
        }
        match WORKLOADS.iter().chain(NAMED_ONLY).find(|w| **w == name) {
            Some(w) => args.workloads.push(w),
            None => bail!(
                "unknown workload `{name}`; known: all, {}, {}",
                WORKLOADS.join(", "),
                NAMED_ONLY.join(", ")
            ),
        }
    }
    Ok(args)
}

async fn open(args: &Args) -> anyhow::Result<Kv> {
    if args.backend.contains("://") {
        return kv::open(&args.backend)
            .await
            .with_context(|| format!("opening {}", args.backend));
    }
    match args.backend.as_str() {
        "memory" => Ok(Kv::new(kv_core::MemoryBackend::new())),
        "sqlite" => {
            let path = args
                .path
                .as_ref()
                .context("--path FILE is required for sqlite")?;
            let backend = kv_sqlite::SqliteBackend::open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            Ok(Kv::new(backend))
        }
        "redb" => {
            let path = args
                .path
                .as_ref()
                .context("--path FILE is required for redb")?
                .with_extension("redb");
            let backend = kv_redb::RedbBackend::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            Ok(Kv::new(backend))
        }
        other => bail!("unknown backend `{other}` (sqlite, redb, memory or a URL)"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let kv = open(&args).await?;
    let bench = Bench {
        kv: kv.clone(),
        scale: args.scale,
    };
    for &name in &args.workloads {
        eprintln!("kv-bench: {name}");
        let stats = bench
            .run(name)
            .await
            .with_context(|| format!("workload {name}"))?;
        println!("{}", stats.json());
    }
    kv.close().await;
    Ok(())
}

/// The result of one workload.
struct Stats {
    name: &'static str,
    ops: usize,
    secs: f64,
    latencies: Vec<Duration>,
}

impl Stats {
    fn json(mut self) -> String {
        self.latencies.sort_unstable();
        let pct = |p: usize| -> f64 {
            if self.latencies.is_empty() {
                return 0.0;
            }
            let i = (self.latencies.len() * p / 100).min(self.latencies.len() - 1);
            self.latencies[i].as_secs_f64() * 1e6
        };
        let (p50, p99) = (pct(50), pct(99));
        serde_json::json!({
            "name": self.name,
            "ops": self.ops,
            "secs": self.secs,
            "p50_us": (p50 * 10.0).round() / 10.0,
            "p99_us": (p99 * 10.0).round() / 10.0,
        })
        .to_string()
    }
}

struct Bench {
    kv: Kv,
    scale: f64,
}

fn value() -> KvValue {
    KvValue::Bytes(vec![b'x'; VALUE_LEN])
}

/// Key parts are JavaScript numbers (`f64`), as in the Deno script.
fn k(prefix: &str, i: usize) -> Key {
    key![prefix, i as f64]
}

impl Bench {
    fn n(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }

    async fn run(&self, name: &'static str) -> anyhow::Result<Stats> {
        match name {
            "set" => self.set(name).await,
            "get" => self.get(name, Consistency::Strong).await,
            "get_eventual" => self.get(name, Consistency::Eventual).await,
            "counter" => self.counter(name).await,
            "sum" => self.sum(name).await,
            "list1000" => self.list(name).await,
            "get_many10" => self.get_many(name).await,
            "writers64" => self.writers(name).await,
            other => bail!("unknown workload `{other}`"),
        }
    }

    /// Writes `prefix/0..count` in untimed batches.
    async fn fill(&self, prefix: &str, count: usize) -> anyhow::Result<()> {
        let v = value();
        for start in (0..count).step_by(SETUP_BATCH) {
            let mut op = self.kv.atomic();
            for i in start..(start + SETUP_BATCH).min(count) {
                op.set(k(prefix, i), v.clone());
            }
            let outcome = op.commit().await?;
            if !outcome.is_ok() {
                bail!("a setup commit without checks failed its checks");
            }
        }
        Ok(())
    }

    async fn set(&self, name: &'static str) -> anyhow::Result<Stats> {
        let n = self.n(SET_N);
        let v = value();
        let mut latencies = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            self.kv.set(k("set", i), v.clone()).await?;
            latencies.push(t.elapsed());
        }
        Ok(Stats {
            name,
            ops: n,
            secs: start.elapsed().as_secs_f64(),
            latencies,
        })
    }

    /// Point reads of 10,000 keys, round-robin.
    async fn get(&self, name: &'static str, consistency: Consistency) -> anyhow::Result<Stats> {
        let keys = self.n(GET_KEYS);
        self.fill("get", keys).await?;
        let n = self.n(GET_N);
        let mut latencies = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            let entry = self.kv.get_with(k("get", i % keys), consistency).await?;
            latencies.push(t.elapsed());
            if entry.is_none() {
                bail!("key get/{} is missing", i % keys);
            }
        }
        Ok(Stats {
            name,
            ops: n,
            secs: start.elapsed().as_secs_f64(),
            latencies,
        })
    }

    /// Read the counter, then commit `check(versionstamp) + set(n + 1)`.
    async fn counter(&self, name: &'static str) -> anyhow::Result<Stats> {
        let n = self.n(COUNTER_N);
        let counter = key!["counter"];
        let mut latencies = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            loop {
                let entry = self.kv.get(counter.clone()).await?;
                let (current, stamp) = match entry {
                    Some(e) => match e.value {
                        KvValue::U64(c) => (c, Some(e.versionstamp)),
                        other => bail!("counter holds {other:?}"),
                    },
                    None => (0, None),
                };
                let outcome = self
                    .kv
                    .atomic()
                    .check(counter.clone(), stamp)
                    .set(counter.clone(), KvValue::U64(current + 1))
                    .commit()
                    .await?;
                if outcome.is_ok() {
                    break;
                }
            }
            latencies.push(t.elapsed());
        }
        let secs = start.elapsed().as_secs_f64();
        match self.kv.get(counter).await?.map(|e| e.value) {
            Some(KvValue::U64(c)) if c == n as u64 => {}
            other => bail!("counter ended at {other:?}, expected {n}"),
        }
        Ok(Stats {
            name,
            ops: n,
            secs,
            latencies,
        })
    }

    async fn sum(&self, name: &'static str) -> anyhow::Result<Stats> {
        let n = self.n(SUM_N);
        let mut latencies = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            self.kv.atomic().sum(key!["sum"], 1).commit().await?;
            latencies.push(t.elapsed());
        }
        Ok(Stats {
            name,
            ops: n,
            secs: start.elapsed().as_secs_f64(),
            latencies,
        })
    }

    /// Lists a 1000-key prefix with the default batch size (100).
    async fn list(&self, name: &'static str) -> anyhow::Result<Stats> {
        self.fill("list", LIST_KEYS).await?;
        let n = self.n(LIST_N);
        let mut latencies = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let entries = self
                .kv
                .list(Selector::prefix(key!["list"]), ListOptions::default())
                .collect_all();
            let entries = entries.await?;
            latencies.push(t.elapsed());
            if entries.len() != LIST_KEYS {
                bail!("listed {} keys, expected {LIST_KEYS}", entries.len());
            }
        }
        Ok(Stats {
            name,
            ops: n,
            secs: start.elapsed().as_secs_f64(),
            latencies,
        })
    }

    async fn get_many(&self, name: &'static str) -> anyhow::Result<Stats> {
        self.fill("gm", GET_MANY_KEYS).await?;
        let n = self.n(GET_MANY_N);
        let batches: Vec<Vec<Key>> = (0..GET_MANY_KEYS / 10)
            .map(|b| (0..10).map(|j| k("gm", b * 10 + j)).collect())
            .collect();
        let mut latencies = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let keys = &batches[i % batches.len()];
            let t = Instant::now();
            let entries = self.kv.get_many(keys).await?;
            latencies.push(t.elapsed());
            if entries.iter().any(Option::is_none) {
                bail!("getMany found a missing key");
            }
        }
        Ok(Stats {
            name,
            ops: n,
            secs: start.elapsed().as_secs_f64(),
            latencies,
        })
    }

    /// 64 tasks, each setting its own keys until it has done its share or
    /// the time is up; reports total commits per second.
    async fn writers(&self, name: &'static str) -> anyhow::Result<Stats> {
        let per_task = self.n(WRITER_SETS);
        let deadline = Duration::from_secs_f64(WRITERS_MAX_SECS);
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(WRITERS);
        for w in 0..WRITERS {
            let kv = self.kv.clone();
            tasks.push(tokio::spawn(async move {
                let v = value();
                let mut latencies = Vec::with_capacity(per_task);
                for j in 0..per_task {
                    if start.elapsed() >= deadline {
                        break;
                    }
                    let t = Instant::now();
                    kv.set(key!["w", w as f64, j as f64], v.clone()).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, kv_core::Error>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.context("a writer task panicked")??);
        }
        let secs = start.elapsed().as_secs_f64();
        Ok(Stats {
            name,
            ops: latencies.len(),
            secs,
            latencies,
        })
    }
}
