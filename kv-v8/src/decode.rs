//! The decoder: V8 `ValueSerializer` bytes to [`JsValue`].

use std::sync::Arc;

use num_bigint::{BigInt, Sign};

use crate::tag;
use crate::value::{
    ErrorName, JsArray, JsError, JsRegExp, JsValue, PropertyKey, TypedArray, TypedArrayKind,
};
use crate::{Error, MAX_DEPTH, Result};

/// Oldest format version read: 13 gave host objects their own tag, so
/// every tag after it means one thing.
pub(crate) const MIN_VERSION: u64 = 13;
/// Newest format version read (Deno 2.9).
pub(crate) const MAX_VERSION: u64 = 16;

/// How many array slots (elements and holes) one decode may create. A sparse
/// array costs its length in slots, so `a[1e9] = 1` (a few bytes on the
/// wire) is refused instead of allocating gigabytes.
pub const MAX_ARRAY_SLOTS: usize = 1 << 20;

/// Decodes one V8-serialised value (with its `FF <version>` header), as
/// Deno writes it into the database (versions 13 to 16).
///
/// # Errors
/// [`Error::UnsupportedTag`] names a tag the codec does not read (host
/// objects, shared memory, WebAssembly), [`Error::UnsupportedVersion`] a
/// format version outside 13 to 16; malformed or truncated input gives
/// [`Error::Malformed`], [`Error::UnexpectedEnd`] and the like. No input
/// panics.
pub fn decode(bytes: &[u8]) -> Result<JsValue> {
    let mut d = Decoder {
        input: bytes,
        pos: 0,
        version: 0,
        wire: Vec::with_capacity(16),
        nodes: 0,
        depth: 0,
        slots_left: MAX_ARRAY_SLOTS,
        props: Vec::new(),
        names: Vec::new(),
    };
    d.read_header()?;
    let value = d.read_value()?;
    while d.pos < d.input.len() && d.input[d.pos] == tag::PADDING {
        d.pos += 1;
    }
    if d.pos < d.input.len() {
        return Err(Error::TrailingBytes {
            offset: d.pos,
            count: d.input.len() - d.pos,
        });
    }
    Ok(value)
}

/// Latin-1 bytes (V8's one-byte strings) as a string.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// What a wire object id (V8's numbering) stands for in the tree.
#[derive(Clone, Copy)]
enum Slot {
    /// An object node with this pre-order index.
    Node(u32),
    /// An array buffer: where its bytes are in the input, and its node if
    /// it is a node of its own (`None` once a view has absorbed it).
    Buffer {
        start: usize,
        len: usize,
        node: Option<u32>,
    },
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    version: u64,
    /// Indexed by V8's object id.
    wire: Vec<Slot>,
    /// Object nodes created so far.
    nodes: u32,
    depth: usize,
    slots_left: usize,
    /// Properties of the objects being read (see `read_properties`).
    props: Vec<(PropertyKey, JsValue)>,
    /// ASCII property names seen so far, shared by every later use.
    names: Vec<Arc<str>>,
}

/// How many distinct names `Decoder::names` keeps: a linear scan of a few
/// dozen short names is cheaper than hashing, and a value with more distinct
/// names than this is rarely made of repeated records.
const MAX_SHARED_NAMES: usize = 32;

impl<'a> Decoder<'a> {
    fn read_header(&mut self) -> Result<()> {
        if self.input.first() != Some(&tag::VERSION) {
            return Err(Error::MissingHeader);
        }
        self.pos = 1;
        let version = self.read_varint()?;
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion { version });
        }
        self.version = version;
        Ok(())
    }

    fn end(&self) -> Error {
        Error::UnexpectedEnd {
            offset: self.input.len(),
        }
    }

    fn read_byte(&mut self) -> Result<u8> {
        let b = *self.input.get(self.pos).ok_or_else(|| self.end())?;
        self.pos += 1;
        Ok(b)
    }

    fn read_bytes(&mut self, len: usize) -> Result<&'a [u8]> {
        let input = self.input;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or_else(|| self.end())?;
        self.pos = end;
        Ok(&input[end - len..end])
    }

    fn read_varint(&mut self) -> Result<u64> {
        // Most varints (lengths, small numbers) are one byte.
        if let Some(&b) = self.input.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        let start = self.pos;
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.read_byte()?;
            if shift == 63 && b > 1 {
                return Err(Error::malformed(start, "varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(Error::malformed(start, "varint overflows 64 bits"));
            }
        }
    }

    fn read_u32(&mut self) -> Result<u32> {
        let start = self.pos;
        let v = self.read_varint()?;
        u32::try_from(v).map_err(|_| Error::malformed(start, format!("{v} does not fit 32 bits")))
    }

    fn read_len(&mut self) -> Result<usize> {
        let start = self.pos;
        let v = self.read_varint()?;
        usize::try_from(v).map_err(|_| Error::malformed(start, format!("length {v} is too large")))
    }

    fn read_double(&mut self) -> Result<f64> {
        let b = self.read_bytes(8)?;
        let mut arr = [0u8; 8];
        arr.copy_from_slice(b);
        Ok(f64::from_le_bytes(arr))
    }

    fn read_zigzag(&mut self) -> Result<i32> {
        let v = self.read_u32()?;
        // Zigzag: 0, -1, 1, -2, … ; the shifted value fits 31 bits.
        #[allow(clippy::cast_possible_wrap)]
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    fn read_bigint_body(&mut self) -> Result<BigInt> {
        let bitfield = self.read_varint()?;
        let sign = if bitfield & 1 == 1 {
            Sign::Minus
        } else {
            Sign::Plus
        };
        let start = self.pos;
        let len = usize::try_from(bitfield >> 1)
            .map_err(|_| Error::malformed(start, "bigint is too large"))?;
        let bytes = self.read_bytes(len)?;
        Ok(BigInt::from_bytes_le(sign, bytes))
    }

    /// Skips padding and `?` (verify object count) prefixes; returns the
    /// next tag without consuming it.
    fn peek_tag(&mut self) -> Result<u8> {
        loop {
            let b = *self.input.get(self.pos).ok_or_else(|| self.end())?;
            match b {
                tag::PADDING => self.pos += 1,
                tag::VERIFY_OBJECT_COUNT => {
                    self.pos += 1;
                    self.read_varint()?;
                }
                _ => return Ok(b),
            }
        }
    }

    fn new_node(&mut self) -> u32 {
        let id = self.nodes;
        self.nodes = self.nodes.saturating_add(1);
        id
    }

    /// Starts an object node that has a wire id of its own.
    fn new_wire_node(&mut self) -> u32 {
        let id = self.new_node();
        self.wire.push(Slot::Node(id));
        id
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        Ok(())
    }

    fn read_value(&mut self) -> Result<JsValue> {
        // Containers recurse; everything else is read out of line, which
        // keeps this frame (and so the stack per nesting level) small.
        let t = self.peek_tag()?;
        self.pos += 1;
        match t {
            tag::BEGIN_OBJECT => self.read_object(),
            tag::BEGIN_DENSE_ARRAY => self.read_dense_array(),
            tag::BEGIN_SPARSE_ARRAY => self.read_sparse_array(),
            tag::BEGIN_MAP => self.read_map(),
            tag::BEGIN_SET => self.read_set(),
            tag::ERROR => self.read_error(),
            _ => self.read_leaf(t),
        }
    }

    #[inline(never)]
    fn read_leaf(&mut self, t: u8) -> Result<JsValue> {
        let at = self.pos - 1;
        Ok(match t {
            tag::UNDEFINED => JsValue::Undefined,
            tag::NULL => JsValue::Null,
            tag::TRUE => JsValue::Bool(true),
            tag::FALSE => JsValue::Bool(false),
            tag::INT32 => JsValue::Number(f64::from(self.read_zigzag()?)),
            tag::UINT32 => JsValue::Number(f64::from(self.read_u32()?)),
            tag::DOUBLE => JsValue::Number(self.read_double()?),
            tag::BIGINT => JsValue::BigInt(self.read_bigint_body()?),
            tag::ONE_BYTE_STRING | tag::TWO_BYTE_STRING | tag::UTF8_STRING => {
                JsValue::String(self.read_string_body(t)?)
            }
            tag::OBJECT_REFERENCE => self.read_reference(at)?,
            tag::DATE => {
                self.new_wire_node();
                JsValue::Date(self.read_double()?)
            }
            tag::TRUE_OBJECT => {
                self.new_wire_node();
                JsValue::BooleanObject(true)
            }
            tag::FALSE_OBJECT => {
                self.new_wire_node();
                JsValue::BooleanObject(false)
            }
            tag::NUMBER_OBJECT => {
                self.new_wire_node();
                JsValue::NumberObject(self.read_double()?)
            }
            tag::BIGINT_OBJECT => {
                self.new_wire_node();
                JsValue::BigIntObject(self.read_bigint_body()?)
            }
            tag::STRING_OBJECT => {
                self.new_wire_node();
                JsValue::StringObject(self.read_string()?)
            }
            tag::REGEXP => {
                self.new_wire_node();
                let source = self.read_string()?;
                let flags_at = self.pos;
                let bits = self.read_u32()?;
                let flags = crate::tag::regexp_flags_to_string(bits).ok_or_else(|| {
                    Error::malformed(flags_at, format!("unknown RegExp flag bits {bits:#x}"))
                })?;
                JsValue::RegExp(Box::new(JsRegExp { source, flags }))
            }
            tag::ARRAY_BUFFER | tag::IMMUTABLE_ARRAY_BUFFER | tag::RESIZABLE_ARRAY_BUFFER => {
                self.read_array_buffer(t)?
            }
            _ => return Err(Error::UnsupportedTag { tag: t, offset: at }),
        })
    }

    fn read_object(&mut self) -> Result<JsValue> {
        self.new_wire_node();
        self.enter()?;
        let (props, _) = self.read_properties(tag::END_OBJECT, None)?;
        let at = self.pos;
        let count = self.read_len()?;
        if count != props.len() {
            return Err(count_mismatch(at, "object properties", count, props.len()));
        }
        self.depth -= 1;
        Ok(JsValue::Object(props))
    }

    fn read_string_body(&mut self, t: u8) -> Result<String> {
        let at = self.pos;
        let len = self.read_len()?;
        let bytes = self.read_bytes(len)?;
        Ok(match t {
            tag::ONE_BYTE_STRING => match std::str::from_utf8(bytes) {
                Ok(s) if s.is_ascii() => s.to_owned(),
                _ => latin1(bytes),
            },
            tag::TWO_BYTE_STRING => {
                if len % 2 != 0 {
                    return Err(Error::malformed(at, "two-byte string has an odd length"));
                }
                let units = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]));
                char::decode_utf16(units)
                    .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect()
            }
            _ => String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    /// A string where V8 requires one (RegExp source, String object, Error
    /// message and stack).
    fn read_string(&mut self) -> Result<String> {
        let t = self.peek_tag()?;
        match t {
            tag::ONE_BYTE_STRING | tag::TWO_BYTE_STRING | tag::UTF8_STRING => {
                self.pos += 1;
                self.read_string_body(t)
            }
            _ => Err(Error::malformed(
                self.pos,
                format!("expected a string, found tag {t:#04x}"),
            )),
        }
    }

    fn read_key(&mut self) -> Result<PropertyKey> {
        let t = self.peek_tag()?;
        let at = self.pos;
        self.pos += 1;
        Ok(match t {
            tag::ONE_BYTE_STRING => self.read_name()?,
            tag::TWO_BYTE_STRING | tag::UTF8_STRING => PropertyKey::new(self.read_string_body(t)?),
            tag::INT32 => {
                let n = self.read_zigzag()?;
                match u32::try_from(n) {
                    Ok(i) => PropertyKey::Index(i),
                    Err(_) => PropertyKey::String(n.to_string().into()),
                }
            }
            tag::UINT32 => PropertyKey::from(self.read_u32()?),
            tag::DOUBLE => PropertyKey::from_number(self.read_double()?),
            _ => {
                return Err(Error::malformed(
                    at,
                    format!("a property key must be a string or a number, found tag {t:#04x}"),
                ));
            }
        })
    }

    /// A one-byte string property name, shared with earlier uses of it.
    fn read_name(&mut self) -> Result<PropertyKey> {
        let len = self.read_len()?;
        let bytes = self.read_bytes(len)?;
        // Names differ mostly in length or first byte: check those before
        // comparing whole names.
        let first = bytes.first().copied();
        if let Some(name) = self.names.iter().find(|n| {
            n.len() == bytes.len()
                && n.as_bytes().first().copied() == first
                && n.as_bytes() == bytes
        }) {
            return Ok(PropertyKey::String(name.clone()));
        }
        let Ok(name) = std::str::from_utf8(bytes) else {
            return Ok(PropertyKey::new(latin1(bytes)));
        };
        if !name.is_ascii() {
            return Ok(PropertyKey::new(latin1(bytes)));
        }
        if crate::value::parse_index(name).is_some() {
            return Ok(PropertyKey::new(name));
        }
        let name: Arc<str> = name.into();
        if self.names.len() < MAX_SHARED_NAMES {
            self.names.push(name.clone());
        }
        Ok(PropertyKey::String(name))
    }

    /// Reads key/value pairs up to and including `end`. With `items`, index
    /// keys below its length fill it (sparse arrays) and count as
    /// properties too; the second result is that count.
    fn read_properties(
        &mut self,
        end: u8,
        mut items: Option<&mut Vec<Option<JsValue>>>,
    ) -> Result<(Vec<(PropertyKey, JsValue)>, usize)> {
        // Properties collect on a stack shared by every nesting level and
        // move to a vector of exactly their number at the end: no regrowth,
        // and one right-sized allocation per object.
        let start = self.props.len();
        let mut count = 0usize;
        loop {
            if self.peek_tag()? == end {
                self.pos += 1;
                let props = self.props.drain(start..).collect();
                return Ok((props, count));
            }
            let key = self.read_key()?;
            let value = self.read_value()?;
            count += 1;
            if let (PropertyKey::Index(i), Some(items)) = (&key, items.as_deref_mut())
                && let Some(slot) = items.get_mut(*i as usize)
            {
                *slot = Some(value);
                continue;
            }
            self.props.push((key, value));
        }
    }

    #[inline(never)]
    fn take_slots(&mut self, n: usize, at: usize) -> Result<()> {
        if n > self.slots_left {
            return Err(Error::TooLarge {
                offset: at,
                what: format!(
                    "an array of length {n} exceeds the decoder's budget of {MAX_ARRAY_SLOTS} elements"
                ),
            });
        }
        self.slots_left -= n;
        Ok(())
    }

    fn read_dense_array(&mut self) -> Result<JsValue> {
        self.new_wire_node();
        self.enter()?;
        let at = self.pos;
        let len = self.read_len()?;
        self.take_slots(len, at)?;
        // Every element takes at least one byte, so the input bounds the
        // allocation.
        let mut items = Vec::with_capacity(len.min(self.input.len() - self.pos));
        for _ in 0..len {
            if self.peek_tag()? == tag::THE_HOLE {
                self.pos += 1;
                items.push(None);
            } else {
                items.push(Some(self.read_value()?));
            }
        }
        let (props, _) = self.read_properties(tag::END_DENSE_ARRAY, None)?;
        self.check_array_end(props.len(), len)?;
        self.depth -= 1;
        Ok(JsValue::Array(JsArray { items, props }))
    }

    fn read_sparse_array(&mut self) -> Result<JsValue> {
        self.new_wire_node();
        self.enter()?;
        let at = self.pos;
        let len = self.read_len()?;
        self.take_slots(len, at)?;
        let mut items = vec![None; len];
        let (props, count) = self.read_properties(tag::END_SPARSE_ARRAY, Some(&mut items))?;
        self.check_array_end(count, len)?;
        self.depth -= 1;
        Ok(JsValue::Array(JsArray { items, props }))
    }

    #[inline(never)]
    fn check_array_end(&mut self, props: usize, len: usize) -> Result<()> {
        let at = self.pos;
        let num_props = self.read_len()?;
        let length = self.read_len()?;
        if num_props != props {
            return Err(count_mismatch(at, "array properties", num_props, props));
        }
        if length != len {
            return Err(count_mismatch(at, "array length", length, len));
        }
        Ok(())
    }

    fn read_map(&mut self) -> Result<JsValue> {
        self.new_wire_node();
        self.enter()?;
        let mut entries = Vec::new();
        loop {
            if self.peek_tag()? == tag::END_MAP {
                self.pos += 1;
                break;
            }
            let k = self.read_value()?;
            let v = self.read_value()?;
            entries.push((k, v));
        }
        let at = self.pos;
        let length = self.read_len()?;
        if length != entries.len() * 2 {
            return Err(Error::malformed(
                at,
                format!(
                    "map end says {length} keys and values, found {}",
                    entries.len() * 2
                ),
            ));
        }
        self.depth -= 1;
        Ok(JsValue::Map(entries))
    }

    fn read_set(&mut self) -> Result<JsValue> {
        self.new_wire_node();
        self.enter()?;
        let mut items = Vec::new();
        loop {
            if self.peek_tag()? == tag::END_SET {
                self.pos += 1;
                break;
            }
            items.push(self.read_value()?);
        }
        let at = self.pos;
        let length = self.read_len()?;
        if length != items.len() {
            return Err(count_mismatch(at, "set elements", length, items.len()));
        }
        self.depth -= 1;
        Ok(JsValue::Set(items))
    }

    fn read_array_buffer(&mut self, t: u8) -> Result<JsValue> {
        let at = self.pos;
        let len = self.read_len()?;
        if t == tag::RESIZABLE_ARRAY_BUFFER {
            let max = self.read_len()?;
            if max < len {
                return Err(Error::malformed(
                    at,
                    format!("resizable buffer of {len} bytes has maxByteLength {max}"),
                ));
            }
        }
        let start = self.pos;
        self.read_bytes(len)?;
        let node = self.new_node();
        let wire_id = self.wire.len();
        self.wire.push(Slot::Buffer {
            start,
            len,
            node: Some(node),
        });
        if self.peek_is(tag::ARRAY_BUFFER_VIEW) {
            self.pos += 1;
            // The view takes the buffer's place in the tree.
            self.wire[wire_id] = Slot::Buffer {
                start,
                len,
                node: None,
            };
            self.wire.push(Slot::Node(node));
            let view = self.read_view(start, len)?;
            return Ok(JsValue::TypedArray(view));
        }
        Ok(JsValue::ArrayBuffer(
            self.input[start..start + len].to_vec(),
        ))
    }

    fn peek_is(&mut self, t: u8) -> bool {
        matches!(self.peek_tag(), Ok(x) if x == t)
    }

    fn read_view(&mut self, start: usize, buffer_len: usize) -> Result<TypedArray> {
        let at = self.pos;
        let sub = self.read_varint()?;
        let kind = u8::try_from(sub)
            .ok()
            .and_then(TypedArrayKind::from_tag)
            .ok_or(Error::UnsupportedSubTag {
                within: "array buffer view",
                tag: u8::try_from(sub).unwrap_or(u8::MAX),
                offset: at,
            })?;
        let offset = self.read_len()?;
        let mut length = self.read_len()?;
        let flags = if self.version >= 14 {
            self.read_u32()?
        } else {
            0
        };
        if flags & 1 == 1 {
            // A length-tracking view sees the rest of its buffer.
            length = buffer_len.saturating_sub(offset);
        }
        let in_bounds = offset
            .checked_add(length)
            .is_some_and(|end| end <= buffer_len);
        if !in_bounds {
            return Err(Error::malformed(
                at,
                format!("view of {length} bytes at {offset} exceeds its {buffer_len}-byte buffer"),
            ));
        }
        let size = kind.element_size();
        if !offset.is_multiple_of(size) || !length.is_multiple_of(size) {
            return Err(Error::malformed(
                at,
                format!(
                    "{} at offset {offset} with {length} bytes is not aligned to {size}",
                    kind.name()
                ),
            ));
        }
        let bytes = self.input[start + offset..start + offset + length].to_vec();
        Ok(TypedArray { kind, bytes })
    }

    fn read_reference(&mut self, at: usize) -> Result<JsValue> {
        let id = self.read_varint()?;
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| self.wire.get(i).copied())
            .ok_or(Error::InvalidReference { id, offset: at })?;
        match slot {
            Slot::Node(n) => Ok(JsValue::Ref(n)),
            Slot::Buffer { start, len, node } => {
                if self.peek_is(tag::ARRAY_BUFFER_VIEW) {
                    // A second view on a buffer seen before: a copy of the
                    // bytes it sees (the model has no shared buffers).
                    self.pos += 1;
                    self.new_wire_node();
                    return Ok(JsValue::TypedArray(self.read_view(start, len)?));
                }
                match node {
                    Some(n) => Ok(JsValue::Ref(n)),
                    None => {
                        self.new_node();
                        Ok(JsValue::ArrayBuffer(
                            self.input[start..start + len].to_vec(),
                        ))
                    }
                }
            }
        }
    }

    fn read_error(&mut self) -> Result<JsValue> {
        self.new_wire_node();
        self.enter()?;
        let mut error = JsError::default();
        loop {
            let at = self.pos;
            let sub = self.read_varint()?;
            let sub = u8::try_from(sub).map_err(|_| Error::UnsupportedSubTag {
                within: "error",
                tag: u8::MAX,
                offset: at,
            })?;
            match sub {
                b'E' => error.name = ErrorName::EvalError,
                b'R' => error.name = ErrorName::RangeError,
                b'F' => error.name = ErrorName::ReferenceError,
                b'S' => error.name = ErrorName::SyntaxError,
                b'T' => error.name = ErrorName::TypeError,
                b'U' => error.name = ErrorName::UriError,
                b'm' => error.message = Some(self.read_string()?),
                b's' => error.stack = Some(self.read_string()?),
                b'c' => error.cause = Some(self.read_value()?),
                b'.' => break,
                _ => {
                    return Err(Error::UnsupportedSubTag {
                        within: "error",
                        tag: sub,
                        offset: at,
                    });
                }
            }
        }
        self.depth -= 1;
        Ok(JsValue::Error(Box::new(error)))
    }
}

#[cold]
fn count_mismatch(at: usize, what: &str, said: usize, found: usize) -> Error {
    Error::malformed(at, format!("the end tag says {said} {what}, found {found}"))
}
