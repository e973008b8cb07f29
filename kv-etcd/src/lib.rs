//! A [`kv_core::Backend`] on [etcd](https://etcd.io): Deno KV on a
//! replicated Raft cluster, for when one machine is not enough. Losing a
//! minority of members loses no acknowledged commit, and service resumes
//! once the survivors have elected a leader (about a second with etcd's
//! default timings).
//!
//! # How Deno KV maps onto etcd
//!
//! - **Keys** live under a prefix `P` (from the URL): the value of key `k`
//!   is at `P/d/k`, and `P/c` is the *commit marker*, a key every commit
//!   writes. Prefixes must not nest.
//! - **Values** are stored as a small record: format, value encoding,
//!   optional expiry and optional versionstamp, then the value (see
//!   `record.rs`).
//! - **Versionstamps** come from etcd's revision, which the whole cluster
//!   shares and every write transaction increases: a commit's versionstamp
//!   is the revision its transaction created (8 bytes big-endian, then 2
//!   zero bytes), and a key's versionstamp is its `mod_revision`. A commit
//!   that writes a versionstamped key must know its stamp before it writes:
//!   it reads the current revision `R` together with the commit marker,
//!   stores the stamp `R + 1` in every record it writes, and commits only if
//!   the marker is unchanged, so that no commit of this database came in
//!   between. Every commit writes the marker, so commits that change no key
//!   (an empty commit, a delete of an absent key) still get a new stamp.
//! - **Commits** are one etcd transaction. Checks and `sum`/`min`/`max`
//!   need the current values: the commit reads those keys (linearizably),
//!   evaluates the checks and computes the mutations with
//!   [`kv_core::backend::apply::apply`], and its transaction compares that every key
//!   it read still has the `mod_revision` it read. If another client got
//!   there first, the commit starts over (optimistic concurrency), so
//!   concurrent sums are never lost. A failed check writes nothing and
//!   consumes no stamp. Commits with only sets and deletes need no read:
//!   one round trip.
//! - **Reads**: `Strong` reads are etcd's linearizable reads; `Eventual`
//!   reads are serializable, served by whichever member the client reaches
//!   (they keep answering while the cluster has no quorum). All ranges of
//!   one read come from one transaction, so one revision.
//! - **Expiry**: the expiry time is in the record, so reads and checks hide
//!   an expired key at once (by this handle's [`Clock`]). Keys with an
//!   expiry are attached to an etcd lease that ends at most 11 s after the
//!   expiry, so the cluster itself deletes them: nothing sweeps, and keys
//!   expire even when no kv client runs. Leases are shared by all keys that
//!   expire in the same 10-second window.
//! - **Watch** reads the keys (linearizably), emits them, then opens an etcd
//!   watch on them from the next revision, and reads and emits again after
//!   each event that changed a versionstamp. When its member fails, the
//!   watch reads the keys again and watches on from that read's revision,
//!   through another member.
//! - **Queues** are data under [`kv_core::backend::SYSTEM_PREFIX`], written by
//!   the queue layer (`kv_queue::QueueBackend`) like any other keys; an
//!   `AtomicWrite` that still carries enqueues is refused with
//!   [`kv_core::Error::Unsupported`].
//!
//! # Errors
//!
//! Transient faults (no leader, a member down, a request over its timeout)
//! are [`kv_core::Error::Unavailable`], which callers may retry. Reads retry
//! them internally until the request timeout has passed. A commit is sent
//! again only when it never left (its member could not be connected to);
//! after any other fault it may have been applied, so the caller decides. With a majority of members down, commits fail
//! with `Unavailable` after the request timeout (5 s by default, see
//! [`EtcdConfig::with_request_timeout`]); `Eventual` reads still answer.
//!
//! # Running kv on etcd
//!
//! etcd (3.4 or later; Debian: `apt-get install etcd-server`) with three or
//! five members on separate machines. Start every member with:
//!
//! - `--max-txn-ops=2048`: one commit is one transaction with an operation
//!   per key it writes, plus the commit marker, and a compare per key it
//!   reads. Deno allows 1,000 mutations and 100 checks per commit, etcd's
//!   default is 128 operations. On a cluster configured lower, a commit that
//!   needs more fails with [`kv_core::Error::LimitExceeded`]
//!   (`limit: Mutations`), whose `max` is the cluster's limit and `actual`
//!   the operations the commit needs.
//! - `--max-request-bytes`: the default (1.5 MiB) holds Deno's largest
//!   commit (800 KiB of keys and values plus record headers); do not lower
//!   it.
//! - `--auto-compaction-mode=periodic --auto-compaction-retention=1h`:
//!   etcd keeps every revision until it is compacted, and every commit adds
//!   one.
//! - `--quota-backend-bytes`: etcd stops accepting writes when its database
//!   reaches it (2 GiB by default, at most 8 GiB); size it for the data
//!   plus the retained history, and defragment after compactions.
//! - Fast disks: etcd fsyncs every commit on a majority of members before
//!   it answers.
//!
//! Then open `etcd://host1:2379,host2:2379,host3:2379/myapp` (the path is the
//! prefix; `kv` is the default) with `kv::open` (cargo feature `etcd`), or
//! serve Deno clients with `kv serve --backend etcd://…` (a `kv` binary
//! built with the feature: `cargo build -p kv-server --features kv/etcd`).
//! Several servers may serve one prefix at once; their commits are
//! serialized by etcd. Give every client all the members: the client
//! balances requests over them and resends a request that could not reach
//! its member to another.
//!
//! Costs to plan for:
//!
//! - Every commit writes the commit marker, and a commit with a
//!   versionstamped key (queue messages use them) must find no other commit
//!   of the database between its read and its write; under a heavy write
//!   load such commits retry (for up to 30 s) before they give up.
//! - Reverse lists make etcd read the whole selected range to sort it: keep
//!   reverse scans over large ranges rare.
//! - Expiry is enforced by each client's clock; etcd's lease deletes the key
//!   up to 11 s after it expired.
//!
//! Measured on one 2-core machine, 3 members on loopback (`cargo xtask etcd
//! bench`, p50 / p99): a set 1.5 / 9 ms (520 commits/s from one client), a
//! strong get 1.0 / 6.5 ms, an eventual get 0.5 / 4.9 ms, a `sum` 3.7 / 15
//! ms (read, then compare-and-write), 64 concurrent writers 1,190 commits/s.
//! Killing the leader under load (kv-etcd's `faults` tests) lost no
//! acknowledged commit and paused acknowledgements for 1.2–1.5 s.
//!
//! ```no_run
//! # async fn demo() -> kv_core::Result<()> {
//! use kv_core::{Kv, KvValue, key};
//! use kv_etcd::EtcdConfig;
//!
//! let backend = EtcdConfig::from_url("etcd://127.0.0.1:2379/myapp")?
//!     .connect()
//!     .await?;
//! let kv = Kv::new(backend);
//! kv.atomic().sum(key!["visits"], 1).commit().await?;
//! let visits = kv.get(key!["visits"]).await?.map(|e| e.value);
//! assert!(matches!(visits, Some(KvValue::U64(_))));
//! kv.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! The same API on `memory:`, with nothing to start:
//!
//! ```
//! # futures::executor::block_on(async {
//! use kv_core::{Kv, KvValue, MemoryBackend, key};
//!
//! let kv = Kv::new(MemoryBackend::new());
//! kv.atomic().sum(key!["visits"], 1).commit().await?;
//! assert_eq!(kv.get(key!["visits"]).await?.map(|e| e.value), Some(KvValue::U64(1)));
//! # Ok::<(), kv_core::Error>(())
//! # }).unwrap();
//! ```

mod commit;
mod error;
mod keyspace;
mod lease;
mod read;
mod record;
mod watch;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};
use kv_core::backend::{AtomicWrite, RawEntry, ReadRange, StorageWrite, WatchStream};
use kv_core::{Backend, Clock, CommitOutcome, Consistency, Error, Result, SystemClock};

pub use crate::error::EtcdError;
use crate::error::{BACKEND, convert};
use crate::keyspace::Keyspace;
use crate::lease::Leases;

/// The prefix used when the URL names none.
pub const DEFAULT_PREFIX: &str = "kv";

/// The largest gRPC message a read may return: 1,000 entries of 64 KiB
/// values and 2 KiB keys, with room to spare.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// How to connect an [`EtcdBackend`] (builder-lite).
///
/// ```
/// use std::time::Duration;
/// use kv_etcd::EtcdConfig;
///
/// let config = EtcdConfig::from_url("etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/app")?
///     .with_request_timeout(Duration::from_secs(3));
/// assert_eq!(config.prefix(), "app");
/// assert_eq!(config.endpoints().len(), 3);
/// # Ok::<(), kv_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    endpoints: Vec<String>,
    prefix: String,
    clock: Arc<dyn Clock>,
    request_timeout: Duration,
    connect_timeout: Duration,
}

impl EtcdConfig {
    /// A database under `prefix` on the cluster reached at `endpoints`
    /// (`host:port` or `http://host:port`).
    pub fn new<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
        prefix: impl Into<String>,
    ) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.into(),
            clock: Arc::new(SystemClock),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// Parses `etcd://host:port[,host:port…][/prefix]`. The prefix is the
    /// path without its leading `/`, [`DEFAULT_PREFIX`] when empty.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another scheme or no endpoint.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("etcd://").ok_or_else(|| {
            Error::InvalidArgument(format!("an etcd URL starts with etcd://, got {url:?}"))
        })?;
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoints: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the etcd URL {url:?} names no endpoint; \
                 use etcd://host:port[,host:port…][/prefix]"
            )));
        }
        if let Some(bad) = endpoints.iter().find(|h| h.contains(['?', '#', '@', ' '])) {
            return Err(Error::InvalidArgument(format!(
                "{bad:?} in {url:?} is not a host:port endpoint"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            DEFAULT_PREFIX
        } else {
            prefix
        };
        Ok(EtcdConfig::new(endpoints, prefix))
    }

    /// Uses `clock` to decide which keys have expired (tests pass a
    /// [`kv_core::ManualClock`]). The default is the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long one request to the cluster may take before it fails with
    /// [`Error::Unavailable`] (default 5 s). Reads retry transient faults
    /// within this time; a commit that cannot reach a quorum fails after it.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long connecting to one member may take (default 2 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Connects and checks that at least one member answers (a serializable
    /// read, so a cluster without quorum still opens for eventual reads).
    /// Needs a Tokio runtime, as the etcd client does.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no endpoint or a malformed one,
    /// [`Error::Unavailable`] when no member answers within the timeouts.
    pub async fn connect(self) -> Result<EtcdBackend> {
        if self.endpoints.is_empty() {
            return Err(Error::InvalidArgument("no etcd endpoint given".into()));
        }
        let options = ConnectOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(|e| match e {
                etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_) => {
                    Error::InvalidArgument(format!("bad etcd endpoints {:?}: {e}", self.endpoints))
                }
                e => convert(e),
            })?;
        let keyspace = Keyspace::new(&self.prefix);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            client,
            keyspace,
            leases: Leases::new(),
            config: self,
            closed: AtomicBool::new(false),
            shutdown,
            txn_ops_ok: AtomicU64::new(commit::ETCD_DEFAULT_MAX_TXN_OPS),
            txn_ops_limit: AtomicU64::new(0),
        });
        inner
            .kv()
            .get(
                inner.keyspace.marker(),
                Some(GetOptions::new().with_serializable()),
            )
            .await
            .map_err(convert)?;
        Ok(EtcdBackend { inner })
    }
}

/// A [`Backend`] storing data in an etcd cluster. Cheap to clone: clones
/// share the connection and the watchers. [`Backend::close`] ends watch
/// streams and makes later calls fail with [`Error::Closed`]; the data stays
/// in the cluster.
#[derive(Clone)]
pub struct EtcdBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: EtcdConfig,
    client: Client,
    kv: KvClient,
    keyspace: Keyspace,
    leases: Leases,
    closed: AtomicBool,
    /// Set to `true` by `close`; watch streams end when it changes.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The largest transaction the cluster is known to accept (etcd's
    /// default limit until a larger commit has been tried).
    txn_ops_ok: AtomicU64,
    /// The cluster's `--max-txn-ops`, once a commit has run into it; 0
    /// while unknown.
    txn_ops_limit: AtomicU64,
}

impl Inner {
    fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }
}

impl EtcdBackend {
    /// Connects with `config`; see [`EtcdConfig::connect`].
    ///
    /// # Errors
    /// As [`EtcdConfig::connect`].
    pub async fn connect(config: EtcdConfig) -> Result<EtcdBackend> {
        config.connect().await
    }

    /// Opens `etcd://host:port[,host:port…][/prefix]`.
    ///
    /// # Errors
    /// As [`EtcdConfig::from_url`] and [`EtcdConfig::connect`].
    pub async fn open(url: &str) -> Result<EtcdBackend> {
        EtcdConfig::from_url(url)?.connect().await
    }

    /// The underlying etcd client, for operations kv does not cover (cluster
    /// status, compaction, maintenance).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }
}

impl fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.inner.config.endpoints)
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    fn name(&self) -> &str {
        BACKEND
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        self.inner.check_open()?;
        read::snapshot_read(&self.inner, &ranges, consistency).await
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        self.inner.check_open()?;
        let write = StorageWrite::new(write, BACKEND)?;
        commit::atomic_write(&self.inner, write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        watch::watch(self.inner.clone(), keys)
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.shutdown.send_replace(true);
    }
}
