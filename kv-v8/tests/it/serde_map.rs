//! The serde mapping between Rust types and JavaScript values.

use std::collections::{BTreeMap, HashMap};

use kv_core::{Kv, KvValue, MemoryBackend, key};
use kv_v8::{
    Bytes, Error, JsValue, KvSerdeExt, KvU64, PropertyKey, decode, from_js_value, from_value,
    to_js_value, to_value,
};
use num_bigint::BigInt;
use serde::{Deserialize, Serialize};

type R = Result<(), Box<dyn std::error::Error>>;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Dot,
    Circle(f64),
    Rect { w: u32, h: u32 },
    Pair(i8, i8),
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Record {
    id: u64,
    name: String,
    score: f32,
    tags: Vec<String>,
    nick: Option<String>,
    shape: Shape,
    shapes: Vec<Shape>,
    counts: BTreeMap<String, i64>,
    by_id: BTreeMap<u32, String>,
    blob: Bytes,
    total: KvU64,
    unit: (),
    tuple: (bool, char),
}

fn record() -> Record {
    Record {
        id: u64::MAX,
        name: "Ada ☃".into(),
        score: 1.5,
        tags: vec!["a".into(), "b".into()],
        nick: None,
        shape: Shape::Rect { w: 2, h: 3 },
        shapes: vec![Shape::Dot, Shape::Circle(0.5), Shape::Pair(-1, 1)],
        counts: [("x".to_owned(), 1), ("big".to_owned(), i64::MIN)].into(),
        by_id: [(7, "seven".to_owned())].into(),
        blob: Bytes(vec![1, 2, 3]),
        total: KvU64(5),
        unit: (),
        tuple: (true, 'z'),
    }
}

#[test]
fn structs_become_plain_objects() -> R {
    let v = to_js_value(&record())?;
    let expected = JsValue::object([
        ("id", JsValue::BigInt(u64::MAX.into())),
        ("name", "Ada ☃".into()),
        ("score", 1.5.into()),
        ("tags", JsValue::array(["a".into(), "b".into()])),
        ("nick", JsValue::Null),
        (
            "shape",
            JsValue::object([("Rect", JsValue::object([("w", 2.into()), ("h", 3.into())]))]),
        ),
        (
            "shapes",
            JsValue::array([
                "Dot".into(),
                JsValue::object([("Circle", 0.5.into())]),
                JsValue::object([("Pair", JsValue::array([(-1).into(), 1.into()]))]),
            ]),
        ),
        (
            "counts",
            JsValue::object([("big", JsValue::BigInt(i64::MIN.into())), ("x", 1.into())]),
        ),
        ("by_id", JsValue::Map(vec![(7.into(), "seven".into())])),
        ("blob", JsValue::uint8_array([1, 2, 3])),
        ("total", JsValue::BigInt(5.into())),
        ("unit", JsValue::Null),
        ("tuple", JsValue::array([true.into(), "z".into()])),
    ]);
    assert_eq!(v, expected);
    let back: Record = from_js_value(&v)?;
    assert_eq!(back, record());
    // Through the stored form too.
    let stored = to_value(&record())?;
    assert!(matches!(stored, KvValue::V8(ref b) if b.starts_with(&[0xff, 0x0f])));
    assert_eq!(from_value::<Record>(&stored)?, record());
    Ok(())
}

#[test]
fn top_level_kvu64_and_bytes_use_their_own_encodings() -> R {
    assert_eq!(to_value(&KvU64(7))?, KvValue::U64(7));
    assert_eq!(to_value(&Bytes(vec![1, 2]))?, KvValue::Bytes(vec![1, 2]));
    assert_eq!(
        to_value(&JsValue::uint8_array([3]))?,
        KvValue::Bytes(vec![3])
    );
    // A plain u64 is a number, not a KvU64.
    assert!(matches!(to_value(&7u64)?, KvValue::V8(_)));
    assert_eq!(from_value::<u64>(&KvValue::U64(9))?, 9);
    assert_eq!(from_value::<KvU64>(&KvValue::U64(9))?, KvU64(9));
    assert_eq!(
        from_value::<Bytes>(&KvValue::Bytes(vec![4]))?,
        Bytes(vec![4])
    );
    assert_eq!(from_value::<Vec<u8>>(&KvValue::Bytes(vec![4]))?, vec![4]);
    assert_eq!(
        from_value::<JsValue>(&KvValue::U64(9))?,
        JsValue::BigInt(9.into())
    );
    Ok(())
}

#[test]
fn integers_beyond_2_pow_53_become_bigints() -> R {
    assert_eq!(
        to_js_value(&(1i64 << 53))?,
        JsValue::BigInt(BigInt::from(1i64 << 53))
    );
    assert_eq!(
        to_js_value(&((1i64 << 53) - 1))?,
        JsValue::Number(9007199254740991.0)
    );
    assert_eq!(to_js_value(&-5i64)?, JsValue::Number(-5.0));
    assert_eq!(to_js_value(&u128::MAX)?, JsValue::BigInt(u128::MAX.into()));
    // And back, from numbers or bigints.
    assert_eq!(from_js_value::<u8>(&JsValue::Number(255.0))?, 255);
    assert_eq!(from_js_value::<i64>(&JsValue::BigInt((-3).into()))?, -3);
    assert!(from_js_value::<u8>(&JsValue::Number(256.0)).is_err());
    assert!(from_js_value::<u8>(&JsValue::Number(1.5)).is_err());
    assert!(from_js_value::<u32>(&"1".into()).is_err());
    Ok(())
}

#[derive(Deserialize, Debug, PartialEq)]
struct FromDeno {
    when: f64,
    when_text: String,
    big: u128,
    set: Vec<i32>,
    map: HashMap<String, bool>,
    holes: Vec<Option<i32>>,
    nothing: Option<i32>,
    error: DenoError,
    re: serde_json::Value,
}

#[derive(Deserialize, Debug, PartialEq)]
struct DenoError {
    name: String,
    message: String,
}

#[test]
fn what_deno_writes_reads_into_rust_types() -> R {
    let mut holes = kv_v8::JsArray::new([1.into()]);
    holes.items.push(None);
    let v = JsValue::object([
        ("when", JsValue::Date(0.0)),
        ("when_text", JsValue::Date(86_400_000.0)),
        ("big", JsValue::BigInt(u128::MAX.into())),
        ("set", JsValue::Set(vec![1.into(), 2.into()])),
        ("map", JsValue::Map(vec![("k".into(), true.into())])),
        ("holes", JsValue::Array(holes)),
        ("nothing", JsValue::Undefined),
        (
            "error",
            JsValue::Error(Box::new(kv_v8::JsError {
                name: kv_v8::ErrorName::RangeError,
                message: Some("out".into()),
                ..Default::default()
            })),
        ),
        ("re", JsValue::regexp("x", "g")),
    ]);
    let got: FromDeno = from_js_value(&v)?;
    assert_eq!(
        got,
        FromDeno {
            when: 0.0,
            when_text: "1970-01-02T00:00:00.000Z".into(),
            big: u128::MAX,
            set: vec![1, 2],
            map: [("k".to_owned(), true)].into(),
            holes: vec![Some(1), None],
            nothing: None,
            error: DenoError {
                name: "RangeError".into(),
                message: "out".into()
            },
            re: serde_json::json!({"$kv_v8::RegExp": ["x", "g"]}),
        }
    );
    Ok(())
}

#[test]
fn shared_references_expand_and_cycles_fail() -> R {
    #[derive(Deserialize, Debug, PartialEq)]
    struct Two {
        a: Vec<i32>,
        b: Vec<i32>,
    }
    let shared = JsValue::object([("a", JsValue::array([1.into()])), ("b", JsValue::Ref(1))]);
    assert_eq!(
        from_js_value::<Two>(&shared)?,
        Two {
            a: vec![1],
            b: vec![1]
        }
    );
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Node {
        next: Box<Node>,
    }
    let cyclic = JsValue::object([("next", JsValue::Ref(0))]);
    let err = from_js_value::<Node>(&cyclic).expect_err("cyclic");
    assert!(err.to_string().contains("cyclic"), "{err}");
    // The dynamic value keeps the cycle.
    assert_eq!(from_js_value::<JsValue>(&cyclic)?, cyclic);
    Ok(())
}

#[test]
fn json_values_map_both_ways() -> R {
    let json = serde_json::json!({"a": [1, 2.5, null, true], "b": {"c": "d"}, "3": 0});
    let v = to_js_value(&json)?;
    assert_eq!(
        v,
        JsValue::object([
            (PropertyKey::Index(3), JsValue::Number(0.0)),
            (
                "a".into(),
                JsValue::array([1.into(), 2.5.into(), JsValue::Null, true.into()])
            ),
            ("b".into(), JsValue::object([("c", "d".into())])),
        ])
    );
    let back: serde_json::Value = from_js_value(&v)?;
    assert_eq!(back, json);
    // A JsValue survives a trip through JSON text.
    let special = JsValue::array([
        JsValue::Undefined,
        JsValue::BigInt(12.into()),
        JsValue::Date(5.0),
        JsValue::Map(vec![(1.into(), JsValue::Set(vec![]))]),
        JsValue::Ref(0),
    ]);
    let text = serde_json::to_string(&special)?;
    let parsed: JsValue = serde_json::from_str(&text)?;
    assert_eq!(parsed, special);
    Ok(())
}

#[test]
fn decode_errors_reach_from_value() {
    let err = from_value::<JsValue>(&KvValue::V8(vec![0xff, 0x0f, b'\\'])).expect_err("host");
    assert!(matches!(err, Error::UnsupportedTag { tag: b'\\', .. }));
    let err = from_value::<u32>(&KvValue::V8(vec![0xff, 0x0f, b'"', 1, b'x'])).expect_err("type");
    assert!(matches!(err, Error::Serde(_)), "{err}");
}

#[test]
fn kv_extension_round_trips() -> R {
    futures::executor::block_on(async {
        let kv = Kv::new(MemoryBackend::new());
        let stamp = kv.set_value(key!["r"], &record()).await?;
        let (back, got_stamp) = kv.get_value::<Record>(key!["r"]).await?.expect("written");
        assert_eq!((back, got_stamp), (record(), stamp));
        assert!(kv.get_value::<Record>(key!["missing"]).await?.is_none());
        kv.set_value(key!["n"], &KvU64(1)).await?;
        kv.atomic().sum(key!["n"], 2).commit().await?;
        assert_eq!(
            kv.get_value::<KvU64>(key!["n"]).await?.map(|x| x.0),
            Some(KvU64(3))
        );
        let entry = kv.get(key!["r"]).await?.expect("written");
        let KvValue::V8(bytes) = &entry.value else {
            panic!("a struct is stored as V8")
        };
        assert_eq!(decode(bytes)?.get("name"), Some(&"Ada ☃".into()));
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
