//! serde serialization: Rust values to [`JsValue`], and `Serialize` for
//! [`JsValue`].

use num_bigint::BigInt;
use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeSeq};

use crate::value::{
    ErrorName, JsArray, JsError, JsRegExp, JsValue, PropertyKey, TypedArray, TypedArrayKind,
};
use crate::{Error, KV_U64_NAME, Result};

/// Prefix of the single key that marks a JavaScript value with no serde
/// equivalent (see [`JsValue`]'s `Serialize`).
pub(crate) const MAGIC: &str = "$kv_v8::";

/// Converts a Rust value into a [`JsValue`].
///
/// | Rust (serde data model) | JavaScript |
/// | --- | --- |
/// | `bool`, `String`, `char` | boolean, string |
/// | `f32`, `f64`, integers within ±2^53 | number |
/// | integers beyond ±2^53 (`i64`, `u64`, `i128`, `u128`) | bigint |
/// | [`crate::KvU64`] | bigint |
/// | `None`, `()`, unit structs | `null` |
/// | `Some(v)`, newtype structs | `v` |
/// | sequences, tuples, tuple structs | array |
/// | structs | plain object |
/// | maps whose keys are all strings (or empty maps) | plain object |
/// | other maps | `Map` |
/// | bytes ([`crate::Bytes`], `serde_bytes`) | `Uint8Array` |
/// | unit variant `E::A` | `"A"` |
/// | other variants `E::A(..)` | `{ "A": .. }` (serde's external tagging) |
/// | [`JsValue`] | itself (see its `Serialize`) |
///
/// # Errors
/// [`Error::Serde`] when the value's `Serialize` fails.
pub fn to_js_value<T: Serialize + ?Sized>(value: &T) -> Result<JsValue> {
    value.serialize(ValueSerializer)
}

/// A number for an integer: exact doubles stay numbers, larger magnitudes
/// become bigints.
pub(crate) fn integer(n: i128) -> JsValue {
    const MAX_SAFE: i128 = (1 << 53) - 1;
    if (-MAX_SAFE..=MAX_SAFE).contains(&n) {
        // Within ±2^53 the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        JsValue::Number(n as f64)
    } else {
        JsValue::BigInt(BigInt::from(n))
    }
}

struct ValueSerializer;

impl ser::Serializer for ValueSerializer {
    type Ok = JsValue;
    type Error = Error;
    type SerializeSeq = SeqSerializer;
    type SerializeTuple = SeqSerializer;
    type SerializeTupleStruct = SeqSerializer;
    type SerializeTupleVariant = VariantSerializer<SeqSerializer>;
    type SerializeMap = MapSerializer;
    type SerializeStruct = StructSerializer;
    type SerializeStructVariant = VariantSerializer<StructSerializer>;

    fn serialize_bool(self, v: bool) -> Result<JsValue> {
        Ok(JsValue::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<JsValue> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<JsValue> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<JsValue> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<JsValue> {
        Ok(integer(v.into()))
    }
    fn serialize_i128(self, v: i128) -> Result<JsValue> {
        Ok(integer(v))
    }
    fn serialize_u8(self, v: u8) -> Result<JsValue> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<JsValue> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<JsValue> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<JsValue> {
        Ok(integer(v.into()))
    }
    fn serialize_u128(self, v: u128) -> Result<JsValue> {
        Ok(match i128::try_from(v) {
            Ok(n) => integer(n),
            Err(_) => JsValue::BigInt(BigInt::from(v)),
        })
    }
    fn serialize_f32(self, v: f32) -> Result<JsValue> {
        Ok(JsValue::Number(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<JsValue> {
        Ok(JsValue::Number(v))
    }
    fn serialize_char(self, v: char) -> Result<JsValue> {
        Ok(JsValue::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<JsValue> {
        Ok(JsValue::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<JsValue> {
        Ok(JsValue::uint8_array(v.to_vec()))
    }
    fn serialize_none(self) -> Result<JsValue> {
        Ok(JsValue::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<JsValue> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<JsValue> {
        Ok(JsValue::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<JsValue> {
        Ok(JsValue::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<JsValue> {
        Ok(JsValue::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<JsValue> {
        let inner = value.serialize(self)?;
        if let (KV_U64_NAME, JsValue::Number(n)) = (name, &inner) {
            // A u64 within 2^53 came out as a number; KvU64 is a bigint.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return Ok(JsValue::BigInt(BigInt::from(*n as u64)));
        }
        Ok(inner)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<JsValue> {
        Ok(JsValue::Object(vec![(
            PropertyKey::new(variant),
            value.serialize(self)?,
        )]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSerializer> {
        Ok(SeqSerializer {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSerializer> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqSerializer> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSerializer<SeqSerializer>> {
        Ok(VariantSerializer {
            variant,
            inner: self.serialize_seq(Some(len))?,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapSerializer> {
        Ok(MapSerializer {
            entries: Vec::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<StructSerializer> {
        Ok(StructSerializer {
            props: Vec::with_capacity(len),
        })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSerializer<StructSerializer>> {
        Ok(VariantSerializer {
            variant,
            inner: StructSerializer {
                props: Vec::with_capacity(len),
            },
        })
    }
}

struct SeqSerializer {
    items: Vec<JsValue>,
}

impl ser::SerializeSeq for SeqSerializer {
    type Ok = JsValue;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.items.push(value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<JsValue> {
        Ok(JsValue::array(self.items))
    }
}

impl ser::SerializeTuple for SeqSerializer {
    type Ok = JsValue;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<JsValue> {
        SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqSerializer {
    type Ok = JsValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<JsValue> {
        SerializeSeq::end(self)
    }
}

struct VariantSerializer<S> {
    variant: &'static str,
    inner: S,
}

impl ser::SerializeTupleVariant for VariantSerializer<SeqSerializer> {
    type Ok = JsValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        SerializeSeq::serialize_element(&mut self.inner, value)
    }
    fn end(self) -> Result<JsValue> {
        Ok(JsValue::Object(vec![(
            PropertyKey::new(self.variant),
            SerializeSeq::end(self.inner)?,
        )]))
    }
}

impl ser::SerializeStructVariant for VariantSerializer<StructSerializer> {
    type Ok = JsValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> Result<JsValue> {
        Ok(JsValue::Object(vec![(
            PropertyKey::new(self.variant),
            ser::SerializeStruct::end(self.inner)?,
        )]))
    }
}

struct StructSerializer {
    props: Vec<(PropertyKey, JsValue)>,
}

impl ser::SerializeStruct for StructSerializer {
    type Ok = JsValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.props
            .push((PropertyKey::new(key), value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<JsValue> {
        Ok(JsValue::Object(self.props))
    }
}

struct MapSerializer {
    entries: Vec<(JsValue, JsValue)>,
    key: Option<JsValue>,
}

impl ser::SerializeMap for MapSerializer {
    type Ok = JsValue;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key = Some(key.serialize(ValueSerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error::Serde("serialize_value called before serialize_key".into()))?;
        self.entries.push((key, value.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<JsValue> {
        if let [(JsValue::String(k), payload)] = self.entries.as_slice()
            && let Some(kind) = k.strip_prefix(MAGIC)
        {
            return from_magic(kind, payload.clone());
        }
        if self
            .entries
            .iter()
            .all(|(k, _)| matches!(k, JsValue::String(_)))
        {
            let props = self
                .entries
                .into_iter()
                .filter_map(|(k, v)| match k {
                    JsValue::String(s) => Some((PropertyKey::new(s), v)),
                    _ => None,
                })
                .collect();
            return Ok(JsValue::Object(props));
        }
        Ok(JsValue::Map(self.entries))
    }
}

fn bad_magic(kind: &str, payload: &JsValue) -> Error {
    Error::Serde(format!("{MAGIC}{kind} does not take {payload}"))
}

fn parse_bigint(kind: &str, payload: &JsValue) -> Result<BigInt> {
    payload
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad_magic(kind, payload))
}

fn bytes_of(v: &JsValue) -> Option<Vec<u8>> {
    match v {
        JsValue::TypedArray(t) => Some(t.bytes.clone()),
        JsValue::ArrayBuffer(b) => Some(b.clone()),
        JsValue::Array(a) => a
            .items
            .iter()
            .map(|i| match i {
                Some(JsValue::Number(n)) if (0.0..=255.0).contains(n) && n.fract() == 0.0 => {
                    // Checked to be a byte value.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Some(*n as u8)
                }
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn pairs(v: JsValue) -> Option<Vec<(JsValue, JsValue)>> {
    let JsValue::Array(a) = v else { return None };
    a.items
        .into_iter()
        .map(|item| match item {
            Some(JsValue::Array(p)) if p.items.len() == 2 => {
                let mut it = p.items.into_iter();
                let k = it.next().flatten()?;
                let v = it.next().flatten()?;
                Some((k, v))
            }
            _ => None,
        })
        .collect()
}

fn dense(v: JsValue) -> Option<Vec<JsValue>> {
    let JsValue::Array(a) = v else { return None };
    a.items.into_iter().collect()
}

/// Rebuilds a value from its magic single-key form.
pub(crate) fn from_magic(kind: &str, payload: JsValue) -> Result<JsValue> {
    let bad = |p: &JsValue| bad_magic(kind, p);
    Ok(match kind {
        "Undefined" => JsValue::Undefined,
        "BigInt" => JsValue::BigInt(parse_bigint(kind, &payload)?),
        "BigIntObject" => JsValue::BigIntObject(parse_bigint(kind, &payload)?),
        "Date" => JsValue::Date(payload.as_f64().ok_or_else(|| bad(&payload))?),
        "NumberObject" => JsValue::NumberObject(payload.as_f64().ok_or_else(|| bad(&payload))?),
        "BooleanObject" => match payload {
            JsValue::Bool(b) => JsValue::BooleanObject(b),
            p => return Err(bad(&p)),
        },
        "StringObject" => match payload {
            JsValue::String(s) => JsValue::StringObject(s),
            p => return Err(bad(&p)),
        },
        "Ref" => match payload.as_f64() {
            Some(n) if (0.0..=f64::from(u32::MAX)).contains(&n) && n.fract() == 0.0 => {
                // Checked to be a u32.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                JsValue::Ref(n as u32)
            }
            _ => return Err(bad(&payload)),
        },
        "RegExp" => {
            let parts = dense(payload.clone()).ok_or_else(|| bad(&payload))?;
            match parts.as_slice() {
                [JsValue::String(source), JsValue::String(flags)] => {
                    JsValue::RegExp(Box::new(JsRegExp {
                        source: source.clone(),
                        flags: flags.clone(),
                    }))
                }
                _ => return Err(bad(&payload)),
            }
        }
        "Map" => JsValue::Map(pairs(payload.clone()).ok_or_else(|| bad(&payload))?),
        "Set" => JsValue::Set(dense(payload.clone()).ok_or_else(|| bad(&payload))?),
        "ArrayBuffer" => JsValue::ArrayBuffer(bytes_of(&payload).ok_or_else(|| bad(&payload))?),
        "TypedArray" => {
            let parts = dense(payload.clone()).ok_or_else(|| bad(&payload))?;
            match parts.as_slice() {
                [JsValue::String(name), bytes] => {
                    let kind = TypedArrayKind::from_name(name).ok_or_else(|| bad(&payload))?;
                    let bytes = bytes_of(bytes).ok_or_else(|| bad(&payload))?;
                    JsValue::TypedArray(TypedArray { kind, bytes })
                }
                _ => return Err(bad(&payload)),
            }
        }
        "Error" => {
            let JsValue::Object(props) = payload else {
                return Err(bad(&payload));
            };
            let mut e = JsError::default();
            for (k, v) in props {
                match (k.as_string().as_ref(), v) {
                    ("name", JsValue::String(n)) => {
                        e.name = ErrorName::from_name(&n)
                            .ok_or_else(|| Error::Serde(format!("unknown error name {n:?}")))?;
                    }
                    ("message", JsValue::String(m)) => e.message = Some(m),
                    ("stack", JsValue::String(s)) => e.stack = Some(s),
                    ("cause", c) => e.cause = Some(c),
                    (k, v) => {
                        return Err(Error::Serde(format!(
                            "{MAGIC}Error does not take {k:?}: {v}"
                        )));
                    }
                }
            }
            JsValue::Error(Box::new(e))
        }
        "Array" => {
            let JsValue::Object(props) = payload else {
                return Err(bad(&payload));
            };
            let mut array = JsArray::default();
            for (k, v) in props {
                match k.as_string().as_ref() {
                    "length" => {
                        let n = v
                            .as_f64()
                            .filter(|n| (0.0..=f64::from(u32::MAX)).contains(n))
                            .ok_or_else(|| Error::Serde(format!("bad array length {v}")))?;
                        // Checked to be a u32; the element budget caps it.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let n = n as usize;
                        if n > crate::MAX_ARRAY_SLOTS {
                            return Err(Error::Serde(format!("array length {n} is too large")));
                        }
                        array.items.resize(n, None);
                    }
                    "items" => {
                        for (i, item) in pairs(v).ok_or_else(|| bad(&JsValue::Null))? {
                            let slot = i
                                .as_f64()
                                .filter(|n| n.fract() == 0.0 && *n >= 0.0)
                                .and_then(|n| {
                                    // Non-negative integer; out of range is caught by `get_mut`.
                                    #[allow(
                                        clippy::cast_possible_truncation,
                                        clippy::cast_sign_loss
                                    )]
                                    array.items.get_mut(n as usize)
                                })
                                .ok_or_else(|| Error::Serde(format!("bad array index {i}")))?;
                            *slot = Some(item);
                        }
                    }
                    "props" => {
                        for (k, v) in pairs(v).ok_or_else(|| bad(&JsValue::Null))? {
                            let JsValue::String(k) = k else {
                                return Err(Error::Serde(format!("bad array property {k}")));
                            };
                            array.props.push((PropertyKey::new(k), v));
                        }
                    }
                    other => {
                        return Err(Error::Serde(format!(
                            "{MAGIC}Array does not take {other:?}"
                        )));
                    }
                }
            }
            JsValue::Array(array)
        }
        other => return Err(Error::Serde(format!("unknown {MAGIC}{other}"))),
    })
}

/// Serializes `payload` as the magic single-key map `{ "$kv_v8::<kind>": payload }`.
fn magic<S: ser::Serializer, P: Serialize + ?Sized>(
    s: S,
    kind: &str,
    payload: &P,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry(&format!("{MAGIC}{kind}"), payload)?;
    m.end()
}

/// Serializes as a sequence of `[key, value]` pairs.
struct Pairs<'a, K, V>(&'a [(K, V)]);

impl<K: Serialize, V: Serialize> Serialize for Pairs<'_, K, V> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (k, v) in self.0 {
            seq.serialize_element(&(k, v))?;
        }
        seq.end()
    }
}

struct Props<'a>(&'a [(PropertyKey, JsValue)]);

impl Serialize for Props<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k.as_string().as_ref(), v)?;
        }
        m.end()
    }
}

impl Serialize for PropertyKey {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

/// `serde` sees JavaScript values through its data model: `null` as unit,
/// booleans, numbers as `f64`, strings, dense arrays as sequences, plain
/// objects as maps with string keys, and `Uint8Array` as bytes. Every other
/// value is a map with the single key `"$kv_v8::<Kind>"` (`Undefined`,
/// `BigInt` with a decimal string, `Date` with its milliseconds, `RegExp`
/// with `[source, flags]`, `Map` with `[[key, value], …]`, `Set`,
/// `ArrayBuffer`, `TypedArray` with `[kind name, bytes]`, `Error` with
/// `{name, message, stack, cause}`, `BooleanObject`, `NumberObject`,
/// `BigIntObject`, `StringObject`, `Ref` with the node index, and `Array`
/// with `{length, items: [[index, value], …], props: [[key, value], …]}`
/// for arrays with holes or extra properties). This crate's serializer and
/// deserializer turn such maps back into the value, so a `JsValue` survives
/// a trip through any self-describing format such as JSON.
impl Serialize for JsValue {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            JsValue::Undefined => magic(s, "Undefined", &()),
            JsValue::Null => s.serialize_unit(),
            JsValue::Bool(b) => s.serialize_bool(*b),
            JsValue::Number(n) => s.serialize_f64(*n),
            JsValue::BigInt(n) => magic(s, "BigInt", &n.to_string()),
            JsValue::String(v) => s.serialize_str(v),
            JsValue::Array(a) if a.props.is_empty() && !a.has_holes() => {
                let mut seq = s.serialize_seq(Some(a.items.len()))?;
                for v in a.items.iter().flatten() {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            JsValue::Array(a) => {
                let items: Vec<(u32, &JsValue)> = a
                    .items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| Some((u32::try_from(i).ok()?, v.as_ref()?)))
                    .collect();
                let props: Vec<(String, &JsValue)> = a
                    .props
                    .iter()
                    .map(|(k, v)| (k.as_string().into_owned(), v))
                    .collect();
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_key(&format!("{MAGIC}Array"))?;
                m.serialize_value(&ArrayPayload {
                    length: a.items.len(),
                    items: Pairs(&items),
                    props: Pairs(&props),
                })?;
                m.end()
            }
            JsValue::Object(props) => Props(props).serialize(s),
            JsValue::Date(ms) => magic(s, "Date", ms),
            JsValue::RegExp(re) => magic(s, "RegExp", &(&re.source, &re.flags)),
            JsValue::Map(entries) => magic(s, "Map", &Pairs(entries)),
            JsValue::Set(items) => magic(s, "Set", items),
            JsValue::ArrayBuffer(b) => magic(s, "ArrayBuffer", &crate::Bytes(b.clone())),
            JsValue::TypedArray(t) if t.kind == TypedArrayKind::Uint8 => {
                s.serialize_bytes(&t.bytes)
            }
            JsValue::TypedArray(t) => magic(
                s,
                "TypedArray",
                &(t.kind.name(), crate::Bytes(t.bytes.clone())),
            ),
            JsValue::Error(e) => magic(s, "Error", &ErrorPayload(e)),
            JsValue::BooleanObject(b) => magic(s, "BooleanObject", b),
            JsValue::NumberObject(n) => magic(s, "NumberObject", n),
            JsValue::BigIntObject(n) => magic(s, "BigIntObject", &n.to_string()),
            JsValue::StringObject(v) => magic(s, "StringObject", v),
            JsValue::Ref(n) => magic(s, "Ref", n),
        }
    }
}

#[derive(serde::Serialize)]
struct ArrayPayload<'a> {
    length: usize,
    items: Pairs<'a, u32, &'a JsValue>,
    props: Pairs<'a, String, &'a JsValue>,
}

struct ErrorPayload<'a>(&'a JsError);

impl Serialize for ErrorPayload<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", e.name.as_str())?;
        if let Some(v) = &e.message {
            m.serialize_entry("message", v)?;
        }
        if let Some(v) = &e.stack {
            m.serialize_entry("stack", v)?;
        }
        if let Some(v) = &e.cause {
            m.serialize_entry("cause", v)?;
        }
        m.end()
    }
}

/// The `u64` inside `value` if it is a [`crate::KvU64`] at the top level.
pub(crate) fn top_level_u64<T: Serialize + ?Sized>(value: &T) -> Option<u64> {
    value.serialize(U64Probe { inside: false }).ok()
}

#[derive(Debug)]
struct Miss;

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a KvU64")
    }
}

impl std::error::Error for Miss {}

impl ser::Error for Miss {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Miss
    }
}

/// Finds a top-level `KvU64` newtype; anything else fails at once, so the
/// probe costs one call.
struct U64Probe {
    /// Inside the `KvU64` newtype, where the `u64` is.
    inside: bool,
}

macro_rules! miss {
    ($($f:ident($($t:ty),*)),* $(,)?) => {$(
        fn $f(self, $(_: $t),*) -> Result<u64, Miss> {
            Err(Miss)
        }
    )*};
}

impl ser::Serializer for U64Probe {
    type Ok = u64;
    type Error = Miss;
    type SerializeSeq = Impossible<u64, Miss>;
    type SerializeTuple = Impossible<u64, Miss>;
    type SerializeTupleStruct = Impossible<u64, Miss>;
    type SerializeTupleVariant = Impossible<u64, Miss>;
    type SerializeMap = Impossible<u64, Miss>;
    type SerializeStruct = Impossible<u64, Miss>;
    type SerializeStructVariant = Impossible<u64, Miss>;

    miss!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_u64(self, v: u64) -> Result<u64, Miss> {
        if self.inside { Ok(v) } else { Err(Miss) }
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u64, Miss> {
        Err(Miss)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<u64, Miss> {
        if name == KV_U64_NAME && !self.inside {
            value.serialize(U64Probe { inside: true })
        } else {
            Err(Miss)
        }
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u64, Miss> {
        Err(Miss)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Miss> {
        Err(Miss)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Miss> {
        Err(Miss)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Miss> {
        Err(Miss)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Miss> {
        Err(Miss)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Miss> {
        Err(Miss)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Miss> {
        Err(Miss)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Miss> {
        Err(Miss)
    }
}
