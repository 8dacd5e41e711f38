//! Connecting to the broker the way every kanade daemon must: keep trying, never give up, say
//! what is wrong. After the first connection the client reconnects on its own, forever.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::{Client, ConnectOptions};

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
    let mut delay = FIRST_RETRY;
    let mut attempt = 1u64;
    loop {
        match auth.apply(options(client_name)).connect(url).await {
            Ok(client) => {
                tracing::info!(url, attempt, "connected to NATS");
                return client;
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
    auth.apply(options(client_name))
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

fn options(client_name: &str) -> ConnectOptions {
    ConnectOptions::new().name(client_name).event_callback(|event| async move {
        match event {
            async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
            async_nats::Event::Connected => tracing::info!("connected to NATS"),
            other => tracing::debug!(event = %other, "NATS client event"),
        }
    })
}

/// Reconnects of one client, read from its connection counter (which counts every connection
/// established, unlike its connection events, which are dropped when their queue is full and
/// which a state poll misses for an outage shorter than the poll). The first connection is not
/// a reconnect; one that happened while the caller was busy elsewhere is still reported on the
/// next call.
#[derive(Debug, Clone)]
pub struct Reconnects {
    stats: Arc<async_nats::Statistics>,
    seen: u64,
}

/// How soon a reconnect is noticed.
const RECONNECT_POLL: Duration = Duration::from_millis(250);

impl Reconnects {
    pub fn new(client: &Client) -> Self {
        Self::from_statistics(client.statistics())
    }

    fn from_statistics(stats: Arc<async_nats::Statistics>) -> Self {
        let seen = stats.connects.load(Ordering::Relaxed).max(1);
        Self { stats, seen }
    }

    /// Resolves once the client has connected again since the last call (or since `new`).
    pub async fn next(&mut self) {
        loop {
            let connects = self.stats.connects.load(Ordering::Relaxed);
            if connects > self.seen {
                self.seen = connects;
                return;
            }
            tokio::time::sleep(RECONNECT_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reconnects_skip_the_first_connection_and_keep_what_happened_meanwhile() {
        let stats = Arc::new(async_nats::Statistics::default());
        let mut reconnects = Reconnects::from_statistics(stats.clone());
        let wait = Duration::from_secs(1);
        stats.connects.store(1, Ordering::Relaxed);
        assert!(
            tokio::time::timeout(wait, reconnects.next()).await.is_err(),
            "the first connection is not a reconnect"
        );
        // Two reconnects while nobody was waiting: reported once, then nothing until the next.
        stats.connects.store(3, Ordering::Relaxed);
        tokio::time::timeout(wait, reconnects.next()).await.unwrap();
        assert!(tokio::time::timeout(wait, reconnects.next()).await.is_err());
        stats.connects.store(4, Ordering::Relaxed);
        tokio::time::timeout(wait, reconnects.next()).await.unwrap();
    }
}
