//! One-shot backup and restore of a database file. A backup is a Deno KV
//! SQLite file like any other: [`crate::SqliteBackend`], `kv serve --path`
//! and Deno's `Deno.openKv(path)` open it directly.
//!
//! - [`backup`] copies a live database with SQLite's online backup API in a
//!   single step, so the copy is one read transaction on the source: one
//!   snapshot, taken while its writers keep committing (in WAL mode a
//!   reader blocks no writer). The copy is written to a temporary file
//!   beside the destination, synced and renamed into place, so a
//!   destination never holds half a backup. The result is a single file in
//!   rollback-journal mode (no `-wal` beside it); whoever opens it with kv
//!   or Deno switches it back to WAL.
//! - [`restore`] replaces a target with a backup whose commit counter is
//!   moved forward by a bump ([`RestoreOptions::with_bump`]), so that no
//!   later commit reissues a versionstamp that a client saw before the
//!   backup was needed. The bumped copy is prepared in a temporary file
//!   beside the target first. A target that does not exist receives it by
//!   rename. A target that exists is replaced in place, inside one SQLite
//!   write transaction taken under an exclusive lock held from the first
//!   check to the end: a process that has the file open (a `kv serve`, a
//!   Deno program) makes the restore fail before anything is written, one
//!   that opens it meanwhile waits, and a crash midway leaves the old
//!   database, which SQLite's journal rolls back to on the next open.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kv_core::Versionstamp;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::error::SqliteError;
use crate::schema;

#[cfg(test)]
mod tests;

/// The default for [`RestoreOptions::with_bump`]: 2^40 ≈ 1.1 × 10^12
/// commits, more than a year of commits at 30,000 per second.
pub const DEFAULT_BUMP: u64 = 1 << 40;

/// How long a backup waits for a source that another process keeps locked
/// (only a database in rollback-journal mode does, while it commits).
const SOURCE_LOCK_WAIT: Duration = Duration::from_secs(2);

/// How long a restore waits for the exclusive lock on an existing target.
/// A process that has the database open holds a lock for as long as it
/// keeps it open, so a longer wait would not help.
const TARGET_LOCK_WAIT: Duration = Duration::from_millis(250);

/// The largest commit counter the `data_version` table stores (an SQLite
/// integer).
const MAX_COUNTER: u64 = i64::MAX as u64;

/// A failure of [`backup`] or [`restore`]. Each names the file it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The source or the backup file does not exist.
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// The file is not a Deno KV SQLite database (not SQLite at all, no Deno
    /// KV tables, another schema version): nothing was written.
    #[error("{} is not a Deno KV SQLite database: {reason}", path.display())]
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
    /// The restore target holds keys (system keys included) or queue rows,
    /// and replacing it was not allowed ([`RestoreOptions::with_force`]).
    #[error("{} is not empty", .0.display())]
    NotEmpty(PathBuf),
    /// Another connection has the file open (a running server, a Deno
    /// program), or a `-wal` file beside it says one has or had.
    #[error(
        "{} is in use: another process has it open (or its -wal file is left from one \
         that did not close it); stop that process first",
        .0.display()
    )]
    InUse(PathBuf),
    /// A `-wal` or `-journal` file lies beside a database file that does not
    /// exist: SQLite would apply it to the new file.
    #[error(
        "{} exists although its database does not; it would corrupt the new file: remove it first",
        .0.display()
    )]
    Orphan(PathBuf),
    /// The source and the destination are the same file.
    #[error("{} is both the source and the destination", .0.display())]
    SameFile(PathBuf),
    /// The bumped commit counter would not fit in SQLite's integer.
    #[error(
        "the commit counter {counter} cannot be moved forward by {bump}: the largest is {max}",
        max = MAX_COUNTER
    )]
    Bump {
        /// The counter before the bump.
        counter: u64,
        /// The bump asked for.
        bump: u64,
    },
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
    /// SQLite failed on the file.
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The error.
        source: SqliteError,
    },
}

impl BackupError {
    fn sqlite(path: &Path, e: impl Into<SqliteError>) -> Self {
        BackupError::Sqlite {
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
    /// by rename) unless a `-wal` file beside it says it is in use.
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

/// Copies the live database at `source` into a new file at `dest`, as one
/// consistent snapshot, while other connections and processes keep
/// committing to it. Blocking: call it from a thread that may block (in
/// async code, `spawn_blocking`).
///
/// # Errors
/// [`BackupError::Missing`] or [`BackupError::NotKv`] for the source
/// (nothing is created), [`BackupError::Exists`] for an existing `dest`
/// without [`BackupOptions::with_overwrite`], [`BackupError::InUse`] when a
/// `-wal` file lies beside an existing `dest`, [`BackupError::SameFile`],
/// and [`BackupError::Io`] or [`BackupError::Sqlite`] when copying fails
/// (the temporary file is removed; `dest` is untouched).
pub fn backup(
    source: &Path,
    dest: &Path,
    options: &BackupOptions,
) -> Result<BackupInfo, BackupError> {
    let src = open_kv(source)?;
    let dir = directory_of(dest)?;
    if exists(dest)? {
        if same_file(source, dest)? {
            return Err(BackupError::SameFile(dest.to_owned()));
        }
        if !options.overwrite {
            return Err(BackupError::Exists(dest.to_owned()));
        }
        if exists(&sidecar(dest, "-wal"))? {
            return Err(BackupError::InUse(dest.to_owned()));
        }
    } else {
        refuse_orphans(dest)?;
    }
    let temp = temp_beside(dest, "backup", source)?;
    let counter = {
        let mut out = open_scratch(&temp)?;
        copy_pages(&src, source, &mut out, &temp)?;
        let counter = finish_scratch(&out, &temp, None)?;
        close(out, &temp)?;
        counter
    };
    close(src, source)?;
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
    Ok(BackupInfo {
        versionstamp: Versionstamp::from_counter(counter),
        bytes,
    })
}

/// Restores the backup file `backup` (any Deno KV SQLite file) into
/// `target`, a database file that must not be open anywhere, and moves its
/// commit counter forward by the bump. Blocking, as [`backup`].
///
/// `backup` is checked before `target` is touched. A target that exists is
/// refused unless it holds no key and no queue row (or
/// [`RestoreOptions::with_force`]), and unless this call gets an
/// exclusive lock on it, which fails while any other connection has it
/// open. Either the whole restore lands or the target keeps its old
/// contents.
///
/// # Errors
/// [`BackupError::Missing`] or [`BackupError::NotKv`] naming `backup`;
/// [`BackupError::NotKv`] naming `target` when it holds something other
/// than a Deno KV database; [`BackupError::NotEmpty`],
/// [`BackupError::InUse`], [`BackupError::Orphan`],
/// [`BackupError::SameFile`], [`BackupError::Bump`]; [`BackupError::Io`]
/// or [`BackupError::Sqlite`] when writing fails.
pub fn restore(
    backup: &Path,
    target: &Path,
    options: &RestoreOptions,
) -> Result<RestoreInfo, BackupError> {
    let src = open_kv(backup)?;
    let backup_counter = read_counter(&src, backup)?;
    let dir = directory_of(target)?;
    let held = if exists(target)? {
        if same_file(backup, target)? {
            return Err(BackupError::SameFile(target.to_owned()));
        }
        Some(lock_target(target, options.force)?)
    } else {
        refuse_orphans(target)?;
        None
    };
    let old_counter = held.as_ref().map_or(0, |t| t.counter);
    let from = backup_counter.max(old_counter);
    let counter = from
        .checked_add(options.bump)
        .and_then(|c| i64::try_from(c).ok())
        .ok_or(BackupError::Bump {
            counter: from,
            bump: options.bump,
        })?;

    let temp = temp_beside(target, "restore", backup)?;
    {
        let mut out = open_scratch(&temp)?;
        copy_pages(&src, backup, &mut out, &temp)?;
        finish_scratch(&out, &temp, Some(counter))?;
        close(out, &temp)?;
    }
    close(src, backup)?;
    sync_file(&temp)?;
    let replaced = held.is_some();
    match held {
        None => {
            temp.persist_noclobber(target).map_err(|e| {
                if e.error.kind() == io::ErrorKind::AlreadyExists {
                    BackupError::Exists(target.to_owned())
                } else {
                    BackupError::io("cannot write", target, e.error)
                }
            })?;
            sync_dir(&dir)?;
        }
        Some(Held { mut conn, .. }) => {
            // Out of WAL mode (which checkpoints and removes the -wal file),
            // so that one rollback-journal transaction replaces every page.
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "delete", |row| row.get(0))
                .map_err(|e| BackupError::sqlite(target, e))?;
            if !mode.eq_ignore_ascii_case("delete") {
                return Err(BackupError::sqlite(target, SqliteError::NotWal(mode)));
            }
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(|e| BackupError::sqlite(target, e))?;
            let prepared = Connection::open_with_flags(
                &temp,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| BackupError::sqlite(&temp, e))?;
            copy_pages(&prepared, &temp, &mut conn, target)?;
            close(prepared, &temp)?;
            close(conn, target)?;
        }
    }
    Ok(RestoreInfo {
        versionstamp: Versionstamp::from_counter(backup_counter),
        bumped_to: Versionstamp::from_counter(counter as u64),
        replaced,
    })
}

/// An existing target, locked exclusively by `conn`.
struct Held {
    conn: Connection,
    counter: u64,
}

/// Takes the exclusive lock on the existing `target` and checks that it may
/// be replaced: a Deno KV database (or a file without any table), empty
/// unless `force`.
fn lock_target(target: &Path, force: bool) -> Result<Held, BackupError> {
    let conn = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError::sqlite(target, e))?;
    let at_target = |e: rusqlite::Error| target_error(target, e);
    conn.busy_timeout(TARGET_LOCK_WAIT).map_err(at_target)?;
    // With an exclusive locking mode the lock below is kept until the
    // connection closes. Taking it fails while any other connection has
    // the file open: in WAL mode each holds a shared lock as long as it is
    // open.
    conn.pragma_update_and_check(None, "locking_mode", "exclusive", |_| Ok(()))
        .map_err(at_target)?;
    conn.execute_batch("begin exclusive").map_err(at_target)?;
    let checked = check_target(&conn, target, force);
    conn.execute_batch("commit").map_err(at_target)?;
    let counter = checked?;
    Ok(Held { conn, counter })
}

/// The commit counter of the locked `target`, if it may be replaced.
fn check_target(conn: &Connection, target: &Path, force: bool) -> Result<u64, BackupError> {
    let at_target = |e: rusqlite::Error| target_error(target, e);
    let tables: i64 = conn
        .query_row("select count(*) from sqlite_master", [], |r| r.get(0))
        .map_err(at_target)?;
    if tables == 0 {
        return Ok(0);
    }
    check_schema(conn, target)?;
    let holds_data: bool = conn
        .query_row(
            "select exists(select 1 from kv) or exists(select 1 from queue) \
             or exists(select 1 from queue_running)",
            [],
            |r| r.get(0),
        )
        .map_err(|e| not_kv(target, e))?;
    if holds_data && !force {
        return Err(BackupError::NotEmpty(target.to_owned()));
    }
    read_counter(conn, target)
}

/// An error of the target's first statements: a lock means another process
/// has it open, a file of another kind is no database to replace.
fn target_error(target: &Path, e: rusqlite::Error) -> BackupError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            BackupError::InUse(target.to_owned())
        }
        Some(ErrorCode::NotADatabase) => BackupError::NotKv {
            path: target.to_owned(),
            reason: "not a SQLite database".into(),
        },
        _ => BackupError::sqlite(target, e),
    }
}

/// A statement on a Deno KV table failed: a missing table or column means a
/// schema that is not Deno's.
fn not_kv(path: &Path, e: rusqlite::Error) -> BackupError {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(message)) if f.code == ErrorCode::Unknown => {
            BackupError::NotKv {
                path: path.to_owned(),
                reason: message,
            }
        }
        e => target_error(path, e),
    }
}

/// Opens the existing Deno KV database at `path` to read it. Read-write at
/// the file level when it may, as kv's readers do: the last connection to
/// close a WAL database removes its `-wal` and `-shm` files, which a
/// read-only one would leave behind.
fn open_kv(path: &Path) -> Result<Connection, BackupError> {
    if !exists(path)? {
        return Err(BackupError::Missing(path.to_owned()));
    }
    if path.is_dir() {
        return Err(BackupError::NotKv {
            path: path.to_owned(),
            reason: "a directory".into(),
        });
    }
    let read_write = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    );
    let conn = match read_write {
        Ok(conn) => {
            let at = |e: rusqlite::Error| BackupError::sqlite(path, e);
            conn.busy_timeout(SOURCE_LOCK_WAIT).map_err(at)?;
            conn.pragma_update(None, "query_only", true).map_err(at)?;
            conn
        }
        // A file this process may only read.
        Err(_) => schema::open_read_only(path, SOURCE_LOCK_WAIT).map_err(|e| match e {
            SqliteError::Sqlite(e) => target_error(path, e),
            e => BackupError::sqlite(path, e),
        })?,
    };
    check_schema(&conn, path)?;
    Ok(conn)
}

/// Refuses a database without Deno's schema at the version this build
/// reads.
fn check_schema(conn: &Connection, path: &Path) -> Result<(), BackupError> {
    let has_state: bool = conn
        .query_row(
            "select exists(select 1 from sqlite_master \
             where type = 'table' and name = 'migration_state')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| target_error(path, e))?;
    let version: Option<i64> = if has_state {
        conn.query_row("select version from migration_state where k = 0", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| not_kv(path, e))?
    } else {
        None
    };
    let reason = match version {
        Some(schema::SCHEMA_VERSION) => return Ok(()),
        Some(v) => format!(
            "schema version {v}; this build reads only version {}",
            schema::SCHEMA_VERSION
        ),
        None => "no Deno KV schema".into(),
    };
    Err(BackupError::NotKv {
        path: path.to_owned(),
        reason,
    })
}

/// The commit counter in `data_version`.
fn read_counter(conn: &Connection, path: &Path) -> Result<u64, BackupError> {
    let counter: i64 = conn
        .query_row("select version from data_version where k = 0", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| not_kv(path, e))?
        .unwrap_or(0);
    u64::try_from(counter).map_err(|_| BackupError::NotKv {
        path: path.to_owned(),
        reason: format!("a negative commit counter ({counter})"),
    })
}

/// Opens the temporary file a copy is written to. It needs no journal: on
/// a failure it is thrown away, and it is synced once, at the end.
fn open_scratch(path: &Path) -> Result<Connection, BackupError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError::sqlite(path, e))?;
    conn.pragma_update_and_check(None, "journal_mode", "off", |_| Ok(()))
        .map_err(|e| BackupError::sqlite(path, e))?;
    conn.pragma_update(None, "synchronous", "OFF")
        .map_err(|e| BackupError::sqlite(path, e))?;
    Ok(conn)
}

/// Leaves the copy in `conn` in rollback-journal mode (a single file: the
/// pages copied from a WAL database say WAL) with the commit counter set to
/// `counter` if given; returns the counter it holds.
fn finish_scratch(
    conn: &Connection,
    path: &Path,
    counter: Option<i64>,
) -> Result<u64, BackupError> {
    let at = |e: rusqlite::Error| BackupError::sqlite(path, e);
    conn.pragma_update_and_check(None, "journal_mode", "delete", |_| Ok(()))
        .map_err(at)?;
    if let Some(counter) = counter {
        conn.execute(
            "update data_version set version = ?1 where k = 0",
            [counter],
        )
        .map_err(at)?;
    }
    read_counter(conn, path)
}

/// Copies every page of `from` into `to` in one step: one read transaction
/// on `from`, one write transaction on `to`.
fn copy_pages(
    from: &Connection,
    from_path: &Path,
    to: &mut Connection,
    to_path: &Path,
) -> Result<(), BackupError> {
    let copy = Backup::new(from, to).map_err(|e| BackupError::sqlite(to_path, e))?;
    let deadline = Instant::now() + SOURCE_LOCK_WAIT;
    loop {
        // A negative count copies every remaining page in this call.
        match copy.step(-1).map_err(|e| BackupError::sqlite(to_path, e))? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return Err(BackupError::InUse(from_path.to_owned())),
        }
    }
}

/// Closes `conn`, reporting what closing found (a failed final sync).
fn close(conn: Connection, path: &Path) -> Result<(), BackupError> {
    conn.close().map_err(|(_, e)| BackupError::sqlite(path, e))
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

/// `path` with `suffix` appended (`kv.sqlite3-wal`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Refuses a `-wal` or `-journal` file beside `path`, which does not exist.
fn refuse_orphans(path: &Path) -> Result<(), BackupError> {
    for suffix in ["-wal", "-journal"] {
        let file = sidecar(path, suffix);
        if exists(&file)? {
            return Err(BackupError::Orphan(file));
        }
    }
    Ok(())
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
    // SQLite opens the file by name; an open handle of ours would drop its
    // locks when closed.
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
