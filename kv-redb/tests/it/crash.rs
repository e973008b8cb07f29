//! Acknowledged commits survive `kill -9`: the story and the checks are in
//! `kv_conformance::durable::crash`. `acknowledged_commits_survive_kill_9`
//! re-runs this binary with the filter `crash::crash_child`, so both names
//! must stay; `KV_CRASH_ROUNDS` sets the rounds.

use kv_conformance::durable::crash;

use crate::{Redb, TestResult};

/// The child writer; a no-op unless `KV_CRASH_CHILD` is set.
#[test]
fn crash_child() -> TestResult {
    crash::child(&Redb)
}

#[test]
fn acknowledged_commits_survive_kill_9() -> TestResult {
    crash::acknowledged_commits_survive_kill_9(&Redb, "crash::crash_child")
}
