//! Property tests: the decoder never panics on random or mutated bytes, and
//! random values survive encode → decode and the serde mapping.

use kv_v8::{
    ErrorName, JsArray, JsError, JsRegExp, JsValue, PropertyKey, TypedArray, TypedArrayKind,
    decode, encode, from_js_value, to_js_value,
};
use num_bigint::BigInt;
use proptest::prelude::*;

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<i32>().prop_map(f64::from),
        any::<f64>(),
        Just(f64::NAN),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(2f64.powi(31)),
        Just(4294967295.0),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,8}",
        "[\\x00-\\xff]{0,8}",
        any::<String>(),
        Just("😀 astral ☃".to_owned()),
    ]
}

fn bigint() -> impl Strategy<Value = BigInt> {
    prop_oneof![
        any::<i64>().prop_map(BigInt::from),
        any::<i128>().prop_map(BigInt::from),
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(neg, b)| {
            let n = BigInt::from_bytes_le(num_bigint::Sign::Plus, &b);
            if neg { -n } else { n }
        }),
    ]
}

fn key() -> impl Strategy<Value = PropertyKey> {
    prop_oneof![
        string().prop_map(PropertyKey::new),
        (0u32..=u32::MAX - 1).prop_map(PropertyKey::Index),
        (0u32..20).prop_map(PropertyKey::Index),
    ]
}

fn flags() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), 9).prop_map(|on| {
        "dgilmsuvy"
            .chars()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(c, _)| c)
            .collect()
    })
}

fn typed_array() -> impl Strategy<Value = TypedArray> {
    (
        0..TypedArrayKind::ALL.len(),
        prop::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(k, mut bytes)| {
            let kind = TypedArrayKind::ALL[k];
            bytes.truncate(bytes.len() / kind.element_size() * kind.element_size());
            TypedArray { kind, bytes }
        })
}

fn leaf() -> impl Strategy<Value = JsValue> {
    prop_oneof![
        Just(JsValue::Undefined),
        Just(JsValue::Null),
        any::<bool>().prop_map(JsValue::Bool),
        number().prop_map(JsValue::Number),
        bigint().prop_map(JsValue::BigInt),
        string().prop_map(JsValue::String),
        number().prop_map(JsValue::Date),
        (string(), flags())
            .prop_map(|(source, flags)| JsValue::RegExp(Box::new(JsRegExp { source, flags }))),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(JsValue::ArrayBuffer),
        typed_array().prop_map(JsValue::TypedArray),
        any::<bool>().prop_map(JsValue::BooleanObject),
        number().prop_map(JsValue::NumberObject),
        bigint().prop_map(JsValue::BigIntObject),
        string().prop_map(JsValue::StringObject),
        any::<u32>().prop_map(JsValue::Ref),
    ]
}

fn error_name() -> impl Strategy<Value = ErrorName> {
    (0..ErrorName::ALL.len()).prop_map(|i| ErrorName::ALL[i])
}

/// Random values; `Ref`s are fixed up by [`fix_refs`].
fn raw_value() -> impl Strategy<Value = JsValue> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            (
                prop::collection::vec(prop::option::weighted(0.8, inner.clone()), 0..6),
                prop::collection::vec(("[a-z]{1,3}", inner.clone()), 0..2),
            )
                .prop_map(|(items, props)| JsValue::Array(JsArray {
                    items,
                    props: props
                        .into_iter()
                        .map(|(k, v)| (PropertyKey::new(k), v))
                        .collect(),
                })),
            prop::collection::vec((key(), inner.clone()), 0..6).prop_map(JsValue::Object),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(JsValue::Map),
            prop::collection::vec(inner.clone(), 0..4).prop_map(JsValue::Set),
            (
                error_name(),
                prop::option::of(string()),
                prop::option::of(string()),
                prop::option::of(inner)
            )
                .prop_map(|(name, message, stack, cause)| JsValue::Error(Box::new(
                    JsError {
                        name,
                        message,
                        stack,
                        cause
                    }
                ))),
        ]
    })
}

/// Points every `Ref` at an object node that starts before it (or turns it
/// into `null` when there is none).
fn fix_refs(v: &mut JsValue, seen: &mut u32) {
    if v.is_object_node() {
        *seen += 1;
    }
    match v {
        JsValue::Ref(n) => {
            if *seen == 0 {
                *v = JsValue::Null;
            } else {
                *n %= *seen;
            }
        }
        JsValue::Array(a) => {
            for item in a.items.iter_mut().flatten() {
                fix_refs(item, seen);
            }
            for (_, item) in &mut a.props {
                fix_refs(item, seen);
            }
        }
        JsValue::Object(props) => {
            for (_, item) in props {
                fix_refs(item, seen);
            }
        }
        JsValue::Map(entries) => {
            for (k, item) in entries {
                fix_refs(k, seen);
                fix_refs(item, seen);
            }
        }
        JsValue::Set(items) => {
            for item in items {
                fix_refs(item, seen);
            }
        }
        JsValue::Error(e) => {
            if let Some(c) = &mut e.cause {
                fix_refs(c, seen);
            }
        }
        _ => {}
    }
}

fn value() -> impl Strategy<Value = JsValue> {
    raw_value().prop_map(|mut v| {
        fix_refs(&mut v, &mut 0);
        v
    })
}

fn has_cycle_free_refs(v: &JsValue) -> bool {
    // from_js_value expands refs; a ref to an ancestor is a cycle and fails.
    from_js_value::<serde_json::Value>(v).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn values_round_trip(v in value()) {
        let bytes = encode(&v).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn values_survive_the_serde_mapping(v in value()) {
        prop_assert_eq!(&to_js_value(&v).unwrap(), &v);
        prop_assert_eq!(&from_js_value::<JsValue>(&v).unwrap(), &v);
        let kv = kv_v8::to_value(&v).unwrap();
        prop_assert_eq!(&kv_v8::from_value::<JsValue>(&kv).unwrap(), &v);
        // Display never panics.
        let _ = v.to_string();
        let _ = has_cycle_free_refs(&v);
    }

    #[test]
    fn random_bytes_never_panic(
        version in prop_oneof![Just(15u8), Just(16u8), any::<u8>()],
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![0xff, version];
        bytes.extend(body);
        let _ = decode(&bytes);
        let _ = decode(&bytes[1..]);
    }

    #[test]
    fn mutated_encodings_never_panic(
        v in value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = encode(&v).unwrap();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        if let Ok(v) = decode(&bytes) {
            // Whatever decodes can be shown and mapped without panicking.
            let _ = v.to_string();
            let _ = encode(&v);
            let _ = from_js_value::<JsValue>(&v);
            let _ = from_js_value::<serde_json::Value>(&v);
        }
    }
}
