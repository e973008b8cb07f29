//! `docs/benchmarks.md`, written by `cargo xtask bench <target>`: each
//! target owns one section, between `<!-- bench:TARGET begin -->` and
//! `<!-- bench:TARGET end -->`, which a run replaces and nothing else.
//! A section opens with where and when its figures were measured (the
//! machine's cores, CPU model and memory, the date in UTC, the commit with
//! `-dirty` when the tree had changes), so figures carried over from an
//! older run keep saying when they were taken.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::project_root;

/// The file, relative to the project root.
pub(crate) const PATH: &str = "docs/benchmarks.md";

/// Sections in the order the file keeps them; a target's first section is
/// put before the sections of the targets after it.
const TARGETS: &[&str] = &["embedded", "server", "queue", "v8", "scale", "cli"];

/// What a new file starts with, before any section.
const INTRO: &str = "\
# Benchmarks

Written by `cargo xtask bench <target>`: each run replaces its own section
below (between its `bench:` comment markers) and leaves the others as they
are, so each section says on which machine, when and at which commit its
figures were measured. Every benchmark runs kv and its peer (Deno's own
local KV, V8's own serializer) in the same invocation on the same machine.
Ratios are kv's advantage over the peer: kv's rate ÷ the peer's, or the
peer's latency ÷ kv's, so above 1 is better.
";

/// Where and when a run was measured: one line under the section's title.
pub(crate) fn provenance(sh: &Shell) -> String {
    format!("{} · {} · commit {}", machine(), utc_now(), commit(sh))
}

/// `2 cores, AMD EPYC 7B13, 23.5 GiB memory`, from `/proc` (what is
/// missing is left out).
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut parts = vec![format!("{cores} cores")];
    if let Some(model) = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| cpu_model(&text))
    {
        parts.push(model);
    }
    if let Some(kib) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_kib(&text))
    {
        parts.push(format!("{:.1} GiB memory", kib as f64 / (1024.0 * 1024.0)));
    }
    parts.join(", ")
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .filter(|model| !model.is_empty())
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The short hash of `HEAD`, `-dirty` when the work tree has changes;
/// `unknown` outside a git checkout.
fn commit(sh: &Shell) -> String {
    let Ok(hash) = cmd!(sh, "git rev-parse --short HEAD")
        .quiet()
        .ignore_stderr()
        .read()
    else {
        return "unknown".to_owned();
    };
    let dirty = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .map_or(true, |status| !status.trim().is_empty());
    format!("{}{}", hash.trim(), if dirty { "-dirty" } else { "" })
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Seconds since the epoch as `2026-11-28 03:41 UTC`.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let minutes = secs % 86_400 / 60;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minutes / 60,
        minutes % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A section: the title (a `##` heading), the provenance line, then
/// `body` (prose and tables, already Markdown).
pub(crate) fn section(title: &str, provenance: &str, command: &str, body: &str) -> String {
    format!(
        "## {title}\n\n`{command}` · {provenance}\n\n{}\n",
        body.trim_end()
    )
}

/// Replaces `target`'s section of `docs/benchmarks.md` with `section`
/// (created with its intro if missing) and returns the file's path.
pub(crate) fn write(target: &str, section: &str) -> anyhow::Result<PathBuf> {
    let path = project_root().join(PATH);
    let doc = match std::fs::read_to_string(&path) {
        Ok(doc) => doc,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => INTRO.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let doc = replace_section(&doc, target, section)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn markers(target: &str) -> (String, String) {
    (
        format!("<!-- bench:{target} begin -->"),
        format!("<!-- bench:{target} end -->"),
    )
}

/// `doc` with `target`'s section (its markers included) replaced by
/// `section`; a target without a section yet gets one before the first
/// section of a later target, else after the last of an earlier one (so
/// hand-written notes after the sections stay last), else at the end.
pub(crate) fn replace_section(doc: &str, target: &str, section: &str) -> anyhow::Result<String> {
    let Some(order) = TARGETS.iter().position(|t| *t == target) else {
        bail!("`{target}` is not a benchmark target of {PATH}");
    };
    let (begin, end) = markers(target);
    let block = format!("{begin}\n{}\n{end}\n", section.trim_end());
    if let Some(start) = doc.find(&begin) {
        let Some(stop) = doc[start..].find(&end).map(|i| start + i + end.len()) else {
            bail!("{PATH}: `{begin}` without `{end}`");
        };
        // The newline after the end marker belongs to the block.
        let stop = if doc[stop..].starts_with('\n') {
            stop + 1
        } else {
            stop
        };
        return Ok(format!("{}{block}{}", &doc[..start], &doc[stop..]));
    }
    let later = TARGETS[order + 1..]
        .iter()
        .filter_map(|t| doc.find(&markers(t).0))
        .min();
    if let Some(at) = later {
        return Ok(format!("{}{block}\n{}", &doc[..at], &doc[at..]));
    }
    let earlier = TARGETS[..order]
        .iter()
        .filter_map(|t| {
            let end = markers(t).1;
            doc.find(&end).map(|at| at + end.len())
        })
        .max();
    Ok(match earlier {
        Some(at) => {
            let rest = doc[at..].trim_start_matches('\n');
            let gap = if rest.is_empty() { "" } else { "\n" };
            format!("{}\n\n{block}{gap}{rest}", &doc[..at])
        }
        None => {
            let mut out = doc.trim_end().to_owned();
            out.push_str("\n\n");
            out.push_str(&block);
            out
        }
    })
}

/// Rows as a Markdown table (the first row is the header), padded so it
/// reads as text too; `text_column(c)` columns align left, figures right.
pub(crate) fn markdown_table(rows: &[Vec<String>], text_column: impl Fn(usize) -> bool) -> String {
    let Some(columns) = rows.iter().map(Vec::len).max() else {
        return String::new();
    };
    let cell = |row: &Vec<String>, c: usize| row.get(c).map_or("", String::as_str).to_owned();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = (0..columns)
            .map(|c| {
                let (text, w) = (cell(row, c), widths[c]);
                if text_column(c) {
                    format!("{text:<w$}")
                } else {
                    format!("{text:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        if i == 0 {
            let rule: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(c, w)| {
                    if text_column(c) {
                        "-".repeat(*w)
                    } else {
                        format!("{}:", "-".repeat(w - 1))
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", rule.join(" | "));
        }
    }
    out
}

/// kv's advantage as `1.23x`: `ours ÷ theirs` for rates (`higher_is_better`),
/// `theirs ÷ ours` for latencies and sizes; `-` when either is missing.
pub(crate) fn ratio(ours: Option<f64>, theirs: Option<f64>, higher_is_better: bool) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) if o > 0.0 && t > 0.0 => {
            let r = if higher_is_better { o / t } else { t / o };
            if r >= 10.0 {
                format!("{r:.1}x")
            } else {
                format!("{r:.2}x")
            }
        }
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc(951_827_696), "2000-02-29 12:34 UTC");
        // 2026-11-28 03:41:00 UTC.
        assert_eq!(utc(1_795_837_260), "2026-11-28 03:41 UTC");
    }

    #[test]
    fn reads_the_machine() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
        let meminfo = "MemTotal:       24684000 kB\nMemFree:        1 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(24_684_000));
    }

    #[test]
    fn replaces_only_its_own_section() -> anyhow::Result<()> {
        let doc = INTRO.to_owned();
        let doc = replace_section(&doc, "queue", "## Queue\n\nold queue")?;
        let doc = replace_section(&doc, "embedded", "## Embedded\n\nfirst")?;
        let doc = replace_section(&doc, "scale", "## Scale\n\nscale")?;
        let doc = replace_section(&doc, "server", "## Server\n\nserver")?;
        // In the file's order, whatever order they were first written in.
        let at = |s: &str| doc.find(s).unwrap_or(usize::MAX);
        assert!(at("first") < at("server"), "{doc}");
        assert!(at("server") < at("old queue"), "{doc}");
        assert!(at("old queue") < at("scale"), "{doc}");
        assert!(doc.starts_with(INTRO), "{doc}");

        // Notes after the sections stay after a section added later.
        let noted = replace_section(INTRO, "embedded", "## Embedded\n\nfirst")?;
        let noted = format!("{noted}\n## Notes\n\nby hand\n");
        let noted = replace_section(&noted, "v8", "## V8\n\nv8 figures")?;
        assert!(noted.find("v8 figures") < noted.find("by hand"), "{noted}");
        assert!(noted.find("first") < noted.find("v8 figures"), "{noted}");
        assert!(noted.ends_with("by hand\n"), "{noted}");

        let again = replace_section(&doc, "queue", "## Queue\n\nnew queue")?;
        assert!(!again.contains("old queue"), "{again}");
        assert!(again.contains("new queue"), "{again}");
        // Everything else is unchanged, byte for byte.
        assert_eq!(again.replace("new queue", "old queue"), doc);
        // Writing the same section twice changes nothing.
        assert_eq!(
            replace_section(&again, "queue", "## Queue\n\nnew queue")?,
            again
        );

        assert!(replace_section(&doc, "nonsense", "x").is_err());
        let broken = format!("{}\n<!-- bench:v8 begin -->\nno end\n", INTRO);
        assert!(replace_section(&broken, "v8", "x").is_err());
        Ok(())
    }

    /// The checked-in file: each target's section at most once, whole,
    /// in the file's order, and rewritten unchanged.
    #[test]
    fn the_checked_in_file_is_well_formed() -> anyhow::Result<()> {
        let doc = std::fs::read_to_string(project_root().join(PATH))?;
        let mut last = 0;
        for target in TARGETS {
            let (begin, end) = markers(target);
            let (Some(start), Some(stop)) = (doc.find(&begin), doc.find(&end)) else {
                assert!(!doc.contains(&end), "{target}: an end without a begin");
                continue;
            };
            assert_eq!(doc.matches(&begin).count(), 1, "{target}");
            assert_eq!(doc.matches(&end).count(), 1, "{target}");
            assert!(last <= start && start < stop, "{target} out of place");
            last = stop;
            let section = doc[start + begin.len()..stop].trim_start_matches('\n');
            assert_eq!(replace_section(&doc, target, section)?, doc, "{target}");
        }
        Ok(())
    }

    #[test]
    fn renders_markdown() {
        let rows = vec![
            vec!["name".to_owned(), "ops/s".to_owned()],
            vec!["get".to_owned(), "1,000".to_owned()],
        ];
        let table = markdown_table(&rows, |c| c == 0);
        assert_eq!(
            table,
            "| name | ops/s |\n| ---- | ----: |\n| get  | 1,000 |\n"
        );
    }

    #[test]
    fn ratios_favour_kv_above_one() {
        assert_eq!(ratio(Some(200.0), Some(100.0), true), "2.00x");
        assert_eq!(ratio(Some(50.0), Some(1000.0), false), "20.0x");
        assert_eq!(ratio(None, Some(1.0), true), "-");
        assert_eq!(ratio(Some(0.0), Some(1.0), true), "-");
    }
}
