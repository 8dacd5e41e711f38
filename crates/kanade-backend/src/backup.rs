//! `kanade-backend backup` / `restore`: what the streams cannot rebuild, in one archive.
//!
//! The archive is a tar of `manifest.json` (format, kanade version, time, and each part's size
//! and sha256), `backend.db` (a consistent copy of the SQLite projection taken with SQLite's
//! online backup while the backend runs: accounts, API tokens, schedule state, and every row
//! the streams may no longer hold), and the data dir's secrets `command-signing.key` and
//! `jwt.secret` when they exist. A restore checks every part against the manifest before it
//! writes anything, never overwrites without `--force` (and then sets the old files aside, not
//! deletes them), and starts a new projection generation so the restored copy replays the
//! streams and catches up on what happened after the backup.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::db::Db;

const FORMAT: u32 = 1;
pub const DB_PART: &str = "backend.db";
/// Secrets in the data dir that travel with the database.
pub const SECRET_PARTS: [&str; 2] = ["command-signing.key", "jwt.secret"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kanade_version: String,
    /// RFC 3339.
    pub created_at: String,
    pub parts: Vec<Part>,
}

/// An archive's parts by name, as read.
pub type Parts = Vec<(String, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Pure: every problem with an archive's parts against its manifest (missing, extra, wrong
/// size or digest) and with its format and version against this binary.
pub fn check(
    manifest: &Manifest,
    parts: &[(String, Vec<u8>)],
    running: &kanade_shared::Version,
) -> Vec<String> {
    let mut problems = Vec::new();
    if manifest.format != FORMAT {
        problems
            .push(format!("archive format {} is not {FORMAT}, the one this binary reads", manifest.format));
    }
    match manifest.kanade_version.parse::<kanade_shared::Version>() {
        Ok(v) if &v > running => problems.push(format!(
            "the backup was made by kanade {v}, newer than this {running}: restore it with that version or later"
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!("manifest kanade_version: {e}")),
    }
    for want in &manifest.parts {
        match parts.iter().find(|(n, _)| *n == want.name) {
            None => problems.push(format!("{}: listed in the manifest but not in the archive", want.name)),
            Some((_, bytes)) if bytes.len() as u64 != want.bytes || sha256(bytes) != want.sha256 => problems
                .push(format!(
                    "{}: its size or sha256 differs from the manifest (damaged archive)",
                    want.name
                )),
            Some(_) => {}
        }
    }
    for (name, _) in parts {
        if !manifest.parts.iter().any(|p| &p.name == name) {
            problems.push(format!("{name}: in the archive but not in the manifest"));
        }
    }
    if !manifest.parts.iter().any(|p| p.name == DB_PART) {
        problems.push(format!("{DB_PART}: the archive holds no database"));
    }
    problems
}

/// What a backup wrote.
#[derive(Debug)]
pub struct Written {
    pub manifest: Manifest,
    pub archive_bytes: u64,
}

/// Write the archive at `out` from the SQLite database at `db` and the secrets in `data_dir`.
/// Refuses to overwrite `out`.
pub fn backup(db: &Path, data_dir: &Path, out: &Path, version: &str) -> anyhow::Result<Written> {
    anyhow::ensure!(db.is_file(), "no database at {} (is db.sqlite_path right?)", db.display());
    anyhow::ensure!(!out.exists(), "{} exists; name a new file for the backup", out.display());
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let scratch =
        dir.join(format!(".{}.db.partial", out.file_name().and_then(|n| n.to_str()).unwrap_or("backup")));
    let _ = std::fs::remove_file(&scratch);
    let copied = Db::sqlite_online_backup(db, &scratch)
        .with_context(|| format!("cannot copy {} into {}", db.display(), scratch.display()));
    let db_bytes = copied.and_then(|()| std::fs::read(&scratch).context("reading the copy back"));
    let _ = std::fs::remove_file(&scratch);
    let mut parts = vec![(DB_PART.to_owned(), db_bytes?)];
    for name in SECRET_PARTS {
        match std::fs::read(data_dir.join(name)) {
            Ok(bytes) => parts.push((name.to_owned(), bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", data_dir.join(name).display()));
            }
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        kanade_version: version.to_owned(),
        created_at: kanade_shared::wire::Timestamp::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        parts: parts
            .iter()
            .map(|(name, bytes)| Part {
                name: name.clone(),
                bytes: bytes.len() as u64,
                sha256: sha256(bytes),
            })
            .collect(),
    };
    // Written under a temporary name and renamed: a half-written archive never looks whole.
    let partial =
        dir.join(format!(".{}.partial", out.file_name().and_then(|n| n.to_str()).unwrap_or("backup")));
    let file =
        std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    kanade_shared::files::private_file(&partial)?;
    let mut tar = tar::Builder::new(file);
    let mut add = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)
    };
    add("manifest.json", &serde_json::to_vec_pretty(&manifest)?)?;
    for (name, bytes) in &parts {
        add(name, bytes)?;
    }
    let file = tar.into_inner()?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot move the archive to {}", out.display()))?;
    Ok(Written { manifest, archive_bytes: std::fs::metadata(out)?.len() })
}

/// Read and check an archive: its manifest and parts, or every problem with it.
pub fn read(archive: &Path, running: &kanade_shared::Version) -> anyhow::Result<(Manifest, Parts)> {
    let file = std::fs::File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut manifest = None;
    let mut parts = Vec::new();
    for entry in tar::Archive::new(file).entries().context("not a kanade backup (not a tar archive)")? {
        let mut entry = entry.context("a damaged archive entry")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        if name == "manifest.json" {
            manifest = Some(
                serde_json::from_slice::<Manifest>(&bytes)
                    .context("manifest.json is not a kanade manifest")?,
            );
        } else {
            parts.push((name, bytes));
        }
    }
    let manifest = manifest.context("not a kanade backup: it has no manifest.json")?;
    let problems = check(&manifest, &parts, running);
    anyhow::ensure!(problems.is_empty(), "{} cannot be restored: {}", archive.display(), problems.join("; "));
    Ok((manifest, parts))
}

/// Where restoring a part would overwrite something, and where that is set aside.
fn set_aside(path: &Path, stamp: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".before-restore-{stamp}"));
    path.with_file_name(name)
}

/// Restore `archive` to the database file `db` and the secrets into `data_dir`. Without
/// `force`, refuses when any of them exists; with it, moves them aside first. Returns what was
/// set aside.
pub async fn restore(
    archive: &Path,
    db: &Path,
    data_dir: &Path,
    force: bool,
    running: &kanade_shared::Version,
) -> anyhow::Result<(Manifest, Vec<PathBuf>)> {
    let (manifest, parts) = read(archive, running)?;
    let targets: Vec<(PathBuf, &Vec<u8>)> = parts
        .iter()
        .map(|(name, bytes)| (if name == DB_PART { db.to_owned() } else { data_dir.join(name) }, bytes))
        .collect();
    let present: Vec<&PathBuf> = targets.iter().map(|(p, _)| p).filter(|p| p.exists()).collect();
    if !present.is_empty() && !force {
        anyhow::bail!(
            "{} exist(s): stop the backend and pass --force to restore over them (they are moved aside as *.before-restore-<time>, not deleted)",
            present.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let stamp = kanade_shared::wire::Timestamp::now_utc().unix_timestamp().to_string();
    let mut aside = Vec::new();
    kanade_shared::files::private_dir(data_dir)?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    for (path, bytes) in &targets {
        let mut moving = vec![path.clone()];
        if path == db {
            // SQLite's write-ahead log belongs to the file it sits next to.
            moving.extend(["-wal", "-shm"].map(|s| PathBuf::from(format!("{}{s}", db.display()))));
        }
        for p in moving.into_iter().filter(|p| p.exists()) {
            let to = set_aside(&p, &stamp);
            std::fs::rename(&p, &to).with_context(|| format!("cannot move {} aside", p.display()))?;
            aside.push(to);
        }
        let partial = PathBuf::from(format!("{}.restoring", path.display()));
        std::fs::write(&partial, bytes).with_context(|| format!("cannot write {}", partial.display()))?;
        kanade_shared::files::private_file(&partial)?;
        std::fs::rename(&partial, path)?;
    }
    // The copy replays the streams at the next start and catches up on what came after it.
    let restored = Db::open(db).with_context(|| format!("cannot open the restored {}", db.display()))?;
    restored.replay_streams().await?;
    Ok((manifest, aside))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(parts: &[(&str, &[u8])], version: &str) -> Manifest {
        Manifest {
            format: FORMAT,
            kanade_version: version.into(),
            created_at: "2026-12-02T00:00:00Z".into(),
            parts: parts
                .iter()
                .map(|(n, b)| Part { name: (*n).into(), bytes: b.len() as u64, sha256: sha256(b) })
                .collect(),
        }
    }

    #[test]
    fn an_archive_restores_only_when_every_part_matches_its_manifest() {
        let v = |s: &str| s.parse::<kanade_shared::Version>().unwrap();
        let good = manifest(&[(DB_PART, b"db"), ("jwt.secret", b"s")], "0.1.0");
        let parts = |list: &[(&str, &[u8])]| {
            list.iter().map(|(n, b)| ((*n).to_owned(), b.to_vec())).collect::<Vec<_>>()
        };
        assert!(check(&good, &parts(&[(DB_PART, b"db"), ("jwt.secret", b"s")]), &v("0.1.0")).is_empty());
        let cases: [(Manifest, Parts, &str); 5] = [
            (
                good.clone(),
                parts(&[(DB_PART, b"dB"), ("jwt.secret", b"s")]),
                "backend.db: its size or sha256 differs",
            ),
            (
                good.clone(),
                parts(&[(DB_PART, b"db")]),
                "jwt.secret: listed in the manifest but not in the archive",
            ),
            (
                good.clone(),
                parts(&[(DB_PART, b"db"), ("jwt.secret", b"s"), ("x", b"")]),
                "x: in the archive but not",
            ),
            (
                manifest(&[(DB_PART, b"db")], "9.0.0"),
                parts(&[(DB_PART, b"db")]),
                "made by kanade 9.0.0, newer than this 0.1.0",
            ),
            (
                manifest(&[("jwt.secret", b"s")], "0.1.0"),
                parts(&[("jwt.secret", b"s")]),
                "the archive holds no database",
            ),
        ];
        for (m, p, says) in cases {
            let problems = check(&m, &p, &v("0.1.0"));
            assert!(problems.iter().any(|x| x.contains(says)), "{says}: {problems:?}");
        }
    }
}
