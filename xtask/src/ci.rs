//! `cargo xtask ci`: the single gate, locally and in CI (`.ci/run`).

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::{artifacts, conformance, etcd, tools};

type StepFn<'a> = Box<dyn Fn() -> anyhow::Result<()> + 'a>;

/// Runs every step in order and stops at the first failure, naming it.
/// `--skip a,b` leaves steps out and `--keep-going` runs every step despite
/// failures, then reports them all (both for local use; CI uses neither).
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let mut skip: Vec<String> = Vec::new();
    let mut keep_going = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--skip" => {
                let list = it.next().context("--skip takes a list of step names")?;
                skip.extend(list.split(',').map(str::to_owned));
            }
            "--keep-going" => keep_going = true,
            other => bail!(
                "unknown argument `{other}`; usage: cargo xtask ci [--skip STEP,..] [--keep-going]"
            ),
        }
    }
    let summary: Cell<Option<conformance::Counts>> = Cell::new(None);
    let steps: Vec<(&str, StepFn<'_>)> = vec![
        ("tools", Box::new(|| step_tools(sh))),
        (
            "fmt",
            Box::new(|| Ok(cmd!(sh, "cargo fmt --all -- --check").run()?)),
        ),
        (
            "clippy",
            Box::new(|| {
                Ok(cmd!(
                    sh,
                    "cargo clippy --workspace --all-targets --all-features -- -D warnings"
                )
                .run()?)
            }),
        ),
        ("test", Box::new(|| step_test(sh))),
        (
            "doc",
            Box::new(|| {
                Ok(cmd!(sh, "cargo doc --workspace --no-deps")
                    .env("RUSTDOCFLAGS", "-Dwarnings")
                    .run()?)
            }),
        ),
        (
            "conformance",
            Box::new(|| {
                summary.set(Some(conformance::run(sh, artifacts::WORKSPACE, &[])?));
                Ok(())
            }),
        ),
        (
            "etcd",
            Box::new(|| {
                if let Some(etcd) = etcd::run(sh, &[])? {
                    let mut total = summary.get().unwrap_or_default();
                    total.passed += etcd.passed;
                    total.failed += etcd.failed;
                    total.ignored += etcd.ignored;
                    summary.set(Some(total));
                }
                Ok(())
            }),
        ),
        ("clients", Box::new(|| crate::clients::run(sh, &[]))),
        ("consistency", Box::new(|| crate::consistency::run(sh, &[]))),
        ("scale", Box::new(|| crate::bench_scale::ci(sh))),
        ("fuzz", Box::new(|| crate::fuzz::run(sh, &[]))),
        ("licenses", Box::new(|| crate::licenses::run(sh))),
    ];

    for name in &skip {
        if !steps.iter().any(|(step, _)| step == name) {
            bail!("unknown step `{name}` in --skip");
        }
    }
    let total = steps.len();
    let started = Instant::now();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let mut failed: Vec<(&str, anyhow::Error)> = Vec::new();
    for (i, (name, step)) in steps.iter().enumerate() {
        println!();
        if skip.iter().any(|s| s == name) {
            println!("==> ci [{}/{total}] {name}: skipped (--skip)", i + 1);
            continue;
        }
        println!("==> ci [{}/{total}] {name}", i + 1);
        let t = Instant::now();
        let result = step();
        let took = t.elapsed();
        timings.push((name, took));
        if let Err(e) = result {
            if keep_going {
                println!(
                    "==> ci step `{name}` FAILED ({:.1}s): {e:#}",
                    took.as_secs_f64()
                );
                failed.push((name, e));
                continue;
            }
            println!();
            println!(
                "==> ci FAILED at step `{name}` after {:.0?}",
                started.elapsed()
            );
            return Err(e.context(format!("ci step `{name}` failed")));
        }
        println!("==> ci step `{name}` ok ({:.1}s)", took.as_secs_f64());
    }
    println!();
    let verdict = if failed.is_empty() {
        "passed"
    } else {
        "FAILED"
    };
    println!(
        "==> ci {verdict} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for (name, took) in timings {
        let mark = if failed.iter().any(|(f, _)| *f == name) {
            "  FAILED"
        } else {
            ""
        };
        println!("    {name:<12} {:>7.1}s{mark}", took.as_secs_f64());
    }
    // The conformance count closes the log, in the plain `N passed, N failed`
    // form that log readers look for.
    if let Some(total) = summary.get() {
        println!(
            "conformance: {} passed, {} failed, {} skipped",
            total.passed, total.failed, total.ignored
        );
    }
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
        bail!("ci steps failed: {}", names.join(", "));
    }
    Ok(())
}

/// Installs the pinned tools and type-checks the Deno scripts with them.
fn step_tools(sh: &Shell) -> anyhow::Result<()> {
    // clippy --all-features builds kv-etcd, whose build script runs protoc.
    crate::etcd::ensure_packages(sh)?;
    let deno = tools::ensure_deno(sh)?;
    println!("deno: {}", deno.display());
    cmd!(sh, "{deno} --version").run()?;
    let scripts: Vec<String> = sh
        .read_dir("bench")
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if !scripts.is_empty() {
        cmd!(sh, "{deno} check --unstable-kv {scripts...}")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .run()
            .context("type-checking the Deno scripts")?;
    }
    Ok(())
}

/// Every crate's tests, the in-process conformance targets included. (The
/// conformance step runs that harness again, from this build, to add the
/// real-server targets and the matrix: a few seconds, where a different
/// package selection would rebuild much of the dependency graph.)
fn step_test(sh: &Shell) -> anyhow::Result<()> {
    cmd!(sh, "cargo test --workspace --no-fail-fast").run()?;
    Ok(())
}
