//! An in-memory backend for tests, examples and `memory:` URLs.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;

use crate::backend::apply::{Applied, apply, versionstamped_key};
use crate::backend::watch::{WatchHub, watch_stream};
use crate::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, MutationKind, RawEntry, ReadRange,
    StorageWrite, WatchStream,
};
use crate::clock::{Clock, SystemClock};
use crate::{Error, KvValue, Result, Versionstamp};

#[derive(Clone, Debug)]
struct Stored {
    value: KvValue,
    versionstamp: Versionstamp,
    expire_at_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    map: BTreeMap<Vec<u8>, Stored>,
    expiries: BTreeSet<(u64, Vec<u8>)>,
    counter: u64,
    closed: bool,
    /// A thread is sweeping expired keys (it ends when none is left).
    sweeping: bool,
}

impl State {
    fn live(&self, key: &[u8], now: u64) -> Option<&Stored> {
        self.map
            .get(key)
            .filter(|s| s.expire_at_ms.is_none_or(|e| e > now))
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.map.remove(key).and_then(|old| old.expire_at_ms) {
            self.expiries.remove(&(e, key.to_vec()));
        }
    }

    fn insert(&mut self, key: Vec<u8>, stored: Stored) {
        self.remove(&key);
        if let Some(e) = stored.expire_at_ms {
            self.expiries.insert((e, key.clone()));
        }
        self.map.insert(key, stored);
    }

    /// Deletes the keys that have expired by `now` and returns them.
    fn sweep(&mut self, now: u64) -> Vec<Vec<u8>> {
        let mut swept = Vec::new();
        while let Some((e, _)) = self.expiries.first() {
            if *e > now {
                break;
            }
            let Some((_, key)) = self.expiries.pop_first() else {
                break;
            };
            self.map.remove(&key);
            swept.push(key);
        }
        swept
    }
}

/// How often the expiry sweeper of a [`MemoryBackend`] looks at a manual
/// clock, and its shortest sleep.
const SWEEP_POLL: Duration = Duration::from_millis(10);

/// The expiry sweeper's longest sleep on the system clock.
const SWEEP_WAIT: Duration = Duration::from_secs(1);

/// A [`Backend`] that keeps everything in memory. It has the same semantics
/// as the durable backends (it is the model they are compared with), but
/// nothing survives the process.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    state: Arc<Mutex<State>>,
    hub: WatchHub,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty database on the system clock.
    pub fn new() -> Self {
        MemoryBackend {
            state: Arc::default(),
            hub: WatchHub::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for expiry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts the thread that deletes keys as they expire and wakes their
    /// watchers, as the file backends' sweepers do, while any key will
    /// expire; it ends when none will, or when the database is closed or
    /// dropped. It sleeps until the next expiry, at most [`SWEEP_WAIT`], so
    /// a key given an earlier expiry meanwhile is seen within that; on a
    /// manual clock (tests move it at will, and this thread has no executor
    /// to await its sleeps) it looks every [`SWEEP_POLL`]. `false` if no
    /// thread could be started: commits still sweep.
    fn start_sweeper(&self) -> bool {
        let state = Arc::downgrade(&self.state);
        let hub = self.hub.clone();
        let clock = self.clock.clone();
        let mut wait = SWEEP_POLL;
        let sweeper = move || {
            loop {
                std::thread::sleep(wait);
                let Some(state) = state.upgrade() else { return };
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                let now = clock.now_ms();
                let swept = if s.closed { Vec::new() } else { s.sweep(now) };
                let done = s.closed || s.expiries.is_empty();
                if done {
                    s.sweeping = false;
                }
                let next = s.expiries.first().map(|(at, _)| *at);
                wait = match (clock.as_manual(), next) {
                    (None, Some(at)) => {
                        Duration::from_millis(at.saturating_sub(now)).clamp(SWEEP_POLL, SWEEP_WAIT)
                    }
                    _ => SWEEP_POLL,
                };
                drop(s);
                if !swept.is_empty() {
                    hub.notify(swept.iter().map(Vec::as_slice));
                }
                if done {
                    return;
                }
            }
        };
        std::thread::Builder::new()
            .name("kv-memory-expiry".into())
            .spawn(sweeper)
            .is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_now(&self, ranges: &[ReadRange]) -> Result<Vec<Vec<RawEntry>>> {
        let state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        let now = self.clock.now_ms();
        Ok(ranges.iter().map(|r| read_range(&state, r, now)).collect())
    }
}

fn read_range(state: &State, r: &ReadRange, now: u64) -> Vec<RawEntry> {
    if r.start >= r.end {
        return Vec::new();
    }
    let range = state.map.range::<[u8], _>((
        Bound::Included(r.start.as_slice()),
        Bound::Excluded(r.end.as_slice()),
    ));
    let live = |(k, s): (&Vec<u8>, &Stored)| {
        s.expire_at_ms.is_none_or(|e| e > now).then(|| RawEntry {
            key: k.clone(),
            value: s.value.clone(),
            versionstamp: s.versionstamp,
        })
    };
    let limit = r.limit as usize;
    if r.reverse {
        range.rev().filter_map(live).take(limit).collect()
    } else {
        range.filter_map(live).take(limit).collect()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        "memory"
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        _consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        self.read_now(&ranges)
    }

    async fn atomic_write(&self, write: AtomicWrite) -> Result<CommitOutcome> {
        let write = StorageWrite::new(write, "memory")?;
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        let now = self.clock.now_ms();
        for check in &write.checks {
            let current = state.live(&check.key, now).map(|s| s.versionstamp);
            if current != check.versionstamp {
                return Ok(CommitOutcome::CheckFailed);
            }
        }
        let versionstamp = Versionstamp::from_counter(state.counter + 1);
        // Mutations see each other's effects; collect them in an overlay so a
        // failing mutation leaves the state untouched.
        let mut overlay: BTreeMap<Vec<u8>, Option<Stored>> = BTreeMap::new();
        for m in &write.mutations {
            let key = match &m.kind {
                MutationKind::SetSuffixVersionstampedKey { .. } => {
                    versionstamped_key(&m.key, versionstamp)
                }
                _ => m.key.clone(),
            };
            let current = match overlay.get(&key) {
                Some(v) => v.as_ref().map(|s| s.value.clone()),
                None => state.live(&key, now).map(|s| s.value.clone()),
            };
            let next = match apply(&m.kind, current.as_ref())? {
                Applied::Put {
                    value,
                    expire_at_ms,
                } => Some(Stored {
                    value,
                    versionstamp,
                    expire_at_ms,
                }),
                Applied::Deleted => None,
            };
            overlay.insert(key, next);
        }
        state.counter += 1;
        let swept = state.sweep(now);
        for (key, stored) in overlay {
            match stored {
                Some(s) => state.insert(key, s),
                None => state.remove(&key),
            }
        }
        let start_sweeper = !state.sweeping && !state.expiries.is_empty();
        state.sweeping |= start_sweeper;
        drop(state);
        if start_sweeper && !self.start_sweeper() {
            self.lock().sweeping = false;
        }
        let written = write.mutations.iter().map(|m| m.key.as_slice());
        self.hub
            .notify(written.chain(swept.iter().map(Vec::as_slice)));
        Ok(CommitOutcome::Committed { versionstamp })
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        let sub = self.hub.subscribe(Some(keys.clone()));
        let this = self.clone();
        let read = Arc::new(move || {
            let ranges: Vec<ReadRange> = keys
                .iter()
                .map(|k| crate::backend::point_range(k))
                .collect();
            let result = this
                .read_now(&ranges)
                .map(|rs| rs.into_iter().map(|mut r| r.pop()).collect());
            futures::future::ready(result).boxed()
        });
        watch_stream(sub, read)
    }

    async fn close(&self) {
        self.lock().closed = true;
        self.hub.close();
    }
}
