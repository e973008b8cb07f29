//! `cargo xtask bench embedded`: the same workloads in-process on kv's SQLite
//! and redb backends (`kv-bench`, `--kv-backend` chooses) and on Deno's
//! built-in KV (`bench/deno_embedded.ts`), all on files, in one invocation,
//! joined into one table.
//!
//! Both drivers print one JSON line per workload:
//! `{"name":..,"ops":..,"secs":..,"p50_us":..,"p99_us":..}`.
//!
//! Every target writes its section of `docs/benchmarks.md` (`bench_doc`)
//! after a full run; a partial one (`--scale`, `--workload`, `--only`,
//! other `--sizes`) leaves the file alone unless given `--write-doc`.

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::{bench_doc, project_root, tools};

/// Workloads in table order: name, what it does, unit of its rate, goal.
const WORKLOADS: &[(&str, &str, &str, Option<f64>)] = &[
    ("set", "sequential set (100 B)", "sets/s", None),
    ("get", "sequential get", "gets/s", Some(100_000.0)),
    ("counter", "get + check + set counter", "updates/s", None),
    ("sum", "atomic sum", "commits/s", None),
    ("list1000", "list a 1000-key prefix", "listings/s", None),
    ("get_many10", "getMany of 10 keys", "calls/s", None),
    (
        "writers64",
        "64 concurrent writers",
        "commits/s",
        Some(30_000.0),
    ),
];

const USAGE: &str = "usage: cargo xtask bench embedded [--workload NAME|all] [--only kv|deno] [--scale F] \
     [--kv-backend sqlite,redb,memory] [--write-doc] | bench server|queue|v8 [--scale F] [--write-doc] \
     | bench scale [--sizes 10k,1M,10M] [--deno-sizes 10k,1M] [--kv-backend sqlite,redb] [--scale F] [--write-doc] \
     | bench cli [--keys N] [--deno-keys N] [--backup-mb N] [--write-doc]";

/// One workload's result from one driver.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) ops: u64,
    pub(crate) secs: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
}

impl Record {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Parses the JSON lines of a driver; other lines are ignored.
pub(crate) fn parse_records(output: &str) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("bad JSON line: {line}"))?;
        let num = |field: &str| {
            v[field]
                .as_f64()
                .with_context(|| format!("`{field}` missing in {line}"))
        };
        out.push(Record {
            name: v["name"]
                .as_str()
                .with_context(|| format!("`name` missing in {line}"))?
                .into(),
            ops: num("ops")? as u64,
            secs: num("secs")?,
            p50_us: num("p50_us")?,
            p99_us: num("p99_us")?,
        });
    }
    Ok(out)
}

pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("embedded") => embedded(sh, &args[1..]),
        Some("server") => crate::bench_more::server(sh, &args[1..]),
        Some("queue") => crate::bench_more::queue(sh, &args[1..]),
        Some("v8") => crate::bench_more::v8(sh, &args[1..]),
        Some("scale") => crate::bench_scale::run(sh, &args[1..]),
        Some("cli") => crate::bench_cli::run(sh, &args[1..]),
        _ => bail!("{USAGE}"),
    }
}

fn embedded(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let mut workload = "all".to_owned();
    let mut only: Option<String> = None;
    let mut scale = "1".to_owned();
    let mut backends = "sqlite,redb".to_owned();
    let mut write_doc = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--write-doc" => write_doc = true,
            "--workload" => workload = it.next().context(USAGE)?.clone(),
            "--only" => only = Some(it.next().context(USAGE)?.clone()),
            // Multiplies every count (for a quick smoke run); 1 = the real figures.
            "--scale" => scale = it.next().context(USAGE)?.clone(),
            "--kv-backend" => backends = it.next().context(USAGE)?.clone(),
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let run_kv = only.as_deref() != Some("deno");
    let run_deno = only.as_deref() != Some("kv");

    let root = project_root();
    let target_dir = crate::target_dir();
    let out_dir = target_dir.join("bench");
    // A scratch folder on the same disk as the build: /tmp may be a tmpfs,
    // where fsync is free and the figures would mean little.
    let scratch = out_dir.join("embedded-scratch");
    if scratch.exists() {
        sh.remove_path(&scratch)?;
    }
    sh.create_dir(&scratch)?;

    // Each kv backend beside the others and Deno, in this one invocation.
    let mut kv: Vec<(String, Vec<Record>)> = Vec::new();
    if run_kv {
        cmd!(sh, "cargo build -p kv-bench --bin kv-bench --release")
            .run()
            .context("building kv-bench")?;
        let bin = target_dir.join("release").join("kv-bench");
        for backend in backends.split(',').filter(|b| !b.is_empty()) {
            let path = scratch.join(format!("kv-{backend}.db"));
            println!("==> kv ({backend} backend): {}", path.display());
            let out = cmd!(
                sh,
                "{bin} --path {path} --workload {workload} --scale {scale} --backend {backend}"
            )
            .read()?;
            kv.push((backend.to_owned(), parse_records(&out)?));
        }
    }
    let mut deno = Vec::new();
    if run_deno {
        let deno_bin = tools::ensure_deno(sh)?;
        let path = scratch.join("deno.sqlite3");
        println!(
            "==> Deno {} (Deno.openKv): {}",
            tools::DENO_VERSION,
            path.display()
        );
        let script = root.join("bench").join("deno_embedded.ts");
        let out = cmd!(
            sh,
            "{deno_bin} run -A --unstable-kv {script} --path {path} --workload {workload} --scale {scale}"
        )
        .env("DENO_NO_UPDATE_CHECK", "1")
        .read()?;
        deno = parse_records(&out)?;
    }
    sh.remove_path(&scratch)?;

    let table = render_table(&kv, &deno, true);
    println!();
    print!("{table}");
    sh.create_dir(&out_dir)?;
    let md = out_dir.join("embedded.md");
    let header = format!(
        "Embedded, on a file: kv on {} vs Deno {} `Deno.openKv(path)`. Rates are per \
         second, latencies (p50, p99) in µs; `BACKEND/Deno` is kv's rate ÷ Deno's. \
         SQLite runs in WAL mode with `synchronous=FULL`, redb with immediate \
         durability: every acknowledged commit is on disk.\n\n",
        kv.iter()
            .map(|(b, _)| b.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        tools::DENO_VERSION,
    );
    let body = format!("{header}{table}");
    sh.write_file(&md, &body)?;
    println!();
    println!("written to {}", md.display());
    let full = workload == "all" && only.is_none() && scale == "1";
    write_doc_section(
        sh,
        "embedded",
        "Embedded: kv vs Deno's local KV, on a file",
        "cargo xtask bench embedded",
        &body,
        full || write_doc,
    )
}

/// Replaces `target`'s section of `docs/benchmarks.md` with `body` under
/// `title`, or says why not.
pub(crate) fn write_doc_section(
    sh: &Shell,
    target: &str,
    title: &str,
    command: &str,
    body: &str,
    write: bool,
) -> anyhow::Result<()> {
    if !write {
        println!(
            "{} not changed: a partial run (pass --write-doc to replace its `{target}` section)",
            bench_doc::PATH
        );
        return Ok(());
    }
    let section = bench_doc::section(title, &bench_doc::provenance(sh), command, body);
    let path = bench_doc::write(target, &section)?;
    println!("section `{target}` of {} replaced", path.display());
    Ok(())
}

/// Whether `args` hold `--write-doc`.
pub(crate) fn wants_doc(args: &[String]) -> bool {
    args.iter().any(|a| a == "--write-doc")
}

/// The joined results as a Markdown table (readable as text too): for
/// each kv backend and for Deno, rate, p50 and p99; then each backend's rate
/// over Deno's, and the goal (judged on the first backend).
pub(crate) fn render_table(kv: &[(String, Vec<Record>)], deno: &[Record], goals: bool) -> String {
    let mut names: Vec<&str> = WORKLOADS.iter().map(|w| w.0).collect();
    for r in kv.iter().flat_map(|(_, rs)| rs).chain(deno) {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let find = |records: &[Record], name: &str| records.iter().find(|r| r.name == name).cloned();

    let mut header = vec!["workload".to_owned(), "unit".to_owned()];
    for (backend, _) in kv {
        header.extend([
            format!("{backend} ops/s"),
            format!("{backend} p50"),
            format!("{backend} p99"),
        ]);
    }
    header.extend(["Deno ops/s", "Deno p50", "Deno p99"].map(str::to_owned));
    for (backend, _) in kv {
        header.push(format!("{backend}/Deno"));
    }
    if goals {
        header.push("goal".to_owned());
    }
    let mut rows = vec![header];
    for name in names {
        let ours: Vec<Option<Record>> = kv.iter().map(|(_, rs)| find(rs, name)).collect();
        let d = find(deno, name);
        if ours.iter().all(Option::is_none) && d.is_none() {
            continue;
        }
        let meta = WORKLOADS.iter().find(|w| w.0 == name);
        let describe = meta.map_or(name.to_owned(), |w| format!("{} ({name})", w.1));
        let unit = meta.map_or("ops/s", |w| w.2).to_owned();
        let cols = |r: &Option<Record>| match r {
            Some(r) => [thousands(r.rate()), micros(r.p50_us), micros(r.p99_us)],
            None => ["-".to_owned(), "-".to_owned(), "-".to_owned()],
        };
        let mut row = vec![describe, unit];
        for k in &ours {
            row.extend(cols(k));
        }
        row.extend(cols(&d));
        for k in &ours {
            row.push(match (k, &d) {
                (Some(k), Some(d)) if d.rate() > 0.0 => format!("{:.2}x", k.rate() / d.rate()),
                _ => "-".to_owned(),
            });
        }
        let first = ours.first().cloned().flatten();
        if !goals {
            rows.push(row);
            continue;
        }
        row.push(match (meta.and_then(|w| w.3), &first) {
            (Some(goal), Some(k)) => format!(
                "≥ {}: {}",
                thousands(goal),
                if k.rate() >= goal { "met" } else { "MISSED" }
            ),
            (Some(goal), None) => format!("≥ {}", thousands(goal)),
            (None, _) => String::new(),
        });
        rows.push(row);
    }

    let columns = rows[0].len();
    bench_doc::markdown_table(&rows, |c| c < 2 || (goals && c == columns - 1))
}

/// A latency in µs: one decimal below 10, whole numbers above.
pub(crate) fn micros(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.1}")
    } else {
        thousands(us)
    }
}

/// `1234567.8` → `1,234,568`.
pub(crate) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() -> anyhow::Result<()> {
        let kv = parse_records(
            "noise\n{\"name\":\"get\",\"ops\":100000,\"secs\":0.5,\"p50_us\":4.2,\"p99_us\":9.9}\n",
        )?;
        let deno = parse_records(
            "{\"name\":\"get\",\"ops\":100000,\"secs\":10.0,\"p50_us\":140,\"p99_us\":300}",
        )?;
        assert_eq!(kv.len(), 1);
        assert_eq!(kv[0].rate(), 200_000.0);
        let table = render_table(&[("sqlite".to_owned(), kv.clone())], &deno, true);
        assert!(table.contains("sqlite/Deno"), "{table}");
        assert!(table.contains("200,000"), "{table}");
        assert!(table.contains("20.00x"), "{table}");
        assert!(table.contains("≥ 100,000: met"), "{table}");
        assert!(!table.contains("writers64"), "{table}");
        let plain = render_table(&[("kv serve".to_owned(), kv)], &deno, false);
        assert!(!plain.contains("goal"), "{plain}");
        assert!(plain.contains("kv serve/Deno"), "{plain}");
        Ok(())
    }

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }
}
