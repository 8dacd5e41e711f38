//! A TCP gate between clients and a server: open, it pipes bytes both ways; closed, it cuts
//! every connection it carries and hangs up on new ones at once. With the broker behind a gate a
//! test can keep a client away for exactly as long as it wants while the broker stays up — and
//! know the client was away, which a broker restart alone cannot promise.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Gate {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    piping: Arc<Mutex<Vec<AbortHandle>>>,
    carried: Arc<AtomicUsize>,
    accept: AbortHandle,
}

impl Gate {
    /// An open gate on a free loopback port in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("gate: bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let piping: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let carried = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_owned();
        let accept = tokio::spawn({
            let (open, piping, carried) = (open.clone(), piping.clone(), carried.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees its connection closed
                    }
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { continue };
                    carried.fetch_add(1, Ordering::SeqCst);
                    let task = tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                    let mut piping = piping.lock().unwrap();
                    piping.retain(|t| !t.is_finished());
                    piping.push(task.abort_handle());
                }
            }
        })
        .abort_handle();
        Self { addr, open, piping, carried, accept }
    }

    /// `nats://` URL of the gate.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Cut every connection and refuse new ones until [`Gate::open`].
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.piping.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Connections piped through since the start (one per client connect that got through).
    pub fn carried(&self) -> usize {
        self.carried.load(Ordering::SeqCst)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept.abort();
        self.close();
    }
}
