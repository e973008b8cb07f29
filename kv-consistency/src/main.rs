//! `kv-consistency`: records concurrent histories on each backend and
//! checks them for linearizability and serializability.
//!
//! ```text
//! kv-consistency [--backends memory,sqlite,sqlite+slow,redb,remote] [--histories 20]
//!                [--slow-histories N]
//!                [--clients 8] [--ops 200] [--seed N] [--faults] [--kv-bin PATH]
//! ```
//!
//! `--faults` adds the `serve+faults` run: a `kv serve` process (from
//! `--kv-bin`, default `target/release/kv`) killed with SIGKILL and
//! restarted, and connections dropped, while the clients run. Prints one
//! line per backend and exits non-zero on any violation.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context, bail};
use kv_consistency::recorder::Workload;
use kv_consistency::run::{Target, run};

const USAGE: &str = "usage: kv-consistency [--backends memory,sqlite,redb,remote] [--histories N] \
[--slow-histories N] [--clients N] [--ops N] [--seed N] [--faults|--no-faults] [--kv-bin PATH] [--show N]";

struct Args {
    backends: Vec<String>,
    histories: usize,
    clients: usize,
    ops: usize,
    seed: u64,
    slow_histories: Option<usize>,
    faults: bool,
    kv_bin: PathBuf,
    show: usize,
}

fn parse() -> anyhow::Result<Args> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("kv-consistency lives in the workspace")?
        .to_path_buf();
    let mut args = Args {
        backends: ["memory", "sqlite", "redb", "remote"]
            .map(String::from)
            .to_vec(),
        histories: 20,
        clients: 8,
        ops: 200,
        seed: 0,
        slow_histories: None,
        faults: false,
        kv_bin: root.join("target/release/kv"),
        show: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--backends" => args.backends = value()?.split(',').map(String::from).collect(),
            "--histories" => args.histories = value()?.parse()?,
            "--slow-histories" => args.slow_histories = Some(value()?.parse()?),
            "--clients" => args.clients = value()?.parse()?,
            "--ops" => args.ops = value()?.parse()?,
            "--seed" => args.seed = value()?.parse()?,
            "--kv-bin" => args.kv_bin = value()?.into(),
            "--show" => args.show = value()?.parse()?,
            "--faults" => args.faults = true,
            "--no-faults" => args.faults = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let mut targets = Vec::new();
    for name in &args.backends {
        targets.push(match name.as_str() {
            "memory" => Target::Memory,
            "sqlite" => Target::Sqlite,
            "sqlite+slow" => Target::SlowSqlite,
            "redb" => Target::Redb,
            "remote" => Target::Remote,
            other => bail!("unknown backend {other:?} (memory, sqlite, sqlite+slow, redb, remote)"),
        });
    }
    if args.faults {
        if !args.kv_bin.exists() {
            bail!(
                "--faults needs the kv binary at {} (cargo build -p kv-server --release, or --kv-bin)",
                args.kv_bin.display()
            );
        }
        targets.push(Target::ServeFaults(args.kv_bin.clone()));
    }
    let workload = Workload::default()
        .with_ops_per_client(args.ops)
        .with_seed(args.seed);
    println!(
        "{:<14} {:>9} {:>10} {:>8} {:>7} {:>10} {:>9}",
        "backend", "histories", "operations", "unknown", "faults", "violations", "time"
    );
    let mut total = 0;
    for target in &targets {
        let histories = match target {
            Target::SlowSqlite => args.slow_histories.unwrap_or(args.histories),
            _ => args.histories,
        };
        let summary = run(target, histories, args.clients, &workload)
            .await
            .with_context(|| format!("recording on {}", target.name()))?;
        println!(
            "{:<14} {:>9} {:>10} {:>8} {:>7} {:>10} {:>8.1}s",
            target.name(),
            summary.histories,
            summary.operations,
            summary.unknown,
            summary.faults.total(),
            summary.violations.len(),
            summary.elapsed.as_secs_f64()
        );
        if summary.faults.total() > 0 {
            println!(
                "{:<14} faults: {} kill -9 + restart, {} connection drops, {} slow-disk stalls",
                "", summary.faults.kills, summary.faults.drops, summary.faults.stalls
            );
        }
        for v in summary.violations.iter().take(args.show) {
            println!("  {v}");
        }
        total += summary.violations.len();
    }
    if total > 0 {
        bail!("{total} consistency violations");
    }
    Ok(())
}
