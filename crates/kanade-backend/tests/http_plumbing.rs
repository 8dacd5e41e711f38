//! The HTTP plumbing on the real binary: every answer carries an `x-request-id` (the caller's,
//! else a new one) that the access log line names; JSON goes gzip-compressed to clients that
//! accept it; `/livez` and `/readyz`; metrics labels come from bounded sets whatever method a
//! client sends; and a stop (SIGTERM) ends open event streams instead of waiting on them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::process::BackendProcess;
use kanade_testkit::NatsServer;

/// One request on its own connection: (status, lower-cased head, body).
fn call(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    (status, head, body)
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[test]
fn request_ids_access_log_compression_probes_bounded_labels_and_a_stop_that_ends_streams() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let mut backend = BackendProcess::start_env(dir.path(), &nats.url(), &[("KANADE_AUTH_DISABLE", "1")]);
    let port = backend.port;
    kanade_testkit::wait_until("the backend to be ready", Duration::from_secs(60), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok() && call(port, "GET", "/readyz", &[]).0 == 200
    });
    let (status, _, body) = call(port, "GET", "/livez", &[]);
    assert_eq!((status, String::from_utf8_lossy(&body).into_owned()), (200, r#"{"status":"ok"}"#.to_owned()));

    // The caller's request id comes back and names the access-log line; else one is made.
    let (status, head, _) = call(port, "GET", "/api/jobs", &[("X-Request-Id", "trace-me-42")]);
    assert_eq!((status, header(&head, "x-request-id")), (200, Some("trace-me-42")), "{head}");
    let (_, head, _) = call(port, "GET", "/api/jobs", &[]);
    assert_eq!(header(&head, "x-request-id").map(str::len), Some(36), "{head}");
    kanade_testkit::wait_until("the access-log line", Duration::from_secs(10), || {
        backend.log_text().lines().any(|l| {
            l.contains("request_id=\"trace-me-42\"")
                && l.contains("route=\"/api/jobs\"")
                && l.contains("status=200")
        })
    });

    // JSON compressed for a client that accepts gzip, plain for one that does not.
    let (_, head, body) = call(port, "GET", "/api/openapi.json", &[("Accept-Encoding", "gzip")]);
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut json).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(doc["paths"]["/readyz"].is_object());
    let (_, head, _) = call(port, "GET", "/api/openapi.json", &[]);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");

    // Whatever method a client invents, the metrics' labels stay a fixed set.
    let (status, _, _) = call(port, "BREW", "/api/jobs", &[]);
    assert!((400..500).contains(&status), "{status}");
    let (_, _, metrics) = call(port, "GET", "/metrics", &[]);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains(r#"method="other",route="/api/jobs",status="4xx""#), "{metrics}");
    assert!(!metrics.contains("BREW"), "{metrics}");
    assert!(
        metrics.contains(&format!("kanade_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l.starts_with("process_resident_memory_bytes ")), "{metrics}");

    // An open event stream does not hold up a stop.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut first = [0u8; 64];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let asked = Instant::now();
    let status =
        std::process::Command::new("kill").args(["-TERM", &backend.pid().to_string()]).status().unwrap();
    assert!(status.success());
    kanade_testkit::wait_until("the backend to stop with a stream open", Duration::from_secs(20), || {
        backend.exited()
    });
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(asked.elapsed() < Duration::from_secs(20));
}

/// A client that never finishes its request headers is cut off after the header timeout
/// instead of holding a connection forever; a complete request on the same server is served,
/// with the peer's address known to the handlers (the audit trail's `from`).
#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off_and_whole_requests_served() {
    let s = common::stack(&[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = s.app.clone();
    tokio::spawn(kanade_backend::http::serve::serve(
        listener,
        app,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    let slow = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(c, "GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        // The server closes it (EOF, perhaps after a 408), long before the read timeout.
        let _ = c.read_to_end(&mut rest);
        (started.elapsed(), String::from_utf8_lossy(&rest).into_owned())
    });
    let idle = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let started = Instant::now();
        let _ = c.read_to_end(&mut Vec::new());
        started.elapsed()
    });
    let (status, _, body) =
        tokio::task::spawn_blocking(move || call(port, "GET", "/livez", &[])).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let quiet = idle.await.unwrap();
    assert!(quiet < Duration::from_secs(30), "a connection that sent nothing was held for {quiet:?}");
    let (took, said) = slow.await.unwrap();
    assert!(took < Duration::from_secs(30), "the half-sent request held its connection for {took:?}: {said}");
    assert!(said.is_empty() || said.starts_with("HTTP/1.1 408"), "{said}");
    // The peer address reaches the handlers: a failed sign-in is audited with where it came from.
    tokio::task::spawn_blocking(move || {
        let body = r#"{"name":"nobody","password":"not a password"}"#;
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            c,
            "POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).unwrap();
        assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 401"), "{}", String::from_utf8_lossy(&raw));
    })
    .await
    .unwrap();
    common::wait_for_audit(&s, "auth.login_failed").await;
    let (_, audit) = s.get("/api/audit?action=auth.login_failed").await;
    assert_eq!(audit["items"][0]["source"], "127.0.0.1", "{audit:#}");
}
