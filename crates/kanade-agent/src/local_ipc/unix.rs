//! The Unix side: a socket every local user may connect to (mode 0666, in a directory only its
//! owner may write), the caller named by the kernel's `SO_PEERCRED`.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

use super::{Handler, MAX_CLIENTS, MAX_REQUEST, answer, stopped};

/// Listen at `path` until `stop`. A socket left by a killed agent is replaced; one another agent
/// still answers on, any other file there, and a directory others may write (where the socket
/// could be swapped under us) are refused.
pub async fn serve(path: &Path, handler: Handler, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let mode = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?.mode();
    // Group or other write without the sticky bit (which keeps others from replacing our file).
    anyhow::ensure!(
        mode & 0o022 == 0 || mode & 0o1000 != 0,
        "{} is writable by other users, who could swap the socket: put [notifications] socket in a directory only the agent's account may write",
        dir.display()
    );
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(
            meta.file_type().is_socket(),
            "{} exists and is not a socket; remove it or set [notifications] socket elsewhere",
            path.display()
        );
        anyhow::ensure!(
            UnixStream::connect(path).await.is_err(),
            "another process answers on {} (a second agent with the same [notifications] socket?)",
            path.display()
        );
        std::fs::remove_file(path)
            .with_context(|| format!("cannot replace the old socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen at {}", path.display()))?;
    // Anyone may ask; the kernel says who asked.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot open {} to local users", path.display()))?;
    let ours = std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino())).ok();
    tracing::info!(socket = %path.display(), "local users reach this agent's notifications here");
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Beyond the cap a client waits in the backlog.
                    let Ok(slot) = slots.clone().acquire_owned().await else { break };
                    let handler = handler.clone();
                    super::spawn_client(one(stream, handler), slot);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "local socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
    }
    // Only our own socket: a newer agent may have taken the path since.
    if std::fs::symlink_metadata(path).map(|m| (m.dev(), m.ino())).ok() == ours {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

async fn one(stream: UnixStream, handler: Handler) -> anyhow::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    BufReader::new(read.take(MAX_REQUEST)).read_until(b'\n', &mut line).await?;
    // The account lookup may ask a directory service, and the answer reads the store.
    let out = tokio::task::spawn_blocking(move || {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| format!("uid:{uid}"), |u| u.name);
        answer(&handler, &user, &line)
    })
    .await?;
    write.write_all(&out).await?;
    write.flush().await?;
    Ok(())
}
