//! Building blocks for backends' `watch`: a hub that wakes watchers of the
//! keys a commit touched, and a stream that re-reads the keys on each wake-up.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::Result;
use crate::backend::{Backend, Consistency, RawEntry, ReadRange, WatchStream, point_range};

type Subscriber = (Option<HashSet<Vec<u8>>>, mpsc::Sender<()>);

/// Wakes watchers when keys change. Cheap to clone; runtime-independent.
#[derive(Clone, Debug, Default)]
pub struct WatchHub {
    inner: Arc<Mutex<HubState>>,
}

#[derive(Debug, Default)]
struct HubState {
    next_id: u64,
    closed: bool,
    subscribers: Vec<(u64, Subscriber)>,
}

/// A registration with a [`WatchHub`]; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    hub: Weak<Mutex<HubState>>,
    rx: mpsc::Receiver<()>,
}

impl Subscription {
    /// Waits for the next wake-up; `false` once the hub is closed. Wake-ups
    /// that arrived meanwhile are coalesced into one.
    pub async fn changed(&mut self) -> bool {
        let got = self.rx.next().await.is_some();
        while let Ok(Some(())) = self.rx.try_recv().map(Some) {}
        got
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut state = hub.lock().unwrap_or_else(|e| e.into_inner());
            state.subscribers.retain(|(id, _)| *id != self.id);
        }
    }
}

impl WatchHub {
    /// A new hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes to changes of `keys`, or of anything when `keys` is `None`.
    pub fn subscribe(&self, keys: Option<Vec<Vec<u8>>>) -> Subscription {
        let (tx, rx) = mpsc::channel(1);
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = state.next_id;
        state.next_id += 1;
        if !state.closed {
            state
                .subscribers
                .push((id, (keys.map(|k| k.into_iter().collect()), tx)));
        }
        Subscription {
            id,
            hub: Arc::downgrade(&self.inner),
            rx,
        }
    }

    /// Wakes the watchers of any of `keys`.
    pub fn notify<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let keys: Vec<&[u8]> = keys.into_iter().collect();
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (_, (filter, tx)) in state.subscribers.iter_mut() {
            let hit = match filter {
                None => true,
                Some(set) => keys.iter().any(|k| set.contains(*k)),
            };
            if hit {
                let _ = tx.try_send(());
            }
        }
    }

    /// Wakes every watcher (a change of unknown keys, e.g. by another process).
    pub fn notify_all(&self) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (_, (_, tx)) in state.subscribers.iter_mut() {
            let _ = tx.try_send(());
        }
    }

    /// Ends every subscription; later ones end at once.
    pub fn close(&self) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        state.subscribers.clear();
    }
}

/// Reads the current state of the watched keys, in order.
pub type ReadKeys =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Vec<Option<RawEntry>>>> + Send + Sync>;

/// A watch stream: emits `read()` at once, then again after each wake-up of
/// `subscription` that changed a versionstamp, ending when the hub closes.
/// A failed read is emitted and ends the stream.
pub fn watch_stream(subscription: Subscription, read: ReadKeys) -> WatchStream {
    struct State {
        sub: Option<Subscription>,
        last: Option<Vec<Option<crate::Versionstamp>>>,
    }
    let state = State {
        sub: Some(subscription),
        last: None,
    };
    futures::stream::unfold(state, move |mut state| {
        let read = read.clone();
        async move {
            loop {
                let sub = state.sub.as_mut()?;
                if state.last.is_some() && !sub.changed().await {
                    return None;
                }
                match read().await {
                    Ok(entries) => {
                        let stamps: Vec<_> = entries
                            .iter()
                            .map(|e| e.as_ref().map(|e| e.versionstamp))
                            .collect();
                        if state.last.as_ref() == Some(&stamps) {
                            continue;
                        }
                        state.last = Some(stamps);
                        return Some((Ok(entries), state));
                    }
                    Err(e) => {
                        state.sub = None;
                        return Some((Err(e), state));
                    }
                }
            }
        }
    })
    .boxed()
}

/// `Backend::watch` for a backend whose commits notify `hub` with the keys
/// they wrote: a [`watch_stream`] that re-reads `keys` through `backend`'s
/// own strongly consistent `snapshot_read`, so it sees exactly what a read
/// would. The file backends share it; the read runs wherever `backend`
/// runs its reads.
pub fn watch_keys<B>(hub: &WatchHub, backend: &B, keys: Vec<Vec<u8>>) -> WatchStream
where
    B: Backend + Clone,
{
    let subscription = hub.subscribe(Some(keys.clone()));
    let ranges: Arc<[ReadRange]> = keys.iter().map(|k| point_range(k)).collect();
    let backend = backend.clone();
    let read: ReadKeys = Arc::new(move || {
        let backend = backend.clone();
        let ranges = ranges.to_vec();
        async move {
            let results = backend.snapshot_read(ranges, Consistency::Strong).await?;
            Ok(results.into_iter().map(|mut r| r.pop()).collect())
        }
        .boxed()
    });
    watch_stream(subscription, read)
}
