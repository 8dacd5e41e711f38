//! The Unix side: a socket every local user may connect to (mode 0666 in a 0755 directory the
//! agent makes), the caller named by the kernel's `SO_PEERCRED`.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::{Handler, IO_TIMEOUT, MAX_REQUEST, answer, stopped};

/// Listen at `path` until `stop`; a stale socket left by a killed agent is replaced, any other
/// file there is refused.
pub async fn serve(path: &Path, handler: Handler, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(
            meta.file_type().is_socket(),
            "{} exists and is not a socket; remove it or set [notifications] socket elsewhere",
            path.display()
        );
        std::fs::remove_file(path)
            .with_context(|| format!("cannot replace the old socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen at {}", path.display()))?;
    // Anyone may ask; the kernel says who asked.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot open {} to local users", path.display()))?;
    tracing::info!(socket = %path.display(), "local users reach this agent's notifications here");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let done = tokio::time::timeout(IO_TIMEOUT, one(stream, handler)).await;
                        if let Err(e) = done.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out"))) {
                            tracing::debug!(error = %e, "local request not answered");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "local socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

async fn one(stream: UnixStream, handler: Handler) -> anyhow::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid:{uid}"), |u| u.name);
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    BufReader::new(read.take(MAX_REQUEST)).read_until(b'\n', &mut line).await?;
    let out = answer(&handler, &user, &line);
    write.write_all(&out).await?;
    write.flush().await?;
    Ok(())
}
