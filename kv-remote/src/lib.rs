//! KV Connect for kv: [`serve`] any [`kv_core::Backend`] to Deno, Node and
//! Python clients, and use any KV Connect server through [`RemoteBackend`].
//!
//! The two sides are cargo features: `client` (on by default) gives
//! [`RemoteBackend`] and [`RemoteConfig`]; `server` gives [`serve`],
//! [`router`], [`bind`] and [`ServerConfig`]. A program that only connects
//! to a server compiles no HTTP server.
//!
//! A server on a [`MemoryBackend`](kv_core::MemoryBackend), and a client
//! that writes a key and enqueues a message, which the server stores
//! through the queue layer it applies to every backend it serves:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use std::sync::Arc;
//! use kv_core::{EnqueueOptions, Kv, KvValue, MemoryBackend, key};
//! use kv_remote::{RemoteConfig, ServerConfig, bind, serve};
//!
//! let storage = Arc::new(MemoryBackend::new());
//! let (listener, addr) = bind("127.0.0.1:0".parse()?).await?;
//! let config = ServerConfig::new(["a-long-secret-token"]);
//! tokio::spawn(serve(listener, storage.clone(), config, std::future::pending()));
//!
//! let url = format!("http://{addr}");
//! let kv = Kv::new(RemoteConfig::new(url, "a-long-secret-token").connect().await?);
//! kv.set(key!["hello"], KvValue::U64(1)).await?;
//! // The V8 encoding of the number 1.
//! kv.enqueue(vec![0xff, 0x10, 0x49, 0x02], EnqueueOptions::default()).await?;
//! assert_eq!(kv_queue::layout::read_messages(&*storage).await?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! The protocol is described in `docs/kv-connect.md` at the repository root.

// Without either side only the shared mapping is left, and nothing uses it.
#![cfg_attr(not(any(feature = "client", feature = "server")), allow(dead_code))]

#[cfg(feature = "client")]
mod client;
mod convert;
mod error;
#[cfg(feature = "server")]
mod guard;
#[cfg(feature = "server")]
mod log_limit;
#[cfg(feature = "server")]
mod prescan;
#[cfg(feature = "server")]
mod quickack;
#[cfg(feature = "server")]
mod server;
#[cfg(all(test, feature = "server"))]
mod test_log;
#[cfg(feature = "client")]
mod transport;
mod wire;

/// The protobuf messages of the KV Connect data path.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    include!("generated/com.deno.kv.datapath.rs");
}

#[cfg(feature = "client")]
pub use client::{RemoteBackend, RemoteConfig};
#[cfg(feature = "server")]
pub use server::{ServerConfig, bind, router, serve};
