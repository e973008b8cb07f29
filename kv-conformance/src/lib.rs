//! The conformance suite: one named case per behaviour of Deno KV, run
//! against every backend. Each case gets a [`Cx`] with a fresh namespace
//! (a [`PrefixBackend`]) and, where the target allows it, a manual clock.
//!
//! A target is anything that can hand out backends: the in-process targets
//! open a new database per case; a URL target shares one database and relies
//! on namespaces.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kv_core::backend::Backend;
use kv_core::{Kv, ManualClock, PrefixBackend, key};

/// Declares the cases of an area from `async fn(Cx) -> anyhow::Result<()>`s.
macro_rules! declare_cases {
    ($area:literal: $($case:ident),* $(,)?) => {
        pub(crate) fn cases() -> Vec<$crate::Case> {
            vec![$($crate::Case {
                area: $area,
                name: stringify!($case),
                run: |cx| Box::pin($case(cx)),
            }),*]
        }
    };
}

/// Asserts that `result` failed with an error matching `pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            Err(other) => anyhow::bail!("{}: wrong error {other:?}", stringify!($result)),
            Ok(_) => anyhow::bail!("{}: expected an error", stringify!($result)),
        }
    };
}

mod atomic;
mod basics;
mod concurrency;
mod cron;
pub mod durable;
mod expiry;
mod keys;
mod lifecycle;
mod limits;
mod list;
mod model;
mod queue;
mod sum;
mod watch;

/// The future a case returns.
pub type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One named behaviour.
#[derive(Clone, Copy)]
pub struct Case {
    /// The area, e.g. `list`.
    pub area: &'static str,
    /// The case, e.g. `prefix_excludes_the_prefix_key`.
    pub name: &'static str,
    /// The test.
    pub run: fn(Cx) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{}", self.area, self.name)
    }
}

/// A fresh database handed to one case.
pub struct Opened {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// The clock the backend uses for expiry, when the test may move it.
    pub clock: Option<Arc<ManualClock>>,
    /// Whether other cases share this database (then each case gets its
    /// own namespace, which lengthens every key on the wire).
    pub shared: bool,
}

/// Something the suite runs against.
pub trait Target: Send + Sync {
    /// The target's name in case names, e.g. `sqlite`.
    fn name(&self) -> &str;
    /// A database for one case: new for in-process targets, shared for URL
    /// targets (the case is namespaced either way).
    fn open(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<Opened>> + Send + '_>>;
}

/// What a case works with.
#[derive(Clone)]
pub struct Cx {
    /// The user API on the case's namespace.
    pub kv: Kv,
    /// The raw backend of the case's namespace.
    pub backend: Arc<dyn Backend>,
    database: Arc<dyn Backend>,
    ns_len: usize,
    clock: Option<Arc<ManualClock>>,
    target: Arc<dyn Target>,
}

impl Cx {
    /// Builds the context of one case on `target`.
    ///
    /// # Errors
    /// When the target cannot open a database.
    pub async fn new(target: Arc<dyn Target>) -> anyhow::Result<Cx> {
        let opened = target.open().await?;
        let database = opened.backend;
        // Every case gets the queue layer, as `kv::open` gives it. On a
        // shared database it goes above the namespace, so that each case's
        // queue records live in its own namespace too.
        let (backend, ns_len): (Arc<dyn Backend>, usize) = if opened.shared {
            let ns = key!["kv-conformance", rand::random::<u64>()].encode()?;
            let len = ns.len();
            let namespaced = PrefixBackend::new(database.clone(), ns);
            (Arc::new(kv_queue::QueueBackend::new(namespaced)), len)
        } else {
            (Arc::new(kv_queue::QueueBackend::new(database.clone())), 0)
        };
        let mut kv = Kv::from_arc(backend.clone());
        if let Some(clock) = &opened.clock {
            kv = kv.with_clock(clock.clone());
        }
        Ok(Cx {
            kv,
            backend,
            database,
            ns_len,
            clock: opened.clock,
            target,
        })
    }

    /// A separate database of the same target, for cases that close it.
    ///
    /// # Errors
    /// When the target cannot open a database.
    pub async fn fresh(&self) -> anyhow::Result<Cx> {
        Cx::new(self.target.clone()).await
    }

    /// Closes the database handle this case opened (for URL targets, the
    /// client; the server stays up).
    pub async fn close_database(&self) {
        self.database.close().await;
    }

    /// How many bytes the case's namespace adds to every key (0 when the
    /// case has a database of its own). Boundary tests subtract it.
    pub fn ns_len(&self) -> usize {
        self.ns_len
    }

    /// The manual clock, when time is under the test's control.
    pub fn clock(&self) -> Option<Arc<dyn kv_core::Clock>> {
        self.clock.clone().map(|c| c as Arc<dyn kv_core::Clock>)
    }

    /// Whether time is under the test's control.
    pub fn has_manual_clock(&self) -> bool {
        self.clock.is_some()
    }

    /// Lets `ms` milliseconds pass: moves the manual clock, or sleeps.
    pub async fn advance(&self, ms: u64) {
        match &self.clock {
            Some(clock) => clock.advance(ms),
            None => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    [
        basics::cases(),
        keys::cases(),
        atomic::cases(),
        sum::cases(),
        list::cases(),
        limits::cases(),
        expiry::cases(),
        watch::cases(),
        concurrency::cases(),
        lifecycle::cases(),
        model::cases(),
        queue::cases(),
        cron::cases(),
    ]
    .concat()
}

/// Runs one case on `target` in a new multi-threaded runtime.
///
/// # Errors
/// The case's failure.
pub fn run(target: Arc<dyn Target>, case: Case) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let cx = Cx::new(target).await?;
        let database = cx.database.clone();
        let result = tokio::time::timeout(Duration::from_secs(60), (case.run)(cx)).await;
        database.close().await;
        match result {
            Ok(r) => r,
            Err(_) => anyhow::bail!("timed out after 60 s"),
        }
    })
}

/// Short constructors used by the cases.
pub(crate) mod util {
    use kv_core::KvValue;

    /// A bytes value.
    pub(crate) fn b(s: &str) -> KvValue {
        KvValue::Bytes(s.as_bytes().to_vec())
    }

    /// Bytes from hex.
    pub(crate) fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex literal"))
            .collect()
    }

    /// A V8 value from hex.
    pub(crate) fn v8(hex: &str) -> KvValue {
        KvValue::V8(unhex(hex))
    }
}
