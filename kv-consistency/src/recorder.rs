//! The history recorder: concurrent clients running a random workload.

use std::future::Future;
use std::time::Duration;

use kv::{CommitOutcome, Consistency, Key, Kv, KvEntry, KvValue, key};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ConsistencyError;
use crate::history::{Effect, History, KeyId, Observed, OpKind, Operation, Outcome};

/// The shape of one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Operations each client runs.
    pub ops_per_client: usize,
    /// Register keys (get / set / delete / check-and-set).
    pub registers: u16,
    /// Counter keys (sum / get).
    pub counters: u16,
    /// Bank accounts (transfers / snapshot of all), at most 10.
    pub accounts: u16,
    /// Keys of the cycle workload: transactions read two or three of them
    /// and write some (checking every key they read), read-only
    /// transactions read them all; the dependency graph of these must have
    /// no cycle.
    pub cycle_keys: u16,
    /// Each account's opening balance.
    pub opening_balance: u64,
    /// Seed of the clients' random choices.
    pub seed: u64,
    /// A call that takes longer than this gets an unknown outcome.
    pub op_timeout: Duration,
    /// How long a client pauses after a failed call (so that a fault does
    /// not turn the whole workload into unknown outcomes).
    pub pause_after_error: Duration,
    /// Make one plain register read in three `Consistency::Eventual`.
    pub eventual_reads: bool,
    /// Whether the backend may answer eventual reads from a lagging replica
    /// (see [`History::lagging_eventual_reads`]). Backends that answer them
    /// from the primary are checked as if they were strong.
    pub lagging_eventual_reads: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            ops_per_client: 200,
            registers: 4,
            counters: 2,
            accounts: 4,
            cycle_keys: 4,
            opening_balance: 100,
            seed: 0,
            op_timeout: Duration::from_secs(10),
            pause_after_error: Duration::from_millis(20),
            eventual_reads: true,
            lagging_eventual_reads: false,
        }
    }
}

impl Workload {
    /// Runs `ops` operations per client.
    pub fn with_ops_per_client(mut self, ops: usize) -> Self {
        self.ops_per_client = ops;
        self
    }

    /// Seeds the random choices.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Gives calls longer than `timeout` an unknown outcome.
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Says that eventual reads may lag (etcd's serializable reads).
    pub fn with_lagging_eventual_reads(mut self, lagging: bool) -> Self {
        self.lagging_eventual_reads = lagging;
        self
    }

    fn counter(&self, i: u16) -> KeyId {
        self.registers + i
    }

    fn account(&self, i: u16) -> KeyId {
        self.registers + self.counters + i
    }

    fn accounts(&self) -> Vec<KeyId> {
        (0..self.accounts).map(|i| self.account(i)).collect()
    }

    fn cycle_key(&self, i: u16) -> KeyId {
        self.registers + self.counters + self.accounts + i
    }

    fn cycle_keys(&self) -> Vec<KeyId> {
        (0..self.cycle_keys).map(|i| self.cycle_key(i)).collect()
    }
}

/// The kv key of workload key `id`.
pub fn kv_key(id: KeyId) -> Key {
    key!["consistency", i64::from(id)]
}

/// The clock operations are timed by: `CLOCK_MONOTONIC` nanoseconds,
/// minus an origin. Linux's monotonic clock is one clock for the whole
/// system, so histories recorded by several processes with
/// [`Clock::system`] merge without adjustment.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: u64,
}

impl Clock {
    /// The raw system clock (origin 0), shared by every process.
    pub fn system() -> Self {
        Clock { origin: 0 }
    }

    /// A clock that reads 0 now (smaller numbers in one process's report).
    pub fn starting_now() -> Self {
        Clock {
            origin: monotonic_ns(),
        }
    }

    /// Nanoseconds since the origin.
    pub fn now(&self) -> u64 {
        monotonic_ns().saturating_sub(self.origin)
    }
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let ns = i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    u64::try_from(ns).expect("the monotonic clock counts up from boot")
}

/// Records one history: opens the bank with one commit, then runs one
/// client per handle in `clients` concurrently (clients may share a
/// backend or each have a connection of their own).
///
/// # Errors
/// When the bank cannot be opened (before any client starts).
pub async fn record(clients: Vec<Kv>, workload: &Workload) -> Result<History, ConsistencyError> {
    let clock = Clock::starting_now();
    let mut ops = Vec::new();
    if let Some(kv) = clients.first() {
        ops.extend(open_bank(kv, workload, clock).await?);
    }
    let mut tasks = Vec::with_capacity(clients.len());
    for (id, kv) in clients.into_iter().enumerate() {
        let id = u32::try_from(id).expect("fewer than 2^32 clients");
        tasks.push(tokio::spawn(run_client(kv, id, workload.clone(), clock)));
    }
    for task in tasks {
        ops.extend(task.await.expect("a client task does not panic"));
    }
    Ok(History {
        ops,
        ..workload.empty_history()
    })
}

impl Workload {
    /// A history of this workload with no operations yet.
    pub fn empty_history(&self) -> History {
        History {
            ops: Vec::new(),
            bank_total: self.opening_balance * u64::from(self.accounts),
            accounts: self.accounts(),
            lagging_eventual_reads: self.lagging_eventual_reads,
        }
    }
}

/// Opens the bank: one commit setting every account to its opening
/// balance, recorded as operations of client `u32::MAX` (none when the
/// workload has no accounts). Each attempt checks that the accounts are
/// absent, so it can be retried after a fault: an attempt that failed (an
/// unknown outcome) may have applied, and then the next one fails its
/// check.
///
/// # Errors
/// When 50 attempts, 100 ms apart, all fail: without a bank there is
/// nothing to record.
pub async fn open_bank(
    kv: &Kv,
    workload: &Workload,
    clock: Clock,
) -> Result<Vec<Operation>, ConsistencyError> {
    let accounts = workload.accounts();
    let mut ops = Vec::new();
    if accounts.is_empty() {
        return Ok(ops);
    }
    let checks: Vec<_> = accounts.iter().map(|&a| (a, None)).collect();
    let mutations: Vec<_> = accounts
        .iter()
        .map(|&a| (a, Effect::Set(workload.opening_balance)))
        .collect();
    let mut attempts = 0;
    loop {
        let mut op = kv.atomic();
        for &a in &accounts {
            op.check(kv_key(a), None);
            op.set(kv_key(a), KvValue::U64(workload.opening_balance));
        }
        let call = clock.now();
        let result = op.commit().await;
        let ret = clock.now();
        let (outcome, ret) = match result {
            Ok(CommitOutcome::Committed { versionstamp }) => {
                (Outcome::Committed(versionstamp), Some(ret))
            }
            Ok(CommitOutcome::CheckFailed) => (Outcome::CheckFailed, Some(ret)),
            Err(_) => (Outcome::Unknown, None),
        };
        ops.push(Operation {
            client: u32::MAX,
            call,
            ret,
            kind: OpKind::Commit {
                checks: checks.clone(),
                mutations: mutations.clone(),
                outcome,
            },
        });
        match result {
            Ok(_) => return Ok(ops),
            Err(e) if attempts >= 49 => return Err(e.into()),
            Err(_) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs client `id` of `workload` on `kv` (after [`open_bank`]) and returns
/// its operations. Its random choices depend on the workload's seed and
/// `id` alone, so the same client runs the same way in any process.
pub async fn run_client(kv: Kv, id: u32, workload: Workload, clock: Clock) -> Vec<Operation> {
    let client = Client {
        id,
        kv,
        clock,
        rng: StdRng::seed_from_u64(
            workload
                .seed
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(u64::from(id)),
        ),
        workload,
        next_value: 0,
        ops: Vec::new(),
    };
    client.run().await
}

struct Client {
    id: u32,
    kv: Kv,
    clock: Clock,
    workload: Workload,
    rng: StdRng,
    next_value: u64,
    ops: Vec<Operation>,
}

fn observed(entry: &Option<KvEntry>) -> Option<Observed> {
    entry.as_ref().map(|e| Observed {
        value: match e.value {
            KvValue::U64(v) => v,
            // Every workload value is a KvU64; anything else reads as a
            // value no commit wrote, which the checker reports.
            _ => u64::MAX,
        },
        versionstamp: e.versionstamp,
    })
}

impl Client {
    async fn run(mut self) -> Vec<Operation> {
        let w = self.workload.clone();
        for _ in 0..w.ops_per_client {
            let ok = match self.rng.gen_range(0..120u32) {
                0..15 if w.registers > 0 => {
                    let k = self.rng.gen_range(0..w.registers);
                    let consistency = if w.eventual_reads && self.rng.gen_ratio(1, 3) {
                        Consistency::Eventual
                    } else {
                        Consistency::Strong
                    };
                    self.read_with(&[k], consistency).await.is_some()
                }
                15..30 if w.registers > 0 => {
                    let k = self.rng.gen_range(0..w.registers);
                    let v = self.unique();
                    self.commit(Vec::new(), vec![(k, Effect::Set(v))]).await
                }
                30..36 if w.registers > 0 => {
                    let k = self.rng.gen_range(0..w.registers);
                    self.commit(Vec::new(), vec![(k, Effect::Delete)]).await
                }
                36..52 if w.registers > 0 => {
                    let k = self.rng.gen_range(0..w.registers);
                    match self.read(&[k]).await {
                        Some(seen) => {
                            let v = self.unique();
                            let check = (k, seen[0].map(|o| o.versionstamp));
                            self.commit(vec![check], vec![(k, Effect::Set(v))]).await
                        }
                        None => false,
                    }
                }
                52..64 if w.counters > 0 => {
                    let k = w.counter(self.rng.gen_range(0..w.counters));
                    let d = self.rng.gen_range(1..=5);
                    self.commit(Vec::new(), vec![(k, Effect::Sum(d))]).await
                }
                64..72 if w.counters > 0 => {
                    let k = w.counter(self.rng.gen_range(0..w.counters));
                    self.read(&[k]).await.is_some()
                }
                72..90 if w.accounts > 1 => self.transfer().await,
                100..112 if w.cycle_keys > 1 => self.transaction().await,
                112..120 if w.cycle_keys > 0 => {
                    let all = w.cycle_keys();
                    self.read(&all).await.is_some()
                }
                _ if w.accounts > 0 => {
                    let all = w.accounts();
                    self.read(&all).await.is_some()
                }
                _ => true,
            };
            if !ok {
                tokio::time::sleep(w.pause_after_error).await;
            }
        }
        self.ops
    }

    fn unique(&mut self) -> u64 {
        self.next_value += 1;
        (u64::from(self.id) + 1) << 32 | self.next_value
    }

    /// A bank transfer: read two accounts, then move part of the first's
    /// balance to the second, checking both versionstamps.
    async fn transfer(&mut self) -> bool {
        let w = &self.workload;
        let from = self.rng.gen_range(0..w.accounts);
        let to = (from + self.rng.gen_range(1..w.accounts)) % w.accounts;
        let (from, to) = (w.account(from), w.account(to));
        let Some(seen) = self.read(&[from, to]).await else {
            return false;
        };
        let (Some(a), Some(b)) = (seen[0], seen[1]) else {
            return true;
        };
        if a.value == 0 {
            return true;
        }
        let amount = self.rng.gen_range(1..=a.value.min(10));
        self.commit(
            vec![(from, Some(a.versionstamp)), (to, Some(b.versionstamp))],
            vec![
                (from, Effect::Set(a.value - amount)),
                (to, Effect::Set(b.value.wrapping_add(amount))),
            ],
        )
        .await
    }

    /// A transaction of the cycle workload: read two or three cycle keys in
    /// one snapshot, then write one or two of them (and now and then a key
    /// it did not read, blindly), checking every key it read. Its writes
    /// are unique values, so each version names its writer.
    async fn transaction(&mut self) -> bool {
        let w = &self.workload;
        let n = usize::from(w.cycle_keys);
        let width = self.rng.gen_range(2..=n.min(3));
        let picked = rand::seq::index::sample(&mut self.rng, n, n);
        let keys: Vec<KeyId> = picked
            .iter()
            .map(|i| w.cycle_key(u16::try_from(i).expect("fewer than 2^16 cycle keys")))
            .collect();
        let (read, rest) = keys.split_at(width);
        let blind = rest.first().copied().filter(|_| self.rng.gen_ratio(1, 4));
        let Some(seen) = self.read(read).await else {
            return false;
        };
        let checks: Vec<_> = read
            .iter()
            .zip(&seen)
            .map(|(&k, o)| (k, o.map(|o| o.versionstamp)))
            .collect();
        let writes = self.rng.gen_range(1..=2);
        let mut targets: Vec<KeyId> = read[..writes].to_vec();
        targets.extend(blind);
        let mutations = targets
            .into_iter()
            .map(|k| (k, Effect::Set(self.unique())))
            .collect();
        self.commit(checks, mutations).await
    }

    /// A strong snapshot read of `keys`, recorded when it succeeds.
    async fn read(&mut self, keys: &[KeyId]) -> Option<Vec<Option<Observed>>> {
        self.read_with(keys, Consistency::Strong).await
    }

    /// A snapshot read of `keys`, recorded when it succeeds.
    async fn read_with(
        &mut self,
        keys: &[KeyId],
        consistency: Consistency,
    ) -> Option<Vec<Option<Observed>>> {
        let kv_keys: Vec<Key> = keys.iter().map(|&k| kv_key(k)).collect();
        let call = self.clock.now();
        let result = tokio::time::timeout(
            self.workload.op_timeout,
            self.kv.get_many_with(&kv_keys, consistency),
        )
        .await;
        let ret = self.clock.now();
        let entries = result.ok()?.ok()?;
        let results: Vec<Option<Observed>> = entries.iter().map(observed).collect();
        self.ops.push(Operation {
            client: self.id,
            call,
            ret: Some(ret),
            kind: OpKind::Read {
                keys: keys.to_vec(),
                results: results.clone(),
                eventual: consistency == Consistency::Eventual,
            },
        });
        Some(results)
    }

    /// One atomic commit, recorded with its outcome (unknown on error or
    /// timeout). Returns whether the call itself succeeded.
    async fn commit(
        &mut self,
        checks: Vec<(KeyId, Option<kv::Versionstamp>)>,
        mutations: Vec<(KeyId, Effect)>,
    ) -> bool {
        let mut op = self.kv.atomic();
        for &(k, vs) in &checks {
            op.check(kv_key(k), vs);
        }
        for &(k, effect) in &mutations {
            match effect {
                Effect::Set(v) => op.set(kv_key(k), KvValue::U64(v)),
                Effect::Delete => op.delete(kv_key(k)),
                Effect::Sum(d) => op.sum(kv_key(k), d),
            };
        }
        let call = self.clock.now();
        let result = timeout(self.workload.op_timeout, op.commit()).await;
        let ret = self.clock.now();
        let (outcome, ret) = match result {
            Some(CommitOutcome::Committed { versionstamp }) => {
                (Outcome::Committed(versionstamp), Some(ret))
            }
            Some(CommitOutcome::CheckFailed) => (Outcome::CheckFailed, Some(ret)),
            None => (Outcome::Unknown, None),
        };
        self.ops.push(Operation {
            client: self.id,
            call,
            ret,
            kind: OpKind::Commit {
                checks,
                mutations,
                outcome,
            },
        });
        ret.is_some()
    }
}

async fn timeout<T>(limit: Duration, fut: impl Future<Output = kv::Result<T>>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()?.ok()
}
