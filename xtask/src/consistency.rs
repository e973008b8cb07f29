//! `cargo xtask consistency [ARGS..]`: records concurrent histories on every
//! backend and checks them for linearizability, serializability and
//! dependency cycles (`kv-consistency`), including a `kv serve` process
//! killed and restarted under load, with clients in this process and in
//! processes of their own, and SQLite on a simulated slow disk.
//!
//! With no arguments it runs the bounded CI counts (20 histories × 8 clients
//! × 200 operations per backend, 8 histories for each run with faults: the
//! slow disk, `kv serve` killed with in-process clients and with client
//! processes); `KV_CONSISTENCY_HISTORIES`, `KV_CONSISTENCY_FAULT_HISTORIES`,
//! `KV_CONSISTENCY_CLIENTS` and `KV_CONSISTENCY_OPS` raise them, and any ARGS are handed to the binary
//! as they are (`--histories 500`, `--backends remote`, `--seed 7`,
//! `--no-faults`, ...), overriding the defaults.
//!
//! The etcd run (a 3-member cluster with its leader killed) belongs to
//! `cargo xtask etcd`, which starts the cluster.

use std::path::PathBuf;

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::artifacts;

/// The CI defaults, overridable through the environment.
fn default_args() -> Vec<String> {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    vec![
        "--backends".into(),
        "memory,sqlite,sqlite+slow,redb,remote".into(),
        "--histories".into(),
        var("KV_CONSISTENCY_HISTORIES", "20"),
        "--fault-histories".into(),
        var("KV_CONSISTENCY_FAULT_HISTORIES", "8"),
        "--clients".into(),
        var("KV_CONSISTENCY_CLIENTS", "8"),
        "--ops".into(),
        var("KV_CONSISTENCY_OPS", "200"),
        "--faults".into(),
        "--processes".into(),
    ]
}

/// The `kv` server and `kv-consistency` binaries, built once with `ci`'s
/// package selection (so that nothing is rebuilt for other features); the
/// dev profile (dependencies optimised) unless `KV_CONSISTENCY_RELEASE=1`.
pub(crate) fn binaries(sh: &Shell) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut selection = artifacts::WORKSPACE.to_vec();
    if std::env::var_os("KV_CONSISTENCY_RELEASE").is_some() {
        selection.push("--release");
    }
    let mut bins = artifacts::bins(sh, &selection, &["kv", "kv-consistency"])?.into_iter();
    let kv = bins.next().context("cargo reported the kv binary")?;
    let consistency = bins.next().context("cargo reported kv-consistency")?;
    Ok((kv, consistency))
}

/// Builds the binaries and runs the checker; fails when any history has a
/// violation.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let (kv, consistency) = binaries(sh)?;
    let mut all = default_args();
    all.push("--kv-bin".into());
    all.push(kv.to_string_lossy().into_owned());
    all.extend(args.iter().cloned());
    cmd!(sh, "{consistency} {all...}")
        .run()
        .context("consistency violations (or the run failed)")?;
    Ok(())
}
