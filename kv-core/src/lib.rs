//! The data model of kv, a Rust implementation of Deno KV: keys and their
//! byte encoding, versionstamps, values, limits, the [`Backend`] trait that
//! storage engines implement, and the [`Kv`] API that applications use.
//!
//! This crate does no I/O and needs no async runtime. It also provides
//! [`MemoryBackend`] (for tests and `memory:` URLs) and [`PrefixBackend`]
//! (namespaces).
//!
//! ```
//! # futures::executor::block_on(async {
//! use kv_core::{Kv, KvValue, ListOptions, MemoryBackend, Selector, key};
//!
//! let kv = Kv::new(MemoryBackend::new());
//! kv.set(key!["fruit", "apple"], KvValue::U64(3)).await?;
//! kv.set(key!["fruit", "pear"], KvValue::U64(5)).await?;
//!
//! // Optimistic concurrency: add to a counter only if nobody changed it.
//! let entry = kv.get(key!["fruit", "apple"]).await?.expect("written above");
//! let outcome = kv
//!     .atomic()
//!     .check(key!["fruit", "apple"], Some(entry.versionstamp))
//!     .sum(key!["fruit", "apple"], 1)
//!     .commit()
//!     .await?;
//! assert!(outcome.is_ok());
//!
//! let fruit = kv.list(Selector::prefix(key!["fruit"]), ListOptions::default())
//!     .collect_all()
//!     .await?;
//! assert_eq!(fruit[0].value, KvValue::U64(4));
//! assert_eq!(fruit.len(), 2);
//! # Ok::<(), kv_core::Error>(())
//! # }).unwrap();
//! ```

pub mod backend;
pub mod clock;
mod error;
mod key;
mod kv;
pub mod limits;
mod memory;
mod prefix;
mod selector;
mod value;
mod versionstamp;

pub use backend::{Backend, CommitOutcome, Consistency};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Limit, Result};
pub use key::{Key, KeyParseError, KeyParseErrorKind, KeyPart};
pub use kv::{AtomicOperation, EnqueueOptions, Kv, ListIterator, ListOptions, SetOptions};
pub use memory::MemoryBackend;
pub use num_bigint::BigInt;
pub use prefix::PrefixBackend;
pub use selector::{Selector, SelectorBounds};
pub use value::{KvEntry, KvValue, ValueRef, encoding};
pub use versionstamp::Versionstamp;
