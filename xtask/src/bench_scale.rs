//! `cargo xtask bench scale`: how kv's file backends hold up as the data
//! grows. For each size (10 k, 1 M and 10 M keys of 100-byte values by
//! default), a fresh SQLite and a fresh redb file are filled as fast as they
//! take it (`kv-bench-scale`: commits of 1,000 keys, eight in flight for the
//! group commit), then point gets, sets and 1000-key listings at random
//! places are timed one after another, and the file's size per key is
//! taken once closed; Deno's own local KV does the same work
//! (`bench/deno_scale.ts`) at the sizes up to 1 M. The goal: p99 at 10 M
//! within 2x of p99 at 10 k.
//!
//! `cargo xtask ci` runs a bounded variant ([`ci`], or
//! `cargo xtask bench scale --ci`: 10 k and 100 k keys on both backends,
//! Deno at 10 k, a quarter of the operations, from the dev build) that
//! checks every figure is there and positive and asserts no timing.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

use crate::bench::{micros, thousands};
use crate::{artifacts, bench_doc, project_root, target_dir, tools};

const USAGE: &str = "usage: cargo xtask bench scale [--sizes 10k,1M,10M] [--deno-sizes 10k,1M] \
                     [--kv-backend sqlite,redb] [--scale F] [--write-doc] | bench scale --ci";

/// The full run's sizes.
const SIZES: &[u64] = &[10_000, 1_000_000, 10_000_000];
/// Deno runs at the sizes up to this one unless `--deno-sizes` says.
const DENO_MAX: u64 = 1_000_000;
const BACKENDS: &[&str] = &["sqlite", "redb"];
/// The bounded variant of `cargo xtask ci`.
const CI_SIZES: &[u64] = &[10_000, 100_000];
const CI_DENO_SIZES: &[u64] = &[10_000];
/// The bounded variant's share of the measured operations: enough for
/// every figure, few enough that slow fsyncs on a busy machine (4 ms a
/// set) keep the step short.
const CI_SCALE: &str = "0.25";
/// p99 at the largest size may be at most this many times p99 at the
/// smallest.
const GOAL_FACTOR: f64 = 2.0;
/// The size the goal is stated for.
const GOAL_SIZE: u64 = 10_000_000;

/// The measures of a run, in table order: driver name, heading.
const MEASURES: &[(&str, &str)] = &[("get", "get"), ("set", "set"), ("list1000", "list 1000")];

/// What to run.
#[derive(Clone, Debug)]
struct Plan {
    sizes: Vec<u64>,
    deno_sizes: Vec<u64>,
    backends: Vec<String>,
    scale: String,
}

/// One store at one size.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Run {
    /// `sqlite`, `redb` or `Deno`.
    store: String,
    keys: u64,
    load_per_sec: f64,
    /// `(p50, p99)` in µs, in `MEASURES` order.
    latencies: Vec<(f64, f64)>,
    bytes_per_key: f64,
}

impl Run {
    fn p99(&self, measure: usize) -> f64 {
        self.latencies[measure].1
    }
}

/// `cargo xtask bench scale [ARGS..]`: the release build, every size asked
/// for, the table printed and written into `docs/benchmarks.md`.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    if args == ["--ci"] {
        return ci(sh);
    }
    let mut plan = Plan {
        sizes: SIZES.to_vec(),
        deno_sizes: Vec::new(),
        backends: BACKENDS.iter().map(|b| (*b).to_owned()).collect(),
        scale: "1".to_owned(),
    };
    let mut deno_sizes = None;
    let mut write_doc = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().context(USAGE);
        match arg.as_str() {
            "--sizes" => plan.sizes = parse_sizes(value()?)?,
            "--deno-sizes" => deno_sizes = Some(parse_sizes(value()?)?),
            "--kv-backend" => {
                plan.backends = value()?
                    .split(',')
                    .filter(|b| !b.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--scale" => plan.scale = value()?.clone(),
            "--write-doc" => write_doc = true,
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    plan.deno_sizes = deno_sizes.unwrap_or_else(|| {
        plan.sizes
            .iter()
            .copied()
            .filter(|&s| s <= DENO_MAX)
            .collect()
    });
    let full = plan.sizes == SIZES
        && plan.deno_sizes == [10_000, 1_000_000]
        && plan.backends == BACKENDS
        && plan.scale == "1";

    cmd!(sh, "cargo build -p kv-bench --bin kv-bench-scale --release")
        .run()
        .context("building kv-bench-scale")?;
    let bin = target_dir().join("release").join("kv-bench-scale");
    let runs = measure(sh, &bin, &plan)?;
    let body = render(&runs);
    println!();
    print!("{body}");
    let out_dir = target_dir().join("bench");
    sh.create_dir(&out_dir)?;
    let md = out_dir.join("scale.md");
    sh.write_file(&md, &body)?;
    println!();
    println!("written to {}", md.display());
    crate::bench::write_doc_section(
        sh,
        "scale",
        "Scale: latency and file size from 10 k to 10 M keys",
        format!("cargo xtask bench scale {}", args.join(" ")).trim_end(),
        &body,
        full || write_doc,
    )
}

/// The bounded variant of `cargo xtask ci`: 10 k and 100 k keys on both
/// backends and Deno at 10 k, from the dev build the earlier steps made.
/// Fails when a figure is missing or not positive; asserts no timing.
pub(crate) fn ci(sh: &Shell) -> anyhow::Result<()> {
    let mut bins = artifacts::bins(sh, artifacts::WORKSPACE, &["kv-bench-scale"])?;
    let bin = bins.pop().context("cargo built kv-bench-scale")?;
    let plan = Plan {
        sizes: CI_SIZES.to_vec(),
        deno_sizes: CI_DENO_SIZES.to_vec(),
        backends: BACKENDS.iter().map(|b| (*b).to_owned()).collect(),
        scale: CI_SCALE.to_owned(),
    };
    let runs = measure(sh, &bin, &plan)?;
    let expected = plan.sizes.len() * plan.backends.len() + plan.deno_sizes.len();
    ensure!(
        runs.len() == expected,
        "{} runs reported, {expected} expected",
        runs.len()
    );
    println!();
    println!("(a dev build: the figures show the run works, not how fast it is)");
    print!("{}", render(&runs));
    Ok(())
}

/// Runs every backend, then Deno, at each size in turn, each on a fresh
/// file in a scratch folder beside the build (on the build's disk: /tmp
/// may be a tmpfs, where fsync is free).
fn measure(sh: &Shell, bin: &Path, plan: &Plan) -> anyhow::Result<Vec<Run>> {
    let scratch = target_dir().join("bench").join("scale-scratch");
    if scratch.exists() {
        sh.remove_path(&scratch)?;
    }
    sh.create_dir(&scratch)?;
    let deno = if plan.deno_sizes.is_empty() {
        None
    } else {
        Some(tools::ensure_deno(sh)?)
    };
    let script = project_root().join("bench").join("deno_scale.ts");
    let scale = &plan.scale;
    let mut runs = Vec::new();
    let mut sizes: Vec<u64> = plan.sizes.iter().chain(&plan.deno_sizes).copied().collect();
    sizes.sort_unstable();
    sizes.dedup();
    for keys in sizes {
        let n = keys.to_string();
        if plan.sizes.contains(&keys) {
            for backend in &plan.backends {
                let path = scratch.join(format!("{backend}-{keys}.db"));
                println!(
                    "==> kv on {backend}, {} keys: {}",
                    size_label(keys),
                    path.display()
                );
                let out = cmd!(
                    sh,
                    "{bin} --backend {backend} --path {path} --keys {n} --scale {scale}"
                )
                .read()
                .with_context(|| format!("kv-bench-scale on {backend} at {keys} keys"))?;
                let run = parse_run(backend, keys, &out)?;
                println!("    {}", summary(&run));
                runs.push(run);
                remove_files(&path)?;
            }
        }
        if let (Some(deno), true) = (&deno, plan.deno_sizes.contains(&keys)) {
            let path = scratch.join(format!("deno-{keys}.sqlite3"));
            println!(
                "==> Deno {} (Deno.openKv), {} keys: {}",
                tools::DENO_VERSION,
                size_label(keys),
                path.display()
            );
            let out = cmd!(
                sh,
                "{deno} run -A --unstable-kv {script} --path {path} --keys {n} --scale {scale}"
            )
            .env("DENO_NO_UPDATE_CHECK", "1")
            .read()
            .with_context(|| format!("bench/deno_scale.ts at {keys} keys"))?;
            let run = parse_run("Deno", keys, &out)?;
            println!("    {}", summary(&run));
            runs.push(run);
            remove_files(&path)?;
        }
    }
    sh.remove_path(&scratch)?;
    Ok(runs)
}

/// A run on one line, for the log.
fn summary(run: &Run) -> String {
    let mut parts = vec![format!("load {} keys/s", thousands(run.load_per_sec))];
    for ((_, label), (p50, p99)) in MEASURES.iter().zip(&run.latencies) {
        parts.push(format!("{label} {}/{} µs", micros(*p50), micros(*p99)));
    }
    parts.push(format!("{:.0} bytes/key", run.bytes_per_key));
    parts.join(" · ")
}

/// Removes a database file and what SQLite may leave beside it.
fn remove_files(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        if file.exists() {
            std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        }
    }
    Ok(())
}

/// A driver's JSON lines as a [`Run`]; fails unless every figure is there
/// and positive (and each p99 at least its p50).
pub(crate) fn parse_run(store: &str, keys: u64, output: &str) -> anyhow::Result<Run> {
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad JSON line: {l}")))
        .collect::<anyhow::Result<_>>()?;
    let figure = |name: &str, field: &str| -> anyhow::Result<f64> {
        let line = lines
            .iter()
            .find(|v| v["name"] == name)
            .with_context(|| format!("{store} at {keys} keys: no `{name}` line"))?;
        ensure!(
            line["keys"].as_u64() == Some(keys),
            "{store}: the `{name}` line is for {} keys, not {keys}",
            line["keys"]
        );
        let x = line[field]
            .as_f64()
            .with_context(|| format!("{store} at {keys} keys: `{name}` has no `{field}`"))?;
        ensure!(
            x.is_finite() && x > 0.0,
            "{store} at {keys} keys: `{name}` `{field}` is {x}, not positive"
        );
        Ok(x)
    };
    let per_sec = |name: &str| -> anyhow::Result<f64> {
        let (ops, secs) = (figure(name, "ops")?, figure(name, "secs")?);
        Ok(ops / secs)
    };
    let percentiles = |name: &str| -> anyhow::Result<(f64, f64)> {
        let (p50, p99) = (figure(name, "p50_us")?, figure(name, "p99_us")?);
        ensure!(
            p99 >= p50,
            "{store} at {keys} keys: `{name}` p99 {p99} µs below p50 {p50} µs"
        );
        figure(name, "ops")?;
        figure(name, "secs")?;
        Ok((p50, p99))
    };
    let load_per_sec = per_sec("load")?;
    ensure!(
        figure("load", "ops")? as u64 == keys,
        "{store}: loaded {} keys, not {keys}",
        figure("load", "ops")?
    );
    percentiles("load")?;
    Ok(Run {
        store: store.to_owned(),
        keys,
        load_per_sec,
        latencies: MEASURES
            .iter()
            .map(|(name, _)| percentiles(name))
            .collect::<anyhow::Result<_>>()?,
        bytes_per_key: figure("file", "bytes_per_key")?,
    })
}

/// `10k`, `1M`, `10M`, `100000` (comma-separated) as key counts, each at
/// least 1,000 (the length of a listing).
fn parse_sizes(list: &str) -> anyhow::Result<Vec<u64>> {
    let mut sizes = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (digits, factor) = match item.as_bytes().last() {
            Some(b'k' | b'K') => (&item[..item.len() - 1], 1_000),
            Some(b'm' | b'M') => (&item[..item.len() - 1], 1_000_000),
            _ => (item, 1),
        };
        let n: u64 = digits
            .parse()
            .with_context(|| format!("`{item}` is not a size such as 10k, 1M or 250000"))?;
        let keys = n * factor;
        ensure!(keys >= 1_000, "`{item}`: a size is at least 1k keys");
        if !sizes.contains(&keys) {
            sizes.push(keys);
        }
    }
    ensure!(!sizes.is_empty(), "no sizes in `{list}`");
    sizes.sort_unstable();
    Ok(sizes)
}

/// `10 k`, `1 M`, `2.5 M`, `1500`.
fn size_label(keys: u64) -> String {
    if keys >= 1_000_000 && keys.is_multiple_of(100_000) {
        let m = keys as f64 / 1e6;
        if keys.is_multiple_of(1_000_000) {
            format!("{m:.0} M")
        } else {
            format!("{m:.1} M")
        }
    } else if keys >= 1_000 && keys.is_multiple_of(1_000) {
        format!("{} k", keys / 1_000)
    } else {
        thousands(keys as f64)
    }
}

/// The section: the figures of every run, kv's ratios to Deno at each size
/// Deno ran, and the goal.
pub(crate) fn render(runs: &[Run]) -> String {
    let mut figures = vec![header("store", "load keys/s")];
    for run in runs {
        let mut row = vec![
            run.store.clone(),
            size_label(run.keys),
            thousands(run.load_per_sec),
        ];
        for (p50, p99) in &run.latencies {
            row.push(micros(*p50));
            row.push(micros(*p99));
        }
        row.push(format!("{:.0}", run.bytes_per_key));
        figures.push(row);
    }
    let figures = bench_doc::markdown_table(&figures, |c| c == 0);

    let deno = |keys: u64| runs.iter().find(|r| r.store == "Deno" && r.keys == keys);
    let mut ratios = vec![header("vs Deno", "load")];
    for run in runs.iter().filter(|r| r.store != "Deno") {
        let Some(d) = deno(run.keys) else { continue };
        let mut row = vec![
            run.store.clone(),
            size_label(run.keys),
            bench_doc::ratio(Some(run.load_per_sec), Some(d.load_per_sec), true),
        ];
        for ((p50, p99), (d50, d99)) in run.latencies.iter().zip(&d.latencies) {
            row.push(bench_doc::ratio(Some(*p50), Some(*d50), false));
            row.push(bench_doc::ratio(Some(*p99), Some(*d99), false));
        }
        row.push(bench_doc::ratio(
            Some(run.bytes_per_key),
            Some(d.bytes_per_key),
            false,
        ));
        ratios.push(row);
    }
    let ratios = if ratios.len() > 1 {
        bench_doc::markdown_table(&ratios, |c| c == 0)
    } else {
        String::new()
    };

    format!(
        "Each store starts from a fresh file, is filled with keys `[\"scale\", i]` \
         (100-byte values) in ascending order, in commits of 1,000 keys with eight in \
         flight (kv's group commit makes one transaction of several), closed and opened \
         again, then times one operation after another at random places: a point get, \
         a set (overwriting a key, one commit each, durable), a listing of 1,000 \
         consecutive keys (Deno's default batches of 100). `bytes/key` is the file (and \
         any WAL) once closed, over the keys. Deno is Deno {}'s own `Deno.openKv(path)` running the same \
         work (`bench/deno_scale.ts`). Latencies in µs.\n\n{figures}\n{}{}",
        tools::DENO_VERSION,
        if ratios.is_empty() {
            String::new()
        } else {
            format!(
                "kv vs Deno at the same size (kv's load rate ÷ Deno's, Deno's latency or \
                 size ÷ kv's: above 1 is kv ahead):\n\n{ratios}\n"
            )
        },
        goal(runs),
    )
}

/// The header of the figures' and the ratios' tables.
fn header(first: &str, load: &str) -> Vec<String> {
    let mut h = vec![first.to_owned(), "keys".to_owned(), load.to_owned()];
    for (_, label) in MEASURES {
        h.push(format!("{label} p50"));
        h.push(format!("{label} p99"));
    }
    h.push("bytes/key".to_owned());
    h
}

/// The goal, stated, and each kv backend's p99 at every larger size over
/// its p99 at the smallest.
fn goal(runs: &[Run]) -> String {
    let mut rows = vec![{
        let mut h = vec!["store".to_owned(), "keys".to_owned()];
        for (_, label) in MEASURES {
            h.push(format!("{label} p99"));
        }
        h.push(format!("within {GOAL_FACTOR:.0}x"));
        h
    }];
    let mut verdicts = Vec::new();
    let mut stores: Vec<&str> = Vec::new();
    for run in runs.iter().filter(|r| r.store != "Deno") {
        if !stores.contains(&run.store.as_str()) {
            stores.push(&run.store);
        }
    }
    let mut base_keys = None;
    for store in stores {
        let mut own: Vec<&Run> = runs.iter().filter(|r| r.store == store).collect();
        own.sort_by_key(|r| r.keys);
        let Some((base, larger)) = own.split_first() else {
            continue;
        };
        base_keys = Some(base.keys);
        for run in larger {
            let factors: Vec<f64> = (0..MEASURES.len())
                .map(|m| run.p99(m) / base.p99(m))
                .collect();
            let within = factors.iter().all(|f| *f <= GOAL_FACTOR);
            let mut row = vec![store.to_owned(), size_label(run.keys)];
            row.extend(factors.iter().map(|f| format!("{f:.2}x")));
            row.push(if within { "yes" } else { "no" }.to_owned());
            rows.push(row);
            if run.keys == GOAL_SIZE && base.keys == 10_000 {
                verdicts.push(format!(
                    "{} on {store}",
                    if within { "met" } else { "MISSED" }
                ));
            }
        }
    }
    let Some(base_keys) = base_keys.filter(|_| rows.len() > 1) else {
        return format!(
            "Goal: p99 at {} within {GOAL_FACTOR:.0}x of p99 at 10 k (not judged: one size \
             only).\n",
            size_label(GOAL_SIZE)
        );
    };
    let verdict = if verdicts.is_empty() {
        format!("not judged here: {} was not run", size_label(GOAL_SIZE))
    } else {
        verdicts.join(", ")
    };
    format!(
        "Goal: p99 at {} within {GOAL_FACTOR:.0}x of p99 at 10 k, for gets, sets and \
         listings: {verdict}. Each kv store's p99 at a size over its p99 at {}:\n\n{}",
        size_label(GOAL_SIZE),
        size_label(base_keys),
        bench_doc::markdown_table(&rows, |c| c == 0 || c == MEASURES.len() + 2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(keys: u64, p99: f64) -> String {
        let mut out = String::from("noise on stdout\n");
        for name in ["load", "get", "list1000", "set"] {
            out.push_str(&format!(
                "{{\"name\":\"{name}\",\"keys\":{keys},\"ops\":{},\"secs\":0.5,\"p50_us\":10.0,\"p99_us\":{p99}}}\n",
                if name == "load" { keys } else { 1000 }
            ));
        }
        out.push_str(&format!(
            "{{\"name\":\"file\",\"keys\":{keys},\"bytes\":{},\"bytes_per_key\":150.0}}\n",
            keys * 150
        ));
        out
    }

    #[test]
    fn parses_a_run_and_refuses_missing_figures() -> anyhow::Result<()> {
        let run = parse_run("sqlite", 10_000, &output(10_000, 20.0))?;
        assert_eq!(run.load_per_sec, 20_000.0);
        assert_eq!(run.latencies, vec![(10.0, 20.0); 3]);
        assert_eq!(run.bytes_per_key, 150.0);

        let no_set: String = output(10_000, 20.0)
            .lines()
            .filter(|l| !l.contains("\"set\""))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(parse_run("sqlite", 10_000, &no_set).is_err());
        let zero = output(10_000, 20.0).replace("\"bytes_per_key\":150.0", "\"bytes_per_key\":0");
        assert!(parse_run("sqlite", 10_000, &zero).is_err());
        // A p99 below its p50 is a broken driver.
        assert!(parse_run("sqlite", 10_000, &output(10_000, 5.0)).is_err());
        // Lines for another size are not this run's.
        assert!(parse_run("sqlite", 100_000, &output(10_000, 20.0)).is_err());
        Ok(())
    }

    #[test]
    fn sizes() -> anyhow::Result<()> {
        assert_eq!(
            parse_sizes("10k,100K,1M")?,
            vec![10_000, 100_000, 1_000_000]
        );
        assert_eq!(
            parse_sizes("10M, 250000,10k")?,
            vec![10_000, 250_000, 10_000_000]
        );
        assert!(parse_sizes("10x").is_err());
        assert!(parse_sizes("500").is_err());
        assert!(parse_sizes("").is_err());
        assert_eq!(size_label(10_000), "10 k");
        assert_eq!(size_label(10_000_000), "10 M");
        assert_eq!(size_label(2_500_000), "2.5 M");
        assert_eq!(size_label(1_500), "1,500");
        Ok(())
    }

    #[test]
    fn renders_ratios_and_the_goal() -> anyhow::Result<()> {
        let runs = vec![
            parse_run("sqlite", 10_000, &output(10_000, 20.0))?,
            parse_run("Deno", 10_000, &output(10_000, 100.0))?,
            parse_run("sqlite", 10_000_000, &output(10_000_000, 30.0))?,
            parse_run("redb", 10_000, &output(10_000, 20.0))?,
            parse_run("redb", 10_000_000, &output(10_000_000, 50.0))?,
        ];
        let text = render(&runs);
        // sqlite's p99 is 100 ÷ 20 = 5x better than Deno's at 10 k.
        assert!(text.contains("5.00x"), "{text}");
        assert!(text.contains("met on sqlite, MISSED on redb"), "{text}");
        let goal_row = |store: &str| {
            text.lines()
                .rev()
                .find(|l| l.starts_with(&format!("| {store} ")) && l.contains("10 M"))
                .map(str::to_owned)
        };
        let sqlite = goal_row("sqlite").unwrap_or_default();
        assert!(
            sqlite.contains("1.50x") && sqlite.contains("| yes"),
            "{text}"
        );
        let redb = goal_row("redb").unwrap_or_default();
        assert!(redb.contains("2.50x") && redb.contains("| no "), "{text}");

        let bounded = render(&runs[..2]);
        assert!(bounded.contains("not judged: one size only"), "{bounded}");
        let smaller = vec![
            runs[0].clone(),
            parse_run("sqlite", 100_000, &output(100_000, 25.0))?,
        ];
        let text = render(&smaller);
        assert!(text.contains("not judged here: 10 M was not run"), "{text}");
        Ok(())
    }
}
