//! `kv serve`: a database over KV Connect, until SIGINT or SIGTERM.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use kv_remote::ServerConfig;
#[cfg(unix)]
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::db::DbArgs;
use crate::say;

#[derive(clap::Args)]
pub(crate) struct Serve {
    /// The database to serve, created if missing.
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on: `HOST:PORT`, `localhost:PORT` or `:PORT`
    /// (loopback).
    #[arg(long, default_value = "127.0.0.1:4512", value_parser = parse_addr)]
    addr: SocketAddr,
    /// Access token clients must present (repeat it, or separate tokens
    /// with commas, for several; at least 12 characters each). Without one,
    /// a random token is generated, kept in a file beside the database
    /// (`<file>.token`, readable only by its owner) for the next start,
    /// and printed.
    #[arg(
        long = "access-token",
        env = "DENO_KV_ACCESS_TOKEN",
        value_delimiter = ','
    )]
    access_tokens: Vec<String>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Database id announced to clients (default: the nil UUID, like denokv).
    #[arg(long)]
    database_id: Option<uuid::Uuid>,
    /// Serve an existing SQLite file without writing to it: writes get 400
    /// "this database is read only", expired keys are hidden but kept.
    #[arg(long)]
    read_only: bool,
    /// Accepted for denokv compatibility; kv sizes its own SQLite
    /// connections (one writer, two reader threads, two inline readers).
    #[arg(long, env = "DENO_KV_NUM_WORKERS")]
    num_workers: Option<usize>,
    /// Accepted for denokv compatibility; kv's group commit takes what is
    /// queued and never waits for a batching window.
    #[arg(long, env = "DENO_KV_ATOMIC_WRITE_BATCH_TIMEOUT_MS")]
    atomic_write_batch_timeout_ms: Option<u64>,
}

fn generated_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// What `shutdown_signal` stores for Ctrl-C where there are no signals.
#[cfg(not(unix))]
const SIGINT: i32 = 2;

/// Waits for Ctrl-C or SIGTERM and records which one came in `received`.
async fn shutdown_signal(received: Arc<OnceLock<i32>>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        SIGINT
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                SIGTERM
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<i32>();
    let signal = tokio::select! {
        signal = ctrl_c => signal,
        signal = term => signal,
    };
    let _ = received.set(signal);
    tracing::info!("shutting down");
}

/// Ends the process the way `signal` would have without a handler, now
/// that the shutdown is done: the exit status says "killed by SIGTERM" (or
/// SIGINT), as denokv's does, for the supervisors and scripts that check
/// it. Does not return for SIGINT and SIGTERM (should raising the signal
/// fail, signal-hook aborts); returns only for a signal it does not know.
#[cfg(unix)]
pub(crate) fn die_of(signal: i32) {
    if let Err(e) = signal_hook::low_level::emulate_default_handler(signal) {
        tracing::warn!("cannot end by signal {signal}: {e}");
    }
}

#[cfg(not(unix))]
pub(crate) fn die_of(_signal: i32) {}

/// Serves until SIGINT or SIGTERM; returns the signal that stopped it.
pub(crate) async fn serve(
    args: Serve,
    sqlite_path: Option<PathBuf>,
) -> anyhow::Result<Option<i32>> {
    // "a, b" is two tokens: spaces around a comma are not part of a token.
    let mut tokens: Vec<String> = args
        .access_tokens
        .iter()
        .map(|t| t.trim().to_owned())
        .collect();
    tokens.retain(|t| !t.is_empty());
    let url = args.db.url(sqlite_path.as_deref());
    let generated = tokens.is_empty();
    let mut kept_in = None;
    if generated {
        let (token, file) = kept_token(&url)?;
        tokens.push(token);
        kept_in = file;
    }
    if let Some(short) = tokens.iter().find(|t| t.len() < 12) {
        anyhow::bail!(
            "access tokens must be at least 12 characters long (got {} characters)",
            short.len()
        );
    }
    if args.num_workers.is_some() || args.atomic_write_batch_timeout_ms.is_some() {
        tracing::info!(
            "--num-workers and --atomic-write-batch-timeout-ms are accepted for denokv \
             compatibility and have no effect: kv sizes its own connections and group commit"
        );
    }
    let mut config = ServerConfig::new(tokens.clone());
    if let Some(id) = args.database_id {
        config = config.with_database_id(id);
    }
    // TLS files and the address come before the database is opened, so a
    // mistake in them creates no database file.
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            config = config.with_tls_pem(cert, key)?;
            "https"
        }
        _ => "http",
    };
    let (listener, addr) = kv_remote::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    // `open_backend` gives storage the queue layer: enqueues from clients
    // (the Node and Python clients send them) are stored with their commit.
    let backend = kv::OpenOptions::new()
        .with_read_only(args.read_only)
        .open_backend(&url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let mode = if args.read_only { " (read only)" } else { "" };
    say(format_args!(
        "kv {} serving {url}{mode}",
        env!("CARGO_PKG_VERSION")
    ));
    say(format_args!("listening on {scheme}://{addr}"));
    let shown = if generated {
        match &kept_in {
            Some(file) => say(format_args!(
                "access token: {} (kept in {})",
                tokens[0],
                file.display()
            )),
            None => say(format_args!(
                "access token: {} (new at every start: the database has no file)",
                tokens[0]
            )),
        }
        tokens[0].as_str()
    } else {
        "<your token>"
    };
    say(format_args!(
        "connect from Deno: DENO_KV_ACCESS_TOKEN={shown} deno run -A --unstable-kv app.ts  # Deno.openKv(\"{scheme}://{addr}\")"
    ));
    tracing::info!(backend = %url, read_only = args.read_only, "serving");
    // denokv's wording, last on its line: scripts and tests written for
    // denokv wait for it on stderr and parse the address after it.
    tracing::info!("Listening on {scheme}://{addr}");
    let received = Arc::new(OnceLock::new());
    kv_remote::serve(
        listener,
        backend.clone(),
        config,
        shutdown_signal(received.clone()),
    )
    .await?;
    backend.close().await;
    Ok(received.get().copied())
}

/// `--addr`: `HOST:PORT`, or `:PORT` for loopback; a host name is looked up
/// (`localhost:4512`).
fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    let with_host = match value.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => value.to_owned(),
    };
    if let Ok(addr) = with_host.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((_, port)) = with_host.rsplit_once(':') else {
        return Err(format!("{value:?} has no port: write HOST:PORT or :PORT"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{port:?} is not a port number (0 to 65535)"));
    }
    let mut found = with_host
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {value:?}: {e}"))?;
    // `localhost` may resolve to ::1 first; kv's default is IPv4 loopback.
    let all: Vec<SocketAddr> = found.by_ref().collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| format!("{value:?} resolves to no address"))
}

/// The file of the database that `url` names, if it has one.
fn database_file(url: &str) -> Option<PathBuf> {
    if url == ":memory:"
        || url == "sqlite::memory:"
        || url.contains("://") && !url.starts_with("sqlite://") && !url.starts_with("redb://")
    {
        return None;
    }
    let path = ["sqlite://", "sqlite:", "redb://", "redb:"]
        .iter()
        .find_map(|p| url.strip_prefix(p))
        .unwrap_or(url);
    (!path.is_empty() && path != "memory:").then(|| PathBuf::from(path))
}

/// The access token for a server started without one: the one kept beside
/// the database by an earlier start, or a new one kept there now (created
/// readable by its owner only). A database without a file gets a new token
/// at every start. Returns the token and the file it is kept in.
fn kept_token(url: &str) -> anyhow::Result<(String, Option<PathBuf>)> {
    let Some(database) = database_file(url) else {
        return Ok((generated_token(), None));
    };
    let mut name = database.file_name().unwrap_or_default().to_owned();
    name.push(".token");
    let file = database.with_file_name(name);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            check_private(&file)?;
            let token = text.trim().to_owned();
            anyhow::ensure!(
                token.len() >= 12,
                "the token kept in {} is shorter than 12 characters: delete the file for a new one",
                file.display()
            );
            Ok((token, Some(file)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generated_token();
            write_private(&file, &token)
                .with_context(|| format!("cannot keep the access token in {}", file.display()))?;
            Ok((token, Some(file)))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", file.display()))),
    }
}

#[cfg(unix)]
fn write_private(file: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)?;
    writeln!(f, "{token}")?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(file: &Path, token: &str) -> std::io::Result<()> {
    std::fs::write(file, format!("{token}\n"))
}

/// A token file others may read is refused, as ssh refuses a private key
/// others may read: the token would not be secret.
#[cfg(unix)]
fn check_private(file: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file)?.permissions().mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} holds the access token but others may read it (mode {:o}): run `chmod 600 {}`",
        file.display(),
        mode & 0o777,
        file.display()
    );
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_localhost_and_a_bare_port() {
        assert_eq!(
            parse_addr(":4600"),
            Ok("127.0.0.1:4600".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("localhost:4601"),
            Ok("127.0.0.1:4601".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("0.0.0.0:1"),
            Ok("0.0.0.0:1".parse().expect("addr"))
        );
        assert!(parse_addr("localhost").is_err_and(|e| e.contains("no port")));
        assert!(parse_addr(":99999").is_err_and(|e| e.contains("port number")));
    }

    #[test]
    fn only_file_databases_keep_a_token() {
        assert_eq!(
            database_file("sqlite:kv.sqlite3"),
            Some("kv.sqlite3".into())
        );
        assert_eq!(database_file("redb:/a/b.redb"), Some("/a/b.redb".into()));
        assert_eq!(database_file("./x.sqlite3"), Some("./x.sqlite3".into()));
        for none in ["memory:", ":memory:", "http://h:1", "etcd://h:1/p"] {
            assert_eq!(database_file(none), None, "{none}");
        }
    }
}
