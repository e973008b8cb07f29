//! Any bytes given to the V8 decoder: it returns a value or a typed error,
//! never panics; a decoded value re-encodes to bytes that decode to the same
//! value; display and the serde mapping accept whatever decode returns.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// A record shape applications deserialize into.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Record {
    id: String,
    n: f64,
    tags: Vec<String>,
    nested: Option<Box<Record>>,
}

fuzz_target!(|data: &[u8]| {
    let shown = kv_v8::display_value(&kv_core::KvValue::V8(data.to_vec()));
    let Ok(value) = kv_v8::decode(data) else {
        return;
    };
    assert_eq!(shown, value.to_json_like());
    let _ = kv_v8::from_js_value::<Record>(&value);
    let _ = kv_v8::from_js_value::<serde_json_like::Any>(&value);
    let bytes = kv_v8::encode(&value).expect("a decoded value encodes");
    let again = kv_v8::decode(&bytes).expect("re-encoded bytes decode");
    assert_eq!(again, value, "round trip changed the value");
});

/// Deserializes anything, visiting every node (like a dynamic JSON value).
mod serde_json_like {
    use serde::de::{Deserialize, Deserializer, IgnoredAny};

    pub struct Any;

    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(d).map(|_| Any)
        }
    }
}
