//! `kv backup` and `kv restore`: one-shot copies of a SQLite or redb
//! database file, in its engine's own format, so that `kv serve --path
//! FILE` (and Deno, for SQLite) opens a backup directly. The work is
//! `kv_sqlite::backup`/`restore` and `kv_redb::backup`/`restore`, run on a
//! blocking thread; this module names the files and explains refusals.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow};

/// `kv backup SOURCE FILE`.
#[derive(clap::Args)]
pub(crate) struct Backup {
    /// The database to copy, named as `--db` names it: a SQLite file
    /// (`PATH`, `sqlite:PATH`) or a redb file (`PATH.redb`, `redb:PATH`).
    /// It may be in use: writers keep writing while the copy is one
    /// snapshot (a redb file only when no process has it open). Other
    /// databases are copied with `kv export`.
    #[arg(value_name = "SOURCE", value_parser = crate::db::parse_db)]
    source: String,
    /// The backup file to write, in the source's format.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// `kv restore FILE TARGET`.
#[derive(clap::Args)]
pub(crate) struct Restore {
    /// The backup file: one `kv backup` wrote, or any database file of
    /// TARGET's engine.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The database to restore into, named as `--db` names it (a SQLite or
    /// redb file). No process may have it open: stop `kv serve` first.
    #[arg(value_name = "TARGET", value_parser = crate::db::parse_db)]
    target: String,
    /// Replace a TARGET that holds keys.
    #[arg(long)]
    force: bool,
    /// Move the restored commit counter forward by N commits, so that no
    /// later commit reissues a versionstamp that clients saw before the
    /// restore. The default, 2^40 ≈ 1.1 × 10^12, is more than a year of
    /// commits at 30,000/s; choose more than the commits made after the
    /// backup.
    #[arg(long, value_name = "N", default_value_t = kv_sqlite::DEFAULT_BUMP)]
    bump: u64,
}

/// A database file and its engine.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Engine {
    Sqlite(PathBuf),
    Redb(PathBuf),
}

/// The file a database URL names, by the rules of `kv::open`; `what` says
/// what the command does with it, for the refusal of other databases.
fn engine(url: &str, command: &str) -> anyhow::Result<Engine> {
    let other = |kind: &str, instead: &str| {
        anyhow!(
            "{url} is {kind}; kv {command} works on SQLite and redb files: {instead}",
            instead = instead.replace("URL", url)
        )
    };
    if url == "memory:" || url == ":memory:" || url == "sqlite::memory:" {
        return Err(other(
            "an in-memory database",
            "it lives only in the process that opened it (a `kv serve --db memory:` \
             is copied with `kv export --db http://HOST:PORT`)",
        ));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(other(
            "a KV Connect server",
            "copy its data with `kv export --db URL --file F` and load it with `kv import F`",
        ));
    }
    if url.starts_with("etcd://") {
        return Err(other(
            "an etcd cluster",
            "copy its data with `kv export --db URL --file F` (or `etcdctl snapshot save`)",
        ));
    }
    for (scheme, redb) in [
        ("sqlite://", false),
        ("sqlite:", false),
        ("redb://", true),
        ("redb:", true),
    ] {
        if let Some(path) = url.strip_prefix(scheme) {
            let path = PathBuf::from(path);
            return Ok(if redb {
                Engine::Redb(path)
            } else {
                Engine::Sqlite(path)
            });
        }
    }
    if url.ends_with(".redb") {
        return Ok(Engine::Redb(PathBuf::from(url)));
    }
    Ok(Engine::Sqlite(PathBuf::from(url)))
}

/// The engine whose file `path` looks like, by its first bytes.
fn sniff(path: &Path) -> Option<&'static str> {
    let mut head = [0u8; 16];
    let mut file = std::fs::File::open(path).ok()?;
    file.read_exact(&mut head).ok()?;
    if head.starts_with(b"SQLite format 3\0") {
        Some("a SQLite database: restore it into a SQLite file (PATH or sqlite:PATH)")
    } else if head.starts_with(b"redb\x1a\x0a\xa9\x0d\x0a") {
        Some("a redb database: restore it into a redb file (PATH.redb or redb:PATH)")
    } else {
        None
    }
}

pub(crate) async fn backup(args: Backup) -> anyhow::Result<()> {
    let source = engine(&args.source, "backup")?;
    let file = args.file.clone();
    let force = args.force;
    let started = Instant::now();
    let (versionstamp, bytes) = tokio::task::spawn_blocking(move || match source {
        Engine::Sqlite(path) => {
            let options = kv_sqlite::BackupOptions::new().with_overwrite(force);
            kv_sqlite::backup(&path, &file, &options)
                .map(|i| (i.versionstamp, i.bytes))
                .map_err(|e| sqlite_hint(e, false))
        }
        Engine::Redb(path) => {
            let options = kv_redb::BackupOptions::new().with_overwrite(force);
            kv_redb::backup(&path, &file, &options)
                .map(|i| (i.versionstamp, i.bytes))
                .map_err(|e| redb_hint(e, &path, false))
        }
    })
    .await
    .context("the backup thread failed")?
    .with_context(|| format!("no backup of {} was written", args.source))?;
    let secs = started.elapsed().as_secs_f64();
    let _ = writeln!(
        std::io::stdout(),
        "backed up {} to {}: versionstamp {versionstamp}, {} in {secs:.2} s ({:.0} MB/s)",
        args.source,
        args.file.display(),
        size(bytes),
        bytes as f64 / 1e6 / secs.max(1e-6),
    );
    Ok(())
}

pub(crate) async fn restore(args: Restore) -> anyhow::Result<()> {
    let target = engine(&args.target, "restore")?;
    let file = args.file.clone();
    let (force, bump) = (args.force, args.bump);
    let started = Instant::now();
    let (from, to, replaced) = tokio::task::spawn_blocking(move || match target {
        Engine::Sqlite(path) => {
            let options = kv_sqlite::RestoreOptions::new()
                .with_force(force)
                .with_bump(bump);
            kv_sqlite::restore(&file, &path, &options)
                .map(|i| (i.versionstamp, i.bumped_to, i.replaced))
                .map_err(|e| sqlite_hint(e, true))
        }
        Engine::Redb(path) => {
            let options = kv_redb::RestoreOptions::new()
                .with_force(force)
                .with_bump(bump);
            kv_redb::restore(&file, &path, &options)
                .map(|i| (i.versionstamp, i.bumped_to, i.replaced))
                .map_err(|e| redb_hint(e, &path, true))
        }
    })
    .await
    .context("the restore thread failed")?
    .with_context(|| format!("{} was not restored", args.file.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let _ = writeln!(
        std::io::stdout(),
        "restored {} {} {} in {secs:.2} s: its last versionstamp is {from}; \
         commits from now on get versionstamps above {to} (bumped by {bump})",
        args.file.display(),
        if replaced { "over" } else { "to" },
        args.target,
    );
    Ok(())
}

/// A SQLite refusal with what to do about it.
fn sqlite_hint(e: kv_sqlite::BackupError, restore: bool) -> anyhow::Error {
    use kv_sqlite::BackupError as E;
    match &e {
        E::Exists(_) if !restore => anyhow!("{e}; pass --force to replace it"),
        E::NotEmpty(_) => anyhow!("{e}; pass --force to replace what it holds"),
        E::NotKv { path, .. } => match sniff(path) {
            Some(kind) if kind.starts_with("a redb") => {
                anyhow!("{} is {kind}", path.display())
            }
            _ => e.into(),
        },
        _ => e.into(),
    }
}

/// A redb refusal with what to do about it.
fn redb_hint(e: kv_redb::BackupError, source: &Path, restore: bool) -> anyhow::Error {
    use kv_redb::BackupError as E;
    match &e {
        E::Exists(_) if !restore => anyhow!("{e}; pass --force to replace it"),
        E::NotEmpty(_) => anyhow!("{e}; pass --force to replace what it holds"),
        E::InUse(path) if !restore && path == source => anyhow!(
            "{e} (a `kv serve` over it copies its data with `kv export --db http://HOST:PORT`)"
        ),
        E::NotKv { path, .. } => match sniff(path) {
            Some(kind) if kind.starts_with("a SQLite") => {
                anyhow!("{} is {kind}", path.display())
            }
            _ => e.into(),
        },
        _ => e.into(),
    }
}

/// A size in bytes for people.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_engine_as_kv_open_does() {
        for (url, expected) in [
            ("kv.sqlite3", Engine::Sqlite(PathBuf::from("kv.sqlite3"))),
            ("sqlite:a.db", Engine::Sqlite(PathBuf::from("a.db"))),
            ("sqlite:///tmp/a", Engine::Sqlite(PathBuf::from("/tmp/a"))),
            ("./data.redb", Engine::Redb(PathBuf::from("./data.redb"))),
            ("redb:x.db", Engine::Redb(PathBuf::from("x.db"))),
            ("redb:///x", Engine::Redb(PathBuf::from("/x"))),
        ] {
            assert_eq!(engine(url, "backup").ok(), Some(expected), "{url}");
        }
        for (url, says) in [
            ("memory:", "kv export"),
            (":memory:", "in-memory"),
            ("http://h:1", "kv export --db http://h:1"),
            ("etcd://h:2379/p", "kv export --db etcd://h:2379/p"),
        ] {
            let e = engine(url, "backup").expect_err(url).to_string();
            assert!(e.contains(says) && e.contains("kv backup"), "{e}");
        }
    }
}
