//! `kv-consistency`: records concurrent histories on each backend and
//! checks them for linearizability and serializability.
//!
//! ```text
//! kv-consistency [--backends memory,sqlite,sqlite+slow,redb,remote] [--histories 20]
//!                [--fault-histories N] [--etcd HOST:PORT,.. --etcd-dir DIR]
//!                [--clients 8] [--ops 200] [--seed N] [--faults] [--processes]
//!                [--kv-bin PATH]
//! ```
//!
//! `--faults` adds the `serve+faults` run: a `kv serve` process (from
//! `--kv-bin`, default `target/release/kv`) killed with SIGKILL and
//! restarted, and connections dropped, while the clients run;
//! `--processes` adds `serve+procs`, the same with every client a process
//! of its own (`kv-consistency client`, which prints its operations as JSON
//! lines). `--etcd` adds `etcd+kills`: a cluster started by
//! `scripts/etcd-cluster.sh` whose leader is killed and restarted while the
//! clients run. `--fault-histories` sets the history count of the runs with
//! faults (default: `--histories`). Prints one line per backend, then how
//! stale strong and eventual reads were, and exits non-zero on any
//! violation.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{Context, bail};
use kv_consistency::etcd::EtcdCluster;
use kv_consistency::recorder::{Clock, Workload, run_client};
use kv_consistency::run::{Target, connect_retrying, run};
use kv_consistency::wire::{from_line, to_line};

const USAGE: &str = "usage: kv-consistency [--backends memory,sqlite,redb,remote] [--histories N] \
[--fault-histories N] [--clients N] [--ops N] [--seed N] [--faults|--no-faults] [--processes] [--kv-bin PATH] [--show N]
       [--etcd HOST:PORT,.. --etcd-dir DIR]  (a cluster from scripts/etcd-cluster.sh)
       kv-consistency check FILE.jsonl..   (histories written under KV_CONSISTENCY_DUMP=DIR)
       kv-consistency client --url URL --token TOKEN --id N --seed N --ops N --op-timeout-ms N";

struct Args {
    backends: Vec<String>,
    histories: usize,
    clients: usize,
    ops: usize,
    seed: u64,
    fault_histories: Option<usize>,
    faults: bool,
    processes: bool,
    etcd: Option<String>,
    etcd_dir: Option<PathBuf>,
    root: PathBuf,
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
        fault_histories: None,
        faults: false,
        processes: false,
        etcd: None,
        etcd_dir: None,
        kv_bin: root.join("target/release/kv"),
        root,
        show: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--backends" => {
                args.backends = value()?
                    .split(',')
                    .filter(|b| !b.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--histories" => args.histories = value()?.parse()?,
            "--fault-histories" => args.fault_histories = Some(value()?.parse()?),
            "--clients" => args.clients = value()?.parse()?,
            "--ops" => args.ops = value()?.parse()?,
            "--seed" => args.seed = value()?.parse()?,
            "--kv-bin" => args.kv_bin = value()?.into(),
            "--etcd" => args.etcd = Some(value()?),
            "--etcd-dir" => args.etcd_dir = Some(value()?.into()),
            "--show" => args.show = value()?.parse()?,
            "--faults" => args.faults = true,
            "--processes" => args.processes = true,
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
    match std::env::args().nth(1).as_deref() {
        Some("client") => return client().await,
        Some("check") => return check_files(),
        _ => {}
    }
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
    if (args.faults || args.processes) && !args.kv_bin.exists() {
        bail!(
            "--faults and --processes need the kv binary at {} (cargo build -p kv-server, or --kv-bin)",
            args.kv_bin.display()
        );
    }
    if args.faults {
        targets.push(Target::ServeFaults(args.kv_bin.clone()));
    }
    if let Some(endpoints) = &args.etcd {
        let dir = args
            .etcd_dir
            .clone()
            .context("--etcd needs --etcd-dir, the directory scripts/etcd-cluster.sh printed")?;
        targets.push(Target::Etcd(EtcdCluster {
            endpoints: endpoints.split(',').map(String::from).collect(),
            dir,
            script: args.root.join("scripts/etcd-cluster.sh"),
        }));
    }
    if args.processes {
        targets.push(Target::ServeProcesses {
            kv: args.kv_bin.clone(),
            client: std::env::current_exe().context("finding this binary")?,
        });
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
            Target::Memory | Target::Sqlite | Target::Redb | Target::Remote => args.histories,
            _ => args.fault_histories.unwrap_or(args.histories),
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
        let f = summary.faults;
        if f.total() > 0 {
            println!(
                "{:<14} faults: {} kill -9 + restart, {} connection drops, {} slow-disk stalls, {} leader kills",
                "", f.kills, f.drops, f.stalls, f.leader_kills
            );
        }
        let st = &summary.staleness;
        for (kind, samples) in [("strong", &st.strong), ("eventual", &st.eventual)] {
            let (max, p99) = samples.behind_max_p99();
            let (age_max, age_p99) = samples.age_max_p99();
            println!(
                "{:<14} {kind} reads: {}, stale {}; versions behind max {max} p99 {p99}; age max {:.1} ms p99 {:.1} ms",
                "",
                samples.reads,
                samples.stale(),
                age_max.as_secs_f64() * 1e3,
                age_p99.as_secs_f64() * 1e3,
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

/// `kv-consistency client …`: one client of a `serve+procs` history, in a
/// process of its own. It runs its share of the workload against the
/// server and prints each operation as a JSON line (`wire`), timed by the
/// system-wide monotonic clock; the parent merges and checks them.
async fn client() -> anyhow::Result<()> {
    use std::io::Write;

    let (mut url, mut token, mut id, mut seed, mut ops, mut timeout_ms) =
        (None, None, None, 0u64, 200usize, 3000u64);
    // Collected first: `Args` may not be held across an await.
    let args: Vec<String> = std::env::args().skip(2).collect();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{arg} needs a value\n{USAGE}"))?;
        match arg.as_str() {
            "--url" => url = Some(value),
            "--token" => token = Some(value),
            "--id" => id = Some(value.parse::<u32>()?),
            "--seed" => seed = value.parse()?,
            "--ops" => ops = value.parse()?,
            "--op-timeout-ms" => timeout_ms = value.parse()?,
            other => bail!("unknown client argument {other:?}\n{USAGE}"),
        }
    }
    let (Some(url), Some(token), Some(id)) = (url, token, id) else {
        bail!("client needs --url, --token and --id\n{USAGE}");
    };
    let workload = Workload::default()
        .with_ops_per_client(ops)
        .with_seed(seed)
        .with_op_timeout(std::time::Duration::from_millis(timeout_ms));
    let kv = connect_retrying(&url, &token).await?;
    let history = run_client(kv.clone(), id, workload, Clock::system()).await;
    kv.close().await;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for op in &history {
        writeln!(out, "{}", to_line(op))?;
    }
    out.flush()?;
    Ok(())
}

/// `kv-consistency check FILE..`: checks histories that a run wrote (with
/// `KV_CONSISTENCY_DUMP=DIR`) for the default workload's key layout, and
/// prints every violation.
fn check_files() -> anyhow::Result<()> {
    let mut total = 0;
    for file in std::env::args().skip(2) {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
        let mut history = Workload::default().empty_history();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            history.ops.push(from_line(line)?);
        }
        let violations = kv_consistency::check(&history);
        println!(
            "{file}: {} operations, {} violations",
            history.len(),
            violations.len()
        );
        for v in &violations {
            println!("  {v}");
        }
        total += violations.len();
    }
    if total > 0 {
        bail!("{total} consistency violations");
    }
    Ok(())
}
