//! A nats-server cluster with JetStream on loopback, owned by a test: each node its own client
//! port, route port and store; nodes are killed (SIGKILL) and restarted one at a time, and a
//! test waits until the cluster is whole again before the next fault.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::nats::{NatsServer, free_port};

pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    /// Each node's monitoring port (`/varz`).
    monitors: Vec<u16>,
}

impl NatsCluster {
    /// Start `n` nodes named `n1`, `n2`, … (panics with an install hint when nats-server is
    /// missing).
    pub fn start(n: usize) -> Self {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port().unwrap(), free_port().unwrap())).collect();
        let monitors: Vec<u16> = (0..n).map(|_| free_port().unwrap()).collect();
        let routes: Vec<String> =
            ports.iter().map(|(_, route)| format!("nats-route://127.0.0.1:{route}")).collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (client, route))| {
                let extra = format!(
                    "server_name: n{}\nhttp: 127.0.0.1:{}\ncluster {{\n  name: kanade-test\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    i + 1,
                    monitors[i],
                    routes.join(", ")
                );
                NatsServer::try_start_at(*client, extra).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        Self { nodes, monitors }
    }

    /// Client connections node `i` holds now (its `/varz`); an error while it is down.
    pub fn connections(&self, i: usize) -> Result<u64, String> {
        let varz = self.monitor(i, "/varz")?;
        varz["connections"].as_u64().ok_or_else(|| format!("n{}: /varz has no connection count", i + 1))
    }

    /// The names of node `i`'s client connections (its `/connz`), unnamed ones as `-`.
    pub fn connection_names(&self, i: usize) -> Result<Vec<String>, String> {
        let connz = self.monitor(i, "/connz?limit=1000000")?;
        let conns = connz["connections"].as_array().cloned().unwrap_or_default();
        Ok(conns.iter().map(|c| c["name"].as_str().unwrap_or("-").to_owned()).collect())
    }

    fn monitor(&self, i: usize, path: &str) -> Result<serde_json::Value, String> {
        let (status, body) = crate::http::request(self.monitors[i], "GET", path, b"", "text/plain")?;
        if status != 200 {
            return Err(format!("n{}: {path} answered {status}", i + 1));
        }
        serde_json::from_slice(&body).map_err(|e| format!("n{}: {path} is not JSON: {e}", i + 1))
    }

    /// Every node's client URL, comma-separated: what agents and backends are given.
    pub fn url(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// The index of the node named `name` (`n2` → 1), as stream and client info name them.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix('n')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=self.len()).contains(n))
            .map(|n| n - 1)
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Start node `i` again on its ports and store.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
    }

    /// Every node's log, for a failing test's message.
    pub fn logs(&self) -> String {
        self.nodes.iter().enumerate().map(|(i, n)| format!("--- n{}\n{}", i + 1, n.log())).collect()
    }

    /// Wait until JetStream answers (a meta leader is elected) and every stream, bucket and
    /// object store has a leader and all its replicas current.
    pub async fn wait_whole(&self, js: &async_nats::jetstream::Context, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let Err(last) = whole(js, self.len()).await else { return };
            if Instant::now() > deadline {
                panic!("the cluster was not whole within {within:?}: {last}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn whole(js: &async_nats::jetstream::Context, nodes: usize) -> Result<(), String> {
    let mut streams = js.streams();
    let mut seen = 0;
    while let Some(info) = streams.next().await {
        let info = info.map_err(|e| format!("listing streams: {e}"))?;
        seen += 1;
        let name = &info.config.name;
        let replicas = info.config.num_replicas.max(1);
        let Some(cluster) = &info.cluster else {
            return Err(format!("stream {name} has no cluster info"));
        };
        if cluster.leader.is_none() {
            return Err(format!("stream {name} has no leader"));
        }
        let current = cluster.replicas.iter().filter(|p| p.current && !p.offline).count();
        // The leader is not among its replicas.
        if current + 1 < replicas.min(nodes) {
            return Err(format!("stream {name}: {current} of {} followers current", replicas - 1));
        }
    }
    if seen == 0 {
        // Listing needs the meta leader; an empty account answers too, so ask it directly.
        js.query_account().await.map_err(|e| format!("JetStream not ready: {e}"))?;
    }
    Ok(())
}
