//! `cargo xtask consistency [ARGS..]`: records concurrent histories on every
//! backend and checks them for linearizability and serializability
//! (`kv-consistency`), including a `kv serve` process killed and restarted
//! under load.
//!
//! With no arguments it runs the bounded CI counts (20 histories × 8 clients
//! × 200 operations per backend, plus faults); `KV_CONSISTENCY_HISTORIES`,
//! `KV_CONSISTENCY_CLIENTS` and `KV_CONSISTENCY_OPS` raise them, and any
//! ARGS are handed to the binary as they are (`--histories 500`,
//! `--backends remote`, `--seed 7`, `--no-faults`, ...), overriding the
//! defaults.

use xshell::{Shell, cmd};

/// The CI defaults, overridable through the environment.
fn default_args() -> Vec<String> {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    vec![
        "--backends".into(),
        "memory,sqlite,redb,remote".into(),
        "--histories".into(),
        var("KV_CONSISTENCY_HISTORIES", "20"),
        "--clients".into(),
        var("KV_CONSISTENCY_CLIENTS", "8"),
        "--ops".into(),
        var("KV_CONSISTENCY_OPS", "200"),
        "--faults".into(),
    ]
}

/// Builds `kv serve` (for the fault run) and runs the checker; fails when
/// any history has a violation.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let mut all = default_args();
    all.extend(args.iter().cloned());
    if all.iter().any(|a| a == "--faults") {
        cmd!(sh, "cargo build --release -p kv-server").run()?;
    }
    cmd!(sh, "cargo run --release -p kv-consistency -- {all...}").run()?;
    Ok(())
}
