//! The encoder: [`JsValue`] to V8 `ValueSerializer` bytes.

use num_bigint::{BigInt, Sign};

use crate::tag;
use crate::value::{JsArray, JsError, JsValue, PropertyKey, TypedArray};
use crate::{Error, MAX_DEPTH, Result};

/// The format version [`encode`] writes: 15 (`FF 0F`).
///
/// Deno 2.9 writes 16 but reads 13 to 16; version 16 only widened buffer
/// lengths and offsets to 64 bits, which values under Deno KV's 64 KiB limit
/// never need. Every older Deno, denokv (whose `v8_valueserializer` 0.1.1
/// reads 14 and 15 only), and the Node and Python clients read 15, and
/// Deno's own SQLite backend writes 15 for `sum` results, so 15 is what
/// every reader of a Deno KV database understands.
pub const WRITE_VERSION: u8 = 15;

/// Encodes a value as V8 `ValueSerializer` bytes (format version
/// [`WRITE_VERSION`]), which Deno's `structuredClone`-based KV reads back
/// as the same JavaScript value.
///
/// Numbers that are int32 (and not `-0`) are written as V8 does, with the
/// `I` tag; others as doubles. Strings whose characters are all at most
/// U+00FF use V8's one-byte form, others the two-byte form with its
/// alignment padding. Arrays with holes use the sparse form.
///
/// # Errors
/// [`Error::Unencodable`] for a [`JsValue::Ref`] that names no earlier
/// object node, unknown or repeated `RegExp` flags, or a typed array whose
/// byte length is not a multiple of its element size; [`Error::TooDeep`]
/// beyond [`MAX_DEPTH`] levels.
pub fn encode(value: &JsValue) -> Result<Vec<u8>> {
    let mut e = Encoder {
        out: Vec::with_capacity(64),
        node_wire: Vec::new(),
        next_wire: 0,
        depth: 0,
    };
    e.out.extend_from_slice(&[tag::VERSION, WRITE_VERSION]);
    e.write_value(value)?;
    Ok(e.out)
}

struct Encoder {
    out: Vec<u8>,
    /// Wire id of each object node written so far, by pre-order index.
    node_wire: Vec<u32>,
    next_wire: u32,
    depth: usize,
}

fn zigzag(n: i32) -> u32 {
    // The classic zigzag mapping; the casts reinterpret bits.
    #[allow(clippy::cast_sign_loss)]
    let z = ((n << 1) ^ (n >> 31)) as u32;
    z
}

/// The number as an int32, if V8 would write it with the `I` tag.
fn as_int32(n: f64) -> Option<i32> {
    if n.fract() != 0.0 || !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&n) {
        return None;
    }
    if n == 0.0 && n.is_sign_negative() {
        return None;
    }
    // In range and integral, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    Some(n as i32)
}

impl Encoder {
    fn varint(&mut self, mut v: u64) {
        loop {
            // The mask keeps 7 bits.
            #[allow(clippy::cast_possible_truncation)]
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(b);
                return;
            }
            self.out.push(b | 0x80);
        }
    }

    fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    fn double(&mut self, n: f64) {
        self.out.extend_from_slice(&n.to_le_bytes());
    }

    fn node(&mut self, wire_ids: u32) {
        // A typed array takes two wire ids (its buffer, then the view); a
        // reference to it means the view.
        self.node_wire.push(self.next_wire + wire_ids - 1);
        self.next_wire += wire_ids;
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        Ok(())
    }

    fn bigint(&mut self, n: &BigInt) -> Result<()> {
        let (sign, mut bytes) = n.to_bytes_le();
        if sign == Sign::NoSign {
            bytes.clear();
        } else {
            // V8 writes whole 64-bit digits.
            bytes.resize(bytes.len().div_ceil(8) * 8, 0);
        }
        let bitfield = (bytes.len() as u64) << 1 | u64::from(sign == Sign::Minus);
        if bitfield > u64::from(u32::MAX) {
            return Err(Error::Unencodable("bigint is too large".into()));
        }
        self.varint(bitfield);
        self.out.extend_from_slice(&bytes);
        Ok(())
    }

    fn string(&mut self, s: &str) {
        if s.is_ascii() {
            self.out.push(tag::ONE_BYTE_STRING);
            self.len(s.len());
            self.out.extend_from_slice(s.as_bytes());
        } else if s.chars().all(|c| u32::from(c) <= 0xFF) {
            self.out.push(tag::ONE_BYTE_STRING);
            self.len(s.chars().count());
            // Every char is at most U+00FF, checked above.
            #[allow(clippy::cast_possible_truncation)]
            self.out.extend(s.chars().map(|c| u32::from(c) as u8));
        } else {
            let byte_len = s.encode_utf16().count() * 2;
            let varint_len = (byte_len as u64).max(1).ilog2() as usize / 7 + 1;
            // V8 aligns two-byte payloads to an even offset.
            if (self.out.len() + 1 + varint_len) % 2 == 1 {
                self.out.push(tag::PADDING);
            }
            self.out.push(tag::TWO_BYTE_STRING);
            self.len(byte_len);
            for u in s.encode_utf16() {
                self.out.extend_from_slice(&u.to_le_bytes());
            }
        }
    }

    fn key(&mut self, key: &PropertyKey) {
        match key {
            PropertyKey::Index(i) => match i32::try_from(*i) {
                Ok(n) => {
                    self.out.push(tag::INT32);
                    self.varint(u64::from(zigzag(n)));
                }
                Err(_) => {
                    self.out.push(tag::DOUBLE);
                    self.double(f64::from(*i));
                }
            },
            PropertyKey::String(s) => self.string(s),
        }
    }

    fn props(&mut self, props: &[(PropertyKey, JsValue)]) -> Result<()> {
        for (k, v) in props {
            self.key(k);
            self.write_value(v)?;
        }
        Ok(())
    }

    fn write_value(&mut self, value: &JsValue) -> Result<()> {
        // Containers recurse; leaves are written out of line, which keeps
        // this frame (and so the stack per nesting level) small.
        match value {
            JsValue::Array(a) => self.container(|e| e.array(a)),
            JsValue::Object(props) => self.container(|e| e.object(props)),
            JsValue::Map(entries) => self.container(|e| e.map(entries)),
            JsValue::Set(items) => self.container(|e| e.set(items)),
            JsValue::Error(err) => self.container(|e| e.error(err)),
            leaf => self.write_leaf(leaf),
        }
    }

    fn container(&mut self, write: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.node(1);
        self.enter()?;
        write(self)?;
        self.depth -= 1;
        Ok(())
    }

    fn object(&mut self, props: &[(PropertyKey, JsValue)]) -> Result<()> {
        self.out.push(tag::BEGIN_OBJECT);
        self.props(props)?;
        self.out.push(tag::END_OBJECT);
        self.len(props.len());
        Ok(())
    }

    fn map(&mut self, entries: &[(JsValue, JsValue)]) -> Result<()> {
        self.out.push(tag::BEGIN_MAP);
        for (k, v) in entries {
            self.write_value(k)?;
            self.write_value(v)?;
        }
        self.out.push(tag::END_MAP);
        self.len(entries.len() * 2);
        Ok(())
    }

    fn set(&mut self, items: &[JsValue]) -> Result<()> {
        self.out.push(tag::BEGIN_SET);
        for v in items {
            self.write_value(v)?;
        }
        self.out.push(tag::END_SET);
        self.len(items.len());
        Ok(())
    }

    #[inline(never)]
    fn write_leaf(&mut self, value: &JsValue) -> Result<()> {
        match value {
            JsValue::Undefined => self.out.push(tag::UNDEFINED),
            JsValue::Null => self.out.push(tag::NULL),
            JsValue::Bool(true) => self.out.push(tag::TRUE),
            JsValue::Bool(false) => self.out.push(tag::FALSE),
            JsValue::Number(n) => match as_int32(*n) {
                Some(i) => {
                    self.out.push(tag::INT32);
                    self.varint(u64::from(zigzag(i)));
                }
                None => {
                    self.out.push(tag::DOUBLE);
                    self.double(*n);
                }
            },
            JsValue::BigInt(n) => {
                self.out.push(tag::BIGINT);
                self.bigint(n)?;
            }
            JsValue::String(s) => self.string(s),
            JsValue::Date(ms) => {
                self.node(1);
                self.out.push(tag::DATE);
                self.double(*ms);
            }
            JsValue::RegExp(re) => {
                let bits = tag::regexp_flags_from_str(&re.flags).ok_or_else(|| {
                    Error::Unencodable(format!("RegExp flags {:?} are not valid", re.flags))
                })?;
                self.node(1);
                self.out.push(tag::REGEXP);
                self.string(&re.source);
                self.varint(u64::from(bits));
            }
            JsValue::ArrayBuffer(bytes) => {
                self.node(1);
                self.out.push(tag::ARRAY_BUFFER);
                self.len(bytes.len());
                self.out.extend_from_slice(bytes);
            }
            JsValue::TypedArray(view) => self.typed_array(view)?,
            JsValue::BooleanObject(b) => {
                self.node(1);
                self.out.push(if *b {
                    tag::TRUE_OBJECT
                } else {
                    tag::FALSE_OBJECT
                });
            }
            JsValue::NumberObject(n) => {
                self.node(1);
                self.out.push(tag::NUMBER_OBJECT);
                self.double(*n);
            }
            JsValue::BigIntObject(n) => {
                self.node(1);
                self.out.push(tag::BIGINT_OBJECT);
                self.bigint(n)?;
            }
            JsValue::StringObject(s) => {
                self.node(1);
                self.out.push(tag::STRING_OBJECT);
                self.string(s);
            }
            JsValue::Array(_)
            | JsValue::Object(_)
            | JsValue::Map(_)
            | JsValue::Set(_)
            | JsValue::Error(_) => return self.write_value(value),
            JsValue::Ref(n) => {
                let wire = self.node_wire.get(*n as usize).copied().ok_or_else(|| {
                    Error::Unencodable(format!(
                        "Ref({n}) names no earlier object node ({} so far)",
                        self.node_wire.len()
                    ))
                })?;
                self.out.push(tag::OBJECT_REFERENCE);
                self.varint(u64::from(wire));
            }
        }
        Ok(())
    }

    fn array(&mut self, a: &JsArray) -> Result<()> {
        let len = a.items.len();
        if u32::try_from(len).is_err() {
            return Err(Error::Unencodable(format!(
                "array length {len} is too large"
            )));
        }
        if a.has_holes() {
            self.out.push(tag::BEGIN_SPARSE_ARRAY);
            self.len(len);
            let mut count = 0;
            for (i, item) in a.items.iter().enumerate() {
                if let Some(v) = item {
                    // `len` fits u32 (checked above), so every index does.
                    #[allow(clippy::cast_possible_truncation)]
                    self.key(&PropertyKey::Index(i as u32));
                    self.write_value(v)?;
                    count += 1;
                }
            }
            self.props(&a.props)?;
            self.out.push(tag::END_SPARSE_ARRAY);
            self.len(count + a.props.len());
            self.len(len);
        } else {
            self.out.push(tag::BEGIN_DENSE_ARRAY);
            self.len(len);
            for v in a.items.iter().flatten() {
                self.write_value(v)?;
            }
            self.props(&a.props)?;
            self.out.push(tag::END_DENSE_ARRAY);
            self.len(a.props.len());
            self.len(len);
        }
        Ok(())
    }

    fn typed_array(&mut self, view: &TypedArray) -> Result<()> {
        let size = view.kind.element_size();
        if !view.bytes.len().is_multiple_of(size) {
            return Err(Error::Unencodable(format!(
                "a {} of {} bytes is not a whole number of {size}-byte elements",
                view.kind.name(),
                view.bytes.len()
            )));
        }
        self.node(2);
        self.out.push(tag::ARRAY_BUFFER);
        self.len(view.bytes.len());
        self.out.extend_from_slice(&view.bytes);
        self.out.push(tag::ARRAY_BUFFER_VIEW);
        self.out.push(view.kind.tag());
        self.len(0);
        self.len(view.bytes.len());
        // Flags (version 14 and later): neither length-tracking nor backed by
        // a resizable buffer.
        self.len(0);
        Ok(())
    }

    fn error(&mut self, e: &JsError) -> Result<()> {
        self.out.push(tag::ERROR);
        if let Some(t) = e.name.tag() {
            self.out.push(t);
        }
        if let Some(m) = &e.message {
            self.out.push(b'm');
            self.string(m);
        }
        if let Some(s) = &e.stack {
            self.out.push(b's');
            self.string(s);
        }
        if let Some(c) = &e.cause {
            self.out.push(b'c');
            self.write_value(c)?;
        }
        self.out.push(b'.');
        Ok(())
    }
}
