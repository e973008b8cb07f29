//! The dependency-graph check (Adya's direct serialization graph, as Elle
//! builds it): a history is serializable only if the graph of its
//! transactions has no cycle.
//!
//! Nodes are the commits known to have applied (acknowledged, or revealed
//! by a read) and the reads held to real time. A commit's reads are its
//! checks: a passed `check(k, vs)` means it saw version `vs` of `k`. Each
//! key's versions are ordered by versionstamp, which is the order Deno KV
//! promises, and the edges follow from that order:
//!
//! - `ww`: the writer of a version precedes the writer of the next version;
//! - `wr`: the writer of a version precedes every transaction that read it;
//! - `rw`: a transaction that read a version precedes the writer of the next
//!   version (an anti-dependency);
//! - `po`: a client's completed operation precedes its next one.
//!
//! Commits whose outcome stayed unknown and that no read revealed are left
//! out. That is sound: had one applied between two known versions, the
//! edges drawn to the later known version still hold, by transitivity
//! through it. A read of an absent key is placed at the initial version
//! only on keys no commit ever deletes (elsewhere "absent" names no single
//! version).
//!
//! Cycles are found with Tarjan's strongly connected components; each
//! component with more than one node is reported with one shortest cycle
//! through it, classified as Elle does: `G0` (write cycle, only `ww`),
//! `G1c` (`ww` and `wr`), `G-single` (exactly one `rw`), `G2` (more).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use kv::Versionstamp;

use crate::history::{Effect, History, KeyId, OpKind};
use crate::serializability::writers;
use crate::{Violation, ViolationKind};

/// Why one transaction must precede another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Edge {
    Ww,
    Wr,
    Rw,
    Po,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Edge::Ww => "ww",
            Edge::Wr => "wr",
            Edge::Rw => "rw",
            Edge::Po => "po",
        })
    }
}

/// The graph over operation indices; `adj[n]` are `(to, why)`.
struct Graph {
    /// Node number → operation index.
    ops: Vec<usize>,
    adj: Vec<Vec<(usize, Edge)>>,
}

/// Checks that the dependency graph of `history` is acyclic.
pub(crate) fn check(history: &History) -> Vec<Violation> {
    let graph = build(history);
    let mut out = Vec::new();
    for component in strongly_connected(&graph.adj) {
        if component.len() < 2 {
            continue;
        }
        let cycle = shortest_cycle(&graph.adj, &component);
        let rw = cycle.iter().filter(|(_, e)| *e == Edge::Rw).count();
        let kind = match rw {
            0 if cycle.iter().all(|(_, e)| matches!(e, Edge::Ww | Edge::Po)) => {
                ViolationKind::CycleG0
            }
            0 => ViolationKind::CycleG1c,
            1 => ViolationKind::CycleGSingle,
            _ => ViolationKind::CycleG2,
        };
        let path: Vec<String> = cycle
            .iter()
            .map(|(n, e)| format!("op {} -{e}->", graph.ops[*n]))
            .collect();
        let first = cycle.first().map_or(0, |(n, _)| graph.ops[*n]);
        out.push(Violation {
            kind,
            detail: format!(
                "{} operations in a dependency cycle: {} op {first}",
                component.len(),
                path.join(" ")
            ),
        });
    }
    out
}

fn build(history: &History) -> Graph {
    let ops = &history.ops;
    let (by_vs, anonymous) = writers(ops);

    // Nodes: applied commits and strict reads, in operation order.
    let mut node_of: HashMap<usize, usize> = HashMap::new();
    let mut graph = Graph {
        ops: Vec::new(),
        adj: Vec::new(),
    };
    let applied: HashSet<usize> = by_vs.values().copied().collect();
    for (i, op) in ops.iter().enumerate() {
        if applied.contains(&i) || op.is_strict_read(history) {
            node_of.insert(i, graph.ops.len());
            graph.ops.push(i);
            graph.adj.push(Vec::new());
        }
    }

    // Version chains: per key, (versionstamp, writer node) by versionstamp;
    // a version one of several unknown commits wrote has no writer node.
    let mut chains: HashMap<KeyId, Vec<(Versionstamp, Option<usize>)>> = HashMap::new();
    for (&vs, &i) in &by_vs {
        if let OpKind::Commit { mutations, .. } = &ops[i].kind {
            for &(k, _) in mutations {
                chains.entry(k).or_default().push((vs, Some(node_of[&i])));
            }
        }
    }
    for (&vs, keys) in &anonymous {
        for &k in keys {
            chains.entry(k).or_default().push((vs, None));
        }
    }
    for chain in chains.values_mut() {
        chain.sort_unstable();
    }
    // Keys some commit (of any outcome) deletes: "absent" is ambiguous there.
    let deleted: HashSet<KeyId> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Commit { mutations, .. } => Some(mutations),
            OpKind::Read { .. } => None,
        })
        .flatten()
        .filter(|(_, e)| *e == Effect::Delete)
        .map(|(k, _)| *k)
        .collect();

    let mut edges: HashSet<(usize, usize, Edge)> = HashSet::new();
    // Versions without a writer node are skipped: the edges through them
    // hold transitively between their known neighbours.
    for chain in chains.values() {
        let named: Vec<usize> = chain.iter().filter_map(|(_, w)| *w).collect();
        for w in named.windows(2) {
            edges.insert((w[0], w[1], Edge::Ww));
        }
    }
    for (&i, &node) in &node_of {
        let reads: Vec<(KeyId, Option<Versionstamp>)> = match &ops[i].kind {
            OpKind::Read { keys, results, .. } => keys
                .iter()
                .zip(results)
                .map(|(&k, r)| (k, r.map(|o| o.versionstamp)))
                .collect(),
            OpKind::Commit { checks, .. } => checks.clone(),
        };
        for (k, seen) in reads {
            let Some(chain) = chains.get(&k) else {
                continue;
            };
            let later = match seen {
                Some(vs) => {
                    // A version no commit explains is reported by the
                    // versionstamp checks; it adds no edge here.
                    let Ok(p) = chain.binary_search_by_key(&vs, |(v, _)| *v) else {
                        continue;
                    };
                    if let Some(writer) = chain[p].1 {
                        edges.insert((writer, node, Edge::Wr));
                    }
                    &chain[p + 1..]
                }
                None if deleted.contains(&k) => continue,
                None => &chain[..],
            };
            // The next version's writer, or, when it has no node, the next
            // named one (it follows that writer by `ww`).
            if let Some(writer) = later.iter().find_map(|(_, w)| *w) {
                edges.insert((node, writer, Edge::Rw));
            }
        }
    }
    // A client runs one operation at a time: what it completed precedes
    // what it began afterwards (an unknown outcome never completed).
    let mut by_client: HashMap<u32, Vec<usize>> = HashMap::new();
    for &i in &graph.ops {
        by_client.entry(ops[i].client).or_default().push(i);
    }
    for list in by_client.values_mut() {
        list.sort_unstable_by_key(|&i| ops[i].call);
        for w in list.windows(2) {
            if ops[w[0]].ret.is_some_and(|ret| ret <= ops[w[1]].call) {
                edges.insert((node_of[&w[0]], node_of[&w[1]], Edge::Po));
            }
        }
    }
    for (from, to, why) in edges {
        if from != to {
            graph.adj[from].push((to, why));
        }
    }
    for list in &mut graph.adj {
        list.sort_unstable_by_key(|&(to, why)| (to, why as u8));
    }
    graph
}

/// Tarjan's strongly connected components, iterative (histories have tens
/// of thousands of nodes, too deep for recursion).
fn strongly_connected(adj: &[Vec<(usize, Edge)>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = adj.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    // (node, position in its adjacency list)
    let mut work: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        work.push((root, 0));
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if *pos == 0 && index[v] == UNSEEN {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&(w, _)) = adj[v].get(*pos) {
                *pos += 1;
                if index[w] == UNSEEN {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

/// A shortest cycle through the component's smallest node, as `(node, edge
/// to the next node)` steps (breadth-first search inside the component).
fn shortest_cycle(adj: &[Vec<(usize, Edge)>], component: &[usize]) -> Vec<(usize, Edge)> {
    let inside: HashSet<usize> = component.iter().copied().collect();
    let start = component
        .iter()
        .copied()
        .min()
        .expect("components are not empty");
    let mut parent: HashMap<usize, (usize, Edge)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut closing = None;
    'search: while let Some(v) = queue.pop_front() {
        for &(w, why) in &adj[v] {
            if !inside.contains(&w) {
                continue;
            }
            if w == start {
                closing = Some((v, why));
                break 'search;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(w) {
                e.insert((v, why));
                queue.push_back(w);
            }
        }
    }
    let Some((mut v, why)) = closing else {
        return Vec::new();
    };
    let mut cycle = vec![(v, why)];
    while v != start {
        let (p, e) = parent[&v];
        cycle.push((p, e));
        v = p;
    }
    cycle.reverse();
    cycle
}
