//! Integration tests of the facade: one binary with a module per area.

mod open;
mod read_only;
mod remote_queue;

use std::sync::Arc;

use kv::{Backend, Kv};

/// `backend` served over KV Connect in this process, and a client of it.
struct Served {
    client: Kv,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(backend: Arc<dyn Backend>, token: &str) -> anyhow::Result<Served> {
        let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse()?).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(kv_remote::serve(
            listener,
            backend,
            kv_remote::ServerConfig::new([token]),
            async {
                let _ = stopped.await;
            },
        ));
        let client = Kv::new(
            kv_remote::RemoteConfig::new(format!("http://{addr}"), token)
                .connect()
                .await?,
        );
        Ok(Served {
            client,
            stop,
            server,
        })
    }

    /// Stops the server gracefully and waits for it.
    async fn stop(self) -> anyhow::Result<()> {
        self.client.close().await;
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}
