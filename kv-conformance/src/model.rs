//! Model-based testing: random operation sequences give the same results on
//! the target as on [`MemoryBackend`], the reference model.

use std::collections::HashMap;

use anyhow::{Context, ensure};
use kv_core::{
    CommitOutcome, Key, Kv, KvEntry, KvValue, ListOptions, MemoryBackend, Selector, Versionstamp,
    key,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Cx;

declare_cases!("model":
    random_operations_match_memory_backend,
);

#[derive(Debug, Clone)]
enum Op {
    Set(u8, KvValue),
    Delete(u8),
    Sum(u8, u64),
    Min(u8, u64),
    Max(u8, u64),
    CheckAndSet {
        key: u8,
        current: bool,
        value: KvValue,
    },
    Multi(Vec<(u8, Option<KvValue>)>),
    Get(u8),
    GetMany(Vec<u8>),
    List {
        reverse: bool,
        limit: Option<usize>,
        batch: usize,
        start: Option<u8>,
    },
}

fn random_value(rng: &mut StdRng) -> KvValue {
    match rng.gen_range(0..3) {
        0 => KvValue::U64(rng.gen_range(0..5) * (u64::MAX / 4)),
        1 => KvValue::Bytes(vec![rng.r#gen(); rng.gen_range(0..4)]),
        _ => KvValue::V8(vec![0xff, 0x0f, 0x49, rng.gen_range(0..100)]),
    }
}

fn random_op(rng: &mut StdRng) -> Op {
    let k = |rng: &mut StdRng| rng.gen_range(0..8u8);
    match rng.gen_range(0..11) {
        0 | 1 => Op::Set(k(rng), random_value(rng)),
        2 => Op::Delete(k(rng)),
        3 => Op::Sum(k(rng), rng.gen_range(0..3) * (u64::MAX / 2)),
        4 => Op::Min(k(rng), rng.gen_range(0..100)),
        5 => Op::Max(k(rng), rng.gen_range(0..100)),
        6 => Op::CheckAndSet {
            key: k(rng),
            current: rng.gen_bool(0.7),
            value: random_value(rng),
        },
        7 => Op::Multi(
            (0..rng.gen_range(1..4))
                .map(|_| (k(rng), rng.gen_bool(0.7).then(|| random_value(rng))))
                .collect(),
        ),
        8 => Op::Get(k(rng)),
        9 => Op::GetMany((0..rng.gen_range(1..5)).map(|_| k(rng)).collect()),
        _ => Op::List {
            reverse: rng.gen_bool(0.5),
            limit: rng.gen_bool(0.5).then(|| rng.gen_range(1..10)),
            batch: rng.gen_range(1..5),
            start: rng.gen_bool(0.3).then(|| k(rng)),
        },
    }
}

fn mk(k: u8) -> Key {
    key!["m", k]
}

/// The observable result of an operation, with versionstamps replaced by the
/// index of the commit that produced them (stamps differ between backends).
#[derive(Debug, PartialEq)]
enum Observed {
    Commit(Result<Option<usize>, String>),
    Entries(Vec<Option<(Key, KvValue, usize)>>),
}

struct Runner {
    kv: Kv,
    stamps: HashMap<Versionstamp, usize>,
    commits: usize,
}

impl Runner {
    fn commit_result(&mut self, r: kv_core::Result<CommitOutcome>) -> Observed {
        Observed::Commit(match r {
            Ok(CommitOutcome::Committed { versionstamp }) => {
                self.commits += 1;
                self.stamps.insert(versionstamp, self.commits);
                Ok(Some(self.commits))
            }
            Ok(CommitOutcome::CheckFailed) => Ok(None),
            Err(e) => Err(e.to_string()),
        })
    }

    fn entries(&self, es: Vec<Option<KvEntry>>) -> anyhow::Result<Observed> {
        let mut out = Vec::new();
        for e in es {
            out.push(match e {
                None => None,
                Some(e) => {
                    let idx = *self
                        .stamps
                        .get(&e.versionstamp)
                        .context("unknown versionstamp")?;
                    Some((e.key, e.value, idx))
                }
            });
        }
        Ok(Observed::Entries(out))
    }

    async fn run(&mut self, op: &Op) -> anyhow::Result<Observed> {
        Ok(match op {
            Op::Set(k, v) => {
                let r = self.kv.atomic().set(mk(*k), v.clone()).commit().await;
                self.commit_result(r)
            }
            Op::Delete(k) => {
                let r = self.kv.atomic().delete(mk(*k)).commit().await;
                self.commit_result(r)
            }
            Op::Sum(k, n) => {
                let r = self.kv.atomic().sum(mk(*k), *n).commit().await;
                self.commit_result(r)
            }
            Op::Min(k, n) => {
                let r = self.kv.atomic().min(mk(*k), *n).commit().await;
                self.commit_result(r)
            }
            Op::Max(k, n) => {
                let r = self.kv.atomic().max(mk(*k), *n).commit().await;
                self.commit_result(r)
            }
            Op::CheckAndSet {
                key,
                current,
                value,
            } => {
                let now = self.kv.get(mk(*key)).await?.map(|e| e.versionstamp);
                let expected = if *current {
                    now
                } else {
                    Some(now.map_or(Versionstamp::from_counter(1), |_| Versionstamp::ZERO))
                };
                let r = self
                    .kv
                    .atomic()
                    .check(mk(*key), expected)
                    .set(mk(*key), value.clone())
                    .commit()
                    .await;
                self.commit_result(r)
            }
            Op::Multi(ms) => {
                let mut a = self.kv.atomic();
                for (k, v) in ms {
                    match v {
                        Some(v) => a.set(mk(*k), v.clone()),
                        None => a.sum(mk(*k), 1),
                    };
                }
                let r = a.commit().await;
                self.commit_result(r)
            }
            Op::Get(k) => {
                let e = self.kv.get(mk(*k)).await?;
                self.entries(vec![e])?
            }
            Op::GetMany(ks) => {
                let keys: Vec<Key> = ks.iter().map(|k| mk(*k)).collect();
                let es = self.kv.get_many(&keys).await?;
                self.entries(es)?
            }
            Op::List {
                reverse,
                limit,
                batch,
                start,
            } => {
                let mut sel = Selector::prefix(key!["m"]);
                if let Some(s) = start {
                    sel = sel.with_start(mk(*s));
                }
                let mut opts = ListOptions::default()
                    .with_reverse(*reverse)
                    .with_batch_size(*batch);
                if let Some(l) = limit {
                    opts = opts.with_limit(*l);
                }
                let es = self.kv.list(sel, opts).collect_all().await?;
                self.entries(es.into_iter().map(Some).collect())?
            }
        })
    }
}

async fn random_operations_match_memory_backend(cx: Cx) -> anyhow::Result<()> {
    for seed in 0..4u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let fresh = cx.fresh().await?;
        let mut target = Runner {
            kv: fresh.kv.clone(),
            stamps: HashMap::new(),
            commits: 0,
        };
        let mut model = Runner {
            kv: Kv::new(MemoryBackend::new()),
            stamps: HashMap::new(),
            commits: 0,
        };
        for i in 0..150 {
            let op = random_op(&mut rng);
            let got = target.run(&op).await?;
            let want = model.run(&op).await?;
            ensure!(
                got == want,
                "seed {seed}, op {i} {op:?}: target {got:?}, model {want:?}"
            );
        }
        fresh.close_database().await;
    }
    Ok(())
}
