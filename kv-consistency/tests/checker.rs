//! The checker against planted histories: known-bad ones must be rejected
//! with the right kind of violation, known-good ones accepted.

use kv::Versionstamp;
use kv_consistency::{
    Effect, History, KeyId, Observed, OpKind, Operation, Outcome, ViolationKind, check,
};

fn vs(n: u64) -> Versionstamp {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&n.to_be_bytes());
    Versionstamp(b)
}

fn set(client: u32, call: u64, ret: u64, k: KeyId, v: u64, at: u64) -> Operation {
    commit(
        client,
        call,
        Some(ret),
        vec![],
        vec![(k, Effect::Set(v))],
        Outcome::Committed(vs(at)),
    )
}

fn commit(
    client: u32,
    call: u64,
    ret: Option<u64>,
    checks: Vec<(KeyId, Option<Versionstamp>)>,
    mutations: Vec<(KeyId, Effect)>,
    outcome: Outcome,
) -> Operation {
    Operation {
        client,
        call,
        ret,
        kind: OpKind::Commit {
            checks,
            mutations,
            outcome,
        },
    }
}

/// A read of `keys`, each result `(value, versionstamp)` or absent.
fn read(
    client: u32,
    call: u64,
    ret: u64,
    keys: &[KeyId],
    results: &[Option<(u64, u64)>],
) -> Operation {
    Operation {
        client,
        call,
        ret: Some(ret),
        kind: OpKind::Read {
            keys: keys.to_vec(),
            results: results
                .iter()
                .map(|r| {
                    r.map(|(value, at)| Observed {
                        value,
                        versionstamp: vs(at),
                    })
                })
                .collect(),
            eventual: false,
        },
    }
}

fn history(ops: Vec<Operation>) -> History {
    History {
        ops,
        ..History::default()
    }
}

fn kinds(h: &History) -> Vec<ViolationKind> {
    check(h).into_iter().map(|v| v.kind).collect()
}

fn assert_rejected(h: &History, expected: &[ViolationKind]) -> Result<(), String> {
    let found = kinds(h);
    for kind in expected {
        if !found.contains(kind) {
            return Err(format!("expected {kind:?} among {found:?}"));
        }
    }
    Ok(())
}

fn assert_accepted(h: &History) -> Result<(), String> {
    let violations = check(h);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(format!("unexpected violations: {violations:#?}"))
    }
}

#[test]
fn sequential_register_is_accepted() -> Result<(), String> {
    assert_accepted(&history(vec![
        read(0, 0, 1, &[0], &[None]),
        set(0, 2, 3, 0, 10, 1),
        read(1, 4, 5, &[0], &[Some((10, 1))]),
        commit(
            1,
            6,
            Some(7),
            vec![(0, Some(vs(1)))],
            vec![(0, Effect::Set(11))],
            Outcome::Committed(vs(2)),
        ),
        commit(
            0,
            8,
            Some(9),
            vec![(0, Some(vs(1)))],
            vec![(0, Effect::Set(12))],
            Outcome::CheckFailed,
        ),
        commit(
            0,
            10,
            Some(11),
            vec![],
            vec![(0, Effect::Delete)],
            Outcome::Committed(vs(3)),
        ),
        read(1, 12, 13, &[0], &[None]),
    ]))
}

#[test]
fn stale_read_after_completed_write_is_rejected() -> Result<(), String> {
    // The write of 20 completed before the read began; the read saw 10.
    assert_rejected(
        &history(vec![
            set(0, 0, 1, 0, 10, 1),
            set(0, 2, 3, 0, 20, 2),
            read(1, 4, 5, &[0], &[Some((10, 1))]),
        ]),
        &[ViolationKind::NotLinearizable, ViolationKind::NoSnapshot],
    )
}

#[test]
fn concurrent_overlapping_operations_are_accepted() -> Result<(), String> {
    // Two writes overlap each other and two reads; the reads see them in
    // either order, which some linearization explains.
    assert_accepted(&history(vec![
        set(0, 0, 10, 0, 10, 2),
        set(1, 1, 9, 0, 20, 1),
        read(2, 2, 3, &[0], &[Some((20, 1))]),
        read(3, 4, 8, &[0], &[Some((10, 2))]),
        read(2, 11, 12, &[0], &[Some((10, 2))]),
    ]))
}

#[test]
fn reads_going_back_in_time_are_rejected() -> Result<(), String> {
    // Both writes are done; once a client read 20, a later read cannot
    // return the older 10.
    assert_rejected(
        &history(vec![
            set(0, 0, 1, 0, 10, 1),
            set(1, 0, 1, 0, 20, 2),
            read(2, 2, 3, &[0], &[Some((20, 2))]),
            read(3, 4, 5, &[0], &[Some((10, 1))]),
        ]),
        &[ViolationKind::NotLinearizable],
    )
}

#[test]
fn lost_update_on_a_counter_is_rejected() -> Result<(), String> {
    // Two acknowledged sums of 1, then a read of 1: one update was lost.
    assert_rejected(
        &history(vec![
            commit(
                0,
                0,
                Some(2),
                vec![],
                vec![(5, Effect::Sum(1))],
                Outcome::Committed(vs(1)),
            ),
            commit(
                1,
                1,
                Some(3),
                vec![],
                vec![(5, Effect::Sum(1))],
                Outcome::Committed(vs(2)),
            ),
            read(2, 4, 5, &[5], &[Some((1, 2))]),
        ]),
        &[ViolationKind::NotLinearizable, ViolationKind::WrongValue],
    )
}

#[test]
fn counters_with_unknown_sums_are_accepted() -> Result<(), String> {
    // A sum with an unknown outcome may have applied (read of 3) and stays
    // applied; another unknown one never did.
    assert_accepted(&history(vec![
        commit(
            0,
            0,
            Some(1),
            vec![],
            vec![(5, Effect::Sum(1))],
            Outcome::Committed(vs(1)),
        ),
        commit(
            1,
            2,
            None,
            vec![],
            vec![(5, Effect::Sum(2))],
            Outcome::Unknown,
        ),
        commit(
            2,
            2,
            None,
            vec![],
            vec![(5, Effect::Sum(4))],
            Outcome::Unknown,
        ),
        read(0, 5, 6, &[5], &[Some((1, 1))]),
        read(0, 7, 8, &[5], &[Some((3, 2))]),
        read(3, 9, 10, &[5], &[Some((3, 2))]),
    ]))
}

#[test]
fn two_cas_succeeding_on_the_same_version_are_rejected() -> Result<(), String> {
    assert_rejected(
        &history(vec![
            set(0, 0, 1, 0, 10, 1),
            read(1, 2, 3, &[0], &[Some((10, 1))]),
            read(2, 2, 3, &[0], &[Some((10, 1))]),
            commit(
                1,
                4,
                Some(6),
                vec![(0, Some(vs(1)))],
                vec![(0, Effect::Set(11))],
                Outcome::Committed(vs(2)),
            ),
            commit(
                2,
                5,
                Some(7),
                vec![(0, Some(vs(1)))],
                vec![(0, Effect::Set(12))],
                Outcome::Committed(vs(3)),
            ),
        ]),
        &[ViolationKind::NotLinearizable, ViolationKind::StaleCheck],
    )
}

#[test]
fn non_monotonic_versionstamps_are_rejected() -> Result<(), String> {
    // The second commit began after the first completed, with a smaller
    // versionstamp.
    assert_rejected(
        &history(vec![set(0, 0, 1, 0, 10, 5), set(1, 2, 3, 1, 20, 4)]),
        &[ViolationKind::NonMonotonicVersionstamp],
    )
}

#[test]
fn duplicate_versionstamps_are_rejected() -> Result<(), String> {
    assert_rejected(
        &history(vec![set(0, 0, 3, 0, 10, 1), set(1, 0, 3, 1, 20, 1)]),
        &[ViolationKind::DuplicateVersionstamp],
    )
}

fn bank(ops: Vec<Operation>) -> History {
    History {
        ops,
        accounts: vec![10, 11],
        bank_total: 200,
        ..History::default()
    }
}

fn open_bank() -> Operation {
    commit(
        9,
        0,
        Some(1),
        vec![],
        vec![(10, Effect::Set(100)), (11, Effect::Set(100))],
        Outcome::Committed(vs(1)),
    )
}

fn transfer(
    client: u32,
    call: u64,
    ret: Option<u64>,
    from: (u64, u64),
    to: (u64, u64),
    outcome: Outcome,
) -> Operation {
    commit(
        client,
        call,
        ret,
        vec![(10, Some(vs(from.1))), (11, Some(vs(to.1)))],
        vec![(10, Effect::Set(from.0)), (11, Effect::Set(to.0))],
        outcome,
    )
}

#[test]
fn bank_with_transfers_and_unknown_outcomes_is_accepted() -> Result<(), String> {
    assert_accepted(&bank(vec![
        open_bank(),
        read(0, 2, 3, &[10, 11], &[Some((100, 1)), Some((100, 1))]),
        transfer(0, 4, Some(5), (90, 1), (110, 1), Outcome::Committed(vs(2))),
        read(1, 4, 6, &[10, 11], &[Some((100, 1)), Some((100, 1))]),
        read(1, 7, 8, &[10, 11], &[Some((90, 2)), Some((110, 2))]),
        // Interrupted by a fault, then revealed by a read.
        transfer(2, 9, None, (85, 2), (115, 2), Outcome::Unknown),
        // Interrupted and never seen: it did not apply.
        transfer(3, 9, None, (80, 2), (120, 2), Outcome::Unknown),
        read(1, 20, 21, &[10, 11], &[Some((85, 3)), Some((115, 3))]),
    ]))
}

#[test]
fn torn_multi_key_read_is_rejected() -> Result<(), String> {
    // The read saw the transfer on one account but not on the other.
    assert_rejected(
        &bank(vec![
            open_bank(),
            transfer(0, 2, Some(3), (90, 1), (110, 1), Outcome::Committed(vs(2))),
            read(1, 2, 4, &[10, 11], &[Some((90, 2)), Some((100, 1))]),
        ]),
        &[ViolationKind::NoSnapshot, ViolationKind::BankInvariant],
    )
}

#[test]
fn read_of_a_value_no_commit_wrote_is_rejected() -> Result<(), String> {
    assert_rejected(
        &history(vec![
            set(0, 0, 1, 0, 10, 1),
            read(1, 2, 3, &[0], &[Some((11, 1))]),
        ]),
        &[ViolationKind::NotLinearizable, ViolationKind::WrongValue],
    )
}

#[test]
fn read_of_a_versionstamp_no_commit_produced_is_rejected() -> Result<(), String> {
    assert_rejected(
        &history(vec![
            set(0, 0, 1, 0, 10, 1),
            read(1, 2, 3, &[0], &[Some((10, 7))]),
        ]),
        &[ViolationKind::UnknownVersionstamp],
    )
}

#[test]
fn lost_acknowledged_write_after_restart_is_rejected() -> Result<(), String> {
    // Durability: an acknowledged write vanished (the key reads absent).
    assert_rejected(
        &history(vec![
            set(0, 0, 1, 0, 10, 1),
            read(1, 100, 101, &[0], &[None]),
        ]),
        &[ViolationKind::NotLinearizable, ViolationKind::NoSnapshot],
    )
}

#[test]
fn unknown_write_may_apply_late_or_never() -> Result<(), String> {
    // An unknown set may show up after later reads missed it, but then it
    // must stay.
    assert_accepted(&history(vec![
        set(0, 0, 1, 0, 10, 1),
        commit(
            1,
            2,
            None,
            vec![],
            vec![(0, Effect::Set(20))],
            Outcome::Unknown,
        ),
        read(2, 3, 4, &[0], &[Some((10, 1))]),
        read(2, 5, 6, &[0], &[Some((20, 2))]),
        read(3, 7, 8, &[0], &[Some((20, 2))]),
    ]))?;
    assert_rejected(
        &history(vec![
            set(0, 0, 1, 0, 10, 1),
            commit(
                1,
                2,
                None,
                vec![],
                vec![(0, Effect::Set(20))],
                Outcome::Unknown,
            ),
            read(2, 5, 6, &[0], &[Some((20, 2))]),
            read(3, 7, 8, &[0], &[Some((10, 1))]),
        ]),
        &[ViolationKind::NotLinearizable],
    )
}

// The dependency-graph check. Keys 20 and 21 are the cycle workload's `x`
// and `y`; every transaction checks what it read.

const X: KeyId = 20;
const Y: KeyId = 21;

/// A committed transaction: `reads` are its checks, `writes` its sets.
fn txn(
    client: u32,
    call: u64,
    ret: u64,
    reads: &[(KeyId, Option<u64>)],
    writes: &[(KeyId, u64)],
    at: u64,
) -> Operation {
    commit(
        client,
        call,
        Some(ret),
        reads.iter().map(|&(k, v)| (k, v.map(vs))).collect(),
        writes.iter().map(|&(k, v)| (k, Effect::Set(v))).collect(),
        Outcome::Committed(vs(at)),
    )
}

#[test]
fn write_skew_is_a_g2_cycle() -> Result<(), String> {
    // Both read x and y absent, each writes one of them: serializable
    // either way round only if one saw the other's write.
    assert_rejected(
        &history(vec![
            txn(0, 0, 5, &[(X, None), (Y, None)], &[(X, 1)], 1),
            txn(1, 0, 5, &[(X, None), (Y, None)], &[(Y, 2)], 2),
        ]),
        &[ViolationKind::CycleG2],
    )
}

#[test]
fn lost_update_is_a_g_single_cycle() -> Result<(), String> {
    // Two read-modify-writes both saw version 1 and both committed.
    assert_rejected(
        &history(vec![
            set(0, 0, 1, X, 10, 1),
            txn(1, 2, 6, &[(X, Some(1))], &[(X, 11)], 2),
            txn(2, 2, 6, &[(X, Some(1))], &[(X, 12)], 3),
        ]),
        &[ViolationKind::CycleGSingle],
    )
}

#[test]
fn circular_information_flow_is_a_g1c_cycle() -> Result<(), String> {
    // Each transaction read the other's write.
    assert_rejected(
        &history(vec![
            txn(0, 0, 5, &[(Y, Some(3))], &[(X, 1)], 2),
            txn(1, 0, 5, &[(X, Some(2))], &[(Y, 1)], 3),
        ]),
        &[ViolationKind::CycleG1c],
    )
}

#[test]
fn read_skew_is_a_g_single_cycle() -> Result<(), String> {
    // A read-only transaction saw x before and y after the same commit.
    assert_rejected(
        &history(vec![
            commit(
                0,
                0,
                Some(1),
                vec![],
                vec![(X, Effect::Set(1)), (Y, Effect::Set(1))],
                Outcome::Committed(vs(1)),
            ),
            commit(
                0,
                2,
                Some(5),
                vec![],
                vec![(X, Effect::Set(2)), (Y, Effect::Set(2))],
                Outcome::Committed(vs(2)),
            ),
            read(1, 2, 5, &[X, Y], &[Some((1, 1)), Some((2, 2))]),
        ]),
        &[ViolationKind::CycleGSingle],
    )
}

#[test]
fn a_client_whose_later_write_is_ordered_first_is_a_g0_cycle() -> Result<(), String> {
    // Client 0 finished writing 10 before it wrote 20, yet 20 got the
    // smaller versionstamp: the version order contradicts client order.
    assert_rejected(
        &history(vec![set(0, 0, 1, X, 10, 2), set(0, 2, 3, X, 20, 1)]),
        &[ViolationKind::CycleG0],
    )
}

#[test]
fn serializable_transactions_are_accepted() -> Result<(), String> {
    // Transactions chained by what they read, read-only transactions
    // between and during them, a transaction whose check failed, and an
    // unknown one revealed by a read.
    assert_accepted(&history(vec![
        txn(0, 0, 1, &[(X, None), (Y, None)], &[(X, 1), (Y, 1)], 1),
        read(1, 2, 6, &[X, Y], &[Some((1, 1)), Some((1, 1))]),
        txn(0, 2, 5, &[(X, Some(1)), (Y, Some(1))], &[(X, 2)], 2),
        read(1, 7, 8, &[X, Y], &[Some((2, 2)), Some((1, 1))]),
        commit(
            2,
            7,
            Some(8),
            vec![(X, Some(vs(1)))],
            vec![(Y, Effect::Set(9))],
            Outcome::CheckFailed,
        ),
        txn(2, 9, 10, &[(X, Some(2)), (Y, Some(1))], &[(Y, 3)], 3),
        commit(
            3,
            11,
            None,
            vec![(X, Some(vs(2))), (Y, Some(vs(3)))],
            vec![(X, Effect::Set(4))],
            Outcome::Unknown,
        ),
        read(1, 12, 13, &[X, Y], &[Some((4, 4)), Some((3, 3))]),
    ]))
}

#[test]
fn operations_survive_the_trip_through_json_lines() -> Result<(), String> {
    use kv_consistency::wire::{from_line, to_line};
    let ops = vec![
        read(3, 10, 20, &[X, Y], &[Some((7, 5)), None]),
        commit(
            4,
            30,
            None,
            vec![(X, Some(vs(5))), (Y, None)],
            vec![
                (X, Effect::Set(1)),
                (Y, Effect::Delete),
                (5, Effect::Sum(2)),
            ],
            Outcome::Unknown,
        ),
        commit(
            4,
            40,
            Some(41),
            vec![],
            vec![(X, Effect::Set(2))],
            Outcome::Committed(vs(9)),
        ),
        commit(
            4,
            50,
            Some(51),
            vec![(X, None)],
            vec![],
            Outcome::CheckFailed,
        ),
    ];
    for op in ops {
        let line = to_line(&op);
        let back = from_line(&line).map_err(|e| e.to_string())?;
        if back != op {
            return Err(format!("{line} came back as {back:?}"));
        }
    }
    for bad in [
        "",
        "{}",
        r#"{"client":1,"call":2,"ret":3,"op":"read","keys":[1],"results":[],"eventual":false}"#,
        r#"{"client":1,"call":2,"ret":3,"op":"commit","checks":[[1,"zz"]],"mutations":[],"outcome":"unknown"}"#,
    ] {
        if from_line(bad).is_ok() {
            return Err(format!("{bad:?} parsed"));
        }
    }
    Ok(())
}

#[test]
fn a_revealed_version_is_bound_only_to_a_commit_begun_before_it_was_read() -> Result<(), String> {
    // Two sums of 1 with unknown outcomes; a read saw the first one's
    // version before the second began. Bound to the second, the reads
    // would close a cycle through client order.
    let unknown_sum = |client, call| {
        commit(
            client,
            call,
            None,
            vec![],
            vec![(5, Effect::Sum(1))],
            Outcome::Unknown,
        )
    };
    assert_accepted(&history(vec![
        unknown_sum(2, 8),
        unknown_sum(0, 0),
        read(1, 2, 3, &[5], &[Some((1, 1))]),
        set(1, 4, 5, X, 10, 2),
        read(2, 6, 7, &[X], &[Some((10, 2))]),
    ]))
}

fn eventual(mut op: Operation) -> Operation {
    if let OpKind::Read { eventual, .. } = &mut op.kind {
        *eventual = true;
    }
    op
}

#[test]
fn a_stale_strong_read_is_rejected_and_a_lagging_eventual_one_measured() -> Result<(), String> {
    use kv_consistency::staleness::measure;
    // 20 (version 2) was acknowledged at 3; reads at 10 still saw 10.
    let ops = |eventual_read: bool| {
        let stale = read(1, 10, 11, &[X], &[Some((10, 1))]);
        vec![
            set(0, 0, 1, X, 10, 1),
            set(0, 2, 3, X, 20, 2),
            if eventual_read {
                eventual(stale)
            } else {
                stale
            },
        ]
    };
    assert_rejected(&history(ops(false)), &[ViolationKind::StaleRead])?;
    // Where eventual reads are served from the primary, they are held to
    // the same standard.
    assert_rejected(&history(ops(true)), &[ViolationKind::StaleRead])?;
    let lagging = History {
        lagging_eventual_reads: true,
        ..history(ops(true))
    };
    assert_accepted(&lagging)?;
    let (staleness, _) = measure(&lagging);
    let expected = (1, 1, 1, std::time::Duration::from_nanos(7));
    let got = (
        staleness.eventual.reads,
        staleness.eventual.stale(),
        staleness.eventual.behind_max_p99().0,
        staleness.eventual.age_max_p99().0,
    );
    if got != expected || staleness.strong.reads != 0 {
        return Err(format!("measured {got:?}, strong {:?}", staleness.strong));
    }
    Ok(())
}
