//! kv-utils' typed JSON (`kv_v8::json`) against the real Deno runtime, over
//! one SQLite file.
//!
//! `@deno/kv-utils` is published on JSR only (`npm view @deno/kv-utils` is
//! a 404), which these machines cannot reach, so the evidence is Deno's:
//!
//! 1. Deno (`clients/deno/kv_utils_lines.ts write`) stores values of every
//!    type and keys of every part type, and writes one NDJSON line per
//!    entry, made in JavaScript by a transcription of kv-utils'
//!    `entryToJSON` (operations.md §5.2) from the real runtime's own
//!    formatting of numbers, strings, dates, regular expressions and bytes.
//! 2. Rust reads the file: for each entry, [`Dialect::KvUtils`] must write
//!    exactly Deno's line; the lossless line must read back to the same key
//!    bytes and the same V8 bytes (save the format version, see
//!    [`same_stored`]); Deno's own line must too, except where kv-utils is
//!    known to lose information ([`kv_utils_loses`]).
//! 3. Rust stores what it read back from its lines under
//!    `["imported", ...key]`, and the hand-written golden lines of §5.2
//!    under `["golden", name]`; Deno (`… check`) compares them with the
//!    JavaScript values by deep equality.

use std::path::Path;

use kv_core::{Key, KeyPart, KvValue, ValueRef, Versionstamp};
use kv_v8::json::{self, Dialect, Encoder};

use crate::deno::{R, deno_or_skip, run_script, write_rows};

struct Row {
    key_bytes: Vec<u8>,
    key: Key,
    value: KvValue,
    versionstamp: Versionstamp,
}

/// Every entry of a Deno SQLite file, in key order (the order of
/// `kv.list`).
fn rows(db: &Path) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt = conn.prepare("select k, v, v_encoding, version from kv order by k")?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter()
        .map(|(k, v, enc, version)| {
            Ok(Row {
                key: Key::decode(&k)?,
                key_bytes: k,
                value: KvValue::from_encoded(enc, v)?,
                versionstamp: Versionstamp::from_counter(u64::try_from(version)?),
            })
        })
        .collect()
}

/// Whether two stored values are the same: equal, or for V8 equal after
/// the two-byte header, whose version is 16 from Deno 2.9 and 15 from
/// kv-v8 (see `kv_v8::WRITE_VERSION`), which every Deno reads.
fn same_stored(got: &KvValue, want: &KvValue) -> Result<(), String> {
    match (got, want) {
        (KvValue::V8(g), KvValue::V8(w)) => {
            if g.get(..2) != Some(&[0xff, kv_v8::WRITE_VERSION][..]) {
                return Err(format!("header {:02x?}", g.get(..2)));
            }
            if w.get(..2) != Some(&[0xff, 0x10][..]) {
                return Err(format!("Deno's header {:02x?}", w.get(..2)));
            }
            if g[2..] == w[2..] {
                Ok(())
            } else {
                Err(format!(
                    "V8 bytes {:02x?}, Deno's {:02x?}",
                    &g[2..],
                    &w[2..]
                ))
            }
        }
        (g, w) if g == w => Ok(()),
        (g, w) => Err(format!("{g:?}, expected {w:?}")),
    }
}

/// The entries whose kv-utils line (Deno's) cannot read back as the value:
/// `-0` is written as `0`, an error's missing `message` as `""`, a falsy
/// `cause` and an empty `stack` are left out.
fn kv_utils_loses(key: &Key) -> bool {
    let negative_zero = key
        .parts()
        .iter()
        .any(|p| matches!(p, KeyPart::Float(f) if *f == 0.0 && f.is_sign_negative()));
    let lossy_value = matches!(
        key.parts(),
        [KeyPart::String(a), KeyPart::String(name)]
            if a == "kvu" && ["negative_zero", "error_without_message", "error_falsy_cause", "error_empty_stack"]
                .contains(&name.as_str())
    );
    negative_zero || lossy_value
}

fn unsupported_by_kv_utils(key: &Key) -> bool {
    key == &kv_core::key!["kvu", "float16"]
}

#[test]
fn typed_json_against_deno() -> R {
    let Some(deno) = deno_or_skip("the kv-utils JSON test") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("kv_utils.sqlite3");
    let deno_lines = dir.path().join("deno.ndjson");
    let golden_lines = dir.path().join("golden.ndjson");
    run_script(
        &deno,
        "kv_utils_lines.ts",
        &[
            "write".as_ref(),
            db.as_os_str(),
            deno_lines.as_os_str(),
            golden_lines.as_os_str(),
        ],
    )?;

    let rows = rows(&db)?;
    let deno_text = std::fs::read_to_string(&deno_lines)?;
    let deno_lines: Vec<&str> = deno_text.lines().collect();
    assert_eq!(rows.len(), deno_lines.len(), "one line per entry");
    assert!(rows.len() > 80, "the table has every type: {}", rows.len());

    let kv_utils = Encoder::new().with_dialect(Dialect::KvUtils);
    let mut failures = Vec::new();
    let mut imported = Vec::new();
    let (mut exact, mut lossy) = (0, 0);
    for (row, deno_line) in rows.iter().zip(&deno_lines) {
        let name = row.key.to_string();
        let value = row.value.as_value_ref();

        // What kv-utils writes, byte for byte.
        let mut ours = String::new();
        kv_utils.line(&row.key, value, row.versionstamp, None, &mut ours)?;
        if unsupported_by_kv_utils(&row.key) {
            assert!(
                deno_line.starts_with("{\"unsupported\""),
                "{name}: {deno_line}"
            );
        } else if ours.strip_suffix('\n') != Some(*deno_line) {
            failures.push(format!(
                "{name}: kv-utils line\n  ours: {ours}  Deno: {deno_line}"
            ));
        }

        // Lossless: the same key and V8 bytes back.
        let line = json::encode_line(
            &kv_core::KvEntry {
                key: row.key.clone(),
                value: row.value.clone(),
                versionstamp: row.versionstamp,
            },
            None,
        )?;
        let back = json::decode_line(&line)?;
        if back.key.encode()? != row.key_bytes {
            failures.push(format!("{name}: key bytes differ after {line}"));
        }
        if let Err(e) = same_stored(&back.value, &row.value) {
            failures.push(format!("{name}: lossless line {line}  read back as {e}"));
        }
        assert_eq!(back.versionstamp, Some(row.versionstamp));

        // Deno's kv-utils line, read by the decoder.
        if !unsupported_by_kv_utils(&row.key) {
            let from_deno = json::decode_line(deno_line)?;
            let same = from_deno.key.encode()? == row.key_bytes
                && same_stored(&from_deno.value, &row.value).is_ok();
            match (same, kv_utils_loses(&row.key)) {
                (true, false) => exact += 1,
                (false, true) => lossy += 1,
                (true, true) => {
                    failures.push(format!("{name}: kv-utils was expected to lose something"))
                }
                (false, false) => failures.push(format!(
                    "{name}: Deno's line {deno_line} reads back differently"
                )),
            }
        }

        let mut key = vec![KeyPart::from("imported")];
        key.extend(back.key.parts().iter().cloned());
        imported.push((Key(key).encode()?, back.value));
    }
    // Two keys hold -0 and four values are among the losses named above.
    assert_eq!((lossy, exact + lossy + 1), (6, rows.len()), "{failures:#?}");

    for line in std::fs::read_to_string(&golden_lines)?.lines() {
        let entry = json::decode_line(line)?;
        let Some(KeyPart::String(name)) = entry.key.parts().first() else {
            panic!("a golden line is keyed by its name: {line}");
        };
        let key = kv_core::key!["golden", name.as_str()].encode()?;
        imported.push((key, entry.value));
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );

    write_rows(&db, imported)?;
    run_script(
        &deno,
        "kv_utils_lines.ts",
        &["check".as_ref(), db.as_os_str()],
    )?;
    Ok(())
}

/// The `Bytes` and `U64` encodings go through lines as Deno stores them.
#[test]
fn raw_encodings_keep_their_encoding() -> R {
    let enc = Encoder::new();
    for value in [ValueRef::Bytes(&[0, 255]), ValueRef::U64(u64::MAX)] {
        let mut out = String::new();
        enc.line(
            &kv_core::key!["k"],
            value,
            Versionstamp::ZERO,
            Some(1),
            &mut out,
        )?;
        let back = json::decode_line(&out)?;
        assert_eq!(back.value, value.to_value());
        assert_eq!(back.expire_at, Some(1));
    }
    Ok(())
}
