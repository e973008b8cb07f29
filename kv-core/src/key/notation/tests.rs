use num_bigint::{BigInt, Sign};
use proptest::prelude::*;

use crate::{Key, KeyParseErrorKind as K, KeyPart, key};

fn parse(s: &str) -> Key {
    Key::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn error(s: &str) -> (K, usize) {
    let e = Key::parse(s).expect_err(s);
    (e.kind().clone(), e.column())
}

fn float_bits(k: &Key) -> Vec<u64> {
    k.parts()
        .iter()
        .map(|p| match p {
            KeyPart::Float(f) => f.to_bits(),
            other => panic!("not a float: {other:?}"),
        })
        .collect()
}

#[test]
fn reads_what_a_deno_user_types() {
    assert_eq!(
        parse(r#"["users", "alice", 1n, 2, true]"#),
        key!["users", "alice", 1, 2.0, true]
    );
    assert_eq!(
        parse("[ 'it\\'s', `back`, false, -12n, 0x10n, 1_000, ]"),
        key!["it's", "back", false, -12, 16, 1000.0]
    );
    assert_eq!(parse("[]"), Key::empty());
    assert_eq!(parse("  [ ]  "), Key::empty());
    assert_eq!(
        parse("[new Uint8Array([1, 2, 0xff]), new Uint8Array([]), new Uint8Array()]"),
        Key(vec![
            KeyPart::Bytes(vec![1, 2, 255]),
            KeyPart::Bytes(vec![]),
            KeyPart::Bytes(vec![]),
        ])
    );
    // How Deno's console prints a key: `[ "a", Uint8Array(3) [ 1, 2, 3 ] ]`.
    assert_eq!(
        parse("[ \"a\", Uint8Array(3) [ 1, 2, 3 ], Uint8Array(0) [] ]"),
        Key(vec![
            KeyPart::from("a"),
            KeyPart::Bytes(vec![1, 2, 3]),
            KeyPart::Bytes(vec![]),
        ])
    );
}

#[test]
fn numbers_as_javascript_reads_them() {
    let k = parse("[0, -0, 1.5, -.5, 5., 1e3, 1E-3, 2e+2, 0b101, 0o17, 0xfF, 1e400]");
    let want = [
        0.0,
        -0.0,
        1.5,
        -0.5,
        5.0,
        1000.0,
        0.001,
        200.0,
        5.0,
        15.0,
        255.0,
        f64::INFINITY,
    ];
    assert_eq!(float_bits(&k), want.map(f64::to_bits).to_vec());
    let k = parse("[NaN, -NaN, +NaN, Infinity, -Infinity, +1]");
    assert_eq!(
        float_bits(&k),
        vec![
            0x7ff8_0000_0000_0000,
            0xfff8_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            f64::INFINITY.to_bits(),
            f64::NEG_INFINITY.to_bits(),
            1f64.to_bits(),
        ]
    );
    // -0 and 0 are different keys in Deno, and stay different here.
    assert_ne!(parse("[-0]"), parse("[0]"));
    assert_eq!(parse("[-0n]"), parse("[0n]"));
}

#[test]
fn strings_take_javascript_escapes() {
    let k = parse(
        r#"["\n\t\r\b\f\v\0\\\"\'\a", "\x41\u0042\u{43}\u{1F600}", "\uD83D\uDE00", "a\
b"]"#,
    );
    assert_eq!(
        k,
        key![
            "\n\t\r\u{8}\u{c}\u{b}\0\\\"'a",
            "ABC\u{1F600}",
            "\u{1F600}",
            "ab"
        ]
    );
    assert_eq!(parse("[`line\r\nnext`]"), key!["line\nnext"]);
}

#[test]
fn errors_name_the_column_and_what_was_expected() {
    let cases: Vec<(&str, K, usize)> = vec![
        (
            r#"["a" "b"]"#,
            K::Expected {
                expected: "\",\" or \"]\"",
                found: Some('"'),
            },
            6,
        ),
        (
            r#"["a", "#,
            K::Expected {
                expected: "a key part or \"]\"",
                found: None,
            },
            7,
        ),
        (r#"["a", null]"#, K::NotAKeyPart("null"), 7),
        ("[undefined]", K::NotAKeyPart("undefined"), 2),
        ("[{}]", K::NotAKeyPart("an object"), 2),
        ("[[1]]", K::NotAKeyPart("an array"), 2),
        (
            "[1.5n]",
            K::InvalidNumber("a bigint must be an integer without a fraction or exponent"),
            2,
        ),
        (
            "[012]",
            K::InvalidNumber("a leading zero (legacy octal) is not allowed; use 0o for octal"),
            2,
        ),
        ("[1_]", K::InvalidNumber("'_' may only separate digits"), 2),
        (
            "[1abc]",
            K::InvalidNumber("unexpected character after the number"),
            2,
        ),
        ("[new Uint8Array([256])]", K::ByteOutOfRange, 18),
        ("[new Uint8Array([1.5])]", K::ByteOutOfRange, 18),
        (
            "[Uint8Array(2) [1]]",
            K::LengthMismatch {
                declared: 2,
                actual: 1,
            },
            13,
        ),
        (r#"["\uD800"]"#, K::LoneSurrogate(0xD800), 3),
        (r#"["\uDC00x"]"#, K::LoneSurrogate(0xDC00), 3),
        (
            r#"["\07"]"#,
            K::InvalidEscape("octal escapes are not allowed; use \\x or \\u"),
            3,
        ),
        (
            r#"["\xZ1"]"#,
            K::InvalidEscape("\\x needs two hex digits"),
            3,
        ),
        (r#"["abc]"#, K::UnterminatedString, 2),
        ("['a\nb']", K::UnterminatedString, 2),
        ("[`${x}`]", K::TemplateSubstitution, 3),
        (
            "[\"é\", x]",
            K::Expected {
                expected: "a key part",
                found: Some('x'),
            },
            7,
        ),
        (
            "[1] 2",
            K::Expected {
                expected: "the end of the input",
                found: Some('2'),
            },
            5,
        ),
        ("a/%2", K::InvalidPercentEncoding, 3),
        ("a/b%ff", K::InvalidUtf8, 3),
    ];
    for (input, kind, column) in cases {
        assert_eq!(error(input), (kind, column), "{input:?}");
    }
    let e = Key::parse(r#"["a" "b"]"#).expect_err("missing comma");
    assert_eq!(
        e.to_string(),
        r#"expected "," or "]" but found '"' at column 6"#
    );
    assert_eq!(e.offset(), 5);
}

#[test]
fn bigints_are_limited_to_what_a_key_encodes() {
    let max = format!("[0x{}n]", "ff".repeat(255));
    assert!(parse(&max).encode().is_ok());
    let over = format!("[-0x1{}n]", "00".repeat(255));
    assert_eq!(error(&over), (K::IntegerTooLarge, 2));
}

#[test]
fn prints_what_a_deno_user_reads() {
    let k = Key(vec![
        KeyPart::from("users"),
        KeyPart::from("say \"hi\"\n\u{7}\u{200b}é😀"),
        KeyPart::from(1),
        KeyPart::from(-2.5),
        KeyPart::from(-0.0),
        KeyPart::from(1e21),
        KeyPart::from(1.5e-7),
        KeyPart::from(0.000_001),
        KeyPart::from(123_456_789_012_345_680_000.0),
        KeyPart::Float(f64::NAN),
        KeyPart::Float(f64::NEG_INFINITY),
        KeyPart::Bytes(vec![1, 2, 3]),
        KeyPart::Bytes(vec![]),
        KeyPart::True,
    ]);
    assert_eq!(
        k.to_string(),
        r#"["users", "say \"hi\"\n\x07\u200bé😀", 1n, -2.5, -0, 1e+21, 1.5e-7, 0.000001, 123456789012345680000, NaN, -Infinity, new Uint8Array([1, 2, 3]), new Uint8Array([]), true]"#
    );
    assert_eq!(parse(&k.to_string()), k);
    assert_eq!(Key::empty().to_string(), "[]");
    assert_eq!("1n".parse::<KeyPart>(), Ok(KeyPart::from(1)));
    assert_eq!(" 'a' ".parse::<KeyPart>(), Ok(KeyPart::from("a")));
}

#[test]
fn short_form_for_string_keys() {
    assert_eq!(parse("users/alice"), key!["users", "alice"]);
    assert_eq!(parse("users"), key!["users"]);
    assert_eq!(parse(""), Key::empty());
    assert_eq!(parse("a//b"), key!["a", "", "b"]);
    assert_eq!(parse("/a/"), key!["", "a", ""]);
    assert_eq!(parse("a%2Fb/100%25/%5B"), key!["a/b", "100%", "["]);
    assert_eq!(parse(" spaced out "), key![" spaced out "]);

    assert_eq!(
        key!["users", "alice"].short_form().as_deref(),
        Some("users/alice")
    );
    assert_eq!(
        key!["a/b", "50%"].short_form().as_deref(),
        Some("a%2Fb/50%25")
    );
    assert_eq!(key![" [x", "[y"].short_form().as_deref(), Some(" %5Bx/[y"));
    assert_eq!(
        key!["line\nbreak"].short_form().as_deref(),
        Some("line%0Abreak")
    );
    assert_eq!(Key::empty().short_form().as_deref(), Some(""));
    assert_eq!(key![""].short_form(), None);
    assert_eq!(key!["a", 1].short_form(), None);
}

fn arb_part() -> impl Strategy<Value = KeyPart> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(KeyPart::Bytes),
        any::<String>().prop_map(KeyPart::String),
        "[\\\\\"'`$\\{\\n\\r\\u{2028}\\u{0}-\\u{1f}a-z]{0,8}".prop_map(KeyPart::String),
        (
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..=255)
        )
            .prop_map(|(negative, mag)| {
                let sign = if negative { Sign::Minus } else { Sign::Plus };
                KeyPart::Int(BigInt::from_bytes_be(sign, &mag))
            }),
        any::<i64>().prop_map(KeyPart::from),
        any::<u64>().prop_map(|bits| KeyPart::Float(f64::from_bits(bits))),
        any::<f64>().prop_map(KeyPart::Float),
        Just(KeyPart::Float(-0.0)),
        Just(KeyPart::False),
        Just(KeyPart::True),
    ]
}

proptest! {
    #[test]
    fn printing_then_parsing_gives_the_same_key(
        parts in proptest::collection::vec(arb_part(), 0..6)
    ) {
        let key = Key(parts);
        let text = key.to_string();
        let back = Key::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&back, &key, "{}", text);
        // Same bytes too: equality above already compares floats by their
        // encoded bits, and the encoding is what Deno stores.
        prop_assert_eq!(back.encode().ok(), key.encode().ok());
        for part in key.parts() {
            let one = part.to_string().parse::<KeyPart>();
            prop_assert_eq!(one.as_ref().ok(), Some(part), "{}", part);
        }
    }

    #[test]
    fn short_form_round_trips(parts in proptest::collection::vec(any::<String>(), 0..5)) {
        let key = Key(parts.into_iter().map(KeyPart::String).collect());
        if let Some(text) = key.short_form() {
            prop_assert_eq!(Key::parse(&text).ok(), Some(key));
        } else {
            prop_assert_eq!(key, key![""]);
        }
    }

    #[test]
    fn parsing_never_panics(input in "[\\[\\]\"'`\\\\, a-zA-Z0-9_.+\\-%/{}()$]{0,24}") {
        let _ = Key::parse(&input);
    }
}
