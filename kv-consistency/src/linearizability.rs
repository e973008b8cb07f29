//! Per-key linearizability: the Wing–Gong search with memoisation of
//! (linearized set, state), as porcupine does it.
//!
//! Linearizability is local, so a history is linearizable only if each
//! key's projection is. Every key is a register over `Option<u64>` whose
//! operations are reads, sets, deletes, sums (a counter is a register that
//! only sums) and conditional writes. Commits with an unknown outcome return
//! at infinity and may apply or not, so the model is nondeterministic and
//! the search runs over *sets* of states (porcupine's power-set model).

use std::collections::{HashMap, HashSet};

use kv::Versionstamp;

use crate::history::{Effect, History, KeyId, OpKind, Outcome};

/// One operation projected on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyOp {
    /// A read that returned this value (`None`: absent).
    Read(Option<u64>),
    /// A write that applied (`known`) or may have (`!known`), guarded by
    /// `expect` (the value the checked versionstamp carried) when checked.
    Write {
        /// `Some(v)`: applies only when the state is `v`.
        expect: Option<Option<u64>>,
        /// What it does.
        effect: Effect,
        /// Whether it is known to have applied.
        known: bool,
    },
    /// A conditional write known to have failed its check.
    Failed(Option<u64>),
}

/// One projected operation with its interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyEvent {
    pub(crate) call: u64,
    /// `u64::MAX` for an unknown outcome.
    pub(crate) ret: u64,
    pub(crate) op: KeyOp,
}

/// The result of searching one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search budget ran out (never seen on workload histories).
    Inconclusive,
}

type States = Vec<Option<u64>>;

fn apply(state: Option<u64>, effect: Effect) -> Option<u64> {
    match effect {
        Effect::Set(v) => Some(v),
        Effect::Delete => None,
        Effect::Sum(d) => Some(state.unwrap_or(0).wrapping_add(d)),
    }
}

/// The states after `op` from any of `states`; empty when `op` is
/// impossible from all of them.
fn step(states: &States, op: KeyOp) -> States {
    let mut out: States = Vec::with_capacity(states.len() * 2);
    for &s in states {
        match op {
            KeyOp::Read(v) => {
                if s == v {
                    out.push(s);
                }
            }
            KeyOp::Failed(e) => {
                if s != e {
                    out.push(s);
                }
            }
            KeyOp::Write {
                expect,
                effect,
                known,
            } => {
                let holds = expect.is_none_or(|e| e == s);
                if holds {
                    out.push(apply(s, effect));
                }
                if !known {
                    out.push(s);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

const NIL: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    /// For a call, its return node.
    matched: usize,
    prev: usize,
    next: usize,
}

/// Searches for a linearization of one key's operations from the absent
/// state, spending at most `budget` steps.
pub(crate) fn check_key(ops: &[KeyEvent], budget: u64) -> Verdict {
    // Events sorted by time; at equal times calls come first, so ops that
    // touch are concurrent (the lenient reading).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        events.push((op.ret.max(op.call), true, i));
    }
    events.sort_unstable();
    // Node 0 is the head.
    let mut nodes = vec![Node {
        op: NIL,
        is_call: false,
        matched: NIL,
        prev: NIL,
        next: NIL,
    }];
    let mut call_node = vec![NIL; ops.len()];
    for (idx, &(_, is_ret, op)) in events.iter().enumerate() {
        let id = idx + 1;
        nodes.push(Node {
            op,
            is_call: !is_ret,
            matched: NIL,
            prev: id - 1,
            next: if idx + 1 < events.len() { id + 1 } else { NIL },
        });
        if is_ret {
            let c = call_node[op];
            nodes[c].matched = id;
        } else {
            call_node[op] = id;
        }
    }
    nodes[0].next = if events.is_empty() { NIL } else { 1 };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, States)> = HashSet::new();
    let mut stack: Vec<(usize, States)> = Vec::new();
    let mut state: States = vec![None];
    let mut entry = nodes[0].next;
    let mut steps = 0u64;

    while nodes[0].next != NIL {
        steps += 1;
        if steps > budget {
            return Verdict::Inconclusive;
        }
        let node = nodes[entry];
        if node.is_call {
            let next_state = step(&state, ops[node.op].op);
            let mut advanced = false;
            if !next_state.is_empty() {
                linearized[node.op / 64] |= 1 << (node.op % 64);
                if cache.insert((linearized.clone(), next_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    lift(&mut nodes, entry);
                    entry = nodes[0].next;
                    advanced = true;
                } else {
                    linearized[node.op / 64] &= !(1 << (node.op % 64));
                }
            }
            if !advanced {
                entry = node.next;
            }
        } else {
            // A return whose call is not linearized yet: backtrack.
            let Some((call, previous)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            state = previous;
            let op = nodes[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut nodes, call);
            entry = nodes[call].next;
        }
    }
    Verdict::Linearizable
}

fn lift(nodes: &mut [Node], call: usize) {
    for n in [call, nodes[call].matched] {
        let Node { prev, next, .. } = nodes[n];
        nodes[prev].next = next;
        if next != NIL {
            nodes[next].prev = prev;
        }
    }
}

fn unlift(nodes: &mut [Node], call: usize) {
    for n in [nodes[call].matched, call] {
        let Node { prev, next, .. } = nodes[n];
        nodes[prev].next = n;
        if next != NIL {
            nodes[next].prev = n;
        }
    }
}

/// Projects a history on each key (eventual reads that may lag are left
/// out). Checks of commits become the value the
/// checked versionstamp carried (from reads and known sets); a failed check
/// is kept only for single-key commits on keys whose set values are unique,
/// where "the versionstamp differed" implies "the value differed".
pub(crate) fn partition(history: &History) -> HashMap<KeyId, Vec<KeyEvent>> {
    let mut value_of: HashMap<(KeyId, Versionstamp), u64> = HashMap::new();
    let mut set_values: HashMap<KeyId, Vec<u64>> = HashMap::new();
    let mut summed: HashSet<KeyId> = HashSet::new();
    for op in &history.ops {
        match &op.kind {
            OpKind::Read { keys, results, .. } => {
                for (k, r) in keys.iter().zip(results) {
                    if let Some(o) = r {
                        value_of.insert((*k, o.versionstamp), o.value);
                    }
                }
            }
            OpKind::Commit {
                mutations, outcome, ..
            } => {
                for &(k, effect) in mutations {
                    match effect {
                        Effect::Set(v) => {
                            set_values.entry(k).or_default().push(v);
                            if let Outcome::Committed(vs) = outcome {
                                value_of.insert((k, *vs), v);
                            }
                        }
                        Effect::Sum(_) => {
                            summed.insert(k);
                        }
                        Effect::Delete => {}
                    }
                }
            }
        }
    }
    let unique = |k: KeyId| {
        if summed.contains(&k) {
            return false;
        }
        let Some(values) = set_values.get(&k) else {
            return true;
        };
        let mut sorted = values.clone();
        sorted.sort_unstable();
        sorted.windows(2).all(|w| w[0] != w[1])
    };
    let expect_of = |k: KeyId, checks: &[(KeyId, Option<Versionstamp>)]| -> Option<Option<u64>> {
        let (_, vs) = checks.iter().find(|(c, _)| *c == k)?;
        match vs {
            None => Some(None),
            Some(vs) => value_of.get(&(k, *vs)).map(|v| Some(*v)),
        }
    };

    let mut out: HashMap<KeyId, Vec<KeyEvent>> = HashMap::new();
    for op in &history.ops {
        let (call, ret) = (op.call, op.ret_or_max());
        match &op.kind {
            // Reads that may lag have no place in a linearization.
            OpKind::Read { .. } if !op.is_strict_read(history) => {}
            OpKind::Read { keys, results, .. } => {
                for (k, r) in keys.iter().zip(results) {
                    out.entry(*k).or_default().push(KeyEvent {
                        call,
                        ret,
                        op: KeyOp::Read(r.map(|o| o.value)),
                    });
                }
            }
            OpKind::Commit {
                checks,
                mutations,
                outcome,
            } => match outcome {
                Outcome::Committed(_) | Outcome::Unknown => {
                    for &(k, effect) in mutations {
                        out.entry(k).or_default().push(KeyEvent {
                            call,
                            ret,
                            op: KeyOp::Write {
                                expect: expect_of(k, checks),
                                effect,
                                known: matches!(outcome, Outcome::Committed(_)),
                            },
                        });
                    }
                }
                Outcome::CheckFailed => {
                    if let [(k, _)] = checks.as_slice()
                        && mutations.iter().all(|(m, _)| m == k)
                        && unique(*k)
                        && let Some(e) = expect_of(*k, checks)
                    {
                        out.entry(*k).or_default().push(KeyEvent {
                            call,
                            ret,
                            op: KeyOp::Failed(e),
                        });
                    }
                }
            },
        }
    }
    out
}
