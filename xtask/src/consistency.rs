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
///
/// The dev profile (dependencies optimised) reuses the test build, which
/// keeps CI short; `KV_CONSISTENCY_RELEASE=1` builds in release.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let release = std::env::var_os("KV_CONSISTENCY_RELEASE").is_some();
    let (profile_flag, profile_dir): (&[&str], &str) = if release {
        (&["--release"], "release")
    } else {
        (&[], "debug")
    };
    let mut all = default_args();
    all.extend(args.iter().cloned());
    if all.iter().any(|a| a == "--faults") && !all.iter().any(|a| a == "--no-faults") {
        cmd!(sh, "cargo build {profile_flag...} -p kv-server --bin kv").run()?;
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || crate::project_root().join("target"),
            std::path::PathBuf::from,
        );
        let bin = target.join(profile_dir).join("kv");
        all.push("--kv-bin".into());
        all.push(bin.to_string_lossy().into_owned());
    }
    cmd!(
        sh,
        "cargo run {profile_flag...} -p kv-consistency -- {all...}"
    )
    .run()?;
    Ok(())
}
