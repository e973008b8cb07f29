//! `cargo xtask conformance`: runs the conformance harness
//! (`kv-conformance/tests/conformance.rs`, libtest-mimic) and prints a
//! target × area matrix of its `<target>::<area>::<case>` results.
//!
//! Besides the harness's in-process targets it runs the suite against real
//! `kv serve` processes (column `server-sqlite`, later `server-redb`): a
//! server on `127.0.0.1:0`, its `listening on` line read, the URL and token
//! handed to the harness, then SIGTERM and a required clean exit.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use xshell::Shell;

use crate::{artifacts, project_root};

/// The outcome of one case, as libtest prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Failed,
    Ignored,
}

/// Parses a libtest result line: `test <name> ... ok|FAILED|ignored[, reason]`.
pub(crate) fn parse_line(line: &str) -> Option<(&str, Outcome)> {
    let rest = line.strip_prefix("test ")?;
    let (name, result) = rest.rsplit_once(" ... ")?;
    let result = result.trim_end();
    let outcome = if result == "ok" {
        Outcome::Ok
    } else if result == "FAILED" {
        Outcome::Failed
    } else if result == "ignored" || result.starts_with("ignored,") {
        Outcome::Ignored
    } else {
        return None;
    };
    Some((name.trim(), outcome))
}

/// Pass, fail and ignore counts of one cell of the matrix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) ignored: usize,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.passed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Ignored => self.ignored += 1,
        }
    }

    fn merge(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

    fn cell(&self) -> String {
        let ran = self.passed + self.failed;
        let mut s = format!("{}/{ran}", self.passed);
        if self.failed > 0 {
            s.push_str(&format!(" FAIL {}", self.failed));
        }
        if self.ignored > 0 {
            s.push_str(&format!(" ({} ign)", self.ignored));
        }
        s
    }
}

/// The results of one run, by target then area.
#[derive(Debug, Default)]
pub(crate) struct Matrix {
    pub(crate) cells: BTreeMap<String, BTreeMap<String, Counts>>,
    pub(crate) failed: Vec<String>,
}

impl Matrix {
    pub(crate) fn record(&mut self, name: &str, outcome: Outcome) {
        let mut parts = name.splitn(3, "::");
        let target = parts.next().unwrap_or(name);
        let area = match (parts.next(), parts.next()) {
            (Some(area), Some(_case)) => area,
            _ => "-",
        };
        self.cells
            .entry(target.to_owned())
            .or_default()
            .entry(area.to_owned())
            .or_default()
            .add(outcome);
        if outcome == Outcome::Failed {
            self.failed.push(name.to_owned());
        }
    }

    pub(crate) fn total(&self) -> Counts {
        let mut total = Counts::default();
        for areas in self.cells.values() {
            for counts in areas.values() {
                total.merge(*counts);
            }
        }
        total
    }

    /// The matrix as text: one row per area, one column per target, cells
    /// `passed/ran`.
    /// Prints the matrix, the failed cases and the totals under `title`;
    /// returns the totals.
    pub(crate) fn report(&self, title: &str) -> Counts {
        println!();
        println!("{title} (passed/ran per target and area):");
        print!("{}", self.render());
        if !self.failed.is_empty() {
            println!();
            println!("failed cases:");
            for name in &self.failed {
                println!("  {name}");
            }
        }
        let total = self.total();
        println!();
        println!(
            "{title}: {} passed, {} failed, {} skipped",
            total.passed, total.failed, total.ignored
        );
        total
    }

    pub(crate) fn render(&self) -> String {
        let targets: Vec<&String> = self.cells.keys().collect();
        let mut areas: Vec<&String> = self.cells.values().flat_map(|a| a.keys()).collect();
        areas.sort();
        areas.dedup();

        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["area".to_owned()];
        header.extend(targets.iter().map(|t| t.to_string()));
        rows.push(header);
        for area in &areas {
            let mut row = vec![area.to_string()];
            for target in &targets {
                let cell = self.cells[*target]
                    .get(*area)
                    .map_or("-".to_owned(), Counts::cell);
                row.push(cell);
            }
            rows.push(row);
        }
        let mut totals = vec!["TOTAL".to_owned()];
        for target in &targets {
            let mut sum = Counts::default();
            for counts in self.cells[*target].values() {
                sum.merge(*counts);
            }
            totals.push(sum.cell());
        }
        rows.push(totals);

        let widths: Vec<usize> = (0..rows[0].len())
            .map(|col| rows.iter().map(|r| r[col].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                out.push_str(&rule.join("  "));
                out.push('\n');
            }
        }
        out
    }
}

/// Runs the harness on the in-process targets, then (unless `KV_TEST_URL`
/// is set) against real `kv serve` processes, passing `args` through to
/// every run. Fails on any failed case, on a harness or server failure, or
/// when no case ran.
/// `selection` is the cargo package selection the harness and the server are
/// built with: `ci` passes `--workspace` to reuse its test build.
pub(crate) fn run(sh: &Shell, selection: &[&str], args: &[String]) -> anyhow::Result<Counts> {
    let harness = artifacts::test_binary(sh, selection, "conformance")?;
    let mut matrix = Matrix::default();
    let mut problems: Vec<String> = Vec::new();

    let external = std::env::var("KV_TEST_URL").is_ok_and(|u| !u.is_empty());
    if external {
        println!("KV_TEST_URL is set: the harness runs only that URL");
    }
    let status = run_harness(&harness, args, &[], None, &mut matrix)?;
    if !status.success() {
        problems.push(format!("the conformance harness exited with {status}"));
    }
    if !external {
        for server in SERVERS {
            if let Err(e) = against_server(sh, selection, &harness, args, server, &mut matrix) {
                problems.push(format!("{}: {e:#}", server.label));
            }
        }
    }

    let total = matrix.report("conformance");

    if total.failed > 0 {
        problems.push(format!("{} conformance case(s) failed", total.failed));
    }
    if total.passed == 0 {
        problems.push(
            "no conformance case ran: the harness reported no `test <name> ... ok` lines".into(),
        );
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(total)
}

/// Runs the harness binary with `ARGS` and `envs`, as `cargo test` would (in
/// the package folder), echoing all but passing lines and recording results
/// into `matrix`. With `rename`, the first segment of each case name (the
/// harness's target) is replaced by it.
pub(crate) fn run_harness(
    harness: &Path,
    args: &[String],
    envs: &[(&str, &str)],
    rename: Option<&str>,
    matrix: &mut Matrix,
) -> anyhow::Result<std::process::ExitStatus> {
    let package = project_root().join("kv-conformance");
    let mut command = Command::new(harness);
    command
        .current_dir(&package)
        .env("CARGO_MANIFEST_DIR", &package)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let name = harness
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    println!("$ {name} {}", args.join(" "));
    let mut child = command
        .spawn()
        .with_context(|| format!("spawning {}", harness.display()))?;
    let stdout = child.stdout.take().context("the child's stdout is piped")?;

    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the harness output")?;
        let Some((name, outcome)) = parse_line(&line) else {
            println!("{line}");
            continue;
        };
        // Passing cases are counted, not echoed: the matrix shows them.
        if outcome != Outcome::Ok {
            println!("{line}");
        }
        match rename {
            Some(label) => {
                let case = name.split_once("::").map_or(name, |(_, rest)| rest);
                matrix.record(&format!("{label}::{case}"), outcome);
            }
            None => matrix.record(name, outcome),
        }
    }
    child.wait().context("waiting for the harness")
}

/// A real server to run the suite against over KV Connect.
struct Server {
    /// The matrix column.
    label: &'static str,
    /// The crate whose presence enables it (a backend still to be written
    /// is left out until it exists).
    requires: &'static str,
    /// `kv serve` arguments choosing the backend; `{dir}` is a scratch folder.
    serve_args: &'static [&'static str],
}

const SERVERS: &[Server] = &[
    Server {
        label: "server-sqlite",
        requires: "kv-server",
        serve_args: &["--path", "{dir}/server.sqlite3"],
    },
    Server {
        label: "server-redb",
        requires: "kv-redb",
        serve_args: &["--backend", "redb:{dir}/server.redb"],
    },
];

/// Spawns `kv serve` on `127.0.0.1:0`, reads its `listening on` line, runs the
/// suite with `KV_TEST_URL` and `DENO_KV_ACCESS_TOKEN`, then stops the server
/// with SIGTERM and requires a clean exit.
fn against_server(
    sh: &Shell,
    selection: &[&str],
    harness: &Path,
    args: &[String],
    server: &Server,
    matrix: &mut Matrix,
) -> anyhow::Result<()> {
    let root = project_root();
    if !root.join("kv-server").join("Cargo.toml").is_file()
        || !root.join(server.requires).join("Cargo.toml").is_file()
    {
        println!(
            "note: {} skipped: {} is not in the workspace yet",
            server.label, server.requires
        );
        return Ok(());
    }
    println!();
    println!(
        "==> conformance against a real `kv serve` ({})",
        server.label
    );
    let bin = artifacts::kv_server_bin(sh, selection)?;
    let dir = crate::target_dir().join("conformance").join(server.label);
    if dir.exists() {
        sh.remove_path(&dir)?;
    }
    sh.create_dir(&dir)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let token = format!("xtask-{}-{nanos}", std::process::id());
    let dir_str = dir.to_string_lossy();
    let serve_args: Vec<String> = server
        .serve_args
        .iter()
        .map(|a| a.replace("{dir}", &dir_str))
        .collect();

    let server_proc = crate::serve::Server::start(&bin, &serve_args, &token)?;

    let result = (|| {
        let url = &server_proc.url;
        println!("server {} listening on {url}", server.label);
        let status = run_harness(
            harness,
            args,
            &[("KV_TEST_URL", url), ("DENO_KV_ACCESS_TOKEN", &token)],
            Some(server.label),
            matrix,
        )?;
        if !status.success() {
            bail!("the conformance harness exited with {status}");
        }
        Ok(())
    })();

    let stopped = server_proc.stop();
    let _ = sh.remove_path(&dir);
    result?;
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_lines() {
        assert_eq!(
            parse_line("test sqlite::atomic::check_fails_on_changed_key ... ok"),
            Some(("sqlite::atomic::check_fails_on_changed_key", Outcome::Ok))
        );
        assert_eq!(
            parse_line("test memory::list::a ... FAILED"),
            Some(("memory::list::a", Outcome::Failed))
        );
        assert_eq!(
            parse_line("test a::b::c ... ignored, slow"),
            Some(("a::b::c", Outcome::Ignored))
        );
        assert_eq!(parse_line("test result: ok. 3 passed; 0 failed"), None);
        assert_eq!(parse_line("running 3 tests"), None);
    }

    #[test]
    fn builds_the_matrix() {
        let mut m = Matrix::default();
        m.record("memory::atomic::a", Outcome::Ok);
        m.record("memory::atomic::b", Outcome::Ok);
        m.record("sqlite::atomic::a", Outcome::Failed);
        m.record("sqlite::list::a", Outcome::Ignored);
        m.record("odd", Outcome::Ok);
        assert_eq!(
            m.total(),
            Counts {
                passed: 3,
                failed: 1,
                ignored: 1
            }
        );
        assert_eq!(m.failed, vec!["sqlite::atomic::a".to_owned()]);
        let text = m.render();
        assert!(text.contains("atomic"), "{text}");
        assert!(text.contains("2/2"), "{text}");
        assert!(text.contains("0/1 FAIL 1"), "{text}");
    }
}
