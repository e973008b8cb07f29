//! Any body posted to any KV Connect endpoint, with valid credentials (so
//! the bytes reach the protobuf and key decoding): the server answers 2xx
//! or 4xx — a client's mistake is never a 5xx (which Deno's client would
//! retry forever) and never a panic.

#![no_main]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &str = "fuzzing-token-0123456789";
const PATHS: &[&str] = &[
    "/v2/snapshot_read",
    "/v2/atomic_write",
    "/v2/watch",
    "/v2/x-kv/snapshot_read",
    "/v2/x-kv/atomic_write",
    "/v2/x-kv/watch",
    "/",
];

struct Server {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    // Keeps watch streams open; the server ends them when it turns true.
    _stop: tokio::sync::watch::Sender<bool>,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let backend = Arc::new(kv_core::MemoryBackend::new());
    let router = kv_remote::router(backend, kv_remote::ServerConfig::new([TOKEN]), stopped);
    Server { runtime, router, _stop: stop }
});

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(which) % PATHS.len()];
    let request = Request::post(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-protobuf")
        .header("x-denokv-version", if which & 0x80 == 0 { "3" } else { "2" })
        .header("x-denokv-database-id", "00000000-0000-0000-0000-000000000000")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let server = &*SERVER;
    let response = server
        .runtime
        .block_on(server.router.clone().oneshot(request))
        .expect("the router is infallible");
    let status = response.status();
    assert!(
        status.is_success() || status.is_client_error(),
        "{path}: status {status} for a client's bytes"
    );
    assert_ne!(status, StatusCode::NOT_FOUND, "{path} is routed");
});
