//! `cargo xtask fuzz [--seconds N] [TARGET..]`: coverage-guided fuzzing,
//! with libFuzzer, of what reads untrusted bytes (`fuzz/fuzz_targets`): the
//! V8 value decoder, the key decoder, and the KV Connect server's handling
//! of request bodies (which must answer 2xx or 4xx, never 5xx or panic).
//!
//! The targets are built with LLVM's sanitizer-coverage instrumentation and
//! no sanitizer, which stable Rust supports (cargo-fuzz's `--sanitizer
//! none`); our code is safe Rust, so panics and failed assertions are what
//! the fuzzer looks for. Each target runs for a bounded time (CI: a short
//! run; pass `--seconds 3600` for a long one), starting from the committed
//! seeds in `fuzz/seeds/<target>` plus the corpus it grew before in
//! `target/fuzz/corpus/<target>`. A crash fails the command and leaves its
//! input in `target/fuzz/artifacts/<target>/`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::project_root;

/// Every target, in the order they run.
const TARGETS: &[&str] = &["v8_decode", "key_decode", "server_request"];

/// Seconds each target runs when not told otherwise.
pub(crate) const DEFAULT_SECONDS: u64 = 20;

const RUSTFLAGS: &str = "--cfg fuzzing -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    -Cdebug-assertions -Coverflow-checks";

pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a number")?;
            }
            name if TARGETS.contains(&name) => targets.push(name),
            other => bail!(
                "unknown argument `{other}`; usage: cargo xtask fuzz [--seconds N] [{}]",
                TARGETS.join("|")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    let root = project_root();
    let out = root.join("target").join("fuzz");
    let manifest = root.join("fuzz").join("Cargo.toml");
    // With an explicit --target, RUSTFLAGS reach only the target's code, not
    // build scripts and proc macros (which have no libFuzzer to link).
    let host = host_triple(sh)?;
    cmd!(
        sh,
        "cargo build --release --manifest-path {manifest} --bins --target {host}"
    )
    .env("RUSTFLAGS", RUSTFLAGS)
    .env("CARGO_TARGET_DIR", out.join("build"))
    .run()
    .context("building the fuzz targets")?;
    for target in targets {
        let bin = out.join("build").join(&host).join("release").join(target);
        let corpus = out.join("corpus").join(target);
        let artifacts = out.join("artifacts").join(target);
        let seeds: PathBuf = root.join("fuzz").join("seeds").join(target);
        sh.create_dir(&corpus)?;
        sh.create_dir(&artifacts)?;
        let time = format!("-max_total_time={seconds}");
        let prefix = format!("-artifact_prefix={}/", artifacts.display());
        println!("==> fuzzing {target} for {seconds} s");
        cmd!(
            sh,
            "{bin} {time} {prefix} -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 {corpus} {seeds}"
        )
        .run()
        .with_context(|| {
            format!(
                "fuzz target {target} found a failing input: see {}",
                artifacts.display()
            )
        })?;
    }
    Ok(())
}

fn host_triple(sh: &Shell) -> anyhow::Result<String> {
    let info = cmd!(sh, "rustc -vV").read()?;
    info.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host triple")
}
