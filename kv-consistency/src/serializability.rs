//! Multi-key checks on versionstamps: replaying the committed writes in
//! versionstamp order must reproduce every read, every read must come from
//! one snapshot that respects real time, every passed check must have seen
//! the latest version, and the bank's balances must always add up.

use std::collections::HashMap;

use kv::Versionstamp;

use crate::history::{Effect, History, KeyId, OpKind, Operation, Outcome};
use crate::{Violation, ViolationKind};

/// One version of a key: the commit's versionstamp and what it did.
#[derive(Clone, Copy, Debug)]
struct Version {
    vs: Versionstamp,
    effect: Effect,
}

/// A snapshot bound: `Some(vs)`, or `None` for minus infinity.
type Lower = Option<Versionstamp>;

/// A half-open interval of snapshots `[lo, hi)`; `hi == None` is infinity.
#[derive(Clone, Copy, Debug)]
struct Span {
    lo: Lower,
    hi: Option<Versionstamp>,
}

impl Span {
    const ALL: Span = Span { lo: None, hi: None };

    fn contains(&self, s: Lower) -> bool {
        self.lo <= s && self.hi.is_none_or(|hi| s < Some(hi))
    }
}

fn violation(kind: ViolationKind, detail: String) -> Violation {
    Violation { kind, detail }
}

/// Runs every versionstamp check over `history`.
pub(crate) fn check(history: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let ops = &history.ops;

    // Known commits by versionstamp: unique per commit.
    let mut by_vs: HashMap<Versionstamp, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(vs) = op.committed()
            && let Some(other) = by_vs.insert(vs, i)
        {
            out.push(violation(
                ViolationKind::DuplicateVersionstamp,
                format!("commits {other} and {i} both got versionstamp {vs}"),
            ));
        }
    }

    // Real time: a commit that completed before another was invoked has the
    // smaller versionstamp.
    let mut by_ret: Vec<(u64, Versionstamp, usize)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| Some((op.ret?, op.committed()?, i)))
        .collect();
    by_ret.sort_unstable();
    let mut prefix_max: Vec<(Versionstamp, usize)> = Vec::with_capacity(by_ret.len());
    for &(_, vs, i) in &by_ret {
        let best = match prefix_max.last() {
            Some(&(m, j)) if m >= vs => (m, j),
            _ => (vs, i),
        };
        prefix_max.push(best);
    }
    // The greatest versionstamp among commits completed strictly before `t`.
    let completed_before = |t: u64| -> Option<(Versionstamp, usize)> {
        let n = by_ret.partition_point(|&(ret, _, _)| ret < t);
        n.checked_sub(1).map(|n| prefix_max[n])
    };
    let mut by_call: Vec<(u64, Versionstamp)> = ops
        .iter()
        .filter_map(|op| Some((op.call, op.committed()?)))
        .collect();
    by_call.sort_unstable();
    let mut suffix_min: Vec<Versionstamp> = vec![Versionstamp([0xff; 10]); by_call.len() + 1];
    for i in (0..by_call.len()).rev() {
        suffix_min[i] = suffix_min[i + 1].min(by_call[i].1);
    }
    // The smallest versionstamp among commits invoked strictly after `t`.
    let invoked_after = |t: u64| -> Option<Versionstamp> {
        let n = by_call.partition_point(|&(call, _)| call <= t);
        (n < by_call.len()).then(|| suffix_min[n])
    };
    for (i, op) in ops.iter().enumerate() {
        if let Some(vs) = op.committed()
            && let Some((before, j)) = completed_before(op.call)
            && before >= vs
        {
            out.push(violation(
                ViolationKind::NonMonotonicVersionstamp,
                format!(
                    "commit {i} got {vs}, not above {before} of commit {j}, which completed before it began"
                ),
            ));
        }
    }

    let Revealed {
        bound,
        taken,
        unexplained,
        ..
    } = bind_revealed(ops, &by_vs);
    for (vs, seen) in unexplained {
        out.push(violation(
            ViolationKind::UnknownVersionstamp,
            format!("reads returned versionstamp {vs} with {seen:?}, which no commit wrote"),
        ));
    }

    // Version chains per key; keys that an unrevealed unknown commit touched
    // are uncertain (it may have applied unseen).
    let mut chains: HashMap<KeyId, Vec<Version>> = HashMap::new();
    let mut uncertain: HashMap<KeyId, bool> = HashMap::new();
    let known = by_vs.iter().chain(bound.iter());
    for (&vs, &i) in known {
        if let OpKind::Commit { mutations, .. } = &ops[i].kind {
            for &(k, effect) in mutations {
                chains.entry(k).or_default().push(Version { vs, effect });
            }
        }
    }
    for chain in chains.values_mut() {
        chain.sort_unstable_by_key(|v| v.vs);
    }
    for (i, op) in ops.iter().enumerate() {
        if let OpKind::Commit {
            mutations,
            outcome: Outcome::Unknown,
            ..
        } = &op.kind
            && !taken[i]
        {
            for (k, _) in mutations {
                uncertain.insert(*k, true);
            }
        }
    }
    let is_uncertain = |k: KeyId| uncertain.get(&k).copied().unwrap_or(false);
    let empty: Vec<Version> = Vec::new();
    let chain_of = |k: KeyId| chains.get(&k).unwrap_or(&empty);

    // Every passed check saw the latest version before the commit.
    for (i, op) in ops.iter().enumerate() {
        let (Some(vs), OpKind::Commit { checks, .. }) = (op.committed(), &op.kind) else {
            continue;
        };
        for &(k, expected) in checks {
            if is_uncertain(k) {
                continue;
            }
            let chain = chain_of(k);
            let n = chain.partition_point(|v| v.vs < vs);
            let latest = n.checked_sub(1).map(|n| chain[n]);
            let holds = match (expected, latest) {
                (None, None) => true,
                (None, Some(v)) => v.effect == Effect::Delete,
                (Some(e), Some(v)) => e == v.vs,
                (Some(_), None) => false,
            };
            if !holds {
                out.push(violation(
                    ViolationKind::StaleCheck,
                    format!(
                        "commit {i} ({vs}) passed check({k}, {expected:?}) but the latest version before it was {:?}",
                        latest.map(|v| v.vs)
                    ),
                ));
            }
        }
    }

    // Every read comes from one snapshot, at or after every commit that
    // completed before it and before every commit invoked after it, and
    // returns exactly what replaying the chain up to that snapshot gives.
    for (i, op) in ops.iter().enumerate() {
        let OpKind::Read { keys, results, .. } = &op.kind else {
            continue;
        };
        let mut spans: Vec<Vec<Span>> = Vec::with_capacity(keys.len());
        for (&k, r) in keys.iter().zip(results) {
            match key_spans(
                k,
                r.map(|o| (o.versionstamp, o.value)),
                chain_of(k),
                is_uncertain(k),
            ) {
                Ok(s) => spans.push(s),
                Err(detail) => out.push(violation(
                    ViolationKind::WrongValue,
                    format!("read {i}: {detail}"),
                )),
            }
        }
        if spans.len() < keys.len() {
            continue;
        }
        // A read that may lag still comes from one snapshot, only not
        // necessarily a recent one.
        let strict = op.is_strict_read(history);
        let floor = completed_before(op.call)
            .map(|(vs, _)| vs)
            .filter(|_| strict);
        let ceiling = op.ret.and_then(invoked_after).filter(|_| strict);
        let window = Span {
            lo: floor,
            hi: ceiling,
        };
        let mut candidates: Vec<Lower> = vec![floor];
        candidates.extend(spans.iter().flatten().map(|s| s.lo));
        let consistent = candidates.into_iter().any(|s| {
            window.contains(s) && spans.iter().all(|key| key.iter().any(|sp| sp.contains(s)))
        });
        if !consistent {
            out.push(violation(
                ViolationKind::NoSnapshot,
                format!(
                    "read {i} of keys {keys:?} returned {:?}: no single snapshot in [{floor:?}, {ceiling:?}) gives that",
                    results.iter().map(|r| r.map(|o| (o.value, o.versionstamp))).collect::<Vec<_>>()
                ),
            ));
        }
    }

    // Bank: every complete snapshot of the accounts sums to the total.
    if !history.accounts.is_empty() {
        for (i, op) in ops.iter().enumerate() {
            if let Some(sum) = bank_sum(op, &history.accounts)
                && sum != history.bank_total
            {
                out.push(violation(
                    ViolationKind::BankInvariant,
                    format!(
                        "read {i} saw balances summing to {sum}, not {}",
                        history.bank_total
                    ),
                ));
            }
        }
    }
    out
}

/// Unknown-outcome commits that reads revealed.
pub(crate) struct Revealed {
    /// Each revealed versionstamp and the unknown commit bound to it.
    pub(crate) bound: HashMap<Versionstamp, usize>,
    /// Per operation: whether it is an unknown commit bound to a versionstamp.
    pub(crate) taken: Vec<bool>,
    /// Revealed versionstamps that more than one unknown commit could have
    /// made (sums match any value), with the keys seen at them: what was
    /// written is known, who wrote it is not.
    pub(crate) ambiguous: HashMap<Versionstamp, Vec<KeyId>>,
    /// Versionstamps reads returned that no commit explains, with the
    /// `(key, value)` pairs seen at them.
    pub(crate) unexplained: Vec<(Versionstamp, Vec<(KeyId, u64)>)>,
}

/// Binds every versionstamp that reads returned but no known commit got
/// (`by_vs`) to an unknown-outcome commit that wrote what was seen at it
/// and began before the first read that saw it ended: such a commit
/// applied, with that versionstamp.
pub(crate) fn bind_revealed(ops: &[Operation], by_vs: &HashMap<Versionstamp, usize>) -> Revealed {
    // Per foreign versionstamp: (key, value) pairs seen, earliest read end.
    let mut foreign: HashMap<Versionstamp, (Vec<(KeyId, u64)>, u64)> = HashMap::new();
    for op in ops {
        if let OpKind::Read { keys, results, .. } = &op.kind {
            for (k, r) in keys.iter().zip(results) {
                if let Some(o) = r
                    && !by_vs.contains_key(&o.versionstamp)
                {
                    let (seen, first_ret) = foreign
                        .entry(o.versionstamp)
                        .or_insert_with(|| (Vec::new(), u64::MAX));
                    if !seen.contains(&(*k, o.value)) {
                        seen.push((*k, o.value));
                    }
                    *first_ret = (*first_ret).min(op.ret_or_max());
                }
            }
        }
    }
    let mut foreign: Vec<_> = foreign.into_iter().collect();
    foreign.sort_unstable_by_key(|(vs, _)| *vs);
    let mut revealed = Revealed {
        bound: HashMap::new(),
        taken: vec![false; ops.len()],
        ambiguous: HashMap::new(),
        unexplained: Vec::new(),
    };
    for (vs, (seen, first_ret)) in foreign {
        let candidates: Vec<usize> = ops
            .iter()
            .enumerate()
            .filter(|(i, op)| {
                !revealed.taken[*i]
                    && op.call < first_ret
                    && matches!(&op.kind, OpKind::Commit { outcome: Outcome::Unknown, mutations, .. }
                    if seen.iter().all(|&(k, v)| mutations.iter().any(|&(m, e)| m == k && match e {
                        Effect::Set(x) => x == v,
                        Effect::Sum(_) => true,
                        Effect::Delete => false,
                    })))
            })
            .map(|(i, _)| i)
            .collect();
        match candidates.first() {
            Some(&i) => {
                if candidates.len() > 1 {
                    revealed
                        .ambiguous
                        .insert(vs, seen.iter().map(|&(k, _)| k).collect());
                }
                revealed.taken[i] = true;
                revealed.bound.insert(vs, i);
            }
            None => revealed.unexplained.push((vs, seen)),
        }
    }
    revealed
}

/// Who wrote each version: the known commits by versionstamp (committed,
/// or unknown and revealed by a read unambiguously), and the revealed
/// versions whose writer could be any of several unknown commits, with the
/// keys seen at them. (A duplicate versionstamp keeps the later commit;
/// [`check`] reports it.)
pub(crate) fn writers(
    ops: &[Operation],
) -> (
    HashMap<Versionstamp, usize>,
    HashMap<Versionstamp, Vec<KeyId>>,
) {
    let mut by_vs: HashMap<Versionstamp, usize> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| Some((op.committed()?, i)))
        .collect();
    let revealed = bind_revealed(ops, &by_vs);
    for (vs, i) in revealed.bound {
        if !revealed.ambiguous.contains_key(&vs) {
            by_vs.insert(vs, i);
        }
    }
    (by_vs, revealed.ambiguous)
}

/// The snapshots at which key `k` reads as `read` (`(versionstamp, value)`
/// or absent), or why no snapshot does.
fn key_spans(
    k: KeyId,
    read: Option<(Versionstamp, u64)>,
    chain: &[Version],
    uncertain: bool,
) -> Result<Vec<Span>, String> {
    let next = |n: usize| chain.get(n + 1).map(|v| v.vs);
    match read {
        Some((vs, value)) => {
            let Some(n) = chain.iter().position(|v| v.vs == vs) else {
                return Err(format!("key {k} at {vs}: no commit at {vs} wrote this key"));
            };
            let expected = match chain[n].effect {
                Effect::Set(v) => Some(Some(v)),
                Effect::Delete => Some(None),
                // A sum's result needs every earlier version known.
                Effect::Sum(_) if uncertain => None,
                Effect::Sum(_) => Some(replay(&chain[..=n])),
            };
            if let Some(expected) = expected
                && expected != Some(value)
            {
                return Err(format!(
                    "key {k} at {vs}: read {value}, but replaying the commits gives {expected:?}"
                ));
            }
            Ok(vec![Span {
                lo: Some(vs),
                hi: next(n),
            }])
        }
        None if uncertain => Ok(vec![Span::ALL]),
        None => {
            let mut spans = vec![Span {
                lo: None,
                hi: chain.first().map(|v| v.vs),
            }];
            for (n, v) in chain.iter().enumerate() {
                if v.effect == Effect::Delete {
                    spans.push(Span {
                        lo: Some(v.vs),
                        hi: next(n),
                    });
                }
            }
            Ok(spans)
        }
    }
}

fn replay(chain: &[Version]) -> Option<u64> {
    chain.iter().fold(None, |state, v| match v.effect {
        Effect::Set(x) => Some(x),
        Effect::Delete => None,
        Effect::Sum(d) => Some(state.unwrap_or(0).wrapping_add(d)),
    })
}

/// The sum of the balances a read of every account saw, when it saw them
/// all present.
fn bank_sum(op: &Operation, accounts: &[KeyId]) -> Option<u64> {
    let OpKind::Read { keys, results, .. } = &op.kind else {
        return None;
    };
    if keys.len() != accounts.len() || !accounts.iter().all(|a| keys.contains(a)) {
        return None;
    }
    results
        .iter()
        .try_fold(0u64, |sum, r| r.map(|o| sum.wrapping_add(o.value)))
}
