//! `kv serve`'s start-up choices: the token it generates is kept beside the
//! database for the next start, addresses take `localhost:PORT` and
//! `:PORT`, and a database named by mistake creates nothing.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `kv serve ARGS` without a token and returns the process and its
/// stdout lines up to the connect hint.
fn start_without_token(args: &[&str]) -> anyhow::Result<(Child, Vec<String>)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
        .arg("serve")
        .args(args)
        .env_remove("DENO_KV_ACCESS_TOKEN")
        .env_remove("DENO_KV_SQLITE_PATH")
        .env_remove("KV_DB")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut said = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let last = line.starts_with("connect from Deno");
        said.push(line);
        if last {
            break;
        }
    }
    Ok((child, said))
}

fn stop(mut child: Child) -> anyhow::Result<()> {
    Command::new("kill").arg(child.id().to_string()).status()?;
    child.wait()?;
    Ok(())
}

fn token_in(said: &[String]) -> anyhow::Result<String> {
    let line = said
        .iter()
        .find_map(|l| l.strip_prefix("access token: "))
        .ok_or_else(|| anyhow::anyhow!("no token line in {said:?}"))?;
    Ok(line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[test]
fn a_generated_token_is_kept_for_the_next_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("kv.sqlite3");
    let path = db.to_str().expect("utf-8 path");
    let (child, said) = start_without_token(&["--path", path, "--addr", ":0"])?;
    stop(child)?;
    let token = token_in(&said)?;
    let file = dir.path().join("kv.sqlite3.token");
    assert!(
        said.iter().any(|l| l.contains(&file.display().to_string())),
        "{said:?}"
    );
    assert!(
        said.iter().any(|l| l.starts_with("connect from Deno")
            && l.contains(&format!("DENO_KV_ACCESS_TOKEN={token} "))),
        "the hint shows the real token: {said:?}"
    );
    assert_eq!(std::fs::read_to_string(&file)?.trim(), token);
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "readable only by its owner");

    let (child, said) = start_without_token(&["--path", path, "--addr", "localhost:0"])?;
    stop(child)?;
    assert_eq!(token_in(&said)?, token, "the same token after a restart");
    assert!(
        said.iter()
            .any(|l| l.contains("listening on http://127.0.0.1:")),
        "{said:?}"
    );

    // A token file others may read is refused, not used.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["serve", "--path", path, "--addr", ":0"])
        .env_remove("DENO_KV_ACCESS_TOKEN")
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    Ok(())
}

/// `--backend memory` (the colon forgotten) is refused, naming the fix,
/// and creates no file called `memory`; so does an unknown scheme.
#[test]
fn a_mistaken_database_name_creates_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (args, expected) in [
        (&["--backend", "memory"][..], "did you mean `memory:`"),
        (&["--db", "memroy"][..], "neither a URL nor a path"),
        (&["--db", "ftp://x/y"][..], "unknown scheme"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kv"))
            .arg("serve")
            .args(args)
            .current_dir(dir.path())
            .env_remove("DENO_KV_ACCESS_TOKEN")
            .output()?;
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("Stack backtrace"), "{err}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())?.collect();
    assert!(left.is_empty(), "created {left:?}");
    Ok(())
}

/// Commands that only look (`listen`, `queue`) do not create the database
/// they are pointed at, and say that it is missing, once.
#[test]
fn looking_at_a_missing_database_creates_none() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.sqlite3");
    let path = missing.to_str().expect("utf-8 path");
    for command in [
        &["listen", "--path", path, "--count", "1"][..],
        &["queue", "--db", path],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kv"))
            .args(command)
            .output()?;
        assert!(!out.status.success(), "{command:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("missing.sqlite3"), "{command:?}: {err}");
        assert_eq!(
            err.matches("does not exist").count(),
            1,
            "each cause once: {err}"
        );
        assert!(
            !Path::new(&missing).exists(),
            "{command:?} created the file"
        );
    }
    Ok(())
}
