//! The data commands (`get`, `list`, `count`, `set`, `delete`, `sum`,
//! `export`, `import`…) on a SQLite file, a redb file and a `kv serve`
//! process, with values written and read back by the real Deno runtime.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use anyhow::Context;

pub(crate) const TOKEN: &str = "data-cli-token-1234";

/// The pinned Deno that `cargo xtask tools` installs (or `KV_DENO`).
pub(crate) fn deno() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("KV_DENO") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let modules = root.join(".tools/npm/node_modules");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(modules.join("@deno"))
        .map(|dir| dir.flatten().map(|e| e.path().join("deno")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates.push(modules.join(".bin/deno"));
    candidates.into_iter().find(|p| p.is_file()).context(
        "these tests need the pinned Deno under .tools/npm (`cargo xtask tools`) or KV_DENO",
    )
}

pub(crate) fn run_deno(mode: &str, db: &Path) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/deno/cli_values.ts");
    let out = Command::new(deno()?)
        .args(["run", "-A", "--unstable-kv"])
        .arg(script)
        .arg(mode)
        .arg(db)
        .env("DENO_NO_UPDATE_CHECK", "1")
        .env("NO_COLOR", "1")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "deno {mode} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `kv ARGS --db DB`, with the token for a server.
pub(crate) fn kv(db: &str, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(args)
        .args(["--db", db])
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env_remove("KV_DB")
        .stdin(Stdio::null())
        .output()?)
}

/// `kv ARGS --db DB`, which must succeed; its standard output.
fn ok(db: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = kv(db, args)?;
    anyhow::ensure!(
        out.status.success(),
        "kv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `kv ARGS --db DB`, which must fail; its standard error.
fn fails(db: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = kv(db, args)?;
    anyhow::ensure!(!out.status.success(), "kv {args:?} succeeded");
    Ok(String::from_utf8(out.stderr)?)
}

/// A `kv serve` over a SQLite file, stopped on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(file: &Path) -> anyhow::Result<Server> {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["serve", "--addr", "127.0.0.1:0", "--access-token", TOKEN])
        .arg("--path")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("piped")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .context("kv serve ended before it listened")??;
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Server { child, url })
}

/// Every data command against `db`, a fresh database.
fn exercise(db: &str) -> anyhow::Result<()> {
    assert_eq!(
        ok(db, &["set", "users/alice", r#"{"age": 30}"#])?
            .trim()
            .len(),
        20
    );
    ok(
        db,
        &["set", r#"["users", "bob", 2n]"#, "hello", "--as", "string"],
    )?;
    ok(db, &["set", r#"["n"]"#, "5", "--as", "u64"])?;

    let got = ok(db, &["get", "users/alice", r#"["users","nobody"]"#])?;
    let lines: Vec<&str> = got.lines().collect();
    assert!(lines[0].starts_with(r#"["users", "alice"]"#), "{got}");
    assert!(lines[0].contains(r#""age": 30"#), "{got}");
    assert!(lines[1].ends_with("(not found)"), "{got}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(db, &["get", "users/alice", "-o", "json"])?)?;
    assert_eq!(
        json[0]["key"][1],
        serde_json::json!({"type": "string", "value": "alice"})
    );
    assert_eq!(json[0]["value"]["type"], "object");

    let listed = ok(db, &["list", "users", "-o", "ndjson"])?;
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let keys_only = ok(db, &["list", "users", "--keys-only", "-o", "ndjson"])?;
    for line in keys_only.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        assert!(entry.get("value").is_none(), "{line}");
        assert!(entry["versionstamp"].is_string(), "{line}");
    }
    assert_eq!(
        ok(db, &["list", "users", "--reverse", "--limit", "1"])?
            .lines()
            .count(),
        1
    );
    assert!(ok(db, &["list", "users", "--reverse", "--limit", "1"])?.contains("bob"));
    assert_eq!(ok(db, &["count", "users"])?.trim(), "2");
    assert_eq!(ok(db, &["count"])?.trim(), "3");

    // Conditional sets.
    let err = fails(db, &["set", "users/alice", "1", "--if-absent"])?;
    assert!(err.contains("exists"), "{err}");
    let err = fails(
        db,
        &[
            "set",
            "users/alice",
            "1",
            "--if-versionstamp",
            "00000000000000000001",
        ],
    )?;
    assert!(err.contains("no longer"), "{err}");
    let stamp = json[0]["versionstamp"]
        .as_str()
        .context("a versionstamp")?
        .to_owned();
    ok(
        db,
        &["set", "users/alice", "31", "--if-versionstamp", &stamp],
    )?;

    // KvU64 arithmetic.
    assert_eq!(ok(db, &["sum", r#"["n"]"#, "10"])?.trim(), "15");
    assert_eq!(ok(db, &["max", r#"["n"]"#, "100"])?.trim(), "100");
    assert_eq!(ok(db, &["min", r#"["n"]"#, "7"])?.trim(), "7");

    // Delete by prefix: a dry run first, then for real, in batches.
    let many: Vec<String> = (0..25).map(|i| format!(r#"["tmp", {i}]"#)).collect();
    for key in &many {
        ok(db, &["set", key, "0"])?;
    }
    let dry = ok(db, &["delete", "--prefix", "tmp", "--dry-run"])?;
    assert!(dry.contains("would delete 25"), "{dry}");
    assert_eq!(ok(db, &["count", "tmp"])?.trim(), "25");
    assert!(ok(db, &["delete", "--prefix", "tmp", "--yes"])?.contains("deleted 25"));
    assert_eq!(ok(db, &["count", "tmp"])?.trim(), "0");
    assert!(ok(db, &["delete", r#"["n"]"#])?.contains("deleted 1"));

    // Bad input names the argument and writes nothing.
    let before = ok(db, &["count"])?;
    let err = fails(db, &["set", r#"["users", "x""#, "1"])?;
    assert!(err.contains("KEY") || err.contains("key"), "{err}");
    let err = fails(db, &["set", "users/x", "{not json"])?;
    assert!(err.contains("VALUE") && err.contains("JSON"), "{err}");
    let err = fails(db, &["set", "users/x", "1", "--expire-in", "3 weeks"])?;
    assert!(err.contains("--expire-in"), "{err}");
    assert_eq!(ok(db, &["count"])?, before, "a failed command wrote");
    Ok(())
}

#[test]
fn data_commands_on_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("kv.sqlite3");
    let db = db.to_str().context("utf-8")?;
    // Reading a database that does not exist creates none.
    let err = fails(db, &["get", "a/b"])?;
    assert!(err.contains("does not exist"), "{err}");
    assert!(!Path::new(db).exists());
    exercise(db)
}

#[test]
fn data_commands_on_redb() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = format!("redb:{}", dir.path().join("kv.redb").display());
    ok(&db, &["set", "seed", "1"])?;
    ok(&db, &["delete", "seed"])?;
    exercise(&db)
}

#[test]
fn data_commands_through_kv_serve() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = serve(&dir.path().join("served.sqlite3"))?;
    exercise(&server.url)?;
    // A server that is not there is reported as unreachable, not as a
    // missing token.
    let err = fails("http://127.0.0.1:9", &["get", "a"])?;
    assert!(!err.contains("token"), "{err}");
    Ok(())
}

/// Deno writes every value and key type; `kv export` then `kv import` into
/// a new file gives the same bytes, and Deno reads them back as the same
/// values.
#[test]
fn export_and_import_round_trip_every_type() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("source.sqlite3");
    run_deno("write", &source)?;
    let source = source.to_str().context("utf-8")?;
    let dump = dir.path().join("dump.ndjson");
    let out = kv(
        source,
        &["export", "--file", dump.to_str().context("utf-8")?],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&dump)?;
    assert!(text.lines().count() >= 30, "{text}");

    let target = dir.path().join("target.sqlite3");
    let target_db = target.to_str().context("utf-8")?;
    let imported = ok(target_db, &["import", dump.to_str().context("utf-8")?])?;
    assert!(
        imported.contains(&format!("imported {}", text.lines().count())),
        "{imported}"
    );
    run_deno("check", &target)?;

    // Byte for byte: the same keys with the same stored values.
    let again = ok(target_db, &["export"])?;
    let strip = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                v.as_object_mut().expect("an object").remove("versionstamp");
                v
            })
            .collect()
    };
    assert_eq!(strip(&again), strip(&text));

    // Importing again keeps what exists, unless told to overwrite.
    let kept = ok(target_db, &["import", dump.to_str().context("utf-8")?])?;
    assert!(
        kept.contains("imported 0") && kept.contains("kept"),
        "{kept}"
    );
    let replaced = ok(
        target_db,
        &["import", "--overwrite", dump.to_str().context("utf-8")?],
    )?;
    assert!(
        replaced.contains(&format!("imported {}", text.lines().count())),
        "{replaced}"
    );
    Ok(())
}

/// A file with a bad line is refused whole, naming the line.
#[test]
fn a_bad_import_line_is_named_and_nothing_is_written() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("kv.sqlite3");
    let db = db.to_str().context("utf-8")?;
    ok(db, &["set", "seed", "1"])?;
    let good = r#"{"key":[{"type":"string","value":"a"}],"value":{"type":"number","value":1},"versionstamp":"00000000000000010000"}"#;
    for (bad, expected) in [
        (
            r#"{"key":[{"type":"string","value":"b"}],"value":{"type":"num"#,
            "line 2",
        ),
        (
            r#"{"value":{"type":"number","value":1}}"#,
            "line 2: key: missing",
        ),
        (r#"[1, 2]"#, "line 2"),
    ] {
        let file = dir.path().join("in.ndjson");
        std::fs::write(&file, format!("{good}\n{bad}\n{good}\n"))?;
        let err = fails(db, &["import", file.to_str().context("utf-8")?])?;
        assert!(err.contains(expected), "{bad}: {err}");
        assert_eq!(ok(db, &["count"])?.trim(), "1", "nothing written for {bad}");
    }
    let not_ndjson = dir.path().join("kv.sqlite3");
    let err = fails(db, &["import", not_ndjson.to_str().context("utf-8")?])?;
    assert!(err.contains("line 1"), "{err}");
    Ok(())
}

/// Values typed on the command line are the JavaScript values Deno reads.
#[test]
fn values_set_on_the_command_line_read_back_in_deno() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    let db = file.to_str().context("utf-8")?;
    ok(
        db,
        &["set", "typed/json", r#"{"a": [1, 2.5, "x", null, true]}"#],
    )?;
    ok(db, &["set", "typed/json-number", "7"])?;
    ok(db, &["set", "typed/string", "plain text", "--as", "string"])?;
    ok(db, &["set", "typed/u64", "42", "--as", "u64"])?;
    ok(db, &["set", "typed/bytes", "aGk", "--as", "bytes"])?;
    ok(
        db,
        &[
            "set",
            "typed/typed-map",
            r#"{"type":"Map","value":[[{"type":"string","value":"a"},{"type":"bigint","value":"1"}]]}"#,
            "--as",
            "typed",
        ],
    )?;
    ok(
        db,
        &[
            "set",
            "typed/typed-date",
            r#"{"type":"Date","value":"1970-01-01T00:00:00.000Z"}"#,
            "--as",
            "typed",
        ],
    )?;
    run_deno("typed", &file)
}

/// `kv watch` prints a line for the current state, then one per change,
/// until it is interrupted.
#[test]
fn watch_prints_a_line_per_change() -> anyhow::Result<()> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    let db = file.to_str().context("utf-8")?;
    ok(db, &["set", "w/a", "1"])?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["watch", "w/a", "w/b", "--db", db])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("piped")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut next = || -> anyhow::Result<serde_json::Value> {
        let line = lines.next().context("kv watch ended")??;
        Ok(serde_json::from_str(&line)?)
    };
    let first = next()?;
    assert_eq!(first[0]["value"]["value"], 1.0, "{first}");
    assert!(first[1]["versionstamp"].is_null(), "{first}");
    ok(db, &["set", "w/b", "2"])?;
    let second = next()?;
    assert_eq!(second[1]["value"]["value"], 2.0, "{second}");
    ok(db, &["delete", "w/a"])?;
    let third = next()?;
    assert!(third[0]["versionstamp"].is_null(), "{third}");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    assert!(
        status.success(),
        "kv watch exits cleanly on Ctrl-C: {status}"
    );
    Ok(())
}
