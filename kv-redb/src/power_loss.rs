//! Acknowledged commits survive power loss, simulated under redb.
//!
//! `kill -9` (the crash tests) keeps everything the process wrote in the
//! operating system's page cache; a power cut keeps only what was synced.
//! [`Disk`] is a redb storage backend that remembers which bytes were
//! synced. At a random I/O operation the power goes off: every later call
//! fails, and the disk that comes back holds the synced bytes plus a random
//! subset of the unsynced writes, each possibly torn at 512-byte sectors
//! (the drive wrote some sectors of it, in any order). The database is then
//! reopened on that image and must hold every acknowledged commit, whole.
//!
//! 50 rounds, 1,000 with `KV_SLOW_TESTS=1`, or `KV_POWER_LOSS_ROUNDS`. The
//! rounds' seeds follow from a base seed printed at the start (set it with
//! `KV_POWER_LOSS_SEED`); the threads' timing still varies between runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::join_all;
use kv_core::{Key, Kv, KvValue, ListOptions, Selector, key};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::RedbConfig;

const SECTOR: usize = 512;
const WRITERS: u64 = 4;
/// Commits per writer when the power stays on that long.
const MAX_COMMITS: u64 = 200;

/// A write or length change that has not been synced yet.
#[derive(Debug, Clone)]
enum Change {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

#[derive(Debug, Default)]
struct State {
    /// What reads see: every change so far.
    current: Vec<u8>,
    /// What certainly survives a power cut: the bytes as of the last sync.
    synced: Vec<u8>,
    /// Changes since the last sync, in order.
    unsynced: Vec<Change>,
    /// Writes and syncs so far; the power goes off when it reaches `cut_at`.
    ops: u64,
    cut_at: Option<u64>,
    off: bool,
    /// A disk that acknowledges syncs without keeping anything: the control
    /// that shows the check can fail.
    lies_about_syncs: bool,
}

/// A simulated drive, shared by the database and the test.
#[derive(Debug, Clone, Default)]
struct Disk(Arc<Mutex<State>>);

fn power_is_off() -> std::io::Error {
    std::io::Error::other("the power is off")
}

fn apply(bytes: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, data } => {
            let end = offset + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset..end].copy_from_slice(data);
        }
        Change::SetLen(len) => bytes.resize(*len, 0),
    }
}

impl Disk {
    /// A disk holding `image`, all of it synced.
    fn with_image(image: Vec<u8>) -> Disk {
        Disk(Arc::new(Mutex::new(State {
            current: image.clone(),
            synced: image,
            ..State::default()
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power `after` more writes and syncs.
    fn cut_power_after(&self, after: u64) {
        let mut state = self.state();
        state.cut_at = Some(state.ops + after);
    }

    fn lie_about_syncs(&self) {
        self.state().lies_about_syncs = true;
    }

    /// Counts one write or sync; fails once the power is off.
    fn operate(state: &mut State) -> std::io::Result<()> {
        if state.off || state.cut_at.is_some_and(|cut| state.ops >= cut) {
            state.off = true;
            return Err(power_is_off());
        }
        state.ops += 1;
        Ok(())
    }

    fn change(&self, change: Change) -> std::io::Result<()> {
        let mut state = self.state();
        Disk::operate(&mut state)?;
        apply(&mut state.current, &change);
        state.unsynced.push(change);
        Ok(())
    }

    /// What the drive holds when the power comes back.
    fn image_after_power_loss(&self, rng: &mut StdRng) -> Vec<u8> {
        let state = self.state();
        let mut image = state.synced.clone();
        for change in &state.unsynced {
            match change {
                Change::Write { offset, data } if rng.gen_bool(0.5) => {
                    for (i, sector) in data.chunks(SECTOR).enumerate() {
                        if rng.gen_bool(0.7) {
                            let piece = Change::Write {
                                offset: offset + i * SECTOR,
                                data: sector.to_vec(),
                            };
                            apply(&mut image, &piece);
                        }
                    }
                }
                Change::SetLen(_) if rng.gen_bool(0.5) => apply(&mut image, change),
                _ => {}
            }
        }
        image
    }
}

impl redb::StorageBackend for Disk {
    fn len(&self) -> std::io::Result<u64> {
        let state = self.state();
        if state.off {
            return Err(power_is_off());
        }
        Ok(state.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let state = self.state();
        if state.off {
            return Err(power_is_off());
        }
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let bytes = state
            .current
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::other("read past the end of the disk"))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.change(Change::SetLen(
            usize::try_from(len).map_err(std::io::Error::other)?,
        ))
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut state = self.state();
        Disk::operate(&mut state)?;
        if !state.lies_about_syncs {
            let unsynced = std::mem::take(&mut state.unsynced);
            for change in &unsynced {
                apply(&mut state.synced, change);
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.change(Change::Write {
            offset: usize::try_from(offset).map_err(std::io::Error::other)?,
            data: data.to_vec(),
        })
    }
}

/// The payload of commit `i` of writer `w`: long enough that commits
/// spread over several pages.
fn payload(w: u64, i: u64) -> Vec<u8> {
    vec![(w * 31 + i) as u8; 300 + (i as usize * 97) % 1500]
}

/// One round: writers commit until the power goes off at a random I/O
/// operation; returns the highest acknowledged commit of each writer, and
/// whether the power went off while they were still writing.
async fn write_until_power_loss(disk: &Disk, rng: &mut StdRng) -> (Vec<Option<u64>>, bool) {
    let backend = RedbConfig::new("power-loss-round")
        .open_on(disk.clone())
        .expect("the database opens on a fresh disk");
    disk.cut_power_after(rng.gen_range(0..2_000));
    let kv = Kv::new(backend);
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let writers = (0..WRITERS).map(|w| {
        let (kv, acked) = (kv.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0..MAX_COMMITS {
                let committed = kv
                    .atomic()
                    .set(key!["w", w, i], KvValue::U64(i))
                    .set(key!["m", w, i], KvValue::Bytes(payload(w, i)))
                    .sum(key!["total"], 1)
                    .commit()
                    .await;
                match committed {
                    // Stored as i + 1 so that 0 means "none".
                    Ok(outcome) if outcome.is_ok() => {
                        acked[w as usize].store(i + 1, Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
        })
    });
    for writer in join_all(writers).await {
        writer.expect("a writer task");
    }
    let cut_while_writing = disk.state().off;
    // The power goes off at the latest when the writers are done.
    disk.cut_power_after(0);
    kv.close().await;
    let acked = acked
        .iter()
        .map(|a| a.load(Ordering::SeqCst).checked_sub(1))
        .collect();
    (acked, cut_while_writing)
}

async fn entries(kv: &Kv, prefix: Key) -> Result<BTreeMap<Key, KvValue>, String> {
    let entries = kv
        .list(Selector::prefix(prefix), ListOptions::default())
        .collect_all()
        .await
        .map_err(|e| format!("listing after the power cut failed: {e}"))?;
    Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
}

/// Reopens `image` and checks it against the acknowledged commits.
async fn check(image: Vec<u8>, acked: &[Option<u64>]) -> Result<(), String> {
    let backend = RedbConfig::new("power-loss-restart")
        .open_on(Disk::with_image(image))
        .map_err(|e| format!("the database does not reopen after the power cut: {e}"))?;
    let kv = Kv::new(backend);
    let mut present_total = 0;
    for (w, acked) in acked.iter().enumerate() {
        let w = w as u64;
        let words = entries(&kv, key!["w", w]).await?;
        let payloads = entries(&kv, key!["m", w]).await?;
        let count = words.len() as u64;
        for i in 0..count {
            if words.get(&key!["w", w, i]) != Some(&KvValue::U64(i)) {
                return Err(format!("writer {w}: commit {i} missing among {count}"));
            }
            if payloads.get(&key!["m", w, i]) != Some(&KvValue::Bytes(payload(w, i))) {
                return Err(format!(
                    "writer {w}: commit {i} is torn (its payload is missing)"
                ));
            }
        }
        if payloads.len() as u64 != count {
            return Err(format!(
                "writer {w}: {} payloads for {count} commits",
                payloads.len()
            ));
        }
        if let Some(acked) = acked
            && count <= *acked
        {
            return Err(format!(
                "writer {w}: commit {acked} was acknowledged, {count} commits survived"
            ));
        }
        // At most the one commit in flight may survive unacknowledged.
        let in_flight = acked.map_or(0, |a| a + 1);
        if count > in_flight + 1 {
            return Err(format!(
                "writer {w}: {count} commits, none after {in_flight}"
            ));
        }
        present_total += count;
    }
    let total = kv.get(key!["total"]).await.map_err(|e| e.to_string())?;
    let total = match total.map(|e| e.value) {
        None => 0,
        Some(KvValue::U64(n)) => n,
        Some(other) => return Err(format!("the sum holds {other:?}")),
    };
    if total != present_total {
        return Err(format!(
            "the sum counted {total} commits, {present_total} are present"
        ));
    }
    kv.set(key!["after"], KvValue::U64(1))
        .await
        .map_err(|e| format!("no commit after the power cut: {e}"))?;
    kv.close().await;
    Ok(())
}

/// The rounds to run and the first round's seed.
fn plan() -> (u64, u64) {
    let slow = std::env::var_os("KV_SLOW_TESTS").is_some();
    let rounds = std::env::var("KV_POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if slow { 1_000 } else { 50 });
    let seed = std::env::var("KV_POWER_LOSS_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("power loss: {rounds} rounds, KV_POWER_LOSS_SEED={seed}");
    (rounds, seed)
}

/// What the rounds found.
#[derive(Debug, Default)]
struct Outcome {
    /// Rounds whose power went off while the writers were writing.
    cut_while_writing: u64,
    failures: Vec<String>,
}

/// Runs `rounds` power cuts from `seed`. A `lying` disk acknowledges syncs
/// without keeping anything, and comes back with only what it held when
/// the database was created.
async fn rounds(rounds: u64, seed: u64, lying: bool) -> Outcome {
    let mut outcome = Outcome::default();
    for round in 0..rounds {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(round));
        let disk = Disk::default();
        if lying {
            // Only after the database exists, so that it reopens.
            let backend = RedbConfig::new("power-loss-setup")
                .open_on(disk.clone())
                .expect("the database opens on a fresh disk");
            drop(backend);
            disk.lie_about_syncs();
        }
        let (acked, cut_while_writing) = write_until_power_loss(&disk, &mut rng).await;
        outcome.cut_while_writing += u64::from(cut_while_writing);
        let image = if lying {
            disk.state().synced.clone()
        } else {
            disk.image_after_power_loss(&mut rng)
        };
        if let Err(e) = check(image, &acked).await {
            let seed = seed.wrapping_add(round);
            outcome.failures.push(format!(
                "round {round} (seed {seed}, acknowledged {acked:?}): {e}"
            ));
        }
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_power_loss() -> Result<(), String> {
    let (n, seed) = plan();
    let outcome = rounds(n, seed, false).await;
    if let Some(first) = outcome.failures.first() {
        return Err(format!(
            "{} of {n} rounds failed; {first}",
            outcome.failures.len()
        ));
    }
    // The cut must land while commits are in flight, not after them.
    if outcome.cut_while_writing * 10 < n * 9 {
        return Err(format!(
            "only {} of {n} power cuts came while the writers wrote",
            outcome.cut_while_writing
        ));
    }
    Ok(())
}

/// The control: on a disk that acknowledges syncs without keeping the
/// data, the same check finds acknowledged commits missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_ignores_syncs_loses_acknowledged_commits() -> Result<(), String> {
    let outcome = rounds(10, 1, true).await;
    let lost = outcome
        .failures
        .iter()
        .filter(|f| f.contains("was acknowledged"))
        .count();
    if lost < 5 {
        return Err(format!(
            "only {lost} of 10 rounds on a lying disk lost acknowledged commits: {:?}",
            outcome.failures
        ));
    }
    Ok(())
}
