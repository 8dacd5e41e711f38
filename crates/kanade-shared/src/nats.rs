//! Connecting to the broker the way every kanade daemon must: keep trying, never give up, say
//! what is wrong. After the first connection the client reconnects on its own, forever.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use tokio::sync::watch;

/// How to authenticate to the broker and verify it: user/password or token, and TLS (a CA to
/// trust, optionally a client certificate). Empty: plain, anonymous.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Inbox prefix for replies; per-user broker permissions allow each client only its own.
    pub inbox_prefix: Option<String>,
}

impl BrokerAuth {
    fn apply(&self, mut o: ConnectOptions) -> ConnectOptions {
        if let (Some(u), Some(p)) = (&self.user, &self.password) {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        if let Some(ca) = &self.ca_file {
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            o = o.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(prefix) = &self.inbox_prefix {
            o = o.custom_inbox_prefix(prefix);
        }
        o
    }
}

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Connect, retrying with capped exponential backoff until it works. Used by daemons, which
/// must survive starting before the broker.
pub async fn connect_forever(url: &str, auth: &BrokerAuth, client_name: &str) -> Client {
    connect_forever_counted(url, auth, client_name).await.0
}

/// [`connect_forever`], plus a counter of the connections the client has made since: it changes
/// on every reconnect, however short the outage was, so a watcher never misses one (polling
/// the connection state can).
pub async fn connect_forever_counted(
    url: &str,
    auth: &BrokerAuth,
    client_name: &str,
) -> (Client, watch::Receiver<u64>) {
    let (connects, watcher) = watch::channel(0u64);
    let connects = std::sync::Arc::new(connects);
    let mut delay = FIRST_RETRY;
    let mut attempt = 1u64;
    loop {
        match auth.apply(options(client_name, Some(connects.clone()))).connect(url).await {
            Ok(client) => {
                tracing::info!(url, attempt, "connected to NATS");
                return (client, watcher);
            }
            Err(err) => {
                tracing::warn!(url, attempt, error = %err, retry_in = ?delay, "cannot reach NATS; is nats-server running at this address?");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
                attempt += 1;
            }
        }
    }
}

/// Connect once, failing fast with a message that names the URL. Used by the CLI.
pub async fn connect_once(url: &str, auth: &BrokerAuth, client_name: &str) -> Result<Client, ConnectError> {
    auth.apply(options(client_name, None))
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|source| ConnectError { url: url.to_owned(), source })
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot connect to NATS at {url}: {source}; is nats-server running there? (set --nats-url or KANADE_NATS_URL)"
)]
pub struct ConnectError {
    pub url: String,
    #[source]
    pub source: async_nats::ConnectError,
}

fn options(client_name: &str, connects: Option<std::sync::Arc<watch::Sender<u64>>>) -> ConnectOptions {
    ConnectOptions::new().name(client_name).event_callback(move |event| {
        let connects = connects.clone();
        async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                async_nats::Event::Connected => {
                    tracing::info!("connected to NATS");
                    if let Some(connects) = connects {
                        connects.send_modify(|n| *n += 1);
                    }
                }
                other => tracing::debug!(event = %other, "NATS client event"),
            }
        }
    })
}

/// Reconnects of one client, from the counter [`connect_forever_counted`] returns. The first
/// connection is not a reconnect; one that happened while the caller was busy elsewhere is
/// still reported on the next call.
#[derive(Debug, Clone)]
pub struct Reconnects {
    rx: watch::Receiver<u64>,
    seen: u64,
}

impl Reconnects {
    pub fn new(rx: watch::Receiver<u64>) -> Self {
        let seen = (*rx.borrow()).max(1);
        Self { rx, seen }
    }

    /// Resolves once the client has connected again since the last call (or since `new`).
    /// Never resolves when the client is gone.
    pub async fn next(&mut self) {
        let seen = self.seen;
        // Copy the value out: the guard must not live across an await (it is not Send).
        let now = self.rx.wait_for(|n| *n > seen).await.map(|n| *n);
        match now {
            Ok(n) => self.seen = n,
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reconnects_skip_the_first_connection_and_keep_what_happened_meanwhile() {
        let (tx, rx) = watch::channel(0);
        let mut reconnects = Reconnects::new(rx);
        let first = tokio::time::timeout(Duration::from_millis(50), reconnects.next());
        tx.send(1).unwrap();
        assert!(first.await.is_err(), "the first connection is not a reconnect");
        // Two reconnects while nobody was waiting: reported once, then nothing until the next.
        tx.send(2).unwrap();
        tx.send(3).unwrap();
        tokio::time::timeout(Duration::from_millis(50), reconnects.next()).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(50), reconnects.next()).await.is_err());
        tx.send(4).unwrap();
        tokio::time::timeout(Duration::from_millis(50), reconnects.next()).await.unwrap();
        drop(tx);
        assert!(tokio::time::timeout(Duration::from_millis(50), reconnects.next()).await.is_err());
    }
}
