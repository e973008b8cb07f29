//! Acknowledged commits survive `kill -9`: the story and the checks are in
//! `kv_conformance::durable::crash`. `acknowledged_commits_survive_kill_9`
//! re-runs this binary with the filter `crash::crash_child`, so both names
//! must stay; `cargo xtask crash` selects them with the filter `crash` and
//! sets `KV_CRASH_ROUNDS`.

use kv_conformance::durable::crash;

use crate::{Sqlite, TestResult};

/// The child writer; a no-op unless `KV_CRASH_CHILD` is set.
#[test]
fn crash_child() -> TestResult {
    crash::child(&Sqlite)
}

#[test]
fn acknowledged_commits_survive_kill_9() -> TestResult {
    crash::acknowledged_commits_survive_kill_9(&Sqlite, "crash::crash_child")
}
