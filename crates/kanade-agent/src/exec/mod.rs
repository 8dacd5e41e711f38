//! Running one script: stage it in a file, start the shell in its own process tree, capture
//! capped output, and end on exit, timeout or kill. A timeout or kill ends the whole tree
//! (process group on Unix, job object on Windows), so a backgrounded grandchild cannot outlive
//! the run. A run owns its tree: whatever is still in it when the run is over is ended too
//! (long-lived things belong to the service manager, not to a job).

#[cfg(windows)]
mod console_user;
mod fake;
pub mod live;
mod tree;

pub use fake::{FakeExecutor, RunLog};

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use kanade_shared::wire::{ChunkStream, Shell};
use tokio::io::{AsyncRead, AsyncReadExt};

/// After the script exits, how long a leftover holder of its output pipes may keep them open
/// before the agent stops reading (the run is over; the output so far is kept).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

pub struct RunSpec<'a> {
    pub shell: Shell,
    pub script: &'a str,
    pub timeout: Duration,
    pub cwd: Option<&'a Path>,
    pub env: &'a BTreeMap<String, String>,
    /// Where the script file is written; it is removed after the run.
    pub staging_dir: &'a Path,
    /// File stem for the staged script (the exec id), unique per concurrent run.
    pub name: &'a str,
    /// Bytes kept per stream; the rest is read and dropped.
    pub output_cap: usize,
    /// Where watchers read the output while it runs.
    pub live: Option<live::LiveOutput>,
    pub identity: Identity<'a>,
}

/// Whom a script runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// The agent's own account (root, SYSTEM).
    Agent,
    /// `run_as: user` on Unix: the account named by `[exec] user`.
    Account(&'a str),
    /// `run_as: user` on Windows: whoever is signed in at the console, in their session.
    ConsoleUser,
}

/// Whether someone is signed in at the console to run `run_as: user` jobs as (Windows).
pub fn console_user_present() -> bool {
    #[cfg(windows)]
    return console_user::present();
    #[cfg(not(windows))]
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited,
    TimedOut,
    Killed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub ending: Ending,
    /// `None` when the process was ended by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("shell {0:?} is not supported by this agent")]
    UnsupportedShell(Shell),
    #[error("cannot stage the script in {path}: {source}")]
    Stage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source} (is {program} installed and on the agent's PATH?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("working directory {0} does not exist on this PC (execute.cwd)")]
    NoCwd(PathBuf),
    #[error("cannot wait for the script: {0}")]
    Wait(#[source] std::io::Error),
    #[error("cannot run as user {user:?}: {why}")]
    User { user: String, why: String },
}

/// Run to completion, timeout, or until `kill` resolves.
pub async fn run(spec: RunSpec<'_>, kill: impl Future<Output = ()>) -> Result<RunOutcome, ExecError> {
    let (program, args, ext, prelude) = invocation(spec.shell)?;
    // Checked here, or the spawn fails with ENOENT and blames the shell.
    if let Some(cwd) = spec.cwd.filter(|c| !c.is_dir()) {
        return Err(ExecError::NoCwd(cwd.to_path_buf()));
    }
    let user = identity::lookup(spec.identity)?;
    // A script run as another account is staged where that account can reach it: a private
    // directory of its own under the system temp dir (the data dir is the agent's alone).
    let staging = match &user {
        None => spec.staging_dir.to_path_buf(),
        Some(user) => identity::fresh_dir(spec.name, user)
            .map_err(|source| ExecError::Stage { path: std::env::temp_dir(), source })?,
    };
    let path = staging.join(format!("{}.{ext}", spec.name));
    let body = format!("{prelude}{}", spec.script);
    // Windows PowerShell 5.1 reads a BOM-less script in the legacy code page.
    let bytes =
        if ext == "ps1" { [&[0xEF, 0xBB, 0xBF][..], body.as_bytes()].concat() } else { body.into_bytes() };
    // Owner-only: a script can carry secrets, and the agent runs as root/SYSTEM.
    let made = if user.is_some() { Ok(()) } else { kanade_shared::files::private_dir(&staging) };
    made.and_then(|()| {
        kanade_shared::files::write_private(&path, &bytes, kanade_shared::files::Existing::Replace)
    })
    .and_then(|()| user.as_ref().map_or(Ok(()), |u| identity::hand_over(&[&staging, &path], u)))
    .map_err(|source| ExecError::Stage { path: path.clone(), source })?;
    let _cleanup = RemoveOnDrop(path.clone(), user.is_some().then(|| staging.clone()));

    let Started { stdout, stderr, mut exit, mut tree } = start(program, args, &path, &spec, user.as_ref())
        .map_err(|source| ExecError::Spawn { program: program.to_owned(), source })?;
    let out = tokio::spawn(read_capped(stdout, spec.output_cap, spec.live.clone(), ChunkStream::Stdout));
    let err = tokio::spawn(read_capped(stderr, spec.output_cap, spec.live.clone(), ChunkStream::Stderr));

    let mut exited = None;
    let ending = tokio::select! {
        code = &mut exit => { exited = Some(code.map_err(ExecError::Wait)?); Ending::Exited }
        () = tokio::time::sleep(spec.timeout) => Ending::TimedOut,
        () = kill => Ending::Killed,
    };
    if ending != Ending::Exited {
        tree.kill();
    }
    let exit_code = match exited {
        Some(code) => code,
        None => exit.await.map_err(ExecError::Wait)?,
    };
    let readers = async { (out.await.unwrap_or_default(), err.await.unwrap_or_default()) };
    tokio::pin!(readers);
    // Normally the pipes close with the script. If something it left behind holds them, end the
    // tree after a grace period, which closes them and keeps every byte written so far.
    let ((stdout, out_cut), (stderr, err_cut)) = match tokio::time::timeout(DRAIN_GRACE, &mut readers).await {
        Ok(done) => done,
        Err(_) => {
            tree.kill();
            match tokio::time::timeout(DRAIN_GRACE, &mut readers).await {
                Ok(done) => done,
                // A process that escaped the tree (a new session) still holds them: give up on
                // the rest of the output rather than on the run.
                Err(_) => ((Vec::new(), true), (Vec::new(), true)),
            }
        }
    };
    tree.kill();
    Ok(RunOutcome {
        ending,
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        truncated: out_cut || err_cut,
    })
}

type Pipe = Box<dyn AsyncRead + Unpin + Send>;

/// A started script: its output pipes, its exit code (`None`: ended by a signal), and the
/// process tree it runs in.
struct Started {
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    exit: Pin<Box<dyn Future<Output = std::io::Result<Option<i32>>> + Send>>,
    tree: tree::Tree,
}

/// Windows: a process started with inheritable handles gets every inheritable handle of the
/// agent at that moment. The console-user start makes its pipe ends inheritable for a moment; a
/// std spawn then (another run) would hold that user's pipes open. Both take this lock.
#[cfg(windows)]
static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start(
    program: &str,
    args: &[&str],
    script: &Path,
    spec: &RunSpec<'_>,
    user: Option<&identity::User>,
) -> std::io::Result<Started> {
    #[cfg(windows)]
    let _spawning = SPAWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Windows starts a user's process in their session with their token, which std cannot.
    #[cfg(windows)]
    if let Some(user) = user {
        return console_user::start(user, program, args, script, spec.env, spec.cwd);
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg(script)
        .envs(spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    if let Some(cwd) = spec.cwd {
        cmd.current_dir(cwd);
    }
    #[cfg(unix)]
    if let Some(user) = user {
        identity::apply(&mut cmd, user);
    }
    tree::prepare(&mut cmd);
    let mut child = cmd.spawn()?;
    let tree = tree::Tree::attach(&child);
    let stdout = child.stdout.take().map(|p| Box::new(p) as Pipe);
    let stderr = child.stderr.take().map(|p| Box::new(p) as Pipe);
    let exit = Box::pin(async move { child.wait().await.map(|status| status.code()) });
    Ok(Started { stdout, stderr, exit, tree })
}

const CMD_PRELUDE: &str = "@echo off\r\nchcp 65001 >nul 2>&1\r\n(call )\r\n";

fn invocation(
    shell: Shell,
) -> Result<(&'static str, &'static [&'static str], &'static str, &'static str), ExecError> {
    const UTF8_PS: &str = "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8\r\n";
    Ok(match shell {
        Shell::Sh => ("sh", &[], "sh", ""),
        Shell::Bash => ("bash", &[], "sh", ""),
        Shell::Powershell => (
            "powershell",
            &["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"],
            "ps1",
            UTF8_PS,
        ),
        Shell::Pwsh => ("pwsh", &["-NoProfile", "-NonInteractive", "-File"], "ps1", UTF8_PS),
        // Echo off, or every command is printed with its prompt; UTF-8 output where the code page
        // can be switched; then `(call )` clears ERRORLEVEL, so a failed `chcp` (wine has none)
        // never becomes the exit code of a script whose own commands leave it alone (`echo`).
        Shell::Cmd => ("cmd", &["/D", "/C"], "cmd", CMD_PRELUDE),
        Shell::Unknown => return Err(ExecError::UnsupportedShell(shell)),
    })
}

async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    cap: usize,
    live: Option<live::LiveOutput>,
    stream: ChunkStream,
) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else { return (Vec::new(), false) };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(live) = &live {
                    live.lock().unwrap_or_else(|e| e.into_inner()).push(stream, &buf[..n]);
                }
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (kept, cut)
}

/// One `NAME=value` of a Windows environment block. Names such as `=C:` (a drive's current
/// directory) start with '=', so the name ends at the first '=' after its first character,
/// whatever that character is.
#[cfg_attr(not(windows), allow(dead_code))]
fn env_entry(entry: &str) -> Option<(String, String)> {
    let (i, _) = entry.char_indices().skip(1).find(|&(_, c)| c == '=')?;
    Some((entry[..i].to_owned(), entry[i + 1..].to_owned()))
}

/// A Windows command line for `words`, each one read back as itself by the usual argument
/// parsing (MSVC rules): quoted when it holds a space, tab or quote, with backslashes doubled
/// only where they precede a quote.
#[cfg_attr(not(windows), allow(dead_code))]
fn command_line(words: &[&str]) -> String {
    let mut line = String::new();
    for word in words {
        if !line.is_empty() {
            line.push(' ');
        }
        if !word.is_empty() && !word.contains([' ', '\t', '"']) {
            line.push_str(word);
            continue;
        }
        line.push('"');
        let mut backslashes = 0;
        for c in word.chars() {
            match c {
                '\\' => backslashes += 1,
                '"' => {
                    line.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                    backslashes = 0;
                }
                _ => {
                    line.extend(std::iter::repeat_n('\\', backslashes));
                    backslashes = 0;
                }
            }
            if c != '\\' {
                line.push(c);
            }
        }
        line.extend(std::iter::repeat_n('\\', backslashes * 2));
        line.push('"');
    }
    line
}

/// An unguessable path for one run's own staging directory under the system temp dir; the
/// caller creates it exclusively, so nobody can have prepared it (or a link in its place).
fn fresh_run_path(name: &str) -> std::io::Result<PathBuf> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(std::io::Error::other)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(std::env::temp_dir().join(format!("kanade-run-{name}-{suffix}")))
}

/// The staged script, and the per-run directory when one was made for it.
struct RemoveOnDrop(PathBuf, Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Who a `run_as: user` job runs as (Unix: `[exec] user`, its uid, gid and environment).
#[cfg(unix)]
mod identity {
    use std::path::Path;

    use super::ExecError;

    use super::Identity;

    pub struct User(nix::unistd::User);

    /// `None`: run as the agent.
    pub fn lookup(identity: Identity<'_>) -> Result<Option<User>, ExecError> {
        let name = match identity {
            Identity::Agent => return Ok(None),
            Identity::Account(name) => name,
            Identity::ConsoleUser => {
                return Err(ExecError::User {
                    user: "the console user".into(),
                    why: "Unix agents run run_as: user jobs as [exec] user only".into(),
                });
            }
        };
        let fail = |why: String| ExecError::User { user: name.to_owned(), why };
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Ok(Some(User(user))),
            Ok(None) => Err(fail("no such account on this machine ([exec] user in agent.toml)".into())),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// A new directory for one run under the system temp dir, 0700, with a random name and
    /// created exclusively: nobody can have prepared it (or a link in its place) beforehand.
    pub fn fresh_dir(name: &str, _user: &User) -> std::io::Result<std::path::PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = super::fresh_run_path(name)?;
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(dir)
    }

    /// Make the staged files the user's own, still private to them.
    pub fn hand_over(paths: &[&Path], user: &User) -> std::io::Result<()> {
        for path in paths {
            std::os::unix::fs::chown(path, Some(user.0.uid.as_raw()), Some(user.0.gid.as_raw()))?;
        }
        Ok(())
    }

    /// The child drops to the user's uid and gid before it execs, with their home and name.
    pub fn apply(cmd: &mut tokio::process::Command, user: &User) {
        let u = &user.0;
        cmd.uid(u.uid.as_raw())
            .gid(u.gid.as_raw())
            .env("HOME", &u.dir)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name);
    }
}

#[cfg(windows)]
use console_user as identity;

#[cfg(all(test, unix))]
mod tests;
