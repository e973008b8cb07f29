//! Tidy checks on the workspace's layout and boundaries, run by
//! `cargo test --workspace` (see rust-analyzer's `xtask/src/tidy.rs`).
//!
//! Manifests are read with a small line-based reader that understands what
//! our `Cargo.toml` files use: `[section]` headers, `key = value` lines
//! (values may span lines inside brackets or braces) and dotted keys.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Backends: they may depend on kv-core only among our crates.
const BACKENDS: &[&str] = &["kv-sqlite", "kv-redb", "kv-remote", "kv-etcd"];

/// The exceptions to that rule. kv-remote's server (its `server` feature)
/// serves every backend through kv-queue's `QueueBackend`, so that the
/// enqueues of clients are stored whatever a program serves; the queue
/// layer itself sees only `Backend`.
const BACKEND_MAY_USE: &[(&str, &str)] = &[("kv-remote", "kv-queue")];

/// A `Cargo.toml`, as `(section, key, value)` triples in file order.
#[derive(Debug, Default)]
struct Manifest {
    entries: Vec<(String, String, String)>,
    sections: Vec<String>,
}

impl Manifest {
    fn parse(text: &str) -> Manifest {
        let mut manifest = Manifest::default();
        let mut section = String::new();
        let mut pending: Option<(String, String)> = None;
        for raw in text.lines() {
            let line = strip_comment(raw).trim();
            if let Some((key, mut value)) = pending.take() {
                value.push(' ');
                value.push_str(line);
                if depth(&value) > 0 {
                    pending = Some((key, value));
                } else {
                    manifest.entries.push((section.clone(), key, value));
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = line
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_owned();
                manifest.sections.push(section.clone());
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                let key = key.trim().replace(['"', '\''], "");
                let value = value.trim().to_owned();
                if depth(&value) > 0 {
                    pending = Some((key, value));
                } else {
                    manifest.entries.push((section.clone(), key, value));
                }
            }
        }
        manifest
    }

    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
    }

    fn package_name(&self) -> Option<String> {
        self.get("package", "name").map(unquote)
    }

    fn inherits_workspace_lints(&self) -> bool {
        self.get("lints", "workspace") == Some("true")
            || self.get("", "lints.workspace") == Some("true")
    }

    /// Dependency names from every section `kind` covers (`dependencies`,
    /// `dev-dependencies`, `build-dependencies`, also under `target.*`).
    fn dependencies(&self, kinds: &[&str]) -> BTreeSet<String> {
        let matches = |section: &str| {
            let section = section.rsplit_once("].").map_or(section, |(_, s)| s);
            let section = strip_target(section);
            kinds.contains(&section)
        };
        let mut out = BTreeSet::new();
        for (section, key, _) in &self.entries {
            if matches(section) {
                out.insert(key.split('.').next().unwrap_or(key).to_owned());
            }
        }
        // `[dependencies.foo]` tables.
        for section in &self.sections {
            for kind in kinds {
                let rest = strip_target(section);
                if let Some(name) = rest.strip_prefix(&format!("{kind}.")) {
                    out.insert(unquote(name));
                }
            }
        }
        out
    }
}

/// `target.'cfg(..)'.dependencies` → `dependencies`.
fn strip_target(section: &str) -> &str {
    if section.starts_with("target.") {
        for kind in ["dev-dependencies", "build-dependencies", "dependencies"] {
            if let Some(i) = section.find(&format!(".{kind}")) {
                return &section[i + 1..];
            }
        }
    }
    section
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches(|c| c == '"' || c == '\'').to_owned()
}

fn strip_comment(line: &str) -> &str {
    let mut in_string = None;
    for (i, c) in line.char_indices() {
        match (c, in_string) {
            ('"' | '\'', None) => in_string = Some(c),
            (q, Some(open)) if q == open => in_string = None,
            ('#', None) => return &line[..i],
            _ => {}
        }
    }
    line
}

fn depth(value: &str) -> i32 {
    let mut d = 0;
    let mut in_string = None;
    for c in value.chars() {
        match (c, in_string) {
            ('"' | '\'', None) => in_string = Some(c),
            (q, Some(open)) if q == open => in_string = None,
            ('[' | '{', None) => d += 1,
            (']' | '}', None) => d -= 1,
            _ => {}
        }
    }
    d
}

/// The quoted strings of a TOML array value.
fn strings(value: &str) -> Vec<String> {
    value
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

struct Member {
    folder: String,
    dir: PathBuf,
    manifest: Manifest,
}

fn workspace_root() -> PathBuf {
    crate::project_root()
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn members() -> anyhow::Result<Vec<Member>> {
    let root = workspace_root();
    let manifest = Manifest::parse(&read(&root.join("Cargo.toml"))?);
    let list = manifest
        .get("workspace", "members")
        .context("[workspace] members is missing")?;
    let mut out = Vec::new();
    for folder in strings(list) {
        let dir = root.join(&folder);
        let manifest = Manifest::parse(&read(&dir.join("Cargo.toml"))?);
        out.push(Member {
            folder,
            dir,
            manifest,
        });
    }
    if out.is_empty() {
        bail!("the workspace lists no members");
    }
    Ok(out)
}

fn our_crates(members: &[Member]) -> BTreeSet<String> {
    members
        .iter()
        .filter_map(|m| m.manifest.package_name())
        .collect()
}

fn check(problems: Vec<String>) -> anyhow::Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("tidy:\n  {}", problems.join("\n  "))
    }
}

#[test]
fn folder_names_equal_package_names() -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for m in members()? {
        let base = Path::new(&m.folder)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned());
        match m.manifest.package_name() {
            None => problems.push(format!("{}/Cargo.toml has no [package] name", m.folder)),
            Some(name) if Some(&name) != base.as_ref() => {
                problems.push(format!("folder `{}` holds package `{name}`", m.folder));
            }
            Some(_) => {}
        }
    }
    check(problems)
}

#[test]
fn every_crate_folder_is_a_member() -> anyhow::Result<()> {
    let members: BTreeSet<String> = members()?.into_iter().map(|m| m.folder).collect();
    // `fuzz/` is its own workspace: every crate in it is built with
    // libFuzzer's instrumentation flags (see xtask/src/fuzz.rs).
    let outside = ["fuzz"];
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(workspace_root())? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("Cargo.toml").is_file()
            && !members.contains(&name)
            && !outside.contains(&name.as_str())
        {
            problems.push(format!(
                "`{name}/` has a Cargo.toml but is not a workspace member"
            ));
        }
    }
    check(problems)
}

#[test]
fn members_inherit_workspace_lints() -> anyhow::Result<()> {
    let problems = members()?
        .iter()
        .filter(|m| !m.manifest.inherits_workspace_lints())
        .map(|m| format!("{}/Cargo.toml lacks `[lints] workspace = true`", m.folder))
        .collect();
    check(problems)
}

#[test]
fn libraries_have_crate_docs() -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for m in members()? {
        let lib = m.dir.join("src").join("lib.rs");
        if !lib.is_file() {
            continue;
        }
        let text = read(&lib)?;
        let first = text.lines().map(str::trim).find(|l| !l.is_empty());
        if !first.is_some_and(|l| l.starts_with("//!")) {
            problems.push(format!(
                "{}/src/lib.rs does not start with `//!` crate docs",
                m.folder
            ));
        }
    }
    check(problems)
}

#[test]
fn root_docs_exist() -> anyhow::Result<()> {
    let root = workspace_root();
    let problems = ["README.md", "ARCHITECTURE.md"]
        .iter()
        .filter(|f| !root.join(f).is_file())
        .map(|f| format!("{f} is missing at the workspace root"))
        .collect();
    check(problems)
}

/// The key vectors the tests compile in are a copy, so that `cargo test`
/// passes in a clone anywhere; where the shared reference sits beside the
/// repository, the copy must still equal it.
#[test]
fn key_vectors_match_the_reference() -> anyhow::Result<()> {
    let root = workspace_root();
    let copy = root.join("kv-core/tests/data/key-vectors.json");
    let reference = root.join("../shared/reference/key-vectors.json");
    let ours = read(&copy)?;
    if !reference.is_file() {
        return Ok(());
    }
    let problems = if read(&reference)? == ours {
        Vec::new()
    } else {
        vec![format!(
            "{} differs from {}: copy the reference over it",
            copy.display(),
            reference.display()
        )]
    };
    check(problems)
}

#[test]
fn dependency_directions() -> anyhow::Result<()> {
    let members = members()?;
    let ours = our_crates(&members);
    let all = ["dependencies", "dev-dependencies", "build-dependencies"];
    let normal = ["dependencies", "build-dependencies"];
    let mut problems = Vec::new();
    for m in &members {
        let Some(name) = m.manifest.package_name() else {
            continue;
        };
        let ours_in = |kinds: &[&str]| -> Vec<String> {
            m.manifest
                .dependencies(kinds)
                .intersection(&ours)
                .cloned()
                .collect()
        };
        if name == "kv-core" || name == "xtask" {
            let deps = ours_in(&all);
            if !deps.is_empty() {
                problems.push(format!(
                    "{name} must depend on none of our crates: {deps:?}"
                ));
            }
        }
        if BACKENDS.contains(&name.as_str()) {
            let deps: Vec<String> = ours_in(&normal)
                .into_iter()
                .filter(|d| d != "kv-core")
                .filter(|d| {
                    !BACKEND_MAY_USE
                        .iter()
                        .any(|&(b, dep)| b == name && dep == d)
                })
                .collect();
            if !deps.is_empty() {
                problems.push(format!(
                    "backend {name} may depend on kv-core only among our crates: {deps:?}"
                ));
            }
            let dev: Vec<String> = ours_in(&["dev-dependencies"])
                .into_iter()
                .filter(|d| d != &name && BACKENDS.contains(&d.as_str()))
                .collect();
            if !dev.is_empty() {
                problems.push(format!(
                    "backend {name} must not depend on other backends: {dev:?}"
                ));
            }
        }
    }
    check(problems)
}

/// Crates only the KV Connect server needs (kv-remote's `server` feature):
/// a program that embeds kv, or connects to a server, compiles none of them.
const SERVER_ONLY: &[&str] = &["axum", "hyper", "hyper-util", "tower"];

/// `cargo tree -p kv -e normal` with `args`, as the packages it lists and,
/// for `socket2`, the packages that depend on it directly.
fn kv_tree(args: &[&str]) -> anyhow::Result<(BTreeSet<String>, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |extra: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new(&cargo)
            .current_dir(workspace_root())
            .args(["tree", "-p", "kv", "-e", "normal"])
            .args(args)
            .args(extra)
            .output()
            .context("running cargo tree")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // `-i` of a package the graph does not hold prints nothing.
        if !out.status.success() && !stderr.contains("did not match any packages") {
            bail!("cargo tree {args:?} {extra:?} failed: {stderr}");
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let name = |line: &str| line.split_whitespace().next().map(str::to_owned);
    let packages = tree(&["--prefix", "none"])?
        .lines()
        .filter_map(name)
        .collect();
    // With `--prefix depth` each line starts with its depth: `1tokio v1…`
    // depends on socket2 directly.
    let socket2_users = tree(&["-i", "socket2", "--prefix", "depth"])?
        .lines()
        .filter_map(|l| l.strip_prefix('1'))
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(name)
        .collect();
    Ok((packages, socket2_users))
}

/// The facade's `remote` feature brings kv-remote's client only: neither
/// `kv` with its default features nor an embedded-only `kv` (SQLite alone)
/// compiles an HTTP server or the server's TCP sniffer.
#[test]
fn kv_builds_no_server() -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let defaults = kv_tree(&[])?;
    let embedded = kv_tree(&["--no-default-features", "--features", "sqlite"])?;
    for (what, (packages, socket2_users)) in [("default", &defaults), ("sqlite", &embedded)] {
        for name in SERVER_ONLY {
            if packages.contains(*name) {
                problems.push(format!("kv ({what} features) depends on {name}"));
            }
        }
        // tokio opens TCP connections with socket2; only the server's
        // TCP_QUICKACK wrapper uses it directly.
        let others: Vec<&String> = socket2_users.iter().filter(|u| *u != "tokio").collect();
        if !others.is_empty() {
            problems.push(format!(
                "kv ({what} features) builds socket2 for {others:?}, not only for tokio"
            ));
        }
    }
    // The client's TLS connector is tokio-rustls too, so only the embedded
    // build is free of it (and of everything else networked).
    let (packages, socket2_users) = &embedded;
    for name in ["kv-remote", "tokio-rustls", "socket2"] {
        if packages.contains(name) {
            problems.push(format!("kv (sqlite alone) depends on {name}"));
        }
    }
    if !socket2_users.is_empty() {
        problems.push(format!(
            "kv (sqlite alone) builds socket2 for {socket2_users:?}"
        ));
    }
    if !defaults.0.contains("kv-remote") {
        problems.push("kv's default features lost the remote client: is the check stale?".into());
    }
    check(problems)
}

#[test]
fn manifest_reader() {
    let m = Manifest::parse(
        r#"
[package]
name = "kv-x" # comment
[dependencies]
kv-core.workspace = true
"quoted" = "1"
tokio = { version = "1", features = [
    "rt",
] }
[dependencies.kv-sqlite]
path = "../kv-sqlite"
[target.'cfg(unix)'.dev-dependencies]
kv-redb = "0.1"
[lints]
workspace = true
"#,
    );
    assert_eq!(m.package_name().as_deref(), Some("kv-x"));
    assert!(m.inherits_workspace_lints());
    let deps = m.dependencies(&["dependencies"]);
    let expected: BTreeSet<String> = ["kv-core", "quoted", "tokio", "kv-sqlite"]
        .map(str::to_owned)
        .into();
    assert_eq!(deps, expected);
    let dev = m.dependencies(&["dev-dependencies"]);
    assert_eq!(dev, ["kv-redb".to_owned()].into());
}
