//! Golden vectors: bytes Deno 2.9.6 stored (observed from its SQLite
//! files), decoded into the expected values; and what the encoder writes.

use kv_v8::{
    Error, ErrorName, JsArray, JsError, JsValue, PropertyKey, TypedArray, TypedArrayKind, decode,
    encode,
};
use num_bigint::BigInt;

use crate::hex;

type R = Result<(), Box<dyn std::error::Error>>;

/// Decodes `bytes` and checks the value, then checks that our encoding of
/// the value decodes to the same value.
fn check(bytes: &str, expected: JsValue) -> R {
    let got = decode(&hex(bytes))?;
    assert_eq!(got, expected, "decoding {bytes}");
    let again = decode(&encode(&expected)?)?;
    assert_eq!(again, expected, "re-encoding {expected}");
    Ok(())
}

fn obj<const N: usize>(props: [(&str, JsValue); N]) -> JsValue {
    JsValue::object(props)
}

#[test]
fn primitives() -> R {
    check("ff 10 5f", JsValue::Undefined)?;
    check("ff 10 30", JsValue::Null)?;
    check("ff 10 54", JsValue::Bool(true))?;
    check("ff 10 46", JsValue::Bool(false))?;
    check("ff 10 49 02", JsValue::Number(1.0))?;
    check("ff 10 49 01", JsValue::Number(-1.0))?;
    check("ff 10 4e 00 00 00 00 00 00 f8 3f", JsValue::Number(1.5))?;
    check("ff 10 4e 00 00 00 00 00 00 00 80", JsValue::Number(-0.0))?;
    check(
        "ff 10 4e 00 00 00 00 00 00 e0 41",
        JsValue::Number(2f64.powi(31)),
    )?;
    check("ff 0f 4e 00 00 00 00 00 00 f0 3f", JsValue::Number(1.0))?;
    check("ff 10 55 05", JsValue::Number(5.0))?;
    check("ff 10 22 05 68 65 6c 6c 6f", "hello".into())?;
    Ok(())
}

#[test]
fn bigints_in_both_widths() -> R {
    check("ff 10 5a 00", JsValue::BigInt(0.into()))?;
    check("ff 0f 5a 02 00", JsValue::BigInt(0.into()))?;
    check(
        "ff 10 5a 10 01 00 00 00 00 00 00 00",
        JsValue::BigInt(1.into()),
    )?;
    check(
        "ff 10 5a 11 01 00 00 00 00 00 00 00",
        JsValue::BigInt((-1).into()),
    )?;
    check("ff 0f 5a 03 01", JsValue::BigInt((-1).into()))?;
    let two_64 = BigInt::from(1u128 << 64);
    check(
        "ff 10 5a 20 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00",
        JsValue::BigInt(two_64.clone()),
    )?;
    check(
        "ff 0f 5a 12 00 00 00 00 00 00 00 00 01",
        JsValue::BigInt(two_64),
    )?;
    let big: BigInt = "1234567890123456789012345678901234567890".parse()?;
    check(
        "ff 10 5a 30 d2 0a 3f ce 96 5f bc ac b8 f3 db c0 75 20 c9 a0 03 00 00 00 00 00 00 00",
        JsValue::BigInt(big),
    )?;
    Ok(())
}

#[test]
fn two_byte_string_with_astral_chars() -> R {
    check(
        "ff 10 63 14 68 00 e9 00 6c 00 6c 00 6f 00 20 00 03 26 20 00 3d d8 00 de",
        "héllo ☃ 😀".into(),
    )?;
    // Latin-1 strings stay one-byte.
    assert_eq!(encode(&"é".into())?, hex("ff 0f 22 01 e9"));
    // The two-byte payload is aligned to an even offset: here the tag would
    // be at 2 and the payload at 4, so no padding; inside an array the tag
    // is at 4 and the payload would be at 6… also even; after "a" it pads.
    assert_eq!(encode(&"☃".into())?, hex("ff 0f 63 02 03 26"));
    let padded = encode(&JsValue::array(["a".into(), "☃".into()]))?;
    assert_eq!(padded, hex("ff 0f 41 02 22 01 61 00 63 02 03 26 24 00 02"));
    assert_eq!(decode(&padded)?, JsValue::array(["a".into(), "☃".into()]));
    // Lone surrogates become U+FFFD.
    assert_eq!(decode(&hex("ff 10 63 02 00 d8"))?, "\u{fffd}".into());
    // UTF-8 strings (tag S) are read too.
    assert_eq!(decode(&hex("ff 0d 53 02 c3 a9"))?, "é".into());
    Ok(())
}

#[test]
fn objects_and_index_keys() -> R {
    check(
        "ff 10 6f 49 06 22 01 78 22 01 62 49 02 22 01 61 49 04 22 02 2d 31 49 00 7b 04",
        JsValue::Object(vec![
            (PropertyKey::Index(3), "x".into()),
            ("b".into(), 1.into()),
            ("a".into(), 2.into()),
            ("-1".into(), 0.into()),
        ]),
    )
}

#[test]
fn arrays_dense_sparse_and_with_properties() -> R {
    check(
        "ff 10 41 02 49 02 49 04 22 03 62 61 72 54 24 01 02",
        JsValue::Array(JsArray {
            items: vec![Some(1.into()), Some(2.into())],
            props: vec![("bar".into(), true.into())],
        }),
    )?;
    let mut items = vec![None; 6];
    items[5] = Some(1.into());
    check(
        "ff 10 61 06 49 0a 49 02 22 03 66 6f 6f 22 01 78 40 02 06",
        JsValue::Array(JsArray {
            items,
            props: vec![("foo".into(), "x".into())],
        }),
    )?;
    // A dense array may contain holes (tag '-').
    assert_eq!(
        decode(&hex("ff 0f 41 02 2d 49 02 24 00 02"))?,
        JsValue::Array(JsArray {
            items: vec![None, Some(1.into())],
            props: vec![]
        })
    );
    check(
        "ff 10 41 04 4e 00 00 00 00 00 00 f8 7f 4e 00 00 00 00 00 00 00 80 4e 00 00 00 00 00 00 e0 41 4e 00 00 e0 ff ff ff ef 41 24 00 04",
        JsValue::array([
            f64::NAN.into(),
            (-0.0).into(),
            2f64.powi(31).into(),
            4294967295.0.into(),
        ]),
    )
}

#[test]
fn cycles_and_shared_references() -> R {
    check(
        "ff 10 6f 22 01 61 49 02 22 04 73 65 6c 66 5e 00 7b 02",
        obj([("a", 1.into()), ("self", JsValue::Ref(0))]),
    )?;
    // Two views on one buffer and the buffer itself: the second view and the
    // bare buffer reference become copies.
    check(
        "ff 10 41 03 42 08 00 00 00 00 00 00 00 00 56 42 00 08 00 5e 01 56 57 00 08 00 5e 01 24 00 03",
        JsValue::array([
            JsValue::uint8_array(vec![0; 8]),
            JsValue::TypedArray(TypedArray {
                kind: TypedArrayKind::Uint16,
                bytes: vec![0; 8],
            }),
            JsValue::ArrayBuffer(vec![0; 8]),
        ]),
    )?;
    // A reference to a typed array points at the view.
    let shared = JsValue::array([JsValue::uint8_array([1, 2]), JsValue::Ref(1)]);
    let bytes = encode(&shared)?;
    assert_eq!(
        bytes,
        hex("ff 0f 41 02 42 02 01 02 56 42 00 02 00 5e 02 24 00 02")
    );
    assert_eq!(decode(&bytes)?, shared);
    Ok(())
}

#[test]
fn dates_regexps_maps_sets() -> R {
    check("ff 10 44 00 00 00 00 00 00 00 00", JsValue::Date(0.0))?;
    check("ff 10 52 22 03 61 2b 62 13", JsValue::regexp("a+b", "giu"))?;
    check(
        "ff 10 3b 49 02 22 01 61 22 01 6b 6f 22 01 78 49 02 7b 01 3a 04",
        JsValue::Map(vec![
            (1.into(), "a".into()),
            ("k".into(), obj([("x", 1.into())])),
        ]),
    )?;
    check(
        "ff 10 27 49 02 22 03 74 77 6f 2c 02",
        JsValue::Set(vec![1.into(), "two".into()]),
    )
}

#[test]
fn buffers_and_views() -> R {
    check(
        "ff 10 42 08 00 00 00 00 00 00 f8 3f 56 46 00 08 00",
        JsValue::TypedArray(TypedArray {
            kind: TypedArrayKind::Float64,
            bytes: 1.5f64.to_le_bytes().to_vec(),
        }),
    )?;
    check(
        "ff 10 42 04 00 00 00 00 56 3f 00 04 00",
        JsValue::TypedArray(TypedArray {
            kind: TypedArrayKind::DataView,
            bytes: vec![0; 4],
        }),
    )?;
    // A resizable buffer decodes as a plain one.
    check(
        "ff 10 7e 04 08 00 00 00 00",
        JsValue::ArrayBuffer(vec![0; 4]),
    )?;
    // A subarray view sees only its bytes.
    assert_eq!(
        decode(&hex("ff 10 42 04 01 02 03 04 56 42 01 02 00"))?,
        JsValue::uint8_array([2, 3])
    );
    // A length-tracking view sees the rest of its buffer.
    assert_eq!(
        decode(&hex("ff 10 7e 04 08 01 02 03 04 56 42 01 00 01"))?,
        JsValue::uint8_array([2, 3, 4])
    );
    // Version 13 views have no flags.
    assert_eq!(
        decode(&hex("ff 0d 42 02 01 02 56 42 00 02"))?,
        JsValue::uint8_array([1, 2])
    );
    Ok(())
}

#[test]
fn boxed_primitives() -> R {
    check(
        "ff 10 41 05 6e 00 00 00 00 00 00 f0 3f 73 22 01 73 79 78 7a 10 02 00 00 00 00 00 00 00 24 00 05",
        JsValue::array([
            JsValue::NumberObject(1.0),
            JsValue::StringObject("s".into()),
            JsValue::BooleanObject(true),
            JsValue::BooleanObject(false),
            JsValue::BigIntObject(2.into()),
        ]),
    )
}

#[test]
fn errors() -> R {
    let stack = "TypeError: boom\n    at file:///tmp/v8probe/probe.ts:6:11";
    let mut bytes = String::from("ff 10 72 54 6d 22 04 62 6f 6f 6d 73 22 38");
    for b in stack.bytes() {
        bytes.push_str(&format!(" {b:02x}"));
    }
    bytes.push_str(" 63 49 54 2e");
    check(
        &bytes,
        JsValue::Error(Box::new(JsError {
            name: ErrorName::TypeError,
            message: Some("boom".into()),
            stack: Some(stack.into()),
            cause: Some(42.into()),
        })),
    )?;
    check(
        "ff 10 72 6d 22 05 70 6c 61 69 6e 2e",
        JsValue::Error(Box::new(JsError {
            message: Some("plain".into()),
            ..JsError::default()
        })),
    )?;
    // An error that is its own cause.
    check(
        "ff 0f 72 52 63 5e 00 2e",
        JsValue::Error(Box::new(JsError {
            name: ErrorName::RangeError,
            cause: Some(JsValue::Ref(0)),
            ..JsError::default()
        })),
    )
}

#[test]
fn padding_and_verify_count_are_skipped() -> R {
    assert_eq!(decode(&hex("ff 0f 00 00 3f 02 49 02"))?, 1.into());
    assert_eq!(decode(&hex("ff 0f 49 02 00 00"))?, 1.into());
    Ok(())
}

#[test]
fn typed_errors_name_the_problem() {
    let err = |s: &str| decode(&hex(s)).expect_err(s);
    assert!(matches!(
        err("ff 0f 5c 00"),
        Error::UnsupportedTag {
            tag: b'\\',
            offset: 2
        }
    ));
    assert!(matches!(
        err("ff 0f 75 00"),
        Error::UnsupportedTag {
            tag: b'u',
            offset: 2
        }
    ));
    assert!(matches!(
        err("ff 0f 7c"),
        Error::UnsupportedTag {
            tag: b'|',
            offset: 2
        }
    ));
    assert!(matches!(
        err("ff 11 49 02"),
        Error::UnsupportedVersion { version: 17 }
    ));
    assert!(matches!(
        err("ff 0c 49 02"),
        Error::UnsupportedVersion { version: 12 }
    ));
    assert!(matches!(err("49 02"), Error::MissingHeader));
    assert!(matches!(err(""), Error::MissingHeader));
    assert!(matches!(err("ff 0f 22 05 68"), Error::UnexpectedEnd { .. }));
    assert!(matches!(
        err("ff 0f 5e 00"),
        Error::InvalidReference { id: 0, .. }
    ));
    assert!(matches!(err("ff 0f 49 02 49"), Error::TrailingBytes { .. }));
    assert!(matches!(
        err("ff 0f 72 7a 2e"),
        Error::UnsupportedSubTag {
            within: "error",
            tag: b'z',
            ..
        }
    ));
    assert!(matches!(
        err("ff 0f 42 01 00 56 5a 00 01 00"),
        Error::UnsupportedSubTag { .. }
    ));
    assert!(matches!(err("ff 0f 6f 7b 01"), Error::Malformed { .. }));
    assert!(matches!(
        err("ff 0f 61 ff ff ff ff 0f 40 00 00"),
        Error::TooLarge { .. }
    ));
    let deep = format!("ff 0f {} 49 02", "41 01 ".repeat(300));
    assert!(matches!(err(&deep), Error::TooDeep));
    let msg = err("ff 0f 5c 00").to_string();
    assert!(msg.contains("'\\'") && msg.contains("byte 2"), "{msg}");
}

#[test]
fn encoder_refuses_what_it_cannot_write() {
    let bad = [
        JsValue::Ref(0),
        JsValue::array([JsValue::Ref(5)]),
        JsValue::regexp("a", "gg"),
        JsValue::regexp("a", "q"),
        JsValue::TypedArray(TypedArray {
            kind: TypedArrayKind::Uint32,
            bytes: vec![1, 2, 3],
        }),
    ];
    for v in bad {
        assert!(matches!(encode(&v), Err(Error::Unencodable(_))), "{v:?}");
    }
}

#[test]
fn display_is_readable() {
    let v = JsValue::object([
        ("a", 1.into()),
        ("b", JsValue::array([true.into(), JsValue::Null])),
        ("d", JsValue::Date(1_704_067_200_000.0)),
        ("m", JsValue::Map(vec![(1.into(), "x".into())])),
        ("n", JsValue::BigInt(12.into())),
        ("u", JsValue::Undefined),
        ("s", JsValue::Set(vec![1.5.into()])),
        ("r", JsValue::regexp("a+", "g")),
        ("t", JsValue::uint8_array([1, 2])),
        ("q", "say \"hi\"\n".into()),
    ]);
    assert_eq!(
        v.to_json_like(),
        r#"{"a": 1, "b": [true, null], "d": Date(2024-01-01T00:00:00.000Z), "m": Map {1 => "x"}, "n": 12n, "u": undefined, "s": Set {1.5}, "r": /a+/g, "t": Uint8Array(2) [1, 2], "q": "say \"hi\"\n"}"#
    );
    let mut items = vec![None; 3];
    items[1] = Some(JsValue::Ref(0));
    assert_eq!(
        JsValue::Array(JsArray {
            items,
            props: vec![]
        })
        .to_string(),
        "[<1 empty>, <ref *0>, <1 empty>]"
    );
    let e = JsValue::Error(Box::new(JsError {
        name: ErrorName::TypeError,
        message: Some("boom".into()),
        stack: None,
        cause: Some(JsValue::Number(-0.0)),
    }));
    assert_eq!(e.to_string(), r#"TypeError("boom", cause: -0)"#);
    assert_eq!(JsValue::Date(f64::NAN).to_string(), "Date(Invalid Date)");
    assert_eq!(
        JsValue::Date(-1.0).to_string(),
        "Date(1969-12-31T23:59:59.999Z)"
    );
    assert_eq!(JsValue::Number(1e21).to_string(), "1e+21");
    assert_eq!(JsValue::Number(0.1).to_string(), "0.1");
    assert_eq!(kv_v8::display_value(&kv_core::KvValue::U64(5)), "KvU64(5n)");
    assert!(kv_v8::display_value(&kv_core::KvValue::V8(vec![1, 2])).starts_with("<undecodable"));
}
