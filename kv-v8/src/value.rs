//! The dynamic value model: [`JsValue`] and the types it is built from.

use std::fmt;
use std::sync::Arc;

use num_bigint::BigInt;

/// A JavaScript value as V8's structured clone carries it.
///
/// # Object identity
///
/// JavaScript values form a graph: one object may be reachable twice, or
/// contain itself. A `JsValue` is a tree in which a repeated object appears
/// in full at its first position (in depth-first, pre-order) and as
/// [`JsValue::Ref`] afterwards. `Ref(n)` names the `n`-th *object node* of the
/// whole tree, counting from 0 in pre-order, where the object nodes are the
/// variants that are JavaScript objects: `Array`, `Object`, `Date`, `RegExp`,
/// `Map`, `Set`, `ArrayBuffer`, `TypedArray`, `Error` and the four boxed
/// primitives. Primitives (`Undefined` … `String`) and `Ref` itself are not
/// object nodes. A `Ref` may point only at a node that starts before it (an
/// ancestor, which makes a cycle, or an earlier sibling, which makes a
/// shared reference); [`crate::encode`] refuses any other.
///
/// # Equality
///
/// `PartialEq` is structural and treats numbers as JavaScript's `Object.is`
/// does, except that every NaN equals every NaN: `NaN == NaN`, `0 != -0`.
/// Property order is significant (V8 keeps it; Deno's `assertEquals` does
/// not look at it).
#[derive(Clone, Debug)]
pub enum JsValue {
    /// `undefined`.
    Undefined,
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A `number` (V8's int32, uint32 and double encodings all decode here).
    Number(f64),
    /// A `bigint`.
    BigInt(BigInt),
    /// A `string`. JavaScript strings are UTF-16; a lone surrogate in a
    /// decoded string becomes U+FFFD.
    String(String),
    /// An `Array`, with holes and any non-index properties.
    Array(JsArray),
    /// A plain object (`{}`), its own enumerable properties in order. A class
    /// instance is stored by Deno as a plain object too.
    Object(Vec<(PropertyKey, JsValue)>),
    /// A `Date`, as milliseconds since the Unix epoch (NaN for an invalid
    /// date).
    Date(f64),
    /// A `RegExp`.
    RegExp(Box<JsRegExp>),
    /// A `Map`, its entries in insertion order.
    Map(Vec<(JsValue, JsValue)>),
    /// A `Set`, its elements in insertion order.
    Set(Vec<JsValue>),
    /// An `ArrayBuffer` (a resizable or immutable one decodes here too).
    ArrayBuffer(Vec<u8>),
    /// A typed array or `DataView`: the bytes it sees.
    TypedArray(TypedArray),
    /// An `Error` or one of its standard subclasses.
    Error(Box<JsError>),
    /// `new Boolean(b)`.
    BooleanObject(bool),
    /// `new Number(n)`.
    NumberObject(f64),
    /// `Object(n)` for a bigint `n`.
    BigIntObject(BigInt),
    /// `new String(s)`.
    StringObject(String),
    /// The object node with this pre-order index (see the type docs).
    Ref(u32),
}

/// An array: its elements (`None` is a hole) and its other own properties.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsArray {
    /// Elements by index; the array's `length` is `items.len()`.
    pub items: Vec<Option<JsValue>>,
    /// Own enumerable properties that are not array indices (`arr.foo = 1`).
    pub props: Vec<(PropertyKey, JsValue)>,
}

impl JsArray {
    /// An array of these elements, without holes or extra properties.
    pub fn new(items: impl IntoIterator<Item = JsValue>) -> Self {
        JsArray {
            items: items.into_iter().map(Some).collect(),
            props: Vec::new(),
        }
    }

    /// Whether the array has at least one hole.
    pub fn has_holes(&self) -> bool {
        self.items.iter().any(Option::is_none)
    }
}

/// A property name: an array index or a string.
///
/// JavaScript treats the string `"3"` and the index `3` as the same property
/// name; [`PropertyKey::from`] turns canonical index strings into `Index`,
/// so each name has one representation.
///
/// Names are shared (`Arc<str>`): the decoder gives every occurrence of a
/// name in one value the same allocation, as V8 internalizes them, so an
/// array of a thousand records holds each field name once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PropertyKey {
    /// An array index, `0 ..= 2^32 - 2`.
    Index(u32),
    /// Any other name.
    String(Arc<str>),
}

/// The largest array index (`2^32 - 2`).
pub(crate) const MAX_INDEX: u32 = u32::MAX - 1;

impl PropertyKey {
    /// The canonical key for a property name.
    pub fn new(name: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        match parse_index(name) {
            Some(i) => PropertyKey::Index(i),
            None => PropertyKey::String(name.into()),
        }
    }

    /// The key for a JavaScript number used as a property name.
    pub fn from_number(n: f64) -> Self {
        if n >= 0.0 && n <= f64::from(MAX_INDEX) && n.fract() == 0.0 {
            // The range check above makes the cast exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return PropertyKey::Index(n as u32);
        }
        PropertyKey::String(crate::display::number_to_string(n).into())
    }

    /// The property name as JavaScript spells it.
    pub fn as_string(&self) -> std::borrow::Cow<'_, str> {
        match self {
            PropertyKey::Index(i) => std::borrow::Cow::Owned(i.to_string()),
            PropertyKey::String(s) => std::borrow::Cow::Borrowed(s),
        }
    }
}

pub(crate) fn parse_index(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_digit) || b.len() > 10 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    u32::try_from(n).ok().filter(|&n| n <= MAX_INDEX)
}

impl From<&str> for PropertyKey {
    fn from(s: &str) -> Self {
        PropertyKey::new(s)
    }
}

impl From<String> for PropertyKey {
    fn from(s: String) -> Self {
        PropertyKey::new(s)
    }
}

impl From<u32> for PropertyKey {
    /// `u32::MAX` is not an array index and becomes the string
    /// `"4294967295"`.
    fn from(i: u32) -> Self {
        if i <= MAX_INDEX {
            PropertyKey::Index(i)
        } else {
            PropertyKey::String(i.to_string().into())
        }
    }
}

impl fmt::Display for PropertyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyKey::Index(i) => write!(f, "{i}"),
            PropertyKey::String(s) => f.write_str(s),
        }
    }
}

/// A regular expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsRegExp {
    /// The pattern (`source`).
    pub source: String,
    /// The flags, in JavaScript's canonical order `dgilmsuvy` (`l` is V8's
    /// experimental linear-engine flag).
    pub flags: String,
}

/// The element type of a [`TypedArray`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TypedArrayKind {
    /// `Int8Array`.
    Int8,
    /// `Uint8Array`.
    Uint8,
    /// `Uint8ClampedArray`.
    Uint8Clamped,
    /// `Int16Array`.
    Int16,
    /// `Uint16Array`.
    Uint16,
    /// `Int32Array`.
    Int32,
    /// `Uint32Array`.
    Uint32,
    /// `Float16Array`.
    Float16,
    /// `Float32Array`.
    Float32,
    /// `Float64Array`.
    Float64,
    /// `BigInt64Array`.
    BigInt64,
    /// `BigUint64Array`.
    BigUint64,
    /// `DataView`.
    DataView,
}

impl TypedArrayKind {
    /// Every kind, in V8's tag order.
    pub const ALL: [TypedArrayKind; 13] = [
        TypedArrayKind::Int8,
        TypedArrayKind::Uint8,
        TypedArrayKind::Uint8Clamped,
        TypedArrayKind::Int16,
        TypedArrayKind::Uint16,
        TypedArrayKind::Int32,
        TypedArrayKind::Uint32,
        TypedArrayKind::Float16,
        TypedArrayKind::Float32,
        TypedArrayKind::Float64,
        TypedArrayKind::BigInt64,
        TypedArrayKind::BigUint64,
        TypedArrayKind::DataView,
    ];

    /// Bytes per element (1 for `DataView`).
    pub fn element_size(self) -> usize {
        match self {
            TypedArrayKind::Int8
            | TypedArrayKind::Uint8
            | TypedArrayKind::Uint8Clamped
            | TypedArrayKind::DataView => 1,
            TypedArrayKind::Int16 | TypedArrayKind::Uint16 | TypedArrayKind::Float16 => 2,
            TypedArrayKind::Int32 | TypedArrayKind::Uint32 | TypedArrayKind::Float32 => 4,
            TypedArrayKind::Float64 | TypedArrayKind::BigInt64 | TypedArrayKind::BigUint64 => 8,
        }
    }

    /// The JavaScript constructor name, e.g. `"Uint8Array"`.
    pub fn name(self) -> &'static str {
        match self {
            TypedArrayKind::Int8 => "Int8Array",
            TypedArrayKind::Uint8 => "Uint8Array",
            TypedArrayKind::Uint8Clamped => "Uint8ClampedArray",
            TypedArrayKind::Int16 => "Int16Array",
            TypedArrayKind::Uint16 => "Uint16Array",
            TypedArrayKind::Int32 => "Int32Array",
            TypedArrayKind::Uint32 => "Uint32Array",
            TypedArrayKind::Float16 => "Float16Array",
            TypedArrayKind::Float32 => "Float32Array",
            TypedArrayKind::Float64 => "Float64Array",
            TypedArrayKind::BigInt64 => "BigInt64Array",
            TypedArrayKind::BigUint64 => "BigUint64Array",
            TypedArrayKind::DataView => "DataView",
        }
    }

    /// The kind whose [`name`](Self::name) this is.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            TypedArrayKind::Int8 => b'b',
            TypedArrayKind::Uint8 => b'B',
            TypedArrayKind::Uint8Clamped => b'C',
            TypedArrayKind::Int16 => b'w',
            TypedArrayKind::Uint16 => b'W',
            TypedArrayKind::Int32 => b'd',
            TypedArrayKind::Uint32 => b'D',
            TypedArrayKind::Float16 => b'h',
            TypedArrayKind::Float32 => b'f',
            TypedArrayKind::Float64 => b'F',
            TypedArrayKind::BigInt64 => b'q',
            TypedArrayKind::BigUint64 => b'Q',
            TypedArrayKind::DataView => b'?',
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.tag() == tag)
    }
}

/// A typed array or `DataView`: its kind and the bytes it sees (its
/// `byteLength` bytes from its `byteOffset`).
///
/// A decoded view keeps only the bytes it sees, not the rest of its buffer,
/// and two views that shared one buffer in JavaScript no longer share it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedArray {
    /// The element type.
    pub kind: TypedArrayKind,
    /// The bytes, in little-endian element order; a multiple of the
    /// element size.
    pub bytes: Vec<u8>,
}

impl TypedArray {
    /// A `Uint8Array` over these bytes.
    pub fn uint8(bytes: impl Into<Vec<u8>>) -> Self {
        TypedArray {
            kind: TypedArrayKind::Uint8,
            bytes: bytes.into(),
        }
    }
}

/// The constructor of an [`JsError`]: V8 keeps only the standard ones (a
/// custom subclass, or a changed `name`, is stored as plain `Error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ErrorName {
    /// `Error`.
    #[default]
    Error,
    /// `EvalError`.
    EvalError,
    /// `RangeError`.
    RangeError,
    /// `ReferenceError`.
    ReferenceError,
    /// `SyntaxError`.
    SyntaxError,
    /// `TypeError`.
    TypeError,
    /// `URIError`.
    UriError,
}

impl ErrorName {
    /// Every name.
    pub const ALL: [ErrorName; 7] = [
        ErrorName::Error,
        ErrorName::EvalError,
        ErrorName::RangeError,
        ErrorName::ReferenceError,
        ErrorName::SyntaxError,
        ErrorName::TypeError,
        ErrorName::UriError,
    ];

    /// The JavaScript name, e.g. `"TypeError"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorName::Error => "Error",
            ErrorName::EvalError => "EvalError",
            ErrorName::RangeError => "RangeError",
            ErrorName::ReferenceError => "ReferenceError",
            ErrorName::SyntaxError => "SyntaxError",
            ErrorName::TypeError => "TypeError",
            ErrorName::UriError => "URIError",
        }
    }

    /// The name whose [`as_str`](Self::as_str) this is.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == name)
    }

    /// V8's prototype sub-tag (none for plain `Error`).
    pub(crate) fn tag(self) -> Option<u8> {
        match self {
            ErrorName::Error => None,
            ErrorName::EvalError => Some(b'E'),
            ErrorName::RangeError => Some(b'R'),
            ErrorName::ReferenceError => Some(b'F'),
            ErrorName::SyntaxError => Some(b'S'),
            ErrorName::TypeError => Some(b'T'),
            ErrorName::UriError => Some(b'U'),
        }
    }
}

/// An `Error` object: what V8 serialises of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsError {
    /// Its constructor.
    pub name: ErrorName,
    /// `message`, if it has one.
    pub message: Option<String>,
    /// `stack`, if it is a string.
    pub stack: Option<String>,
    /// `cause`, if it has one.
    pub cause: Option<JsValue>,
}

fn same_number(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

impl PartialEq for JsValue {
    fn eq(&self, other: &Self) -> bool {
        use JsValue as V;
        match (self, other) {
            (V::Undefined, V::Undefined) | (V::Null, V::Null) => true,
            (V::Bool(a), V::Bool(b)) | (V::BooleanObject(a), V::BooleanObject(b)) => a == b,
            (V::Number(a), V::Number(b))
            | (V::Date(a), V::Date(b))
            | (V::NumberObject(a), V::NumberObject(b)) => same_number(*a, *b),
            (V::BigInt(a), V::BigInt(b)) | (V::BigIntObject(a), V::BigIntObject(b)) => a == b,
            (V::String(a), V::String(b)) | (V::StringObject(a), V::StringObject(b)) => a == b,
            (V::Array(a), V::Array(b)) => a == b,
            (V::Object(a), V::Object(b)) => a == b,
            (V::RegExp(a), V::RegExp(b)) => a == b,
            (V::Map(a), V::Map(b)) => a == b,
            (V::Set(a), V::Set(b)) => a == b,
            (V::ArrayBuffer(a), V::ArrayBuffer(b)) => a == b,
            (V::TypedArray(a), V::TypedArray(b)) => a == b,
            (V::Error(a), V::Error(b)) => a == b,
            (V::Ref(a), V::Ref(b)) => a == b,
            _ => false,
        }
    }
}

impl JsValue {
    /// A plain object with these properties, in order.
    pub fn object<K: Into<PropertyKey>>(props: impl IntoIterator<Item = (K, JsValue)>) -> Self {
        JsValue::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A dense array of these elements.
    pub fn array(items: impl IntoIterator<Item = JsValue>) -> Self {
        JsValue::Array(JsArray::new(items))
    }

    /// A `RegExp`.
    pub fn regexp(source: impl Into<String>, flags: impl Into<String>) -> Self {
        JsValue::RegExp(Box::new(JsRegExp {
            source: source.into(),
            flags: flags.into(),
        }))
    }

    /// A `Uint8Array` over these bytes.
    pub fn uint8_array(bytes: impl Into<Vec<u8>>) -> Self {
        JsValue::TypedArray(TypedArray::uint8(bytes))
    }

    /// Whether this variant is an object node (see the type docs).
    pub fn is_object_node(&self) -> bool {
        !matches!(
            self,
            JsValue::Undefined
                | JsValue::Null
                | JsValue::Bool(_)
                | JsValue::Number(_)
                | JsValue::BigInt(_)
                | JsValue::String(_)
                | JsValue::Ref(_)
        )
    }

    /// The string, if this is a string primitive.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is a number primitive.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            JsValue::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of property `name`, if this is an object that has it.
    pub fn get(&self, name: &str) -> Option<&JsValue> {
        let key = PropertyKey::new(name);
        let props = match self {
            JsValue::Object(props) => props,
            JsValue::Array(a) => {
                if let PropertyKey::Index(i) = key {
                    return a.items.get(i as usize).and_then(Option::as_ref);
                }
                &a.props
            }
            _ => return None,
        };
        props.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Calls `f` on every object node in pre-order (the numbering that
    /// [`JsValue::Ref`] uses), with its index; stops at `max_depth`.
    pub(crate) fn object_nodes<'a>(&'a self, out: &mut Vec<&'a JsValue>, depth: usize) {
        if depth > crate::MAX_DEPTH {
            return;
        }
        if self.is_object_node() {
            out.push(self);
        }
        let depth = depth + 1;
        match self {
            JsValue::Array(a) => {
                for v in a.items.iter().flatten() {
                    v.object_nodes(out, depth);
                }
                for (_, v) in &a.props {
                    v.object_nodes(out, depth);
                }
            }
            JsValue::Object(props) => {
                for (_, v) in props {
                    v.object_nodes(out, depth);
                }
            }
            JsValue::Map(entries) => {
                for (k, v) in entries {
                    k.object_nodes(out, depth);
                    v.object_nodes(out, depth);
                }
            }
            JsValue::Set(items) => {
                for v in items {
                    v.object_nodes(out, depth);
                }
            }
            JsValue::Error(e) => {
                if let Some(c) = &e.cause {
                    c.object_nodes(out, depth);
                }
            }
            _ => {}
        }
    }
}

macro_rules! from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for JsValue {
            fn from(v: $t) -> Self {
                JsValue::Number(f64::from(v))
            }
        }
    )*};
}
from_number!(i8, i16, i32, u8, u16, u32, f32, f64);

impl From<bool> for JsValue {
    fn from(v: bool) -> Self {
        JsValue::Bool(v)
    }
}

impl From<&str> for JsValue {
    fn from(v: &str) -> Self {
        JsValue::String(v.to_owned())
    }
}

impl From<String> for JsValue {
    fn from(v: String) -> Self {
        JsValue::String(v)
    }
}

impl From<BigInt> for JsValue {
    fn from(v: BigInt) -> Self {
        JsValue::BigInt(v)
    }
}

impl<T: Into<JsValue>> From<Option<T>> for JsValue {
    /// `None` is `null`.
    fn from(v: Option<T>) -> Self {
        v.map_or(JsValue::Null, Into::into)
    }
}

impl<T: Into<JsValue>> From<Vec<T>> for JsValue {
    fn from(v: Vec<T>) -> Self {
        JsValue::array(v.into_iter().map(Into::into))
    }
}
