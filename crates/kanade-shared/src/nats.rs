//! Connecting to the broker the way every kanade daemon must: keep trying, never give up, say
//! what is wrong. After the first connection the client reconnects on its own, forever.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, ServerAddr};
use tokio::sync::watch;

/// How to authenticate to the broker and verify it: user/password or token, and TLS (a CA to
/// trust, optionally a client certificate). Empty: plain, anonymous.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerAuth {
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// Where `token` came from, for `check-config` (None: set by the caller itself).
    pub token_source: Option<crate::secrets::SecretSource>,
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

/// The servers of a URL or a comma-separated list of them (`nats://a:4222,nats://b:4222`, the
/// nodes of a cluster): a client connects to any and reconnects to any live one (the cluster
/// also tells it about the others). The error names the entry that is not a NATS URL.
pub fn servers(list: &str) -> Result<Vec<ServerAddr>, String> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if entry.is_empty() {
            return Err(format!("{list:?} has an empty entry at position {} (a stray comma?)", i + 1));
        }
        let scheme = ["nats://", "tls://", "ws://", "wss://"].iter().any(|s| entry.starts_with(s));
        let addr = entry.parse::<ServerAddr>().ok().filter(|_| scheme && entry.len() > 7);
        match addr {
            Some(a) => out.push(a),
            None => {
                return Err(format!("{entry:?} is not a NATS URL (nats://host:4222 or tls://host:4222)"));
            }
        }
    }
    Ok(out)
}

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Connect, retrying with capped exponential backoff until it works. Used by daemons, which
/// must survive starting before the broker.
pub async fn connect_forever(url: &str, auth: &BrokerAuth, client_name: &str) -> Client {
    let mut delay = FIRST_RETRY;
    let mut attempt = 1u64;
    loop {
        let connected = match servers(url) {
            Ok(addrs) => auth.apply(options(client_name)).connect(addrs).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match connected {
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
    let addrs = servers(url).map_err(ConnectError::BadUrl)?;
    auth.apply(options(client_name))
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(|source| ConnectError::Unreachable { url: url.to_owned(), source })
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "cannot connect to NATS at {url}: {source}; is nats-server running there? (set --nats-url or KANADE_NATS_URL)"
    )]
    Unreachable {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("the NATS URL {0}; set --nats-url or KANADE_NATS_URL")]
    BadUrl(String),
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

/// How soon a reconnect is noticed.
const RECONNECT_POLL: Duration = Duration::from_secs(1);

/// The client's connection count, published by one task that reads the client's counter every
/// second. The counter, unlike the client's connection events (dropped when their queue is
/// full) or its state (an outage shorter than the poll is missed), counts every connection.
/// The task ends once every receiver is gone.
pub fn connection_count(client: &Client) -> watch::Receiver<u64> {
    let stats = client.statistics();
    let (tx, rx) = watch::channel(stats.connects.load(Ordering::Relaxed));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECONNECT_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = tx.closed() => return,
            }
            let n = stats.connects.load(Ordering::Relaxed);
            tx.send_if_modified(|v| std::mem::replace(v, n) != n);
        }
    });
    rx
}

/// Reconnects, from a [`connection_count`]. The first connection is not a reconnect; one that
/// happened while the caller was busy elsewhere is still reported on the next call.
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
    /// Never resolves once the count is no longer published.
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

    #[test]
    fn a_url_list_names_every_node_and_a_bad_entry_is_named() {
        let ok = [
            ("nats://127.0.0.1:4222", 1),
            ("nats://a:4222,nats://b:4223, nats://c:4224", 3),
            ("tls://broker.corp:4222", 1),
        ];
        for (list, n) in ok {
            assert_eq!(servers(list).map(|v| v.len()), Ok(n), "{list}");
        }
        let bad = [
            ("nats://a:4222,", r#""nats://a:4222," has an empty entry at position 2 (a stray comma?)"#),
            ("nats://a:4222,b:4222", r#""b:4222" is not a NATS URL (nats://host:4222 or tls://host:4222)"#),
            ("http://a:80", r#""http://a:80" is not a NATS URL (nats://host:4222 or tls://host:4222)"#),
        ];
        for (list, want) in bad {
            assert_eq!(servers(list).map(|v| v.len()), Err(want.to_owned()), "{list}");
        }
    }

    #[tokio::test]
    async fn reconnects_skip_the_first_connection_and_keep_what_happened_meanwhile() {
        let (tx, rx) = watch::channel(0);
        let mut reconnects = Reconnects::new(rx);
        let wait = Duration::from_millis(50);
        tx.send(1).unwrap();
        assert!(
            tokio::time::timeout(wait, reconnects.next()).await.is_err(),
            "the first connection is not a reconnect"
        );
        // Two reconnects while nobody was waiting: reported once, then nothing until the next.
        tx.send(2).unwrap();
        tx.send(3).unwrap();
        tokio::time::timeout(wait, reconnects.next()).await.unwrap();
        assert!(tokio::time::timeout(wait, reconnects.next()).await.is_err());
        tx.send(4).unwrap();
        tokio::time::timeout(wait, reconnects.next()).await.unwrap();
        drop(tx);
        assert!(tokio::time::timeout(wait, reconnects.next()).await.is_err());
    }
}
