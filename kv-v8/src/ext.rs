//! serde-typed reads and writes on [`Kv`].

use std::future::Future;

use kv_core::{Key, Kv, Versionstamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Result, from_value, to_value};

/// Reads and writes Rust values on a [`Kv`], stored as Deno stores the
/// equivalent JavaScript values (see [`to_value`] and [`from_value`]).
///
/// ```
/// # futures::executor::block_on(async {
/// use kv_core::{Kv, MemoryBackend, key};
/// use kv_v8::{KvSerdeExt, KvU64};
///
/// let kv = Kv::new(MemoryBackend::new());
/// kv.set_value(key!["visits"], &KvU64(41)).await?;
/// kv.atomic().sum(key!["visits"], 1).commit().await?;
/// let (n, _) = kv.get_value::<u64>(key!["visits"]).await?.expect("set above");
/// assert_eq!(n, 42);
/// # Ok::<(), kv_v8::Error>(())
/// # }).unwrap();
/// ```
pub trait KvSerdeExt {
    /// Writes `value` at `key`.
    ///
    /// # Errors
    /// Conversion errors as [`to_value`]; database errors as
    /// [`Kv::set`] (in [`crate::Error::Kv`]).
    fn set_value<T: Serialize + ?Sized>(
        &self,
        key: impl Into<Key>,
        value: &T,
    ) -> impl Future<Output = Result<Versionstamp>> + Send;

    /// Reads the value at `key` into a `T`, with the versionstamp of the
    /// write that stored it; `None` when the key is absent.
    ///
    /// # Errors
    /// Database errors as [`Kv::get`]; conversion errors as
    /// [`from_value`].
    fn get_value<T: DeserializeOwned>(
        &self,
        key: impl Into<Key>,
    ) -> impl Future<Output = Result<Option<(T, Versionstamp)>>> + Send;
}

impl KvSerdeExt for Kv {
    fn set_value<T: Serialize + ?Sized>(
        &self,
        key: impl Into<Key>,
        value: &T,
    ) -> impl Future<Output = Result<Versionstamp>> + Send {
        let key = key.into();
        let value = to_value(value);
        async move { Ok(self.set(key, value?).await?) }
    }

    fn get_value<T: DeserializeOwned>(
        &self,
        key: impl Into<Key>,
    ) -> impl Future<Output = Result<Option<(T, Versionstamp)>>> + Send {
        let key = key.into();
        async move {
            match self.get(key).await? {
                None => Ok(None),
                Some(entry) => Ok(Some((from_value(&entry.value)?, entry.versionstamp))),
            }
        }
    }
}
