use std::str::FromStr;

use num_bigint::BigInt;
use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// The reference vectors, compiled in from the repository's copy
/// (`tests/data/README.md` says where it comes from).
fn vectors() -> Vec<Value> {
    let text = include_str!("../../tests/data/key-vectors.json");
    serde_json::from_str::<Vec<Value>>(text).expect("valid JSON")
}

fn part_from_json(v: &Value) -> KeyPart {
    let (kind, value) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("one member");
    match kind.as_str() {
        "string" => KeyPart::String(value.as_str().expect("string").to_owned()),
        "bytes" => KeyPart::Bytes(hex::decode(value.as_str().expect("hex")).expect("hex")),
        "int" => KeyPart::Int(BigInt::from_str(value.as_str().expect("int")).expect("decimal")),
        "float" => {
            let s = value.as_str().expect("float");
            let f = match s {
                "NaN" => f64::from_bits(0x7ff8_0000_0000_0000),
                "-NaN" => f64::from_bits(0xfff8_0000_0000_0000),
                s => s.parse::<f64>().expect("float literal"),
            };
            KeyPart::Float(f)
        }
        "bool" => KeyPart::from(value.as_bool().expect("bool")),
        other => panic!("unknown part kind {other}"),
    }
}

fn same_part(a: &KeyPart, b: &KeyPart) -> bool {
    match (a, b) {
        (KeyPart::Float(x), KeyPart::Float(y)) => canonical_bits(*x) == canonical_bits(*y),
        _ => a == b,
    }
}

#[test]
fn all_reference_vectors_encode_and_decode() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 61);
    for v in &vectors {
        let desc = v["description"].as_str().expect("description");
        let key = Key(v["key"]
            .as_array()
            .expect("array")
            .iter()
            .map(part_from_json)
            .collect());
        let hex_expected = v["hex"].as_str().expect("hex");
        assert_eq!(
            hex::encode(key.encode().expect("encodable")),
            hex_expected,
            "{desc}"
        );
        let decoded = Key::decode(&hex::decode(hex_expected).expect("hex")).expect("decodable");
        assert_eq!(decoded.0.len(), key.0.len(), "{desc}");
        for (a, b) in decoded.0.iter().zip(&key.0) {
            assert!(same_part(a, b), "{desc}: {a} != {b}");
        }
    }
}

#[test]
fn vectors_sorted_by_bytes_are_sorted_by_value() {
    let mut keys: Vec<(Vec<u8>, Key)> = vectors()
        .iter()
        .map(|v| {
            let key = Key(v["key"]
                .as_array()
                .expect("array")
                .iter()
                .map(part_from_json)
                .collect());
            (key.encode().expect("encodable"), key)
        })
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for w in keys.windows(2) {
        assert!(w[0].1 <= w[1].1, "{} vs {}", w[0].1, w[1].1);
    }
}

#[test]
fn decoder_edge_cases() {
    let dec = |h: &str| Key::decode(&hex::decode(h).expect("hex"));
    assert_eq!(dec("1500").expect("ok"), key![0]);
    assert_eq!(dec("1c0000000000000001").expect("ok"), key![1]);
    assert_eq!(dec("1d0101").expect("ok"), key![1]);
    assert_eq!(dec("0bfefe").expect("ok"), key![-1]);
    for bad in [
        "2100",
        "0261",
        "02ff00",
        "03",
        "130000",
        "0261006200ff",
        "02c300",
    ] {
        assert!(dec(bad).is_err(), "{bad} must not decode");
        let bytes = hex::decode(bad).expect("hex");
        assert!(Key::validate(&bytes).is_err(), "{bad} must not validate");
    }
    // An escaped NUL inside a string, then a second part.
    assert_eq!(dec("026100ff62001501").expect("ok"), key!["a\u{0}b", 1]);
    assert!(Key::validate(&hex::decode("026100ff62001501").expect("hex")).is_ok());
    let nan_payload = KeyPart::Float(f64::from_bits(0x7ff0_0000_0000_0001));
    assert_eq!(
        hex::encode(Key(vec![nan_payload]).encode().expect("ok")),
        "21fff8000000000000"
    );
    let too_big = BigInt::from(1) << (256 * 8 - 1);
    assert!(matches!(
        Key(vec![KeyPart::Int(too_big)]).encode(),
        Err(Error::InvalidKey(_))
    ));
}

fn arb_part() -> impl Strategy<Value = KeyPart> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(KeyPart::Bytes),
        "[a\u{0}\u{7f}é😀]{0,5}".prop_map(KeyPart::String),
        (any::<i128>(), 0u32..3)
            .prop_map(|(i, shift)| KeyPart::Int(BigInt::from(i) << (shift * 40))),
        any::<f64>().prop_map(KeyPart::Float),
        Just(KeyPart::False),
        Just(KeyPart::True),
    ]
}

fn arb_key() -> impl Strategy<Value = Key> {
    proptest::collection::vec(arb_part(), 0..4).prop_map(Key)
}

proptest! {
    #[test]
    fn round_trip(key in arb_key()) {
        let bytes = key.encode().expect("encodable");
        let back = Key::decode(&bytes).expect("decodable");
        prop_assert_eq!(back.0.len(), key.0.len());
        for (a, b) in back.0.iter().zip(&key.0) {
            prop_assert!(same_part(a, b));
        }
    }

    #[test]
    fn validate_agrees_with_decode(bytes in proptest::collection::vec(
        prop_oneof![Just(0u8), Just(0xffu8), Just(1u8), Just(2u8), Just(0x15u8), Just(0x21u8), any::<u8>()],
        0..24,
    )) {
        prop_assert_eq!(Key::validate(&bytes).is_ok(), Key::decode(&bytes).is_ok());
    }

    #[test]
    fn encoded_keys_validate(key in arb_key()) {
        let bytes = key.encode().expect("encodable");
        prop_assert!(Key::validate(&bytes).is_ok());
    }

    #[test]
    fn byte_order_is_key_order(a in arb_key(), b in arb_key()) {
        let (ea, eb) = (a.encode().expect("ok"), b.encode().expect("ok"));
        prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
    }
}
