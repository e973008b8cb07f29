//! `kv`: serve a kv database over KV Connect, so that `Deno.openKv(url)`,
//! `@deno/kv` and Python `denokv` can use it.
//!
//! `kv serve` with no arguments serves `./kv.sqlite3` on `127.0.0.1:4512`
//! and prints the URL and an access token.

mod backup;
mod data;
mod db;
mod queue;
mod serve;
mod transfer;
mod values;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
    /// Serve a database over KV Connect.
    Serve(serve::Serve),
    /// Print the entries of one or more keys.
    Get(data::Get),
    /// Print the entries under a prefix or in a key range.
    List(data::List),
    /// Count the keys under a prefix or in a key range.
    Count(data::Count),
    /// Write one key (optionally only if absent, or unchanged).
    Set(data::Set),
    /// Delete keys, or every key under a prefix.
    Delete(data::Delete),
    /// Add to a KvU64 (wrapping modulo 2^64), creating it as N.
    Sum(data::U64Op),
    /// Keep the smaller of a KvU64 and N.
    Min(data::U64Op),
    /// Keep the larger of a KvU64 and N.
    Max(data::U64Op),
    /// Print a JSON line each time one of the keys changes, until
    /// interrupted.
    Watch(data::Watch),
    /// Write the entries under a prefix as kv-utils NDJSON.
    Export(transfer::Export),
    /// Write the entries of a kv-utils NDJSON file (kv export's or
    /// kv-utils').
    Import(transfer::Import),
    /// Copy a SQLite or redb database, live, into a backup file of its
    /// own format (one consistent snapshot).
    Backup(backup::Backup),
    /// Put a backup in place of a database no process has open, moving
    /// its commit counter forward so versionstamps keep increasing.
    Restore(backup::Restore),
    /// List the queue messages stored in a database (one JSON line each);
    /// a SQLite file is opened read-only.
    Queue(queue::Queue),
    /// Listen to a database's queue and print each message as it is
    /// handled (acknowledging it).
    Listen(queue::Listen),
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(|| LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kv: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; a server stopped by a signal ends by that signal.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let stopped_by = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::serve(args, cli.sqlite_path).await,
            Command::Get(args) => data::get(args, cli.sqlite_path).await.map(|()| None),
            Command::List(args) => data::list(args, cli.sqlite_path).await.map(|()| None),
            Command::Count(args) => data::count(args, cli.sqlite_path).await.map(|()| None),
            Command::Set(args) => data::set(args, cli.sqlite_path).await.map(|()| None),
            Command::Delete(args) => data::delete(args, cli.sqlite_path).await.map(|()| None),
            Command::Sum(args) => data::u64_op(data::U64Kind::Sum, args, cli.sqlite_path)
                .await
                .map(|()| None),
            Command::Min(args) => data::u64_op(data::U64Kind::Min, args, cli.sqlite_path)
                .await
                .map(|()| None),
            Command::Max(args) => data::u64_op(data::U64Kind::Max, args, cli.sqlite_path)
                .await
                .map(|()| None),
            Command::Watch(args) => data::watch(args, cli.sqlite_path).await.map(|()| None),
            Command::Export(args) => transfer::export(args, cli.sqlite_path).await.map(|()| None),
            Command::Import(args) => transfer::import(args, cli.sqlite_path).await.map(|()| None),
            Command::Backup(args) => backup::backup(args).await.map(|()| None),
            Command::Restore(args) => backup::restore(args).await.map(|()| None),
            Command::Queue(args) => queue::queue(args, cli.sqlite_path).await.map(|()| None),
            Command::Listen(args) => queue::listen(args, cli.sqlite_path).await.map(|()| None),
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
        serve::die_of(signal);
    }
    Ok(ExitCode::SUCCESS)
}

/// An error and its causes on one line, each said once: a cause whose text
/// the message before it already contains is left out (errors often quote
/// their source).
fn report(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
