//! How stale reads are: a read is stale on a key when a newer version of
//! that key had been acknowledged to some client before the read began.
//! Strong reads must never be; eventual reads may be where the backend
//! serves them from a replica (etcd), and this measures by how much.

use std::collections::HashMap;
use std::time::Duration;

use kv::Versionstamp;

use crate::history::{Effect, History, KeyId, OpKind};
use crate::{Violation, ViolationKind};

/// Staleness of one kind of read, gathered over one or more histories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Samples {
    /// Reads measured.
    pub reads: usize,
    /// Per stale read: the newer versions acknowledged before it began (on
    /// its worst key).
    pub behind: Vec<u64>,
    /// Per stale read: how long before it began the first newer version
    /// was acknowledged (on its worst key).
    pub age: Vec<Duration>,
}

impl Samples {
    /// Reads that were stale.
    pub fn stale(&self) -> usize {
        self.behind.len()
    }

    /// Adds `other`'s reads to these.
    pub fn merge(&mut self, other: Samples) {
        self.reads += other.reads;
        self.behind.extend(other.behind);
        self.age.extend(other.age);
    }

    /// The largest versions-behind, and its 99th percentile over all reads
    /// (fresh reads count as 0).
    pub fn behind_max_p99(&self) -> (u64, u64) {
        let mut v = self.behind.clone();
        (
            v.iter().copied().max().unwrap_or(0),
            percentile(&mut v, self.reads, 0),
        )
    }

    /// The largest age, and its 99th percentile over all reads.
    pub fn age_max_p99(&self) -> (Duration, Duration) {
        let mut v = self.age.clone();
        (
            v.iter().copied().max().unwrap_or_default(),
            percentile(&mut v, self.reads, Duration::ZERO),
        )
    }
}

/// The 99th percentile of `stale` padded with `fresh` up to `reads` values.
fn percentile<T: Ord + Copy>(stale: &mut [T], reads: usize, fresh: T) -> T {
    if reads == 0 {
        return fresh;
    }
    stale.sort_unstable();
    // Rank of the p99 value among all reads, fresh ones first.
    let rank = (reads * 99).div_ceil(100).max(1);
    let fresh_count = reads.saturating_sub(stale.len());
    if rank <= fresh_count {
        fresh
    } else {
        stale[(rank - fresh_count - 1).min(stale.len() - 1)]
    }
}

/// Strong and eventual reads of a history, measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Staleness {
    /// Strong reads (never stale on a correct backend).
    pub strong: Samples,
    /// Eventual reads.
    pub eventual: Samples,
}

impl Staleness {
    /// Adds `other`'s reads to these.
    pub fn merge(&mut self, other: Staleness) {
        self.strong.merge(other.strong);
        self.eventual.merge(other.eventual);
    }
}

/// Measures every read of `history`, and reports each strict read (see
/// [`crate::Operation::is_strict_read`]) that was stale.
pub fn measure(history: &History) -> (Staleness, Vec<Violation>) {
    let ops = &history.ops;
    // Acknowledged versions per key: (versionstamp, acknowledged at).
    let mut acked: HashMap<KeyId, Vec<(Versionstamp, u64)>> = HashMap::new();
    let mut deleted: HashMap<KeyId, bool> = HashMap::new();
    for op in ops {
        if let OpKind::Commit { mutations, .. } = &op.kind {
            for &(k, e) in mutations {
                if e == Effect::Delete {
                    deleted.insert(k, true);
                }
            }
        }
        if let (Some(vs), Some(ret), OpKind::Commit { mutations, .. }) =
            (op.committed(), op.ret, &op.kind)
        {
            for &(k, _) in mutations {
                acked.entry(k).or_default().push((vs, ret));
            }
        }
    }
    for versions in acked.values_mut() {
        versions.sort_unstable();
    }

    let mut out = Staleness::default();
    let mut violations = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let OpKind::Read {
            keys,
            results,
            eventual,
        } = &op.kind
        else {
            continue;
        };
        let mut worst: Option<(u64, u64)> = None;
        for (k, r) in keys.iter().zip(results) {
            let Some(versions) = acked.get(k) else {
                continue;
            };
            // "Absent" names a version only on keys nothing deletes.
            let seen = match r {
                Some(o) => Some(o.versionstamp),
                None if deleted.get(k).copied().unwrap_or(false) => continue,
                None => None,
            };
            let newer = versions
                .iter()
                .filter(|(vs, ret)| Some(*vs) > seen && *ret < op.call);
            let (count, first_ack) = newer.fold((0u64, u64::MAX), |(n, first), (_, ret)| {
                (n + 1, first.min(*ret))
            });
            if count > 0 {
                let age = op.call - first_ack;
                worst = Some(worst.map_or((count, age), |(c, a)| (c.max(count), a.max(age))));
            }
        }
        let samples = if *eventual {
            &mut out.eventual
        } else {
            &mut out.strong
        };
        samples.reads += 1;
        if let Some((behind, age)) = worst {
            samples.behind.push(behind);
            samples.age.push(Duration::from_nanos(age));
            if op.is_strict_read(history) {
                violations.push(Violation {
                    kind: ViolationKind::StaleRead,
                    detail: format!(
                        "read {i} of keys {keys:?} is {behind} versions behind what was acknowledged {:?} before it began",
                        Duration::from_nanos(age)
                    ),
                });
            }
        }
    }
    (out, violations)
}
