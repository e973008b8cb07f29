//! The semantics of mutations, shared by every storage backend so that they
//! agree byte for byte: `sum`/`min`/`max` on KvU64 and V8 numbers, and the
//! key of a versionstamped set.

use num_bigint::{BigInt, Sign};

use crate::backend::MutationKind;
use crate::{Error, KvValue, Result, Versionstamp};

/// What a mutation leaves at its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The key now holds this value with this expiry (absolute Unix ms).
    Put {
        /// The new value.
        value: KvValue,
        /// Expiry, `None` for never.
        expire_at_ms: Option<u64>,
    },
    /// The key is now absent.
    Deleted,
}

/// The stored key of a versionstamped set: `prefix ++ 02 ++ hex ++ 00`.
pub fn versionstamped_key(prefix: &[u8], versionstamp: Versionstamp) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 22);
    key.extend_from_slice(prefix);
    key.push(0x02);
    key.extend_from_slice(versionstamp.to_string().as_bytes());
    key.push(0x00);
    key
}

/// Computes the effect of `kind` on a key whose current (unexpired) value is
/// `current`.
///
/// # Errors
/// [`Error::TypeMismatch`] with Deno's message when `sum`/`min`/`max` meet a
/// value or operand of the wrong type or leave their bounds.
pub fn apply(kind: &MutationKind, current: Option<&KvValue>) -> Result<Applied> {
    match kind {
        MutationKind::Set {
            value,
            expire_at_ms,
        }
        | MutationKind::SetSuffixVersionstampedKey {
            value,
            expire_at_ms,
        } => Ok(Applied::Put {
            value: value.clone(),
            expire_at_ms: *expire_at_ms,
        }),
        MutationKind::Delete => Ok(Applied::Deleted),
        MutationKind::Min(operand) => u64_op("min", operand, current, |a, b| a.min(b)),
        MutationKind::Max(operand) => u64_op("max", operand, current, |a, b| a.max(b)),
        MutationKind::Sum {
            value: KvValue::U64(operand),
            ..
        } => u64_op("sum", &KvValue::U64(*operand), current, |a, b| {
            a.wrapping_add(b)
        }),
        MutationKind::Sum {
            value,
            min,
            max,
            clamp,
        } => v8_sum(value, min.as_deref(), max.as_deref(), *clamp, current),
    }
}

fn put(value: KvValue) -> Applied {
    Applied::Put {
        value,
        expire_at_ms: None,
    }
}

fn u64_op(
    op: &str,
    operand: &KvValue,
    current: Option<&KvValue>,
    f: impl Fn(u64, u64) -> u64,
) -> Result<Applied> {
    let KvValue::U64(b) = operand else {
        return Err(Error::TypeMismatch(format!(
            "Failed to perform '{op}' mutation on a non-U64 operand"
        )));
    };
    match current {
        None => Ok(put(KvValue::U64(*b))),
        Some(KvValue::U64(a)) => Ok(put(KvValue::U64(f(*a, *b)))),
        Some(_) => Err(Error::TypeMismatch(format!(
            "Failed to perform '{op}' mutation on a non-U64 value in the database"
        ))),
    }
}

/// A number as the V8 sum understands it.
#[derive(Clone, Debug, PartialEq)]
enum Num {
    BigInt(BigInt),
    Number(f64),
    KvU64(u64),
}

impl Num {
    fn type_name(&self) -> &'static str {
        match self {
            Num::BigInt(_) => "BigInt",
            Num::Number(_) => "Number",
            Num::KvU64(_) => "KvU64",
        }
    }
}

const INVALID_PARAMS: &str = "Some of the parameters are not valid V8 values";

fn v8_sum(
    operand: &KvValue,
    min: Option<&[u8]>,
    max: Option<&[u8]>,
    clamp: bool,
    current: Option<&KvValue>,
) -> Result<Applied> {
    let invalid = || Error::TypeMismatch(INVALID_PARAMS.into());
    let KvValue::V8(bytes) = operand else {
        return Err(invalid());
    };
    let operand = v8::decode_number(bytes).ok_or_else(invalid)?;
    let parse_bound = |b: Option<&[u8]>| -> Result<Option<Num>> {
        match b {
            None | Some([]) => Ok(None),
            Some(b) => v8::decode_number(b).map(Some).ok_or_else(invalid),
        }
    };
    let min = parse_bound(min)?;
    let max = parse_bound(max)?;
    for bound in [&min, &max].into_iter().flatten() {
        if std::mem::discriminant(bound) != std::mem::discriminant(&operand) {
            return Err(Error::TypeMismatch(
                "Min/max parameters have different types than the operand".into(),
            ));
        }
    }
    let Some(current) = current else {
        return Ok(put(KvValue::V8(v8::encode_number(&operand))));
    };
    let stored = match current {
        KvValue::U64(n) => Num::KvU64(*n),
        KvValue::V8(b) => v8::decode_number(b)
            .ok_or_else(|| Error::TypeMismatch("unsupported value type".into()))?,
        KvValue::Bytes(_) => return Err(Error::TypeMismatch("unsupported value type".into())),
    };
    let no_bounds = min.is_none() && max.is_none() && !clamp;
    let result = match (&stored, &operand) {
        (Num::KvU64(a), Num::BigInt(b)) if no_bounds => match u64::try_from(b) {
            Ok(b) => return Ok(put(KvValue::U64(a.wrapping_add(b)))),
            Err(_) => return Err(mismatch(&stored, &operand)),
        },
        (Num::BigInt(a), Num::BigInt(b)) => Num::BigInt(a + b),
        (Num::Number(a), Num::Number(b)) => Num::Number(a + b),
        _ => return Err(mismatch(&stored, &operand)),
    };
    let result = match result {
        Num::BigInt(r) => {
            let lo = match &min {
                Some(Num::BigInt(b)) => Some(b),
                _ => None,
            };
            let hi = match &max {
                Some(Num::BigInt(b)) => Some(b),
                _ => None,
            };
            Num::BigInt(bounded(r, lo, hi, clamp)?)
        }
        Num::Number(r) => {
            let lo = match &min {
                Some(Num::Number(b)) => Some(b),
                _ => None,
            };
            let hi = match &max {
                Some(Num::Number(b)) => Some(b),
                _ => None,
            };
            Num::Number(bounded(r, lo, hi, clamp)?)
        }
        other => other,
    };
    Ok(put(KvValue::V8(v8::encode_number(&result))))
}

/// Applies the bounds of a V8 sum: the minimum first, then the maximum, so
/// with a minimum above the maximum a clamped result is the maximum (as in
/// Deno). Comparisons with NaN are false, so a NaN result passes, as in Deno.
fn bounded<T: PartialOrd + Clone>(r: T, lo: Option<&T>, hi: Option<&T>, clamp: bool) -> Result<T> {
    let clamp_to = |bound: &T| {
        if clamp {
            Ok(bound.clone())
        } else {
            Err(Error::TypeMismatch(
                "The result of a Sum operation would exceed its range limit".into(),
            ))
        }
    };
    let r = match lo {
        Some(lo) if r < *lo => clamp_to(lo)?,
        _ => r,
    };
    match hi {
        Some(hi) if r > *hi => clamp_to(hi),
        _ => Ok(r),
    }
}

fn mismatch(stored: &Num, operand: &Num) -> Error {
    Error::TypeMismatch(format!(
        "Cannot sum {} with {}",
        stored.type_name(),
        operand.type_name()
    ))
}

/// The few V8 value-serializer forms the sum needs.
mod v8 {
    use super::*;

    fn varint(input: &[u8]) -> Option<(u64, &[u8])> {
        let mut out = 0u64;
        for (i, &b) in input.iter().enumerate().take(10) {
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some((out, &input[i + 1..]));
            }
        }
        None
    }

    pub(super) fn decode_number(bytes: &[u8]) -> Option<Num> {
        let rest = bytes.strip_prefix(&[0xff])?;
        let (_version, mut rest) = varint(rest)?;
        while let Some(r) = rest.strip_prefix(&[0x00]) {
            rest = r;
        }
        let (&tag, rest) = rest.split_first()?;
        let (num, rest) = match tag {
            b'I' => {
                let (z, rest) = varint(rest)?;
                let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
                (Num::Number(v as f64), rest)
            }
            b'U' => {
                let (v, rest) = varint(rest)?;
                (Num::Number(v as f64), rest)
            }
            b'N' => {
                let body: [u8; 8] = rest.get(..8)?.try_into().ok()?;
                (Num::Number(f64::from_le_bytes(body)), &rest[8..])
            }
            b'Z' => {
                let (bitfield, rest) = varint(rest)?;
                let len = usize::try_from(bitfield >> 1).ok()?;
                let mag = rest.get(..len)?;
                let sign = if bitfield & 1 == 1 {
                    Sign::Minus
                } else {
                    Sign::Plus
                };
                (Num::BigInt(BigInt::from_bytes_le(sign, mag)), &rest[len..])
            }
            _ => return None,
        };
        rest.is_empty().then_some(num)
    }

    pub(super) fn encode_number(n: &Num) -> Vec<u8> {
        let mut out = vec![0xff, 0x0f];
        match n {
            Num::Number(f) => {
                out.push(b'N');
                out.extend_from_slice(&f.to_le_bytes());
            }
            Num::BigInt(i) => {
                let (sign, mut mag) = i.to_bytes_le();
                if mag.is_empty() {
                    mag.push(0);
                }
                let mut bitfield = (mag.len() as u64) << 1 | u64::from(sign == Sign::Minus);
                out.push(b'Z');
                loop {
                    let byte = (bitfield & 0x7f) as u8;
                    bitfield >>= 7;
                    if bitfield == 0 {
                        out.push(byte);
                        break;
                    }
                    out.push(byte | 0x80);
                }
                out.extend_from_slice(&mag);
            }
            Num::KvU64(_) => unreachable!("KvU64 results are stored as LE64"),
        }
        out
    }
}

#[cfg(test)]
mod tests;
