//! A wrapper that confines a backend to a namespace: every key is stored
//! under a fixed byte prefix, invisible to the wrapped user.

use async_trait::async_trait;
use futures::StreamExt;

use crate::backend::{
    AtomicWrite, Backend, CommitOutcome, Consistency, RawEntry, ReadRange, ReadSink, WatchStream,
    read_into,
};
use crate::{Result, ValueRef, Versionstamp};

/// A [`Backend`] that prepends `prefix` to every key it passes to `inner`
/// and strips it from every key it returns. Two `PrefixBackend`s whose
/// prefixes are not prefixes of each other never see each other's data,
/// including each other's system key space.
///
/// Versionstamps are shared with the wrapped backend.
#[derive(Debug, Clone)]
pub struct PrefixBackend<B> {
    inner: B,
    prefix: Vec<u8>,
}

impl<B: Backend> PrefixBackend<B> {
    /// Wraps `inner` under `prefix`.
    pub fn new(inner: B, prefix: impl Into<Vec<u8>>) -> Self {
        PrefixBackend {
            inner,
            prefix: prefix.into(),
        }
    }

    fn add(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + key.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(key);
        out
    }

    fn add_to_ranges(&self, ranges: Vec<ReadRange>) -> Vec<ReadRange> {
        ranges
            .into_iter()
            .map(|r| ReadRange {
                start: self.add(&r.start),
                end: self.add(&r.end),
                ..r
            })
            .collect()
    }

    fn strip(&self, mut entry: RawEntry) -> RawEntry {
        entry.key.drain(..self.prefix.len());
        entry
    }
}

/// Hands entries on to `inner` without the namespace's prefix.
struct StripPrefix {
    inner: Box<dyn ReadSink>,
    len: usize,
}

impl ReadSink for StripPrefix {
    fn begin_range(&mut self) {
        self.inner.begin_range();
    }

    fn entry(&mut self, key: &[u8], value: ValueRef<'_>, versionstamp: Versionstamp) {
        // Every key read lies in a range under the prefix.
        self.inner.entry(&key[self.len..], value, versionstamp);
    }

    fn clear(&mut self) {
        self.inner.clear();
    }

    fn wants_values(&self) -> bool {
        self.inner.wants_values()
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<B: Backend> Backend for PrefixBackend<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn snapshot_read(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
    ) -> Result<Vec<Vec<RawEntry>>> {
        let out = self
            .inner
            .snapshot_read(self.add_to_ranges(ranges), consistency)
            .await?;
        Ok(out
            .into_iter()
            .map(|r| r.into_iter().map(|e| self.strip(e)).collect())
            .collect())
    }

    async fn snapshot_read_into(
        &self,
        ranges: Vec<ReadRange>,
        consistency: Consistency,
        sink: Box<dyn ReadSink>,
    ) -> Result<Box<dyn ReadSink>> {
        let strip = StripPrefix {
            inner: sink,
            len: self.prefix.len(),
        };
        let ranges = self.add_to_ranges(ranges);
        Ok(read_into(&self.inner, ranges, consistency, strip)
            .await?
            .inner)
    }

    async fn atomic_write(&self, mut write: AtomicWrite) -> Result<CommitOutcome> {
        for c in &mut write.checks {
            c.key = self.add(&c.key);
        }
        for m in &mut write.mutations {
            m.key = self.add(&m.key);
        }
        for e in &mut write.enqueues {
            for k in &mut e.keys_if_undelivered {
                *k = self.add(k);
            }
        }
        self.inner.atomic_write(write).await
    }

    fn watch(&self, keys: Vec<Vec<u8>>) -> WatchStream {
        let keys = keys.iter().map(|k| self.add(k)).collect();
        let n = self.prefix.len();
        self.inner
            .watch(keys)
            .map(move |r| {
                r.map(|entries| {
                    entries
                        .into_iter()
                        .map(|e| {
                            e.map(|mut e| {
                                e.key.drain(..n);
                                e
                            })
                        })
                        .collect()
                })
            })
            .boxed()
    }

    async fn close(&self) {
        // The namespace does not own the wrapped backend.
    }
}
