//! The data commands: `get`, `list`, `count`, `set`, `delete`, `sum`,
//! `min`, `max` and `watch`, on any database `--db` names.
//!
//! Keys are written in Deno's notation (`'["users", "alice", 1n]'`) or, for
//! string-only keys, as `users/alice`. Output is text for people
//! (`-o text`: key, value, versionstamp, tab-separated) or kv-utils typed
//! JSON for programs (`-o json`, `-o ndjson`).
//!
//! `list --keys-only` and `count` read keys and versionstamps only: a
//! `kv serve` sends no values for them (its keys-only extension), and
//! against other servers (denokv, Deno Deploy) the values are transferred
//! and dropped, which the command says once on stderr.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use kv::backend::{Backend, ReadRange, ReadSink, read_into};
use kv::{
    Consistency, Key, Kv, KvEntry, KvValue, ListOptions, Selector, SetOptions, ValueRef,
    Versionstamp,
};

use crate::db::DbArgs;
use crate::values::{self, ValueFormat};

/// How a command prints what it found.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Output {
    /// Tab-separated lines for people: key, value, versionstamp.
    #[default]
    Text,
    /// One JSON document (an array of entries).
    Json,
    /// One JSON entry per line (the kv-utils NDJSON form).
    Ndjson,
}

/// `-o` and `--eventual`, shared by the commands that read.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ReadArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    output: Output,
    /// Allow a read from a replica that may lag (Deno's `consistency:
    /// "eventual"`).
    #[arg(long)]
    eventual: bool,
}

impl ReadArgs {
    fn consistency(&self) -> Consistency {
        if self.eventual {
            Consistency::Eventual
        } else {
            Consistency::Strong
        }
    }
}

/// `kv get KEY…`.
#[derive(clap::Args)]
pub(crate) struct Get {
    #[command(flatten)]
    db: DbArgs,
    /// The keys to read, in Deno's notation or as `a/b/c`.
    #[arg(required = true, value_parser = parse_key)]
    keys: Vec<Key>,
    #[command(flatten)]
    read: ReadArgs,
}

/// `kv list [PREFIX]`.
#[derive(clap::Args)]
pub(crate) struct List {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    range: RangeArgs,
    /// At most this many entries.
    #[arg(long)]
    limit: Option<usize>,
    /// Newest key first (descending key order).
    #[arg(long)]
    reverse: bool,
    /// Print keys (and versionstamps) only.
    #[arg(long)]
    keys_only: bool,
    #[command(flatten)]
    read: ReadArgs,
}

/// The key range of `list`, `count` and `delete --prefix`: a prefix, and
/// optional start and end keys inside it.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct RangeArgs {
    /// Only keys under this prefix (every key when left out).
    #[arg(value_parser = parse_key)]
    prefix: Option<Key>,
    /// The first key (inclusive).
    #[arg(long, value_parser = parse_key)]
    start: Option<Key>,
    /// The key to stop before (exclusive).
    #[arg(long, value_parser = parse_key)]
    end: Option<Key>,
}

impl RangeArgs {
    fn selector(&self) -> anyhow::Result<Selector> {
        let selector = match (&self.prefix, &self.start, &self.end) {
            (None, Some(start), Some(end)) => Selector::range(start.clone(), end.clone()),
            (prefix, start, end) => {
                let mut s = Selector::prefix(prefix.clone().unwrap_or_default());
                if let Some(start) = start {
                    s = s.with_start(start.clone());
                }
                if let Some(end) = end {
                    s = s.with_end(end.clone());
                }
                s
            }
        };
        selector.bounds().context("the key range")?;
        Ok(selector)
    }
}

/// `kv count [PREFIX]`.
#[derive(clap::Args)]
pub(crate) struct Count {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    range: RangeArgs,
    #[command(flatten)]
    read: ReadArgs,
}

/// `kv set KEY VALUE`.
#[derive(clap::Args)]
pub(crate) struct Set {
    #[command(flatten)]
    db: DbArgs,
    /// The key, in Deno's notation or as `a/b/c`.
    #[arg(value_parser = parse_key)]
    key: Key,
    /// The value, read as `--as` says; `-` reads it from standard input.
    value: String,
    /// How VALUE is written.
    #[arg(long = "as", value_enum, default_value_t)]
    format: ValueFormat,
    /// Delete the key after this long (`90s`, `15m`, `2h`, `7d`, `500ms`).
    #[arg(long, value_parser = parse_duration)]
    expire_in: Option<Duration>,
    /// Only if the key's versionstamp is this one (20 hex digits).
    #[arg(long, conflicts_with = "if_absent", value_parser = parse_versionstamp)]
    if_versionstamp: Option<Versionstamp>,
    /// Only if the key does not exist.
    #[arg(long)]
    if_absent: bool,
}

/// `kv delete KEY…` or `kv delete --prefix PREFIX`.
#[derive(clap::Args)]
pub(crate) struct Delete {
    #[command(flatten)]
    db: DbArgs,
    /// The keys to delete.
    #[arg(value_parser = parse_key, required_unless_present = "prefix", conflicts_with = "prefix")]
    keys: Vec<Key>,
    /// Delete every key under this prefix (`[]` for every key), in atomic
    /// batches of 1,000.
    #[arg(long, value_parser = parse_key)]
    prefix: Option<Key>,
    /// Print what would be deleted, and delete nothing.
    #[arg(long, requires = "prefix")]
    dry_run: bool,
    /// Do not ask for confirmation on a terminal.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// `kv sum|min|max KEY N` (KvU64).
#[derive(clap::Args)]
pub(crate) struct U64Op {
    #[command(flatten)]
    db: DbArgs,
    /// The key, in Deno's notation or as `a/b/c`.
    #[arg(value_parser = parse_key)]
    key: Key,
    /// The unsigned 64-bit operand.
    n: u64,
}

/// Which of the KvU64 operations.
#[derive(Clone, Copy, Debug)]
pub(crate) enum U64Kind {
    Sum,
    Min,
    Max,
}

/// `kv watch KEY…`.
#[derive(clap::Args)]
pub(crate) struct Watch {
    #[command(flatten)]
    db: DbArgs,
    /// The keys to watch (at most 10, as in Deno).
    #[arg(required = true, value_parser = parse_key)]
    keys: Vec<Key>,
}

/// The most mutations one atomic batch of `delete --prefix` holds (Deno's
/// limit on a commit).
const DELETE_BATCH: usize = 1000;

/// The entries shown by `delete --prefix --dry-run` before it summarises.
const DRY_RUN_SHOWN: usize = 20;

pub(crate) fn parse_key(text: &str) -> Result<Key, String> {
    Key::parse(text).map_err(|e| e.to_string())
}

fn parse_versionstamp(text: &str) -> Result<Versionstamp, String> {
    text.parse::<Versionstamp>()
        .map_err(|e| format!("{e} (a versionstamp is 20 hex digits)"))
}

/// `90s`, `15m`, `2h`, `7d`, `500ms`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 2h or 7d"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m, h or d")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Writes lines to standard output; a reader that went away (`| head`)
/// ends the command quietly.
struct Out {
    stdout: std::io::BufWriter<std::io::Stdout>,
}

impl Out {
    fn new() -> Self {
        Out {
            stdout: std::io::BufWriter::new(std::io::stdout()),
        }
    }

    /// `false` once nobody reads the output any more.
    fn line(&mut self, line: impl std::fmt::Display) -> anyhow::Result<bool> {
        match writeln!(self.stdout, "{line}") {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
        }
    }

    fn finish(mut self) -> anyhow::Result<()> {
        match self.stdout.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(anyhow::Error::new(e).context("writing to standard output"))
            }
            _ => Ok(()),
        }
    }
}

/// Prints entries in `output`'s form: a found entry, or a key and `None`.
struct Printer {
    output: Output,
    out: Out,
    keys_only: bool,
    first: bool,
}

impl Printer {
    fn new(output: Output, keys_only: bool) -> anyhow::Result<Self> {
        let mut out = Out::new();
        if output == Output::Json {
            out.line("[")?;
        }
        Ok(Printer {
            output,
            out,
            keys_only,
            first: true,
        })
    }

    /// `false` once nobody reads the output any more.
    fn entry(&mut self, key: &Key, entry: Option<&KvEntry>) -> anyhow::Result<bool> {
        let line = match self.output {
            Output::Text => match entry {
                Some(e) if self.keys_only => format!("{key}\t{}", e.versionstamp),
                Some(e) => format!("{key}\t{}\t{}", values::display(&e.value), e.versionstamp),
                None => format!("{key}\t(not found)"),
            },
            Output::Json | Output::Ndjson => values::entry_json(key, entry, self.keys_only)?,
        };
        self.put(line)
    }

    /// A key and its versionstamp, as [`entry`](Self::entry) prints a found
    /// entry with `keys_only`; `false` once nobody reads the output.
    fn key(&mut self, key: &Key, versionstamp: Versionstamp) -> anyhow::Result<bool> {
        let line = match self.output {
            Output::Text => format!("{key}\t{versionstamp}"),
            Output::Json | Output::Ndjson => values::keys_only_json(key, versionstamp),
        };
        self.put(line)
    }

    fn put(&mut self, line: String) -> anyhow::Result<bool> {
        let line = if self.output == Output::Json {
            let comma = if self.first { "  " } else { ", " };
            format!("{comma}{line}")
        } else {
            line
        };
        self.first = false;
        self.out.line(line)
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if self.output == Output::Json {
            self.out.line("]")?;
        }
        self.out.finish()
    }
}

pub(crate) async fn get(args: Get, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let (_, backend) = args.db.open_existing(sqlite_path.as_deref()).await?;
    let kv = Kv::from_arc(backend);
    let mut printer = Printer::new(args.read.output, false)?;
    // Each read is one snapshot of at most Deno's getMany limit.
    'reads: for keys in args.keys.chunks(kv::limits::MAX_GET_MANY) {
        let entries = kv.get_many_with(keys, args.read.consistency()).await?;
        for (key, entry) in keys.iter().zip(&entries) {
            if !printer.entry(key, entry.as_ref())? {
                break 'reads;
            }
        }
    }
    printer.finish()?;
    kv.close().await;
    Ok(())
}

pub(crate) async fn list(args: List, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let (url, backend) = args.db.open_existing(sqlite_path.as_deref()).await?;
    if args.keys_only {
        let mut printer = Printer::new(args.read.output, true)?;
        let keys = Keys {
            url: &url,
            backend: &*backend,
            consistency: args.read.consistency(),
        };
        let selector = args.range.selector()?;
        keys.walk(&selector, args.reverse, args.limit, |key, versionstamp| {
            printer.key(&Key::decode(key)?, versionstamp)
        })
        .await?;
        printer.finish()?;
        backend.close().await;
        return Ok(());
    }
    let kv = Kv::from_arc(backend);
    let mut options = ListOptions::default()
        .with_reverse(args.reverse)
        .with_consistency(args.read.consistency())
        .with_batch_size(500);
    if let Some(limit) = args.limit {
        options = options.with_limit(limit);
    }
    let mut entries = kv.list(args.range.selector()?, options);
    let mut printer = Printer::new(args.read.output, args.keys_only)?;
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        if !printer.entry(&entry.key, Some(&entry))? {
            break;
        }
    }
    printer.finish()?;
    kv.close().await;
    Ok(())
}

pub(crate) async fn count(args: Count, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let (url, backend) = args.db.open_existing(sqlite_path.as_deref()).await?;
    let keys = Keys {
        url: &url,
        backend: &*backend,
        consistency: args.read.consistency(),
    };
    let n = keys.count(&args.range.selector()?).await?;
    let mut out = Out::new();
    match args.read.output {
        Output::Text => out.line(n)?,
        Output::Json | Output::Ndjson => out.line(serde_json::json!({ "count": n }))?,
    };
    out.finish()?;
    backend.close().await;
    Ok(())
}

/// The keys of a database with their versionstamps, read a page at a time
/// without values: a `kv serve` sends none (see the module docs).
struct Keys<'a> {
    /// The database as the user named it, for the notice that values are
    /// transferred.
    url: &'a str,
    backend: &'a dyn Backend,
    consistency: Consistency,
}

/// One page of keys and versionstamps, from a read that needs no values.
#[derive(Default)]
struct KeysPage {
    keys: Vec<(Vec<u8>, Versionstamp)>,
    /// The backend handed values even so: a remote one then sent them.
    values_seen: bool,
}

impl ReadSink for KeysPage {
    fn begin_range(&mut self) {}

    fn entry(&mut self, key: &[u8], value: ValueRef<'_>, versionstamp: Versionstamp) {
        // A backend that leaves values out hands empty bytes.
        self.values_seen |= !matches!(value, ValueRef::Bytes([]));
        self.keys.push((key.to_vec(), versionstamp));
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.values_seen = false;
    }

    fn wants_values(&self) -> bool {
        false
    }
}

impl Keys<'_> {
    /// How many keys `selector` holds. A key that is not a key tuple is an
    /// error, as in `list`.
    async fn count(&self, selector: &Selector) -> anyhow::Result<u64> {
        let mut n = 0u64;
        self.walk(selector, false, None, |key, _| {
            Key::decode(key)?;
            n += 1;
            Ok(true)
        })
        .await?;
        Ok(n)
    }

    /// Hands the keys of `selector` (encoded) and their versionstamps to
    /// `each` in key order (descending with `reverse`), at most `limit` of
    /// them, until `each` answers `false`. Each read is one snapshot of at
    /// most `limits::MAX_READ_ENTRIES` keys, and the next starts after the
    /// last key it returned.
    async fn walk(
        &self,
        selector: &Selector,
        reverse: bool,
        limit: Option<usize>,
        mut each: impl FnMut(&[u8], Versionstamp) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        if limit == Some(0) {
            // As `Kv::list` says it.
            return Err(kv::Error::InvalidArgument(
                "Limit must be a positive integer: received 0".into(),
            )
            .into());
        }
        let bounds = selector.bounds()?;
        let (mut start, mut end) = (bounds.start, bounds.end);
        let mut left = limit;
        let mut noted = false;
        while start < end && left != Some(0) {
            let asked = left.map_or(kv::limits::MAX_READ_ENTRIES, |left| {
                left.min(kv::limits::MAX_READ_ENTRIES)
            });
            let ranges = vec![ReadRange {
                start: start.clone(),
                end: end.clone(),
                limit: u32::try_from(asked).expect("at most MAX_READ_ENTRIES"),
                reverse,
            }];
            kv::limits::check_read(&ranges)?;
            let page =
                read_into(self.backend, ranges, self.consistency, KeysPage::default()).await?;
            if page.values_seen && !noted && is_remote(self.url) {
                noted = true;
                let _ = writeln!(
                    std::io::stderr(),
                    "kv: {} has no keys-only reads (not a kv server): values are transferred \
                     and dropped",
                    self.url
                );
            }
            for (key, versionstamp) in &page.keys {
                if !each(key, *versionstamp)? {
                    return Ok(());
                }
            }
            if let Some(left) = left.as_mut() {
                *left -= page.keys.len();
            }
            match page.keys.last() {
                Some((last, _)) if page.keys.len() == asked => {
                    if reverse {
                        end = last.clone();
                    } else {
                        start = last.clone();
                        start.push(0);
                    }
                }
                // A short page is the last.
                _ => break,
            }
        }
        Ok(())
    }
}

/// Whether `url` names a KV Connect server (values of a read cross the
/// network).
fn is_remote(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

pub(crate) async fn set(args: Set, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let text = if args.value == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("reading the value from standard input")?
    } else {
        args.value.clone()
    };
    // Parsed before the database is opened: a bad value writes nothing.
    let value = values::parse(&text, args.format).context("VALUE")?;
    let (_, backend) = args.db.open(sqlite_path.as_deref()).await?;
    let kv = Kv::from_arc(backend);
    let mut options = SetOptions::default();
    if let Some(expire_in) = args.expire_in {
        options = options.with_expire_in(expire_in);
    }
    let mut op = kv.atomic();
    if args.if_absent {
        op.check(args.key.clone(), None);
    } else if let Some(stamp) = args.if_versionstamp {
        op.check(args.key.clone(), Some(stamp));
    }
    op.set_with(args.key.clone(), value, options);
    let outcome = op.commit().await?;
    kv.close().await;
    match outcome.versionstamp() {
        Some(stamp) => {
            let mut out = Out::new();
            out.line(stamp)?;
            out.finish()
        }
        None if args.if_absent => bail!("not set: {} exists", args.key),
        None => bail!(
            "not set: the versionstamp of {} is no longer the one given",
            args.key
        ),
    }
}

pub(crate) async fn delete(args: Delete, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let (url, backend) = args.db.open_existing(sqlite_path.as_deref()).await?;
    let kv = Kv::from_arc(backend);
    let result = match &args.prefix {
        None => delete_keys(&kv, &args.keys).await,
        Some(prefix) => delete_prefix(&url, &kv, prefix, &args).await,
    };
    kv.close().await;
    result
}

async fn delete_keys(kv: &Kv, keys: &[Key]) -> anyhow::Result<()> {
    for batch in keys.chunks(DELETE_BATCH) {
        let mut op = kv.atomic();
        for key in batch {
            op.delete(key.clone());
        }
        op.commit().await?;
    }
    let mut out = Out::new();
    out.line(format_args!("deleted {}", keys.len()))?;
    out.finish()
}

async fn delete_prefix(url: &str, kv: &Kv, prefix: &Key, args: &Delete) -> anyhow::Result<()> {
    let selector = Selector::prefix(prefix.clone());
    let mut out = Out::new();
    let keys = Keys {
        url,
        backend: &**kv.backend(),
        consistency: Consistency::Strong,
    };
    if args.dry_run {
        let mut n = 0u64;
        let mut reading = true;
        keys.walk(&selector, false, None, |key, _| {
            let key = Key::decode(key)?;
            if n < DRY_RUN_SHOWN as u64 && !out.line(&key)? {
                reading = false;
                return Ok(false);
            }
            n += 1;
            Ok(true)
        })
        .await?;
        if !reading {
            return Ok(());
        }
        if n > DRY_RUN_SHOWN as u64 {
            out.line(format_args!("… and {} more", n - DRY_RUN_SHOWN as u64))?;
        }
        out.line(format_args!("would delete {n} (dry run: nothing deleted)"))?;
        return out.finish();
    }
    if !args.yes && std::io::stdin().is_terminal() {
        let n = keys.count(&selector).await?;
        eprint!("delete {n} keys under {prefix}? type yes to confirm: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            bail!("not confirmed: nothing deleted");
        }
    }
    // Batches of keys listed, each deleted in one atomic commit; keys
    // written meanwhile under the prefix may survive, as with any scan.
    let mut deleted = 0u64;
    loop {
        let batch = kv
            .list(
                selector.clone(),
                ListOptions::default().with_limit(DELETE_BATCH),
            )
            .collect_all()
            .await?;
        if batch.is_empty() {
            break;
        }
        let mut op = kv.atomic();
        for entry in &batch {
            // Only if unchanged since listed: a key rewritten meanwhile is
            // listed again in the next round.
            op.check(entry.key.clone(), Some(entry.versionstamp));
            op.delete(entry.key.clone());
        }
        if op.commit().await?.is_ok() {
            deleted += batch.len() as u64;
        }
    }
    out.line(format_args!("deleted {deleted}"))?;
    out.finish()
}

pub(crate) async fn u64_op(
    kind: U64Kind,
    args: U64Op,
    sqlite_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (_, backend) = args.db.open(sqlite_path.as_deref()).await?;
    let kv = Kv::from_arc(backend);
    let mut op = kv.atomic();
    match kind {
        U64Kind::Sum => op.sum(args.key.clone(), args.n),
        U64Kind::Min => op.min(args.key.clone(), args.n),
        U64Kind::Max => op.max(args.key.clone(), args.n),
    };
    let committed = op.commit().await;
    let entry = match committed {
        Ok(_) => kv.get(args.key.clone()).await?,
        Err(e) => {
            kv.close().await;
            return Err(e.into());
        }
    };
    kv.close().await;
    let mut out = Out::new();
    if let Some(KvEntry {
        value: KvValue::U64(n),
        ..
    }) = entry
    {
        out.line(n)?;
    }
    out.finish()
}

pub(crate) async fn watch(args: Watch, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let (_, backend) = args.db.open_existing(sqlite_path.as_deref()).await?;
    let kv = Kv::from_arc(backend);
    let mut stream = kv.watch(&args.keys)?;
    let mut out = Out::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        // Kv::watch already leaves out snapshots that repeat a state.
        let snapshot = tokio::select! {
            _ = &mut interrupted => break,
            next = stream.next() => match next {
                Some(snapshot) => snapshot?,
                None => break,
            },
        };
        let entries: Vec<String> = args
            .keys
            .iter()
            .zip(&snapshot)
            .map(|(key, entry)| values::entry_json(key, entry.as_ref(), false))
            .collect::<anyhow::Result<_>>()?;
        if !out.line(format_args!("[{}]", entries.join(",")))? {
            break;
        }
        out.stdout.flush()?;
    }
    out.finish()?;
    kv.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3y").is_err_and(|e| e.contains("unit")));
        assert!(parse_duration("soon").is_err());
    }
}
