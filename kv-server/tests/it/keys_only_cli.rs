//! `kv count` and `kv list --keys-only` through a server: `kv serve` sends
//! keys and versionstamps only, and a server without kv's keys-only
//! extension (denokv, Deno Deploy) gets the same answers with the values
//! transferred, which the command says once.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use kv::{Kv, KvValue, key};

use crate::data_cli::{TOKEN, kv, serve};

const KEYS: u64 = 200;
const VALUE_BYTES: usize = 60 * 1024;
const VALUES_TOTAL: u64 = KEYS * VALUE_BYTES as u64;
const NOTICE: &str = "has no keys-only reads";

/// A TCP proxy in front of `addr` (`host:port`) that counts the bytes the
/// server sends; its URL and the count.
fn counting_proxy(addr: &str) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let addr = addr.to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let (Ok(client), Ok(server)) = (client, TcpStream::connect(&addr)) else {
                continue;
            };
            let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut server_out);
                let _ = server_out.shutdown(std::net::Shutdown::Write);
            });
            let counter = counter.clone();
            std::thread::spawn(move || {
                let (mut server, mut client) = (server, client);
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = server.read(&mut buf) {
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Ok((url, sent))
}

/// Writes [`KEYS`] keys under `items` with values of [`VALUE_BYTES`].
async fn fill(kv: &Kv) -> anyhow::Result<()> {
    for chunk in 0..KEYS / 10 {
        let mut op = kv.atomic();
        for i in 0..10 {
            let n = chunk * 10 + i;
            op.set(key!["items", n], KvValue::Bytes(vec![n as u8; VALUE_BYTES]));
        }
        op.commit().await?;
    }
    Ok(())
}

/// `kv ARGS --db URL`, which must succeed: standard output and error.
fn run(url: &str, args: &[&str]) -> anyhow::Result<(String, String)> {
    let out = kv(url, args)?;
    let stderr = String::from_utf8(out.stderr)?;
    anyhow::ensure!(out.status.success(), "kv {args:?} failed: {stderr}");
    Ok((String::from_utf8(out.stdout)?, stderr))
}

/// What `count` and `list --keys-only` print through `url`, each with the
/// bytes the server sent for it and its standard error.
fn keys_through(url: &str, sent: &AtomicU64) -> anyhow::Result<Vec<(String, u64, String)>> {
    let mut out = Vec::new();
    for args in [
        &["count", "items"][..],
        &["list", "items", "--keys-only", "-o", "ndjson"],
        &[
            "list",
            "items",
            "--keys-only",
            "--reverse",
            "--limit",
            "150",
        ],
    ] {
        let before = sent.load(Ordering::SeqCst);
        let (stdout, stderr) = run(url, args)?;
        out.push((stdout, sent.load(Ordering::SeqCst) - before, stderr));
    }
    Ok(out)
}

fn check_answers(answers: &[(String, u64, String)]) -> anyhow::Result<()> {
    assert_eq!(answers[0].0.trim(), KEYS.to_string());
    let lines: Vec<serde_json::Value> = answers[1]
        .0
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), KEYS as usize);
    assert!(lines.iter().all(|l| l.get("value").is_none()));
    let reversed: Vec<&str> = answers[2].0.lines().collect();
    assert_eq!(reversed.len(), 150);
    assert!(
        reversed[0].starts_with(r#"["items", 199n]"#),
        "{}",
        reversed[0]
    );
    Ok(())
}

#[test]
fn count_and_keys_only_lists_through_kv_serve_ship_no_values() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("kv.sqlite3");
    tokio::runtime::Runtime::new()?.block_on(async {
        let kv = kv::open(&format!("sqlite:{}", file.display())).await?;
        fill(&kv).await?;
        kv.close().await;
        anyhow::Ok(())
    })?;
    let server = serve(&file)?;
    let addr = server.url.strip_prefix("http://").context("an http URL")?;
    let (url, sent) = counting_proxy(addr)?;
    let answers = keys_through(&url, &sent)?;
    check_answers(&answers)?;
    for (stdout, bytes, stderr) in &answers {
        // 200 keys and versionstamps, and the metadata exchange: a few KB,
        // against 12 MB of values.
        assert!(
            *bytes < VALUES_TOTAL / 100,
            "the server sent {bytes} bytes for {stdout}"
        );
        assert!(!stderr.contains(NOTICE), "{stderr}");
    }
    // What a full listing costs, for scale.
    let before = sent.load(Ordering::SeqCst);
    run(&url, &["list", "items", "-o", "ndjson"])?;
    assert!(sent.load(Ordering::SeqCst) - before >= VALUES_TOTAL);

    // The same answers straight from the file.
    let direct = keys_through(&format!("sqlite:{}", file.display()), &AtomicU64::new(0))?;
    for (through, direct) in answers.iter().zip(&direct) {
        assert_eq!(through.0, direct.0);
    }
    Ok(())
}

/// A KV Connect server as denokv is one: kv's routes without the
/// `x-kv-extensions` header, and 404 on kv's extension paths.
async fn like_denokv(backend: Arc<dyn kv::Backend>) -> anyhow::Result<String> {
    use axum::response::IntoResponse;
    let strip = axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            if request.uri().path().starts_with("/v2/x-kv/") {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            }
            let mut response = next.run(request).await;
            response.headers_mut().remove("x-kv-extensions");
            response
        },
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let config = kv_remote::ServerConfig::new([TOKEN]);
    let app = kv_remote::router(backend, config, stopped).layer(strip);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _stop = stop;
        axum::serve(listener, app).await
    });
    Ok(addr.to_string())
}

#[test]
fn without_the_extension_values_are_transferred_and_that_is_said() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let addr = runtime.block_on(async {
        let backend = kv::open_backend("memory:").await?;
        fill(&Kv::from_arc(backend.clone())).await?;
        like_denokv(backend).await
    })?;
    let (url, sent) = counting_proxy(&addr)?;
    let answers = keys_through(&url, &sent)?;
    check_answers(&answers)?;
    for (stdout, bytes, stderr) in &answers[..2] {
        assert!(*bytes >= VALUES_TOTAL, "{bytes} bytes for {stdout}");
        let said = format!("kv: {url} {NOTICE} (not a kv server)");
        assert_eq!(stderr.matches(&said).count(), 1, "{stderr}");
    }
    drop(runtime);
    Ok(())
}
