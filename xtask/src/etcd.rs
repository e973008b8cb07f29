//! `cargo xtask etcd`: kv on a real etcd cluster.
//!
//! - `cargo xtask etcd [ARGS..]`: installs what the etcd backend needs when
//!   missing (Debian's `protobuf-compiler` for building etcd-client,
//!   `etcd-server` for the cluster), starts a 3-member cluster on loopback
//!   ports with `scripts/etcd-cluster.sh`, runs the whole conformance suite
//!   against it (`KV_ETCD_ENDPOINTS=… cargo test -p kv-conformance --test
//!   conformance -- etcd::`, ARGS go to the harness as well), stops the
//!   cluster whatever happened, and prints the matrix and the count; then
//!   the consistency run below, on a fresh cluster.
//! - `cargo xtask etcd consistency [ARGS..]`: kv-consistency's `etcd+kills`
//!   target on a fresh 3-member cluster: histories recorded while the
//!   leader is killed with SIGKILL and restarted, checked like every other
//!   backend's, with the staleness of eventual (serializable) reads
//!   printed. 3 histories × 8 clients × 200 operations by default
//!   (`KV_CONSISTENCY_ETCD_HISTORIES` raises it); ARGS go to kv-consistency.
//! - `cargo xtask etcd test`: kv-etcd's own tests, which start their own
//!   clusters and kill members (the leader-kill RPO/RTO and no-quorum
//!   tests), with their measurements shown.
//! - `cargo xtask etcd bench [--workload NAME,..] [--scale F]`: kv-bench's
//!   workloads (built with its `etcd` feature) on a fresh 3-member cluster;
//!   by default every workload plus `get_eventual`, at a scale of 0.05
//!   (each commit waits for fsyncs on two members, so the full counts would
//!   take minutes).

use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::conformance::{self, Counts, Matrix};
use crate::{artifacts, project_root};

const USAGE: &str = "usage: cargo xtask etcd [HARNESS ARGS..] | etcd test | etcd consistency [ARGS..] | etcd bench [--workload NAME] [--scale F]";

/// Runs the subcommand in `args` (see the module docs). For the conformance
/// run, returns its counts.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<Option<Counts>> {
    match args.first().map(String::as_str) {
        Some("test") => {
            ensure_packages(sh)?;
            cmd!(sh, "cargo test -p kv-etcd -- --nocapture")
                .run()
                .context("kv-etcd's tests failed")?;
            Ok(None)
        }
        Some("bench") => bench(sh, &args[1..]).map(|()| None),
        Some("consistency") => consistency(sh, &args[1..]).map(|()| None),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(None)
        }
        _ => {
            let counts = conformance(sh, args)?;
            consistency(sh, &[])?;
            Ok(Some(counts))
        }
    }
}

/// Records and checks histories on a fresh cluster whose leader is killed
/// while they are recorded (kv-consistency's `etcd+kills` target).
fn consistency(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    ensure_packages(sh)?;
    let (_, bin) = crate::consistency::binaries(sh)?;
    let cluster = Cluster::start()?;
    let histories =
        std::env::var("KV_CONSISTENCY_ETCD_HISTORIES").unwrap_or_else(|_| "3".to_owned());
    let dir = cluster.dir.clone();
    let endpoints = cluster.endpoints.clone();
    let result = cmd!(
        sh,
        "{bin} --backends '' --etcd {endpoints} --etcd-dir {dir} --histories {histories} --clients 8 --ops 200 {args...}"
    )
    .run();
    drop(cluster);
    result.context("etcd consistency violations (or the run failed)")?;
    Ok(())
}

/// Installs Debian's `protobuf-compiler` (etcd-client's build script runs
/// `protoc`) and `etcd-server` when `protoc` or `etcd` is missing. The
/// packages come from apt, so this needs root (as CI has).
pub(crate) fn ensure_packages(sh: &Shell) -> anyhow::Result<()> {
    let has = |tool: &str| {
        cmd!(sh, "sh -c {tool}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    };
    let mut missing = Vec::new();
    if !has("command -v protoc") {
        missing.push("protobuf-compiler");
    }
    if !has("command -v etcd") {
        missing.push("etcd-server");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    println!("==> installing {list} with apt-get");
    cmd!(sh, "apt-get update -qq")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .context("apt-get update (installing needs root)")?;
    cmd!(sh, "apt-get install -y -qq {missing...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .with_context(|| format!("apt-get install {list}"))?;
    Ok(())
}

/// A cluster started by `scripts/etcd-cluster.sh`, stopped on drop.
struct Cluster {
    dir: String,
    endpoints: String,
}

impl Cluster {
    /// Starts a cluster, trying new random ports once if the first ones
    /// were taken by the time etcd bound them.
    fn start() -> anyhow::Result<Cluster> {
        Self::start_once().or_else(|e| {
            println!("warning: {e:#}; starting the etcd cluster again on other ports");
            Self::start_once()
        })
    }

    fn start_once() -> anyhow::Result<Cluster> {
        let script = project_root().join("scripts").join("etcd-cluster.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg("start")
            .stderr(Stdio::inherit())
            .output()
            .context("running scripts/etcd-cluster.sh start")?;
        if !output.status.success() {
            bail!("scripts/etcd-cluster.sh start failed ({})", output.status);
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
        let dir = lines.next().context("the script printed no directory")?;
        let endpoints = lines.next().context("the script printed no endpoints")?;
        let cluster = Cluster {
            dir: dir.trim().to_owned(),
            endpoints: endpoints.trim().to_owned(),
        };
        println!(
            "etcd cluster up: {} (data in {})",
            cluster.endpoints, cluster.dir
        );
        Ok(cluster)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = project_root().join("scripts").join("etcd-cluster.sh");
        let stopped = Command::new("bash")
            .arg(&script)
            .args(["stop", &self.dir])
            .status();
        match stopped {
            Ok(s) if s.success() => println!("etcd cluster stopped"),
            other => println!(
                "warning: stopping the etcd cluster in {}: {other:?}",
                self.dir
            ),
        }
    }
}

fn conformance(sh: &Shell, args: &[String]) -> anyhow::Result<Counts> {
    ensure_packages(sh)?;
    // Build first, so that the cluster is not idle through a long compile;
    // with ci's package selection, so nothing is rebuilt.
    let harness = artifacts::test_binary(sh, artifacts::WORKSPACE, "conformance")?;
    let cluster = Cluster::start()?;
    let mut harness_args = vec!["etcd::".to_owned()];
    harness_args.extend(args.iter().cloned());
    let mut matrix = Matrix::default();
    println!("KV_ETCD_ENDPOINTS={}", cluster.endpoints);
    let status = conformance::run_harness(
        &harness,
        &harness_args,
        // An empty KV_TEST_URL is unset for the harness.
        &[
            ("KV_ETCD_ENDPOINTS", &cluster.endpoints),
            ("KV_TEST_URL", ""),
        ],
        None,
        &mut matrix,
    )?;
    drop(cluster);
    let total = matrix.report("etcd conformance");
    if total.failed > 0 {
        bail!("{} etcd conformance case(s) failed", total.failed);
    }
    if !status.success() {
        bail!("the conformance harness exited with {status}");
    }
    if total.passed == 0 {
        bail!("no etcd conformance case ran");
    }
    Ok(total)
}

fn bench(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    ensure_packages(sh)?;
    cmd!(
        sh,
        "cargo build --release -p kv-bench --features etcd --bin kv-bench"
    )
    .run()
    .context("building kv-bench with the etcd feature")?;
    let bin = crate::target_dir().join("release").join("kv-bench");
    let mut args = args.to_vec();
    for (flag, default) in [("--workload", "all,get_eventual"), ("--scale", "0.05")] {
        if !args.iter().any(|a| a == flag) {
            args.extend([flag.to_owned(), default.to_owned()]);
        }
    }
    let cluster = Cluster::start()?;
    let url = format!("etcd://{}/bench", cluster.endpoints);
    let output = cmd!(sh, "{bin} --backend {url} {args...}")
        .output()
        .context("running the etcd bench")?;
    drop(cluster);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the etcd bench failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    println!();
    println!("kv on a 3-member etcd cluster (loopback, one machine):");
    println!(
        "{:<14} {:>8} {:>10} {:>10} {:>10}",
        "workload", "ops", "ops/s", "p50 µs", "p99 µs"
    );
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("bench output {line:?}"))?;
        let ops = v["ops"].as_f64().unwrap_or(0.0);
        let secs = v["secs"].as_f64().unwrap_or(0.0);
        println!(
            "{:<14} {:>8} {:>10.0} {:>10.0} {:>10.0}",
            v["name"].as_str().unwrap_or("?"),
            ops,
            if secs > 0.0 { ops / secs } else { 0.0 },
            v["p50_us"].as_f64().unwrap_or(0.0),
            v["p99_us"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}
