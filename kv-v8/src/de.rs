//! serde deserialization: [`JsValue`] to Rust values, and `Deserialize`
//! for [`JsValue`].

use std::cell::Cell;
use std::fmt;

use num_bigint::BigInt;
use num_traits::ToPrimitive;
use serde::de::value::{BorrowedStrDeserializer, StrDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde::forward_to_deserialize_any;

use crate::ser::MAGIC;
use crate::value::{JsArray, JsValue, PropertyKey, TypedArray, TypedArrayKind};
use crate::{Error, MAX_DEPTH, Result};

/// How many values one deserialization may visit through [`JsValue::Ref`]s
/// (shared references are expanded, so `[a, a]` visits `a` twice).
const MAX_REF_VISITS: usize = 1 << 20;

/// Converts a [`JsValue`] into a Rust value.
///
/// Typed requests convert where JavaScript has one obvious answer: integers
/// from integral numbers or bigints in range, floats from numbers, `Date`s
/// (milliseconds) or bigints, strings from strings, `String` objects or
/// bigints (decimal), booleans from booleans, sequences from arrays (holes
/// are `undefined`), `Set`s, `Map`s (as `[key, value]` pairs) and byte
/// arrays, maps and structs from objects, `Map`s and `Error`s (`name`,
/// `message`, `stack`, `cause`), bytes from typed arrays and
/// `ArrayBuffer`s, `Option::None` from `undefined` and `null`, enums as
/// serde's external tagging. A [`JsValue::Ref`] reads as the object it names
/// (a copy); a cycle is an error.
///
/// Targets that ask for "any" value (`serde_json::Value`, untagged enums,
/// `#[serde(flatten)]`) see the values serde has no type for as the
/// single-key maps described at [`JsValue`]'s `Serialize`, e.g.
/// `{"$kv_v8::Date": 0}` or `{"$kv_v8::Ref": 0}`; `undefined` is serde's
/// `None`.
///
/// # Errors
/// [`Error::Serde`] when the value does not fit `T`, or is cyclic where `T`
/// needs a tree.
pub fn from_js_value<T: DeserializeOwned>(value: &JsValue) -> Result<T> {
    let mut nodes = Vec::new();
    value.object_nodes(&mut nodes, 0);
    let cx = Cx {
        nodes,
        ref_visits: Cell::new(0),
    };
    T::deserialize(Deser {
        value,
        cx: &cx,
        depth: 0,
    })
    .map_err(|e| match e {
        Error::TooDeep if cx.ref_visits.get() > 0 => Error::Serde(format!(
            "the value is cyclic (or nests deeper than {MAX_DEPTH} levels through references) \
             and cannot be read into this type"
        )),
        e => e,
    })
}

struct Cx<'de> {
    nodes: Vec<&'de JsValue>,
    ref_visits: Cell<usize>,
}

#[derive(Clone, Copy)]
struct Deser<'a, 'de> {
    value: &'de JsValue,
    cx: &'a Cx<'de>,
    depth: usize,
}

static UNDEFINED: JsValue = JsValue::Undefined;

fn unexpected(v: &JsValue) -> Unexpected<'_> {
    match v {
        JsValue::Undefined => Unexpected::Other("undefined"),
        JsValue::Null => Unexpected::Unit,
        JsValue::Bool(b) => Unexpected::Bool(*b),
        JsValue::Number(n) => Unexpected::Float(*n),
        JsValue::BigInt(_) => Unexpected::Other("bigint"),
        JsValue::String(s) => Unexpected::Str(s),
        JsValue::Array(_) => Unexpected::Seq,
        JsValue::Object(_) => Unexpected::Map,
        JsValue::Date(_) => Unexpected::Other("Date"),
        JsValue::RegExp(_) => Unexpected::Other("RegExp"),
        JsValue::Map(_) => Unexpected::Other("Map"),
        JsValue::Set(_) => Unexpected::Other("Set"),
        JsValue::ArrayBuffer(b) => Unexpected::Bytes(b),
        JsValue::TypedArray(t) => Unexpected::Bytes(&t.bytes),
        JsValue::Error(_) => Unexpected::Other("Error"),
        JsValue::BooleanObject(_) => Unexpected::Other("Boolean object"),
        JsValue::NumberObject(_) => Unexpected::Other("Number object"),
        JsValue::BigIntObject(_) => Unexpected::Other("BigInt object"),
        JsValue::StringObject(_) => Unexpected::Other("String object"),
        JsValue::Ref(_) => Unexpected::Other("object reference"),
    }
}

impl<'a, 'de> Deser<'a, 'de> {
    fn child(&self, value: &'de JsValue) -> Result<Self> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        Ok(Deser {
            value,
            cx: self.cx,
            depth: self.depth + 1,
        })
    }

    /// Follows [`JsValue::Ref`]s to the object they name.
    fn resolve(self) -> Result<Self> {
        let mut d = self;
        while let JsValue::Ref(n) = d.value {
            let visits = d.cx.ref_visits.get() + 1;
            if visits > MAX_REF_VISITS {
                return Err(Error::Serde(
                    "the value refers to shared objects too many times".into(),
                ));
            }
            d.cx.ref_visits.set(visits);
            let target = *d
                .cx
                .nodes
                .get(*n as usize)
                .ok_or_else(|| Error::Serde(format!("Ref({n}) names no object")))?;
            d = d.child(target)?;
        }
        Ok(d)
    }

    fn invalid<T>(&self, exp: &dyn de::Expected) -> Result<T> {
        Err(de::Error::invalid_type(unexpected(self.value), exp))
    }

    /// The value as an integer, if it is one JavaScript-wise.
    fn integer(&self) -> Option<BigInt> {
        let n = match self.value {
            JsValue::Number(n) | JsValue::NumberObject(n) | JsValue::Date(n) => *n,
            JsValue::BigInt(b) | JsValue::BigIntObject(b) => return Some(b.clone()),
            _ => return None,
        };
        if n.is_finite() && n.fract() == 0.0 {
            num_traits::FromPrimitive::from_f64(n)
        } else {
            None
        }
    }

    fn int<T, V: Visitor<'de>>(
        self,
        visitor: &V,
        conv: impl FnOnce(&BigInt) -> Option<T>,
    ) -> Result<T> {
        let d = self.resolve()?;
        let n = d.integer();
        match n {
            Some(n) => conv(&n).ok_or_else(|| {
                de::Error::invalid_value(Unexpected::Other(&format!("{n}")), visitor)
            }),
            None => d.invalid(visitor),
        }
    }

    fn seq_of(&self, items: &'de [JsValue]) -> SeqOf<'a, 'de> {
        SeqOf {
            items: Items::Values(items.iter()),
            parent: *self,
        }
    }
}

macro_rules! deserialize_int {
    ($($method:ident => $visit:ident, $conv:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let n = self.int(&visitor, |n| n.$conv())?;
            visitor.$visit(n)
        }
    )*};
}

impl<'a, 'de> Deserializer<'de> for Deser<'a, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            JsValue::Undefined => visitor.visit_none(),
            JsValue::Null => visitor.visit_unit(),
            JsValue::Bool(b) => visitor.visit_bool(*b),
            JsValue::Number(n) => {
                if n.fract() == 0.0
                    && n.abs() <= 9_007_199_254_740_991.0
                    && !(*n == 0.0 && n.is_sign_negative())
                {
                    // Integral and within ±2^53, so exact.
                    #[allow(clippy::cast_possible_truncation)]
                    visitor.visit_i64(*n as i64)
                } else {
                    visitor.visit_f64(*n)
                }
            }
            JsValue::String(s) => visitor.visit_borrowed_str(s),
            JsValue::Array(a) if a.props.is_empty() && !a.has_holes() => visitor.visit_seq(SeqOf {
                items: Items::Holey(a.items.iter()),
                parent: self,
            }),
            JsValue::Object(props) => visitor.visit_map(PropsAccess {
                props: props.iter(),
                value: None,
                parent: self,
            }),
            JsValue::TypedArray(t) if t.kind == TypedArrayKind::Uint8 => {
                visitor.visit_borrowed_bytes(&t.bytes)
            }
            _ => visitor.visit_map(MagicAccess {
                payload: Some(self),
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let d = self.resolve()?;
        match d.value {
            JsValue::Bool(b) | JsValue::BooleanObject(b) => visitor.visit_bool(*b),
            _ => d.invalid(&visitor),
        }
    }

    deserialize_int! {
        deserialize_i8 => visit_i8, to_i8;
        deserialize_i16 => visit_i16, to_i16;
        deserialize_i32 => visit_i32, to_i32;
        deserialize_i64 => visit_i64, to_i64;
        deserialize_i128 => visit_i128, to_i128;
        deserialize_u8 => visit_u8, to_u8;
        deserialize_u16 => visit_u16, to_u16;
        deserialize_u32 => visit_u32, to_u32;
        deserialize_u64 => visit_u64, to_u64;
        deserialize_u128 => visit_u128, to_u128;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let d = self.resolve()?;
        match d.value {
            JsValue::Number(n) | JsValue::NumberObject(n) | JsValue::Date(n) => {
                visitor.visit_f64(*n)
            }
            JsValue::BigInt(b) | JsValue::BigIntObject(b) => {
                visitor.visit_f64(b.to_f64().unwrap_or(f64::NAN))
            }
            _ => d.invalid(&visitor),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let d = self.resolve()?;
        match d.value {
            JsValue::String(s) | JsValue::StringObject(s) => visitor.visit_borrowed_str(s),
            JsValue::BigInt(b) | JsValue::BigIntObject(b) => visitor.visit_string(b.to_string()),
            JsValue::Date(ms) => visitor.visit_string(crate::display::date_to_iso(*ms)),
            _ => d.invalid(&visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let d = self.resolve()?;
        match d.value {
            JsValue::TypedArray(t) => visitor.visit_borrowed_bytes(&t.bytes),
            JsValue::ArrayBuffer(b) => visitor.visit_borrowed_bytes(b),
            JsValue::Array(_) => d.deserialize_seq(visitor),
            _ => d.invalid(&visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            JsValue::Undefined | JsValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.value {
            JsValue::Undefined | JsValue::Null => visitor.visit_unit(),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let d = self.resolve()?;
        match d.value {
            JsValue::Array(a) => visitor.visit_seq(SeqOf {
                items: Items::Holey(a.items.iter()),
                parent: d,
            }),
            JsValue::Set(items) => visitor.visit_seq(d.seq_of(items)),
            JsValue::Map(entries) => visitor.visit_seq(SeqOf {
                items: Items::Pairs(entries.iter()),
                parent: d,
            }),
            JsValue::TypedArray(TypedArray {
                kind: TypedArrayKind::Uint8 | TypedArrayKind::Uint8Clamped,
                bytes,
            })
            | JsValue::ArrayBuffer(bytes) => {
                visitor.visit_seq(de::value::SeqDeserializer::<_, Error>::new(
                    bytes.iter().copied(),
                ))
            }
            _ => d.invalid(&visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let d = self.resolve()?;
        match d.value {
            JsValue::Object(props) => visitor.visit_map(PropsAccess {
                props: props.iter(),
                value: None,
                parent: d,
            }),
            JsValue::Map(entries) => visitor.visit_map(EntriesAccess {
                entries: entries.iter(),
                value: None,
                parent: d,
            }),
            JsValue::Error(e) => visitor.visit_map(ErrorAccess {
                name: Some(e.name.as_str()),
                message: e.message.as_deref(),
                stack: e.stack.as_deref(),
                cause: e.cause.as_ref(),
                value: None,
                parent: d,
            }),
            _ => d.invalid(&visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let d = self.resolve()?;
        match d.value {
            JsValue::String(s) => visitor.visit_enum(EnumAccess {
                variant: s,
                value: None,
                parent: d,
            }),
            JsValue::Object(props) if props.len() == 1 => {
                let (k, v) = &props[0];
                let PropertyKey::String(s) = k else {
                    return d.invalid(&visitor);
                };
                visitor.visit_enum(EnumAccess {
                    variant: s,
                    value: Some(v),
                    parent: d,
                })
            }
            _ => d.invalid(&visitor),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

impl<'a, 'de> IntoDeserializer<'de, Error> for Deser<'a, 'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

enum Items<'de> {
    Holey(std::slice::Iter<'de, Option<JsValue>>),
    Values(std::slice::Iter<'de, JsValue>),
    Pairs(std::slice::Iter<'de, (JsValue, JsValue)>),
}

struct SeqOf<'a, 'de> {
    items: Items<'de>,
    parent: Deser<'a, 'de>,
}

impl<'a, 'de> SeqAccess<'de> for SeqOf<'a, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match &mut self.items {
            Items::Holey(it) => match it.next() {
                None => Ok(None),
                Some(v) => seed
                    .deserialize(self.parent.child(v.as_ref().unwrap_or(&UNDEFINED))?)
                    .map(Some),
            },
            Items::Values(it) => match it.next() {
                None => Ok(None),
                Some(v) => seed.deserialize(self.parent.child(v)?).map(Some),
            },
            Items::Pairs(it) => match it.next() {
                None => Ok(None),
                Some((k, v)) => seed
                    .deserialize(PairDeser {
                        key: self.parent.child(k)?,
                        value: self.parent.child(v)?,
                    })
                    .map(Some),
            },
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(match &self.items {
            Items::Holey(it) => it.len(),
            Items::Values(it) => it.len(),
            Items::Pairs(it) => it.len(),
        })
    }
}

/// A `[key, value]` pair of a `Map` read as a sequence.
struct PairDeser<'a, 'de> {
    key: Deser<'a, 'de>,
    value: Deser<'a, 'de>,
}

impl<'a, 'de> Deserializer<'de> for PairDeser<'a, 'de> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(PairAccess {
            items: [Some(self.key), Some(self.value)],
            next: 0,
        })
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct PairAccess<'a, 'de> {
    items: [Option<Deser<'a, 'de>>; 2],
    next: usize,
}

impl<'a, 'de> SeqAccess<'de> for PairAccess<'a, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let Some(slot) = self.items.get_mut(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        match slot.take() {
            Some(d) => seed.deserialize(d).map(Some),
            None => Ok(None),
        }
    }
}

/// A property name, readable as a string or (when it is one) an integer.
struct KeyDeser<'de>(&'de PropertyKey);

macro_rules! key_int {
    ($($method:ident => $visit:ident: $t:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            match self.0.as_string().parse::<$t>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for KeyDeser<'de> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            PropertyKey::String(s) => visitor.visit_borrowed_str(s),
            PropertyKey::Index(i) => visitor.visit_string(i.to_string()),
        }
    }
    key_int! {
        deserialize_i8 => visit_i8: i8;
        deserialize_i16 => visit_i16: i16;
        deserialize_i32 => visit_i32: i32;
        deserialize_i64 => visit_i64: i64;
        deserialize_i128 => visit_i128: i128;
        deserialize_u8 => visit_u8: u8;
        deserialize_u16 => visit_u16: u16;
        deserialize_u32 => visit_u32: u32;
        deserialize_u64 => visit_u64: u64;
        deserialize_u128 => visit_u128: u128;
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let s = self.0.as_string().into_owned();
        visitor.visit_enum(s.into_deserializer())
    }
    forward_to_deserialize_any! {
        bool f32 f64 char str string bytes byte_buf option unit unit_struct
        seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct PropsAccess<'a, 'de> {
    props: std::slice::Iter<'de, (PropertyKey, JsValue)>,
    value: Option<&'de JsValue>,
    parent: Deser<'a, 'de>,
}

impl<'a, 'de> MapAccess<'de> for PropsAccess<'a, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.props.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(KeyDeser(k)).map(Some)
            }
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let v = self
            .value
            .take()
            .ok_or_else(|| Error::Serde("next_value before next_key".into()))?;
        seed.deserialize(self.parent.child(v)?)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.props.len())
    }
}

struct EntriesAccess<'a, 'de> {
    entries: std::slice::Iter<'de, (JsValue, JsValue)>,
    value: Option<&'de JsValue>,
    parent: Deser<'a, 'de>,
}

impl<'a, 'de> MapAccess<'de> for EntriesAccess<'a, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(self.parent.child(k)?).map(Some)
            }
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let v = self
            .value
            .take()
            .ok_or_else(|| Error::Serde("next_value before next_key".into()))?;
        seed.deserialize(self.parent.child(v)?)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An `Error` read as a map of `name`, `message`, `stack` and `cause`.
struct ErrorAccess<'a, 'de> {
    name: Option<&'static str>,
    message: Option<&'de str>,
    stack: Option<&'de str>,
    cause: Option<&'de JsValue>,
    value: Option<ErrorField<'de>>,
    parent: Deser<'a, 'de>,
}

enum ErrorField<'de> {
    Str(&'de str),
    Value(&'de JsValue),
}

impl<'a, 'de> MapAccess<'de> for ErrorAccess<'a, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let (key, value) = if let Some(n) = self.name.take() {
            ("name", ErrorField::Str(n))
        } else if let Some(m) = self.message.take() {
            ("message", ErrorField::Str(m))
        } else if let Some(s) = self.stack.take() {
            ("stack", ErrorField::Str(s))
        } else if let Some(c) = self.cause.take() {
            ("cause", ErrorField::Value(c))
        } else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(StrDeserializer::<Error>::new(key))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        match self.value.take() {
            Some(ErrorField::Str(s)) => seed.deserialize(BorrowedStrDeserializer::<Error>::new(s)),
            Some(ErrorField::Value(v)) => seed.deserialize(self.parent.child(v)?),
            None => Err(Error::Serde("next_value before next_key".into())),
        }
    }
}

struct EnumAccess<'a, 'de> {
    variant: &'de str,
    value: Option<&'de JsValue>,
    parent: Deser<'a, 'de>,
}

impl<'a, 'de> de::EnumAccess<'de> for EnumAccess<'a, 'de> {
    type Error = Error;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let v = seed.deserialize(BorrowedStrDeserializer::<Error>::new(self.variant))?;
        Ok((v, self))
    }
}

impl<'a, 'de> de::VariantAccess<'de> for EnumAccess<'a, 'de> {
    type Error = Error;
    fn unit_variant(self) -> Result<()> {
        match self.value {
            None | Some(JsValue::Null | JsValue::Undefined) => Ok(()),
            Some(v) => Err(de::Error::invalid_type(unexpected(v), &"unit variant")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self.parent.child(self.value.unwrap_or(&UNDEFINED))?)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.parent
            .child(self.value.unwrap_or(&UNDEFINED))?
            .deserialize_seq(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.parent
            .child(self.value.unwrap_or(&UNDEFINED))?
            .deserialize_map(visitor)
    }
}

/// The single-entry map `{ "$kv_v8::<Kind>": payload }` for a value serde
/// has no type for (see [`JsValue`]'s `Serialize`).
struct MagicAccess<'a, 'de> {
    payload: Option<Deser<'a, 'de>>,
}

impl<'a, 'de> MapAccess<'de> for MagicAccess<'a, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some(d) = &self.payload else {
            return Ok(None);
        };
        let kind = match d.value {
            JsValue::Undefined => "Undefined",
            JsValue::BigInt(_) => "BigInt",
            JsValue::Array(_) => "Array",
            JsValue::Date(_) => "Date",
            JsValue::RegExp(_) => "RegExp",
            JsValue::Map(_) => "Map",
            JsValue::Set(_) => "Set",
            JsValue::ArrayBuffer(_) => "ArrayBuffer",
            JsValue::TypedArray(_) => "TypedArray",
            JsValue::Error(_) => "Error",
            JsValue::BooleanObject(_) => "BooleanObject",
            JsValue::NumberObject(_) => "NumberObject",
            JsValue::BigIntObject(_) => "BigIntObject",
            JsValue::StringObject(_) => "StringObject",
            JsValue::Ref(_) => "Ref",
            _ => "Value",
        };
        seed.deserialize(de::value::StringDeserializer::<Error>::new(format!(
            "{MAGIC}{kind}"
        )))
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let d = self
            .payload
            .take()
            .ok_or_else(|| Error::Serde("next_value before next_key".into()))?;
        seed.deserialize(Payload(d))
    }
}

/// The payload of a magic map, in the shapes `from_magic` reads back.
struct Payload<'a, 'de>(Deser<'a, 'de>);

impl<'a, 'de> Deserializer<'de> for Payload<'a, 'de> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let d = self.0;
        match d.value {
            JsValue::BigInt(n) | JsValue::BigIntObject(n) => visitor.visit_string(n.to_string()),
            JsValue::Date(n) | JsValue::NumberObject(n) => visitor.visit_f64(*n),
            JsValue::BooleanObject(b) => visitor.visit_bool(*b),
            JsValue::StringObject(s) => visitor.visit_borrowed_str(s),
            JsValue::Ref(n) => visitor.visit_u32(*n),
            JsValue::RegExp(re) => visitor.visit_seq(de::value::SeqDeserializer::<_, Error>::new(
                [re.source.as_str(), re.flags.as_str()].into_iter(),
            )),
            JsValue::Map(entries) => visitor.visit_seq(SeqOf {
                items: Items::Pairs(entries.iter()),
                parent: d,
            }),
            JsValue::Set(items) => visitor.visit_seq(d.seq_of(items)),
            JsValue::ArrayBuffer(b) => visitor.visit_borrowed_bytes(b),
            JsValue::TypedArray(t) => visitor.visit_seq(TypedPayload {
                kind: Some(t.kind.name()),
                bytes: Some(&t.bytes),
            }),
            JsValue::Error(e) => visitor.visit_map(ErrorAccess {
                name: Some(e.name.as_str()),
                message: e.message.as_deref(),
                stack: e.stack.as_deref(),
                cause: e.cause.as_ref(),
                value: None,
                parent: d,
            }),
            JsValue::Array(a) => visitor.visit_map(ArrayPayload {
                array: a,
                stage: 0,
                parent: d,
            }),
            // Undefined and anything else: unit.
            _ => visitor.visit_unit(),
        }
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct TypedPayload<'de> {
    kind: Option<&'static str>,
    bytes: Option<&'de [u8]>,
}

impl<'de> SeqAccess<'de> for TypedPayload<'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if let Some(k) = self.kind.take() {
            return seed.deserialize(StrDeserializer::<Error>::new(k)).map(Some);
        }
        if let Some(b) = self.bytes.take() {
            return seed
                .deserialize(de::value::BorrowedBytesDeserializer::<Error>::new(b))
                .map(Some);
        }
        Ok(None)
    }
}

/// `{length, items: [[index, value], …], props: [[key, value], …]}`.
struct ArrayPayload<'a, 'de> {
    array: &'de JsArray,
    stage: u8,
    parent: Deser<'a, 'de>,
}

impl<'a, 'de> MapAccess<'de> for ArrayPayload<'a, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let key = match self.stage {
            0 => "length",
            1 => "items",
            2 => "props",
            _ => return Ok(None),
        };
        seed.deserialize(StrDeserializer::<Error>::new(key))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let stage = self.stage;
        self.stage += 1;
        match stage {
            0 => seed.deserialize(de::value::U64Deserializer::<Error>::new(
                self.array.items.len() as u64,
            )),
            1 => seed.deserialize(IndexedItems {
                array: self.array,
                parent: self.parent,
            }),
            _ => seed.deserialize(ArrayProps {
                array: self.array,
                parent: self.parent,
            }),
        }
    }
}

struct IndexedItems<'a, 'de> {
    array: &'de JsArray,
    parent: Deser<'a, 'de>,
}

impl<'a, 'de> Deserializer<'de> for IndexedItems<'a, 'de> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        struct Access<'a, 'de> {
            it: std::iter::Enumerate<std::slice::Iter<'de, Option<JsValue>>>,
            parent: Deser<'a, 'de>,
        }
        impl<'a, 'de> SeqAccess<'de> for Access<'a, 'de> {
            type Error = Error;
            fn next_element_seed<T: DeserializeSeed<'de>>(
                &mut self,
                seed: T,
            ) -> Result<Option<T::Value>> {
                for (i, item) in self.it.by_ref() {
                    if let Some(v) = item {
                        return seed
                            .deserialize(IndexPair {
                                index: i as u64,
                                value: self.parent.child(v)?,
                            })
                            .map(Some);
                    }
                }
                Ok(None)
            }
        }
        visitor.visit_seq(Access {
            it: self.array.items.iter().enumerate(),
            parent: self.parent,
        })
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct IndexPair<'a, 'de> {
    index: u64,
    value: Deser<'a, 'de>,
}

impl<'a, 'de> Deserializer<'de> for IndexPair<'a, 'de> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        struct Access<'a, 'de> {
            index: Option<u64>,
            value: Option<Deser<'a, 'de>>,
        }
        impl<'a, 'de> SeqAccess<'de> for Access<'a, 'de> {
            type Error = Error;
            fn next_element_seed<T: DeserializeSeed<'de>>(
                &mut self,
                seed: T,
            ) -> Result<Option<T::Value>> {
                if let Some(i) = self.index.take() {
                    return seed
                        .deserialize(de::value::U64Deserializer::<Error>::new(i))
                        .map(Some);
                }
                match self.value.take() {
                    Some(d) => seed.deserialize(d).map(Some),
                    None => Ok(None),
                }
            }
        }
        visitor.visit_seq(Access {
            index: Some(self.index),
            value: Some(self.value),
        })
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct ArrayProps<'a, 'de> {
    array: &'de JsArray,
    parent: Deser<'a, 'de>,
}

impl<'a, 'de> Deserializer<'de> for ArrayProps<'a, 'de> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        struct Access<'a, 'de> {
            it: std::slice::Iter<'de, (PropertyKey, JsValue)>,
            parent: Deser<'a, 'de>,
        }
        impl<'a, 'de> SeqAccess<'de> for Access<'a, 'de> {
            type Error = Error;
            fn next_element_seed<T: DeserializeSeed<'de>>(
                &mut self,
                seed: T,
            ) -> Result<Option<T::Value>> {
                match self.it.next() {
                    None => Ok(None),
                    Some((k, v)) => seed
                        .deserialize(KeyPair {
                            key: k,
                            value: self.parent.child(v)?,
                        })
                        .map(Some),
                }
            }
        }
        visitor.visit_seq(Access {
            it: self.array.props.iter(),
            parent: self.parent,
        })
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct KeyPair<'a, 'de> {
    key: &'de PropertyKey,
    value: Deser<'a, 'de>,
}

impl<'a, 'de> Deserializer<'de> for KeyPair<'a, 'de> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        struct Access<'a, 'de> {
            key: Option<&'de PropertyKey>,
            value: Option<Deser<'a, 'de>>,
        }
        impl<'a, 'de> SeqAccess<'de> for Access<'a, 'de> {
            type Error = Error;
            fn next_element_seed<T: DeserializeSeed<'de>>(
                &mut self,
                seed: T,
            ) -> Result<Option<T::Value>> {
                if let Some(k) = self.key.take() {
                    return seed.deserialize(KeyDeser(k)).map(Some);
                }
                match self.value.take() {
                    Some(d) => seed.deserialize(d).map(Some),
                    None => Ok(None),
                }
            }
        }
        visitor.visit_seq(Access {
            key: Some(self.key),
            value: Some(self.value),
        })
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// Reads a [`JsValue`] from any self-describing format. From this crate's
/// deserializer it is exact (object references included); from others
/// (JSON and the like) integers and floats become numbers, unit `null`,
/// `None` `undefined`, bytes a `Uint8Array`, sequences arrays, maps with
/// string keys objects and other maps `Map`s, and the single-key maps
/// `{"$kv_v8::<Kind>": …}` that [`JsValue`]'s `Serialize` writes become the
/// values they stand for.
impl<'de> de::Deserialize<'de> for JsValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(JsValueVisitor)
    }
}

struct JsValueVisitor;

impl<'de> Visitor<'de> for JsValueVisitor {
    type Value = JsValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JavaScript value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsValue, E> {
        Ok(JsValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsValue, E> {
        Ok(crate::ser::integer(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<JsValue, E> {
        Ok(crate::ser::integer(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsValue, E> {
        Ok(crate::ser::integer(v.into()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<JsValue, E> {
        Ok(match i128::try_from(v) {
            Ok(n) => crate::ser::integer(n),
            Err(_) => JsValue::BigInt(v.into()),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsValue, E> {
        Ok(JsValue::Number(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<JsValue, E> {
        Ok(JsValue::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<JsValue, E> {
        Ok(JsValue::String(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<JsValue, E> {
        Ok(JsValue::uint8_array(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<JsValue, E> {
        Ok(JsValue::uint8_array(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<JsValue, E> {
        Ok(JsValue::Undefined)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<JsValue, D::Error> {
        de::Deserialize::deserialize(d)
    }
    fn visit_unit<E: de::Error>(self) -> Result<JsValue, E> {
        Ok(JsValue::Null)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<JsValue, D::Error> {
        de::Deserialize::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element::<JsValue>()? {
            items.push(v);
        }
        Ok(JsValue::array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsValue, A::Error> {
        let mut entries: Vec<(JsValue, JsValue)> = Vec::new();
        while let Some(k) = map.next_key::<JsValue>()? {
            if let (true, JsValue::String(s)) = (entries.is_empty(), &k)
                && let Some(kind) = s.strip_prefix(MAGIC)
            {
                let kind = kind.to_owned();
                let payload: JsValue = map.next_value()?;
                if map.next_key::<JsValue>()?.is_some() {
                    return Err(de::Error::custom(format!(
                        "{MAGIC}{kind} must be the only key of its map"
                    )));
                }
                return crate::ser::from_magic(&kind, payload).map_err(de::Error::custom);
            }
            let v = map.next_value::<JsValue>()?;
            entries.push((k, v));
        }
        if entries.iter().all(|(k, _)| matches!(k, JsValue::String(_))) {
            return Ok(JsValue::Object(
                entries
                    .into_iter()
                    .filter_map(|(k, v)| match k {
                        JsValue::String(s) => Some((PropertyKey::new(s), v)),
                        _ => None,
                    })
                    .collect(),
            ));
        }
        Ok(JsValue::Map(entries))
    }
}
