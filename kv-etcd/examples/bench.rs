//! The workloads of `kv-bench` (kv's embedded and server benchmarks) on an
//! etcd cluster, one JSON line per workload on stdout:
//! `{"name":..,"ops":..,"secs":..,"p50_us":..,"p99_us":..}`.
//!
//! ```text
//! cargo run -p kv-etcd --example bench -- --url etcd://HOST:PORT,…/PREFIX \
//!     [--workload NAME|all] [--scale F]
//! ```
//!
//! `cargo xtask etcd bench` starts a 3-member loopback cluster and runs it.
//! Counts are kv-bench's times `--scale` (default 0.05: every commit waits
//! for fsyncs on two members, so the full counts would take minutes).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kv_core::{Consistency, Key, Kv, KvValue, ListOptions, Selector, key};
use kv_etcd::EtcdConfig;

const WORKLOADS: &[&str] = &[
    "set",
    "get",
    "get_eventual",
    "counter",
    "sum",
    "list1000",
    "get_many10",
    "writers64",
];

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
const SETUP_BATCH: usize = 100;
const VALUE_LEN: usize = 100;

const USAGE: &str =
    "usage: bench --url etcd://HOST:PORT,…/PREFIX [--workload NAME|all] [--scale F]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut url = None;
    let mut workload = "all".to_owned();
    let mut scale = 0.05f64;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().context(USAGE);
        match arg.as_str() {
            "--url" => url = Some(value()?),
            "--workload" => workload = value()?,
            "--scale" => scale = value()?.parse().context("--scale takes a number")?,
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if !(scale.is_finite() && scale > 0.0) {
        bail!("--scale must be positive");
    }
    if workload != "all" && !WORKLOADS.contains(&workload.as_str()) {
        bail!(
            "unknown workload `{workload}`; known: {}",
            WORKLOADS.join(", ")
        );
    }
    let url = url.context(USAGE)?;
    let kv = Kv::new(EtcdConfig::from_url(&url)?.connect().await?);
    let bench = Bench {
        kv: kv.clone(),
        scale,
    };
    for name in WORKLOADS
        .iter()
        .copied()
        .filter(|w| workload == "all" || workload == *w)
    {
        eprintln!("bench: {name}");
        let stats = bench
            .run(name)
            .await
            .with_context(|| format!("workload {name}"))?;
        println!("{}", stats.json());
    }
    kv.close().await;
    Ok(())
}

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
            (self.latencies[i].as_secs_f64() * 1e7).round() / 10.0
        };
        format!(
            r#"{{"name":"{}","ops":{},"secs":{:.3},"p50_us":{},"p99_us":{}}}"#,
            self.name,
            self.ops,
            self.secs,
            pct(50),
            pct(99)
        )
    }
}

struct Bench {
    kv: Kv,
    scale: f64,
}

fn value() -> KvValue {
    KvValue::Bytes(vec![b'x'; VALUE_LEN])
}

fn k(prefix: &str, i: usize) -> Key {
    key![prefix, i as f64]
}

/// Times `n` runs of `op`.
async fn timed<F, Fut>(name: &'static str, n: usize, mut op: F) -> anyhow::Result<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        op(i).await?;
        latencies.push(t.elapsed());
    }
    Ok(Stats {
        name,
        ops: n,
        secs: start.elapsed().as_secs_f64(),
        latencies,
    })
}

impl Bench {
    fn n(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }

    async fn run(&self, name: &'static str) -> anyhow::Result<Stats> {
        let kv = &self.kv;
        match name {
            "set" => {
                timed(name, self.n(SET_N), |i| async move {
                    kv.set(k("set", i), value()).await?;
                    Ok(())
                })
                .await
            }
            "get" | "get_eventual" => {
                let keys = self.n(GET_KEYS);
                self.fill("get", keys).await?;
                let consistency = if name == "get" {
                    Consistency::Strong
                } else {
                    Consistency::Eventual
                };
                timed(name, self.n(GET_N), |i| async move {
                    let got = kv.get_with(k("get", i % keys), consistency).await?;
                    got.context("a key is missing")?;
                    Ok(())
                })
                .await
            }
            "counter" => {
                let n = self.n(COUNTER_N);
                let stats = timed(name, n, |_| async move {
                    loop {
                        let entry = kv.get(key!["counter"]).await?;
                        let (current, stamp) = match entry {
                            Some(e) => match e.value {
                                KvValue::U64(c) => (c, Some(e.versionstamp)),
                                other => bail!("counter holds {other:?}"),
                            },
                            None => (0, None),
                        };
                        let o = kv
                            .atomic()
                            .check(key!["counter"], stamp)
                            .set(key!["counter"], KvValue::U64(current + 1))
                            .commit()
                            .await?;
                        if o.is_ok() {
                            return Ok(());
                        }
                    }
                })
                .await?;
                match kv.get(key!["counter"]).await?.map(|e| e.value) {
                    Some(KvValue::U64(c)) if c == n as u64 => Ok(stats),
                    other => bail!("counter ended at {other:?}, expected {n}"),
                }
            }
            "sum" => {
                timed(name, self.n(SUM_N), |_| async move {
                    kv.atomic().sum(key!["sum"], 1).commit().await?;
                    Ok(())
                })
                .await
            }
            "list1000" => {
                self.fill("list", LIST_KEYS).await?;
                timed(name, self.n(LIST_N), |_| async move {
                    let entries = kv
                        .list(Selector::prefix(key!["list"]), ListOptions::default())
                        .collect_all()
                        .await?;
                    if entries.len() != LIST_KEYS {
                        bail!("listed {} keys", entries.len());
                    }
                    Ok(())
                })
                .await
            }
            "get_many10" => {
                self.fill("gm", GET_MANY_KEYS).await?;
                let batches: Vec<Vec<Key>> = (0..GET_MANY_KEYS / 10)
                    .map(|b| (0..10).map(|j| k("gm", b * 10 + j)).collect())
                    .collect();
                let batches = &batches;
                timed(name, self.n(GET_MANY_N), |i| async move {
                    let got = kv.get_many(&batches[i % batches.len()]).await?;
                    if got.iter().any(Option::is_none) {
                        bail!("a key is missing");
                    }
                    Ok(())
                })
                .await
            }
            "writers64" => self.writers(name).await,
            other => bail!("unknown workload `{other}`"),
        }
    }

    async fn fill(&self, prefix: &str, count: usize) -> anyhow::Result<()> {
        for start in (0..count).step_by(SETUP_BATCH) {
            let mut op = self.kv.atomic();
            for i in start..(start + SETUP_BATCH).min(count) {
                op.set(k(prefix, i), value());
            }
            op.commit().await?;
        }
        Ok(())
    }

    /// 64 tasks setting their own keys until each has done kv-bench's
    /// share (unscaled) or the 3 s are up.
    async fn writers(&self, name: &'static str) -> anyhow::Result<Stats> {
        let per_task = WRITER_SETS;
        let deadline = Duration::from_secs_f64(WRITERS_MAX_SECS);
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(WRITERS);
        for w in 0..WRITERS {
            let kv = self.kv.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for j in 0..per_task {
                    if start.elapsed() >= deadline {
                        break;
                    }
                    let t = Instant::now();
                    kv.set(key!["w", w as f64, j as f64], value()).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, kv_core::Error>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.context("a writer task panicked")??);
        }
        Ok(Stats {
            name,
            ops: latencies.len(),
            secs: start.elapsed().as_secs_f64(),
            latencies,
        })
    }
}
