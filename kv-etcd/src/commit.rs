//! Commits: one etcd transaction each, retried on conflicts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use kv_core::backend::apply::{Applied, apply, versionstamped_key};
use kv_core::backend::{MutationKind, StorageWrite};
use kv_core::{CommitOutcome, Error, KvValue, Limit, Result, Versionstamp};
use rand::Rng;

use crate::Inner;
use crate::error::{EtcdError, Fault, classify, convert, unavailable};
use crate::read::{Points, read_points, with_retries};
use crate::record::{self, stamp_of_revision};

/// How long a commit keeps starting over after conflicts with other
/// clients before it gives up with `Unavailable`.
const CONFLICT_BUDGET: Duration = Duration::from_secs(30);

/// The pause before sending a commit again that never reached a member.
const UNSENT_PAUSE: Duration = Duration::from_millis(20);

/// How many operations etcd accepts in one transaction unless configured
/// otherwise (`--max-txn-ops`).
pub(crate) const ETCD_DEFAULT_MAX_TXN_OPS: u64 = 128;

/// What a commit has to read before it can write.
struct Plan {
    /// kv keys whose current state the commit needs: checked keys and the
    /// keys of `sum`, `min` and `max`.
    read_keys: Vec<Vec<u8>>,
    /// Whether the commit writes a versionstamped key.
    versionstamped: bool,
    /// The most operations the commit's transactions need.
    ops: u64,
}

impl Plan {
    fn new(write: &StorageWrite) -> Plan {
        let mut read: BTreeSet<&[u8]> = write.checks.iter().map(|c| c.key.as_slice()).collect();
        let mut written: BTreeSet<&[u8]> = BTreeSet::new();
        let mut stamped = 0usize;
        for m in &write.mutations {
            match m.kind {
                MutationKind::Sum { .. } | MutationKind::Min(_) | MutationKind::Max(_) => {
                    read.insert(&m.key);
                    written.insert(&m.key);
                }
                MutationKind::SetSuffixVersionstampedKey { .. } => stamped += 1,
                MutationKind::Set { .. } | MutationKind::Delete => {
                    written.insert(&m.key);
                }
            }
        }
        let versionstamped = stamped > 0;
        // Reads and compares: one per key read, plus the commit marker.
        // Writes: one per key written, plus the commit marker.
        let ops = (read.len() + 1).max(written.len() + stamped + 1);
        Plan {
            read_keys: read.into_iter().map(<[u8]>::to_vec).collect(),
            versionstamped,
            ops: ops as u64,
        }
    }

    fn needs_read(&self) -> bool {
        !self.read_keys.is_empty() || self.versionstamped
    }

    fn index(&self, key: &[u8]) -> Option<usize> {
        self.read_keys
            .binary_search_by(|k| k.as_slice().cmp(key))
            .ok()
    }
}

/// Commits `write`; see the crate docs for the scheme.
pub(crate) async fn atomic_write(inner: &Inner, write: StorageWrite) -> Result<CommitOutcome> {
    let plan = Plan::new(&write);
    ensure_txn_size(inner, plan.ops).await?;
    let started = Instant::now();
    let mut conflicts = 0u32;
    let mut unsent = 0u32;
    loop {
        inner.check_open()?;
        let points = if plan.needs_read() {
            Some(with_retries(inner, || read_points(inner, &plan.read_keys)).await?)
        } else {
            None
        };
        match attempt(inner, &write, &plan, points.as_ref()).await? {
            Attempt::Done(outcome) => return Ok(outcome),
            Attempt::NotSent(message) => {
                unsent += 1;
                if started.elapsed() + UNSENT_PAUSE > inner.config.request_timeout {
                    return Err(unavailable(format!(
                        "{message} (no member reachable after {unsent} tries)"
                    )));
                }
                tokio::time::sleep(UNSENT_PAUSE).await;
            }
            Attempt::Conflict => {
                conflicts += 1;
                if started.elapsed() > CONFLICT_BUDGET {
                    return Err(unavailable(format!(
                        "the commit conflicted with other clients {conflicts} times in {:?}; \
                         gave up",
                        CONFLICT_BUDGET
                    )));
                }
                let cap = 1u64 << conflicts.min(6);
                let pause = rand::thread_rng().gen_range(0..=cap);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Attempt::LeaseGone => inner.leases.forget(),
        }
    }
}

enum Attempt {
    Done(CommitOutcome),
    /// A key read (or, for versionstamped commits, the marker) changed
    /// before the transaction ran: read again.
    Conflict,
    /// A cached lease had already ended: grant a new one and try again.
    LeaseGone,
    /// The transaction never reached a member (its connection failed):
    /// send it again, most likely to another member.
    NotSent(String),
}

/// What a mutation leaves at a key: a value and its expiry, or nothing.
type Final = Option<(KvValue, Option<u64>)>;

async fn attempt(
    inner: &Inner,
    write: &StorageWrite,
    plan: &Plan,
    points: Option<&Points>,
) -> Result<Attempt> {
    let ks = &inner.keyspace;
    let now = inner.now_ms();
    let current = |key: &[u8]| -> Option<KvValue> {
        let i = plan.index(key)?;
        points?.points[i].live(key, now).map(|e| e.value)
    };
    for check in &write.checks {
        let live = plan.index(&check.key).and_then(|i| {
            points
                .and_then(|p| p.points[i].live(&check.key, now))
                .map(|e| e.versionstamp)
        });
        if live != check.versionstamp {
            return Ok(Attempt::Done(CommitOutcome::CheckFailed));
        }
    }
    // A versionstamped commit stamps its keys with the revision after the
    // one it read; the marker compare below makes sure that no other
    // commit of this database took a revision in between.
    let stamp: Option<Versionstamp> = match points {
        Some(p) if plan.versionstamped => Some(stamp_of_revision(p.revision + 1)),
        _ => None,
    };
    let mut overlay: BTreeMap<Vec<u8>, Final> = BTreeMap::new();
    for m in &write.mutations {
        let key = match (&m.kind, stamp) {
            (MutationKind::SetSuffixVersionstampedKey { .. }, Some(stamp)) => {
                versionstamped_key(&m.key, stamp)
            }
            (MutationKind::SetSuffixVersionstampedKey { .. }, None) => {
                return Err(Error::backend(
                    crate::error::BACKEND,
                    "a versionstamped key without a versionstamp",
                ));
            }
            _ => m.key.clone(),
        };
        let before = match overlay.get(&key) {
            Some(state) => state.as_ref().map(|(v, _)| v.clone()),
            None => current(&key),
        };
        let after = match apply(&m.kind, before.as_ref())? {
            Applied::Put {
                value,
                expire_at_ms,
            } => Some((value, expire_at_ms)),
            Applied::Deleted => None,
        };
        overlay.insert(key, after);
    }

    let mut ops = Vec::with_capacity(overlay.len() + 1);
    let mut bytes = 0usize;
    for (key, state) in &overlay {
        let etcd_key = ks.data_key(key);
        bytes += etcd_key.len();
        match state {
            Some((value, expire_at_ms)) => {
                let mut options = PutOptions::new();
                if let Some(e) = expire_at_ms {
                    let remaining = e.saturating_sub(now);
                    if let Some(lease) = inner.leases.lease_for(inner, remaining).await? {
                        options = options.with_lease(lease);
                    }
                }
                let stored = record::encode(value, *expire_at_ms, stamp);
                bytes += stored.len();
                ops.push(TxnOp::put(etcd_key, stored, Some(options)));
            }
            None => ops.push(TxnOp::delete(etcd_key, None)),
        }
    }
    ops.push(TxnOp::put(ks.marker(), Vec::new(), None));

    let mut compares = Vec::new();
    if let Some(points) = points {
        for (key, point) in plan.read_keys.iter().zip(&points.points) {
            compares.push(Compare::mod_revision(
                ks.data_key(key),
                CompareOp::Equal,
                point.mod_revision,
            ));
        }
        if plan.versionstamped {
            compares.push(Compare::mod_revision(
                ks.marker(),
                CompareOp::Equal,
                points.marker_mod_revision,
            ));
        }
    }

    let txn = Txn::new().when(compares).and_then(ops);
    match inner.kv().txn(txn).await {
        Ok(response) if response.succeeded() => {
            let versionstamp = stamp.unwrap_or_else(|| {
                stamp_of_revision(response.header().map_or(0, |h| h.revision()))
            });
            Ok(Attempt::Done(CommitOutcome::Committed { versionstamp }))
        }
        Ok(_) => Ok(Attempt::Conflict),
        Err(e) => match classify(&e) {
            Fault::LeaseNotFound => Ok(Attempt::LeaseGone),
            Fault::NotSent(message) => Ok(Attempt::NotSent(message)),
            Fault::TooLarge => Err(EtcdError::RequestTooLarge { bytes }.into()),
            Fault::TooManyOps => {
                // The cluster's limit is lower than assumed or than measured
                // before (a member was restarted with other flags).
                inner.txn_ops_ok.store(0, Ordering::Relaxed);
                Err(too_many_ops(inner, plan.ops).await)
            }
            _ => Err(convert(e)),
        },
    }
}

/// Fails with `LimitExceeded` when the cluster's `--max-txn-ops` is below
/// `needed`, measuring the limit when the commit is larger than any the
/// cluster is known to accept.
async fn ensure_txn_size(inner: &Inner, needed: u64) -> Result<()> {
    if needed <= inner.txn_ops_ok.load(Ordering::Relaxed) {
        return Ok(());
    }
    let limit = inner.txn_ops_limit.load(Ordering::Relaxed);
    if limit != 0 && needed > limit {
        return Err(limit_error(limit, needed));
    }
    if accepts(inner, needed).await? {
        inner.txn_ops_ok.fetch_max(needed, Ordering::Relaxed);
        return Ok(());
    }
    Err(too_many_ops(inner, needed).await)
}

/// Measures the cluster's limit (known to be below `needed`) and builds the
/// error for a commit of `needed` operations.
async fn too_many_ops(inner: &Inner, needed: u64) -> Error {
    let (mut lo, mut hi) = (0u64, needed);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match accepts(inner, mid).await {
            Ok(true) => lo = mid,
            Ok(false) => hi = mid,
            Err(e) => return e,
        }
    }
    inner.txn_ops_ok.store(lo, Ordering::Relaxed);
    inner.txn_ops_limit.store(lo, Ordering::Relaxed);
    tracing::warn!(
        "the etcd cluster accepts at most {lo} operations per transaction; a commit \
         needed {needed}. Start every member with --max-txn-ops=2048 to allow Deno's \
         1000 mutations per commit"
    );
    limit_error(lo, needed)
}

fn limit_error(max: u64, needed: u64) -> Error {
    Error::LimitExceeded {
        limit: Limit::Mutations,
        max,
        actual: needed,
    }
}

/// Whether the cluster accepts a transaction of `n` operations: sends `n`
/// compares that never hold and no operation, which changes nothing.
async fn accepts(inner: &Inner, n: u64) -> Result<bool> {
    let marker = inner.keyspace.marker();
    let compares: Vec<Compare> = (0..n)
        .map(|_| Compare::version(marker, CompareOp::Less, 0))
        .collect();
    match inner.kv().txn(Txn::new().when(compares)).await {
        Ok(_) => Ok(true),
        Err(e) => match classify(&e) {
            Fault::TooManyOps => Ok(false),
            _ => Err(convert(e)),
        },
    }
}
