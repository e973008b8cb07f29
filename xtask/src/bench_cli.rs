//! `cargo xtask bench cli`: `kv export` and `kv import` of many keys
//! (100-byte values) on SQLite, beside the same work done by a Deno
//! program in the kv-utils style (`bench/deno_cli.ts`: a `list` loop, a
//! `set` per line) on Deno's own local KV, in the same run; and `kv
//! backup` of a 1 GB SQLite file beside a plain copy of it.

use std::io::Write as _;
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::bench_doc;
use crate::{project_root, target_dir, tools};

const USAGE: &str =
    "usage: cargo xtask bench cli [--keys N] [--deno-keys N] [--backup-mb N] [--write-doc]";

/// Keys kv moves by default (the issue's figure).
const KEYS: u64 = 1_000_000;

/// Keys the Deno program moves by default: it commits one key at a time,
/// so a million would take minutes; its rate is what is compared.
const DENO_KEYS: u64 = 100_000;

/// The database `kv backup` copies, in MB (the issue's 1 GB).
const BACKUP_MB: u64 = 1_000;

/// The values of that database, in characters, and about what an entry
/// takes in the file.
const BIG_VALUE: usize = 800;
const BIG_ENTRY_BYTES: u64 = 1_000;

/// The backup goal, in MB/s.
const BACKUP_GOAL_MB_S: f64 = 200.0;

/// The goals, in keys per second.
const EXPORT_GOAL: f64 = 200_000.0;
const IMPORT_GOAL: f64 = 100_000.0;

/// One measured run.
struct Run {
    name: &'static str,
    keys: u64,
    secs: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.keys as f64 / self.secs
    }
}

pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let (mut keys, mut deno_keys, mut write_doc) = (KEYS, DENO_KEYS, false);
    let mut backup_mb = BACKUP_MB;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = || -> anyhow::Result<u64> {
            it.next()
                .context(USAGE)?
                .replace('_', "")
                .parse()
                .context(USAGE)
        };
        match arg.as_str() {
            "--keys" => keys = number()?,
            "--deno-keys" => deno_keys = number()?,
            "--backup-mb" => backup_mb = number()?,
            "--write-doc" => write_doc = true,
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let write_doc = write_doc || (keys == KEYS && deno_keys == DENO_KEYS && backup_mb == BACKUP_MB);
    cmd!(sh, "cargo build --release -p kv-server")
        .run()
        .context("building kv")?;
    let kv = target_dir().join("release").join("kv");
    let deno = tools::ensure_deno(sh)?;
    let script = project_root().join("bench").join("deno_cli.ts");
    let dir = target_dir().join("bench").join("cli-scratch");
    if dir.exists() {
        sh.remove_path(&dir)?;
    }
    sh.create_dir(&dir)?;
    let input = dir.join("input.ndjson");
    let deno_input = dir.join("deno-input.ndjson");
    write_input(&input, keys)?;
    write_input(&deno_input, deno_keys)?;

    let db = dir.join("kv.sqlite3");
    let exported = dir.join("kv-export.ndjson");
    let mut runs = Vec::new();
    let t = Instant::now();
    cmd!(sh, "{kv} import {input} --db {db}").quiet().run()?;
    runs.push(Run {
        name: "kv import",
        keys,
        secs: t.elapsed().as_secs_f64(),
    });
    let t = Instant::now();
    cmd!(sh, "{kv} export --db {db} --file {exported}")
        .quiet()
        .run()?;
    runs.push(Run {
        name: "kv export",
        keys,
        secs: t.elapsed().as_secs_f64(),
    });
    let lines = std::fs::read_to_string(&exported)?.lines().count() as u64;
    anyhow::ensure!(lines == keys, "kv export wrote {lines} lines of {keys}");

    // A backup of a database of about `backup_mb` MB (800-byte values),
    // beside a plain copy of the same file (`cp` then `sync`), the rate the
    // disk allows.
    let big_input = dir.join("big.ndjson");
    let big = dir.join("big.sqlite3");
    let big_keys = backup_mb * 1_000_000 / BIG_ENTRY_BYTES;
    write_input_sized(&big_input, big_keys, BIG_VALUE)?;
    cmd!(sh, "{kv} import {big_input} --db {big}")
        .quiet()
        .run()?;
    sh.remove_path(&big_input)?;
    let size = std::fs::metadata(&big)?.len();
    let backup = dir.join("big.backup.sqlite3");
    let t = Instant::now();
    cmd!(sh, "{kv} backup {big} {backup}").quiet().run()?;
    let backup_secs = t.elapsed().as_secs_f64();
    let copy = dir.join("big.copy.sqlite3");
    let t = Instant::now();
    cmd!(sh, "cp {big} {copy}").run()?;
    cmd!(sh, "sync").run()?;
    let copy_secs = t.elapsed().as_secs_f64();

    let deno_db = dir.join("deno.sqlite3");
    let deno_out = dir.join("deno-export.ndjson");
    for (mode, a, b, name) in [
        ("import", &deno_input, &deno_db, "Deno import"),
        ("export", &deno_db, &deno_out, "Deno export"),
    ] {
        let out = cmd!(sh, "{deno} run -A --unstable-kv {script} {mode} {a} {b}")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .read()?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).with_context(|| format!("Deno printed {out:?}"))?;
        runs.push(Run {
            name,
            keys: v["keys"].as_u64().context("keys")?,
            secs: v["secs"].as_f64().context("secs")?,
        });
    }
    let mut body = report(&runs);
    let mb = size as f64 / 1e6;
    let rate = mb / backup_secs;
    body.push_str(&format!(
        "\n`kv backup` of a {mb:.0} MB SQLite file ({big_keys} keys of {BIG_VALUE}-byte values): \
         {backup_secs:.2} s, {rate:.0} MB/s (goal ≥ {BACKUP_GOAL_MB_S:.0} MB/s: {}); `cp` + `sync` \
         of the same file: {copy_secs:.2} s, {:.0} MB/s.\n",
        if rate >= BACKUP_GOAL_MB_S {
            "met"
        } else {
            "MISSED"
        },
        mb / copy_secs
    ));
    println!("{body}");
    if write_doc {
        let section = bench_doc::section(
            "Command line: export and import",
            &bench_doc::provenance(sh),
            "cargo xtask bench cli",
            &body,
        );
        let path = bench_doc::write("cli", &section)?;
        println!("wrote {}", path.display());
    }
    sh.remove_path(&dir)?;
    Ok(())
}

/// `keys` kv-utils NDJSON lines `["bench", i]` → a 100-character string.
fn write_input(path: &std::path::Path, keys: u64) -> anyhow::Result<()> {
    write_input_sized(path, keys, 100)
}

/// `keys` kv-utils NDJSON lines `["bench", i]` → a `len`-character string.
fn write_input_sized(path: &std::path::Path, keys: u64, len: usize) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let value = "v".repeat(len);
    for i in 0..keys {
        writeln!(
            out,
            r#"{{"key":[{{"type":"string","value":"bench"}},{{"type":"number","value":{i}}}],"value":{{"type":"string","value":"{value}"}},"versionstamp":"00000000000000010000"}}"#
        )?;
    }
    out.flush()?;
    Ok(())
}

fn report(runs: &[Run]) -> String {
    let find = |name: &str| runs.iter().find(|r| r.name == name);
    let mut rows = vec![
        ["work", "keys", "seconds", "keys/s", "goal"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for r in runs {
        let goal = match r.name {
            "kv export" => goal(r.rate(), EXPORT_GOAL),
            "kv import" => goal(r.rate(), IMPORT_GOAL),
            _ => String::new(),
        };
        rows.push(vec![
            r.name.to_owned(),
            r.keys.to_string(),
            format!("{:.2}", r.secs),
            format!("{:.0}", r.rate()),
            goal,
        ]);
    }
    let mut body = String::from(
        "SQLite files, 100-byte string values under `[\"bench\", i]`. kv: `kv import` then \
         `kv export` of the release build. Deno: `bench/deno_cli.ts`, kv-utils' way (one \
         checked `set` per line, a `list` loop) on Deno's local KV.\n\n",
    );
    body.push_str(&bench_doc::markdown_table(&rows, |c| c == 0 || c == 4));
    for (ours, theirs) in [("kv export", "Deno export"), ("kv import", "Deno import")] {
        if let (Some(a), Some(b)) = (find(ours), find(theirs)) {
            body.push_str(&format!(
                "\n{ours} vs {theirs}: {}\n",
                bench_doc::ratio(Some(a.rate()), Some(b.rate()), true)
            ));
        }
    }
    body
}

fn goal(rate: f64, goal: f64) -> String {
    let met = if rate >= goal { "met" } else { "MISSED" };
    format!("≥ {goal:.0}/s: {met}")
}
