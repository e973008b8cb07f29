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
    let mut paths = bins(sh, selection, &["kv"])?;
    paths.pop().context("cargo built no `kv` binary")
}

/// Builds the binaries `names` in one cargo call with `selection`'s
/// features and returns their paths, in the order of `names`.
pub(crate) fn bins(sh: &Shell, selection: &[&str], names: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let flags: Vec<String> = names.iter().map(|n| format!("--bin={n}")).collect();
    let json = cmd!(
        sh,
        "cargo build {selection...} {flags...} --message-format=json-render-diagnostics"
    )
    .read()
    .with_context(|| format!("building {}", names.join(", ")))?;
    let found = executables(&json);
    names
        .iter()
        .map(|name| {
            match found
                .iter()
                .find(|(n, kinds, test, _)| n == name && !test && kinds.iter().any(|k| k == "bin"))
            {
                Some((_, _, _, path)) => Ok(path.clone()),
                None => bail!("cargo built no `{name}` binary"),
            }
        })
        .collect()
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
