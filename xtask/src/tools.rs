//! Pinned tools, installed into the ignored folder `.tools/`.
//!
//! Deno comes from the npm package `deno`, whose binary ships in a
//! per-platform optional dependency (`@deno/linux-x64-glibc` and the like).
//! That binary works without npm's install scripts, so we run it directly.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::project_root;

/// The Deno release the project tests and benchmarks against.
pub(crate) const DENO_VERSION: &str = "2.9.6";

/// Returns the path of the pinned Deno, installing it with npm first if it is
/// missing or of another version. Fast when it is present.
pub(crate) fn ensure_deno(sh: &Shell) -> anyhow::Result<PathBuf> {
    let prefix = project_root().join(".tools").join("npm");
    if let Some(deno) = find_deno(sh, &prefix) {
        return Ok(deno);
    }
    println!(
        "installing deno@{DENO_VERSION} from npm into {}",
        prefix.display()
    );
    sh.create_dir(&prefix)?;
    let package = format!("deno@{DENO_VERSION}");
    cmd!(
        sh,
        "npm install --prefix {prefix} {package} --save-exact --no-audit --no-fund --loglevel=error"
    )
    .run()
    .context("`npm install deno` failed")?;
    match find_deno(sh, &prefix) {
        Some(deno) => Ok(deno),
        None => bail!(
            "npm installed deno@{DENO_VERSION}, but no working deno {DENO_VERSION} binary \
             was found under {}",
            prefix.display()
        ),
    }
}

/// The first candidate binary under `prefix` that reports the pinned version.
fn find_deno(sh: &Shell, prefix: &Path) -> Option<PathBuf> {
    let modules = prefix.join("node_modules");
    let mut candidates = Vec::new();
    // The platform package's binary first: it needs neither node nor the
    // install script that would put it in place of `deno/bin.cjs`.
    if let Ok(dir) = std::fs::read_dir(modules.join("@deno")) {
        let mut platform: Vec<PathBuf> = dir.flatten().map(|e| e.path().join("deno")).collect();
        platform.sort();
        candidates.extend(platform);
    }
    candidates.push(modules.join(".bin").join("deno"));
    candidates.into_iter().find(|path| is_pinned_deno(sh, path))
}

fn is_pinned_deno(sh: &Shell, path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    let Ok(out) = cmd!(sh, "{path} --version").quiet().ignore_stderr().read() else {
        return false;
    };
    out.lines()
        .next()
        .is_some_and(|first| first.starts_with(&format!("deno {DENO_VERSION} ")))
}
