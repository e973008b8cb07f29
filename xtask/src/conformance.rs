//! `cargo xtask conformance`: runs the conformance harness
//! (`kv-conformance/tests/conformance.rs`, libtest-mimic) and prints a
//! target × area matrix of its `<target>::<area>::<case>` results.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use xshell::Shell;

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

/// Runs the harness, passing `args` through, and fails on any failed case,
/// on a harness failure, or when no case ran.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    if std::env::var_os("KV_TEST_URL").is_some() {
        println!("KV_TEST_URL is set: the harness runs only that URL");
    }
    let mut command = Command::new("cargo");
    command
        .current_dir(sh.current_dir())
        .args([
            "test",
            "-p",
            "kv-conformance",
            "--test",
            "conformance",
            "--",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    println!(
        "$ cargo test -p kv-conformance --test conformance -- {}",
        args.join(" ")
    );
    let mut child = command.spawn().context("spawning cargo test")?;
    let stdout = child.stdout.take().context("the child's stdout is piped")?;

    let mut matrix = Matrix::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the harness output")?;
        match parse_line(&line) {
            // Passing cases are counted, not echoed: the matrix shows them.
            Some((name, Outcome::Ok)) => matrix.record(name, Outcome::Ok),
            Some((name, outcome)) => {
                println!("{line}");
                matrix.record(name, outcome);
            }
            None => println!("{line}"),
        }
    }
    let status = child.wait().context("waiting for cargo test")?;

    println!();
    println!("conformance matrix (passed/ran per target and area):");
    print!("{}", matrix.render());
    if !matrix.failed.is_empty() {
        println!();
        println!("failed cases:");
        for name in &matrix.failed {
            println!("  {name}");
        }
    }
    let total = matrix.total();
    println!();
    println!(
        "conformance: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.ignored
    );

    if total.failed > 0 {
        bail!("{} conformance case(s) failed", total.failed);
    }
    if !status.success() {
        bail!("the conformance harness exited with {status}");
    }
    if total.passed == 0 {
        bail!("no conformance case ran: the harness reported no `test <name> ... ok` lines");
    }
    Ok(())
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
