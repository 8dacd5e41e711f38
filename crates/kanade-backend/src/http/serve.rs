//! The HTTP server loop: hyper's own HTTP/1.1 connection handling with a limit on how long a
//! client may take to send its first bytes and its request headers, so slow or idle half-open
//! connections cannot pile up, and a graceful stop that lets requests in flight finish.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// How long a client may take to send a request's headers (slow-client protection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop waits for requests in flight before it closes their connections.
const DRAIN: Duration = Duration::from_secs(30);

/// Serve `app` on `listener` until `stop` resolves; each request carries its peer address
/// (`ConnectInfo<SocketAddr>`) as `axum::serve` would give it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    // HTTP/1 only: the router speaks nothing else, and the auto builder's protocol sniffing
    // would read the first bytes with no time limit.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving those already here.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Wrapping the router (not `Router::layer`, which rebuilds every route) per connection.
        let service =
            TowerToHyperService::new(tower::Layer::layer(&axum::Extension(ConnectInfo(peer)), app.clone()));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // A connection that sends nothing at all is closed too, not only a slow request.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {}s of stopping; closing them", DRAIN.as_secs());
    }
    Ok(())
}
