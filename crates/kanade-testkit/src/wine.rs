//! The real Windows binaries under wine: a private prefix per test, the `ProcessPrng` shim
//! wine 8 lacks, and Windows paths for Unix ones. A missing `wine`, MinGW compiler or Windows
//! build fails with the command that provides it, like a missing nats-server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

const SHIM_SOURCE: &str = include_str!("../wine/bcryptprimitives.c");

/// A wine prefix of its own, with a persistent wineserver; both are gone on drop.
pub struct Wine {
    prefix: TempDir,
    /// Where the Windows binaries under test are copied, with the shim beside them.
    pub bin: PathBuf,
}

impl Wine {
    /// Create the prefix (`wineboot`, about ten seconds) and a bin dir holding copies of `exes`
    /// next to the shim DLL.
    pub fn start(exes: &[&Path]) -> Result<Self, String> {
        let prefix = tempfile::Builder::new()
            .prefix("kanade-wine-")
            .tempdir()
            .map_err(|e| format!("cannot create a wine prefix dir: {e}"))?;
        let wine = Self { bin: prefix.path().join("bin"), prefix };
        std::fs::create_dir_all(&wine.bin)
            .map_err(|e| format!("cannot create {}: {e}", wine.bin.display()))?;
        let status = wine
            .command("wineboot")
            .arg("-i")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run wineboot ({e}); install wine with `apt-get install wine64` (scripts/test.sh does)"))?;
        if !status.success() {
            return Err(format!("wineboot -i failed ({status}) in {}", wine.prefix.path().display()));
        }
        // A fresh wineserver after the boot (services.exe as wineboot left it does not start
        // new services), kept for the whole test: each `wine` call would otherwise start a new
        // one (and with it every auto-start service) once the last one idled out.
        let quiet = |program: &str, arg: &str| {
            wine.command(program)
                .arg(arg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        };
        let _ = quiet("wineserver", "-k");
        let _ = quiet("wineserver", "-w");
        let _ = quiet("wineserver", "-p");
        // Boot the prefix's own processes (services.exe, winedevice) now, with no output: the
        // first `wine` command starts them, and they would keep its pipes open for good, so
        // reading a later command's output would never end.
        let _ = wine
            .command("wine")
            .args(["cmd", "/c", "exit"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for exe in exes {
            if !exe.is_file() {
                return Err(format!(
                    "{} is missing: build the Windows binaries first (cargo build --target x86_64-pc-windows-gnu -p kanade-agent --bins; scripts/test.sh does)",
                    exe.display()
                ));
            }
            let name = exe.file_name().ok_or_else(|| format!("{} has no file name", exe.display()))?;
            std::fs::copy(exe, wine.bin.join(name))
                .map_err(|e| format!("cannot copy {}: {e}", exe.display()))?;
        }
        wine.build_shim()?;
        Ok(wine)
    }

    fn build_shim(&self) -> Result<(), String> {
        let source = self.prefix.path().join("bcryptprimitives.c");
        std::fs::write(&source, SHIM_SOURCE).map_err(|e| format!("cannot write the shim source: {e}"))?;
        let out = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-O2", "-s", "-shared", "-o"])
            .arg(self.bin.join("bcryptprimitives.dll"))
            .arg(&source)
            .arg("-ladvapi32")
            .output()
            .map_err(|e| {
                format!("cannot run x86_64-w64-mingw32-gcc ({e}); install it with `apt-get install gcc-mingw-w64-x86-64`")
            })?;
        if !out.status.success() {
            return Err(format!(
                "building the ProcessPrng shim failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Delete every `file` (case-insensitive, e.g. the `powershell.exe` stub wine ships, which
    /// exits 0 doing nothing) under the prefix's `C:\\windows`, to stand for a machine without it.
    pub fn remove_program(&self, file: &str) -> Result<usize, String> {
        fn walk(dir: &Path, file: &str, removed: &mut usize) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let path = entry.path();
                // Never through symlinks: the prefix links the user's folders to $HOME.
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    walk(&path, file, removed)?;
                } else if path.file_name().is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(file)) {
                    std::fs::remove_file(&path)?;
                    *removed += 1;
                }
            }
            Ok(())
        }
        let mut removed = 0;
        walk(&self.prefix.path().join("drive_c").join("windows"), file, &mut removed)
            .map_err(|e| format!("cannot remove {file}: {e}"))?;
        Ok(removed)
    }

    /// `program` (wine, wineserver, wineboot) with this prefix, quiet.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("WINEPREFIX", self.prefix.path())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        cmd
    }

    /// Start `exe` (a file name in [`Wine::bin`]) with `args`, output to `log`.
    pub fn spawn(&self, exe: &str, args: &[String], log: &Path) -> Result<Child, String> {
        let file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        self.command("wine")
            .arg(self.bin.join(exe))
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start wine: {e}"))
    }

    /// Run `args` under wine to completion (e.g. `sc query`), returning its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.command("wine").args(args).output().map_err(|e| format!("cannot run wine: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether any process of this prefix runs the program `name` (`ping.exe` or `ping`), by the
    /// first word of its command line (wine shows `ping -n 60 …` or `C:\\…\\cmd.exe /c …`).
    pub fn runs(&self, name: &str) -> bool {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            panic!("/proc is not readable: cannot tell which wine processes run");
        };
        let prefix = format!("WINEPREFIX={}", self.prefix.path().display());
        let wanted = program(name);
        entries.flatten().any(|e| {
            let dir = e.path();
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
            let first = String::from_utf8_lossy(&cmdline)
                .split(|c: char| c == '\0' || c.is_whitespace())
                .next()
                .map(program)
                .unwrap_or_default();
            first == wanted && environ.split(|b| *b == 0).any(|kv| kv == prefix.as_bytes())
        })
    }
}

/// `C:\\Windows\\System32\\PING.EXE` → `ping`.
fn program(path: &str) -> String {
    let base = path.rsplit(['\\', '/']).next().unwrap_or(path).to_ascii_lowercase();
    base.strip_suffix(".exe").map(str::to_owned).unwrap_or(base)
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = self.command("wineserver").arg("-k").stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// The path wine's `Z:` drive gives a Unix path.
pub fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display().to_string().replace('/', "\\"))
}

/// Where `cargo build --target x86_64-pc-windows-gnu` puts `name`.exe, next to this build's
/// `target/<profile>` dir (`host_exe` is one of this build's binaries, e.g.
/// `env!("CARGO_BIN_EXE_kanade")`).
pub fn windows_exe(host_exe: &Path, name: &str) -> PathBuf {
    let profile_dir = host_exe.parent().unwrap_or(Path::new("."));
    let profile = profile_dir.file_name().map(|p| p.to_owned()).unwrap_or_default();
    let target = profile_dir.parent().unwrap_or(Path::new("."));
    target.join("x86_64-pc-windows-gnu").join(profile).join(format!("{name}.exe"))
}
