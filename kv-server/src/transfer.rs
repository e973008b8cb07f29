//! `kv export` and `kv import`: the `@deno/kv-utils` NDJSON format, one
//! entry per line (`{"key": [...], "value": ..., "versionstamp": "..."}`).
//!
//! An export of a SQLite, redb or in-memory database is one snapshot: a
//! single read of the whole range, whose entries are encoded as the
//! engine hands them over. Other backends are read a page at a time, and
//! the command says so. An import checks every line before it writes any,
//! then writes in atomic batches.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use futures::StreamExt;
use kv::backend::{ReadRange, ReadSink, read_into};
use kv::{
    Consistency, Key, KeyPart, Kv, KvEntry, KvValue, ListOptions, Selector, ValueRef, Versionstamp,
};

use crate::db::DbArgs;

/// `kv export [PREFIX]`.
#[derive(clap::Args)]
pub(crate) struct Export {
    #[command(flatten)]
    db: DbArgs,
    /// Only keys under this prefix (every key when left out).
    #[arg(value_parser = crate::data::parse_key)]
    prefix: Option<Key>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
}

/// `kv import FILE`.
#[derive(clap::Args)]
pub(crate) struct Import {
    #[command(flatten)]
    db: DbArgs,
    /// The NDJSON file (kv export's or kv-utils'); `-` reads standard input.
    file: PathBuf,
    /// Replace keys that exist (by default they are kept, as kv-utils does).
    #[arg(long)]
    overwrite: bool,
    /// Put every key under this prefix.
    #[arg(long, value_parser = crate::data::parse_key)]
    prefix: Option<Key>,
}

/// Backends whose whole range one read returns from one snapshot.
const SNAPSHOT_BACKENDS: [&str; 3] = ["sqlite", "redb", "memory"];

/// The most entries one read of an export asks for from a backend that
/// reads a whole range in one snapshot.
const WHOLE_RANGE: u32 = u32::MAX;

/// Encodes entries into NDJSON lines as a backend reads them.
struct LineSink {
    lines: Vec<u8>,
    entries: u64,
    /// The first key that is not a Deno key tuple, if any.
    bad_key: Option<Vec<u8>>,
}

impl ReadSink for LineSink {
    fn begin_range(&mut self) {}

    fn entry(&mut self, key: &[u8], value: ValueRef<'_>, versionstamp: Versionstamp) {
        if self.bad_key.is_some() {
            return;
        }
        let Ok(key) = Key::decode(key) else {
            self.bad_key = Some(key.to_vec());
            return;
        };
        match line(&key, &value.to_value(), versionstamp) {
            Ok(line) => {
                self.lines.extend_from_slice(line.as_bytes());
                self.lines.push(b'\n');
                self.entries += 1;
            }
            Err(_) => self.bad_key = Some(key.encode().unwrap_or_default()),
        }
    }

    fn clear(&mut self) {
        self.lines.clear();
        self.entries = 0;
        self.bad_key = None;
    }
}

/// One NDJSON line, without its line end.
fn line(key: &Key, value: &KvValue, versionstamp: Versionstamp) -> anyhow::Result<String> {
    let entry = KvEntry {
        key: key.clone(),
        value: value.clone(),
        versionstamp,
    };
    let mut line = kv_v8::json::encode_line(&entry, None)
        .with_context(|| format!("the value of {key} has no NDJSON form"))?;
    line.truncate(line.trim_end().len());
    Ok(line)
}

pub(crate) async fn export(args: Export, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let (url, backend) = args.db.open_existing(sqlite_path.as_deref()).await?;
    let kv = Kv::from_arc(backend.clone());
    let selector = Selector::prefix(args.prefix.clone().unwrap_or_default());
    let mut out: Box<dyn Write + Send> = match &args.file {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let exported = if SNAPSHOT_BACKENDS.contains(&backend.name()) {
        let bounds = selector.bounds()?;
        let range = ReadRange {
            start: bounds.start,
            end: bounds.end,
            limit: WHOLE_RANGE,
            reverse: false,
        };
        let sink = LineSink {
            lines: Vec::new(),
            entries: 0,
            bad_key: None,
        };
        let sink = read_into(backend.as_ref(), vec![range], Consistency::Strong, sink).await?;
        if let Some(bad) = sink.bad_key {
            bail!(
                "the key {} is not a Deno key tuple and has no NDJSON form",
                hex::encode(bad)
            );
        }
        write_all(&mut out, &sink.lines)?;
        sink.entries
    } else {
        eprintln!(
            "kv: {url} is read a page at a time: writes made during the export may be seen in part"
        );
        let mut entries = kv.list(selector, ListOptions::default().with_batch_size(1000));
        let progress = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} entries, {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let mut n = 0u64;
        while let Some(entry) = entries.next().await {
            progress.inc(1);
            let KvEntry {
                key,
                value,
                versionstamp,
            } = entry?;
            let mut text = line(&key, &value, versionstamp)?;
            text.push('\n');
            if !write_all(&mut out, text.as_bytes())? {
                break;
            }
            n += 1;
        }
        progress.finish_and_clear();
        n
    };
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(anyhow::Error::new(e).context("writing the export"));
        }
        _ => {}
    }
    kv.close().await;
    if args.file.is_some() || !std::io::stdout().is_terminal() {
        eprintln!("kv: exported {exported} entries");
    }
    Ok(())
}

/// `false` when the reader went away (`| head`).
fn write_all(out: &mut (dyn Write + Send), bytes: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(bytes) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing the export")),
    }
}

/// One line of an import, checked.
struct Entry {
    key: Key,
    value: KvValue,
    /// The bytes the entry adds to a commit (key and value).
    size: usize,
}

/// Reads and checks one line (`number` counts from 1).
fn parse_line(text: &str, number: usize, prefix: &[KeyPart]) -> anyhow::Result<Entry> {
    let at = || format!("line {number}");
    let line = kv_v8::json::decode_line(text).with_context(at)?;
    let key = if prefix.is_empty() {
        line.key
    } else {
        Key::from(
            prefix
                .iter()
                .chain(line.key.parts())
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let encoded = key.encode().with_context(at)?;
    kv::limits::check_write_key(&encoded).with_context(at)?;
    let value = line.value;
    anyhow::ensure!(
        value.size() <= kv::limits::MAX_VALUE_SIZE,
        "{}: the value is larger than {} bytes",
        at(),
        kv::limits::MAX_VALUE_SIZE
    );
    let size = encoded.len() + value.size();
    Ok(Entry { key, value, size })
}

/// Every checked line of `reader`; the first bad line fails the import
/// before anything is written.
fn read_entries(reader: impl BufRead, prefix: &[KeyPart]) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        let text = text.with_context(|| format!("reading line {}", i + 1))?;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        entries.push(parse_line(text, i + 1, prefix)?);
    }
    Ok(entries)
}

pub(crate) async fn import(args: Import, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let prefix: Vec<KeyPart> = args
        .prefix
        .as_ref()
        .map(|k| k.parts().to_vec())
        .unwrap_or_default();
    let entries = if args.file.as_os_str() == "-" {
        read_entries(std::io::stdin().lock(), &prefix)?
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        read_entries(std::io::BufReader::new(file), &prefix)
            .with_context(|| format!("{} was not imported", args.file.display()))?
    };
    let (_, backend) = args.db.open(sqlite_path.as_deref()).await?;
    let kv = Kv::from_arc(backend);
    // Drawn only when standard error is a terminal.
    let progress = indicatif::ProgressBar::new(entries.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} entries, {per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = write_entries(&kv, &entries, args.overwrite, &progress).await;
    progress.finish_and_clear();
    kv.close().await;
    let (written, kept) = result?;
    let mut summary = format!("imported {written} entries");
    if kept > 0 {
        summary.push_str(&format!(
            ", kept {kept} existing keys (--overwrite replaces them)"
        ));
    }
    let _ = writeln!(std::io::stdout(), "{summary}");
    Ok(())
}

/// Writes `entries` in atomic batches within Deno's commit limits; without
/// `overwrite`, a key that exists is kept. Returns (written, kept).
async fn write_entries(
    kv: &Kv,
    entries: &[Entry],
    overwrite: bool,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, u64)> {
    let batches = batches(entries, overwrite);
    // Batches in flight at once, so that the backend's group commit makes
    // one transaction (one fsync) of several. Only when no key repeats:
    // then no two batches touch the same key and their order cannot matter.
    let mut keys = std::collections::HashSet::with_capacity(entries.len());
    let unique = entries.iter().all(|e| keys.insert(&e.key));
    let in_flight = if unique { IMPORT_IN_FLIGHT } else { 1 };
    let mut done = futures::stream::iter(batches)
        .map(|batch| async move {
            let counts = write_batch(kv, batch, overwrite).await;
            progress.inc(batch.len() as u64);
            counts
        })
        .buffered(in_flight);
    let (mut written, mut kept) = (0u64, 0u64);
    while let Some(counts) = done.next().await {
        let (w, k) = counts?;
        written += w;
        kept += k;
    }
    Ok((written, kept))
}

/// Import batches in at most this many commits at once.
const IMPORT_IN_FLIGHT: usize = 8;

/// `entries` cut into batches within Deno's commit limits; a batch that
/// keeps existing keys carries a check per key, so it holds at most
/// `MAX_CHECKS`.
fn batches(entries: &[Entry], overwrite: bool) -> Vec<&[Entry]> {
    let per_batch = if overwrite {
        kv::limits::MAX_MUTATIONS
    } else {
        kv::limits::MAX_CHECKS
    };
    let mut out = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let (mut bytes, mut key_bytes) = (0usize, 0usize);
        while end < entries.len() && end - start < per_batch {
            let e = &entries[end];
            let key_len = e.size - e.value.size();
            if end > start
                && (bytes + e.size > kv::limits::MAX_TOTAL_MUTATION_SIZE
                    || key_bytes + key_len > kv::limits::MAX_TOTAL_KEY_SIZE)
            {
                break;
            }
            bytes += e.size;
            key_bytes += key_len;
            end += 1;
        }
        out.push(&entries[start..end]);
        start = end;
    }
    out
}

/// Writes one batch in one commit; without `overwrite`, a batch that meets
/// an existing key is written key by key, keeping those. Returns (written,
/// kept).
async fn write_batch(kv: &Kv, batch: &[Entry], overwrite: bool) -> anyhow::Result<(u64, u64)> {
    let mut op = kv.atomic();
    for e in batch {
        if !overwrite {
            op.check(e.key.clone(), None);
        }
        op.set(e.key.clone(), e.value.clone());
    }
    if op.commit().await?.is_ok() {
        return Ok((batch.len() as u64, 0));
    }
    let (mut written, mut kept) = (0, 0);
    for e in batch {
        let mut op = kv.atomic();
        op.check(e.key.clone(), None);
        op.set(e.key.clone(), e.value.clone());
        if op.commit().await?.is_ok() {
            written += 1;
        } else {
            kept += 1;
        }
    }
    Ok((written, kept))
}
