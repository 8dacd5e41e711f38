//! `kanade-backend backup` / `restore`: what the streams cannot rebuild, in one archive.
//!
//! The archive is a tar of `manifest.json` (format, kanade version, time, and each part's size
//! and sha256), `backend.db` (a consistent copy of the SQLite projection taken with SQLite's
//! online backup while the backend runs: accounts, API tokens, schedule state, and every row
//! the streams may no longer hold), and the data dir's secrets `command-signing.key` and
//! `jwt.secret` when they exist. A restore checks every part against the manifest and opens the
//! database before it replaces anything, never overwrites without `--force` (and then sets the
//! old files aside, not deletes them), and starts a new projection generation so the restored
//! copy replays the streams and catches up on what happened after the backup.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kanade_shared::files::sha256_hex;
use serde::{Deserialize, Serialize};

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

/// Pure: every problem with an archive's parts against its manifest (missing, extra, unknown,
/// wrong size or digest) and with its format. Whether this binary can run its database is
/// learnt by opening it (a newer schema is refused there, before anything is replaced).
pub fn check(manifest: &Manifest, parts: &Parts) -> Vec<String> {
    let mut problems = Vec::new();
    if manifest.format != FORMAT {
        problems
            .push(format!("archive format {} is not {FORMAT}, the one this binary reads", manifest.format));
    }
    for want in &manifest.parts {
        if want.name != DB_PART && !SECRET_PARTS.contains(&want.name.as_str()) {
            // Never a path: a restore writes only the files it knows, where it knows.
            problems.push(format!("{:?}: not a part of a kanade backup", want.name));
            continue;
        }
        match parts.iter().find(|(n, _)| *n == want.name) {
            None => problems.push(format!("{}: listed in the manifest but not in the archive", want.name)),
            Some((_, bytes)) if bytes.len() as u64 != want.bytes || sha256_hex(bytes) != want.sha256 => {
                problems.push(format!(
                    "{}: its size or sha256 differs from the manifest (damaged archive)",
                    want.name
                ))
            }
            Some(_) => {}
        }
    }
    for (name, _) in parts {
        if !manifest.parts.iter().any(|p| &p.name == name) {
            problems.push(format!("{name:?}: in the archive but not in the manifest"));
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
    // It holds password and token hashes: private before SQLite writes a page into it.
    kanade_shared::files::write_private(&scratch, b"", kanade_shared::files::Existing::Keep)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
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
                sha256: sha256_hex(bytes),
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
pub fn read(archive: &Path) -> anyhow::Result<(Manifest, Parts)> {
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
    let problems = check(&manifest, &parts);
    anyhow::ensure!(problems.is_empty(), "{} cannot be restored: {}", archive.display(), problems.join("; "));
    Ok((manifest, parts))
}

/// Where restoring over `path` keeps what was there: `<name>.before-restore-<stamp>`.
fn set_aside(path: &Path, stamp: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".before-restore-{stamp}"));
    path.with_file_name(name)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// Restore `archive` to the database file `db` and the secrets into `data_dir`, with the
/// backend stopped. Every part is checked and written next to its place first (private, owned
/// like the data dir), the database opened there — migrated, refused if newer than this binary
/// — and given a new projection generation; only then is anything replaced. Without `force`,
/// refuses when any target exists; with it, folds the old database's log into it and moves each
/// old file aside. Returns what was set aside.
pub async fn restore(
    archive: &Path,
    db: &Path,
    data_dir: &Path,
    force: bool,
) -> anyhow::Result<(Manifest, Vec<PathBuf>)> {
    let (manifest, parts) = read(archive)?;
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
    kanade_shared::files::private_dir(data_dir)?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // 1. Staged beside their places.
    let mut staged = Vec::new();
    for (path, bytes) in &targets {
        let partial = with_suffix(path, ".restoring");
        let _ = std::fs::remove_file(&partial);
        kanade_shared::files::write_private(&partial, bytes, kanade_shared::files::Existing::Keep)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::File::open(&partial)?.sync_all()?;
        owned_like(&partial, data_dir)?;
        staged.push((partial, path.clone()));
    }
    // 2. The staged database runs here (or the restore stops, nothing replaced), and replays
    // the streams at the next start to catch up on what happened after the backup.
    let staged_db = with_suffix(db, ".restoring");
    {
        let restored = Db::open(&staged_db).with_context(|| {
            format!("the backup's database cannot be used here ({})", staged_db.display())
        })?;
        restored.replay_streams().await?;
    }
    Db::sqlite_checkpoint(&staged_db)?;
    // 3. The old files aside (the old database with its log folded in), the staged ones in.
    let stamp = kanade_shared::wire::Timestamp::now_utc().unix_timestamp().to_string();
    if db.exists() {
        Db::sqlite_checkpoint(db)?;
    }
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let swap = |moved: &mut Vec<(PathBuf, PathBuf)>| -> anyhow::Result<()> {
        for (partial, path) in &staged {
            let mut old = vec![(path.clone(), set_aside(path, &stamp))];
            if path == db {
                // A log left over keeps its database's name in front, so SQLite still pairs them.
                old.extend(
                    ["-wal", "-shm"].map(|s| (with_suffix(db, s), with_suffix(&set_aside(db, &stamp), s))),
                );
            }
            for (from, to) in old.into_iter().filter(|(from, _)| from.exists()) {
                std::fs::rename(&from, &to)
                    .with_context(|| format!("cannot move {} aside", from.display()))?;
                moved.push((from, to));
            }
            std::fs::rename(partial, path)
                .with_context(|| format!("cannot put {} in place", path.display()))?;
        }
        Ok(())
    };
    if let Err(e) = swap(&mut moved) {
        // Put back what was moved: the old state, not a half-restored one.
        for (from, to) in moved.iter().rev() {
            let _ = std::fs::rename(to, from);
        }
        return Err(e);
    }
    for dir in [Some(data_dir), db.parent()].into_iter().flatten().filter(|d| !d.as_os_str().is_empty()) {
        sync_dir(dir);
    }
    Ok((manifest, moved.into_iter().map(|(_, to)| to).collect()))
}

/// A restore run as root for a backend that runs as its own account leaves files that account
/// can open: owned by whoever owns the data dir.
fn owned_like(path: &Path, data_dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(data_dir)?;
        let me = std::fs::metadata(path)?;
        if (me.uid(), me.gid()) != (owner.uid(), owner.gid()) {
            std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, data_dir);
    Ok(())
}

/// Make the renames in `dir` durable (Unix; Windows has no directory handle to sync).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
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
                .map(|(n, b)| Part { name: (*n).into(), bytes: b.len() as u64, sha256: sha256_hex(b) })
                .collect(),
        }
    }

    #[test]
    fn an_archive_restores_only_when_every_part_matches_its_manifest() {
        let good = manifest(&[(DB_PART, b"db"), ("jwt.secret", b"s")], "0.1.0");
        let parts = |list: &[(&str, &[u8])]| {
            list.iter().map(|(n, b)| ((*n).to_owned(), b.to_vec())).collect::<Parts>()
        };
        assert!(check(&good, &parts(&[(DB_PART, b"db"), ("jwt.secret", b"s")])).is_empty());
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
                "\"x\": in the archive but not",
            ),
            (
                manifest(&[(DB_PART, b"db"), ("../../etc/cron.d/x", b"x")], "0.1.0"),
                parts(&[(DB_PART, b"db"), ("../../etc/cron.d/x", b"x")]),
                "\"../../etc/cron.d/x\": not a part of a kanade backup",
            ),
            (
                manifest(&[("jwt.secret", b"s")], "0.1.0"),
                parts(&[("jwt.secret", b"s")]),
                "the archive holds no database",
            ),
        ];
        for (m, p, says) in cases {
            let problems = check(&m, &p);
            assert!(problems.iter().any(|x| x.contains(says)), "{says}: {problems:?}");
        }
    }
}
