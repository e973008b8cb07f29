//! The systemd files in `dist/systemd/` (shown in docs/operations.md) are
//! what operators copy, so they must load, stay hardened and start `kv`
//! with flags `kv` accepts. `systemd-analyze verify` needs the `ExecStart`
//! binary to exist, so it checks copies that point at the `kv` this test
//! was built with. Without systemd's tools the checks that need them fail
//! under `CI=true` (`.ci/run` installs Debian's `systemd`) and are skipped,
//! with the reason printed, elsewhere.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::Context;

/// Where the unit expects the binary (`cargo install --root /usr/local`).
const INSTALLED: &str = "/usr/local/bin/kv";

/// The unit and its HTTPS drop-in.
const UNIT: &str = "kv.service";
const TLS_DROP_IN: &str = "tls.conf";

/// The highest `systemd-analyze security` exposure the unit may have, in
/// tenths (the tool's `--threshold` unit): 2.0 of 10 is the "OK" band; the
/// unit scores 1.1, one with no hardening at all 9.6.
const MAX_EXPOSURE_TENTHS: u32 = 20;

fn dist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/systemd")
        .join(file)
}

/// `name` on the `PATH`, or `None` (with the reason printed) when it is
/// missing outside CI; missing under `CI=true` is an error.
fn tool(name: &str) -> anyhow::Result<Option<PathBuf>> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => Ok(Some(path)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            anyhow::bail!("{name} is missing: .ci/run installs Debian's `systemd` package")
        }
        None => {
            eprintln!("skipped: {name} is not installed (Debian's `systemd` package has it)");
            Ok(None)
        }
    }
}

/// A shipped file with its `ExecStart=` lines pointing at the `kv` under
/// test.
fn for_this_build(file: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(dist(file))?;
    let exec = format!("ExecStart={INSTALLED} ");
    anyhow::ensure!(
        text.lines().filter(|l| l.starts_with(&exec)).count() == 1,
        "{file} should start {INSTALLED} in one ExecStart= line"
    );
    Ok(text.replace(&exec, &format!("ExecStart={} ", env!("CARGO_BIN_EXE_kv"))))
}

/// The command line of `file`'s `ExecStart=` that runs kv, as words.
fn command_line(file: &str) -> anyhow::Result<Vec<String>> {
    let text = for_this_build(file)?;
    let exec = text
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .find(|l| !l.is_empty())
        .with_context(|| format!("{file} has no ExecStart= command"))?;
    Ok(exec.split_whitespace().map(str::to_owned).collect())
}

/// `output` succeeded and printed nothing on stderr: systemd's tools
/// report unknown keys and unparsable values there and still exit 0.
fn clean(what: &str, output: &Output) -> anyhow::Result<()> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success() && stderr.trim().is_empty(),
        "{what}: {}\n{stderr}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

#[test]
fn the_unit_verifies_and_is_hardened() -> anyhow::Result<()> {
    let Some(analyze) = tool("systemd-analyze")? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let unit = dir.path().join(UNIT);
    std::fs::write(&unit, for_this_build(UNIT)?)?;

    let verify = Command::new(&analyze).arg("verify").arg(&unit).output()?;
    clean("systemd-analyze verify kv.service", &verify)?;

    let threshold = format!("--threshold={MAX_EXPOSURE_TENTHS}");
    let security = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager", &threshold])
        .arg(&unit)
        .output()?;
    let report = String::from_utf8_lossy(&security.stdout);
    anyhow::ensure!(
        security.status.success(),
        "kv.service's exposure is above {}.{} of 10:\n{report}",
        MAX_EXPOSURE_TENTHS / 10,
        MAX_EXPOSURE_TENTHS % 10
    );

    // systemd-analyze loads drop-ins from `kv.service.d/` beside the unit.
    let drop_ins = dir.path().join("kv.service.d");
    std::fs::create_dir(&drop_ins)?;
    std::fs::write(drop_ins.join(TLS_DROP_IN), for_this_build(TLS_DROP_IN)?)?;
    let verify = Command::new(&analyze).arg("verify").arg(&unit).output()?;
    clean("systemd-analyze verify kv.service + tls.conf", &verify)?;
    Ok(())
}

#[test]
fn the_sysusers_file_creates_the_user() -> anyhow::Result<()> {
    let Some(sysusers) = tool("systemd-sysusers")? else {
        return Ok(());
    };
    let root = tempfile::tempdir()?;
    std::fs::create_dir(root.path().join("etc"))?;
    let output = Command::new(sysusers)
        .arg("--dry-run")
        .arg(format!("--root={}", root.path().display()))
        .arg(std::fs::canonicalize(dist("kv.sysusers"))?)
        .output()?;
    let told = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success() && told.contains("Creating user 'kv'"),
        "systemd-sysusers --dry-run kv.sysusers: {}\n{told}",
        output.status
    );
    Ok(())
}

/// The unit's command line, run as systemd would run it (`%S` is the
/// state directory root, `/var/lib`), on a free port: `kv` accepts every
/// flag and creates the database where the docs say it is.
#[test]
fn the_units_command_line_serves_the_state_directory() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    // systemd creates StateDirectory=kv before it starts the service.
    std::fs::create_dir(state.path().join("kv"))?;
    let state_root = state.path().to_str().context("utf-8 temp dir")?;
    let mut words: Vec<String> = command_line(UNIT)?
        .iter()
        .map(|w| w.replace("%S", state_root))
        .collect();
    let addr = words
        .iter()
        .position(|w| w == "--addr")
        .context("ExecStart= names no --addr")?;
    words[addr + 1] = "127.0.0.1:0".to_owned();

    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .env("DENO_KV_ACCESS_TOKEN", "a-token-of-sixteen")
        .env_remove("DENO_KV_SQLITE_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("listening on http://"));
    let _ = child.kill();
    let status = child.wait()?;
    anyhow::ensure!(listening, "kv exited ({status}) before it listened");
    let database = state.path().join("kv/kv.sqlite3");
    anyhow::ensure!(database.is_file(), "no database at {}", database.display());
    Ok(())
}

/// The HTTPS drop-in needs certificates to run; its flags at least are
/// `kv serve`'s.
#[test]
fn every_flag_in_the_units_is_a_serve_flag() -> anyhow::Result<()> {
    let help = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["serve", "--help"])
        .output()?;
    let help = String::from_utf8(help.stdout)?;
    for file in [UNIT, TLS_DROP_IN] {
        let words = command_line(file)?;
        anyhow::ensure!(words.get(1).map(String::as_str) == Some("serve"));
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            anyhow::ensure!(
                help.contains(&format!("{flag} ")),
                "{file}: `kv serve` has no {flag}"
            );
        }
    }
    Ok(())
}

/// docs/operations.md shows the files as they are shipped.
#[test]
fn the_docs_show_the_shipped_files() -> anyhow::Result<()> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    let docs = std::fs::read_to_string(docs)?;
    for file in [UNIT, TLS_DROP_IN, "kv.sysusers"] {
        let text = std::fs::read_to_string(dist(file))?;
        anyhow::ensure!(
            docs.contains(&text),
            "docs/operations.md does not show dist/systemd/{file} as it is"
        );
    }
    Ok(())
}
