//! Project automation for the kv workspace, run as `cargo xtask <command>`.
//!
//! - `ci`: the single gate (tools, fmt, clippy, tests, docs, conformance).
//! - `conformance [ARGS..]`: the conformance suite with a target × area matrix.
//! - `bench embedded|server|queue|v8|scale`: kv against a peer (Deno's
//!   built-in KV, V8's own serializer) in the same invocation, each target's
//!   figures written into its section of `docs/benchmarks.md`.
//! - `fuzz`: libFuzzer on the decoders and the server's request handling.
//! - `crash`: the kv-sqlite crash test with more rounds (`N`, default 200).
//! - `tools`: installs the pinned tools (Deno) into `.tools/`.
//!
//! xtask never depends on the workspace's own crates, so it compiles in
//! seconds and keeps working while they do not build.

#![allow(clippy::print_stdout)]

mod artifacts;
mod bench;
mod bench_cli;
mod bench_doc;
mod bench_more;
mod bench_scale;
mod ci;
mod clients;
mod conformance;
mod consistency;
mod etcd;
mod fuzz;
mod licenses;
mod serve;
mod tools;

#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

const HELP: &str = "\
cargo xtask <command>

commands:
  ci [--skip STEP,..]         the single gate: tools, fmt, clippy, test, doc, conformance,
                              etcd, clients, consistency, scale, fuzz, licenses
  conformance [ARGS..]        run the conformance suite (ARGS go to the harness, e.g. a
                              name filter); KV_TEST_URL=<url> runs it against that URL
  bench server|queue|v8 [--scale F]
                              kv serve under load (and Deno's script against it and
                              against Deno's local KV); queue latency and throughput;
                              the V8 codec beside V8's own (node:v8 in Deno)
  bench embedded [--workload NAME] [--kv-backend sqlite,redb]
                              kv on SQLite and redb against Deno KV, in-process on files
  bench scale [--sizes 10k,1M,10M] [--deno-sizes 10k,1M]
                              get, set and list latency and file size per key as the data
                              grows, on SQLite, redb and Deno KV (each bench target writes
                              its section of docs/benchmarks.md; --write-doc for partial runs)
  bench cli [--keys N] [--deno-keys N] [--backup-mb N]
                              kv export and kv import of 1 M keys on SQLite, beside a Deno
                              program doing the same the kv-utils way; kv backup of 1 GB
  etcd [ARGS..]               start a 3-member etcd cluster on loopback ports, run the
                              conformance suite's etcd target on it, stop it; then
                              `etcd consistency` on a fresh cluster
  etcd test | etcd consistency [ARGS..] | etcd bench [--workload NAME] [--scale F]
                              kv-etcd's fault tests (RTO printed) | histories with the leader
                              killed (also part of `etcd`) | the bench workloads on etcd
  consistency [ARGS..]        record and check histories on every backend (20x8x200, and
                              8 histories each with a slow disk, kill -9 of kv serve,
                              client processes); ARGS go to kv-consistency
  clients                     real Deno, Node (@deno/kv) and Python (denokv) clients
                              against a real kv serve process
  crash                       kv-sqlite crash test, N rounds (env N, default 200)
  fuzz [--seconds N] [TARGET..]
                              libFuzzer on the V8 value and key decoders and the server's
                              request handling, N seconds per
                              target (default 20; crashes land in target/fuzz/artifacts)
  licenses                    every dependency carries an accepted license (cargo
                              metadata; the list is in xtask/src/licenses.rs)
  tools                       install the pinned tools (Deno) into .tools/
";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(&sh, rest),
        Some("conformance") => {
            conformance::run(&sh, &["-p", "kv-conformance", "-p", "kv-server"], rest).map(drop)
        }
        Some("clients") => clients::run(&sh, rest),
        Some("consistency") => consistency::run(&sh, rest),
        Some("etcd") => etcd::run(&sh, rest).map(drop),
        Some("bench") => bench::run(&sh, rest),
        Some("crash") => crash(&sh, rest),
        Some("fuzz") => fuzz::run(&sh, rest),
        Some("licenses") => licenses::run(&sh),
        Some("tools") => {
            let deno = tools::ensure_deno(&sh)?;
            println!("deno: {}", deno.display());
            Ok(())
        }
        Some("help" | "-h" | "--help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

/// The workspace root (the parent of this crate's folder). `cargo run` and
/// `cargo test` set `CARGO_MANIFEST_DIR` at run time too, which stays right
/// when a checkout is moved with its `target/`; the compile-time value is the
/// fallback for running the binary directly.
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    Path::new(&manifest_dir)
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` or `target/` in the
/// project root.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// Runs the kv-sqlite crash test (`kv-sqlite/tests/it/crash.rs`) with
/// `KV_CRASH_ROUNDS=${N:-200}`.
fn crash(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let rounds = std::env::var("N").unwrap_or_else(|_| "200".to_owned());
    rounds
        .parse::<u32>()
        .with_context(|| format!("N={rounds} is not a number of rounds"))?;
    println!("crash test: {rounds} rounds");
    cmd!(sh, "cargo test -p kv-sqlite --release crash -- {args...}")
        .env("KV_CRASH_ROUNDS", &rounds)
        .run()
        .context("the crash test failed")?;
    Ok(())
}
