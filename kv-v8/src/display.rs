//! Readable, JSON-like text for values shown to people.

use std::fmt::{self, Write};

use kv_core::KvValue;

use crate::value::{JsValue, PropertyKey, TypedArray, TypedArrayKind};

/// How many elements of a typed array or bytes of a buffer are shown.
const MAX_SHOWN: usize = 64;

/// A JavaScript number as `String(n)` spells it (`-0` as `0`): the
/// shortest digits that read back as `n`, positional from 1e-6 up to
/// 1e21 and in exponent form (`1e+21`, `1.5e-7`) outside.
pub(crate) fn number_to_string(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    let abs = n.abs();
    if !(1e-6..1e21).contains(&abs) {
        let s = format!("{n:e}");
        return match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        };
    }
    // Rust's `Display` prints the same shortest digits positionally (and
    // no `.0` for integers).
    format!("{n}")
}

fn write_number(f: &mut impl Write, n: f64) -> fmt::Result {
    if n == 0.0 && n.is_sign_negative() {
        return f.write_str("-0");
    }
    f.write_str(&number_to_string(n))
}

fn write_string(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if u32::from(c) < 0x20 || c == '\u{7f}' => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

fn write_key(f: &mut impl Write, k: &PropertyKey) -> fmt::Result {
    match k {
        PropertyKey::Index(i) => write!(f, "\"{i}\""),
        PropertyKey::String(s) => write_string(f, s),
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A `Date` as `toISOString` writes it, or `Invalid Date`.
pub(crate) fn date_to_iso(ms: f64) -> String {
    // JavaScript dates span ±8.64e15 ms around the epoch.
    if !ms.is_finite() || ms.abs() > 8.64e15 {
        return "Invalid Date".into();
    }
    // Bounded above, so the cast is exact after truncation.
    #[allow(clippy::cast_possible_truncation)]
    let ms = ms.trunc() as i64;
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    let year = if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else {
        format!("{}{:06}", if y < 0 { '-' } else { '+' }, y.abs())
    };
    format!("{year}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

fn write_elements(f: &mut impl Write, t: &TypedArray) -> fmt::Result {
    let size = t.kind.element_size();
    let count = t.bytes.len() / size;
    write!(f, "{}({count}) [", t.kind.name())?;
    for (i, c) in t.bytes.chunks_exact(size).take(MAX_SHOWN).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        let mut b8 = [0u8; 8];
        b8[..size].copy_from_slice(c);
        let b2 = [b8[0], b8[1]];
        let b4 = [b8[0], b8[1], b8[2], b8[3]];
        match t.kind {
            TypedArrayKind::Int8 => write!(f, "{}", i8::from_le_bytes([b8[0]]))?,
            TypedArrayKind::Uint8 | TypedArrayKind::Uint8Clamped => write!(f, "{}", b8[0])?,
            TypedArrayKind::DataView => write!(f, "{:02x}", b8[0])?,
            TypedArrayKind::Int16 => write!(f, "{}", i16::from_le_bytes(b2))?,
            TypedArrayKind::Uint16 => write!(f, "{}", u16::from_le_bytes(b2))?,
            TypedArrayKind::Int32 => write!(f, "{}", i32::from_le_bytes(b4))?,
            TypedArrayKind::Uint32 => write!(f, "{}", u32::from_le_bytes(b4))?,
            TypedArrayKind::Float16 => write_number(f, half_to_f64(u16::from_le_bytes(b2)))?,
            TypedArrayKind::Float32 => write_number(f, f64::from(f32::from_le_bytes(b4)))?,
            TypedArrayKind::Float64 => write_number(f, f64::from_le_bytes(b8))?,
            TypedArrayKind::BigInt64 => write!(f, "{}n", i64::from_le_bytes(b8))?,
            TypedArrayKind::BigUint64 => write!(f, "{}n", u64::from_le_bytes(b8))?,
        }
    }
    if count > MAX_SHOWN {
        write!(f, ", … {} more", count - MAX_SHOWN)?;
    }
    f.write_char(']')
}

fn write_value(f: &mut impl Write, v: &JsValue) -> fmt::Result {
    match v {
        JsValue::Undefined => f.write_str("undefined"),
        JsValue::Null => f.write_str("null"),
        JsValue::Bool(b) => write!(f, "{b}"),
        JsValue::Number(n) => write_number(f, *n),
        JsValue::BigInt(n) => write!(f, "{n}n"),
        JsValue::String(s) => write_string(f, s),
        JsValue::Array(a) => {
            f.write_char('[')?;
            let mut first = true;
            let mut holes = 0usize;
            let mut sep = |f: &mut dyn Write| -> fmt::Result {
                if !std::mem::take(&mut first) {
                    f.write_str(", ")?;
                }
                Ok(())
            };
            for item in &a.items {
                match item {
                    None => holes += 1,
                    Some(v) => {
                        if holes > 0 {
                            sep(f)?;
                            write!(f, "<{holes} empty>")?;
                            holes = 0;
                        }
                        sep(f)?;
                        write_value(f, v)?;
                    }
                }
            }
            if holes > 0 {
                sep(f)?;
                write!(f, "<{holes} empty>")?;
            }
            for (k, v) in &a.props {
                sep(f)?;
                write_key(f, k)?;
                f.write_str(": ")?;
                write_value(f, v)?;
            }
            f.write_char(']')
        }
        JsValue::Object(props) => {
            if props.is_empty() {
                return f.write_str("{}");
            }
            f.write_char('{')?;
            for (i, (k, v)) in props.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_key(f, k)?;
                f.write_str(": ")?;
                write_value(f, v)?;
            }
            f.write_char('}')
        }
        JsValue::Date(ms) => write!(f, "Date({})", date_to_iso(*ms)),
        JsValue::RegExp(re) => write!(f, "/{}/{}", re.source, re.flags),
        JsValue::Map(entries) => {
            if entries.is_empty() {
                return f.write_str("Map {}");
            }
            f.write_str("Map {")?;
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_value(f, k)?;
                f.write_str(" => ")?;
                write_value(f, v)?;
            }
            f.write_char('}')
        }
        JsValue::Set(items) => {
            if items.is_empty() {
                return f.write_str("Set {}");
            }
            f.write_str("Set {")?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_value(f, v)?;
            }
            f.write_char('}')
        }
        JsValue::ArrayBuffer(bytes) => {
            write!(f, "ArrayBuffer({}) [", bytes.len())?;
            for (i, b) in bytes.iter().take(MAX_SHOWN).enumerate() {
                if i > 0 {
                    f.write_char(' ')?;
                }
                write!(f, "{b:02x}")?;
            }
            if bytes.len() > MAX_SHOWN {
                write!(f, " … {} more", bytes.len() - MAX_SHOWN)?;
            }
            f.write_char(']')
        }
        JsValue::TypedArray(t) => write_elements(f, t),
        JsValue::Error(e) => {
            write!(f, "{}(", e.name.as_str())?;
            if let Some(m) = &e.message {
                write_string(f, m)?;
            }
            if let Some(c) = &e.cause {
                if e.message.is_some() {
                    f.write_str(", ")?;
                }
                f.write_str("cause: ")?;
                write_value(f, c)?;
            }
            f.write_char(')')
        }
        JsValue::BooleanObject(b) => write!(f, "[Boolean: {b}]"),
        JsValue::NumberObject(n) => {
            f.write_str("[Number: ")?;
            write_number(f, *n)?;
            f.write_char(']')
        }
        JsValue::BigIntObject(n) => write!(f, "[BigInt: {n}n]"),
        JsValue::StringObject(s) => {
            f.write_str("[String: ")?;
            write_string(f, s)?;
            f.write_char(']')
        }
        JsValue::Ref(n) => write!(f, "<ref *{n}>"),
    }
}

impl fmt::Display for JsValue {
    /// JSON-like text: objects and arrays as in JSON, and the rest as
    /// JavaScript shows it — `undefined`, `12n`, `Date(2024-01-01T00:00:00.000Z)`,
    /// `/a+/g`, `Map {1 => "a"}`, `Set {1}`, `Uint8Array(2) [1, 2]`,
    /// `TypeError("boom", cause: 1)`, holes as `<2 empty>`, and a repeated
    /// or circular object as `<ref *N>` (its pre-order index).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_value(f, self)
    }
}

impl JsValue {
    /// The [`Display`](fmt::Display) text: readable JSON-like text for logs,
    /// the CLI and other places where people read values.
    pub fn to_json_like(&self) -> String {
        self.to_string()
    }
}

/// Readable text for a stored value, whatever its encoding: V8 values as
/// [`JsValue::to_json_like`], raw bytes as `Uint8Array(n) [...]`, and
/// `KvU64` as `KvU64(5n)`. Never fails: a V8 value that does not decode
/// shows as `<undecodable V8 value: reason> hex`.
pub fn display_value(value: &KvValue) -> String {
    match value {
        KvValue::V8(bytes) => match crate::decode(bytes) {
            Ok(v) => v.to_json_like(),
            Err(e) => {
                let mut s = format!("<undecodable V8 value: {e}>");
                for b in bytes.iter().take(MAX_SHOWN) {
                    let _ = write!(s, " {b:02x}");
                }
                if bytes.len() > MAX_SHOWN {
                    s.push_str(" …");
                }
                s
            }
        },
        KvValue::Bytes(bytes) => {
            let mut s = String::new();
            let _ = write_elements(&mut s, &TypedArray::uint8(bytes.clone()));
            s
        }
        KvValue::U64(n) => format!("KvU64({n}n)"),
    }
}
