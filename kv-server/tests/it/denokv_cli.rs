//! The `kv` binary started the way denokv is started: `kv --sqlite-path F
//! serve` (or `DENO_KV_SQLITE_PATH`), token from `DENO_KV_ACCESS_TOKEN`,
//! ready when stderr says `Listening on http://ADDR`.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use kv::{Error, Kv, KvValue, key};

const TOKEN: &str = "1234abcd5678efgh";
const SIGTERM: i32 = 15;

/// A running `kv` and the address it announced.
struct Server {
    child: Child,
    url: String,
    /// Drains stderr; ends with the process and says whether kv logged
    /// `stopped`.
    stderr: Option<std::thread::JoinHandle<bool>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kv ARGS --addr 127.0.0.1:0` and waits for denokv's ready line.
fn start(args: &[&str], env: &[(&str, &Path)]) -> anyhow::Result<Server> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kv"));
    command
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .env_remove("DENO_KV_SQLITE_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let Some(line) = lines.next() else {
            let status = child.wait()?;
            anyhow::bail!("kv exited ({status}) before it listened");
        };
        // denokv's integration tests parse everything after the marker.
        if let Some((_, addr)) = line?.split_once("Listening on http://") {
            break addr.parse::<std::net::SocketAddr>()?;
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    let stderr = std::thread::spawn(move || {
        let mut stopped = false;
        for line in lines.map_while(Result::ok) {
            stopped |= line.ends_with("stopped");
        }
        stopped
    });
    Ok(Server {
        child,
        url: format!("http://{addr}"),
        stderr: Some(stderr),
    })
}

async fn connect(url: &str) -> anyhow::Result<Kv> {
    Ok(Kv::new(
        kv_remote::RemoteConfig::new(url.to_owned(), TOKEN)
            .connect()
            .await?,
    ))
}

/// SIGTERM and a clean shutdown (the final checkpoint included), then
/// death by SIGTERM, the exit status denokv gives (the Python client's
/// smoke test checks it).
fn stop(mut server: Server) -> anyhow::Result<()> {
    Command::new("kill")
        .arg(server.child.id().to_string())
        .status()?;
    for _ in 0..100 {
        if let Some(status) = server.child.try_wait()? {
            anyhow::ensure!(status.signal() == Some(SIGTERM), "kv exited with {status}");
            let logged = server.stderr.take().expect("joined once").join();
            anyhow::ensure!(
                logged.is_ok_and(|stopped| stopped),
                "kv died without shutting down"
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("kv did not stop within 5 s")
}

// Two workers: `stop` blocks one while the client's connection task, on
// the other, answers the server's goodbye.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_file_named_by_sqlite_path() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("denokv.sqlite3");
    let path = file.to_str().expect("utf-8 path");
    let server = start(&["--sqlite-path", path, "serve"], &[])?;
    let stamp = connect(&server.url)
        .await?
        .set(key!["via", "flag"], KvValue::U64(1))
        .await?;
    stop(server)?;
    // Closed cleanly: the last connection checkpointed and removed the WAL.
    let wal = dir.path().join("denokv.sqlite3-wal");
    assert!(!wal.exists(), "kv left {} behind", wal.display());

    // The same file through the environment, as denokv's container runs it.
    let server = start(&["serve"], &[("DENO_KV_SQLITE_PATH", &file)])?;
    let kv = connect(&server.url).await?;
    let got = kv.get(key!["via", "flag"]).await?.expect("written before");
    assert_eq!(got.versionstamp, stamp);
    kv.set(key!["via", "env"], KvValue::U64(2)).await?;
    stop(server)?;

    let local = kv::open(path).await?;
    assert!(local.get(key!["via", "env"]).await?.is_some());
    local.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_serves_reads_and_refuses_writes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("denokv.sqlite3");
    let path = file.to_str().expect("utf-8 path");
    let local = kv::open(path).await?;
    let stamp = local.set(key!["a"], KvValue::U64(1)).await?;
    local.close().await;

    let server = start(
        &[
            "--sqlite-path",
            path,
            "serve",
            "--read-only",
            "--num-workers",
            "4",
            "--atomic-write-batch-timeout-ms",
            "5",
        ],
        &[],
    )?;
    let kv = connect(&server.url).await?;
    let got = kv.get(key!["a"]).await?.expect("stored");
    assert_eq!(got.versionstamp, stamp);
    let err = kv
        .set(key!["b"], KvValue::U64(2))
        .await
        .expect_err("read only");
    assert!(matches!(err, Error::ReadOnly), "{err:?}");
    stop(server)?;
    Ok(())
}

#[test]
fn read_only_refuses_a_missing_file_and_creates_none() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("missing.sqlite3");
    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["--sqlite-path", file.to_str().expect("utf-8 path")])
        .args(["serve", "--read-only", "--addr", "127.0.0.1:0"])
        .env("DENO_KV_ACCESS_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(!file.exists(), "a read-only serve must not create the file");
    Ok(())
}

/// Whoever started the server may stop reading its output: with stdout and
/// stderr closed pipes it still serves, logs nothing it cannot write, and
/// dies by SIGTERM after a clean stop (it panicked, exit status 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_output_pipes_do_not_stop_the_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kv"));
    command
        .args(["serve", "--path", file.to_str().expect("utf-8 path")])
        .args(["--addr", "127.0.0.1:0", "--access-token", TOKEN])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().context("kv exited before it listened")??;
        if let Some((_, addr)) = line.split_once("Listening on http://") {
            break addr.to_owned();
        }
    };
    drop(lines);
    drop(child.stdout.take());
    // Requests and their debug logs, with nobody reading.
    let kv = connect(&format!("http://{addr}")).await?;
    for n in 0..20u64 {
        kv.set(key!["n", n], KvValue::U64(n)).await?;
    }
    assert_eq!(
        kv.get(key!["n", 19]).await?.map(|e| e.value),
        Some(KvValue::U64(19))
    );
    kv.close().await;
    Command::new("kill").arg(child.id().to_string()).status()?;
    let status = child.wait()?;
    assert_eq!(status.signal(), Some(SIGTERM), "kv exited with {status}");
    Ok(())
}

/// `--access-token "a, b"` is two tokens (the space after the comma was
/// kept, so `b` could never log in); `--path` with `--backend` is refused
/// rather than one of them silently ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lists_are_trimmed_and_path_conflicts_with_backend() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    let path = file.to_str().expect("utf-8 path");
    let second = "second-token-5678";
    let tokens = format!("first-token-1234, {second}");
    let server = start(&["serve", "--path", path, "--access-token", &tokens], &[])?;
    let kv = Kv::new(
        kv_remote::RemoteConfig::new(server.url.clone(), second)
            .connect()
            .await?,
    );
    kv.set(key!["in"], KvValue::U64(1)).await?;
    kv.close().await;
    stop(server)?;

    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["serve", "--path", path, "--backend", "memory:"])
        .output()?;
    assert!(!out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot be used with"), "{said}");
    Ok(())
}

/// A refused login is logged at the default level with the peer's
/// address, so an operator sees it and who tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_logged() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["serve", "--path", file.to_str().expect("utf-8 path")])
        .args(["--addr", "127.0.0.1:0", "--access-token", TOKEN])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut addr = None;
    for _ in 0..200 {
        let text = std::fs::read_to_string(&log)?;
        if let Some((_, rest)) = text.split_once("Listening on http://") {
            addr = rest.lines().next().map(str::to_owned);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let addr = addr.context("kv did not listen")?;
    let refused = kv_remote::RemoteConfig::new(format!("http://{addr}"), "not-the-token-0000")
        .connect()
        .await;
    assert!(matches!(refused, Err(Error::PermissionDenied(_))));
    Command::new("kill").arg(child.id().to_string()).status()?;
    child.wait()?;
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.lines()
            .any(|l| l.contains("login failed") && l.contains("peer=127.0.0.1")),
        "{text}"
    );
    Ok(())
}
