//! One-shot backup and restore of a database file. A backup is a kv-redb
//! file like any other: [`crate::RedbBackend::open`] and `kv serve` open it
//! directly.
//!
//! - [`backup`] copies the file at a path, which no other process may have
//!   open (redb locks its file; a process serving it makes the backup fail
//!   with [`BackupError::InUse`]); [`RedbBackend::backup`] copies the
//!   database an open backend serves, while its writers keep committing.
//!   Either way the copy is one redb read transaction, one snapshot, whose
//!   tables (`kv`, `expiry`, `meta`) are written into a new file in one
//!   write transaction, synced, and renamed into place.
//! - [`restore`] writes a backup, its commit counter moved forward by a
//!   bump ([`RestoreOptions::with_bump`]) so that no later commit reissues
//!   a versionstamp that a client saw before the backup was needed, into a
//!   temporary file beside the target, syncs it and renames it over the
//!   target. The target is kept open read-only from the first check to the
//!   rename: that fails while a process has it open for writing and keeps
//!   one from opening it meanwhile. A crash at any point leaves either the
//!   old target or the restored one.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use kv_core::Versionstamp;
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    StorageError, TableError,
};

use crate::RedbBackend;
use crate::error::RedbError;
use crate::store::{self, COUNTER, EXPIRY, FORMAT, FORMAT_VERSION, KV, META};

#[cfg(test)]
mod tests;

/// The cache of each file a copy opens. redb's default, 1 GiB, made a copy
/// of a 1 GB database use 2.2 GB of memory.
const COPY_CACHE: usize = 64 << 20;

/// The default for [`RestoreOptions::with_bump`]: 2^40 ≈ 1.1 × 10^12
/// commits, more than a year of commits at 30,000 per second.
pub const DEFAULT_BUMP: u64 = 1 << 40;

/// A failure of [`backup`], [`RedbBackend::backup`] or [`restore`]. Each
/// names the file it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The source or the backup file does not exist.
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// The file is not a kv-redb database (not redb at all, no kv tables,
    /// another format version): nothing was written.
    #[error("{} is not a kv redb database: {reason}", path.display())]
    NotKv {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The backup destination exists and replacing it was not allowed
    /// ([`BackupOptions::with_overwrite`]).
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
    /// The restore target holds keys (system keys included), and replacing
    /// it was not allowed ([`RestoreOptions::with_force`]).
    #[error("{} is not empty", .0.display())]
    NotEmpty(PathBuf),
    /// Another process, or another handle in this one, has the file open:
    /// redb allows one at a time.
    #[error(
        "{} is in use: another process (or another handle in this one) has it open, \
         and redb allows one at a time; stop that process first",
        .0.display()
    )]
    InUse(PathBuf),
    /// The source and the destination are the same file.
    #[error("{} is both the source and the destination", .0.display())]
    SameFile(PathBuf),
    /// The bumped commit counter would not fit in 64 bits.
    #[error("the commit counter {counter} cannot be moved forward by {bump}: it would pass 2^64")]
    Bump {
        /// The counter before the bump.
        counter: u64,
        /// The bump asked for.
        bump: u64,
    },
    /// The backend was closed.
    #[error("the database is closed")]
    Closed,
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot create", "cannot sync", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// redb failed on the file.
    #[error("{}: {source}", path.display())]
    Redb {
        /// The file.
        path: PathBuf,
        /// The error.
        source: RedbError,
    },
}

impl BackupError {
    fn redb(path: &Path, e: impl Into<RedbError>) -> Self {
        BackupError::Redb {
            path: path.to_owned(),
            source: e.into(),
        }
    }

    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        BackupError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// How to write a backup (builder-lite).
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    overwrite: bool,
}

impl BackupOptions {
    /// The defaults: an existing destination is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `true`, an existing destination file is replaced (atomically,
    /// by rename) unless a process has it open.
    pub fn with_overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }
}

/// What a backup holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupInfo {
    /// The versionstamp of the last commit in the backup.
    pub versionstamp: Versionstamp,
    /// The size of the backup file in bytes.
    pub bytes: u64,
}

/// How to restore (builder-lite).
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    force: bool,
    bump: u64,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            force: false,
            bump: DEFAULT_BUMP,
        }
    }
}

impl RestoreOptions {
    /// The defaults: a non-empty target is refused, the bump is
    /// [`DEFAULT_BUMP`].
    pub fn new() -> Self {
        Self::default()
    }

    /// With `true`, a target that holds data is replaced.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Moves the restored commit counter forward by `bump` commits past the
    /// larger of the backup's and the old target's, so that versionstamps
    /// handed out before the restore are never handed out again. Choose more
    /// than the commits the lost database may have made after the backup.
    pub fn with_bump(mut self, bump: u64) -> Self {
        self.bump = bump;
        self
    }
}

/// What a restore did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreInfo {
    /// The versionstamp of the last commit in the backup, which the
    /// restored keys keep.
    pub versionstamp: Versionstamp,
    /// The restored commit counter after the bump: every later commit's
    /// versionstamp is above this one.
    pub bumped_to: Versionstamp,
    /// Whether a target file existed (and was replaced).
    pub replaced: bool,
}

impl RedbBackend {
    /// Copies the database this backend serves into a new file at `dest`,
    /// as one consistent snapshot, while its writers keep committing: the
    /// way to back up a redb database that is open (redb lets no other
    /// handle open it). Blocking: call it from a thread that may block (in
    /// async code, `spawn_blocking`).
    ///
    /// # Errors
    /// [`BackupError::Closed`] after [`kv_core::Backend::close`]; otherwise
    /// as [`backup`].
    pub fn backup(&self, dest: &Path, options: &BackupOptions) -> Result<BackupInfo, BackupError> {
        let db = self.db.upgrade().ok_or(BackupError::Closed)?;
        let txn = db
            .begin_read()
            .map_err(|e| BackupError::redb(&self.path, e))?;
        write_backup(&txn, &self.path, dest, options)
    }
}

/// Copies the redb database file at `source`, which no process has open,
/// into a new file at `dest`. Blocking, as [`RedbBackend::backup`].
///
/// # Errors
/// [`BackupError::Missing`] or [`BackupError::NotKv`] for the source,
/// [`BackupError::InUse`] when a process has it open (back it up through
/// that process's [`RedbBackend::backup`] instead), [`BackupError::Exists`]
/// for an existing `dest` without [`BackupOptions::with_overwrite`],
/// [`BackupError::SameFile`], and [`BackupError::Io`] or
/// [`BackupError::Redb`] when copying fails (the temporary file is
/// removed; `dest` is untouched).
pub fn backup(
    source: &Path,
    dest: &Path,
    options: &BackupOptions,
) -> Result<BackupInfo, BackupError> {
    let db = open_existing(source)?;
    let txn = db.begin_read(source)?;
    write_backup(&txn, source, dest, options)
}

/// Restores the backup file `backup` (any kv-redb file) into `target`, a
/// database file no process has open, and moves its commit counter forward
/// by the bump. Blocking, as [`RedbBackend::backup`].
///
/// `backup` is checked before `target` is touched. A target that exists is
/// refused unless it holds no key (or [`RestoreOptions::with_force`]), and
/// while a process has it open.
///
/// # Errors
/// [`BackupError::Missing`] or [`BackupError::NotKv`] naming `backup`;
/// [`BackupError::NotKv`] naming `target` when it holds something other
/// than a kv-redb database; [`BackupError::NotEmpty`],
/// [`BackupError::InUse`], [`BackupError::SameFile`],
/// [`BackupError::Bump`]; [`BackupError::Io`] or [`BackupError::Redb`]
/// when writing fails.
pub fn restore(
    backup: &Path,
    target: &Path,
    options: &RestoreOptions,
) -> Result<RestoreInfo, BackupError> {
    let src = open_existing(backup)?;
    let txn = src.begin_read(backup)?;
    let backup_counter = kv_counter(&txn, backup)?;
    let dir = directory_of(target)?;
    let held = if exists(target)? {
        if same_file(backup, target)? {
            return Err(BackupError::SameFile(target.to_owned()));
        }
        Some(hold_target(target, options.force)?)
    } else {
        None
    };
    let from = backup_counter.max(held.as_ref().map_or(0, |h| h.counter));
    let counter = from.checked_add(options.bump).ok_or(BackupError::Bump {
        counter: from,
        bump: options.bump,
    })?;
    // The restored file keeps the permissions of the one it replaces.
    let like = if held.is_some() { target } else { backup };
    let temp = temp_beside(target, "restore", like)?;
    copy_snapshot(&txn, backup, &temp, Some(counter))?;
    drop(txn);
    drop(src);
    sync_file(&temp)?;
    let replaced = held.is_some();
    if replaced {
        #[cfg(unix)]
        same_owner(target, &temp)?;
        temp.persist(target)
            .map_err(|e| BackupError::io("cannot write", target, e.error))?;
    } else {
        temp.persist_noclobber(target).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                BackupError::Exists(target.to_owned())
            } else {
                BackupError::io("cannot write", target, e.error)
            }
        })?;
    }
    sync_dir(&dir)?;
    // Held until the new file is in place: no process opened the old one.
    drop(held);
    Ok(RestoreInfo {
        versionstamp: Versionstamp::from_counter(backup_counter),
        bumped_to: Versionstamp::from_counter(counter),
        replaced,
    })
}

/// Writes the snapshot `txn` of the database at `source` to `dest`.
fn write_backup(
    txn: &ReadTransaction,
    source: &Path,
    dest: &Path,
    options: &BackupOptions,
) -> Result<BackupInfo, BackupError> {
    let dir = directory_of(dest)?;
    let counter = kv_counter(txn, source)?;
    // Kept open read-only until the rename, like a restore's target.
    let mut held = None;
    if exists(dest)? {
        if same_file(source, dest)? {
            return Err(BackupError::SameFile(dest.to_owned()));
        }
        if !options.overwrite {
            return Err(BackupError::Exists(dest.to_owned()));
        }
        match ReadOnlyDatabase::open(dest) {
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(BackupError::InUse(dest.to_owned()));
            }
            // Whatever else it is, it is to be replaced.
            opened => held = opened.ok(),
        }
    }
    let temp = temp_beside(dest, "backup", source)?;
    copy_snapshot(txn, source, &temp, None)?;
    sync_file(&temp)?;
    let bytes = std::fs::metadata(&temp)
        .map_err(|e| BackupError::io("cannot read", &temp, e))?
        .len();
    if options.overwrite {
        temp.persist(dest)
            .map_err(|e| BackupError::io("cannot write", dest, e.error))?;
    } else {
        temp.persist_noclobber(dest).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                BackupError::Exists(dest.to_owned())
            } else {
                BackupError::io("cannot write", dest, e.error)
            }
        })?;
    }
    sync_dir(&dir)?;
    drop(held);
    Ok(BackupInfo {
        versionstamp: Versionstamp::from_counter(counter),
        bytes,
    })
}

/// An existing database file opened to read it: read-only when it was
/// closed cleanly, else for writing, which repairs it (as any open would).
enum Opened {
    ReadOnly(ReadOnlyDatabase),
    Repaired(Database),
}

impl Opened {
    fn begin_read(&self, path: &Path) -> Result<ReadTransaction, BackupError> {
        match self {
            Opened::ReadOnly(db) => db.begin_read(),
            Opened::Repaired(db) => db.begin_read(),
        }
        .map_err(|e| BackupError::redb(path, e))
    }
}

/// Opens the existing redb file at `path`.
fn open_existing(path: &Path) -> Result<Opened, BackupError> {
    if !exists(path)? {
        return Err(BackupError::Missing(path.to_owned()));
    }
    if path.is_dir() {
        return Err(BackupError::NotKv {
            path: path.to_owned(),
            reason: "a directory".into(),
        });
    }
    match Database::builder()
        .set_cache_size(COPY_CACHE)
        .open_read_only(path)
    {
        Ok(db) => Ok(Opened::ReadOnly(db)),
        // Not closed cleanly: a read-only open does not repair.
        Err(DatabaseError::RepairAborted) => Database::open(path)
            .map(Opened::Repaired)
            .map_err(|e| open_error(path, e)),
        Err(e) => Err(open_error(path, e)),
    }
}

/// What failing to open the redb file at `path` means.
fn open_error(path: &Path, e: DatabaseError) -> BackupError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => BackupError::InUse(path.to_owned()),
        // redb reports another kind of file (a magic number mismatch, a
        // file too short for its header) as invalid data.
        DatabaseError::Storage(StorageError::Io(e))
            if !matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            BackupError::io("cannot open", path, e)
        }
        DatabaseError::Storage(StorageError::Io(_)) => BackupError::NotKv {
            path: path.to_owned(),
            reason: "not a redb file".into(),
        },
        DatabaseError::Storage(_) | DatabaseError::UpgradeRequired(_) => BackupError::NotKv {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        e => BackupError::Redb {
            path: path.to_owned(),
            source: RedbError::open(e, path),
        },
    }
}

/// A table of a snapshot that must be there.
fn table_error(path: &Path, e: TableError) -> BackupError {
    match e {
        TableError::TableDoesNotExist(name) => BackupError::NotKv {
            path: path.to_owned(),
            reason: format!("it has no table {name:?}"),
        },
        e @ TableError::TableTypeMismatch { .. } => BackupError::NotKv {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        e => BackupError::redb(path, e),
    }
}

/// The commit counter of the kv database in snapshot `txn`, which must be
/// of this build's format.
fn kv_counter(txn: &ReadTransaction, path: &Path) -> Result<u64, BackupError> {
    let meta = txn.open_table(META).map_err(|e| table_error(path, e))?;
    let at = |e: StorageError| BackupError::redb(path, e);
    let format = meta.get(FORMAT).map_err(at)?.map(|v| v.value());
    if format != Some(FORMAT_VERSION) {
        return Err(BackupError::NotKv {
            path: path.to_owned(),
            reason: match format {
                Some(found) => RedbError::FormatVersion {
                    found,
                    expected: FORMAT_VERSION,
                }
                .to_string(),
                None => "it records no kv format version".into(),
            },
        });
    }
    store::counter(&meta).map_err(|e| BackupError::redb(path, e))
}

/// Writes every table of snapshot `txn` (of the file at `path`) into a new
/// database at `out` in one durable write transaction, with the commit
/// counter set to `counter` if given.
fn copy_snapshot(
    txn: &ReadTransaction,
    path: &Path,
    out: &Path,
    counter: Option<u64>,
) -> Result<(), BackupError> {
    let db = Database::builder()
        .set_cache_size(COPY_CACHE)
        .create(out)
        .map_err(|e| BackupError::redb(out, RedbError::open(e, out)))?;
    let write = store::begin_write(&db).map_err(|e| BackupError::redb(out, e))?;
    let read_error = |e: StorageError| BackupError::redb(path, e);
    let write_error = |e: StorageError| BackupError::redb(out, e);
    let create_error = |e: TableError| BackupError::redb(out, e);
    {
        let from = txn.open_table(KV).map_err(|e| table_error(path, e))?;
        let mut to = write.open_table(KV).map_err(create_error)?;
        for item in from.iter().map_err(read_error)? {
            let (k, v) = item.map_err(read_error)?;
            to.insert(k.value(), v.value()).map_err(write_error)?;
        }
    }
    {
        let from = txn.open_table(EXPIRY).map_err(|e| table_error(path, e))?;
        let mut to = write.open_table(EXPIRY).map_err(create_error)?;
        for item in from.iter().map_err(read_error)? {
            let (k, _) = item.map_err(read_error)?;
            to.insert(k.value(), ()).map_err(write_error)?;
        }
    }
    {
        let from = txn.open_table(META).map_err(|e| table_error(path, e))?;
        let mut to = write.open_table(META).map_err(create_error)?;
        for item in from.iter().map_err(read_error)? {
            let (k, v) = item.map_err(read_error)?;
            to.insert(k.value(), v.value()).map_err(write_error)?;
        }
        if let Some(counter) = counter {
            to.insert(COUNTER, counter).map_err(write_error)?;
        }
    }
    write.commit().map_err(|e| BackupError::redb(out, e))?;
    db.close()
        .map_err(|e| BackupError::redb(out, RedbError::open(e, out)))
}

/// An existing restore target, kept open read-only (which no writer can be
/// at the same time) until the restored file replaces it.
struct Held {
    _db: Option<Opened>,
    counter: u64,
}

/// Opens the existing `target` and checks that it may be replaced: an
/// empty file, a redb file without tables, or a kv database, empty unless
/// `force`.
fn hold_target(target: &Path, force: bool) -> Result<Held, BackupError> {
    let len = std::fs::metadata(target)
        .map_err(|e| BackupError::io("cannot look at", target, e))?
        .len();
    if len == 0 {
        return Ok(Held {
            _db: None,
            counter: 0,
        });
    }
    let db = open_existing(target)?;
    let txn = db.begin_read(target)?;
    let no_tables = txn
        .list_tables()
        .map_err(|e| BackupError::redb(target, e))?
        .next()
        .is_none();
    if no_tables {
        drop(txn);
        return Ok(Held {
            _db: Some(db),
            counter: 0,
        });
    }
    let counter = kv_counter(&txn, target)?;
    let holds_keys = txn
        .open_table(KV)
        .map_err(|e| table_error(target, e))?
        .first()
        .map_err(|e| BackupError::redb(target, e))?
        .is_some();
    if holds_keys && !force {
        return Err(BackupError::NotEmpty(target.to_owned()));
    }
    drop(txn);
    Ok(Held {
        _db: Some(db),
        counter,
    })
}

/// Gives `temp` the owner and group of `target`, which it replaces, when
/// they differ (a restore run as root for a service's database).
#[cfg(unix)]
fn same_owner(target: &Path, temp: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::MetadataExt;
    let old =
        std::fs::metadata(target).map_err(|e| BackupError::io("cannot look at", target, e))?;
    let new = std::fs::metadata(temp).map_err(|e| BackupError::io("cannot look at", temp, e))?;
    if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
        std::os::unix::fs::chown(temp, Some(old.uid()), Some(old.gid()))
            .map_err(|e| BackupError::io("cannot give the owner of the target to", temp, e))?;
    }
    Ok(())
}

/// Whether `path` exists (an error other than "not found" is one).
fn exists(path: &Path) -> Result<bool, BackupError> {
    path.try_exists()
        .map_err(|e| BackupError::io("cannot look at", path, e))
}

/// Whether `a` and `b` (which both exist) are the same file.
fn same_file(a: &Path, b: &Path) -> Result<bool, BackupError> {
    let a = a
        .canonicalize()
        .map_err(|e| BackupError::io("cannot look at", a, e))?;
    let b = b
        .canonicalize()
        .map_err(|e| BackupError::io("cannot look at", b, e))?;
    Ok(a == b)
}

/// The directory `path` is (to be) in, which must exist.
fn directory_of(path: &Path) -> Result<PathBuf, BackupError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(BackupError::io(
            "cannot write into",
            &dir,
            io::Error::new(io::ErrorKind::NotFound, "no such directory"),
        ));
    }
    Ok(dir)
}

/// A new empty file beside `path` (same directory, so a rename is atomic)
/// with the permissions of `like`, removed when dropped unless persisted.
fn temp_beside(path: &Path, what: &str, like: &Path) -> Result<tempfile::TempPath, BackupError> {
    let dir = directory_of(path)?;
    let name = path
        .file_name()
        .map_or_else(|| "kv".into(), |n| n.to_string_lossy().into_owned());
    let file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(&format!(".{what}"))
        .tempfile_in(&dir)
        .map_err(|e| BackupError::io("cannot create a temporary file in", &dir, e))?;
    // A copy is as private as what it copies (a temporary file is private
    // to its owner).
    let permissions = std::fs::metadata(like)
        .map_err(|e| BackupError::io("cannot look at", like, e))?
        .permissions();
    file.as_file()
        .set_permissions(permissions)
        .map_err(|e| BackupError::io("cannot set the permissions of", file.path(), e))?;
    // redb opens the file by name and locks it.
    Ok(file.into_temp_path())
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| BackupError::io("cannot sync", path, e))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io("cannot sync", dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
