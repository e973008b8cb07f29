//! Values that Rust and Deno programs share.
//!
//! Deno KV stores most values in V8's structured-clone wire format (the
//! `ValueSerializer` bytes of [`KvValue::V8`]). This crate reads and writes
//! that format, so a Rust program sees what a Deno program stored, and Deno
//! sees what Rust stored:
//!
//! - [`decode`] and [`encode`]: V8 bytes to and from a dynamic [`JsValue`]
//!   (format versions 13 to 16 are read; 15 is written, see
//!   [`WRITE_VERSION`]).
//! - [`to_value`] and [`from_value`]: any `serde` type to and from a
//!   [`KvValue`]. Structs become plain objects, sequences arrays, `Option`
//!   `null`; [`KvU64`] is Deno's `KvU64` and [`Bytes`] a `Uint8Array`.
//! - [`KvSerdeExt`]: `set_value` and `get_value` on [`kv_core::Kv`].
//! - [`JsValue`]'s `Display` and [`display_value`]: readable JSON-like text
//!   wherever values are shown to people.
//! - [`json`]: keys, values and NDJSON entry lines in the typed JSON of
//!   `@deno/kv-utils` (what its export writes and its import reads), and
//!   plain JSON as Deno's `JSON.parse` gives it.
//!
//! ```
//! # futures::executor::block_on(async {
//! use kv_core::{Kv, MemoryBackend, key};
//! use kv_v8::{JsValue, KvSerdeExt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct User {
//!     name: String,
//!     age: u32,
//!     tags: Vec<String>,
//!     email: Option<String>,
//! }
//!
//! let kv = Kv::new(MemoryBackend::new());
//! let ada = User { name: "Ada".into(), age: 36, tags: vec!["math".into()], email: None };
//! kv.set_value(key!["users", "ada"], &ada).await?;
//!
//! // Deno reads `{ name: "Ada", age: 36, tags: ["math"], email: null }`.
//! let (back, _versionstamp) = kv.get_value::<User>(key!["users", "ada"]).await?.expect("written");
//! assert_eq!(back, ada);
//!
//! // Any stored value, whatever wrote it, as a dynamic value and as text.
//! let entry = kv.get(key!["users", "ada"]).await?.expect("written");
//! let value: JsValue = kv_v8::from_value(&entry.value)?;
//! assert_eq!(value.get("age"), Some(&JsValue::Number(36.0)));
//! assert_eq!(
//!     value.to_json_like(),
//!     r#"{"name": "Ada", "age": 36, "tags": ["math"], "email": null}"#
//! );
//! # Ok::<(), kv_v8::Error>(())
//! # }).unwrap();
//! ```
//!
//! # What is read
//!
//! Every tag Deno can store: `undefined`, `null`, booleans, numbers (int32,
//! uint32, double), bigints, strings (one-byte, two-byte with its padding,
//! UTF-8), objects, dense and sparse arrays (holes included), `Date`,
//! `RegExp`, `Map`, `Set`, `ArrayBuffer` (plain, resizable, immutable),
//! typed arrays and `DataView`, boxed primitives, `Error` and its standard
//! subclasses (message, stack, cause), back-references and cycles, padding
//! and the verify-object-count tag. Anything else (host objects, shared
//! memory, transferred buffers, WebAssembly) is
//! [`Error::UnsupportedTag`] naming the tag. No input panics: the decoder is
//! property-tested on random and mutated bytes, nesting is capped at
//! [`MAX_DEPTH`] and sparse arrays at [`MAX_ARRAY_SLOTS`] elements.
//!
//! # Tests against Deno
//!
//! `cargo test -p kv-v8` runs a round trip through the pinned Deno binary
//! that `cargo xtask tools` installs under `.tools/npm/` (or the one named by
//! `KV_DENO`): Deno writes a table of values of every kind into a SQLite
//! file, Rust reads and checks them, Rust writes them back (and values made
//! through serde), and Deno checks those with deep equality
//! (`clients/deno/values_roundtrip.ts`). Without the binary that test fails,
//! unless `KV_SKIP_DENO=1` is set.
//!
//! # Why not `v8_valueserializer`
//!
//! denoland's `v8_valueserializer` crate reads the same format, but its
//! 0.1.1 (the one denokv uses) rejects version 16, which every value Deno
//! 2.9 writes carries; it has no serde mapping for Rust types and uses
//! `unsafe`, which this workspace forbids. The format is small and stable,
//! so this crate implements it and tests it against the real Deno binary.

mod de;
mod decode;
mod display;
mod encode;
mod error;
mod ext;
pub mod json;
mod ser;
mod tag;
mod value;

pub use de::from_js_value;
pub use decode::{MAX_ARRAY_SLOTS, decode};
pub use display::display_value;
pub use encode::{WRITE_VERSION, encode};
pub use error::{Error, Result};
pub use ext::KvSerdeExt;
pub use ser::to_js_value;
pub use value::{
    ErrorName, JsArray, JsError, JsRegExp, JsValue, PropertyKey, TypedArray, TypedArrayKind,
};

use kv_core::KvValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How deep values may nest (arrays, objects, maps, sets, error causes)
/// when encoding, decoding or mapping through serde.
pub const MAX_DEPTH: usize = 256;

/// Converts a Rust value into a stored value that Deno reads as the
/// corresponding JavaScript value.
///
/// The mapping (see [`to_js_value`] for the details): structs and maps with
/// string keys become plain objects, other maps `Map`s, sequences and tuples
/// arrays, `None` and `()` `null`, integers numbers (or bigints beyond
/// ±2^53), [`Bytes`] and `serde_bytes` a `Uint8Array`. At the top level a
/// [`KvU64`] becomes [`KvValue::U64`] and a `Uint8Array` becomes
/// [`KvValue::Bytes`], as Deno itself stores them; anything else is
/// [`KvValue::V8`].
///
/// # Errors
/// [`Error::Serde`] when the value's `Serialize` fails;
/// [`Error::Unencodable`] / [`Error::TooDeep`] as [`encode`].
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<KvValue> {
    if let Some(n) = ser::top_level_u64(value) {
        return Ok(KvValue::U64(n));
    }
    to_kv_value(&to_js_value(value)?)
}

/// Converts a stored value into a Rust value.
///
/// `T` may be any `DeserializeOwned` type whose shape matches, or
/// [`JsValue`] itself. [`KvValue::Bytes`] reads as a `Uint8Array` (into
/// `Vec<u8>`, [`Bytes`] or `serde_bytes`), [`KvValue::U64`] as a bigint
/// (into `u64` or [`KvU64`]).
///
/// # Errors
/// Decoding errors as [`decode`]; [`Error::Serde`] when the value does not
/// fit `T`.
pub fn from_value<T: DeserializeOwned>(value: &KvValue) -> Result<T> {
    from_js_value(&from_kv_value(value)?)
}

/// The [`JsValue`] a stored value holds: V8 bytes decoded, raw bytes as a
/// `Uint8Array`, and a `KvU64` as a bigint (the model has no `KvU64`; the
/// encoding of the [`KvValue`] tells them apart).
///
/// # Errors
/// As [`decode`].
pub fn from_kv_value(value: &KvValue) -> Result<JsValue> {
    match value {
        KvValue::V8(bytes) => decode(bytes),
        KvValue::Bytes(bytes) => Ok(JsValue::uint8_array(bytes.clone())),
        KvValue::U64(n) => Ok(JsValue::BigInt((*n).into())),
    }
}

/// The stored value for a [`JsValue`], chosen as Deno chooses: a top-level
/// `Uint8Array` is [`KvValue::Bytes`], anything else [`KvValue::V8`].
///
/// # Errors
/// As [`encode`].
pub fn to_kv_value(value: &JsValue) -> Result<KvValue> {
    match value {
        JsValue::TypedArray(TypedArray {
            kind: TypedArrayKind::Uint8,
            bytes,
        }) => Ok(KvValue::Bytes(bytes.clone())),
        other => Ok(KvValue::V8(encode(other)?)),
    }
}

/// The name [`KvU64`] gives serde, recognised by this crate's serializer.
pub(crate) const KV_U64_NAME: &str = "$kv_v8::KvU64";

/// Deno's `KvU64`: an unsigned 64-bit integer that `sum`, `min` and `max`
/// work on.
///
/// At the top level of [`to_value`] it is stored as [`KvValue::U64`], as
/// Deno stores `new Deno.KvU64(n)`; nested inside another value it is a
/// `bigint` (Deno would store a nested `KvU64` as a plain object, which it
/// cannot read back as a `KvU64` either). It reads from a `KvU64`, a bigint
/// or a non-negative integer number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KvU64(pub u64);

impl Serialize for KvU64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(KV_U64_NAME, &self.0)
    }
}

impl<'de> serde::Deserialize<'de> for KvU64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(KvU64)
    }
}

impl From<KvU64> for KvValue {
    fn from(v: KvU64) -> Self {
        KvValue::U64(v.0)
    }
}

/// Bytes that serialize as a `Uint8Array` (a plain `Vec<u8>` would be an
/// array of numbers). At the top level of [`to_value`] they are stored as
/// [`KvValue::Bytes`], as Deno stores a `Uint8Array`. They read from any
/// typed array, `ArrayBuffer` or array of byte numbers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Bytes, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}
