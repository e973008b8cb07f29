//! Builds test binaries and the `kv` server once and runs them directly.
//!
//! `cargo test -p X` and `cargo test --workspace` unify features differently
//! (dev-dependencies count only for the packages selected), so mixing them in
//! one CI run rebuilds half the dependency graph. `ci` therefore builds with
//! `--workspace` everywhere and then runs the artifacts cargo reports, instead
//! of asking cargo again with another package selection.

use std::path::PathBuf;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// The package selection of `ci`: the same as its `cargo test --workspace`.
pub(crate) const WORKSPACE: &[&str] = &["--workspace"];

/// Executables among cargo's `--message-format=json` lines: `(target name,
/// target kinds, whether it is a test harness, path)`.
fn executables(json: &str) -> Vec<(String, Vec<String>, bool, PathBuf)> {
    let mut out = Vec::new();
    for line in json.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let kinds = msg["target"]["kind"]
            .as_array()
            .map(|k| {
                k.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let test = msg["profile"]["test"].as_bool().unwrap_or(false);
        out.push((name, kinds, test, PathBuf::from(exe)));
    }
    out
}

/// Builds (without running) the tests of `selection` and returns the
/// executable of the integration test target `name`.
pub(crate) fn test_binary(sh: &Shell, selection: &[&str], name: &str) -> anyhow::Result<PathBuf> {
    let json = cmd!(
        sh,
        "cargo test {selection...} --no-run --message-format=json-render-diagnostics"
    )
    .read()
    .context("building the tests")?;
    match executables(&json)
        .into_iter()
        .find(|(n, kinds, _, _)| n == name && kinds.iter().any(|k| k == "test"))
    {
        Some((_, _, _, path)) => Ok(path),
        None => bail!("cargo built no test target named `{name}`"),
    }
}

/// Builds the `kv` server binary (kv-server) with `selection`'s features and
/// returns its path.
pub(crate) fn kv_server_bin(sh: &Shell, selection: &[&str]) -> anyhow::Result<PathBuf> {
    let json = cmd!(
        sh,
        "cargo build {selection...} --bin kv --message-format=json-render-diagnostics"
    )
    .read()
    .context("building kv-server")?;
    match executables(&json)
        .into_iter()
        .find(|(n, kinds, test, _)| n == "kv" && !test && kinds.iter().any(|k| k == "bin"))
    {
        Some((_, _, _, path)) => Ok(path),
        None => bail!("cargo built no `kv` binary"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables() {
        let json = r#"{"reason":"compiler-artifact","target":{"name":"kv","kind":["bin"]},"profile":{"test":false},"executable":"/t/debug/kv"}
{"reason":"compiler-artifact","target":{"name":"kv","kind":["lib"]},"profile":{"test":false},"executable":null}
{"reason":"build-finished","success":true}
not json"#;
        let found = executables(json);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "kv");
        assert_eq!(found[0].3, PathBuf::from("/t/debug/kv"));
    }
}
