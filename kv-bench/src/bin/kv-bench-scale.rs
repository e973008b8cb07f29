//! Workload driver of `cargo xtask bench scale`: fills a fresh database with
//! `--keys N` keys (`["scale", i]`, 100-byte values) as fast as the backend
//! takes them, closes and opens it again, then measures point gets, sets
//! and 1000-key listings at random places among them, and prints one JSON line per measure:
//! `{"name":"load"|"get"|"set"|"list1000","keys":..,"ops":..,"secs":..,"p50_us":..,"p99_us":..}`
//! (for `load`, the latencies are those of its commits), then, once the
//! database is closed, `{"name":"file","keys":..,"bytes":..,"bytes_per_key":..}`.
//!
//! `bench/deno_scale.ts` does the same on Deno's local KV, with the same
//! keys, values, counts and random sequence; keep the two in step.
//!
//! ```text
//! kv-bench-scale --backend sqlite|redb --path FILE --keys N [--scale F]
//! ```
//!
//! `--scale` multiplies the number of measured operations, not the keys.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use kv_core::{Key, Kv, KvValue, ListOptions, Selector, key};

/// The allocator of the `kv` binary, so the client side pays what a
/// server-grade application would.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: kv-bench-scale --backend sqlite|redb --path FILE --keys N [--scale F]";

/// Keys per loading commit: the most mutations one atomic commit may hold.
const LOAD_BATCH: usize = kv_core::limits::MAX_MUTATIONS;
/// Loading commits in flight at once, so the backend's group commit makes
/// one transaction (and one fsync) of several.
const LOAD_IN_FLIGHT: usize = 8;
const GET_N: usize = 20_000;
const SET_N: usize = 3_000;
const LIST_N: usize = 500;
const LIST_KEYS: usize = 1_000;
const VALUE_LEN: usize = 100;
/// Seeds of the random sequences, one per measure (the Deno script uses
/// the same).
const GET_SEED: u32 = 0x9e37_79b9;
const SET_SEED: u32 = 0x85eb_ca6b;
const LIST_SEED: u32 = 0xc2b2_ae35;

struct Args {
    backend: String,
    path: PathBuf,
    keys: usize,
    scale: f64,
}

fn parse_args() -> anyhow::Result<Args> {
    let (mut backend, mut path, mut keys, mut scale) = (None, None, None, 1.0);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().context(USAGE);
        match arg.as_str() {
            "--backend" => backend = Some(value()?),
            "--path" => path = Some(PathBuf::from(value()?)),
            "--keys" => keys = Some(value()?.parse().context("--keys takes a count")?),
            "--scale" => {
                scale = value()?.parse().context("--scale takes a number")?;
                ensure!(
                    f64::is_finite(scale) && scale > 0.0,
                    "--scale must be positive"
                );
            }
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let args = Args {
        backend: backend.context(USAGE)?,
        path: path.context(USAGE)?,
        keys: keys.context(USAGE)?,
        scale,
    };
    ensure!(
        args.keys >= LIST_KEYS,
        "--keys must be at least {LIST_KEYS}, the length of a listing"
    );
    Ok(args)
}

fn open(args: &Args) -> anyhow::Result<Kv> {
    let path = &args.path;
    let kv = match args.backend.as_str() {
        "sqlite" => Kv::new(
            kv_sqlite::SqliteBackend::open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        "redb" => Kv::new(
            kv_redb::RedbBackend::open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        other => bail!("unknown backend `{other}` (sqlite or redb)"),
    };
    Ok(kv)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    ensure!(
        !args.path.exists(),
        "{} exists: the benchmark starts from a fresh file",
        args.path.display()
    );
    eprintln!("kv-bench-scale: {} keys on {}", args.keys, args.backend);
    let loader = Bench {
        kv: open(&args)?,
        keys: args.keys,
        scale: args.scale,
    };
    println!(
        "{}",
        loader.load().await.context("loading")?.json(args.keys)
    );
    // Closed and opened again, so the measures meet the database at rest
    // rather than beside the load's background work (SQLite's checkpoint
    // of everything just written).
    loader.kv.close().await;
    let kv = open(&args)?;
    let bench = Bench {
        kv: kv.clone(),
        ..loader
    };
    for (name, seed) in [
        ("get", GET_SEED),
        ("list1000", LIST_SEED),
        ("set", SET_SEED),
    ] {
        let stats = bench
            .measure(name, seed)
            .await
            .with_context(|| format!("measure {name}"))?;
        println!("{}", stats.json(args.keys));
    }
    kv.close().await;
    let bytes = file_bytes(&args.path)?;
    println!(
        "{}",
        serde_json::json!({
            "name": "file",
            "keys": args.keys,
            "bytes": bytes,
            "bytes_per_key": (bytes as f64 / args.keys as f64 * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

/// The bytes the database takes on disk once closed: its file and, for
/// SQLite, a write-ahead log left beside it.
fn file_bytes(path: &Path) -> anyhow::Result<u64> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut total = 0;
    for file in [path, Path::new(&wal)] {
        match std::fs::metadata(file) {
            Ok(meta) => total += meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file != path => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }
    Ok(total)
}

/// The result of one measure.
struct Stats {
    name: &'static str,
    ops: usize,
    secs: f64,
    latencies: Vec<Duration>,
}

impl Stats {
    fn json(mut self, keys: usize) -> String {
        self.latencies.sort_unstable();
        let pct = |p: usize| -> f64 {
            if self.latencies.is_empty() {
                return 0.0;
            }
            let i = (self.latencies.len() * p / 100).min(self.latencies.len() - 1);
            (self.latencies[i].as_secs_f64() * 1e7).round() / 10.0
        };
        serde_json::json!({
            "name": self.name,
            "keys": keys,
            "ops": self.ops,
            "secs": self.secs,
            "p50_us": pct(50),
            "p99_us": pct(99),
        })
        .to_string()
    }
}

/// Marsaglia's xorshift32: the same sequence in the Deno script, where
/// 32-bit shifts and xors are exact.
struct Rng(u32);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x as usize % n
    }
}

struct Bench {
    kv: Kv,
    keys: usize,
    scale: f64,
}

fn value() -> KvValue {
    KvValue::Bytes(vec![b'x'; VALUE_LEN])
}

/// Key parts are JavaScript numbers (`f64`), as in the Deno script.
fn k(i: usize) -> Key {
    key!["scale", i as f64]
}

impl Bench {
    fn n(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }

    /// Writes `scale/0..keys` in ascending order, in commits of
    /// `LOAD_BATCH` keys with `LOAD_IN_FLIGHT` of them in flight.
    async fn load(&self) -> anyhow::Result<Stats> {
        let batches = self.keys.div_ceil(LOAD_BATCH);
        let start = Instant::now();
        let latencies: Vec<Duration> = futures::stream::iter(0..batches)
            .map(|b| {
                let v = value();
                let mut op = self.kv.atomic();
                for i in b * LOAD_BATCH..((b + 1) * LOAD_BATCH).min(self.keys) {
                    op.set(k(i), v.clone());
                }
                async move {
                    let t = Instant::now();
                    let outcome = op.commit().await?;
                    ensure!(
                        outcome.is_ok(),
                        "a loading commit without checks failed its checks"
                    );
                    Ok(t.elapsed())
                }
            })
            .buffer_unordered(LOAD_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(Stats {
            name: "load",
            ops: self.keys,
            secs: start.elapsed().as_secs_f64(),
            latencies,
        })
    }

    /// One operation after another at random places: `get` a key, `set`
    /// (overwrite) a key, list `list1000` keys from a key on.
    async fn measure(&self, name: &'static str, seed: u32) -> anyhow::Result<Stats> {
        let ops = match name {
            "get" => self.n(GET_N),
            "set" => self.n(SET_N),
            "list1000" => self.n(LIST_N),
            other => bail!("unknown measure `{other}`"),
        };
        let mut rng = Rng(seed);
        let v = value();
        let mut latencies = Vec::with_capacity(ops);
        let start = Instant::now();
        for _ in 0..ops {
            match name {
                "get" => {
                    let i = rng.below(self.keys);
                    let t = Instant::now();
                    let entry = self.kv.get(k(i)).await?;
                    latencies.push(t.elapsed());
                    ensure!(entry.is_some(), "key scale/{i} is missing");
                }
                "set" => {
                    let i = rng.below(self.keys);
                    let t = Instant::now();
                    self.kv.set(k(i), v.clone()).await?;
                    latencies.push(t.elapsed());
                }
                _ => {
                    let i = rng.below(self.keys - LIST_KEYS + 1);
                    let selector = Selector::range(k(i), k(i + LIST_KEYS));
                    let t = Instant::now();
                    let entries = self
                        .kv
                        .list(selector, ListOptions::default())
                        .collect_all()
                        .await?;
                    latencies.push(t.elapsed());
                    ensure!(
                        entries.len() == LIST_KEYS,
                        "listed {} keys from scale/{i}, expected {LIST_KEYS}",
                        entries.len()
                    );
                }
            }
        }
        Ok(Stats {
            name,
            ops,
            secs: start.elapsed().as_secs_f64(),
            latencies,
        })
    }
}
