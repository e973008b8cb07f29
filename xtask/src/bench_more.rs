//! `cargo xtask bench server`, `cargo xtask bench queue` and
//! `cargo xtask bench v8`: each prints its drivers' figures and writes them
//! as tables into its section of `docs/benchmarks.md`.

use std::ffi::OsStr;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::bench::{Record, micros, parse_records, render_table, thousands, wants_doc};
use crate::serve::Server;
use crate::{bench_doc, project_root, target_dir, tools};

fn scale(args: &[String]) -> String {
    args.iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "1".to_owned())
}

/// kv's load generator against a release `kv serve` (SQLite file), then
/// the Deno workload script against that server and against Deno's own KV.
pub(crate) fn server(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let scale = scale(args);
    cmd!(sh, "cargo build --release -p kv-server -p kv-bench")
        .run()
        .context("building")?;
    let target = target_dir();
    let scratch = target.join("bench").join("server-scratch");
    if scratch.exists() {
        sh.remove_path(&scratch)?;
    }
    sh.create_dir(&scratch)?;
    let token = format!("bench-token-{}", std::process::id());
    let server = Server::start(
        &target.join("release").join("kv"),
        [
            OsStr::new("--path"),
            scratch.join("server.sqlite3").as_os_str(),
        ],
        &token,
    )?;
    let pid = server.pid().to_string();
    let result = (|| -> anyhow::Result<(String, String, String)> {
        let url = &server.url;
        let bench = target.join("release").join("kv-bench-server");
        println!("==> kv's load generator (RemoteBackend) against kv serve at {url}");
        let out = cmd!(
            sh,
            "{bench} --url {url} --token {token} --server-pid {pid} --scale {scale}"
        )
        .read()?;
        println!("{out}");
        let deno = tools::ensure_deno(sh)?;
        let script = project_root().join("bench").join("deno_embedded.ts");
        println!("==> the Deno workload script against kv serve");
        let remote = cmd!(
            sh,
            "{deno} run -A --unstable-kv {script} --path {url} --scale {scale}"
        )
        .env("DENO_KV_ACCESS_TOKEN", &token)
        .read()?;
        println!("{remote}");
        let local = scratch.join("deno-local.sqlite3");
        println!("==> the same script on Deno's local KV");
        let local = cmd!(
            sh,
            "{deno} run -A --unstable-kv {script} --path {local} --scale {scale}"
        )
        .read()?;
        println!("{local}");
        Ok((out, remote, local))
    })();
    let stopped = server.stop();
    let (ours, remote, local) = result?;
    stopped?;

    let body = server_body(&ours, &parse_records(&remote)?, &parse_records(&local)?)?;
    println!();
    print!("{body}");
    crate::bench::write_doc_section(
        sh,
        "server",
        "Server: `kv serve` under load, and Deno's script through it",
        "cargo xtask bench server",
        &body,
        scale == "1" || wants_doc(args),
    )
}

/// The server benchmark's workloads in table order: name, description,
/// goal.
const SERVER_WORKLOADS: &[(&str, &str, Option<Goal>)] = &[
    (
        "sequential_set",
        "sequential set (100 B)",
        Some(Goal::P50AtMostUs(450.0)),
    ),
    ("sequential_get", "sequential get", None),
    (
        "writers64",
        "64 concurrent writers (commits)",
        Some(Goal::RateAtLeast(28_000.0)),
    ),
    (
        "readers64",
        "64 concurrent readers (gets)",
        Some(Goal::RateAtLeast(30_000.0)),
    ),
    (
        "list1000_x64_raw",
        "1000-key listings, 64 connections, read raw",
        Some(Goal::RateAtLeast(5_000.0)),
    ),
    (
        "list1000_x64",
        "the same through `Kv::list`, keys decoded",
        None,
    ),
    ("list100_x64", "100-key listings, 64 connections", None),
    (
        "watch_notify",
        "watch notification, incl. the write",
        Some(Goal::P50AtMostUs(2_000.0)),
    ),
];

/// A figure a workload should reach.
#[derive(Clone, Copy, Debug)]
enum Goal {
    RateAtLeast(f64),
    P50AtMostUs(f64),
}

impl Goal {
    /// `≥ 5,000: met` and the like.
    fn judge(self, rate: f64, p50_us: f64) -> String {
        let (text, met) = match self {
            Goal::RateAtLeast(goal) => (format!("≥ {}/s", thousands(goal)), rate >= goal),
            Goal::P50AtMostUs(goal) => (format!("p50 ≤ {} µs", thousands(goal)), p50_us <= goal),
        };
        format!("{text}: {}", if met { "met" } else { "MISSED" })
    }
}

/// The server section: kv's load generator's table (with each side's CPU
/// per operation and the goals), then Deno's script through `kv serve`
/// beside the same script on Deno's local KV.
fn server_body(ours: &str, remote: &[Record], local: &[Record]) -> anyhow::Result<String> {
    let mut rows = vec![
        [
            "workload",
            "ops/s",
            "p50 µs",
            "p99 µs",
            "server CPU/op µs",
            "load generator CPU/op µs",
            "goal",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for line in ours.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("bad JSON line: {line}"))?;
        let name = v["name"].as_str().context("`name` missing")?;
        let num = |field: &str| v[field].as_f64();
        let cpu = |field: &str| num(field).map_or_else(String::new, micros);
        if let Some(rss) = num("rss_mib") {
            let goal = num("goal_mib").map_or_else(String::new, |g| {
                let met = if rss <= g { "met" } else { "MISSED" };
                format!("≤ {g:.0} MiB: {met}")
            });
            rows.push(vec![
                "server RSS, 256 connections".to_owned(),
                format!("{rss:.0} MiB"),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                goal,
            ]);
            continue;
        }
        let meta = SERVER_WORKLOADS.iter().find(|w| w.0 == name);
        let rate = num("per_sec").unwrap_or(0.0);
        let p50 = num("p50_us").unwrap_or(0.0);
        let goal = meta
            .and_then(|w| w.2)
            .or(num("goal_per_sec").map(Goal::RateAtLeast));
        rows.push(vec![
            meta.map_or(name.to_owned(), |w| format!("{} (`{name}`)", w.1)),
            thousands(rate),
            micros(p50),
            micros(num("p99_us").unwrap_or(0.0)),
            cpu("server_cpu_us_per_op"),
            cpu("client_cpu_us_per_op"),
            goal.map_or_else(String::new, |g| g.judge(rate, p50)),
        ]);
    }
    let columns = rows[0].len();
    let table = bench_doc::markdown_table(&rows, |c| c == 0 || c == columns - 1);
    let deno = render_table(&[("kv serve".to_owned(), remote.to_vec())], local, false);
    Ok(format!(
        "kv's load generator (`kv-bench-server`: `RemoteBackend`, one HTTP/2 connection \
         per client) against a release `kv serve` on a SQLite file, both on this machine's \
         cores. The CPU columns are each process's processor time per operation \
         (`/proc`), so they say which side a rate is limited by.\n\n{table}\n\
         Deno {} running `bench/deno_embedded.ts` against that `kv serve` (`kv serve`) and \
         on Deno's own local KV on a file (`Deno`): a remote call pays a network round \
         trip, so `kv serve/Deno` is the cost of serving over the local KV, in rates.\n\n{deno}",
        tools::DENO_VERSION
    ))
}

/// Queue latency and throughput on a SQLite file, and Deno's own queue.
pub(crate) fn queue(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let scale = scale(args);
    cmd!(sh, "cargo build --release -p kv-bench --bin kv-bench-queue").run()?;
    let target = target_dir();
    let scratch = target.join("bench").join("queue-scratch");
    if scratch.exists() {
        sh.remove_path(&scratch)?;
    }
    sh.create_dir(&scratch)?;
    let bin = target.join("release").join("kv-bench-queue");
    let path = scratch.join("queue.sqlite3");
    println!("==> kv queue on SQLite");
    let ours = cmd!(sh, "{bin} --path {path} --scale {scale}").read()?;
    println!("{ours}");
    let deno = tools::ensure_deno(sh)?;
    let script = project_root().join("bench").join("deno_queue.ts");
    let local = scratch.join("deno.sqlite3");
    println!("==> Deno's own queue (Deno.openKv on a file)");
    let theirs = cmd!(
        sh,
        "{deno} run -A --unstable-kv {script} --path {local} --scale {scale}"
    )
    .read()?;
    println!("{theirs}");
    let body = queue_body(&json_lines(&ours)?, &json_lines(&theirs)?);
    println!();
    print!("{body}");
    crate::bench::write_doc_section(
        sh,
        "queue",
        "Queue: kv's durable queue vs Deno's own",
        "cargo xtask bench queue",
        &body,
        scale == "1" || wants_doc(args),
    )
}

/// A driver's JSON lines; other lines are ignored.
fn json_lines(text: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad JSON line: {l}")))
        .collect()
}

/// `field` of the line named `name`.
fn field(lines: &[serde_json::Value], name: &str, field: &str) -> Option<f64> {
    lines.iter().find(|v| v["name"] == name)?[field].as_f64()
}

fn queue_body(ours: &[serde_json::Value], theirs: &[serde_json::Value]) -> String {
    let ms =
        |us: Option<f64>| us.map_or_else(|| "-".to_owned(), |us| format!("{:.2} ms", us / 1e3));
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), thousands);
    let mut rows = vec![
        ["", "kv", "Deno", "kv vs Deno", "goal"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for (label, pct) in [("p50", "p50_us"), ("p99", "p99_us")] {
        let (k, d) = (
            field(ours, "enqueue_to_handler", pct),
            field(theirs, "enqueue_to_handler", pct),
        );
        let goal = match (pct, field(ours, "enqueue_to_handler", "goal_p50_us"), k) {
            ("p50_us", Some(g), Some(k)) => format!(
                "≤ {}: {}",
                ms(Some(g)),
                if k <= g { "met" } else { "MISSED" }
            ),
            _ => String::new(),
        };
        rows.push(vec![
            format!("enqueue → handler {label}"),
            ms(k),
            ms(d),
            bench_doc::ratio(k, d, false),
            goal,
        ]);
    }
    let (k, d) = (
        field(ours, "sustained", "per_sec"),
        field(theirs, "sustained", "per_sec"),
    );
    let goal = match (field(ours, "sustained", "goal_per_sec"), k) {
        (Some(g), Some(k)) => format!(
            "≥ {}: {}",
            thousands(g),
            if k >= g { "met" } else { "MISSED" }
        ),
        _ => String::new(),
    };
    rows.push(vec![
        "sustained messages/s".to_owned(),
        rate(k),
        rate(d),
        bench_doc::ratio(k, d, true),
        goal,
    ]);
    let table = bench_doc::markdown_table(&rows, |c| c == 0 || c == 4);
    format!(
        "kv's queue (`kv-bench-queue`, `Queue` over a SQLite file) and Deno {}'s own \
         queue (`bench/deno_queue.ts`, `Deno.openKv` on a file): the latency from an \
         enqueue's commit to its handler, and messages handled per second with \
         producers committing ten at a time.\n\n{table}",
        tools::DENO_VERSION
    )
}

/// kv-v8's encode/decode of a 1 KiB object beside V8's own (node:v8 in
/// Deno) on the same bytes, with the ratio.
pub(crate) fn v8(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let scale = scale(args);
    cmd!(sh, "cargo build --release -p kv-bench --bin kv-bench-v8").run()?;
    let target = target_dir();
    let scratch = target.join("bench").join("v8-scratch");
    sh.create_dir(&scratch)?;
    let input = scratch.join("object.v8");
    let bin = target.join("release").join("kv-bench-v8");
    let ours = cmd!(sh, "{bin} --scale {scale} --write {input}").read()?;
    let deno = tools::ensure_deno(sh)?;
    let script = project_root().join("bench").join("deno_v8.ts");
    let theirs = cmd!(sh, "{deno} run -A {script} --input {input} --scale {scale}").read()?;
    let rates = |text: &str| -> anyhow::Result<Vec<(String, f64)>> {
        text.lines()
            .map(|line| {
                let v: serde_json::Value =
                    serde_json::from_str(line).with_context(|| format!("bad JSON line: {line}"))?;
                let name = v["name"].as_str().context("`name` missing")?.to_owned();
                Ok((
                    name,
                    v["mb_per_sec"].as_f64().context("`mb_per_sec` missing")?,
                ))
            })
            .collect()
    };
    let (ours, theirs) = (rates(&ours)?, rates(&theirs)?);
    let mut rows = vec![
        ["1 KiB object", "kv-v8", "V8 in Deno", "kv/V8", "goal"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for (name, kv) in &ours {
        let v8 = theirs.iter().find(|(n, _)| n == name).map(|(_, r)| *r);
        let goal = match name.as_str() {
            "decode" => format!(
                "≥ {DECODE_GOAL_MBS:.0} MB/s: {}",
                if *kv >= DECODE_GOAL_MBS {
                    "met"
                } else {
                    "MISSED"
                }
            ),
            _ => String::new(),
        };
        rows.push(vec![
            name.clone(),
            format!("{kv:.0} MB/s"),
            v8.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} MB/s")),
            bench_doc::ratio(Some(*kv), v8, true),
            goal,
        ]);
    }
    let table = bench_doc::markdown_table(&rows, |c| c == 0 || c == 4);
    let body = format!(
        "kv-v8's encode and decode of a typical 1 KiB object (`kv-bench-v8`) beside V8's \
         own serializer, Deno {}'s `node:v8`, on the same bytes (`bench/deno_v8.ts`).\n\n{table}",
        tools::DENO_VERSION
    );
    println!();
    print!("{body}");
    crate::bench::write_doc_section(
        sh,
        "v8",
        "V8 values: kv-v8 vs V8's own serializer",
        "cargo xtask bench v8",
        &body,
        scale == "1" || wants_doc(args),
    )
}

/// kv-v8's decode goal, in MB/s.
const DECODE_GOAL_MBS: f64 = 200.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_tables() -> anyhow::Result<()> {
        let ours = r#"{"name":"sequential_set","ops":2000,"secs":1.0,"per_sec":2000.0,"p50_us":400.0,"p99_us":900.0,"client_cpu_us_per_op":110.0,"server_cpu_us_per_op":230.0}
{"name":"writers64","ops":90000,"secs":3.0,"per_sec":30000.0,"p50_us":2000.0,"p99_us":5000.0,"client_cpu_us_per_op":16.0,"server_cpu_us_per_op":35.0,"goal_per_sec":28000}
{"name":"rss_256_connections","rss_mib":70.0,"goal_mib":64}"#;
        let remote =
            parse_records(r#"{"name":"get","ops":1000,"secs":0.5,"p50_us":200,"p99_us":400}"#)?;
        let local =
            parse_records(r#"{"name":"get","ops":1000,"secs":0.1,"p50_us":80,"p99_us":140}"#)?;
        let body = server_body(ours, &remote, &local)?;
        assert!(body.contains("p50 ≤ 450 µs: met"), "{body}");
        assert!(body.contains("≥ 28,000/s: met"), "{body}");
        assert!(body.contains(" 230 |"), "{body}");
        assert!(body.contains("≤ 64 MiB: MISSED"), "{body}");
        // Deno through kv serve at 2,000 gets/s, locally at 10,000.
        assert!(body.contains("0.20x"), "{body}");
        Ok(())
    }

    #[test]
    fn queue_table() -> anyhow::Result<()> {
        let ours = json_lines(
            r#"{"name":"enqueue_to_handler","ops":500,"p50_us":1000.0,"p99_us":3000.0,"goal_p50_us":5000}
{"name":"sustained","ops":20000,"secs":1.0,"per_sec":20000.0,"goal_per_sec":5000}"#,
        )?;
        let theirs = json_lines(
            r#"{"name":"enqueue_to_handler","ops":100,"p50_us":50000.0,"p99_us":60000.0}
{"name":"sustained","ops":2000,"secs":1.0,"per_sec":2000.0}"#,
        )?;
        let body = queue_body(&ours, &theirs);
        assert!(body.contains("| 1.00 ms"), "{body}");
        assert!(body.contains("50.0x"), "{body}");
        assert!(body.contains("≤ 5.00 ms: met"), "{body}");
        assert!(body.contains("10.0x"), "{body}");
        assert!(body.contains("≥ 5,000: met"), "{body}");
        Ok(())
    }
}
