use kv_core::{Key, KeyPart, KvEntry, KvValue, ValueRef, Versionstamp, key};
use num_bigint::BigInt;
use proptest::prelude::*;

use super::*;
use crate::value::{ErrorName, JsArray, JsError, PropertyKey, TypedArray, TypedArrayKind};
use crate::{decode, encode};

fn js(text: &str) -> JsValue {
    decode_js(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn kv_utils(value: &JsValue) -> String {
    let mut out = String::new();
    Encoder::new()
        .with_dialect(Dialect::KvUtils)
        .js(value, &mut out)
        .expect("encodable");
    out
}

fn typed(kind: TypedArrayKind, bytes: Vec<u8>) -> JsValue {
    JsValue::TypedArray(TypedArray { kind, bytes })
}

fn error(
    name: ErrorName,
    message: Option<&str>,
    stack: Option<&str>,
    cause: Option<JsValue>,
) -> JsValue {
    JsValue::Error(Box::new(JsError {
        name,
        message: message.map(Into::into),
        stack: stack.map(Into::into),
        cause,
    }))
}

fn invalid(result: Result<impl std::fmt::Debug, JsonError>) -> String {
    match result {
        Err(
            e
            @ (JsonError::Invalid { .. } | JsonError::Truncated { .. } | JsonError::Syntax { .. }),
        ) => e.to_string(),
        other => panic!("expected an invalid-input error, got {other:?}"),
    }
}

/// The examples of §5.2 and of kv-utils' documentation, read as kv-utils
/// reads them.
#[test]
fn golden_values_read_as_kv_utils_reads_them() {
    let le = |xs: &[&[u8]]| xs.concat();
    let cases: Vec<(&str, JsValue)> = vec![
        (r#"{"type":"undefined"}"#, JsValue::Undefined),
        (r#"{"type":"null","value":null}"#, JsValue::Null),
        (r#"{"type":"boolean","value":true}"#, JsValue::Bool(true)),
        (r#"{"type":"number","value":1.23}"#, JsValue::Number(1.23)),
        (
            r#"{"type":"number","value":"NaN"}"#,
            JsValue::Number(f64::NAN),
        ),
        (
            r#"{"type":"number","value":"Infinity"}"#,
            JsValue::Number(f64::INFINITY),
        ),
        (
            r#"{"type":"number","value":"-Infinity"}"#,
            JsValue::Number(f64::NEG_INFINITY),
        ),
        (
            r#"{"type":"bigint","value":"100"}"#,
            JsValue::BigInt(100.into()),
        ),
        (r#"{"type":"string","value":"foo"}"#, "foo".into()),
        (
            r#"{"type":"Array","value":[{"type":"number","value":1},{"type":"number","value":2},{"type":"number","value":3}]}"#,
            JsValue::array([1.into(), 2.into(), 3.into()]),
        ),
        (
            r#"{"type":"object","value":{"foo":{"type":"string","value":"bar"}}}"#,
            JsValue::object([("foo", "bar".into())]),
        ),
        (
            r#"{"type":"Map","value":[[{"type":"string","value":"key"},{"type":"string","value":"value"}],[{"type":"string","value":"key2"},{"type":"string","value":"value2"}]]}"#,
            JsValue::Map(vec![
                ("key".into(), "value".into()),
                ("key2".into(), "value2".into()),
            ]),
        ),
        (
            r#"{"type":"Set","value":[{"type":"number","value":1},{"type":"number","value":2}]}"#,
            JsValue::Set(vec![1.into(), 2.into()]),
        ),
        (
            r#"{"type":"Date","value":"2023-12-16T17:24:00.000Z"}"#,
            JsValue::Date(1_702_747_440_000.0),
        ),
        (
            r#"{"type":"RegExp","value":"/abc/i"}"#,
            JsValue::regexp("abc", "i"),
        ),
        (
            r#"{"type":"RegExp","value":"/a\\/b/gi"}"#,
            JsValue::regexp("a\\/b", "gi"),
        ),
        (
            r#"{"type":"KvU64","value":"100"}"#,
            JsValue::BigInt(100.into()),
        ),
        // Nested, what Deno stores for a `Deno.KvU64` inside a value.
        (
            r#"{"type":"Array","value":[{"type":"KvU64","value":"100"}]}"#,
            JsValue::array([JsValue::object([("value", JsValue::BigInt(100.into()))])]),
        ),
        (
            r#"{"type":"Error","value":{"message":"an error","stack":"Line\nLine","cause":{"type":"SyntaxError","value":{"message":"something else","stack":"Line\nLine"}}}}"#,
            error(
                ErrorName::Error,
                Some("an error"),
                Some("Line\nLine"),
                Some(error(
                    ErrorName::SyntaxError,
                    Some("something else"),
                    Some("Line\nLine"),
                    None,
                )),
            ),
        ),
        (
            r#"{"type":"URIError","value":{"message":"an error"}}"#,
            error(ErrorName::UriError, Some("an error"), None, None),
        ),
        (
            r#"{"type":"ArrayBuffer","value":"AQID","byteLength":3}"#,
            JsValue::ArrayBuffer(vec![1, 2, 3]),
        ),
        (
            r#"{"type":"DataView","value":"AQID","byteLength":3}"#,
            typed(TypedArrayKind::DataView, vec![1, 2, 3]),
        ),
        (
            r#"{"type":"Uint8Array","value":"AQID"}"#,
            JsValue::uint8_array([1, 2, 3]),
        ),
        (
            r#"{"type":"Uint8ClampedArray","value":"AQID","byteLength":3}"#,
            typed(TypedArrayKind::Uint8Clamped, vec![1, 2, 3]),
        ),
        (
            r#"{"type":"Int16Array","value":"AQACAAMABAA","byteLength":8}"#,
            typed(
                TypedArrayKind::Int16,
                le(&[
                    &1i16.to_le_bytes(),
                    &2i16.to_le_bytes(),
                    &3i16.to_le_bytes(),
                    &4i16.to_le_bytes(),
                ]),
            ),
        ),
        (
            r#"{"type":"Float32Array","value":"mpmZP5qZWUAzM7NA","byteLength":12}"#,
            typed(
                TypedArrayKind::Float32,
                le(&[
                    &1.2f32.to_le_bytes(),
                    &3.4f32.to_le_bytes(),
                    &5.6f32.to_le_bytes(),
                ]),
            ),
        ),
        (
            r#"{"type":"Float64Array","value":"MzMzMzMz8z8zMzMzMzMLQGZmZmZmZhZA","byteLength":24}"#,
            typed(
                TypedArrayKind::Float64,
                le(&[
                    &1.2f64.to_le_bytes(),
                    &3.4f64.to_le_bytes(),
                    &5.6f64.to_le_bytes(),
                ]),
            ),
        ),
        (
            r#"{"type":"BigInt64Array","value":"AQAAAAAAAAACAAAAAAAAAAMAAAAAAAAA","byteLength":24}"#,
            typed(
                TypedArrayKind::BigInt64,
                le(&[
                    &1i64.to_le_bytes(),
                    &2i64.to_le_bytes(),
                    &3i64.to_le_bytes(),
                ]),
            ),
        ),
        // Members in any order, unknown ones ignored, padding optional.
        (
            r#"{"value":"AQ==","extra":1,"type":"Int8Array"}"#,
            typed(TypedArrayKind::Int8, vec![1]),
        ),
        (
            r#" {"type":"Int8Array","value":"AQ"} "#,
            typed(TypedArrayKind::Int8, vec![1]),
        ),
        // byteLength shorter than the bytes: the view over the first ones.
        (
            r#"{"type":"Uint8Array","value":"AQID","byteLength":2}"#,
            JsValue::uint8_array([1, 2]),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(js(text), want, "{text}");
    }
}

#[test]
fn golden_keys_and_lines() -> Result<(), JsonError> {
    let text = r#"[{"type":"string","value":"a"},{"type":"number","value":1},{"type":"bigint","value":"100"},{"type":"boolean","value":false},{"type":"Uint8Array","value":"AQID","byteLength":3},{"type":"number","value":"-Infinity"}]"#;
    let want = Key(vec![
        KeyPart::from("a"),
        KeyPart::from(1.0),
        KeyPart::from(100),
        KeyPart::False,
        KeyPart::Bytes(vec![1, 2, 3]),
        KeyPart::Float(f64::NEG_INFINITY),
    ]);
    assert_eq!(decode_key(text)?, want);
    assert_eq!(encode_key(&want), text);

    // kv-utils' import example, and what its export writes for it.
    let line = "{\"key\":[{\"type\":\"string\",\"value\":\"a\"}],\"value\":{\"type\":\"bigint\",\"value\":\"100\"},\"versionstamp\":\"00000000000000060000\"}\n";
    let got = decode_line(line)?;
    assert_eq!(got.key, key!["a"]);
    assert_eq!(
        got.value,
        KvValue::V8(encode(&JsValue::BigInt(100.into()))?)
    );
    assert_eq!(got.versionstamp, Some(Versionstamp::from_counter(6)));
    assert_eq!(got.expire_at, None);
    let entry = KvEntry {
        key: got.key,
        value: got.value,
        versionstamp: Versionstamp::from_counter(6),
    };
    assert_eq!(encode_line(&entry, None)?, line);

    // Top-level KvU64 and Uint8Array are stored in their own encodings.
    assert_eq!(
        decode_value(r#"{"type":"KvU64","value":"18446744073709551615"}"#)?,
        KvValue::U64(u64::MAX)
    );
    assert_eq!(
        decode_value(r#"{"type":"Uint8Array","value":"AQID"}"#)?,
        KvValue::Bytes(vec![1, 2, 3])
    );
    assert_eq!(
        encode_value(&KvValue::U64(5))?,
        r#"{"type":"KvU64","value":"5"}"#
    );
    assert_eq!(
        encode_value(&KvValue::Bytes(vec![0xfb, 0xff]))?,
        r#"{"type":"Uint8Array","value":"-_8","byteLength":2}"#
    );

    let with_expiry = decode_line(
        "{\"key\":[],\"value\":{\"type\":\"null\",\"value\":null},\"versionstamp\":null,\"expireAt\":1700000000000}\r\n",
    )?;
    assert_eq!(with_expiry.expire_at, Some(1_700_000_000_000));
    assert_eq!(with_expiry.versionstamp, None);
    Ok(())
}

#[test]
fn writes_what_kv_utils_writes() {
    let cases: Vec<(JsValue, &str)> = vec![
        (JsValue::Undefined, r#"{"type":"undefined"}"#),
        (JsValue::Null, r#"{"type":"null","value":null}"#),
        (JsValue::Number(-0.0), r#"{"type":"number","value":0}"#),
        (JsValue::Number(1e21), r#"{"type":"number","value":1e+21}"#),
        (
            JsValue::Number(1.5e-7),
            r#"{"type":"number","value":1.5e-7}"#,
        ),
        (
            JsValue::Number(0.000_001),
            r#"{"type":"number","value":0.000001}"#,
        ),
        (
            JsValue::Number(f64::NAN),
            r#"{"type":"number","value":"NaN"}"#,
        ),
        (
            JsValue::Number(123_456_789_012_345_680_000.0),
            r#"{"type":"number","value":123456789012345680000}"#,
        ),
        (
            "tab\t\"q\" \u{1} é\u{2028}".into(),
            "{\"type\":\"string\",\"value\":\"tab\\t\\\"q\\\" \\u0001 é\u{2028}\"}",
        ),
        (
            JsValue::Array(JsArray {
                items: vec![Some(1.into()), None],
                props: vec![("dropped".into(), true.into())],
            }),
            r#"{"type":"Array","value":[{"type":"number","value":1},null]}"#,
        ),
        (JsValue::Date(f64::NAN), r#"{"type":"Date","value":null}"#),
        (
            JsValue::Date(-62_198_755_200_000.0),
            r#"{"type":"Date","value":"-000001-01-01T00:00:00.000Z"}"#,
        ),
        (
            JsValue::Date(8.64e15),
            r#"{"type":"Date","value":"+275760-09-13T00:00:00.000Z"}"#,
        ),
        (
            JsValue::regexp("a/b[/]\n", "yg"),
            r#"{"type":"RegExp","value":"/a\\/b[/]\\n/gy"}"#,
        ),
        (
            JsValue::regexp("", ""),
            r#"{"type":"RegExp","value":"/(?:)/"}"#,
        ),
        (
            typed(TypedArrayKind::Float16, vec![0, 0x3c]),
            r#"{"type":"Float16Array","value":"ADw","byteLength":2}"#,
        ),
        (
            error(
                ErrorName::RangeError,
                None,
                Some(""),
                Some(JsValue::Number(0.0)),
            ),
            r#"{"type":"RangeError","value":{"message":""}}"#,
        ),
        (
            error(ErrorName::TypeError, Some("m"), Some("s"), Some("c".into())),
            r#"{"type":"TypeError","value":{"message":"m","cause":{"type":"string","value":"c"},"stack":"s"}}"#,
        ),
        (
            JsValue::StringObject("a😀".into()),
            r#"{"type":"object","value":{"0":{"type":"string","value":"a"},"1":{"type":"string","value":"�"},"2":{"type":"string","value":"�"}}}"#,
        ),
        (
            JsValue::NumberObject(1.0),
            r#"{"type":"object","value":{}}"#,
        ),
        (
            JsValue::array([JsValue::object([("x", 1.into())]), JsValue::Ref(1)]),
            r#"{"type":"Array","value":[{"type":"object","value":{"x":{"type":"number","value":1}}},{"type":"object","value":{"x":{"type":"number","value":1}}}]}"#,
        ),
    ];
    for (value, want) in cases {
        assert_eq!(kv_utils(&value), want, "{value:?}");
    }
    assert_eq!(
        {
            let mut out = String::new();
            Encoder::new()
                .with_dialect(Dialect::KvUtils)
                .key(&key![-0.0], &mut out);
            out
        },
        r#"[{"type":"number","value":0}]"#
    );
}

/// Where kv-utils loses information, the lossless dialect writes what
/// kv-utils (and this module) read back as the original value.
#[test]
fn the_lossless_dialect_keeps_what_kv_utils_drops() -> Result<(), JsonError> {
    let cases: Vec<(JsValue, &str)> = vec![
        (JsValue::Number(-0.0), r#"{"type":"number","value":-0}"#),
        (
            error(
                ErrorName::RangeError,
                None,
                Some(""),
                Some(JsValue::Number(0.0)),
            ),
            r#"{"type":"RangeError","value":{"cause":{"type":"number","value":0},"stack":""}}"#,
        ),
    ];
    for (value, want) in cases {
        assert_eq!(encode_js(&value)?, want);
        assert_eq!(decode_js(want)?, value);
    }
    assert_eq!(encode_key(&key![-0.0]), r#"[{"type":"number","value":-0}]"#);
    let back = decode_key(&encode_key(&key![-0.0]))?;
    assert_eq!(back.encode().ok(), key![-0.0].encode().ok());
    Ok(())
}

#[test]
fn dates_and_regexps_follow_javascript() {
    for (text, ms) in [
        ("1970-01-01T00:00:00.000Z", 0.0),
        ("1970-01-01T00:00:00Z", 0.0),
        ("1970-01-01T00:00Z", 0.0),
        ("1970-01-01T01:00:00.000+01:00", 0.0),
        ("1969-12-31T23:00:00.000-01:00", 0.0),
        ("1970-01-01", 0.0),
        ("1970-01", 0.0),
        ("1970", 0.0),
        ("1970-01-01T00:00:00.0015Z", 1.0),
        ("1970-01-02T24:00:00Z", 2.0 * 86_400_000.0),
        ("2024-02-29T12:00:00.000Z", 1_709_208_000_000.0),
        ("+275760-09-13T00:00:00.000Z", 8.64e15),
        ("-271821-04-20T00:00:00.000Z", -8.64e15),
        ("-000001-01-01T00:00:00.000Z", -62_198_755_200_000.0),
    ] {
        let got = js(&format!(r#"{{"type":"Date","value":"{text}"}}"#));
        assert_eq!(got, JsValue::Date(ms), "{text}");
    }
    for bad in [
        "2023-02-29T00:00:00Z",
        "2023-13-01",
        "2023-01-01T00:00:00",
        "2023-01-01 00:00:00Z",
        "-000000-01-01T00:00:00Z",
        "+275760-09-13T00:00:00.001Z",
        "Dec 16 2023",
        "",
    ] {
        let e = invalid(decode_js(&format!(r#"{{"type":"Date","value":"{bad}"}}"#)));
        assert!(e.starts_with("value.value: "), "{e}");
    }
    assert_eq!(
        js(r#"{"type":"Date","value":null}"#),
        JsValue::Date(f64::NAN)
    );
    assert_eq!(
        js(r#"{"type":"Date","value":"Invalid Date"}"#),
        JsValue::Date(f64::NAN)
    );

    // Stored as V8 stores `new RegExp(source, flags)`: escaped, flags in
    // their canonical order.
    assert_eq!(
        js(r#"{"type":"RegExp","value":"/a/b/yg"}"#),
        JsValue::regexp("a\\/b", "gy")
    );
    assert_eq!(
        js(r#"{"type":"RegExp","value":"//"}"#),
        JsValue::regexp("(?:)", "")
    );
    assert_eq!(
        js(r#"{"type":"RegExp","value":"/[/]\\\n/"}"#),
        JsValue::regexp("[/]\\n", "")
    );
    for bad in ["abc", "/abc", "/a/x", "/a/gg", "/a/uv"] {
        invalid(decode_js(&format!(
            r#"{{"type":"RegExp","value":"{bad}"}}"#
        )));
    }
}

#[test]
fn errors_say_what_is_wrong_and_where() {
    let cases = [
        (
            decode_line(r#"{"key":[{"type":"string","value":"a"}],"value":{"type":"Array","value":[{"type":"number","value":1},{"type":"Uint8Array","value":3}]}}"#).map(|_| ()),
            "value.value[1].value: expected a base64url string, found a number",
        ),
        (
            decode_line(r#"{"key":[{"type":"string"},{"type":"symbol","value":"x"}],"value":{"type":"null","value":null}}"#).map(|_| ()),
            "key[0].value: expected a string, found null",
        ),
        (
            decode_line(r#"{"key":[{"type":"symbol","value":"x"}],"value":{"type":"null","value":null}}"#).map(|_| ()),
            "key[0].type: \"symbol\" is not a key part type (string, number, bigint, boolean, Uint8Array)",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"object","value":{"a b":{"value":1}}}}"#).map(|_| ()),
            "value.value[\"a b\"]: missing \"type\"",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"Thing","value":1}}"#).map(|_| ()),
            "value.type: \"Thing\" is not a value type",
        ),
        (
            decode_line(r#"{"value":{"type":"null","value":null}}"#).map(|_| ()),
            "key: missing",
        ),
        (decode_line(r#"{"key":[]}"#).map(|_| ()), "value: missing"),
        (decode_line("[1]").map(|_| ()), "line: expected an object with key, value and versionstamp, found an array"),
        (
            decode_line(r#"{"key":[],"value":{"type":"null"},"versionstamp":"0001"}"#).map(|_| ()),
            "versionstamp: \"0001\" is not 20 hex digits",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"null"},"expireAt":-1}"#).map(|_| ()),
            "expireAt: expected Unix milliseconds (an integer from 0 to 2^53 - 1), found -1",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"null"},"expireAt":9007199254740992}"#).map(|_| ()),
            "expireAt: expected Unix milliseconds (an integer from 0 to 2^53 - 1), found 9007199254740992",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"KvU64","value":"-1"}}"#).map(|_| ()),
            "value.value: \"-1\" is outside a KvU64's range (0 to 18446744073709551615)",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"Int32Array","value":"AQID"}}"#).map(|_| ()),
            "value.value: 3 bytes is not a whole number of Int32Array elements (4 bytes each)",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"ArrayBuffer","value":"AQID","byteLength":4}}"#).map(|_| ()),
            "value.byteLength: byteLength 4 is more than the 3 bytes of the value",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"ArrayBuffer","value":"A*"}}"#).map(|_| ()),
            "value.value: not base64url: Invalid symbol 42, offset 1.",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"Map","value":[[{"type":"null"}]]}}"#).map(|_| ()),
            "value.value[0]: expected a [key, value] pair, found an array",
        ),
        (
            decode_line(r#"{"key":[{"type":"bigint","value":"12x"}],"value":{"type":"null"}}"#).map(|_| ()),
            "key[0].value: \"12x\" is not an integer",
        ),
        (
            decode_line(r#"{"key":[],"value":{"type":"Arr"#).map(|_| ()),
            "the JSON ends early, at column 31 (is the line truncated?)",
        ),
    ];
    for (result, want) in cases {
        assert_eq!(invalid(result), want);
    }
    let e = invalid(decode_line("{\"key\":[] x}"));
    assert_eq!(e, "not valid JSON at column 11: expected ',' or '}'");
}

#[test]
fn a_cycle_is_refused_with_its_path() {
    let cycle = JsValue::object([
        ("name", "c".into()),
        ("items", JsValue::array([JsValue::Null, JsValue::Ref(0)])),
    ]);
    let e = encode_js(&cycle).expect_err("a cycle");
    assert_eq!(
        e.to_string(),
        "value.value.items.value[1]: the value contains itself (a cycle), which kv-utils' JSON cannot hold"
    );
    let mut out = String::from("kept");
    let err = Encoder::new().line(
        &key!["k"],
        ValueRef::V8(&encode(&cycle).expect("V8 holds cycles")),
        Versionstamp::ZERO,
        None,
        &mut out,
    );
    assert!(err.is_err());
    assert_eq!(out, "kept", "a failed line leaves the buffer as it was");
}

#[test]
fn plain_json_is_what_json_parse_gives() -> Result<(), JsonError> {
    let v = parse_plain(r#"{"b": 1, "2": [true, null, "x"], "a": {"n": -0}, "1": 1.5, "b": 5}"#)?;
    let want = JsValue::Object(vec![
        (PropertyKey::Index(1), 1.5.into()),
        (
            PropertyKey::Index(2),
            JsValue::array([true.into(), JsValue::Null, "x".into()]),
        ),
        ("b".into(), 5.into()),
        ("a".into(), JsValue::object([("n", JsValue::Number(-0.0))])),
    ]);
    assert_eq!(v, want);
    let from_value = from_plain(&serde_json::json!({"z": 1, "a": [1, 2]}));
    assert_eq!(
        from_value,
        JsValue::object([("a", JsValue::array([1.into(), 2.into()])), ("z", 1.into())])
    );
    assert_eq!(
        parse_plain("12345678901234567890")?,
        JsValue::Number(12_345_678_901_234_567_000.0)
    );
    assert!(matches!(
        parse_plain("{\"a\":"),
        Err(JsonError::Truncated { .. })
    ));
    Ok(())
}

#[test]
fn values_as_deep_as_v8_allows_round_trip() -> Result<(), JsonError> {
    let mut v = JsValue::Null;
    for i in 0..crate::MAX_DEPTH {
        v = if i % 2 == 0 {
            JsValue::array([v])
        } else {
            JsValue::Map(vec![(JsValue::Null, v)])
        };
    }
    let bytes = encode(&v)?;
    let text = encode_value(&KvValue::V8(bytes.clone()))?;
    assert_eq!(decode_value(&text)?, KvValue::V8(bytes));
    let too_deep = format!("{}null{}", "[".repeat(1000), "]".repeat(1000));
    assert!(matches!(
        parse_plain(&too_deep),
        Err(JsonError::Syntax { .. })
    ));
    Ok(())
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<i32>().prop_map(f64::from),
        any::<u64>().prop_map(f64::from_bits),
        any::<f64>(),
        Just(-0.0),
        Just(f64::INFINITY),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,6}",
        any::<String>(),
        "[\\x00-\\x1f\"\\\\/\u{2028}]{0,6}"
    ]
}

fn bigint() -> impl Strategy<Value = BigInt> {
    (any::<bool>(), prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(neg, b)| {
        let n = BigInt::from_bytes_le(num_bigint::Sign::Plus, &b);
        if neg { -n } else { n }
    })
}

fn date() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-8_640_000_000_000_000i64..=8_640_000_000_000_000).prop_map(|ms| {
            // Within ±8.64e15, so exact.
            #[allow(clippy::cast_precision_loss)]
            let ms = ms as f64;
            ms
        }),
        Just(f64::NAN),
    ]
}

/// Values the typed JSON carries exactly: no array properties, boxed
/// primitives or shared objects; RegExp sources as V8 stores them.
fn exact_value() -> impl Strategy<Value = JsValue> {
    let leaf = prop_oneof![
        Just(JsValue::Undefined),
        Just(JsValue::Null),
        any::<bool>().prop_map(JsValue::Bool),
        number().prop_map(JsValue::Number),
        bigint().prop_map(JsValue::BigInt),
        string().prop_map(JsValue::String),
        date().prop_map(JsValue::Date),
        ("[a-z/\\[\\]\\\\.\n]{0,6}", "g?i?m?s?u?y?").prop_map(|(source, flags)| {
            JsValue::regexp(super::write::escape_regexp_source(&source), flags)
        }),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(JsValue::ArrayBuffer),
        (
            0..TypedArrayKind::ALL.len(),
            prop::collection::vec(any::<u8>(), 0..17)
        )
            .prop_map(|(k, mut bytes)| {
                let kind = TypedArrayKind::ALL[k];
                bytes.truncate(bytes.len() / kind.element_size() * kind.element_size());
                JsValue::TypedArray(TypedArray { kind, bytes })
            }),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(prop::option::weighted(0.9, inner.clone()), 0..5).prop_map(
                |items| JsValue::Array(JsArray {
                    items,
                    props: Vec::new()
                })
            ),
            prop::collection::vec((string(), inner.clone()), 0..5).prop_map(|props| {
                JsValue::Object(super::read::js_property_order(
                    props
                        .into_iter()
                        .map(|(k, v)| (PropertyKey::new(k), v))
                        .collect(),
                ))
            }),
            prop::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(JsValue::Map),
            prop::collection::vec(inner.clone(), 0..3).prop_map(JsValue::Set),
            (
                0..ErrorName::ALL.len(),
                prop::option::of(string()),
                prop::option::of(string()),
                prop::option::of(inner),
            )
                .prop_map(|(n, message, stack, cause)| {
                    JsValue::Error(Box::new(JsError {
                        name: ErrorName::ALL[n],
                        message,
                        stack,
                        cause,
                    }))
                }),
        ]
    })
}

fn key_part() -> impl Strategy<Value = KeyPart> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8).prop_map(KeyPart::Bytes),
        string().prop_map(KeyPart::String),
        bigint().prop_map(KeyPart::Int),
        number().prop_map(KeyPart::Float),
        Just(KeyPart::True),
        Just(KeyPart::False),
    ]
}

proptest! {
    #[test]
    fn lossless_lines_round_trip_to_the_same_v8_bytes(
        parts in prop::collection::vec(key_part(), 0..4),
        value in exact_value(),
        stamp in any::<[u8; 10]>(),
        expire_at in prop::option::of(0u64..(1 << 53)),
    ) {
        // NaN keys come back as the canonical NaN; compare those by class.
        let key = Key(parts);
        let bytes = encode(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let entry = KvEntry { key: key.clone(), value: KvValue::V8(bytes.clone()), versionstamp: Versionstamp(stamp) };
        let line = encode_line(&entry, expire_at).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let back = decode_line(&line).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
        prop_assert_eq!(&back.key, &key);
        // A top-level Uint8Array is what Deno stores as bytes, so its line
        // reads back as `KvValue::Bytes` (see `decode_value`).
        let expected = match &value {
            JsValue::TypedArray(TypedArray { kind: TypedArrayKind::Uint8, bytes: view }) => {
                KvValue::Bytes(view.clone())
            }
            _ => KvValue::V8(bytes),
        };
        prop_assert_eq!(back.value, expected, "{}", line);
        prop_assert_eq!(back.versionstamp, Some(Versionstamp(stamp)));
        prop_assert_eq!(back.expire_at, expire_at);
        // And the JsValue itself, through decode.
        let js = decode_js(&encode_js(&value).map_err(|e| TestCaseError::fail(e.to_string()))?)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(js, value);
    }

    #[test]
    fn kv_utils_dialect_reads_back_as_kv_utils_would(value in exact_value()) {
        // kv-utils' own output is readable, and differs from the original
        // only where kv-utils drops information.
        let text = kv_utils(&value);
        let back = decode_js(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(kv_utils(&back), text);
    }

    #[test]
    fn the_decoder_never_panics(text in "[\\[\\]{}\":,a-zA-Z0-9 .\\-]{0,40}") {
        let _ = decode_line(&text);
        let _ = decode_key(&text);
    }
}

#[test]
fn raw_bytes_decoded_from_v8_round_trip() -> Result<(), JsonError> {
    // A value Deno wrote (version 15 here), through a line and back.
    let bytes = encode(&JsValue::object([("a", JsValue::uint8_array([1, 2]))]))?;
    let text = encode_value(&KvValue::V8(bytes.clone()))?;
    assert_eq!(
        text,
        r#"{"type":"object","value":{"a":{"type":"Uint8Array","value":"AQI","byteLength":2}}}"#
    );
    assert_eq!(decode(&bytes)?, decode_js(&text)?);
    assert_eq!(decode_value(&text)?, KvValue::V8(bytes));
    Ok(())
}
