//! `cargo xtask licenses`: every crate the workspace builds on, for any
//! platform, carries a license we accept, as `cargo metadata` reads it from
//! the lock file. This is the license half of `cargo deny`, which the test
//! machines do not have; its advisory half needs the RustSec database from
//! GitHub, which they cannot reach.

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// Licenses any dependency may carry (SPDX identifiers).
const ALLOWED: &[&str] = &[
    "0BSD",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSL-1.0",
    "CC0-1.0",
    "CDLA-Permissive-2.0",
    "ISC",
    "MIT",
    "MPL-2.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "Zlib",
];

pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    let json = cmd!(
        sh,
        "cargo metadata --format-version 1 --all-features --locked"
    )
    .quiet()
    .read()
    .context("cargo metadata")?;
    let meta: serde_json::Value = serde_json::from_str(&json)?;
    let ours: Vec<&str> = meta["workspace_members"]
        .as_array()
        .context("workspace_members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut refused = Vec::new();
    let mut checked = 0;
    for p in meta["packages"].as_array().context("packages")? {
        if p["id"].as_str().is_some_and(|id| ours.contains(&id)) {
            continue;
        }
        checked += 1;
        let name = format!("{} {}", p["name"], p["version"]);
        match p["license"].as_str() {
            None => refused.push(format!("{name}: no SPDX license expression")),
            Some(expr) => match accepted(expr) {
                Ok(true) => {}
                Ok(false) => refused.push(format!("{name}: {expr}")),
                Err(e) => refused.push(format!("{name}: {expr} ({e})")),
            },
        }
    }
    if !refused.is_empty() {
        bail!(
            "{} of {checked} dependencies carry a license outside xtask/src/licenses.rs's list:\n  {}",
            refused.len(),
            refused.join("\n  ")
        );
    }
    println!("licenses: all {checked} dependencies carry an accepted license");
    Ok(())
}

/// Whether an SPDX expression lets us use the crate: an `OR` needs one
/// accepted side, an `AND` both; `X WITH exception` counts as `X`. Crates
/// still write the old `MIT/Apache-2.0`, which means `OR`.
fn accepted(expr: &str) -> anyhow::Result<bool> {
    let spaced = expr
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut pos = 0;
    let value = or_expr(&tokens, &mut pos)?;
    if pos != tokens.len() {
        bail!("unexpected `{}`", tokens[pos]);
    }
    Ok(value)
}

fn or_expr(t: &[&str], pos: &mut usize) -> anyhow::Result<bool> {
    let mut value = and_expr(t, pos)?;
    while t.get(*pos) == Some(&"OR") {
        *pos += 1;
        value |= and_expr(t, pos)?;
    }
    Ok(value)
}

fn and_expr(t: &[&str], pos: &mut usize) -> anyhow::Result<bool> {
    let mut value = term(t, pos)?;
    while t.get(*pos) == Some(&"AND") {
        *pos += 1;
        value &= term(t, pos)?;
    }
    Ok(value)
}

fn term(t: &[&str], pos: &mut usize) -> anyhow::Result<bool> {
    let Some(&token) = t.get(*pos) else {
        bail!("the expression ends early");
    };
    *pos += 1;
    let value = if token == "(" {
        let inner = or_expr(t, pos)?;
        if t.get(*pos) != Some(&")") {
            bail!("an unclosed `(`");
        }
        *pos += 1;
        inner
    } else if matches!(token, ")" | "AND" | "OR" | "WITH") {
        bail!("unexpected `{token}`");
    } else {
        ALLOWED.contains(&token)
    };
    if t.get(*pos) == Some(&"WITH") {
        // The exception only ever grants more.
        *pos += 2;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::accepted;

    #[test]
    fn reads_spdx_expressions() {
        for (expr, ok) in [
            ("MIT", true),
            ("MIT OR Apache-2.0", true),
            ("MIT/Apache-2.0", true),
            ("GPL-3.0-only", false),
            ("GPL-3.0-only OR MIT", true),
            ("MIT AND GPL-3.0-only", false),
            ("(MIT OR Apache-2.0) AND Unicode-3.0", true),
            ("(MIT OR GPL-2.0-only) AND GPL-2.0-only", false),
            ("Apache-2.0 WITH LLVM-exception OR MIT", true),
            ("MIT OR Apache-2.0 OR LGPL-2.1-or-later", true),
        ] {
            assert_eq!(accepted(expr).unwrap(), ok, "{expr}");
        }
        for bad in ["", "MIT OR", "(MIT", "MIT )", "AND MIT"] {
            assert!(accepted(bad).is_err(), "{bad:?}");
        }
    }
}
