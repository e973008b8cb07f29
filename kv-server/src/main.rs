//! `kv`: serve a kv database over KV Connect, so that `Deno.openKv(url)`,
//! `@deno/kv` and Python `denokv` can use it.
//!
//! `kv serve` with no arguments serves `./kv.sqlite3` on `127.0.0.1:4512`
//! and prints the URL and an access token.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use kv::Clock;
use kv_remote::ServerConfig;
#[cfg(unix)]
use signal_hook::consts::{SIGINT, SIGTERM};

/// The server allocates and frees per request and per entry from many
/// threads; mimalloc's thread-local heaps cost a fraction of glibc's
/// malloc there (measured in `cargo xtask bench server`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "kv", version, about = "Deno KV, rebuilt in Rust")]
struct Cli {
    /// denokv's name for the SQLite file (`denokv --sqlite-path F serve`
    /// works unchanged); a subcommand's `--path` wins over it.
    #[arg(long, global = true, env = "DENO_KV_SQLITE_PATH")]
    sqlite_path: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The file served when no other is named.
const DEFAULT_PATH: &str = "kv.sqlite3";

/// The database a subcommand opens: `--backend`, else `--path`, else
/// `--sqlite-path`, else `./kv.sqlite3`.
fn database_url(backend: Option<&str>, path: Option<&Path>, sqlite_path: Option<&Path>) -> String {
    match backend {
        Some(url) => url.to_owned(),
        None => {
            let path = path
                .or(sqlite_path)
                .map_or_else(|| DEFAULT_PATH.to_owned(), |p| p.display().to_string());
            format!("sqlite:{path}")
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve a database over KV Connect.
    Serve(Serve),
    /// List the queue messages stored in a database (one JSON line each);
    /// a SQLite file is opened read-only.
    Queue(Queue),
    /// Listen to a database's queue and print each message as it is
    /// handled (acknowledging it).
    Listen(Listen),
    /// Print the shell completion script for kv, e.g. `kv completions bash
    /// > /etc/bash_completion.d/kv`.
    Completions(Completions),
}

#[derive(clap::Args)]
struct Completions {
    /// The shell to complete kv's commands and flags in.
    shell: clap_complete::Shell,
}

/// Prints the completion script for `shell`. A reader that stops early
/// (`| head`) is no error, as with every line kv prints.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    // Rendered first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kv", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing the completion script"))
        }
        _ => Ok(()),
    }
}

#[derive(clap::Args)]
struct Listen {
    /// SQLite file to listen on [default: kv.sqlite3].
    #[arg(long)]
    path: Option<PathBuf>,
    /// Any `kv::open` URL instead of `--path`, e.g. a `kv serve` URL (token
    /// from `DENO_KV_ACCESS_TOKEN`).
    #[arg(long, conflicts_with = "path")]
    backend: Option<String>,
    /// Stop after this many messages (handled one at a time; the rest stay
    /// queued).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after this many seconds without a message.
    #[arg(long)]
    idle_timeout: Option<u64>,
}

async fn listen(args: Listen, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let url = database_url(
        args.backend.as_deref(),
        args.path.as_deref(),
        sqlite_path.as_deref(),
    );
    let backend = kv::open_backend(&url).await?;
    let mut queue = kv::Queue::new(backend.clone());
    if args.count.is_some() {
        // One at a time, so that no message beyond the count is claimed.
        queue = queue.with_concurrency(1);
    }
    let handled = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(kv::SystemClock.now_ms()));
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let count = args.count;
    let unread = Arc::new(AtomicBool::new(false));
    let (h, l, u) = (handled.clone(), last.clone(), unread.clone());
    let handler = move |d: kv::Delivery| {
        let value = kv_v8::display_value(&kv::KvValue::V8(d.payload));
        let line = serde_json::json!({"attempt": d.attempt, "value": value});
        if writeln!(std::io::stdout(), "{line}").is_err() {
            // Nobody reads the output any more: this message fails (it is
            // retried, not acknowledged) and the listener stops.
            u.store(true, Ordering::SeqCst);
            let _ = done_tx.send(true);
            let failed: Result<(), kv::HandlerError> = Err("standard output is closed".into());
            return std::future::ready(failed);
        }
        l.store(kv::SystemClock.now_ms(), Ordering::SeqCst);
        let n = h.fetch_add(1, Ordering::SeqCst) + 1;
        if count.is_some_and(|c| n >= c) {
            let _ = done_tx.send(true);
        }
        std::future::ready(Ok(()))
    };
    let idle = args.idle_timeout;
    let stop = async move {
        loop {
            tokio::select! {
                _ = done_rx.wait_for(|d| *d) => return,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    if let Some(secs) = idle
                        && kv::SystemClock.now_ms() - last.load(Ordering::SeqCst) > secs * 1000
                    {
                        return;
                    }
                }
            }
        }
    };
    queue.listen(handler, stop).await?;
    backend.close().await;
    anyhow::ensure!(
        !unread.load(Ordering::SeqCst),
        "standard output was closed: stopped (the message being printed will be retried)"
    );
    if let Some(c) = count {
        anyhow::ensure!(
            handled.load(Ordering::SeqCst) >= c,
            "only {} of {c} messages arrived",
            handled.load(Ordering::SeqCst)
        );
    }
    Ok(())
}

#[derive(clap::Args)]
struct Queue {
    /// SQLite file to inspect [default: kv.sqlite3].
    #[arg(long)]
    path: Option<PathBuf>,
    /// Any `kv::open` URL instead of `--path`.
    #[arg(long, conflicts_with = "path")]
    backend: Option<String>,
}

async fn queue(args: Queue, sqlite_path: Option<PathBuf>) -> anyhow::Result<()> {
    let url = database_url(
        args.backend.as_deref(),
        args.path.as_deref(),
        sqlite_path.as_deref(),
    );
    // Looking must not change the file (nor create one): SQLite files open
    // read-only; other backends have no such mode.
    let backend = match kv::open_backend_read_only(&url).await {
        Err(kv::Error::Unsupported { .. } | kv::Error::InvalidArgument(_)) => {
            kv::open_backend(&url).await?
        }
        opened => opened?,
    };
    for (_, m) in kv_queue::layout::read_messages(backend.as_ref()).await? {
        let line = serde_json::json!({
            "due_ms": m.due_ms,
            "attempts": m.attempts,
            "backoff_schedule": m.backoff_schedule,
            "keys_if_undelivered": m.keys_if_undelivered.len(),
            "payload_bytes": m.payload.len(),
        });
        say(line);
    }
    backend.close().await;
    Ok(())
}

#[derive(clap::Args)]
struct Serve {
    /// SQLite file to serve, created if missing [default: kv.sqlite3].
    #[arg(long)]
    path: Option<PathBuf>,
    /// Any `kv::open` URL instead of `--path` (e.g. `memory:`, `sqlite:FILE`).
    #[arg(long, conflicts_with = "path")]
    backend: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4512")]
    addr: SocketAddr,
    /// Access token clients must present (repeat it, or separate tokens
    /// with commas, for several; at least 12 characters each). Without one,
    /// a random token is generated and printed.
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
fn die_of(signal: i32) {
    if let Err(e) = signal_hook::low_level::emulate_default_handler(signal) {
        tracing::warn!("cannot end by signal {signal}: {e}");
    }
}

#[cfg(not(unix))]
fn die_of(_signal: i32) {}

/// Serves until SIGINT or SIGTERM; returns the signal that stopped it.
async fn serve(args: Serve, sqlite_path: Option<PathBuf>) -> anyhow::Result<Option<i32>> {
    // "a, b" is two tokens: spaces around a comma are not part of a token.
    let mut tokens: Vec<String> = args
        .access_tokens
        .iter()
        .map(|t| t.trim().to_owned())
        .collect();
    tokens.retain(|t| !t.is_empty());
    let generated = tokens.is_empty();
    if generated {
        tokens.push(generated_token());
    }
    if let Some(short) = tokens.iter().find(|t| t.len() < 12) {
        anyhow::bail!(
            "access tokens must be at least 12 characters long (got {} characters)",
            short.len()
        );
    }
    let url = database_url(
        args.backend.as_deref(),
        args.path.as_deref(),
        sqlite_path.as_deref(),
    );
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
    let backend = if args.read_only {
        kv::open_backend_read_only(&url).await?
    } else {
        kv::open_backend(&url).await?
    };
    let mode = if args.read_only { " (read only)" } else { "" };
    say(format_args!(
        "kv {} serving {url}{mode}",
        env!("CARGO_PKG_VERSION")
    ));
    say(format_args!("listening on {scheme}://{addr}"));
    if generated {
        say(format_args!("access token: {}", tokens[0]));
    }
    say(format_args!(
        "connect from Deno: DENO_KV_ACCESS_TOKEN=<token> deno run -A --unstable-kv app.ts  # Deno.openKv(\"{scheme}://{addr}\")"
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

/// A line on standard output, dropped if nobody reads it any more: whoever
/// started the server may have closed the pipe, which must not panic
/// (`println!` does) and so turn a clean stop into exit status 101.
fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Standard error for the logs, dropping what it cannot write: tracing
/// reports a failed write with `eprintln!`, which panics when stderr is a
/// closed pipe, so a log reader that went away would stop the server.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(|| LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let stopped_by = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args, cli.sqlite_path).await,
            Command::Queue(args) => queue(args, cli.sqlite_path).await.map(|()| None),
            Command::Listen(args) => listen(args, cli.sqlite_path).await.map(|()| None),
            Command::Completions(args) => completions(args.shell).map(|()| None),
        }
    })?;
    // Dropping the runtime drops every task, and with them the last
    // handles on the database, which closes it (SQLite checkpoints and
    // removes its WAL) before the process ends.
    drop(runtime);
    if let Some(signal) = stopped_by {
        tracing::info!("stopped");
        // Scripts that stop the server read this to know it shut down
        // cleanly (the exit status says only which signal stopped it).
        say("stopped");
        die_of(signal);
    }
    Ok(())
}
