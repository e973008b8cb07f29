//! Keys, values and entries as JSON, in the typed form of `@deno/kv-utils`
//! (its `json.ts` and the NDJSON of `import_export.ts`), and plain JSON.
//!
//! Every value is an object naming its JavaScript type, so any value Deno
//! KV stores survives the trip through text:
//!
//! ```json
//! {"key":[{"type":"string","value":"users"},{"type":"bigint","value":"1"}],
//!  "value":{"type":"object","value":{"name":{"type":"string","value":"Ada"}}},
//!  "versionstamp":"00000000000000010000"}
//! ```
//!
//! (one line in a file). The pieces:
//!
//! - keys: [`encode_key`] and [`decode_key`], a JSON array of parts
//!   (`string`, `number`, `bigint`, `boolean`, `Uint8Array`);
//! - values: [`encode_value`] and [`decode_value`] for a stored
//!   [`KvValue`] (V8 through [`JsValue`], [`KvValue::U64`] as `KvU64`,
//!   [`KvValue::Bytes`] as a top-level `Uint8Array`, as Deno stores them),
//!   [`encode_js`] and [`decode_js`] for a [`JsValue`];
//! - entries: [`encode_line`] writes one NDJSON line, `{"key":…,"value":…,
//!   "versionstamp":"<20 hex>"}` with an optional `"expireAt"` (Unix
//!   milliseconds; kv-utils ignores fields it does not know), and
//!   [`decode_line`] and [`Lines`] read them back, with errors that name
//!   the line and the JSON path of what is wrong;
//! - [`Encoder`] does all of that into a caller's buffer, in a chosen
//!   [`Dialect`];
//! - plain JSON: [`from_plain`] and [`parse_plain`] give the value
//!   `JSON.parse` would give a Deno program, for people who type `{"a": 1}`.
//!
//! ```
//! use kv_core::{KvEntry, KvValue, Versionstamp, key};
//! use kv_v8::json;
//!
//! let entry = KvEntry {
//!     key: key!["counters", "visits"],
//!     value: KvValue::U64(7),
//!     versionstamp: Versionstamp::from_counter(1),
//! };
//! let line = json::encode_line(&entry, None)?;
//! assert_eq!(
//!     line,
//!     r#"{"key":[{"type":"string","value":"counters"},{"type":"string","value":"visits"}],"value":{"type":"KvU64","value":"7"},"versionstamp":"00000000000000010000"}"#
//!         .to_owned() + "\n"
//! );
//! let back = json::decode_line(&line)?;
//! assert_eq!((back.key, back.value), (entry.key, entry.value));
//!
//! // Plain JSON, as Deno stores what `JSON.parse` returns.
//! let value = json::parse_plain(r#"{"name": "Ada", "tags": ["math"]}"#)?;
//! assert_eq!(value.to_json_like(), r#"{"name": "Ada", "tags": ["math"]}"#);
//! # Ok::<(), json::JsonError>(())
//! ```
//!
//! # Reading
//!
//! The decoders read what kv-utils reads: base64url with or without
//! padding, `"NaN"`, `"Infinity"` and `"-Infinity"` for numbers, fields in
//! any order, unknown fields ignored, `byteLength` optional. They also read
//! the few things kv-utils writes but cannot read back: `null` for an
//! invalid `Date` (kv-utils would make the epoch of it), and `null`
//! elements of an `Array` (holes, which `JSON.stringify` writes as `null`)
//! as holes. A `RegExp`'s source is stored as V8 stores what
//! `new RegExp(source, flags)` is given (V8 escapes `/` and line breaks),
//! and an object's properties in JavaScript's order (array indices first,
//! ascending). A nested `KvU64` is the plain object `{ value: n }`, which
//! is what Deno stores for a `Deno.KvU64` inside another value.
//!
//! # What the format cannot carry
//!
//! kv-utils' format has no place for these, so they do not survive a trip
//! through it (in either [`Dialect`]); everything else does, byte for byte
//! in V8 (see [`Dialect::Lossless`]):
//!
//! - an array's non-index properties (`arr.foo = 1`) are dropped;
//! - a boxed primitive (`new String("ab")`) becomes a plain object of its
//!   own enumerable properties (`{0: "a", 1: "b"}`), as kv-utils writes it;
//! - a shared object is written once per reference, and read back as
//!   separate copies; a cycle is [`JsonError::Unrepresentable`];
//! - a NaN is read back as the canonical NaN.
//!
//! A `Float16Array` is written as `{"type":"Float16Array",…}`, which this
//! module reads but kv-utils (written before it existed) does not.

mod date;
mod line;
mod plain;
mod read;
mod tree;
mod write;

use kv_core::{Key, KvEntry, KvValue, ValueRef, Versionstamp};

use crate::JsValue;

pub use line::{Line, LineError, Lines};
pub use plain::{from_plain, parse_plain};

/// Why JSON could not be read as a key, a value or an entry, or a value
/// could not be written as JSON.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The text is not JSON.
    #[error("not valid JSON at column {column}: {message}")]
    Syntax {
        /// The column (1-based, in characters) of the problem.
        column: usize,
        /// What was expected there.
        message: String,
    },
    /// The text stops in the middle of the JSON (a truncated line).
    #[error("the JSON ends early, at column {column} (is the line truncated?)")]
    Truncated {
        /// The column (1-based) where more was expected.
        column: usize,
    },
    /// The JSON is not in the typed form: `path` names the part of the
    /// document (`value.value.name`, `key[1]`), `message` what is wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// Where, as a path of member names and indices from the top.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A value the format cannot hold (a cycle of objects).
    #[error("{path}: {message}")]
    Unrepresentable {
        /// Where in the value, as a path of the JSON that would be written.
        path: String,
        /// Why.
        message: String,
    },
    /// The stored V8 bytes could not be decoded, or the value read could
    /// not be encoded as V8.
    #[error(transparent)]
    V8(#[from] crate::Error),
}

/// How closely to follow kv-utils' output where kv-utils loses information.
///
/// Both dialects write the same format, and kv-utils reads both back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// kv-utils' format, written so that reading it back (with this module
    /// or with kv-utils) gives the same JavaScript value, and so the same
    /// V8 bytes: `-0` is written as `-0` (which `JSON.parse` keeps), an
    /// `Error` without an own `message` is written without one, and a
    /// `cause` or `stack` that JavaScript finds falsy (`0`, `""`, `null`)
    /// is kept. This is what an export should write.
    #[default]
    Lossless,
    /// Byte for byte what kv-utils' `valueToJSON` and `JSON.stringify`
    /// write, quirks included: `-0` as `0`, a missing `message` as `""`,
    /// a falsy `cause` and an empty `stack` left out.
    KvUtils,
}

/// Writes keys, values and NDJSON lines into a caller's buffer.
///
/// ```
/// use kv_core::{Versionstamp, ValueRef, key};
/// use kv_v8::json::{Dialect, Encoder};
///
/// let enc = Encoder::new().with_dialect(Dialect::KvUtils);
/// let mut out = String::new();
/// enc.line(&key!["a"], ValueRef::Bytes(&[1, 2, 3]), Versionstamp::from_counter(6), Some(1_700_000_000_000), &mut out)?;
/// assert_eq!(
///     out,
///     "{\"key\":[{\"type\":\"string\",\"value\":\"a\"}],\
///      \"value\":{\"type\":\"Uint8Array\",\"value\":\"AQID\",\"byteLength\":3},\
///      \"versionstamp\":\"00000000000000060000\",\"expireAt\":1700000000000}\n"
/// );
/// # Ok::<(), kv_v8::json::JsonError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoder {
    dialect: Dialect,
}

impl Encoder {
    /// An encoder in the default dialect ([`Dialect::Lossless`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same encoder writing `dialect`.
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The dialect this encoder writes.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Appends a key: a JSON array of typed key parts.
    pub fn key(&self, key: &Key, out: &mut String) {
        write::key(self.dialect, key, out);
    }

    /// Appends a stored value as a typed value.
    ///
    /// # Errors
    /// [`JsonError::V8`] when V8 bytes do not decode;
    /// [`JsonError::Unrepresentable`] for a cycle. `out` may then hold part
    /// of the value.
    pub fn value(&self, value: ValueRef<'_>, out: &mut String) -> Result<(), JsonError> {
        match value {
            ValueRef::U64(n) => {
                out.push_str("{\"type\":\"KvU64\",\"value\":\"");
                push_u64(out, n);
                out.push_str("\"}");
                Ok(())
            }
            ValueRef::Bytes(b) => {
                write::typed_bytes(out, "Uint8Array", b);
                Ok(())
            }
            ValueRef::V8(bytes) => self.js(&crate::decode(bytes)?, out),
        }
    }

    /// Appends a [`JsValue`] as a typed value.
    ///
    /// # Errors
    /// [`JsonError::Unrepresentable`] for a cycle.
    pub fn js(&self, value: &JsValue, out: &mut String) -> Result<(), JsonError> {
        write::js(self.dialect, value, out)
    }

    /// Appends one NDJSON line (with its `\n`): the entry's key, value and
    /// versionstamp, and `expireAt` (Unix milliseconds) when given.
    ///
    /// # Errors
    /// As [`Encoder::value`], and [`JsonError::Unrepresentable`] for an
    /// `expire_at` beyond 2^53 - 1 (JSON numbers are doubles; that is
    /// 285,000 years from now); `out` is then left as it was.
    pub fn line(
        &self,
        key: &Key,
        value: ValueRef<'_>,
        versionstamp: Versionstamp,
        expire_at: Option<u64>,
        out: &mut String,
    ) -> Result<(), JsonError> {
        if expire_at.is_some_and(|at| at >= 1 << 53) {
            return Err(JsonError::Unrepresentable {
                path: "expireAt".to_owned(),
                message: "an expiry beyond 2^53 - 1 ms cannot be written exactly".to_owned(),
            });
        }
        let start = out.len();
        out.push_str("{\"key\":");
        self.key(key, out);
        out.push_str(",\"value\":");
        if let Err(e) = self.value(value, out) {
            out.truncate(start);
            return Err(e);
        }
        out.push_str(",\"versionstamp\":\"");
        out.push_str(&versionstamp.to_string());
        out.push('"');
        if let Some(at) = expire_at {
            out.push_str(",\"expireAt\":");
            push_u64(out, at);
        }
        out.push_str("}\n");
        Ok(())
    }
}

fn push_u64(out: &mut String, n: u64) {
    use std::fmt::Write as _;
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{n}");
}

/// A key as typed JSON: `[{"type":"string","value":"a"},…]`
/// ([`Dialect::Lossless`]).
pub fn encode_key(key: &Key) -> String {
    let mut out = String::new();
    Encoder::new().key(key, &mut out);
    out
}

/// Reads a key written as typed JSON (by kv-utils or [`encode_key`]).
///
/// # Errors
/// [`JsonError::Syntax`] / [`JsonError::Truncated`] for text that is not
/// JSON; [`JsonError::Invalid`] naming the part that is not a typed key
/// part (or a bigint beyond the key encoding's 255 bytes).
pub fn decode_key(text: &str) -> Result<Key, JsonError> {
    let json = tree::parse(text)?;
    read::key(&json, &read::Path::Root("key"))
}

/// A stored value as typed JSON ([`Dialect::Lossless`]).
///
/// # Errors
/// As [`Encoder::value`].
pub fn encode_value(value: &KvValue) -> Result<String, JsonError> {
    let mut out = String::new();
    Encoder::new().value(value.as_value_ref(), &mut out)?;
    Ok(out)
}

/// Reads a typed value as the value Deno would store for it: a top-level
/// `KvU64` is [`KvValue::U64`], a top-level `Uint8Array`
/// [`KvValue::Bytes`], anything else V8 bytes.
///
/// # Errors
/// [`JsonError::Syntax`] / [`JsonError::Truncated`] for text that is not
/// JSON; [`JsonError::Invalid`] naming what is not a typed value;
/// [`JsonError::V8`] when the value cannot be encoded (nested too deep).
pub fn decode_value(text: &str) -> Result<KvValue, JsonError> {
    let json = tree::parse(text)?;
    read::kv_value(&json, &read::Path::Root("value"))
}

/// A [`JsValue`] as typed JSON ([`Dialect::Lossless`]).
///
/// # Errors
/// [`JsonError::Unrepresentable`] for a cycle.
pub fn encode_js(value: &JsValue) -> Result<String, JsonError> {
    let mut out = String::new();
    Encoder::new().js(value, &mut out)?;
    Ok(out)
}

/// Reads a typed value as a [`JsValue`] (a `KvU64` becomes the bigint it
/// holds, as [`crate::from_kv_value`] reads a [`KvValue::U64`]).
///
/// # Errors
/// As [`decode_value`], but never [`JsonError::V8`].
pub fn decode_js(text: &str) -> Result<JsValue, JsonError> {
    let json = tree::parse(text)?;
    read::top_js(&json, &read::Path::Root("value"))
}

/// One NDJSON line for an entry ([`Dialect::Lossless`]), ending in `\n`,
/// with `expireAt` when `expire_at` (Unix milliseconds) is given.
///
/// # Errors
/// As [`Encoder::value`].
pub fn encode_line(entry: &KvEntry, expire_at: Option<u64>) -> Result<String, JsonError> {
    let mut out = String::new();
    Encoder::new().line(
        &entry.key,
        entry.value.as_value_ref(),
        entry.versionstamp,
        expire_at,
        &mut out,
    )?;
    Ok(out)
}

/// Reads one NDJSON line (a trailing `\n` or `\r\n` is allowed). `key` and
/// `value` are required; `versionstamp` (20 hex digits) and `expireAt` (a
/// non-negative integer of Unix milliseconds) may be missing or `null`;
/// other fields are ignored.
///
/// # Errors
/// [`JsonError::Syntax`] / [`JsonError::Truncated`] for a line that is not
/// JSON; [`JsonError::Invalid`] naming the field that is wrong
/// (`value.value.name: expected …`); [`JsonError::V8`] as
/// [`decode_value`].
pub fn decode_line(text: &str) -> Result<Line, JsonError> {
    line::decode(text)
}

#[cfg(test)]
mod tests;
