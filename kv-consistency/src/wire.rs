//! Operations as JSON lines, for clients that run in processes of their own
//! (`kv-consistency client`) and report to the parent on stdout.
//!
//! ```text
//! {"client":3,"call":81234567,"ret":81299999,"op":"read","keys":[0],"results":[[17,"00000000000000050000"]],"eventual":false}
//! {"client":3,"call":81300000,"ret":null,"op":"commit","checks":[[0,null]],"mutations":[[0,{"set":9}]],"outcome":"unknown"}
//! ```
//!
//! Versionstamps are written as their 20 hex digits; times are the
//! client's [`Clock`](crate::recorder::Clock) readings.

use std::str::FromStr;

use kv::Versionstamp;
use serde::{Deserialize, Serialize};

use crate::history::{Effect, KeyId, Observed, OpKind, Operation, Outcome};

/// A line that is not an operation.
#[derive(Debug, thiserror::Error)]
#[error("not an operation line ({reason}): {line}")]
pub struct WireError {
    line: String,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    client: u32,
    call: u64,
    ret: Option<u64>,
    #[serde(flatten)]
    kind: Kind,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Kind {
    Read {
        keys: Vec<KeyId>,
        results: Vec<Option<(u64, String)>>,
        eventual: bool,
    },
    Commit {
        checks: Vec<(KeyId, Option<String>)>,
        mutations: Vec<(KeyId, WireEffect)>,
        outcome: WireOutcome,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireEffect {
    Set(u64),
    Delete,
    Sum(u64),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireOutcome {
    Committed(String),
    CheckFailed,
    Unknown,
}

/// One operation as one line of JSON (no newline).
pub fn to_line(op: &Operation) -> String {
    let kind = match &op.kind {
        OpKind::Read {
            keys,
            results,
            eventual,
        } => Kind::Read {
            keys: keys.clone(),
            results: results
                .iter()
                .map(|r| r.map(|o| (o.value, o.versionstamp.to_string())))
                .collect(),
            eventual: *eventual,
        },
        OpKind::Commit {
            checks,
            mutations,
            outcome,
        } => Kind::Commit {
            checks: checks
                .iter()
                .map(|(k, vs)| (*k, vs.map(|vs| vs.to_string())))
                .collect(),
            mutations: mutations
                .iter()
                .map(|&(k, e)| {
                    let e = match e {
                        Effect::Set(v) => WireEffect::Set(v),
                        Effect::Delete => WireEffect::Delete,
                        Effect::Sum(d) => WireEffect::Sum(d),
                    };
                    (k, e)
                })
                .collect(),
            outcome: match outcome {
                Outcome::Committed(vs) => WireOutcome::Committed(vs.to_string()),
                Outcome::CheckFailed => WireOutcome::CheckFailed,
                Outcome::Unknown => WireOutcome::Unknown,
            },
        },
    };
    let line = Line {
        client: op.client,
        call: op.call,
        ret: op.ret,
        kind,
    };
    serde_json::to_string(&line).expect("an operation always serializes")
}

/// Parses a line written by [`to_line`].
///
/// # Errors
/// When the line is not such an operation.
pub fn from_line(line: &str) -> Result<Operation, WireError> {
    let fail = |reason: String| WireError {
        line: line.to_owned(),
        reason,
    };
    let parsed: Line = serde_json::from_str(line).map_err(|e| fail(e.to_string()))?;
    let stamp = |s: &str| Versionstamp::from_str(s).map_err(|e| fail(e.to_string()));
    let kind = match parsed.kind {
        Kind::Read {
            keys,
            results,
            eventual,
        } => {
            if keys.len() != results.len() {
                return Err(fail("keys and results differ in number".into()));
            }
            OpKind::Read {
                keys,
                results: results
                    .into_iter()
                    .map(|r| {
                        r.map(|(value, vs)| {
                            Ok(Observed {
                                value,
                                versionstamp: stamp(&vs)?,
                            })
                        })
                        .transpose()
                    })
                    .collect::<Result<_, _>>()?,
                eventual,
            }
        }
        Kind::Commit {
            checks,
            mutations,
            outcome,
        } => OpKind::Commit {
            checks: checks
                .into_iter()
                .map(|(k, vs)| Ok((k, vs.map(|vs| stamp(&vs)).transpose()?)))
                .collect::<Result<_, _>>()?,
            mutations: mutations
                .into_iter()
                .map(|(k, e)| {
                    let e = match e {
                        WireEffect::Set(v) => Effect::Set(v),
                        WireEffect::Delete => Effect::Delete,
                        WireEffect::Sum(d) => Effect::Sum(d),
                    };
                    (k, e)
                })
                .collect(),
            outcome: match outcome {
                WireOutcome::Committed(vs) => Outcome::Committed(stamp(&vs)?),
                WireOutcome::CheckFailed => Outcome::CheckFailed,
                WireOutcome::Unknown => Outcome::Unknown,
            },
        },
    };
    Ok(Operation {
        client: parsed.client,
        call: parsed.call,
        ret: parsed.ret,
        kind,
    })
}
