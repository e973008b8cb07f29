//! kv: Deno KV as a Rust library. Open a database by URL and use the
//! [`Kv`] API; the backend is chosen by the URL.
//!
//! | URL | backend | feature |
//! | --- | --- | --- |
//! | `memory:` | in-memory, private to this handle | always |
//! | `:memory:` | in-memory SQLite | `sqlite` (default) |
//! | `sqlite:PATH`, or any other path such as `./data.sqlite3` | SQLite file (Deno's own file format) | `sqlite` (default) |
//! | `redb:PATH`, or a path ending in `.redb` | redb file (pure Rust; one process at a time) | `redb` (default) |
//! | `http://…`, `https://…` | a KV Connect server (`kv serve`, denokv, Deno Deploy); token from `DENO_KV_ACCESS_TOKEN` | `remote` (default) |
//! | `etcd://host:port[,host:port…][/prefix]` | an etcd cluster, keys under `prefix` (default `kv`) | `etcd` |
//!
//! ```
//! # tokio_test_block_on(async {
//! use kv::{KvValue, key};
//!
//! let db = kv::open("memory:").await?;
//! let stamp = db.set(key!["greeting"], KvValue::Bytes(b"hello".to_vec())).await?;
//! let entry = db.get(key!["greeting"]).await?.expect("just written");
//! assert_eq!(entry.versionstamp, stamp);
//! # Ok::<(), kv::Error>(())
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Runtime::new().expect("runtime").block_on(f)
//! # }
//! ```

use std::path::Path;
use std::sync::Arc;

// The user's API, named one by one so that what kv-core adds for backend
// implementers reaches users only through `kv::backend`.
pub use kv_core::backend::{self, Backend, CommitOutcome, Consistency};
pub use kv_core::limits;
pub use kv_core::{
    AtomicOperation, BigInt, Clock, EnqueueOptions, Error, Key, KeyPart, Kv, KvEntry, KvValue,
    Limit, ListIterator, ListOptions, ManualClock, MemoryBackend, PrefixBackend, Result, Selector,
    SelectorBounds, SetOptions, SystemClock, ValueRef, Versionstamp, key,
};
pub use kv_queue::{Delivery, HandlerError, Queue, QueueBackend, QueueStats};
/// Values shared with Deno programs: the V8 structured-clone codec, the
/// dynamic `JsValue`, the serde mapping (`to_value`, `from_value`) and the
/// `KvSerdeExt` extension trait (feature `v8`, on by default).
#[cfg(feature = "v8")]
pub use kv_v8 as v8;

/// Opens the database that `url` names (see the crate docs for the forms).
///
/// # Errors
/// `InvalidArgument` for an empty or unrecognised URL, `Unsupported` when
/// the backend's cargo feature is disabled, and the backend's open errors.
pub async fn open(url: &str) -> Result<Kv> {
    Ok(Kv::from_arc(open_backend(url).await?))
}

/// Opens the backend that `url` names, for use with wrappers or a server.
///
/// # Errors
/// As [`open`].
pub async fn open_backend(url: &str) -> Result<Arc<dyn Backend>> {
    // Storage backends get the queue layer, so that `enqueue` works on
    // every database; a remote server applies its own.
    let storage: Arc<dyn Backend> = match parse(url)? {
        Target::Memory => Arc::new(MemoryBackend::new()),
        Target::SqliteMemory => sqlite::open_in_memory()?,
        Target::Sqlite(path) => sqlite::open(path)?,
        Target::Redb(path) => redb::open(path)?,
        Target::Etcd(url) => etcd::open(url).await?,
        Target::Remote(url) => return remote::open(url).await,
    };
    Ok(Arc::new(kv_queue::QueueBackend::new(storage)))
}

/// How to open a database by URL (builder-lite): [`open`] and
/// [`open_backend`] with choices.
///
/// ```
/// # tokio_test_block_on(async {
/// let dir = tempfile::tempdir().expect("a temporary directory");
/// let missing = dir.path().join("missing.sqlite3");
/// let opened = kv::OpenOptions::new()
///     .with_must_exist(true)
///     .open(missing.to_str().expect("utf-8"))
///     .await;
/// assert!(matches!(opened, Err(kv::Error::InvalidArgument(_))));
/// assert!(!missing.exists(), "nothing was created");
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Runtime::new().expect("runtime").block_on(f)
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    must_exist: bool,
    read_only: bool,
}

impl OpenOptions {
    /// The defaults: a missing database file is created, writes allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `true`, a SQLite or redb file that does not exist is an error
    /// instead of a new, empty database (for commands that only look).
    pub fn with_must_exist(mut self, must_exist: bool) -> Self {
        self.must_exist = must_exist;
        self
    }

    /// With `true`, opens as [`open_backend_read_only`] does (SQLite files
    /// only); implies that the file must exist.
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Opens the database `url` names with these options.
    ///
    /// # Errors
    /// As [`open`]; [`Error::InvalidArgument`] naming the path when a file
    /// that must exist does not, or its directory does not exist;
    /// [`Error::PermissionDenied`] when the file or its directory may not
    /// be read or written.
    pub async fn open(&self, url: &str) -> Result<Kv> {
        Ok(Kv::from_arc(self.open_backend(url).await?))
    }

    /// Opens the backend `url` names with these options.
    ///
    /// # Errors
    /// As [`OpenOptions::open`].
    pub async fn open_backend(&self, url: &str) -> Result<Arc<dyn Backend>> {
        let target = parse(url)?;
        if let Target::Sqlite(path) | Target::Redb(path) = target {
            check_path(Path::new(path), self.must_exist || self.read_only)?;
        }
        let opened = if self.read_only {
            open_backend_read_only(url).await
        } else {
            open_backend(url).await
        };
        match (opened, target) {
            (Err(e), Target::Sqlite(path) | Target::Redb(path)) => {
                Err(diagnose(Path::new(path)).unwrap_or(e))
            }
            (opened, _) => opened,
        }
    }
}

/// Refuses a file that must exist and does not, and a file whose
/// directory is missing, before an engine would create or fail on it.
fn check_path(path: &Path, must_exist: bool) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if must_exist {
        return Err(Error::InvalidArgument(format!(
            "no database at {}: the file does not exist",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "cannot create {}: the directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Says why a database file could not be opened when the operating system
/// refused it (engines report that as a bare "unable to open"): `None`
/// when it was something else.
fn diagnose(path: &Path) -> Option<Error> {
    let denied = |what: String| Some(Error::PermissionDenied(what));
    if path.exists() {
        return match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => denied(format!(
                "cannot open {} for reading and writing",
                path.display()
            )),
            Err(e) if e.raw_os_error() == Some(READ_ONLY_FILE_SYSTEM) => {
                denied(format!("{} is on a read-only file system", path.display()))
            }
            _ => None,
        };
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".kv-open-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::PermissionDenied
                || e.raw_os_error() == Some(READ_ONLY_FILE_SYSTEM) =>
        {
            denied(format!(
                "cannot create {}: the directory {} is not writable",
                path.display(),
                dir.display()
            ))
        }
        Err(_) => None,
    }
}

/// `EROFS`, which std reports without an `ErrorKind` of its own on stable.
const READ_ONLY_FILE_SYSTEM: i32 = 30;

/// The URL forms [`open`] accepts, for error messages.
pub const URL_FORMS: &str = "memory:, :memory:, sqlite:PATH, redb:PATH, a file path \
     (PATH.redb for redb), http://HOST:PORT or https://… (KV Connect), etcd://HOST:PORT[,…][/PREFIX]";

/// Opens the SQLite file that `url` names without ever writing to it, as
/// `kv serve --read-only` does: reads and watches work (other processes'
/// commits still wake watchers), commits fail with [`Error::ReadOnly`], and
/// expired keys are hidden but not deleted.
///
/// # Errors
/// As [`open`]; `InvalidArgument` for in-memory databases, `Unsupported`
/// for backends other than SQLite files, and an error when the file does
/// not exist or holds no Deno KV database (nothing is created).
pub async fn open_backend_read_only(url: &str) -> Result<Arc<dyn Backend>> {
    let storage = match parse(url)? {
        Target::Sqlite(path) => sqlite::open_read_only(path)?,
        Target::Memory | Target::SqliteMemory => {
            return Err(Error::InvalidArgument(
                "a read-only database needs a file".into(),
            ));
        }
        Target::Redb(_) => return Err(no_read_only("redb")),
        Target::Etcd(_) => return Err(no_read_only("etcd")),
        Target::Remote(_) => return Err(no_read_only("remote")),
    };
    Ok(Arc::new(kv_queue::QueueBackend::new(storage)))
}

fn no_read_only(backend: &str) -> Error {
    Error::Unsupported {
        backend: backend.into(),
        op: "read-only opening (only SQLite files open read-only)",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target<'a> {
    Memory,
    SqliteMemory,
    Sqlite(&'a str),
    Redb(&'a str),
    Etcd(&'a str),
    Remote(&'a str),
}

fn parse(url: &str) -> Result<Target<'_>> {
    if url.is_empty() {
        return Err(Error::InvalidArgument("Filename cannot be empty".into()));
    }
    if url == "memory:" {
        return Ok(Target::Memory);
    }
    if url == ":memory:" || url == "sqlite::memory:" {
        return Ok(Target::SqliteMemory);
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err(Error::InvalidArgument("Filename cannot be empty".into()));
        }
        return Ok(Target::Sqlite(path));
    }
    if let Some(path) = url
        .strip_prefix("redb://")
        .or_else(|| url.strip_prefix("redb:"))
    {
        if path.is_empty() {
            return Err(Error::InvalidArgument("Filename cannot be empty".into()));
        }
        return Ok(Target::Redb(path));
    }
    if url.starts_with("etcd://") {
        return Ok(Target::Etcd(url));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Target::Remote(url));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(Error::InvalidArgument(format!(
            "unsupported database URL scheme {scheme:?} in {url:?}; accepted: {URL_FORMS}"
        )));
    }
    if url.starts_with(':') {
        return Err(Error::InvalidArgument(
            "Filename cannot start with ':' unless prefixed with './'".into(),
        ));
    }
    if url.ends_with(".redb") {
        return Ok(Target::Redb(url));
    }
    Ok(Target::Sqlite(url))
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    pub(super) fn open(path: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(kv_sqlite::SqliteBackend::open(path)?))
    }

    pub(super) fn open_in_memory() -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(kv_sqlite::SqliteBackend::open_in_memory()?))
    }

    pub(super) fn open_read_only(path: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(
            kv_sqlite::SqliteConfig::new(path)
                .with_read_only(true)
                .open()?,
        ))
    }
}

#[cfg(not(feature = "sqlite"))]
mod sqlite {
    use super::*;

    fn disabled() -> Error {
        Error::Unsupported {
            backend: "sqlite".into(),
            op: "open (enable the `sqlite` feature)",
        }
    }

    pub(super) fn open(_path: &str) -> Result<Arc<dyn Backend>> {
        Err(disabled())
    }

    pub(super) fn open_in_memory() -> Result<Arc<dyn Backend>> {
        Err(disabled())
    }

    pub(super) fn open_read_only(_path: &str) -> Result<Arc<dyn Backend>> {
        Err(disabled())
    }
}

#[cfg(feature = "redb")]
mod redb {
    use super::*;

    pub(super) fn open(path: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(kv_redb::RedbBackend::open(path)?))
    }
}

#[cfg(not(feature = "redb"))]
mod redb {
    use super::*;

    pub(super) fn open(_path: &str) -> Result<Arc<dyn Backend>> {
        Err(Error::Unsupported {
            backend: "redb".into(),
            op: "open (enable the `redb` feature)",
        })
    }
}

#[cfg(feature = "etcd")]
mod etcd {
    use super::*;

    pub(super) async fn open(url: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(kv_etcd::EtcdBackend::open(url).await?))
    }
}

#[cfg(not(feature = "etcd"))]
mod etcd {
    use super::*;

    pub(super) async fn open(_url: &str) -> Result<Arc<dyn Backend>> {
        Err(Error::Unsupported {
            backend: "etcd".into(),
            op: "open (enable the `etcd` feature)",
        })
    }
}

#[cfg(feature = "remote")]
mod remote {
    use super::*;

    pub(super) async fn open(url: &str) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(
            kv_remote::RemoteConfig::from_env(url)?.connect().await?,
        ))
    }
}

#[cfg(not(feature = "remote"))]
mod remote {
    use super::*;

    pub(super) async fn open(_url: &str) -> Result<Arc<dyn Backend>> {
        Err(Error::Unsupported {
            backend: "remote".into(),
            op: "open (enable the `remote` feature)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_backends() {
        assert_eq!(parse("memory:").ok(), Some(Target::Memory));
        assert_eq!(parse(":memory:").ok(), Some(Target::SqliteMemory));
        assert_eq!(
            parse("sqlite:/tmp/a.db").ok(),
            Some(Target::Sqlite("/tmp/a.db"))
        );
        assert_eq!(
            parse("./data.sqlite3").ok(),
            Some(Target::Sqlite("./data.sqlite3"))
        );
        assert_eq!(
            parse("redb:/tmp/a.db").ok(),
            Some(Target::Redb("/tmp/a.db"))
        );
        assert_eq!(
            parse("redb:///tmp/a.db").ok(),
            Some(Target::Redb("/tmp/a.db"))
        );
        assert_eq!(parse("./data.redb").ok(), Some(Target::Redb("./data.redb")));
        assert!(parse("redb:").is_err());
        assert!(parse("").is_err());
        assert!(parse(":foo").is_err());
        assert!(parse("ftp://x").is_err());
        assert_eq!(
            parse("etcd://127.0.0.1:2379,127.0.0.1:22379/app").ok(),
            Some(Target::Etcd("etcd://127.0.0.1:2379,127.0.0.1:22379/app"))
        );
        assert_eq!(
            parse("http://127.0.0.1:4512").ok(),
            Some(Target::Remote("http://127.0.0.1:4512"))
        );
    }
}
