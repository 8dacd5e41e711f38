//! The dashboard's charting library (uPlot) comes from the npm registry at build time, pinned by
//! `web/package-lock.json` (name, version and integrity hash), and is embedded like the
//! dashboard's own files: never committed, never fetched by a browser from anywhere else.
//! `npm ci` runs in OUT_DIR, so the source tree stays clean; it runs again only when the
//! lockfile changes.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 2] = ["package.json", "package-lock.json"];
/// What the dashboard embeds (see `src/http/dashboard.rs`).
const NEEDED: [&str; 2] = ["node_modules/uplot/dist/uPlot.esm.js", "node_modules/uplot/dist/uPlot.min.css"];

fn main() {
    for f in FILES {
        println!("cargo:rerun-if-changed=web/{f}");
    }
    println!("cargo:rerun-if-env-changed=KANADE_NPM");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web");
    if up_to_date(&out) {
        return;
    }
    std::fs::create_dir_all(&out).expect("create OUT_DIR/web");
    for f in FILES {
        std::fs::copy(Path::new("web").join(f), out.join(f)).unwrap_or_else(|e| panic!("copy web/{f}: {e}"));
    }
    let npm =
        std::env::var("KANADE_NPM").unwrap_or_else(|_| if cfg!(windows) { "npm.cmd" } else { "npm" }.into());
    let status = Command::new(&npm)
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"])
        .current_dir(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`{npm} ci` in {} failed ({s}): the dashboard's charting library (uPlot) is fetched from the npm registry at build time; check that the registry is reachable",
            out.display()
        ),
        Err(e) => panic!(
            "cannot run `{npm}` ({e}): the dashboard's charting library (uPlot) is fetched from the npm registry at build time; install Node.js and npm (Debian: apt-get install nodejs npm) or set KANADE_NPM to npm's path"
        ),
    }
    for n in NEEDED {
        assert!(out.join(n).exists(), "`npm ci` did not produce {n}");
    }
}

/// The files are there and were fetched for this very lockfile.
fn up_to_date(out: &Path) -> bool {
    let same = |f: &str| std::fs::read(Path::new("web").join(f)).ok() == std::fs::read(out.join(f)).ok();
    NEEDED.iter().all(|n| out.join(n).exists()) && FILES.iter().all(|f| same(f))
}
