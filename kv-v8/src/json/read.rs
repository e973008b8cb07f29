//! Typed JSON to keys and values, as kv-utils' `toKey` and `toValue` read
//! it (and the few things it writes but cannot read back).

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use kv_core::{Key, KeyPart, KvValue};
use num_bigint::BigInt;

use super::tree::Json;
use super::write::escape_regexp_source;
use super::{JsonError, date};
use crate::TypedArrayKind;
use crate::value::{ErrorName, JsArray, JsError, JsRegExp, JsValue, PropertyKey, TypedArray};

/// `@std/encoding`'s `decodeBase64Url`: the URL-safe alphabet, padding
/// optional.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Where in the document a value is, for error messages: `value.value[2]`.
pub(super) enum Path<'a> {
    Root(&'static str),
    Member(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Member(parent, name) => {
                let ident = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '$');
                if ident {
                    write!(f, "{parent}.{name}")
                } else {
                    write!(f, "{parent}[{name:?}]")
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

impl<'a> Path<'a> {
    fn member(&'a self, name: &'a str) -> Path<'a> {
        Path::Member(self, name)
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path::Index(self, i)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, JsonError> {
        Err(JsonError::Invalid {
            path: self.to_string(),
            message: message.into(),
        })
    }

    fn expected<T>(&self, what: &str, found: &Json) -> Result<T, JsonError> {
        self.fail(format!("expected {what}, found {}", found.describe()))
    }
}

/// A typed value's `type` and its `value` member (`Json::Null` when
/// missing, as `undefined` would be).
fn typed<'j>(json: &'j Json, path: &Path<'_>) -> Result<(&'j str, &'j Json), JsonError> {
    let Json::Object(_) = json else {
        return path.expected("a typed value ({\"type\": …, \"value\": …})", json);
    };
    let ty = match json.member("type") {
        Some(Json::String(t)) => t.as_str(),
        Some(other) => return path.member("type").expected("a type name", other),
        None => return path.fail("missing \"type\""),
    };
    Ok((ty, json.member("value").unwrap_or(&Json::Null)))
}

fn string<'j>(json: &'j Json, path: &Path<'_>, what: &str) -> Result<&'j str, JsonError> {
    match json {
        Json::String(s) => Ok(s),
        other => path.expected(what, other),
    }
}

pub(super) fn key(json: &Json, path: &Path<'_>) -> Result<Key, JsonError> {
    let Json::Array(parts) = json else {
        return path.expected("an array of key parts", json);
    };
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| key_part(part, &path.index(i)))
        .collect::<Result<Vec<_>, _>>()
        .map(Key)
}

fn key_part(json: &Json, path: &Path<'_>) -> Result<KeyPart, JsonError> {
    let (ty, value) = typed(json, path)?;
    let vpath = path.member("value");
    match ty {
        "string" => Ok(KeyPart::String(
            string(value, &vpath, "a string")?.to_owned(),
        )),
        "number" => Ok(KeyPart::Float(number(value, &vpath)?)),
        "bigint" => {
            let n = bigint(value, &vpath)?;
            if n.bits() > 8 * 255 {
                return vpath.fail("a bigint key part may have at most 255 bytes of magnitude");
            }
            Ok(KeyPart::Int(n))
        }
        "boolean" => match value {
            Json::Bool(b) => Ok(KeyPart::from(*b)),
            other => vpath.expected("true or false", other),
        },
        "Uint8Array" => Ok(KeyPart::Bytes(bytes(json, value, path)?)),
        other => path.member("type").fail(format!(
            "{other:?} is not a key part type (string, number, bigint, boolean, Uint8Array)"
        )),
    }
}

fn number(json: &Json, path: &Path<'_>) -> Result<f64, JsonError> {
    match json {
        Json::Number(n) => Ok(*n),
        Json::String(s) if s == "NaN" => Ok(f64::NAN),
        Json::String(s) if s == "Infinity" => Ok(f64::INFINITY),
        Json::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        other => path.expected("a number, \"NaN\", \"Infinity\" or \"-Infinity\"", other),
    }
}

/// `BigInt(string)`: decimal with an optional sign, or unsigned
/// `0x`/`0o`/`0b`, surrounding whitespace ignored; the empty string is 0.
fn bigint(json: &Json, path: &Path<'_>) -> Result<BigInt, JsonError> {
    let text = string(json, path, "a string of decimal digits")?.trim();
    let bad = || path.fail(format!("{text:?} is not an integer"));
    if text.is_empty() {
        return Ok(BigInt::default());
    }
    let (radix, digits, negative) = match text.get(..2) {
        Some("0x" | "0X") => (16, &text[2..], false),
        Some("0o" | "0O") => (8, &text[2..], false),
        Some("0b" | "0B") => (2, &text[2..], false),
        _ => match text.as_bytes()[0] {
            b'-' => (10, &text[1..], true),
            b'+' => (10, &text[1..], false),
            _ => (10, text, false),
        },
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return bad();
    }
    let Some(n) = BigInt::parse_bytes(digits.as_bytes(), radix) else {
        return bad();
    };
    Ok(if negative { -n } else { n })
}

/// The bytes of a `Uint8Array`, `ArrayBuffer`, `DataView` or typed array:
/// base64url, cut to `byteLength` when that is given and shorter.
fn bytes(json: &Json, value: &Json, path: &Path<'_>) -> Result<Vec<u8>, JsonError> {
    let vpath = path.member("value");
    let text = string(value, &vpath, "a base64url string")?;
    let mut bytes = BASE64URL
        .decode(text)
        .or_else(|e| vpath.fail(format!("not base64url: {e}")))?;
    match json.member("byteLength") {
        None | Some(Json::Null) => {}
        Some(Json::Number(n)) if n.fract() == 0.0 && *n >= 0.0 => {
            // Whole and non-negative: the cast saturates only beyond any
            // real length.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let len = *n as usize;
            if len > bytes.len() {
                return path.member("byteLength").fail(format!(
                    "byteLength {len} is more than the {} bytes of the value",
                    bytes.len()
                ));
            }
            bytes.truncate(len);
        }
        Some(other) => {
            return path
                .member("byteLength")
                .expected("a non-negative integer", other);
        }
    }
    Ok(bytes)
}

/// The value Deno stores for a typed value: a top-level `KvU64` or
/// `Uint8Array` in their own encodings, anything else as V8.
pub(super) fn kv_value(json: &Json, path: &Path<'_>) -> Result<KvValue, JsonError> {
    let (ty, value) = typed(json, path)?;
    match ty {
        "KvU64" => Ok(KvValue::U64(kv_u64(value, &path.member("value"))?)),
        "Uint8Array" => Ok(KvValue::Bytes(bytes(json, value, path)?)),
        _ => Ok(KvValue::V8(crate::encode(&js(json, path)?)?)),
    }
}

fn kv_u64(json: &Json, path: &Path<'_>) -> Result<u64, JsonError> {
    let text = string(json, path, "a string of decimal digits")?;
    let n = bigint(json, path)?;
    u64::try_from(&n).or_else(|_| {
        path.fail(format!(
            "{text:?} is outside a KvU64's range (0 to 18446744073709551615)"
        ))
    })
}

pub(super) fn js(json: &Json, path: &Path<'_>) -> Result<JsValue, JsonError> {
    js_at(json, path, 0)
}

/// A top-level value: a `KvU64` is the bigint it holds (as
/// [`crate::from_kv_value`] reads [`KvValue::U64`]), not a nested one's
/// object.
pub(super) fn top_js(json: &Json, path: &Path<'_>) -> Result<JsValue, JsonError> {
    match typed(json, path)? {
        ("KvU64", value) => Ok(JsValue::BigInt(
            kv_u64(value, &path.member("value"))?.into(),
        )),
        _ => js(json, path),
    }
}

/// The recursive step: containers here, everything else in [`scalar`]. Kept
/// small, as each level of a deep value stacks one frame of it (and of the
/// container's function).
fn js_at(json: &Json, path: &Path<'_>, depth: usize) -> Result<JsValue, JsonError> {
    if depth > crate::MAX_DEPTH {
        return path.fail(format!(
            "the value nests deeper than {} levels",
            crate::MAX_DEPTH
        ));
    }
    let (ty, value) = typed(json, path)?;
    let vpath = path.member("value");
    match ty {
        "Array" => array(value, &vpath, depth + 1),
        "object" => object(value, &vpath, depth + 1),
        "Map" => map(value, &vpath, depth + 1),
        "Set" => set(value, &vpath, depth + 1),
        "Error" | "EvalError" | "RangeError" | "ReferenceError" | "SyntaxError" | "TypeError"
        | "URIError" => {
            let name = ErrorName::from_name(ty).expect("one of the names matched");
            error(name, value, &vpath, depth + 1)
        }
        _ => scalar(ty, json, value, path),
    }
}

fn items<'j>(value: &'j Json, path: &Path<'_>, what: &str) -> Result<&'j [Json], JsonError> {
    match value {
        Json::Array(items) => Ok(items),
        other => path.expected(what, other),
    }
}

// The container readers loop instead of chaining iterator adapters: in an
// unoptimised build each adapter is a stack frame per level of nesting.

fn array(value: &Json, path: &Path<'_>, depth: usize) -> Result<JsValue, JsonError> {
    let list = items(value, path, "an array of typed values")?;
    let mut items = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        items.push(match item {
            // `JSON.stringify` writes a hole as null.
            Json::Null => None,
            item => Some(js_at(item, &path.index(i), depth)?),
        });
    }
    Ok(JsValue::Array(JsArray {
        items,
        props: Vec::new(),
    }))
}

fn object(value: &Json, path: &Path<'_>, depth: usize) -> Result<JsValue, JsonError> {
    let Json::Object(members) = value else {
        return path.expected("an object of typed values", value);
    };
    let mut props = Vec::with_capacity(members.len());
    for (k, v) in members {
        props.push((PropertyKey::new(k), js_at(v, &path.member(k), depth)?));
    }
    Ok(JsValue::Object(js_property_order(props)))
}

fn map(value: &Json, path: &Path<'_>, depth: usize) -> Result<JsValue, JsonError> {
    let list = items(value, path, "an array of [key, value] pairs")?;
    let mut entries = Vec::with_capacity(list.len());
    for (i, pair) in list.iter().enumerate() {
        let p = path.index(i);
        let Json::Array(kv) = pair else {
            return p.expected("a [key, value] pair", pair);
        };
        let [k, v] = kv.as_slice() else {
            return p.expected("a [key, value] pair", pair);
        };
        entries.push((js_at(k, &p.index(0), depth)?, js_at(v, &p.index(1), depth)?));
    }
    Ok(JsValue::Map(entries))
}

fn set(value: &Json, path: &Path<'_>, depth: usize) -> Result<JsValue, JsonError> {
    let list = items(value, path, "an array of typed values")?;
    let mut items = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        items.push(js_at(item, &path.index(i), depth)?);
    }
    Ok(JsValue::Set(items))
}

/// Every type that holds no other value.
#[inline(never)]
fn scalar(ty: &str, json: &Json, value: &Json, path: &Path<'_>) -> Result<JsValue, JsonError> {
    let vpath = path.member("value");
    Ok(match ty {
        "undefined" => JsValue::Undefined,
        "null" => match value {
            Json::Null => JsValue::Null,
            other => return vpath.expected("null", other),
        },
        "boolean" => match value {
            Json::Bool(b) => JsValue::Bool(*b),
            other => return vpath.expected("true or false", other),
        },
        "number" => JsValue::Number(number(value, &vpath)?),
        "bigint" => JsValue::BigInt(bigint(value, &vpath)?),
        "string" => JsValue::String(string(value, &vpath, "a string")?.to_owned()),
        "KvU64" => {
            // What Deno stores for a `Deno.KvU64` inside another value.
            let n = kv_u64(value, &vpath)?;
            JsValue::object([("value", JsValue::BigInt(n.into()))])
        }
        "Date" => match value {
            // `toJSON` of an invalid date; kv-utils would read it as the
            // epoch (`new Date(null)`), which is not what was written.
            Json::Null => JsValue::Date(f64::NAN),
            Json::String(s) if s == "Invalid Date" => JsValue::Date(f64::NAN),
            Json::String(s) => match date::parse_iso(s) {
                Some(ms) => JsValue::Date(ms),
                None => {
                    return vpath.fail(format!(
                        "{s:?} is not an ISO 8601 date-time (like 2024-01-31T12:00:00.000Z)"
                    ));
                }
            },
            other => return vpath.expected("an ISO date string or null", other),
        },
        "RegExp" => regexp(string(value, &vpath, "a /source/flags string")?, &vpath)?,
        "ArrayBuffer" => JsValue::ArrayBuffer(bytes(json, value, path)?),
        name => match TypedArrayKind::from_name(name) {
            Some(kind) => {
                let bytes = bytes(json, value, path)?;
                let size = kind.element_size();
                if bytes.len() % size != 0 {
                    return vpath.fail(format!(
                        "{} bytes is not a whole number of {name} elements ({size} bytes each)",
                        bytes.len()
                    ));
                }
                JsValue::TypedArray(TypedArray { kind, bytes })
            }
            None => {
                return path
                    .member("type")
                    .fail(format!("{name:?} is not a value type"));
            }
        },
    })
}

/// `"/source/flags"` as kv-utils reads it: the flags after the last `/`,
/// the source between the first and the last, stored as V8 stores
/// `new RegExp(source, flags)`.
fn regexp(text: &str, path: &Path<'_>) -> Result<JsValue, JsonError> {
    let bad = |why: &str| path.fail(format!("{text:?} is not a RegExp: {why}"));
    let Some(body) = text.strip_prefix('/') else {
        return bad("it must look like /source/flags");
    };
    let Some((source, flags)) = body.rsplit_once('/') else {
        return bad("it must look like /source/flags");
    };
    let Some(bits) = crate::tag::regexp_flags_from_str(flags) else {
        return bad("unknown or repeated flags");
    };
    if flags.contains('u') && flags.contains('v') {
        return bad("the u and v flags exclude each other");
    }
    let flags = crate::tag::regexp_flags_to_string(bits).expect("bits of known flags");
    Ok(JsValue::RegExp(Box::new(JsRegExp {
        source: escape_regexp_source(source),
        flags,
    })))
}

fn error(
    name: ErrorName,
    value: &Json,
    path: &Path<'_>,
    depth: usize,
) -> Result<JsValue, JsonError> {
    if !matches!(value, Json::Object(_)) {
        return path.expected("an object with message, cause and stack", value);
    }
    let text = |field: &'static str| -> Result<Option<String>, JsonError> {
        match value.member(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => path.member(field).expected("a string", other),
        }
    };
    let message = text("message")?;
    let stack = text("stack")?;
    // kv-utils reads a cause only when it is there (`cause ? … : …`).
    let cause = match value.member("cause") {
        None | Some(Json::Null) => None,
        Some(c) => Some(js_at(c, &path.member("cause"), depth)?),
    };
    Ok(JsValue::Error(Box::new(JsError {
        name,
        message,
        stack,
        cause,
    })))
}

/// Properties in the order a JavaScript object keeps them: array indices
/// first, ascending, then names in the order they were first set; a name
/// set twice keeps its first place and its last value (as `JSON.parse`).
pub(super) fn js_property_order(props: Vec<(PropertyKey, JsValue)>) -> Vec<(PropertyKey, JsValue)> {
    let mut out: Vec<(PropertyKey, JsValue)> = Vec::with_capacity(props.len());
    let mut seen: HashMap<PropertyKey, usize> = HashMap::new();
    let mut has_index = false;
    for (k, v) in props {
        has_index |= matches!(k, PropertyKey::Index(_));
        // Small objects, the common case, are searched in place.
        let found = if out.len() < 16 {
            out.iter().position(|(existing, _)| *existing == k)
        } else {
            if seen.is_empty() {
                seen.extend(out.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)));
            }
            seen.get(&k).copied()
        };
        match found {
            Some(i) => out[i].1 = v,
            None => {
                if !seen.is_empty() {
                    seen.insert(k.clone(), out.len());
                }
                out.push((k, v));
            }
        }
    }
    if has_index {
        // Stable, so names keep their order after the indices.
        out.sort_by(|(a, _), (b, _)| match (a, b) {
            (PropertyKey::Index(x), PropertyKey::Index(y)) => x.cmp(y),
            (PropertyKey::Index(_), PropertyKey::String(_)) => std::cmp::Ordering::Less,
            (PropertyKey::String(_), PropertyKey::Index(_)) => std::cmp::Ordering::Greater,
            (PropertyKey::String(_), PropertyKey::String(_)) => std::cmp::Ordering::Equal,
        });
    }
    out
}
