//! A throwaway Postgres cluster: `initdb` into a temp dir, `postgres` on a free loopback port,
//! a fresh database per test. One cluster serves a whole test binary ([`PgCluster::shared`]);
//! it is started under a watchdog shell that stops it when this process ends, however it ends
//! (the watchdog reads its stdin, a pipe from this process, and shuts the server down at EOF).
//! Postgres refuses to run as root: as root, the cluster runs as the `postgres` user.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const INSTALL_HINT: &str = "install Postgres with `apt-get install postgresql` (scripts/test.sh does), or point KANADE_PG_BIN at the directory holding initdb and postgres";

pub struct PgCluster {
    bin: PathBuf,
    port: u16,
    dir: TempDir,
    /// As root, commands run as this user.
    run_as: Option<&'static str>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// The cluster of this test binary, started on first use; panics with an install hint when
    /// Postgres is missing.
    pub fn shared() -> &'static PgCluster {
        match SHARED.get_or_init(Self::start) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// A cluster of its own (stopped on drop).
    pub fn start() -> Result<Self, String> {
        Self::start_with(None)
    }

    /// A cluster of its own that accepts TCP connections only over TLS, with this certificate
    /// and key (PEM files); a plain connection is refused by `pg_hba.conf`, so a client that
    /// gets in used TLS. Its socket (for [`psql`](Self::psql)) needs none.
    pub fn start_tls(cert: &Path, key: &Path) -> Result<Self, String> {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Result<Self, String> {
        let bin = find_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("kanade-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir for Postgres: {e}"))?;
        let run_as = is_root().then_some("postgres");
        if run_as.is_some() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
            if !status.success() {
                return Err(format!(
                    "cannot give {} to the postgres user (running as root needs it); {INSTALL_HINT}",
                    dir.path().display()
                ));
            }
        }
        let cluster = Self { bin, port: crate::free_port()?, dir, run_as, watchdog: Mutex::new(None) };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "kanade", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}; {INSTALL_HINT}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        if let Some((cert, key)) = tls {
            cluster.require_tls(cert, key)?;
        }
        cluster.spawn(tls.is_some())?;
        Ok(cluster)
    }

    fn require_tls(&self, cert: &Path, key: &Path) -> Result<(), String> {
        let data = self.data_dir();
        let write = |name: &str, text: String| {
            std::fs::write(data.join(name), text)
                .map_err(|e| format!("cannot write {name} for Postgres: {e}"))
        };
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        write("server.crt", read(cert)?)?;
        write("server.key", read(key)?)?;
        write(
            "pg_hba.conf",
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\nhostnossl all all all reject\n".into(),
        )?;
        let key_file = data.join("server.key");
        let mut fix = vec![Command::new("chmod")];
        fix[0].arg("600").arg(&key_file);
        if let Some(user) = self.run_as {
            let mut chown = Command::new("chown");
            chown
                .arg(format!("{user}:{user}"))
                .arg(&key_file)
                .arg(data.join("server.crt"))
                .arg(data.join("pg_hba.conf"));
            fix.push(chown);
        }
        for mut c in fix {
            let ok = c.status().is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("cannot hand the TLS key to Postgres: {c:?} failed"));
            }
        }
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        self.as_user(&self.bin.join(tool))
    }

    fn as_user(&self, exe: &Path) -> Command {
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn spawn(&self, tls: bool) -> Result<(), String> {
        // The shared cluster's handle is never dropped: the watchdog removes the data as well.
        let script = r#"postgres "$@" & pid=$!; read _; kill -INT $pid; wait $pid; rm -rf "$KANADE_PG_DIR""#;
        let mut child = self
            .as_user(Path::new("/bin/sh"))
            .args(["-c", script, "sh"])
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300", "-c", if tls { "ssl=on" } else { "ssl=off" }])
            .env("PATH", path_with(&self.bin))
            .env("KANADE_PG_DIR", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.path().join("postgres.log"))
                    .map_err(|e| format!("cannot create the Postgres log: {e}"))?,
            ))
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}; {INSTALL_HINT}"))?;
        let stdin = child.stdin.take().expect("piped");
        *self.watchdog.lock().unwrap_or_else(|p| p.into_inner()) = Some((child, stdin));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.psql("postgres", "SELECT 1").is_ok() {
                return Ok(());
            }
            let exited = match self.watchdog.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                Some((child, _)) => child.try_wait().ok().flatten().is_some(),
                None => true,
            };
            if exited {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "Postgres did not start (or not within 30 s); its log: {}",
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://kanade@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
        self.url(&name)
    }

    /// Run one SQL statement with `psql`; its output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        // Through the socket in this cluster's own directory: never another server that happens
        // to listen on the same port.
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "kanade", "-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .map_err(|e| format!("cannot run psql: {e}; {INSTALL_HINT}"))?;
        if !out.status.success() {
            return Err(format!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn stop(&self) {
        if let Some((mut child, mut stdin)) = self.watchdog.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stdin.write_all(b"\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `KANADE_PG_BIN`, else `initdb` on the PATH, else Debian's `/usr/lib/postgresql/<newest>/bin`.
fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("KANADE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates.into_iter().rev().find(|d| d.join("postgres").exists()) {
        return Ok(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .ok_or_else(|| format!("Postgres (initdb, postgres) is not installed; {INSTALL_HINT}"))
}
