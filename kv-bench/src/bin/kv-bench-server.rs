//! Load generator of `cargo xtask bench server`: drives a running `kv serve`
//! through kv's own `RemoteBackend` and prints one JSON line per workload
//! (`name`, `ops`, `secs`, `per_sec`, `p50_us`, `p99_us`, extra fields).
//!
//! kv-bench-server --url URL --token TOKEN [--server-pid PID] [--scale F]
//!                 [--only NAME[,NAME..]]
//!
//! `--only` runs just the named workloads (for profiling one of them).
//! With `--server-pid`, each line also gives the processor time the server
//! and this load generator spent per operation (`server_cpu_us_per_op`,
//! `client_cpu_us_per_op`): both share the machine, so the rates alone do
//! not say which side is the limit.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use kv_core::backend::{ReadRange, ReadSink, read_into};
use kv_core::{Consistency, Kv, KvValue, ListOptions, Selector, ValueRef, Versionstamp, key};
use kv_remote::RemoteConfig;

/// The allocator of the `kv` binary, so the client side pays what a
/// server-grade application would.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: kv-bench-server --url URL --token TOKEN [--server-pid PID] [--scale F] [--only NAME[,NAME..]]";

struct Args {
    url: String,
    token: String,
    server_pid: Option<u32>,
    scale: f64,
    only: Option<Vec<String>>,
}

impl Args {
    fn wants(&self, workload: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == workload))
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        url: String::new(),
        token: String::new(),
        server_pid: None,
        scale: 1.0,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--token" => args.token = value()?,
            "--server-pid" => args.server_pid = Some(value()?.parse()?),
            "--scale" => args.scale = value()?.parse()?,
            "--only" => args.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    anyhow::ensure!(!args.url.is_empty(), "--url is required");
    Ok(args)
}

async fn client(args: &Args) -> anyhow::Result<Kv> {
    Ok(Kv::new(
        RemoteConfig::new(args.url.clone(), args.token.clone())
            .connect()
            .await?,
    ))
}

/// Processor time used so far by this process and by the server: what a
/// workload costs each side, apart from how the two share the machine.
#[derive(Clone, Copy)]
struct Cpu {
    client: Option<f64>,
    server: Option<f64>,
}

impl Cpu {
    fn now(server_pid: Option<u32>) -> Cpu {
        Cpu {
            client: cpu_secs("self"),
            server: server_pid.and_then(|pid| cpu_secs(&pid.to_string())),
        }
    }

    /// Microseconds of each process's processor time per operation since
    /// `self`.
    fn per_op(self, server_pid: Option<u32>, ops: usize) -> serde_json::Value {
        let now = Cpu::now(server_pid);
        let us = |before: Option<f64>, after: Option<f64>| {
            let us = (after? - before?) * 1e6 / ops.max(1) as f64;
            Some((us * 10.0).round() / 10.0)
        };
        serde_json::json!({
            "client_cpu_us_per_op": us(self.client, now.client),
            "server_cpu_us_per_op": us(self.server, now.server),
        })
    }
}

/// User plus system time of a process (all its threads, live or ended),
/// from `/proc/PID/stat`; `None` where there is no such file.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15, in USER_HZ ticks (100 per second
    // on every architecture this runs on).
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

fn report(
    name: &str,
    ops: usize,
    secs: f64,
    mut lat: Vec<Duration>,
    cpu: serde_json::Value,
    extra: serde_json::Value,
) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    let mut line = serde_json::json!({
        "name": name,
        "ops": ops,
        "secs": secs,
        "per_sec": ops as f64 / secs,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
    });
    for more in [cpu, extra] {
        if let (Some(map), serde_json::Value::Object(more)) = (line.as_object_mut(), more) {
            map.extend(more);
        }
    }
    println!("{line}");
}

fn value() -> KvValue {
    KvValue::Bytes(vec![7; 100])
}

/// Runs `per_client` operations on each of `clients` connections at once.
async fn concurrent<F, Fut>(
    kvs: &[Kv],
    duration: Duration,
    op: F,
) -> anyhow::Result<(usize, f64, Vec<Duration>)>
where
    F: Fn(Kv, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = kvs
        .iter()
        .enumerate()
        .map(|(i, kv)| {
            let kv = kv.clone();
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while started.elapsed() < duration {
                    let t = Instant::now();
                    op(kv.clone(), i, n).await?;
                    lat.push(t.elapsed());
                    n += 1;
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len(), started.elapsed().as_secs_f64(), all))
}

/// A listing workload: `keys` keys under `prefix`, read `batch` entries
/// per request.
#[derive(Clone, Copy)]
struct ListWorkload {
    prefix: &'static str,
    keys: u64,
    batch: usize,
    how: Listing,
}

/// How a listing workload reads its keys.
#[derive(Clone, Copy)]
enum Listing {
    /// The selector's range read page after page through `RemoteBackend`
    /// into a sink that counts the entries and checks their order: what
    /// every KV Connect client receives before it builds values of its
    /// own. Measures the server, with the least load-generator work beside
    /// it on the shared cores.
    Raw,
    /// `Kv::list(..).collect_all()`: a Rust application's listing, keys
    /// decoded into typed parts.
    Typed,
}

/// Writes the workload's keys, then lists them all from every connection
/// at once: listings done, seconds, latencies, CPU per listing.
async fn listings(
    args: &Args,
    kv: &Kv,
    kvs: &[Kv],
    duration: Duration,
    workload: ListWorkload,
) -> anyhow::Result<(usize, f64, Vec<Duration>, serde_json::Value)> {
    let ListWorkload {
        prefix,
        keys: len,
        batch,
        how,
    } = workload;
    for chunk in 0..len.div_ceil(100) {
        let mut op = kv.atomic();
        for i in chunk * 100..((chunk + 1) * 100).min(len) {
            op.set(key![prefix, i], value());
        }
        op.commit().await?;
    }
    let selector = Selector::prefix(key![prefix]);
    let bounds = selector.bounds()?;
    let cpu = Cpu::now(args.server_pid);
    let (ops, secs, lat) = concurrent(kvs, duration, move |kv, _, _| {
        let (selector, bounds) = (selector.clone(), bounds.clone());
        async move {
            let listed = match how {
                Listing::Typed => {
                    let options = ListOptions::default().with_batch_size(batch);
                    kv.list(selector, options).collect_all().await?.len()
                }
                Listing::Raw => raw_listing(&kv, bounds.start, bounds.end, batch).await?,
            };
            anyhow::ensure!(listed as u64 == len, "listed {listed} keys of {len}");
            Ok(())
        }
    })
    .await?;
    Ok((ops, secs, lat, cpu.per_op(args.server_pid, ops)))
}

/// Reads `[start, end)` in requests of `batch` entries, each starting
/// after the last key of the one before, as `Kv::list` pages; the number
/// of entries read.
async fn raw_listing(
    kv: &Kv,
    mut start: Vec<u8>,
    end: Vec<u8>,
    batch: usize,
) -> anyhow::Result<usize> {
    let mut listed = 0;
    loop {
        let range = ReadRange {
            start,
            end: end.clone(),
            limit: u32::try_from(batch)?,
            reverse: false,
        };
        let page = read_into(
            &**kv.backend(),
            vec![range],
            Consistency::Strong,
            Page::default(),
        );
        let page = page.await?;
        anyhow::ensure!(page.ascending, "a page's keys are out of order");
        listed += page.entries;
        if page.entries < batch {
            return Ok(listed);
        }
        start = page.last;
        start.push(0);
    }
}

/// One page of a raw listing, as a proxy passing entries on sees it: the
/// entries are counted and their order checked, none is copied but the
/// last key (where the next page starts).
#[derive(Default)]
struct Page {
    entries: usize,
    last: Vec<u8>,
    ascending: bool,
}

impl ReadSink for Page {
    fn begin_range(&mut self) {
        self.ascending = true;
    }

    fn entry(&mut self, key: &[u8], _: ValueRef<'_>, _: Versionstamp) {
        self.ascending &= self.entries == 0 || key > self.last.as_slice();
        self.entries += 1;
        self.last.clear();
        self.last.extend_from_slice(key);
    }

    fn clear(&mut self) {
        *self = Page::default();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let n = |base: f64| ((base * args.scale) as usize).max(1);
    let secs = Duration::from_secs_f64((3.0 * args.scale).clamp(0.5, 30.0));
    let kv = client(&args).await?;

    // Sequential set and get: one client, one request at a time.
    if args.wants("sequential_set") {
        let cpu = Cpu::now(args.server_pid);
        let mut lat = Vec::new();
        let t = Instant::now();
        for i in 0..n(2000.0) {
            let s = Instant::now();
            kv.set(key!["rs-seq", i as u64], value()).await?;
            lat.push(s.elapsed());
        }
        let ops = lat.len();
        report(
            "sequential_set",
            ops,
            t.elapsed().as_secs_f64(),
            lat,
            cpu.per_op(args.server_pid, ops),
            serde_json::json!({}),
        );
    }
    if args.wants("sequential_get") {
        let cpu = Cpu::now(args.server_pid);
        let mut lat = Vec::new();
        let t = Instant::now();
        for i in 0..n(5000.0) {
            let s = Instant::now();
            kv.get(key!["rs-seq", (i % n(2000.0)) as u64]).await?;
            lat.push(s.elapsed());
        }
        let ops = lat.len();
        report(
            "sequential_get",
            ops,
            t.elapsed().as_secs_f64(),
            lat,
            cpu.per_op(args.server_pid, ops),
            serde_json::json!({}),
        );
    }

    // 64 connections.
    let mut kvs = Vec::new();
    for _ in 0..64 {
        kvs.push(client(&args).await?);
    }
    if args.wants("writers64") {
        let cpu = Cpu::now(args.server_pid);
        let (ops, s, lat) = concurrent(&kvs, secs, |kv, i, n| async move {
            kv.set(key!["rs-w", i as u64, n], value()).await?;
            Ok(())
        })
        .await?;
        report(
            "writers64",
            ops,
            s,
            lat,
            cpu.per_op(args.server_pid, ops),
            serde_json::json!({"goal_per_sec": 28000}),
        );
    }
    if args.wants("readers64") {
        let cpu = Cpu::now(args.server_pid);
        let (ops, s, lat) = concurrent(&kvs, secs, |kv, i, n| async move {
            kv.get(key!["rs-seq", (i as u64 * 31 + n) % 2000]).await?;
            Ok(())
        })
        .await?;
        report(
            "readers64",
            ops,
            s,
            lat,
            cpu.per_op(args.server_pid, ops),
            serde_json::json!({"goal_per_sec": 30000}),
        );
    }
    let list1000 = |how| ListWorkload {
        prefix: "rs-list",
        keys: 1000,
        batch: 1000,
        how,
    };
    // The goal's measure: the server's listings, read raw.
    if args.wants("list1000_x64_raw") {
        let workload = list1000(Listing::Raw);
        let (ops, s, lat, cpu) = listings(&args, &kv, &kvs, secs, workload).await?;
        let goal = serde_json::json!({"goal_per_sec": 5000});
        report("list1000_x64_raw", ops, s, lat, cpu, goal);
    }
    // The same listings as a Rust application makes them: keys decoded.
    if args.wants("list1000_x64") {
        let workload = list1000(Listing::Typed);
        let (ops, s, lat, cpu) = listings(&args, &kv, &kvs, secs, workload).await?;
        report("list1000_x64", ops, s, lat, cpu, serde_json::json!({}));
    }
    // Deno's default batch (100): the read size of most listings.
    if args.wants("list100_x64") {
        let workload = ListWorkload {
            prefix: "rs-list100",
            keys: 100,
            batch: 100,
            how: Listing::Typed,
        };
        let (ops, s, lat, cpu) = listings(&args, &kv, &kvs, secs, workload).await?;
        report("list100_x64", ops, s, lat, cpu, serde_json::json!({}));
    }

    // Watch notification latency: a second connection watches, the first writes.
    if args.wants("watch_notify") {
        let watcher = client(&args).await?;
        let mut stream = watcher.watch(&[key!["watched"]])?;
        stream.next().await.context("watch ended")??;
        let cpu = Cpu::now(args.server_pid);
        let mut lat = Vec::new();
        let t = Instant::now();
        for i in 0..n(200.0) {
            let s = Instant::now();
            let stamp = kv.set(key!["watched"], KvValue::U64(i as u64)).await?;
            loop {
                let snap = stream.next().await.context("watch ended")??;
                if snap[0].as_ref().is_some_and(|e| e.versionstamp >= stamp) {
                    break;
                }
            }
            lat.push(s.elapsed());
        }
        let ops = lat.len();
        report(
            "watch_notify",
            ops,
            t.elapsed().as_secs_f64(),
            lat,
            cpu.per_op(args.server_pid, ops),
            serde_json::json!({"note": "set ack to notification, includes the set"}),
        );
    }

    // Server memory with 256 open connections.
    if let Some(pid) = args
        .server_pid
        .filter(|_| args.wants("rss_256_connections"))
    {
        let mut conns = kvs;
        for _ in 0..(256 - 64) {
            conns.push(client(&args).await?);
        }
        let conns = Arc::new(conns);
        for kv in conns.iter() {
            kv.get(key!["rs-seq", 1]).await?;
        }
        let rss = rss_kib(pid).unwrap_or(0);
        println!(
            "{}",
            serde_json::json!({"name": "rss_256_connections", "rss_mib": rss as f64 / 1024.0, "goal_mib": 64})
        );
        drop(conns);
    }
    Ok(())
}
