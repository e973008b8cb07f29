//! Watch: a linearizable read of the keys, then an etcd watch on them from
//! the revision after it; each event leads to a new read.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{WatchOptions, WatchStream as EtcdWatch};
use futures::StreamExt;
use kv_core::backend::{RawEntry, WatchStream};
use kv_core::{Result, Versionstamp};

use crate::read::{read_points, with_retries};
use crate::{Inner, MAX_RESPONSE_BYTES};

pub(crate) fn watch(inner: Arc<Inner>, keys: Vec<Vec<u8>>) -> WatchStream {
    let state = State {
        shutdown: inner.shutdown.subscribe(),
        inner,
        keys,
        stream: None,
        start_revision: 0,
        dirty: true,
        last: None,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
    .boxed()
}

struct State {
    inner: Arc<Inner>,
    keys: Vec<Vec<u8>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The etcd watch, once open.
    stream: Option<EtcdWatch>,
    /// Where the next etcd watch starts: the revision after the last read.
    start_revision: i64,
    /// The keys may have changed since the last read.
    dirty: bool,
    /// The versionstamps last emitted.
    last: Option<Vec<Option<Versionstamp>>>,
    /// A read failed and was emitted: the stream is over.
    done: bool,
}

type Snapshot = Vec<Option<RawEntry>>;

impl State {
    fn closed(&self) -> bool {
        self.done || *self.shutdown.borrow() || self.inner.check_open().is_err()
    }

    async fn next(&mut self) -> Option<Result<Snapshot>> {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.closed() {
                return None;
            }
            if self.dirty {
                let (snapshot, revision) = match self.read().await {
                    Ok(read) => read,
                    Err(e) => {
                        self.done = true;
                        return if self.closed() { None } else { Some(Err(e)) };
                    }
                };
                self.dirty = false;
                if self.stream.is_none() {
                    self.start_revision = revision + 1;
                }
                let stamps: Vec<_> = snapshot
                    .iter()
                    .map(|e| e.as_ref().map(|e| e.versionstamp))
                    .collect();
                if self.last.as_ref() != Some(&stamps) {
                    self.last = Some(stamps);
                    return Some(Ok(snapshot));
                }
            }
            if self.keys.is_empty() {
                let _ = self.shutdown.changed().await;
                return None;
            }
            if self.stream.is_none() {
                match self.open().await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        backoff = Duration::from_millis(50);
                    }
                    Err(e) => {
                        tracing::debug!("etcd watch could not be opened: {e}");
                        tokio::select! {
                            _ = self.shutdown.changed() => return None,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            let message = tokio::select! {
                _ = self.shutdown.changed() => return None,
                message = stream.message() => message,
            };
            match message {
                Ok(Some(response)) if response.canceled() => {
                    // Compacted past the start revision, or refused: read
                    // again and watch from there.
                    self.stream = None;
                    self.dirty = true;
                }
                Ok(Some(response)) => {
                    if !response.events().is_empty() {
                        self.dirty = true;
                    }
                }
                Ok(None) | Err(_) => {
                    // The member went away: read again (the state may have
                    // changed meanwhile) and watch from after that read.
                    self.stream = None;
                    self.dirty = true;
                }
            }
        }
    }

    async fn read(&self) -> Result<(Snapshot, i64)> {
        let inner = &self.inner;
        let points = with_retries(inner, || read_points(inner, &self.keys)).await?;
        let now = inner.now_ms();
        let snapshot = self
            .keys
            .iter()
            .zip(&points.points)
            .map(|(key, point)| point.live(key, now))
            .collect();
        Ok((snapshot, points.revision))
    }

    async fn open(&self) -> std::result::Result<EtcdWatch, etcd_client::Error> {
        let ks = &self.inner.keyspace;
        let options = || WatchOptions::new().with_start_revision(self.start_revision);
        let mut client = self
            .inner
            .client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        let mut keys = self.keys.iter();
        let first = keys.next().map(|k| ks.data_key(k)).unwrap_or_default();
        let mut stream = client.watch(first, Some(options())).await?;
        for key in keys {
            stream.watch(ks.data_key(key), Some(options())).await?;
        }
        Ok(stream)
    }
}
